//! The `sgpc` binary: exit codes and messages.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use sgpc::run::exit_code;

#[test]
fn unreachable_cri_endpoint_is_a_quick_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody-listens.sock");
    let json = dir.path().join("report.json");
    let started = Instant::now();
    let output = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .args(["run", "--filter", "^kep-blog/", "--cri"])
        .arg(format!("unix://{}", socket.display()))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(exit_code::ERROR), "{stdout}");
    assert!(stdout.contains("cannot connect to the CRI endpoint"), "{stdout}");
    assert!(stdout.contains(&socket.display().to_string()), "the message names the endpoint: {stdout}");
    // Not a speed target: a hang detector. Nothing is waited for when the socket is absent.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let verdicts: Vec<&str> = report["cases"].as_array().unwrap().iter().map(|c| c["verdict"]["kind"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["ERROR", "ERROR", "ERROR"]);
}

#[test]
fn bad_scenario_input_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), "name: bad\nsummary: s\nimage: kep-blog\npod:\n  securityContext: {runAsUser: -1}\nexpect:\n  merge: {uid: 0, gid: 0, groups: [0]}\n  strict: {uid: 0, gid: 0, groups: [0]}\n").unwrap();
    let output = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .args(["run", "--cri", "unix:///nonexistent.sock", "--scenarios"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(exit_code::ERROR));
    assert!(stderr.contains("bad.yaml:5: field `pod.securityContext.runAsUser`: -1 is not an id"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing ran: {}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn list_prints_every_case() {
    let output = Command::new(support::sgpc_binary()).current_dir(support::repo_root()).args(["list"]).output().unwrap();
    assert!(output.status.success());
    let listing = String::from_utf8(output.stdout).unwrap();
    assert_eq!(listing.lines().count(), support::catalogue().scenarios.len() * 3);
    assert!(listing.contains("protected-file-access/strict"));
}

#[test]
fn an_oci_runtime_that_refuses_the_spec_is_a_clear_error() {
    // Debian 12's crun 1.8.1 (installed by `make setup`) refuses containerd 2.x's runtime spec.
    let output = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .args(["run", "--filter", "^kep-blog/strict$", "--oci-runtime", "crun=/usr/bin/crun", "--containerd"])
        .arg(support::containerd_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(exit_code::ERROR), "{stdout}");
    assert!(stdout.contains("OCI runtime create failed: unknown version specified"), "{stdout}");
    assert!(stdout.contains("the OCI runtime refused the runtime spec"), "{stdout}");
}
