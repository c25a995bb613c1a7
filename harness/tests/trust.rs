//! Nobody outside the runtime under test can change a verdict: another local user pushing
//! images to sgpc's registry, or reading what a run keeps. Runs real containerd and a real
//! registry; the other user is `nobody` (uid 65534) running skopeo.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sgpc::image::{self, ImageContent, Recipe};
use sgpc::outcome::exit_code;
use sgpc::run::Session;
use sgpc::scenario::{CaseId, Policy};

const NOBODY: u32 = 65534;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The registry port of the one run under `work_root`, once its config exists.
fn registry_host(work_root: &Path) -> Option<String> {
    let run = std::fs::read_dir(work_root).ok()?.filter_map(Result::ok).find(|e| e.file_name().to_string_lossy().starts_with("sgpc-"))?;
    let config = std::fs::read_to_string(run.path().join("registry/config.yml")).ok()?;
    config.lines().find_map(|l| l.trim().strip_prefix("addr: ")).map(str::to_string)
}

/// The attacker's image: the kep-blog recipe under the same name, with the /etc/group line
/// that Strict must drop removed, so that a Strict-to-Merge runtime would look conformant.
fn attacker_archive(dir: &Path) -> (PathBuf, String) {
    let root = support::repo_root();
    let real = Recipe::load(&root.join("images/kep-blog.yaml")).unwrap();
    let text = std::fs::read_to_string(root.join("images/kep-blog.yaml")).unwrap();
    let forged = Recipe::parse(Path::new("forged.yaml"), &text.replace(":50000:user-defined-in-image", ":50000:")).unwrap();
    let tag = image::build(&ImageContent::from_recipe(&real)).unwrap().tag();
    let built = image::build(&ImageContent::from_recipe(&forged)).unwrap();
    let archive = dir.join("forged.oci.tar");
    built.write_archive(&archive, "forged").unwrap();
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o644)).unwrap();
    (archive, tag)
}

