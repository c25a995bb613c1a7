//! Nothing a run creates outlives it: no runtime or registry process, shim, container process,
//! sandbox, container, mount or directory. Runs real containerd.

mod support;

use std::path::Path;
use std::time::Duration;

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

    let result = session.run_case(&finished).await;
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
        _ = session.run_case(&interrupted) => panic!("the case finished before it could be interrupted"),
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
    config.work_root = work_root.path().to_path_buf();
    let case = CaseId { scenario: "kep-blog".into(), policy: Policy::Strict };
    let err = Session::start(&config, &catalogue, &[case]).await.err().expect("starting without binaries fails");
    assert!(format!("{err:#}").contains("containerd is missing"), "{err:#}");
    // The registry had started; nothing of it remains.
    assert_eq!(std::fs::read_dir(work_root.path()).unwrap().count(), 0, "the run directory was removed");
    assert!(processes_under(work_root.path()).is_empty());
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
            config.work_root = root.clone();
            let case = CaseId { scenario: "kep-blog".into(), policy: Policy::Strict };
            let session = Session::start(&config, &catalogue, std::slice::from_ref(&case)).await.unwrap();
            let sandbox_exists = async {
                while session.target().sandboxes_of_run(&session.run_id).await.unwrap().is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            };
            tokio::select! {
                _ = session.run_case(&case) => {}
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
async fn a_panicking_case_is_an_error_not_the_end_of_the_run() {
    let id = CaseId { scenario: "kep-blog".into(), policy: Policy::Strict };
    let result = sgpc::run::run_isolated(&id, async { panic!("boom") }).await;
    assert_eq!(result.judgement.verdict, Verdict::Error);
    assert!(result.judgement.reasons[0].contains("the case panicked: boom"), "{:?}", result.judgement);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_cases_in_flight_keep_their_observations_apart() {
    // Each probe prints its case id and a case refuses output that is not its own, so a mix-up
    // would be an ERROR; 36 cases with 12 in flight must all pass.
    let catalogue = support::catalogue();
    let cases = catalogue.cases();
    let session = Session::start(&support::containerd_config(), &catalogue, &cases).await.unwrap();
    let results = sgpc::run::run_cases(&session, &cases, 12, |_| {}).await;
    session.teardown().await.unwrap();
    let not_passed: Vec<String> = results.iter().filter(|r| r.judgement.verdict != Verdict::Pass).map(|r| format!("{}: {:?}", r.id, r.judgement)).collect();
    assert!(not_passed.is_empty(), "{not_passed:#?}");
    assert_eq!(results.len(), cases.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctr_imports_the_oci_archive() {
    let catalogue = support::catalogue();
    let case = CaseId { scenario: "kep-blog".into(), policy: Policy::Strict };
    let session = Session::start(&support::containerd_config(), &catalogue, std::slice::from_ref(&case)).await.unwrap();
    let recipe = catalogue.recipe("kep-blog").unwrap();
    let built = sgpc::image::build(&sgpc::image::ImageContent::from_recipe(recipe, &Default::default()).unwrap()).unwrap();
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
