//! The `sgpc` binary: exit codes and messages.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use sgpc::outcome::exit_code;

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

/// The binary carries its catalogue: copied alone into an empty directory, with nothing on
/// `PATH`, it lists every case and builds every image (before, both failed: "scenarios: cannot
/// list directory"); a directory given still wins, and `sgpc list` says which is in use.
#[test]
fn the_binary_alone_carries_the_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("sgpc");
    std::fs::copy(support::sgpc_binary(), &binary).unwrap();
    let sgpc = |args: &[&str]| Command::new(&binary).current_dir(dir.path()).env_clear().env("PATH", "/nonexistent").args(args).output().unwrap();
    let output = sgpc(&["list"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), support::catalogue().scenarios.len() * 3);
    assert!(String::from_utf8_lossy(&output.stderr).contains("catalogue: scenarios built in, images built in"));
    let output = sgpc(&["images", "build", "--out", "archives"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let archives = std::fs::read_dir(dir.path().join("archives")).unwrap().count();
    assert_eq!(archives, support::catalogue().images.len() + 1, "every recipe and the pause image");

    let scenarios = support::repo_root().join("scenarios");
    let output = sgpc(&["list", "--filter", "^kep-blog/", "--scenarios", scenarios.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&output.stderr).contains(&format!("catalogue: scenarios from {}, images built in", scenarios.display())));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = sgpc(&["list", "--scenarios", empty.to_str().unwrap()]);
    assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("no *.yaml files found"), "a directory given is used, never the built-in one behind it");
}

/// `sgpc plugin` replaces what lies at its output paths, a planted symlink included, and never
/// writes through one; a repository no reference could name is refused before anything is built.
#[test]
fn the_plugin_files_replace_a_planted_symlink_and_a_bad_repository_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plugin");
    std::fs::create_dir(&out).unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, out.join("sgpc-plugin.yaml")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("dangling"), out.join("sgpc-plugin.oci.tar")).unwrap();
    let plugin = |args: &[&str]| Command::new(support::sgpc_binary()).arg("plugin").arg("--out").arg(&out).args(args).output().unwrap();
    let output = plugin(&["--repository", "UPPER case/\u{1b}[31mred"]);
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected an image repository"));
    let output = plugin(&[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    assert!(!dir.path().join("dangling").exists(), "nothing was written through the dangling link");
    for name in ["sgpc-plugin.yaml", "sgpc-plugin.oci.tar"] {
        assert!(std::fs::symlink_metadata(out.join(name)).unwrap().is_file(), "{name} is a file of its own");
    }
}

/// The binary alone, in an empty directory with nothing on `PATH` and no CA certificate (its
/// registry client once panicked without one), judges the whole catalogue
/// on a containerd it did not start (`--cri`): every case is judged (no ERROR), and only
/// containerd's known findings and the Pods it cannot run (hostUsers: false) are not PASS. The
/// images it ran (the report's digests, built again by the same binary) hold no host file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_alone_judges_a_runtime_it_did_not_start() {
    let catalogue = support::catalogue();
    let users: Vec<sgpc::scenario::CaseId> = catalogue.cases().into_iter().filter(|c| c.scenario == "cri-tools").collect();
    let runtime = sgpc::run::Session::start(&support::containerd_config(), &catalogue, &users).await.expect("the node's runtime starts");
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("sgpc");
    std::fs::copy(support::sgpc_binary(), &binary).unwrap();
    let output = Command::new(&binary)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", "/nonexistent")
        // Where rustls looks for CA certificates when these are set: nothing.
        .env("SSL_CERT_FILE", dir.path().join("no-ca-certificates.pem"))
        .env("SSL_CERT_DIR", dir.path().join("no-ca-certificates"))
        .env("SGPC_STATE_DIR", dir.path().join("state"))
        .args(["run", "--cri", &runtime.runtime.endpoint, "--json", "report.json"])
        .output()
        .unwrap();
    runtime.teardown().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(exit_code::FAIL), "containerd/containerd#11937 is a FAIL: {stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    support::assert_containerd_2_judged_everything(&report, &catalogue, &stdout);
    let built = Command::new(&binary).current_dir(dir.path()).env_clear().env("PATH", "/nonexistent").args(["images", "build", "--out", "archives"]).output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let listing = String::from_utf8_lossy(&built.stdout);
    let images = report["images"].as_array().unwrap();
    assert!(images.len() > 1, "the run records the images it ran: {images:?}");
    for image in images {
        let line = format!("{} {}", image["name"].as_str().unwrap(), image["manifest_digest"].as_str().unwrap());
        assert!(listing.lines().any(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ") == line), "the run's image {line} is the one built again: {listing}");
    }
    support::assert_archives_hold_no_host_file(&dir.path().join("archives"));
}

/// A live run's bundle verifies with the binary that wrote it (containerd 2.x, a FAIL among
/// the cases: containerd/containerd#11937).
#[test]
fn a_live_runs_bundle_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("evidence.tar.gz");
    let output = Command::new(support::sgpc_binary())
        .current_dir(dir.path())
        .args(["run", "--filter", "^(kep-blog|same-name-group)/", "--containerd"])
        .arg(support::containerd_dir())
        .arg("--bundle")
        .arg(&bundle)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(exit_code::FAIL), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(String::from_utf8_lossy(&output.stderr).contains("sha256"), "the run prints the bundle's digest");
    let verified = Command::new(support::sgpc_binary()).arg("verify").arg(&bundle).output().unwrap();
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(verified.status.code(), Some(exit_code::PASS), "{stdout}");
    assert!(stdout.contains("0 findings; 6 cases judged again"), "{stdout}");
    assert!(stdout.contains("; the built-in catalogue"), "{stdout}");

    // What the runtime said of itself: CRI `Status` with its conditions and `info` map.
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    assert!(Command::new("tar").arg("-xzf").arg(&bundle).current_dir(&unpacked).status().unwrap().success());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(unpacked.join("sgpc/report.json")).unwrap()).unwrap();
    let status = &report["runtime"]["cri_status"];
    let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "RuntimeReady").unwrap_or_else(|| panic!("{status}"));
    assert_eq!(ready["status"], true);
    assert!(status["info"]["config"].is_object(), "containerd's verbose Status gives its CRI config: {status}");
    assert_eq!(status["features"]["supplemental_groups_policy"], true);
}

