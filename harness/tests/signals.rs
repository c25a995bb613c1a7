//! SIGINT and SIGTERM in the middle of `sgpc run`: the run ends as ERROR and leaves nothing.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sgpc::outcome::exit_code;
use sgpc::provision::{mounts_under, processes_under};

/// Starts sgpc with `args`, its run directories under `work_root`, stdout and stderr piped.
fn spawn(command: &mut Command, work_root: &std::path::Path) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = command.current_dir(support::repo_root()).arg("--work-root").arg(work_root).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

/// Reads lines until one contains `marker`; returns everything read.
fn read_until(stdout: &mut impl BufRead, marker: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "sgpc ended before printing {marker:?}:\n{seen}");
        seen.push_str(&line);
        if line.contains(marker) {
            return seen;
        }
    }
}

/// Sends `signal` and waits (at most 60 s) for the process to end.
fn interrupt(child: &mut std::process::Child, signal: i32, name: &str) -> std::process::ExitStatus {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "sgpc did not stop within 60 s of {name}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interrupt_mid_run(signal: i32, name: &str) {
    let work_root = tempfile::tempdir().unwrap();
    let json = work_root.path().join("report.json");
    let (mut child, mut stdout) = spawn(Command::new(support::sgpc_binary()).args(["run", "--jobs", "2", "--json"]).arg(&json).arg("--containerd").arg(support::containerd_dir()), work_root.path());
    // Wait for the first finished case (`PASS [   0.969s] ( 1/39) cri-tools/merge`): sandboxes of
    // the cases in flight exist now.
    let mut seen = read_until(&mut stdout, "s] (");
    let first = seen.lines().last().and_then(|l| l.split_whitespace().last()).unwrap().to_string();
    assert!(!processes_under(work_root.path()).is_empty(), "containerd runs under the work root");
    let status = interrupt(&mut child, signal, name);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    seen.push_str(&rest);
    assert!(seen.contains(&format!("interrupted by {name}")), "{seen}");
    assert!(!seen.contains("cleanup incomplete"), "teardown found the runtime's lists empty of the run: {seen}");
    // The case that finished before the signal keeps its verdict; only the others are ERROR.
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let id = |c: &serde_json::Value| format!("{}/{}", c["id"]["scenario"].as_str().unwrap(), c["id"]["policy"].as_str().unwrap());
    let kept = report["cases"].as_array().unwrap().iter().find(|c| id(c) == first).unwrap();
    assert_ne!(kept["verdict"]["kind"], "ERROR", "{first} finished before the signal: {kept}");
    // The unfinished cases are ERROR; a finding among the finished ones outranks it.
    let finding = report["cases"].as_array().unwrap().iter().any(|c| ["FAIL", "REFUSED"].contains(&c["verdict"]["kind"].as_str().unwrap()));
    assert_eq!(status.code(), Some(if finding { exit_code::FAIL } else { exit_code::ERROR }), "{seen}");
    std::fs::remove_file(&json).unwrap();
    assert_eq!(std::fs::read_dir(work_root.path()).unwrap().count(), 0, "the run directory is gone");
    assert!(processes_under(work_root.path()).is_empty(), "no process of the run is left");
    assert!(mounts_under(work_root.path()).is_empty(), "no mount of the run is left");
}

#[test]
fn sigint_mid_run_leaves_nothing() {
    interrupt_mid_run(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_mid_run_leaves_nothing() {
    interrupt_mid_run(libc::SIGTERM, "SIGTERM");
}

/// `sgpc discover` interrupted while its runtimes run a batch: every session is stopped and
/// nothing of it is left, not even its record in the state directory.
#[test]
fn sigint_mid_discovery_leaves_nothing() {
    let work_root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let matrix = out.path().join("matrix.yaml");
    std::fs::write(&matrix, format!("entries:\n  - {{name: a, containerd: {{dir: {0}}}}}\n  - {{name: b, containerd: {{dir: {0}}}}}\n", support::containerd_dir().display())).unwrap();
    let mut command = Command::new(support::sgpc_binary());
    command.env("SGPC_STATE_DIR", state.path()).args(["discover", "--cases", "60", "--seed", "3", "--matrix"]).arg(&matrix).arg("--out").arg(out.path());
    let (mut child, mut stdout) = spawn(&mut command, work_root.path());
    // Progress comes every 25 cases per runtime: the runtimes are in the middle of the batch.
    let seen = read_until(&mut stdout, "25/60 cases");
    assert!(!processes_under(work_root.path()).is_empty(), "containerd runs under the work root");
    let status = interrupt(&mut child, libc::SIGINT, "SIGINT");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(exit_code::ERROR), "{seen}\n{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert_eq!(std::fs::read_dir(work_root.path()).unwrap().count(), 0, "the run directories are gone");
    assert!(processes_under(work_root.path()).is_empty(), "no process of the discovery is left");
    assert!(mounts_under(work_root.path()).is_empty(), "no mount of the discovery is left");
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0, "no run record is left for `sgpc clean`");
}
