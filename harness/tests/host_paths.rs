//! Nothing a run creates lands in, or stays in, the paths a node's own runtime uses: containerd's
//! and runc's state directories, the shim socket directory, the `k8s.io` cgroups, CRI-O's state
//! and image cache. Runs real containerd. One binary of its own with one test in it, so that no
//! other test's runtime is alive while the host paths are compared.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sgpc::outcome::exit_code;
use sgpc::provision::{mounts_under, processes_under};

fn sgpc(state: &Path, work_root: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(support::sgpc_binary());
    command
        .current_dir(support::repo_root())
        .env("SGPC_STATE_DIR", state)
        .args(["run", "--jobs", "1", "--filter", "^(kep-blog|protected-file-access)/", "--work-root"])
        .arg(work_root)
        .arg("--containerd")
        .arg(support::containerd_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_run_leaves_anything_in_the_hosts_runtime_paths_even_after_sigkill() {
    let before = support::host_runtime_paths();
    let state = tempfile::tempdir().unwrap();
    let work_root = tempfile::tempdir().unwrap();

    // A finished run, with critest beside it: its sandboxes and containers are adopted into the
    // run, so that none of them sits in containerd's k8s.io cgroups, even while it runs.
    let report = work_root.path().join("report.json");
    let mut run = sgpc(state.path(), work_root.path()).arg("--critest").arg(support::critest()).arg("--json").arg(&report).spawn().unwrap();
    let mut in_k8s_io = std::collections::BTreeSet::new();
    let status = loop {
        in_k8s_io.extend(support::new_host_runtime_paths(&before).into_iter().filter(|p| p.parent().is_some_and(|d| d.ends_with("k8s.io"))));
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(exit_code::PASS));
    assert!(in_k8s_io.is_empty(), "while the run and critest ran, these sat in containerd's k8s.io cgroups: {in_k8s_io:?}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    std::fs::remove_file(work_root.path().join("report.json")).unwrap();
    let specs = report["critest"]["specs"].as_array().unwrap_or_else(|| panic!("critest ran: {}", report["critest"]));
    assert!(specs.len() == 2 && specs.iter().all(|s| s["outcome"] == "passed"), "{specs:?}");
    assert_eq!(support::new_host_runtime_paths(&before), Vec::<PathBuf>::new(), "a finished run left these in the host's runtime paths");

    // A run killed with a container alive, then `sgpc clean`.
    let mut run = sgpc(state.path(), work_root.path()).spawn().unwrap();
    let run_dir = || std::fs::read_dir(work_root.path()).unwrap().flatten().map(|e| e.path()).next();
    // Kill while a shim's socket and the run's cgroup tree exist, so that there is something
    // to leave behind.
    let alive = || {
        let during = support::new_host_runtime_paths(&before);
        let socket = during.iter().any(|p| p.parent() == Some(Path::new("/run/containerd/s")));
        let run_cgroup = run_dir().and_then(|d| d.file_name().map(|n| n.to_owned())).is_some_and(|id| during.iter().any(|p| p.file_name() == Some(id.as_os_str())));
        socket && run_cgroup
    };
    sgpc::provision::wait_until("a shim socket and the run's own cgroup tree", Duration::from_secs(60), || std::future::ready(alive())).await.unwrap();
    let during = support::new_host_runtime_paths(&before);
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(!during.iter().any(|p| p.parent().is_some_and(|d| d.ends_with("k8s.io"))), "sandboxes sit in containerd's k8s.io cgroups, not the run's own: {during:?}");
    let dir = run_dir().unwrap();
    assert!(!processes_under(&dir).is_empty(), "SIGKILL leaves the runtime running: the test would prove nothing otherwise");

    let output = std::process::Command::new(support::sgpc_binary()).current_dir(support::repo_root()).env("SGPC_STATE_DIR", state.path()).arg("clean").output().unwrap();
    assert_eq!(output.status.code(), Some(exit_code::PASS), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(!dir.exists() && mounts_under(&dir).is_empty());
    assert_eq!(support::new_host_runtime_paths(&before), Vec::<PathBuf>::new(), "after SIGKILL and sgpc clean these stayed in the host's runtime paths");
}