/// One push of the forged image over sgpc's tag, as `nobody`; returns skopeo's outcome.
fn push_as_nobody(archive: &Path, scratch: &Path, host: &str, tag: &str) -> (bool, String) {
    let output = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{host}/sgpc/kep-blog:{tag}"))
        .env("HOME", scratch)
        .env("TMPDIR", scratch)
        .env("XDG_RUNTIME_DIR", scratch)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("skopeo runs (make setup installs it)");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_concurrent_pusher_cannot_turn_a_fail_into_a_pass() {
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (archive, tag) = attacker_archive(scratch.path());
    let work_root = tempfile::tempdir().unwrap();
    let report = work_root.path().join("report.json");
    let mut run = Command::new(support::sgpc_binary())
        .current_dir(support::repo_root())
        .args(["run", "--fault", "strict-to-merge", "--filter", "^kep-blog/strict$", "--json"])
        .arg(&report)
        .arg("--work-root")
        .arg(work_root.path())
        .arg("--containerd")
        .arg(support::containerd_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut attempts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while run.try_wait().unwrap().is_none() && Instant::now() < deadline {
        match registry_host(work_root.path()) {
            Some(host) => attempts.push(push_as_nobody(&archive, scratch.path(), &host, &tag)),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let status = run.wait().unwrap();
    let output = run.stdout.take().map(|mut s| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut s, &mut text).unwrap();
        text
    });
    assert_eq!(status.code(), Some(exit_code::FAIL), "strict-to-merge must FAIL: {output:?}");
    assert!(!attempts.is_empty(), "the pusher never found the registry");
    for (pushed, stderr) in &attempts {
        assert!(!pushed, "an anonymous push to sgpc's registry succeeded");
        // Refused by authentication, or the registry was already gone (teardown: refused, or
        // reset or closed mid-request on a loaded machine: `Head "...": EOF`); nothing else.
        let gone = stderr.contains("connection refused") || stderr.contains("connection reset by peer") || stderr.trim_end().ends_with("\": EOF\"");
        assert!(stderr.contains("unauthorized") || stderr.contains("401") || gone, "refused for another reason: {stderr}");
    }
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["cases"][0]["verdict"]["kind"], "FAIL", "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_run_keeps_only_root_can_read() {
    let catalogue = support::catalogue();
    let case = CaseId { scenario: "kep-blog".into(), policy: Policy::Strict };
    let session = Session::start(&support::containerd_config(), &catalogue, &[case]).await.expect("the session starts");
    let dir = session.dir().to_path_buf();
    let checks = [(dir.clone(), 0o700), (dir.join("registry"), 0o700), (dir.join("registry/htpasswd"), 0o600), (dir.join("registry/config.yml"), 0o600)];
    let modes: Vec<(PathBuf, u32, u32)> = checks.iter().map(|(p, want)| (p.clone(), mode(p), *want)).collect();
    let references: Vec<String> = session.images.values().map(|i| i.reference.clone()).collect();
    session.teardown().await.unwrap();
    for (path, got, want) in modes {
        assert_eq!(got, want, "{} is {got:o}", path.display());
    }
    for reference in references {
        assert!(reference.contains("@sha256:"), "pulled by digest, not by tag: {reference}");
    }
}

/// A CRLF `/etc/group`: glibc's reading sees no membership (the member is `alice\r`), a reader
/// that trims sees one, and a runtime without Strict support attaches the group. The LEAK comes
/// from what was observed, not from either reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crlf_group_file_leak_under_strict_is_unsupported_leak_on_containerd_1_7() {
    let dir = support::repo_root().join(".cache/debs/trixie/containerd/usr/bin");
    assert!(dir.join("containerd").is_file(), "containerd 1.7 in {}: run `make setup`", dir.display());
    let input = tempfile::tempdir().unwrap();
    let (scenarios, images) = (input.path().join("scenarios"), input.path().join("images"));
    std::fs::create_dir_all(&scenarios).unwrap();
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(
        images.join("crlf.yaml"),
        "name: crlf\nuser: \"1000\"\npasswd:\n  - \"alice:x:1000:1000::/:/bin/sh\\r\"\ngroup:\n  - \"alice:x:1000:\\r\"\n  - \"crlf-group:x:50000:alice\\r\"\n",
    )
    .unwrap();
    std::fs::write(scenarios.join("crlf.yaml"), "name: crlf\nsummary: a CRLF /etc/group\nimage: crlf\npod:\n  securityContext: {supplementalGroupsPolicy: Strict, runAsUser: 1000, supplementalGroups: [4000]}\n").unwrap();
    let catalogue = sgpc::scenario::Catalogue::load(&scenarios, &images).unwrap();
    let case = CaseId { scenario: "crlf".into(), policy: Policy::Strict };

    let expected = sgpc::matrix::Expected { outcome: sgpc::matrix::Outcome::NoStrict, kubernetes: false, user_namespaces: false, exceptions: Default::default() };
    assert_eq!(
        sgpc::matrix::expected_verdicts(&expected, &catalogue, &case),
        [sgpc::verdict::Verdict::Unsupported { leak: false }, sgpc::verdict::Verdict::Unsupported { leak: true }],
        "the matrix allows both: the readings of a CRLF file disagree"
    );

    let mut config = support::containerd_config();
    config.target = sgpc::run::TargetChoice::Containerd { bin_dir: dir };
    let session = Session::start(&config, &catalogue, std::slice::from_ref(&case)).await.expect("containerd 1.7 starts");
    let result = session.judge_case(&case).await;
    session.teardown().await.unwrap();
    let j = &result.judgement;
    assert_eq!(j.verdict, sgpc::verdict::Verdict::Unsupported { leak: true }, "{j:?}");
    assert!(j.reasons.iter().any(|r| r.contains("+50000 from image /etc/group line 2")), "the leak names its source line: {:?}", j.reasons);
}

/// A driver that reports recorded observations: the shapes a runtime gave, replayed through
/// the runner, which must not take a driver's word for what it cannot show.
struct Replay {
    observations: sgpc::observation::Observations,
    runtime: sgpc::driver::RuntimeInfo,
}

impl sgpc::driver::Driver for Replay {
    fn runtime(&self) -> &sgpc::driver::RuntimeInfo {
        &self.runtime
    }

    fn reads_host_proc(&self) -> bool {
        true
    }

    async fn run_pod(&self, members: &[sgpc::driver::Member<'_, '_>]) -> Vec<Result<sgpc::observation::Observations, sgpc::driver::DriverError>> {
        members.iter().map(|_| Ok(self.observations.clone())).collect()
    }
}

fn replay(observations: sgpc::observation::Observations, feature_per_node: bool) -> sgpc::verdict::Judgement {
    let catalogue = support::catalogue();
    let id = CaseId { scenario: "gid-4294967294".into(), policy: Policy::Merge };
    let plan = sgpc::driver::kube::KubePlan::new(&catalogue, std::slice::from_ref(&id), "sgpc-replay").unwrap();
    let runtime = sgpc::driver::RuntimeInfo {
        endpoint: "replayed".into(),
        runtime_name: "containerd".into(),
        runtime_version: "2.1.9".into(),
        runtime_api_version: "v1".into(),
        supplemental_groups_policy: true,
        feature_per_node,
        no_user_namespaces: None,
            cri_status: None,
    };
    let driver = Replay { observations, runtime };
    futures::executor::block_on(sgpc::run::run_case(&driver, &catalogue, &plan.images, &id)).judgement
}

#[test]
fn a_refusal_counts_only_for_the_bytes_sgpc_built() {
    use sgpc::observation::Observations;
    use sgpc::verdict::Verdict;
    // containerd 2.x's answer to gid 4294967294, as recorded.
    let (step, message) = ("StartContainer", "Unknown: failed to create containerd task: uids and gids must be in range 0-2147483647");
    let catalogue = support::catalogue();
    let id = CaseId { scenario: "gid-4294967294".into(), policy: Policy::Merge };
    let plan = sgpc::driver::kube::KubePlan::new(&catalogue, std::slice::from_ref(&id), "sgpc-replay").unwrap();
    let ours = plan.images.values().find(|i| i.name != sgpc::image::PAUSE_IMAGE).unwrap().config_digest.clone();

    let j = replay(Observations::refused(step, message, Some(ours)), false);
    assert_eq!(j.verdict, Verdict::Refused, "{j:?}");
    for held in [None, Some("sha256:0000000000000000000000000000000000000000000000000000000000000000".to_string())] {
        let j = replay(Observations::refused(step, message, held.clone()), false);
        assert_eq!(j.verdict, Verdict::Error, "a refusal of {held:?} is no finding: {j:?}");
        assert!(j.reasons[0].contains("not the bytes sgpc built"), "{j:?}");
    }
}

#[test]
fn a_node_level_run_without_admission_is_an_error_not_a_verdict() {
    let j = replay(sgpc::observation::Observations::default(), true);
    assert_eq!(j.verdict, sgpc::verdict::Verdict::Error, "{j:?}");
    assert!(j.reasons[0].contains("no admission outcome"), "{j:?}");
}

/// `sgpc` with its own state directory, output captured.
fn sgpc_with_state(state: &Path) -> Command {
    let mut command = Command::new(support::sgpc_binary());
    command.current_dir(support::repo_root()).env("SGPC_STATE_DIR", state);
    command
}

#[test]
fn a_work_root_another_user_can_steer_is_refused_before_anything_runs() {
    let top = tempfile::tempdir().unwrap();
    let state = top.path().join("state");
    let theirs = top.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
    let open = top.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    for (root, why) in [(&theirs, "is owned by uid 65534"), (&open, "is writable by others (mode 0777) and has no sticky bit")] {
        let output = sgpc_with_state(&state).args(["run", "--filter", "^kep-blog/strict$", "--containerd"]).arg(support::containerd_dir()).arg("--work-root").arg(root).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(exit_code::ERROR), "{stderr}");
        assert!(stderr.contains(why), "{why:?} is not in: {stderr}");
        assert_eq!(std::fs::read_dir(root).unwrap().count(), 0, "nothing was created in {}", root.display());
    }
}

