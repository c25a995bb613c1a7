//! The runtime matrix: file validation, expected outcomes, CRI-O configuration, and the full
//! matrix on this machine (containerd 1.6, 1.7 and 2.x with runc, 2.x with youki).

mod support;

use std::path::Path;
use std::process::Command;

use sgpc::matrix::{self, Expected, Outcome};
use sgpc::provision::crio;
use sgpc::scenario::{CaseId, Policy};

fn load(text: &str) -> Result<Vec<matrix::Entry>, sgpc::input::InputError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("matrix.yaml");
    std::fs::write(&path, text).unwrap();
    matrix::load(&path, &support::catalogue())
}

#[test]
fn shipped_matrix_loads() {
    let entries = matrix::load(&support::repo_root().join("matrix.yaml"), &support::catalogue()).unwrap();
    assert!(entries.len() >= 4);
    let nodes = matrix::load(&support::repo_root().join("matrix-node.yaml"), &support::catalogue()).unwrap();
    let versions: std::collections::BTreeSet<String> = nodes.iter().filter_map(|e| e.target.node.as_ref()).map(|n| n.kubernetes.to_string()).collect();
    assert!(versions.len() >= 2 && versions.iter().any(|v| v.starts_with("v1.34.")), "{versions:?}");
    let releases = matrix::load(&support::repo_root().join("matrix-releases.yaml"), &support::catalogue()).unwrap();
    assert!(releases.iter().all(|e| matches!(e.target.source, sgpc::target::Source::ContainerdModule { .. } | sgpc::target::Source::CrioModule { .. })), "every release column is built from its module");
    assert!(entries.iter().any(|e| matches!(e.target.source, sgpc::target::Source::CrioModule { .. })), "make test runs a CRI-O built from its module");
}

#[test]
fn a_live_node_column_loads_and_expects_kubelet_to_reject_strict_where_the_runtime_cannot() {
    let entries = load("entries:\n  - {name: a, containerd: {debian: trixie}, kubernetes: {version: v1.37.2}, expect: {outcome: no-strict, exceptions: {kep-blog/default: REJECTED}}}\n").unwrap();
    let node = entries[0].target.node.as_ref().expect("a node column");
    assert_eq!(node.kubernetes.to_string(), "v1.37.2");
    let expected = entries[0].expect.as_ref().unwrap();
    let catalogue = support::catalogue();
    let strict = CaseId { scenario: "kep-blog".into(), policy: Policy::Strict };
    assert_eq!(matrix::expected_verdicts(expected, &catalogue, &strict), vec![sgpc::verdict::Verdict::Rejected]);
    let err = load("entries:\n  - {name: a, cri: /x, kubernetes: {version: v1.37.2}}\n").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("entries[0].kubernetes"), "{err}");
    let err = load("entries:\n  - {name: a, containerd: {debian: sid}, kubernetes: {version: latest}}\n").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("entries[0].kubernetes.version"), "{err}");
    let err = load("entries:\n  - {name: a, containerd: {debian: sid}, expect: {outcome: conformant, exceptions: {kep-blog/strict: REJECTED}}}\n").unwrap_err();
    assert!(err.to_string().contains("REJECTED"), "REJECTED needs a live kubelet: {err}");
}

