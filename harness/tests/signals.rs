//! SIGINT and SIGTERM in the middle of `sgpc run`: the run ends as ERROR and leaves nothing.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sgpc::provision::{mounts_under, processes_under};
use sgpc::run::exit_code;

fn interrupt_mid_run(signal: i32, name: &str) {
    let work_root = tempfile::tempdir().unwrap();
    let mut child = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .args(["run", "--jobs", "2", "--containerd"])
        .arg(support::containerd_dir())
        .arg("--work-root")
        .arg(work_root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    // Wait for the first finished case: sandboxes of the cases in flight exist now.
    loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "sgpc ended before any case finished:\n{seen}");
        seen.push_str(&line);
        // A case line: `PASS [   0.969s] ( 1/39) cri-tools/merge`, whatever the catalogue's size.
        if line.contains("s] (") {
            break;
        }
    }
    assert!(!processes_under(work_root.path()).is_empty(), "containerd runs under the work root");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "sgpc did not stop within 60 s of {name}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    seen.push_str(&rest);
    assert_eq!(status.code(), Some(exit_code::ERROR), "{seen}");
    assert!(seen.contains(&format!("interrupted by {name}")), "{seen}");
    assert!(!seen.contains("cleanup incomplete"), "teardown found the runtime's lists empty of the run: {seen}");
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