#[test]
fn a_state_directory_another_user_can_write_is_never_acted_on() {
    let top = tempfile::tempdir().unwrap();
    let state = top.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    // What another user could plant: a record of a "stale run" whose daemon is a process of
    // ours and whose directory is one of ours.
    let mut victim = Command::new("sleep").arg("300").spawn().unwrap();
    let victim_dir = top.path().join("sgpc-planted");
    std::fs::create_dir(&victim_dir).unwrap();
    let start_time: u64 = std::fs::read_to_string(format!("/proc/{}/stat", victim.id())).unwrap().rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap();
    let record = serde_json::json!({
        "run_id": "sgpc-planted", "owner": {"name": "sgpc", "pid": 1, "start_time": 1},
        "dir": victim_dir, "daemons": [{"name": "containerd", "pid": victim.id(), "start_time": start_time}], "cri": null
    });
    std::fs::write(state.join("sgpc-planted.json"), record.to_string()).unwrap();
    let output = sgpc_with_state(&state).arg("clean").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let alive = victim.try_wait().unwrap().is_none();
    let _ = victim.kill();
    assert_eq!(output.status.code(), Some(exit_code::ERROR), "{stderr}");
    assert!(stderr.contains("cannot be trusted") && stderr.contains("writable by others"), "{stderr}");
    assert!(alive, "the planted record's process was killed");
    assert!(victim_dir.exists(), "the planted record's directory was deleted");
    // A private directory with a record another user owns: skipped, never acted on.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(state.join("sgpc-planted.json"), Some(NOBODY), Some(NOBODY)).unwrap();
    let output = sgpc_with_state(&state).arg("clean").output().unwrap();
    assert_eq!(output.status.code(), Some(exit_code::PASS), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing to clean"));
    assert!(victim_dir.exists());
}

#[test]
fn a_runtime_cannot_paint_the_terminal() {
    let id = CaseId { scenario: "kep-blog".into(), policy: Policy::Strict };
    let painted = "runc: \u{1b}[1A\u{1b}[2K\r            PASS [   0.500s] (1/1) kep-blog/strict\nsecond line";
    let mut result = sgpc::outcome::error_result(&id, "", painted);
    result.judgement.verdict = sgpc::verdict::Verdict::Refused;
    result.judgement.notes.push(format!("note from the runtime: {painted}"));
    let mut out = Vec::new();
    sgpc::report::terminal::write_case(&mut out, sgpc::report::terminal::Style { color: false, verbose: true }, &result, 1, 1).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
    assert!(text.contains("\\u{1b}[1A"), "{text}");
    assert!(text.lines().skip(1).all(|l| l.starts_with("                  ")), "every line of runtime text stays indented under its case:\n{text}");
}

/// The cgroup hierarchies of this host (v1 controllers' mounts, not the links between them).
fn cgroup_hierarchies() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    std::fs::read_dir(root).unwrap().flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect()
}