#[test]
fn matrix_file_errors_name_the_field() {
    let err = load("entries:\n  - {name: a, containerd: {debian: sid, dir: /x}}\n").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("entries[0].containerd"), "{err}");
    let err = load("entries:\n  - {name: a, cri: /x}\n  - {name: a, cri: /y}\n").unwrap_err();
    assert!(err.to_string().contains("used by another entry"), "{err}");
    let err = load("entries:\n  - {name: a, cri: /x, expect: {outcome: no-strict, exceptions: {nope/strict: PASS}}}\n").unwrap_err();
    assert!(err.to_string().contains("not a case id"), "{err}");
    let err = load("entries:\n  - {name: a, cri: /x, expect: {outcome: conformant, exceptions: {kep-blog/strict: pass}}}\n").unwrap_err();
    assert!(err.to_string().contains("expected one of"), "{err}");
    let err = load("entries:\n  - {name: a, cri: /x, ociRuntime: kata}\n").unwrap_err();
    assert!(err.to_string().contains("not a known runtime"), "{err}");
    let err = load("entries:\n  - {name: a, cri: /x, expect: {outcome: leaky}}\n").unwrap_err();
    assert!(err.to_string().contains("leaky"), "{err}");
    // Only an exact 2.x release reaches a go.mod: the module path is containerd/v2's.
    for version in ["v1.7.24", "v2.4", "latest", "v2.4.2\nreplace x => ./y"] {
        let err = load(&format!("entries:\n  - {{name: a, containerd: {{module: {version:?}}}}}\n")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("entries[0].containerd.module"), "{version}: {err}");
    }
    let entries = load("entries:\n  - {name: a, containerd: {module: v2.4.2}}\n").unwrap();
    assert!(matches!(&entries[0].target.source, sgpc::target::Source::ContainerdModule { version } if version.to_string() == "v2.4.2"));
    for version in ["v2.4.2", "1.36.3", "v1.36", "latest"] {
        let err = load(&format!("entries:\n  - {{name: a, crio: {{module: {version:?}}}}}\n")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("entries[0].crio.module"), "{version}: {err}");
    }
    let err = load("entries:\n  - {name: a, crio: {dir: /x}, ociRuntime: runc}\n").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("entries[0].ociRuntime"), "a crio directory runs its own runc or crun: {err}");
    let err = load("entries:\n  - {name: a, crio: {module: v1.36.3, dir: /x}}\n").unwrap_err();
    assert_eq!(err.field.as_deref(), Some("entries[0].crio"), "{err}");
    let entries = load("entries:\n  - {name: a, crio: {module: v1.36.3}, ociRuntime: {runc: v1.4.4}}\n").unwrap();
    assert!(matches!(&entries[0].target.source, sgpc::target::Source::CrioModule { version } if version.to_string() == "v1.36.3"));
}

#[test]
fn no_strict_expects_leak_exactly_where_the_image_adds_groups() {
    let catalogue = support::catalogue();
    let expected = Expected { outcome: Outcome::NoStrict, kubernetes: false, exceptions: Default::default(), user_namespaces: false };
    let label = |scenario: &str, policy| {
        let verdicts = matrix::expected_verdicts(&expected, &catalogue, &CaseId { scenario: scenario.into(), policy });
        assert_eq!(verdicts.len(), 1, "{scenario}: every reading of its /etc/group agrees: {verdicts:?}");
        verdicts[0].to_string()
    };
    // From the matrix issue: every Strict case that involves an image group is UNSUPPORTED+LEAK.
    assert_eq!(label("kep-blog", Policy::Strict), "UNSUPPORTED+LEAK");
    assert_eq!(label("protected-file-access", Policy::Strict), "UNSUPPORTED+LEAK");
    assert_eq!(label("many-groups", Policy::Strict), "UNSUPPORTED+LEAK");
    // No image group in play: the image has none, or the pod asked for it explicitly.
    assert_eq!(label("no-group-file", Policy::Strict), "UNSUPPORTED");
    assert_eq!(label("repeated-groups", Policy::Strict), "UNSUPPORTED");
    assert_eq!(label("kep-blog", Policy::Merge), "PASS");
    assert_eq!(label("kep-blog", Policy::Default), "PASS");
}

fn fake_crio_dir(with: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in with {
        std::fs::write(dir.path().join(name), "").unwrap();
    }
    dir
}

#[test]
fn crio_missing_binaries_are_named() {
    let dir = fake_crio_dir(&["crio", "pinns"]);
    let no_conmon = dir.path().join("no-such-conmon");
    let err = crio::find_binaries_with(dir.path(), &no_conmon, None).unwrap_err().to_string();
    assert!(err.contains("conmon (neither"), "{err}");
    assert!(err.contains("runc or crun"), "{err}");
    assert!(!err.contains("/crio,"), "crio is present: {err}");
    let runtime = sgpc::provision::containerd::OciRuntime { handler: "runc".into(), binary: dir.path().join("no-such-runc") };
    let err = crio::find_binaries_with(dir.path(), &dir.path().join("crio"), Some(&runtime)).unwrap_err().to_string();
    assert!(err.contains("the OCI runtime") && err.contains("no-such-runc") && !err.contains("conmon (neither"), "{err}");
}