/// A filter longer than a bundle may record is refused where it is given, not only when its
/// bundle is verified.
#[test]
fn a_filter_longer_than_a_bundle_may_record_is_refused() {
    let long = "a".repeat(sgpc::outcome::MAX_FILTER_BYTES + 1);
    let output = Command::new(support::sgpc_binary()).args(["list", "--filter", &long]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("longer than the limit"), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn an_oci_runtime_that_refuses_the_spec_is_a_refusal_with_its_hint() {
    // Debian 12's crun 1.8.1 (installed by `make setup`) refuses containerd 2.x's runtime spec.
    let output = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .args(["run", "--filter", "^kep-blog/strict$", "--oci-runtime", "crun=/usr/bin/crun", "--containerd"])
        .arg(support::containerd_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The runtime stack refused a valid Pod: its finding (REFUSED, exit 1), not sgpc's ERROR.
    assert_eq!(output.status.code(), Some(exit_code::FAIL), "{stdout}");
    assert!(stdout.contains("REFUSED ["), "{stdout}");
    assert!(stdout.contains("OCI runtime create failed: unknown version specified"), "{stdout}");
    assert!(stdout.contains("the OCI runtime refused the runtime spec"), "{stdout}");
}

#[test]
fn zero_jobs_is_an_error() {
    let output = Command::new(support::sgpc_binary()).current_dir(support::repo_root()).args(["run", "--cri", "unix:///nonexistent.sock", "--jobs", "0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(exit_code::ERROR));
    assert!(String::from_utf8_lossy(&output.stderr).contains("'--jobs"), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn an_unwritable_report_fails_before_anything_runs() {
    let started = Instant::now();
    let output = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .args(["run", "--json", "/proc/version", "--containerd"])
        .arg(support::containerd_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(exit_code::ERROR), "{stderr}");
    assert!(stderr.contains("/proc/version"), "the error names the path: {stderr}");
    assert!(output.stdout.is_empty(), "no case ran: {}", String::from_utf8_lossy(&output.stdout));
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

/// Owner, mode and contents of every entry below `dir`.
fn snapshot(dir: &std::path::Path) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    let mut entries = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let data = if meta.is_file() { std::fs::read(&path).unwrap() } else { vec![] };
        entries.push((path.display().to_string(), meta.uid(), meta.gid(), meta.mode(), data));
    }
    let meta = std::fs::metadata(dir).unwrap();
    entries.push((dir.display().to_string(), meta.uid(), meta.gid(), meta.mode(), vec![]));
    entries.sort();
    entries
}

#[test]
fn no_scenario_reaches_outside_the_run_directory() {
    let outside = tempfile::tempdir().unwrap();
    let canary = outside.path().join("canary");
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("keep"), "untouched\n").unwrap();
    let before = snapshot(&canary);
    let climb = "../".repeat(24);
    let relative = canary.strip_prefix("/").unwrap().display().to_string();
    let escapes = [
        (format!("x/{climb}{relative}"), "/protected".to_string(), "volumes[0].name"),
        ("protected".to_string(), format!("/{climb}{relative}"), "volumes[0].mountPath"),
        ("protected".to_string(), "/../../etc".to_string(), "volumes[0].mountPath"),
    ];
    for (name, mount_path, field) in escapes {
        let scenarios = tempfile::tempdir().unwrap();
        let token = format!("{}/token", mount_path.trim_end_matches('/'));
        std::fs::write(
            scenarios.path().join("escape.yaml"),
            format!(
                "name: escape\nsummary: s\nimage: kep-blog\npod:\n  securityContext: {{runAsUser: 1000, supplementalGroupsPolicy: Strict}}\nvolumes:\n  - name: {name:?}\n    mountPath: {mount_path:?}\n    protectedDir: {{gid: 50000}}\nexpect:\n  merge: {{uid: 1000, gid: 1000, groups: [1000, 50000], access: {{{token:?}: allowed}}}}\n  strict: {{uid: 1000, gid: 1000, groups: [1000], access: {{{token:?}: denied}}}}\n"
            ),
        )
        .unwrap();
        let work_root = tempfile::tempdir().unwrap();
        let output = Command::new(support::sgpc_binary())
            .current_dir(support::repo_root())
            .args(["run", "--scenarios"])
            .arg(scenarios.path())
            .arg("--work-root")
            .arg(work_root.path())
            .arg("--containerd")
            .arg(support::containerd_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(exit_code::ERROR), "{name} {mount_path}: {stderr}");
        assert!(stderr.contains(&format!("field `{field}`")), "{name} {mount_path}: {stderr}");
        assert_eq!(snapshot(&canary), before, "{name} {mount_path} changed the canary directory");
        assert_eq!(std::fs::read_dir(work_root.path()).unwrap().count(), 0, "nothing was created");
    }
}

#[test]
fn list_explain_prints_the_rules_behind_each_expectation() {
    let explain = |filter: &str| {
        let output = Command::new(support::sgpc_binary()).current_dir(support::repo_root()).args(["list", "--explain", "--filter", filter]).output().unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    };
    // Each rule with its source.
    let text = explain("^(kep-blog|fsgroup)/strict$");
    for line in [
        "expect uid=1000 gid=3000 groups={3000 4000}",
        "uid 1000: runAsUser [Kubernetes API SecurityContext.runAsUser]",
        "gid 3000: runAsGroup [Kubernetes API SecurityContext.runAsGroup]",
        "group 4000: supplementalGroups [Kubernetes API PodSecurityContext.supplementalGroups]",
        "group 2000: fsGroup [Kubernetes API PodSecurityContext.fsGroup]",
        "groups {50000} of the image's /etc/group: left out [KEP-3619 Strict]",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let text = explain("^(image-user-name-group|crlf-group-file)/merge$");
    for line in [
        "uid 1000: image USER \"alice:other\" as kubelet sends it, no runAsUser [kubelet getImageUser; OCI image spec config User; kubernetes#61967]",
        "gid 1000: the /etc/passwd entry of \"alice\" [kubelet's CRI mapping: no run_as_group, the user's passwd gid]",
        "groups {50000}: the image's /etc/group lists the user [KEP-3619 Merge; initgroups(3) membership]",
        "also allowed, groups {1000 50000 60000}: ",
        "[the specs are silent: POSIX defines no group file, group(5) no comments, blanks or line endings]",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

/// A containerd without network whose sandbox image is the usual registry.k8s.io pause: every
/// sandbox fails. sgpc says so once, before the catalogue, naming the image and the way out,
/// and its reports still name the runtime that answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_runtime_that_cannot_start_sandboxes_is_one_clear_error() {
    use sgpc::provision::containerd::{Containerd, ContainerdOptions, OciRuntime};
    let dir = tempfile::tempdir().unwrap();
    let opts = ContainerdOptions {
        bin_dir: support::containerd_dir(),
        oci_runtimes: vec![OciRuntime::runc()],
        dir: dir.path().join("containerd"),
        registry_host: "127.0.0.1:1".into(),
        pause_image: "registry.k8s.io/pause:3.6".into(),
    };
    let containerd = Containerd::start(&opts).await.expect("containerd starts");
    let reports = tempfile::tempdir().unwrap();
    let (json, junit) = (reports.path().join("r.json"), reports.path().join("j.xml"));
    let output = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .env("SGPC_STATE_DIR", dir.path().join("state"))
        .args(["run", "--cri", &containerd.endpoint, "--json"])
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let target = sgpc::driver::cri::CriDriver::connect(&containerd.endpoint, sgpc::driver::Timeouts::default()).await.unwrap();
    let left: Vec<String> = target.image_references().await.unwrap().into_iter().filter(|r| r.contains("/sgpc/")).collect();
    containerd.daemon.stop().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(left.is_empty(), "a failed set-up removes the images it pulled: {left:?}");
    assert_eq!(output.status.code(), Some(exit_code::ERROR), "{stdout}");
    assert_eq!(stdout.matches("cannot start a sandbox").count(), 1, "said once: {stdout}");
    for needle in ["registry.k8s.io/pause:3.6", "ctr -n k8s.io images import", "pause_image", "pinned_images", "sandbox_image"] {
        assert!(stdout.contains(needle), "missing {needle:?}: {stdout}");
    }
    assert!(!stdout.contains("crun"), "no hint that does not apply: {stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["runtime"]["runtime_name"], "containerd", "the runtime answered Version: {report}");
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(junit.contains("name=\"sgpc on containerd "), "{junit}");

    // The advice, followed to the letter on a containerd whose config pins the name it gives
    // (ctr itself prints none): build the archives, import pause with ctr; then the run starts.
    let pinned = regex::Regex::new(r#"sandbox = \\?"([^"\\]+)\\?""#).unwrap().captures(&stdout).map(|c| c[1].to_string());
    let pinned = pinned.unwrap_or_else(|| panic!("the advice names the image to pin: {stdout}"));
    let dir = tempfile::tempdir().unwrap();
    let containerd = Containerd::start(&ContainerdOptions { pause_image: pinned.clone(), dir: dir.path().join("containerd"), ..opts }).await.expect("containerd starts");
    let archives = dir.path().join("archives");
    let built = Command::new(support::sgpc_binary()).args(["images", "build", "--out"]).arg(&archives).output().unwrap();
    let socket = sgpc::driver::cri::socket_path(&containerd.endpoint);
    let imported = Command::new(support::containerd_dir().join("ctr")).arg("--address").arg(&socket).args(["-n", "k8s.io", "images", "import"]).arg(archives.join("pause.oci.tar")).output().unwrap();
    let again = Command::new(support::sgpc_binary())
        .env("SGPC_STATE_DIR", dir.path().join("state"))
        .args(["run", "--cri", &containerd.endpoint, "--filter", "^kep-blog/strict$"])
        .output()
        .unwrap();
    containerd.daemon.stop().await.unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    assert!(imported.status.success(), "ctr import: {}", String::from_utf8_lossy(&imported.stderr));
    assert_eq!(again.status.code(), Some(exit_code::PASS), "with {pinned} pinned as the advice says: {}", String::from_utf8_lossy(&again.stdout));
}

#[test]
fn a_missing_work_root_is_one_error_before_anything_starts() {
    let out = tempfile::tempdir().unwrap();
    let out = out.path().to_str().unwrap();
    for command in [&["run", "--cri", "unix:///nonexistent.sock"][..], &["matrix", "--out", out][..], &["discover", "--out", out][..]] {
        let output = Command::new(support::sgpc_binary()).current_dir(support::repo_root()).args(command).args(["--work-root", "/nonexistent/work-root"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(exit_code::ERROR), "{stderr}");
        assert!(stderr.contains("invalid value '/nonexistent/work-root' for '--work-root <WORK_ROOT>': not a directory"), "{stderr}");
        assert!(output.stdout.is_empty() || !String::from_utf8_lossy(&output.stdout).contains("ERROR ["), "no case ran");
    }
}

/// containerd 2.x with runc refuses a user who is a member of gid 4294967294 (the Kubernetes API
/// limits the ids a Pod declares, not an image's files): the runtime refusing a valid Pod,
/// told apart from ERROR in the terminal, JSON and JUnit, without a hint that does not apply.
#[test]
fn a_runtime_refusing_a_valid_pod_is_refused_not_error() {
    let input = tempfile::tempdir().unwrap();
    let (scenarios, images) = (input.path().join("s"), input.path().join("i"));
    std::fs::create_dir_all(&scenarios).unwrap();
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("big.yaml"), "name: big\nuser: \"1000\"\npasswd: [\"alice:x:1000:1000::/:/bin/sh\"]\ngroup: [\"alice:x:1000:\", \"huge:x:4294967294:alice\"]\n").unwrap();
    std::fs::write(scenarios.join("big.yaml"), "name: big-gid\nsummary: the image user is a member of gid 4294967294\nimage: big\npod:\n  securityContext: {runAsUser: 1000, supplementalGroupsPolicy: Merge}\n").unwrap();
    let (json, junit) = (input.path().join("r.json"), input.path().join("j.xml"));
    let output = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .args(["run", "--scenarios"])
        .arg(&scenarios)
        .arg("--images")
        .arg(&images)
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .arg("--containerd")
        .arg(support::containerd_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(exit_code::FAIL), "{stdout}");
    assert!(stdout.contains("REFUSED [") && stdout.contains("uids and gids must be in range"), "{stdout}");
    assert!(!stdout.contains("crun"), "no hint that does not apply: {stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["cases"][0]["verdict"]["kind"], "REFUSED", "{report}");
    assert!(std::fs::read_to_string(&junit).unwrap().contains("type=\"REFUSED\""));
}

/// A scenario whose `deviation:` rewrites the expectation of a real failure (containerd#11937 on
/// containerd 2.x) must not come out as a plain green: its own label, a count in the summary and
/// the reports, the partial selection said; `--no-deviations` refuses it before anything runs.
#[test]
fn a_pass_only_by_deviation_is_said_everywhere_and_refused_for_certification() {
    let input = tempfile::tempdir().unwrap();
    let scenarios = input.path().join("s");
    std::fs::create_dir_all(&scenarios).unwrap();
    let original = std::fs::read_to_string(support::repo_root().join("scenarios/same-name-group.yaml")).unwrap();
    let forged = original.replace(
        "merge:  {uid: 1000, gid: 1, groups: [1, 1000, 60000]}",
        "merge:  {uid: 1000, gid: 1, groups: [1, 60000], deviation: \"containerd/containerd#11937: the group named like the user is not attached\"}",
    );
    assert_ne!(forged, original, "the scenario still reads as this test expects");
    std::fs::write(scenarios.join("same-name-group.yaml"), forged).unwrap();
    let run = |extra: &[&str], json: &std::path::Path| {
        Command::new(support::sgpc_binary())
            .current_dir(support::repo_root())
            .args(["run", "--filter", "/merge$", "--scenarios"])
            .arg(&scenarios)
            .args(extra)
            .arg("--json")
            .arg(json)
            .arg("--containerd")
            .arg(support::containerd_dir())
            .output()
            .unwrap()
    };

    let json = input.path().join("r.json");
    let output = run(&[], &json);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(exit_code::PASS), "{stdout}");
    assert!(stdout.contains("PASS (DEVIATION) ["), "{stdout}");
    assert!(stdout.contains("1 passed (1 only by a deviation from the KEP model)"), "{stdout}");
    assert!(stdout.contains("Partial only 1 of the catalogue's 3 cases (--filter /merge$); no case ran under default, strict"), "{stdout}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["cases"][0]["passed_by_deviation"], true, "{report}");
    assert_eq!(report["totals"]["passed_by_deviation"], 1, "{report}");
    assert_eq!(report["selection"]["filter"], "/merge$", "{report}");
    assert_eq!((report["selection"]["selected"].as_u64(), report["selection"]["catalogue_cases"].as_u64()), (Some(1), Some(3)), "{report}");
    assert!(report["selection"]["catalogue_digest"].as_str().is_some_and(|d| d.starts_with("sha256:") && d.len() == 71), "{report}");

    let refused_json = input.path().join("refused.json");
    let output = run(&["--no-deviations"], &refused_json);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(exit_code::ERROR), "{stderr}");
    assert!(stderr.contains("same-name-group.yaml") && stderr.contains("field `expect.merge.deviation`"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing ran: {}", String::from_utf8_lossy(&output.stdout));
}

/// A kind cluster that cannot be created is a set-up failure like any other (the house issue):
/// the JUnit and JSON reports are written with every case ERROR, and the exit code is 2. Before,
/// the error left through `?` with both files truncated to nothing.
#[test]
fn a_kind_setup_failure_writes_every_report_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let empty_path = dir.path().join("no-kind-here");
    std::fs::create_dir(&empty_path).unwrap();
    let (junit, json) = (dir.path().join("junit.xml"), dir.path().join("report.json"));
    let output = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .env("PATH", &empty_path)
        .args(["run", "--kube", "--kind", "kindest/node:v1.33.1", "--filter", "^kep-blog/", "--junit"])
        .arg(&junit)
        .arg("--json")
        .arg(&json)
        .arg("--work-root")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(sgpc::outcome::exit_code::ERROR), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report["setup_error"].as_str().unwrap().contains("`kind` is not on PATH"), "{}", report["setup_error"]);
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    assert!(cases.iter().all(|c| c["verdict"]["kind"] == "ERROR"), "{cases:?}");
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 3, "{junit}");
    assert_eq!(junit.matches("<error").count(), 3, "{junit}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3, "only the reports and the PATH directory are left");
}

/// `--node` (an existing node's kubelet over `--cri`) refuses the flags it would silently
/// ignore, and a stray `--kubeconfig` is refused before any report file is created.
#[test]
fn node_flags_that_would_be_ignored_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sgpc = |args: &[&str]| Command::new(support::sgpc_binary()).current_dir(dir.path()).args(args).output().unwrap();
    for conflicting in [&["--kubernetes", "v1.37.2"][..], &["--fault", "strict-to-merge"], &["--runtime-handler", "runc"], &["--one-sandbox-per-case"]] {
        let output = sgpc(&[&["run", "--cri", "unix:///nonexistent.sock", "--node", "n"][..], conflicting].concat());
        assert_eq!(output.status.code(), Some(2), "{conflicting:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("cannot be used with"), "{conflicting:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let output = sgpc(&["run", "--containerd", "/nonexistent", "--node", "n"]);
    assert_eq!(output.status.code(), Some(2), "--node goes with --cri");
    let output = sgpc(&["run", "--cri", "unix:///nonexistent.sock", "--kubeconfig", "k", "--junit", "junit.xml"]);
    assert_eq!(output.status.code(), Some(exit_code::ERROR));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--kubeconfig goes with --kube or --node"));
    assert!(!dir.path().join("junit.xml").exists(), "refused before the report file is opened");
}
