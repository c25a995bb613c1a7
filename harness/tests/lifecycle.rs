//! Nothing a run creates outlives it: no runtime or registry process, shim, container process,
//! sandbox, container, mount or directory. Runs real containerd.

mod support;

use std::path::Path;
use std::time::Duration;

use sgpc::outcome::Stop;
use sgpc::provision::{mounts_under, processes_under};
use sgpc::run::Session;
use sgpc::scenario::{CaseId, Policy};
use sgpc::verdict::Verdict;

fn alive(pid: u32) -> bool {
    // A zombie has exited; only its parent's bookkeeping remains.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

fn assert_nothing_left(dir: &Path, daemons: &[u32]) {
    assert!(!dir.exists(), "run directory {} still exists", dir.display());
    assert_eq!(processes_under(dir), Vec::<u32>::new(), "processes still refer to {}", dir.display());
    assert_eq!(mounts_under(dir), Vec::<String>::new(), "mounts left under {}", dir.display());
    for pid in daemons {
        assert!(!alive(*pid), "daemon {pid} is still running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_run_even_an_interrupted_case() {
    let catalogue = support::catalogue();
    let finished = CaseId { scenario: "protected-file-access".into(), policy: Policy::Strict };
    let interrupted = CaseId { scenario: "kep-blog".into(), policy: Policy::Merge };
    let session = Session::start(&support::containerd_config(), &catalogue, &[finished.clone(), interrupted.clone()])
        .await
        .expect("containerd and the registry start");
    let dir = session.dir().to_path_buf();
    let daemons = session.daemon_pids();
    assert_eq!(daemons.len(), 2, "registry and containerd are running");

    let result = session.judge_case(&finished).await;
    assert_eq!(result.judgement.verdict, Verdict::Pass, "{:?}", result.judgement);
    assert!(session.target().sandboxes_of_run(&session.run_id).await.unwrap().is_empty(), "a finished case removes its sandbox");

    // Drop a case in the middle, once its sandbox exists: the sandbox stays behind
    // until teardown removes it by its run label.
    let sandbox_exists = async {
        loop {
            if !session.target().sandboxes_of_run(&session.run_id).await.unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        _ = session.judge_case(&interrupted) => panic!("the case finished before it could be interrupted"),
        _ = sandbox_exists => {}
    }
    assert!(!session.target().sandboxes_of_run(&session.run_id).await.unwrap().is_empty());
    assert!(!processes_under(&dir).is_empty(), "the runtime runs under the run directory");
    assert!(!mounts_under(&dir).is_empty(), "the interrupted sandbox holds mounts");

    session.teardown().await.expect("teardown succeeds");
    assert_nothing_left(&dir, &daemons);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_removes_what_it_started() {
    let catalogue = support::catalogue();
    let mut config = support::containerd_config();
    let empty = tempfile::tempdir().unwrap();
    config.target = sgpc::run::TargetChoice::Containerd { bin_dir: empty.path().to_path_buf() };
    let work_root = tempfile::tempdir().unwrap();
    config.settings.work_root = work_root.path().to_path_buf();
    let case = CaseId { scenario: "kep-blog".into(), policy: Policy::Strict };
    let err = Session::start(&config, &catalogue, &[case]).await.err().expect("starting without binaries fails");
    assert!(format!("{err:#}").contains("containerd is missing"), "{err:#}");
    // The registry had started; nothing of it remains.
    assert_eq!(std::fs::read_dir(work_root.path()).unwrap().count(), 0, "the run directory was removed");
    assert!(processes_under(work_root.path()).is_empty());
}

/// An event a run gives its reporters, as a name: what the terminal, JUnit and JSON consume.
fn event_name(event: sgpc::outcome::Event<'_>) -> String {
    match event {
        sgpc::outcome::Event::RunStarted { total, .. } => format!("started {total}"),
        sgpc::outcome::Event::CaseFinished { result, .. } => format!("finished {}", result.id),
        sgpc::outcome::Event::CasesNotRun { cases, reason } => {
            let why = match reason {
                Stop::SetupFailed(_) => "set-up failed".to_string(),
                Stop::Interrupted { signal, during } => format!("{signal} during {during:?}"),
                Stop::TeardownFailed { .. } => "teardown failed".to_string(),
                Stop::Unfinished => "unfinished".to_string(),
            };
            format!("not run {} ({why})", cases.len())
        }
        sgpc::outcome::Event::RunFinished { report } => format!("run finished {}", report.cases.len()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporters_hear_every_case_once_then_the_end_of_the_run() {
    let catalogue = support::catalogue();
    let cases = [CaseId { scenario: "kep-blog".into(), policy: Policy::Strict }, CaseId { scenario: "kep-blog".into(), policy: Policy::Merge }];
    let mut names = Vec::new();
    let run = sgpc::run::run_session(&support::containerd_config(), sgpc::run::Level::Cri, &catalogue, &cases, 2, std::future::pending(), |e| names.push(event_name(e))).await;
    assert!(run.not_run.is_empty(), "{:?}", run.report.setup_error);
    assert_eq!(names.first().map(String::as_str), Some("started 2"), "{names:?}");
    assert_eq!(names.last().map(String::as_str), Some("run finished 2"), "{names:?}");
    let finished: std::collections::BTreeSet<&str> = names.iter().filter(|n| n.starts_with("finished")).map(String::as_str).collect();
    assert_eq!(finished, ["finished kep-blog/merge", "finished kep-blog/strict"].into(), "{names:?}");
    assert_eq!(names.len(), 4, "no case twice, nothing not run: {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_tells_the_reporters_which_cases_did_not_run() {
    let catalogue = support::catalogue();
    let mut config = support::containerd_config();
    let empty = tempfile::tempdir().unwrap();
    config.target = sgpc::run::TargetChoice::Containerd { bin_dir: empty.path().to_path_buf() };
    let cases = [CaseId { scenario: "kep-blog".into(), policy: Policy::Strict }];
    let mut names = Vec::new();
    let run = sgpc::run::run_session(&config, sgpc::run::Level::Cri, &catalogue, &cases, 1, std::future::pending(), |e| names.push(event_name(e))).await;
    assert_eq!(run.report.exit_code(), sgpc::outcome::exit_code::ERROR);
    assert_eq!(names, ["not run 1 (set-up failed)", "run finished 1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_set_up_is_told_as_such_and_leaves_nothing() {
    let catalogue = support::catalogue();
    let work_root = tempfile::tempdir().unwrap();
    let mut config = support::containerd_config();
    config.settings.work_root = work_root.path().to_path_buf();
    let cases = [CaseId { scenario: "kep-blog".into(), policy: Policy::Strict }];
    let mut names = Vec::new();
    let signal = std::future::ready("SIGTERM".to_string());
    let run = sgpc::run::run_session(&config, sgpc::run::Level::Cri, &catalogue, &cases, 1, signal, |e| names.push(event_name(e))).await;
    assert_eq!(names, ["not run 1 (SIGTERM during SetUp)", "run finished 1"]);
    assert_eq!(run.report.setup_error.as_deref(), Some("interrupted by SIGTERM during set-up"), "the reports' text is as before");
    assert_eq!(std::fs::read_dir(work_root.path()).unwrap().count(), 0, "the half-started session was removed");
}

#[test]
fn a_panic_while_a_session_runs_leaves_nothing() {
    let work_root = tempfile::tempdir().unwrap();
    let root = work_root.path().to_path_buf();
    let outcome = std::thread::spawn(move || {
        let tokio = tokio::runtime::Runtime::new().unwrap();
        tokio.block_on(async {
            let catalogue = support::catalogue();
            let mut config = support::containerd_config();
            config.settings.work_root = root.clone();
            let case = CaseId { scenario: "kep-blog".into(), policy: Policy::Strict };
            let session = Session::start(&config, &catalogue, std::slice::from_ref(&case)).await.unwrap();
            let sandbox_exists = async {
                while session.target().sandboxes_of_run(&session.run_id).await.unwrap().is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            tokio::select! {
                _ = session.judge_case(&case) => {}
                _ = sandbox_exists => {}
            }
            assert!(!processes_under(&root).is_empty());
            panic!("a bug in the middle of a case");
        })
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    assert_eq!(std::fs::read_dir(work_root.path()).unwrap().count(), 0, "the run directory is gone");
    assert!(processes_under(work_root.path()).is_empty(), "no process is left");
    assert!(mounts_under(work_root.path()).is_empty(), "no mount is left");
}

#[tokio::test]
async fn a_panicking_pod_is_an_error_for_each_of_its_cases_not_the_end_of_the_run() {
    let ids = [CaseId { scenario: "kep-blog".into(), policy: Policy::Strict }, CaseId { scenario: "fsgroup".into(), policy: Policy::Strict }];
    let results = sgpc::run::run_isolated(&ids, async { panic!("boom") }).await;
    assert_eq!(results.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), ids);
    for result in results {
        assert_eq!(result.judgement.verdict, Verdict::Error);
        assert!(result.judgement.reasons[0].contains("the case panicked: boom"), "{:?}", result.judgement);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_cases_in_flight_keep_their_observations_apart() {
    // Each probe prints its case id and a case refuses output that is not its own, so a mix-up
    // would be an ERROR; the whole catalogue with 12 in flight must pass, but for containerd's
    // known findings, which must show as themselves.
    let catalogue = support::catalogue();
    let cases = catalogue.cases();
    let session = Session::start(&support::containerd_config(), &catalogue, &cases).await.unwrap();
    let results = sgpc::run::run_cases(&session, session.catalogue(), &session.images, &cases, 12, &mut |_| {}).await;
    session.teardown().await.unwrap();
    let known_bug = |r: &sgpc::outcome::CaseResult| {
        support::CONTAINERD_KNOWN_FINDINGS
            .iter()
            .any(|(id, verdict, text)| *id == r.id.to_string() && r.judgement.verdict == *verdict && r.judgement.reasons.iter().any(|reason| reason.contains(text)))
    };
    // A Pod with hostUsers: false is NOT RUN on this containerd, with its reason.
    let userns_not_run = |r: &sgpc::outcome::CaseResult| {
        let needs_userns = catalogue.scenario(&r.id.scenario).is_some_and(|s| s.pod.user_namespace());
        let why = support::userns_not_run("containerd").unwrap_or_default();
        needs_userns && r.judgement.verdict == Verdict::NotRun && r.judgement.reasons.iter().any(|reason| reason.contains(why))
    };
    let not_passed: Vec<String> = results.iter().filter(|r| r.judgement.verdict != Verdict::Pass && !known_bug(r) && !userns_not_run(r)).map(|r| format!("{}: {:?}", r.id, r.judgement)).collect();
    assert!(not_passed.is_empty(), "{not_passed:#?}");
    assert_eq!(results.len(), cases.len());
}

/// The containers of one Pod judged one by one, at once (as `make bench` judges every case):
/// two sandboxes of the Pod's name, which must not collide in the runtime (found when the bench
/// failed: containerd reserves a sandbox's name and uid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_one_pod_judged_alone_at_once_each_get_a_sandbox() {
    let catalogue = support::catalogue();
    let cases: Vec<CaseId> = ["pod-two-images-one-uid.blog", "pod-two-images-one-uid.other"].iter().map(|s| CaseId { scenario: (*s).into(), policy: sgpc::scenario::Policy::Merge }).collect();
    let session = Session::start(&support::containerd_config(), &catalogue, &cases).await.unwrap();
    let (a, b) = tokio::join!(session.judge_case(&cases[0]), session.judge_case(&cases[1]));
    session.teardown().await.unwrap();
    for r in [a, b] {
        assert_eq!(r.judgement.verdict, Verdict::Pass, "{}: {:?}", r.id, r.judgement);
    }
}

/// A case run again in the same session (as `make bench` does) is judged again, not refused
/// because the first run's protected directory exists (found when the bench ERRORed with EEXIST).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_run_twice_in_one_session_is_judged_twice() {
    let catalogue = support::catalogue();
    let case = CaseId { scenario: "protected-file-access".into(), policy: sgpc::scenario::Policy::Strict };
    let session = Session::start(&support::containerd_config(), &catalogue, std::slice::from_ref(&case)).await.unwrap();
    let first = session.judge_case(&case).await;
    let second = session.judge_case(&case).await;
    session.teardown().await.unwrap();
    assert_eq!(first.judgement.verdict, Verdict::Pass, "{:?}", first.judgement);
    assert_eq!(second.judgement.verdict, Verdict::Pass, "{:?}", second.judgement);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctr_imports_the_oci_archive() {
    let catalogue = support::catalogue();
    let case = CaseId { scenario: "kep-blog".into(), policy: Policy::Strict };
    let session = Session::start(&support::containerd_config(), &catalogue, std::slice::from_ref(&case)).await.unwrap();
    let recipe = catalogue.recipe("kep-blog").unwrap();
    let built = sgpc::image::build(&sgpc::image::ImageContent::from_recipe(recipe)).unwrap();
    let archive = session.dir().join("kep-blog.oci.tar");
    built.write_archive(&archive, "sgpc.local/sgpc").unwrap();
    let socket = session.dir().join("containerd/containerd.sock");
    let ctr = |args: &[&str]| {
        std::process::Command::new(support::containerd_dir().join("ctr")).arg("--address").arg(&socket).args(["--namespace", "sgpc-import"]).args(args).output().unwrap()
    };
    let import = ctr(&["images", "import", archive.to_str().unwrap()]);
    let listing = ctr(&["images", "list", "--quiet"]);
    session.teardown().await.unwrap();
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains(&format!("sgpc.local/sgpc/kep-blog:{}", built.tag())), "{listing}");
}

/// `sgpc` as a child process with its own state directory, so that its records are its own.
fn sgpc(state: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(support::sgpc_binary());
    command.current_dir(support::repo_root()).env("SGPC_STATE_DIR", state).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    command
}

/// Waits until `check` holds, for at most a minute.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    sgpc::provision::wait_until(what, Duration::from_secs(60), || std::future::ready(check())).await.unwrap();
}

fn run_dirs(work_root: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(work_root).unwrap().map(|e| e.unwrap().path()).collect()
}

/// `sgpc clean` with this state directory; returns what it printed.
fn clean(state: &Path) -> String {
    let output = sgpc(state).arg("clean").stdout(std::process::Stdio::piped()).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(sgpc::outcome::exit_code::PASS), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_then_clean_leaves_nothing() {
    let work_root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut run = sgpc(state.path()).args(["run", "--jobs", "1", "--work-root"]).arg(work_root.path()).arg("--containerd").arg(support::containerd_dir()).spawn().unwrap();
    eventually("a case's sandbox to hold mounts", || run_dirs(work_root.path()).first().is_some_and(|d| !mounts_under(d).is_empty())).await;
    // The OCI runtime keeps a container's state in the run directory, not in the host's
    // /run/containerd/runc, which a node's own containerd uses.
    let runc_state = || run_dirs(work_root.path()).first().map(|d| d.join("containerd/oci-runtime/runc/k8s.io"));
    eventually("a container's runc state in the run directory", || runc_state().and_then(|s| std::fs::read_dir(s).ok()).is_some_and(|mut e| e.next().is_some())).await;
    run.kill().unwrap();
    run.wait().unwrap();
    let dir = run_dirs(work_root.path()).remove(0);
    assert!(!processes_under(&dir).is_empty(), "SIGKILL leaves the runtime running: the test would prove nothing otherwise");

    let printed = clean(state.path());
    assert!(printed.contains("kill containerd") && printed.contains("kill registry"), "{printed}");
    assert_nothing_left(&dir, &[]);
    assert!(run_dirs(work_root.path()).is_empty());
    assert!(clean(state.path()).contains("nothing to clean"), "the record is gone once cleaned");
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Runs `sgpc run --cri` against a containerd this test owns, as a user's runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cri_runs_leave_no_sandbox_or_image_even_after_sigkill() {
    let catalogue = support::catalogue();
    // The user's runtime holds other images than the kep-blog cases pull.
    let cases: Vec<CaseId> = catalogue.cases().into_iter().filter(|c| c.scenario == "cri-tools").collect();
    let users = Session::start(&support::containerd_config(), &catalogue, &cases).await.expect("the user's runtime starts");
    let endpoint = users.runtime.endpoint.clone();
    let images_before = sorted(users.target().image_references().await.unwrap());

    // A run that finishes removes the images it pulled.
    let state = tempfile::tempdir().unwrap();
    let work_root = tempfile::tempdir().unwrap();
    let status = sgpc(state.path()).args(["run", "--filter", "^kep-blog/", "--cri", &endpoint, "--work-root"]).arg(work_root.path()).status().unwrap();
    assert_eq!(status.code(), Some(sgpc::outcome::exit_code::PASS));
    assert_eq!(sorted(users.target().image_references().await.unwrap()), images_before, "a --cri run leaves no image of its own");

    // A run killed with a sandbox running leaves it, its registry and its images, until `sgpc clean`.
    let mut run = sgpc(state.path()).args(["run", "--jobs", "1", "--filter", "^kep-blog/", "--cri", &endpoint, "--work-root"]).arg(work_root.path()).spawn().unwrap();
    let mut labels = Vec::new();
    while labels.is_empty() {
        labels = users.target().labelled_runs().await.unwrap().into_iter().filter(|l| *l != users.run_id).collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run.kill().unwrap();
    run.wait().unwrap();
    let dir = work_root.path().join(&labels[0]);
    assert!(!processes_under(&dir).is_empty(), "the registry outlives a SIGKILL");
    assert_ne!(sorted(users.target().image_references().await.unwrap()), images_before);

    clean(state.path());
    assert_nothing_left(&dir, &[]);
    let left: Vec<String> = users.target().labelled_runs().await.unwrap().into_iter().filter(|l| *l != users.run_id).collect();
    assert!(left.is_empty(), "sandboxes of the killed run: {left:?}");
    assert_eq!(sorted(users.target().image_references().await.unwrap()), images_before, "images of the killed run");
    users.teardown().await.unwrap();
}