#[test]
fn crio_from_its_module_takes_the_fallback_conmon_and_the_given_runtime() {
    let dir = fake_crio_dir(&["crio", "pinns", "crun"]);
    let runtime = sgpc::provision::containerd::OciRuntime { handler: "runc".into(), binary: dir.path().join("pinns") };
    let bins = crio::find_binaries_with(dir.path(), &dir.path().join("crio"), Some(&runtime)).unwrap();
    assert_eq!(bins.conmon, dir.path().join("crio"));
    assert_eq!(bins.oci_runtime, ("runc".to_string(), dir.path().join("pinns")), "the given runtime wins over the directory's crun");
}

/// The house issue: `--crio` was checked before anything ran, `--containerd` only once the
/// images were built and the registry started.
#[test]
fn containerd_flag_fails_at_once_naming_the_missing_binary() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(support::sgpc_binary()).current_dir(support::repo_root()).args(["run", "--containerd"]).arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(sgpc::outcome::exit_code::ERROR));
    assert!(stderr.contains(&format!("{} is missing", dir.path().join("containerd").display())), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing ran: {}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn crio_flag_fails_at_once_naming_the_missing_binary() {
    let dir = fake_crio_dir(&[]);
    let output = Command::new(support::sgpc_binary()).current_dir(support::repo_root()).args(["run", "--crio"]).arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(sgpc::outcome::exit_code::ERROR));
    assert!(stderr.contains(&format!("missing {}", dir.path().join("crio").display())), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing ran");
}

#[test]
fn crio_config_is_private_and_complete() {
    let bin = fake_crio_dir(&["crio", "conmon", "pinns", "crun"]);
    let run = tempfile::tempdir().unwrap();
    let opts = crio::CrioOptions {
        bin_dir: bin.path().to_path_buf(),
        oci_runtime: None,
        dir: run.path().to_path_buf(),
        registry_host: "127.0.0.1:5555".into(),
        registry_credentials: Some(sgpc::provision::registry::Credentials { username: "u".into(), password: "p".into() }),
        pause_image: "127.0.0.1:5555/sgpc/pause:abc".into(),
    };
    let bins = crio::find_binaries_with(bin.path(), &bin.path().join("no-such-conmon"), None).unwrap();
    assert_eq!(bins.oci_runtime.0, "crun");
    let path = crio::write_config(&opts, &bins, true).unwrap();
    let config: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let crio = &config["crio"];
    let inside = |v: &toml::Value| Path::new(v.as_str().unwrap()).starts_with(run.path());
    assert!(inside(&crio["root"]) && inside(&crio["runroot"]) && inside(&crio["api"]["listen"]), "{crio:#?}");
    assert_eq!(crio["runtime"]["cgroup_manager"].as_str(), Some("cgroupfs"));
    assert_eq!(crio["runtime"]["default_runtime"].as_str(), Some("crun"));
    let runtime = &crio["runtime"]["runtimes"]["crun"];
    assert_eq!(runtime["runtime_path"].as_str().map(Path::new), Some(run.path().join(crio::OOM_WRAPPER).as_path()));
    assert_eq!(runtime["monitor_path"].as_str().map(Path::new), Some(bin.path().join("conmon").as_path()));
    assert_eq!(crio["image"]["pause_image"].as_str(), Some("127.0.0.1:5555/sgpc/pause:abc"));
    // CRI-O >= 1.35 ignores crio.conf's insecure_registries: registries.conf must say it.
    assert!(crio["image"].get("insecure_registries").is_none(), "{crio:#?}");
    assert_eq!(crio["image"]["pause_command"].as_str(), Some(""), "the pause image's own entrypoint, not /pause");
    let registries: toml::Table = std::fs::read_to_string(run.path().join("registries.conf")).unwrap().parse().unwrap();
    assert_eq!(registries["registry"][0]["location"].as_str(), Some("127.0.0.1:5555"));
    assert_eq!(registries["registry"][0]["insecure"].as_bool(), Some(true));
    // critest's image name resolves to sgpc's registry, with the credentials in CRI-O's own
    // auth file (a pull through a prefix does not use the CRI request's).
    assert_eq!(registries["registry"][1]["prefix"].as_str(), Some(sgpc::provision::MIRRORED_REGISTRY));
    assert_eq!(registries["registry"][1]["location"].as_str(), Some("127.0.0.1:5555"));
    assert_eq!(Path::new(crio["image"]["global_auth_file"].as_str().unwrap()), run.path().join("auth.json"));
    let auth: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.path().join("auth.json")).unwrap()).unwrap();
    assert_eq!(auth["auths"]["127.0.0.1:5555"]["auth"], "dTpw", "base64 of u:p");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(run.path().join("auth.json")).unwrap().permissions()) & 0o777, 0o600);
    // CRI-O's own source, not sgpc's: internal/criocli/criocli.go declares the (hidden) flag
    // --registries-conf with EnvVars CONTAINER_REGISTRIES_CONF; podman's CONTAINERS_... is not read.
    let command = crio::command(&opts, &bins, &path);
    let envs: Vec<(String, String)> = command.as_std().get_envs().filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string()))).collect();
    let registries_file = run.path().join("registries.conf").display().to_string();
    assert!(envs.contains(&("CONTAINER_REGISTRIES_CONF".to_string(), registries_file)), "{envs:?}");
    let policy: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.path().join("policy.json")).unwrap()).unwrap();
    assert_eq!(policy["default"][0]["type"], "insecureAcceptAnything");
    // Without the wrapper, the runtime itself is configured.
    let path = crio::write_config(&opts, &bins, false).unwrap();
    let config: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    assert_eq!(config["crio"]["runtime"]["runtimes"]["crun"]["runtime_path"].as_str().map(Path::new), Some(bin.path().join("crun").as_path()));
}