#[test]
fn clean_removes_a_killed_runs_cgroups_even_when_its_directory_is_gone() {
    let top = tempfile::tempdir().unwrap();
    let state = top.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let run_id = format!("sgpc-gone{}", std::process::id());
    let cgroups: Vec<_> = cgroup_hierarchies().into_iter().map(|h| h.join(&run_id)).collect();
    for cgroup in &cgroups {
        std::fs::create_dir(cgroup).unwrap();
    }
    // The owner is gone (pid 1 never had that start time) and so is the run directory (someone
    // removed /tmp by hand): only the cgroups named after the run are left.
    let record = serde_json::json!({
        "run_id": run_id, "owner": {"name": "sgpc", "pid": 1, "start_time": 1},
        "dir": top.path().join(&run_id), "daemons": [], "cri": null
    });
    std::fs::write(state.join(format!("{run_id}.json")), record.to_string()).unwrap();
    let output = sgpc_with_state(&state).arg("clean").output().unwrap();
    let left: Vec<_> = cgroups.iter().filter(|c| c.exists()).collect();
    for cgroup in &left {
        let _ = std::fs::remove_dir(cgroup);
    }
    assert_eq!(output.status.code(), Some(exit_code::PASS), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(left.is_empty(), "sgpc clean left the run's cgroups: {left:?}\n{}", String::from_utf8_lossy(&output.stdout));
}
