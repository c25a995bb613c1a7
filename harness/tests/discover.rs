//! `sgpc discover` live: two containerd columns (1.7 and 2.x, runc), a few generated cases, and
//! the emitted minimal case run again with `sgpc run`.

mod support;

use std::process::Command;

use sgpc::discover::generate;
use sgpc::identity::MAX_POD_ID;
use sgpc::scenario::Policy;

/// A seed whose first scenario puts the user in a gid above the API's range through
/// `/etc/group`: what containerd 2.x refuses and 1.7 runs (found by the matrix).
fn seed_with_a_large_gid_membership() -> u64 {
    (1..500)
        .find(|&seed| {
            let catalogue = generate::catalogue(&generate::generate(seed, 1)).unwrap();
            let derivation = sgpc::oracle::derive(&catalogue.images[0], &catalogue.scenarios[0].spec(), Policy::Merge).unwrap();
            let large = derivation.implicit_groups.iter().any(|g| g > MAX_POD_ID);
            large
        })
        .expect("the generator makes large-gid memberships")
}

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn discovery_finds_shrinks_and_emits_the_large_gid_refusal() {
    let seed = seed_with_a_large_gid_membership();
    let dir = tempfile::tempdir().unwrap();
    let matrix = dir.path().join("matrix.yaml");
    std::fs::write(&matrix, "entries:\n  - {name: containerd-1.7-runc, containerd: {debian: trixie}}\n  - {name: containerd-2.x-runc, containerd: {debian: sid}}\n").unwrap();
    let out = dir.path().join("out");
    let output = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .args(["discover", "--cases", "3", "--seed", &seed.to_string(), "--cache", ".cache", "--matrix"])
        .arg(&matrix)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "a divergence is news: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report = json(&out.join("discovery.json"));
    assert_eq!(report["seed"], seed);
    assert_eq!(report["cases"], 3);
    let classes = report["classes"].as_array().unwrap();
    let refusal = classes
        .iter()
        .find(|c| c["key"]["kind"] == "divergence" && c["key"]["sides"].as_array().unwrap().iter().any(|s| s["rule"].as_str().unwrap().contains("was not run")))
        .unwrap_or_else(|| panic!("a refusal class: {}", serde_json::to_string_pretty(classes).unwrap()));
    let sides = refusal["key"]["sides"].as_array().unwrap();
    let side_of = |name: &str| sides.iter().find(|s| s["runtimes"].as_array().unwrap().iter().any(|r| r == name)).unwrap();
    assert_eq!(side_of("containerd-1.7-runc")["verdicts"], serde_json::json!(["PASS"]));
    assert_eq!(side_of("containerd-2.x-runc")["verdicts"], serde_json::json!(["REFUSED"]));
    assert_eq!(refusal["verified"], true, "{refusal}");
    let minimal = &refusal["minimal"];
    assert_eq!(minimal["group"].as_array().map(Vec::len), Some(1), "shrunk to one /etc/group line: {minimal}");
    let line = minimal["group"][0].as_str().unwrap();
    let gid: u64 = line.split(':').nth(2).unwrap().parse().unwrap();
    assert!(gid > u64::from(MAX_POD_ID), "{line}");
    assert!(refusal["cri_request"].as_str().unwrap().starts_with("RunPodSandbox linux.security_context {"), "{refusal}");
    // The expected Strict leak of 1.7 is told apart from the divergence.
    assert!(classes.iter().all(|c| c["key"]["kind"] != "divergence" || c["key"]["sides"].as_array().unwrap().iter().all(|s| !s["verdicts"].to_string().contains("UNSUPPORTED"))));
    let md = std::fs::read_to_string(out.join("discovery.md")).unwrap();
    assert!(md.contains("## Class") && md.contains("uids and gids must be in range"), "{md}");

    // Adding the finding to the catalogue is a copy: `sgpc run` reproduces it from the files.
    let class_dir = out.join("classes").join(format!("c{:02}", refusal["number"].as_u64().unwrap()));
    let report_path = dir.path().join("rerun.json");
    let rerun = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .arg("run")
        .arg("--containerd")
        .arg(support::containerd_dir())
        .arg("--scenarios")
        .arg(class_dir.join("scenarios"))
        .arg("--images")
        .arg(class_dir.join("images"))
        .arg("--json")
        .arg(&report_path)
        .output()
        .unwrap();
    let rerun_stdout = String::from_utf8_lossy(&rerun.stdout);
    assert_eq!(rerun.status.code(), Some(1), "{rerun_stdout}");
    let verdicts: Vec<String> = json(&report_path)["cases"].as_array().unwrap().iter().map(|c| c["verdict"]["kind"].as_str().unwrap().to_string()).collect();
    assert!(verdicts.contains(&"REFUSED".to_string()), "{verdicts:?}\n{rerun_stdout}");
}

#[test]
fn bad_arguments_fail_before_anything_runs() {
    let run = |args: &[&str]| Command::new(support::sgpc_binary()).current_dir(support::repo_root()).arg("discover").args(args).output().unwrap();
    let zero = run(&["--cases", "0"]);
    assert_eq!(zero.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--cases"));
    let missing = run(&["--matrix", "/nonexistent/matrix.yaml", "--out", "/nonexistent-sgpc-out"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/matrix.yaml"), "{}", String::from_utf8_lossy(&missing.stderr));
}