#[test]
fn oom_wrapper_clamps_negative_scores_and_runs_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), r#"{"process": {"oomScoreAdj": -998, "user": {"uid": 0}}}"#).unwrap();
    // A stand-in OCI runtime that records its arguments.
    let runtime = dir.path().join("runtime.sh");
    std::fs::write(&runtime, format!("#!/bin/sh\necho \"$@\" > {}/args\n", dir.path().display())).unwrap();
    std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let wrapper = dir.path().join("wrapper.sh");
    std::fs::write(&wrapper, crio::oom_wrapper(&runtime)).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let status = Command::new(&wrapper).args(["create", "--bundle"]).arg(&bundle).arg("ctr-id").status().unwrap();
    assert!(status.success());
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["oomScoreAdj"], 0);
    let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
    assert_eq!(args.trim(), format!("create --bundle {} ctr-id", bundle.display()));
}

/// `sgpc matrix ARGS --out OUT`, which must exit 0: its terminal output and `matrix.json`.
fn run_matrix(args: &[&std::ffi::OsStr], out: &Path) -> (String, serde_json::Value) {
    let output = Command::new(support::sgpc_binary()).current_dir(support::repo_root()).arg("matrix").args(args).arg("--out").arg(out).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report = serde_json::from_str(&std::fs::read_to_string(out.join("matrix.json")).unwrap()).unwrap();
    (stdout, report)
}

#[test]
fn matrix_shows_the_expected_outcome_on_this_machine() {
    let out = tempfile::tempdir().unwrap();
    let (_, report) = run_matrix(&[], out.path());
    let column = |name: &str| report["columns"].as_array().unwrap().iter().position(|c| c["name"] == name).unwrap_or_else(|| panic!("column {name}"));
    let cell = |case: &str, col: usize| {
        let row = report["rows"].as_array().unwrap().iter().find(|r| format!("{}/{}", r["case"]["scenario"].as_str().unwrap(), r["case"]["policy"].as_str().unwrap()) == case).unwrap();
        row["cells"][col]["label"].as_str().unwrap().to_string()
    };
    // The matrix issue's expected outcome, independent of matrix.yaml's declarations.
    for name in ["containerd-1.6-runc", "containerd-1.7-runc"] {
        let c = column(name);
        assert_eq!(report["columns"][c]["runtime"]["supplemental_groups_policy"], false, "{name}");
        assert_eq!(cell("kep-blog/strict", c), "UNSUPPORTED+LEAK", "{name}");
        assert_eq!(cell("protected-file-access/strict", c), "UNSUPPORTED+LEAK", "{name}");
        assert_eq!(cell("kep-blog/merge", c), "PASS", "{name}");
    }
    for name in ["containerd-1.6-runc", "containerd-1.7-runc", "containerd-2.x-runc", "containerd-2.x-youki", "containerd-2.4-runc"] {
        let c = column(name);
        for case in ["same-name-group/default", "same-name-group/merge"] {
            assert_eq!(cell(case, c), "FAIL", "{name}: containerd/containerd#11937");
            let row = report["rows"].as_array().unwrap().iter().find(|r| format!("{}/{}", r["case"]["scenario"].as_str().unwrap(), r["case"]["policy"].as_str().unwrap()) == case).unwrap();
            assert!(row["cells"][c]["reasons"][0].as_str().unwrap().contains("containerd/containerd#11937"), "{name} {case}: the verdict names the bug");
        }
    }
    for name in ["containerd-2.x-runc", "containerd-2.x-youki"] {
        let c = column(name);
        assert_eq!(
            report["columns"][c]["summary"],
            "non-conformant: 2 failures; refuses 4 Pods the Kubernetes API accepts; 6 cases need what the target does not offer (NOT RUN)",
            "{name}: only the two same-name cases fail, gids above 2147483647 are refused, and the hostUsers: false cases are not run"
        );
        assert_eq!(cell("userns-kep-blog/strict", c), "NOT RUN", "{name}");
        for case in ["gid-2147483648/merge", "gid-4294967294/default"] {
            assert_eq!(cell(case, c), "REFUSED", "{name} {case}");
        }
        assert_eq!(report["columns"][c]["oci_runtime"], if name.ends_with("youki") { "youki" } else { "runc" });
    }
    // containerd 2.4 built from its Go module, over Debian's runc 1.1 and over runc 1.4 built
    // from its module: a Pod the Kubernetes API accepts runs, so only the two same-name cases
    // fail.
    for (name, oci_runtime) in [("containerd-2.4-runc", "runc"), ("containerd-2.4-runc-1.4", "runc v1.4.4 (Go module)")] {
        let c = column(name);
        assert_eq!(report["columns"][c]["summary"], "non-conformant: 2 failures; 6 cases need what the target does not offer (NOT RUN)", "{name}");
        assert_eq!(report["columns"][c]["runtime"]["supplemental_groups_policy"], true, "{name}");
        assert_eq!(report["columns"][c]["oci_runtime"], oci_runtime, "{name}");
        for case in ["gid-2147483648/merge", "gid-4294967294/default", "kep-blog/strict", "protected-file-access/strict", "repeated-groups/merge"] {
            assert_eq!(cell(case, c), "PASS", "{name} {case}");
        }
    }
    // CRI-O 1.36 built from its Go module, over runc 1.1 and 1.4: every case PASS, the
    // same-name group and the gids above 2147483647 included.
    // Only runc 1.4 mounts ID-mapped: the hostUsers: false cases run there alone.
    for (name, oci_runtime, summary, userns) in [
        ("cri-o-1.36-runc", "runc", "conformant on the cases it ran; 6 cases need what the target does not offer (NOT RUN)", "NOT RUN"),
        ("cri-o-1.36-runc-1.4", "runc v1.4.4 (Go module)", "conformant", "PASS"),
    ] {
        let c = column(name);
        assert_eq!(report["columns"][c]["summary"], summary, "{name}");
        assert_eq!(cell("userns-kep-blog/strict", c), userns, "{name}");
        assert_eq!(report["columns"][c]["runtime"]["supplemental_groups_policy"], true, "{name}");
        assert_eq!(report["columns"][c]["oci_runtime"], oci_runtime, "{name}");
        for case in ["same-name-group/merge", "gid-4294967294/default", "kep-blog/strict"] {
            assert_eq!(cell(case, c), "PASS", "{name} {case}");
        }
    }
    for c in report["columns"].as_array().unwrap() {
        assert_eq!(c["deviations"].as_array().map(Vec::len), Some(0), "{}: {}", c["name"], c["deviations"]);
    }
    // Divergences, from the verdict issue: containerd 2.x refuses what 1.6 and 1.7 run; every
    // containerd agrees on the same-name group (a model failure, no divergence); the Strict
    // leaks of 1.6 and 1.7 are the expected kind.
    let divergence = |case: &str| report["divergences"].as_array().unwrap().iter().find(|d| format!("{}/{}", d["case"]["scenario"].as_str().unwrap(), d["case"]["policy"].as_str().unwrap()) == case).cloned();
    let refusal = divergence("gid-4294967294/merge").expect("containerd 2.x refusing a large gid diverges from 1.6 and 1.7");
    assert_eq!(refusal["only_missing_feature"], false);
    let behaviours = refusal["behaviours"].as_array().unwrap();
    assert_eq!(behaviours.len(), 2, "{refusal}");
    let refused = behaviours.iter().find(|b| b["attached"] == "refused the Pod").expect("a refusing side");
    assert_eq!(refused["runtimes"], serde_json::json!(["containerd-2.x-runc", "containerd-2.x-youki"]));
    let ran = behaviours.iter().find(|b| b["attached"] != "refused the Pod").unwrap();
    assert_eq!(ran["runtimes"], serde_json::json!(["containerd-1.6-runc", "containerd-1.7-runc", "containerd-2.4-runc", "containerd-2.4-runc-1.4", "cri-o-1.36-runc", "cri-o-1.36-runc-1.4"]));
    assert_eq!(ran["matches"], "the model's outcome");
    let same_name = divergence("same-name-group/merge").expect("CRI-O attaches the group every containerd leaves out");
    let attached: Vec<&str> = same_name["behaviours"].as_array().unwrap().iter().map(|b| b["matches"].as_str().unwrap()).collect();
    assert!(attached.contains(&"the model's outcome"), "CRI-O's side is the model's: {same_name}");
    assert_eq!(divergence("kep-blog/strict").expect("1.6 and 1.7 leak")["only_missing_feature"], true);
    assert_eq!(divergence("kep-blog/merge"), None);
    let html = std::fs::read_to_string(out.path().join("matrix.html")).unwrap();
    assert!(html.contains("class=\"leak\"") && html.contains("class=\"pass\""));
    let md = std::fs::read_to_string(out.path().join("matrix.md")).unwrap();
    assert!(md.contains("**UNSUPPORTED+LEAK**"));
    assert!(md.contains("| `gid-4294967294/merge` | containerd-2.x-runc, containerd-2.x-youki | refused the Pod |"), "{md}");
    assert!(html.contains("title=\"runtimes disagree on this case\""), "the divergent cells are marked");
}


/// critest beside sgpc on the same runtimes (the releases issue): critest's Strict spec is
/// skipped, a green run, on containerd 1.7, where sgpc finds the image's group leaking under
/// Strict; on containerd 2.4 and CRI-O 1.36 both pass.
#[test]
fn critest_skips_where_sgpc_finds_the_strict_leak() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("matrix.yaml");
    std::fs::write(&file, "entries:\n  - {name: c17, containerd: {debian: trixie}, expect: {outcome: no-strict}}\n  - {name: c24, containerd: {module: v2.4.2}, expect: {outcome: conformant}}\n  - {name: crio136, crio: {module: v1.36.3}, expect: {outcome: conformant}}\n").unwrap();
    let critest = support::critest();
    let (stdout, report) = run_matrix(&["--filter".as_ref(), "^cri-tools/".as_ref(), "--critest".as_ref(), critest.as_os_str(), "--file".as_ref(), file.as_os_str()], dir.path());
    let columns = report["columns"].as_array().unwrap();
    let strict = report["rows"].as_array().unwrap().iter().find(|r| r["case"]["policy"] == "strict").unwrap();
    for (i, (name, outcome, sgpc)) in [("c17", "skipped", "UNSUPPORTED+LEAK"), ("c24", "passed", "PASS"), ("crio136", "passed", "PASS")].into_iter().enumerate() {
        assert_eq!(columns[i]["name"], name);
        let specs = columns[i]["critest"]["specs"].as_array().unwrap_or_else(|| panic!("{name}: critest ran: {}", columns[i]["critest"]));
        assert!(specs.len() == 2 && specs.iter().all(|s| s["outcome"] == outcome), "{name}: {specs:?}");
        assert_eq!(strict["cells"][i]["label"], sgpc, "{name}");
    }
    assert!(stdout.contains("critest v1.37.0: 2 skipped (The runtime does not support SupplementalGroupsPolicy feature)"), "{stdout}");
}
