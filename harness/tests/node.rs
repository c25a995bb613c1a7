//! A live Kubernetes node (etcd, kube-apiserver and kubelet built from their Go modules) over
//! the containerd lines sgpc starts: the Kubernetes level's verdicts, observed through a real
//! kubelet, held against the CRI level's on the same runtime, case by case.
//!
//! The node's binaries come from the Go build cache (`make setup` builds them; a missing one is
//! built here, which takes many minutes cold).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sgpc::provision::gomodule::{Version, ETCD_VERSION};
use sgpc::run::{run_session, Level, NodeChoice, SessionConfig, SessionRun, TargetChoice};
use sgpc::scenario::{CaseId, Policy};
use sgpc::verdict::Verdict;

/// The newest Kubernetes release the module proxy serves that runs here.
const KUBERNETES: &str = "v1.37.2";

/// One node at a time: two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn node() -> NodeChoice {
    let kubernetes = std::env::var("SGPC_KUBERNETES_VERSION").unwrap_or_else(|_| KUBERNETES.to_string());
    NodeChoice { kubernetes: kubernetes.parse().expect("a release version"), etcd: ETCD_VERSION.parse::<Version>().expect("a release version"), timeout: Duration::from_secs(180) }
}

fn containerd(suite: &str) -> SessionConfig {
    let dir = match suite {
        "sid" => support::containerd_dir(),
        other => support::repo_root().join(format!(".cache/debs/{other}/containerd/usr/bin")),
    };
    assert!(dir.join("containerd").is_file(), "no containerd in {}: run `make setup`", dir.display());
    SessionConfig::new(TargetChoice::Containerd { bin_dir: dir })
}

fn verdicts(run: &SessionRun) -> BTreeMap<CaseId, Verdict> {
    assert!(run.report.setup_error.is_none(), "set-up failed: {:?}", run.report.setup_error);
    run.report.cases.iter().map(|c| (c.id.clone(), c.judgement.verdict)).collect()
}

async fn both_levels(config: &SessionConfig) -> (SessionRun, SessionRun) {
    let catalogue = support::catalogue();
    let cases = catalogue.cases();
    let before = support::host_runtime_paths();
    let cri = run_session(config, Level::Cri, &catalogue, &cases, 4, std::future::pending(), |_| {}).await;
    let kube = run_session(config, Level::LiveNode(&node()), &catalogue, &cases, 4, std::future::pending(), |_| {}).await;
    assert_eq!(support::new_host_runtime_paths(&before), Vec::<std::path::PathBuf>::new(), "finished runs left these in the host's runtime paths");
    (cri, kube)
}

/// A case's verdicts at both levels, one line each, for a failure message.
fn differences(cri: &BTreeMap<CaseId, Verdict>, kube: &BTreeMap<CaseId, Verdict>, expect: impl Fn(&CaseId, Verdict) -> Verdict) -> Vec<String> {
    cri.iter().filter(|(id, v)| kube.get(*id) != Some(&expect(id, **v))).map(|(id, v)| format!("{id}: CRI {v}, kube {:?}", kube.get(id))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_containerd_2_every_kube_verdict_is_the_cri_verdict_and_the_node_reports_the_feature() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (cri, kube) = both_levels(&containerd("sid")).await;
    let (cri_verdicts, kube_verdicts) = (verdicts(&cri), verdicts(&kube));
    assert_eq!(cri_verdicts.len(), kube_verdicts.len());
    let differ = differences(&cri_verdicts, &kube_verdicts, |_, v| v);
    assert!(differ.is_empty(), "the levels disagree:\n{}", differ.join("\n"));
    for case in &kube.report.cases {
        // A refusal (the observations hold it since bundles judge it again) showed no process.
        let Some(observations) = case.observations.as_ref().filter(|o| o.refusal.is_none()) else { continue };
        let admission = observations.admission.expect("every kube case reports admission");
        assert!(admission.node_feature, "{}: the node did not report status.features.supplementalGroupsPolicy: true", case.id);
        let status = observations.identities.iter().find(|o| o.point == sgpc::observation::Point::PodStatus);
        let first = observations.identities.iter().find(|o| o.point == sgpc::observation::Point::FirstProcessKernel);
        let (status, first) = (status.expect("status.user observed"), first.expect("the first process observed"));
        assert_eq!(status.identity, first.identity, "{}: status.user is not the process's identity", case.id);
    }
    assert!(kube.report.runtime.as_ref().is_some_and(|r| r.runtime_version.contains("under kubelet")), "{:?}", kube.report.runtime);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_containerd_1_7_kubelet_rejects_every_strict_pod_and_the_rest_match_the_cri_level() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (cri, kube) = both_levels(&containerd("trixie")).await;
    let (cri_verdicts, kube_verdicts) = (verdicts(&cri), verdicts(&kube));
    // sgpc sends no hostUsers: false Pod to a node that cannot run it (NOT RUN at both levels),
    // so kubelet's rejection of Strict is not reached for those.
    let catalogue = support::catalogue();
    let userns = |id: &CaseId| catalogue.scenario(&id.scenario).is_some_and(|s| s.pod.user_namespace());
    let expect = |id: &CaseId, cri: Verdict| if id.policy == Policy::Strict && !userns(id) { Verdict::Rejected } else { cri };
    let differ = differences(&cri_verdicts, &kube_verdicts, expect);
    assert!(differ.is_empty(), "unexpected kube verdicts:\n{}", differ.join("\n"));
    let strict: Vec<_> = kube.report.cases.iter().filter(|c| c.id.policy == Policy::Strict && !userns(&c.id)).collect();
    assert!(!strict.is_empty());
    for case in strict {
        // REJECTED needs all three, observed live: the reason, kubelet's message, the Warning event.
        assert_eq!(case.judgement.reasons, vec![sgpc::verdict::admission::REJECTION_MESSAGE.to_string()], "{}", case.id);
        assert!(matches!(cri_verdicts[&case.id], Verdict::Unsupported { .. }), "{}: 1.7 does not advertise Strict at the CRI level", case.id);
    }
}

/// Runs a node whose set-up must fail on `kep-blog`; checks the one ERROR it gives names what
/// `error_has`, that reports are complete, and that nothing is left: no run directory, no
/// record, kubelet's tunables as they were.
async fn failed_node_setup(choice: NodeChoice, error_has: &[&str]) {
    let catalogue = support::catalogue();
    let cases: Vec<CaseId> = catalogue.cases().into_iter().filter(|c| c.scenario == "kep-blog").collect();
    let state = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut config = containerd("sid");
    config.settings.state_dir = sgpc::provision::state::StateDir { path: state.path().join("state") };
    config.settings.work_root = work.path().to_path_buf();
    let before = sgpc::provision::node::read_sysctls();
    let run = run_session(&config, Level::LiveNode(&choice), &catalogue, &cases, 2, std::future::pending(), |_| {}).await;
    let error = run.report.setup_error.clone().expect("the set-up fails");
    for part in error_has {
        assert!(error.contains(part), "{part:?} is not in: {error}");
    }
    assert_eq!(run.not_run, cases);
    assert!(run.report.cases.iter().all(|c| c.judgement.verdict == Verdict::Error));
    assert_eq!(run.report.exit_code(), sgpc::outcome::exit_code::ERROR);
    assert_eq!(sgpc::provision::node::read_sysctls(), before, "kubelet's tunables are written back");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0, "the run directory is gone");
    assert!(config.settings.state_dir.records().is_empty(), "the run's record is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_version_the_proxy_does_not_serve_is_one_error() {
    let _one = ONE_AT_A_TIME.lock().await;
    let choice = NodeChoice { kubernetes: "v1.99.0".parse().unwrap(), ..node() };
        // Go's own words about the version follow sgpc's.
    failed_node_setup(choice, &["k8s.io/kubernetes v1.99.0 is not served by the Go module proxy:\nk8s.io/kubernetes@v1.99.0"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_that_never_registers_is_one_error_naming_the_step_and_its_log() {
    let _one = ONE_AT_A_TIME.lock().await;
    let choice = node();
    // The real binaries, but a kubelet that only sleeps, from a cache of the test's own.
    let real = sgpc::run::node_binaries(&choice).await.expect("the node's binaries build");
    let cache = tempfile::tempdir().unwrap();
    let kubernetes = cache.path().join(format!("kubernetes/{}", choice.kubernetes));
    let etcd = cache.path().join(format!("etcd/{}", choice.etcd));
    std::fs::create_dir_all(&kubernetes).unwrap();
    std::fs::create_dir_all(&etcd).unwrap();
    std::os::unix::fs::symlink(&real.kube_apiserver, kubernetes.join("kube-apiserver")).unwrap();
    std::os::unix::fs::symlink(&real.etcd, etcd.join("etcd")).unwrap();
    std::fs::write(kubernetes.join("kubelet"), "#!/bin/sh\necho 'a kubelet that never registers'\nexec sleep 300\n").unwrap();
    std::fs::set_permissions(kubernetes.join("kubelet"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Every test of this binary that reads the cache holds ONE_AT_A_TIME.
    std::env::set_var("SGPC_GO_CACHE", cache.path());
    let timeout = Duration::from_secs(5);
    failed_node_setup(NodeChoice { timeout, ..choice }, &["kubelet: timed out after 5s waiting for the Node to be Ready", "a kubelet that never registers"]).await;
    std::env::remove_var("SGPC_GO_CACHE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_a_live_node_then_clean_leaves_nothing_and_writes_the_tunables_back() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (work_root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let before = sgpc::provision::node::read_sysctls();
    let host_paths_before = support::host_runtime_paths();
    let sgpc = |state: &std::path::Path| {
        let mut command = std::process::Command::new(support::sgpc_binary());
        command.current_dir(support::repo_root()).env("SGPC_STATE_DIR", state).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
        command
    };
    let mut run = sgpc(state.path())
        .args(["run", "--jobs", "1", "--kubernetes", &node().kubernetes.to_string(), "--work-root"])
        .arg(work_root.path())
        .arg("--containerd")
        .arg(support::containerd_dir())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let run_dir = || std::fs::read_dir(work_root.path()).unwrap().next().map(|e| e.unwrap().path());
    // The run records kubelet as soon as it starts; then a Pod runs (kubelet makes its log
    // directory) within the 69 cases of the catalogue.
    let records = sgpc::provision::state::StateDir { path: state.path().to_path_buf() };
    let kubelet_started = || records.records().iter().any(|r| r.daemons.iter().any(|d| d.name == sgpc::provision::node::KUBELET));
    sgpc::provision::wait_until("the run to record its kubelet", Duration::from_secs(300), || std::future::ready(kubelet_started())).await.unwrap();
    let pod_started = || run_dir().and_then(|d| std::fs::read_dir(d.join("node/pod-logs")).ok()).is_some_and(|mut entries| entries.next().is_some());
    sgpc::provision::wait_until("a Pod to start on the live node", Duration::from_secs(120), || std::future::ready(pod_started())).await.unwrap();
    run.kill().unwrap();
    run.wait().unwrap();
    let dir = run_dir().unwrap();
    assert!(!sgpc::provision::processes_under(&dir).is_empty(), "SIGKILL leaves the node running: the test would prove nothing otherwise");

    let output = sgpc(state.path()).arg("clean").output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(sgpc::outcome::exit_code::PASS), "{printed}");
    for daemon in ["kill kubelet", "kill kube-apiserver", "kill etcd", "kill containerd"] {
        assert!(printed.contains(daemon), "{daemon:?} is not in: {printed}");
    }
    // SIGKILL is delivered, not awaited: give what `clean` killed a moment to be gone, then name
    // whatever is still there.
    let gone = sgpc::provision::wait_until("every process under the run directory to exit", Duration::from_secs(30), || std::future::ready(sgpc::provision::processes_under(&dir).is_empty())).await;
    let left: Vec<String> = sgpc::provision::processes_under(&dir).iter().map(|pid| format!("{pid}: {}", std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " "))).collect();
    assert!(gone.is_ok(), "left after `sgpc clean`: {left:?}");
    assert!(!dir.exists());
    assert_eq!(sgpc::provision::node::read_sysctls(), before, "kubelet's tunables are written back by `sgpc clean`");
    // kubelet (cgroupsPerQOS false) asks for no cgroup parent, so the node's Pods sit in
    // containerd's default `k8s.io/<id>`: `clean` removes exactly those of the run's tasks.
    assert_eq!(support::new_host_runtime_paths(&host_paths_before), Vec::<std::path::PathBuf>::new(), "left in the host's runtime paths after `sgpc clean`");
}

/// The per-node plugin for real (issue #23): kubelet starts sgpc's DaemonSet Pod (the image
/// `sgpc plugin` builds from sgpc's own binary, the Pod sonobuoy's definition describes) on the
/// live node; inside it sgpc pulls its images into the node's own containerd over the mounted
/// socket and runs the catalogue as Pods through the node's kubelet (at the CRI level the
/// kubelet killed every sandbox sgpc made: "cannot exec in a stopped state"), writes its bundle
/// and sonobuoy's `done` file into the results directory; the bundle comes back and `sgpc
/// verify` accepts it, every case of the catalogue judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_daemonset_judges_the_nodes_runtime_and_its_bundle_verifies() {
    use kube::api::{Api, DeleteParams, ListParams, PostParams};
    let _one = ONE_AT_A_TIME.lock().await;
    let host_paths_before = support::host_runtime_paths();
    let choice = node();
    let mut config = containerd("sid");
    config.node = Some(sgpc::run::NodeSettings { binaries: sgpc::run::node_binaries(&choice).await.unwrap(), timeout: choice.timeout });
    let catalogue = support::catalogue();
    let users: Vec<CaseId> = catalogue.cases().into_iter().filter(|c| c.scenario == "cri-tools").collect();
    let session = sgpc::run::Session::start(&config, &catalogue, &users).await.expect("the live node starts");
    let dir = tempfile::tempdir().unwrap();
    let (work_root, results) = (dir.path().join("sgpc-work"), dir.path().join("results"));
    std::fs::create_dir(&results).unwrap();
    // Between the plugin and the runtime, a proxy holds a sandbox named `preflight` for an
    // hour: beside a kubelet, sgpc makes no sandbox of its own at the CRI level (the kubelet's
    // pod clean-up would kill it), so a run that made its preflight sandbox ends in an ERROR.
    // (The proxy holds the call after the runtime made the sandbox: on the old code that
    // sandbox stayed until the kubelet removed it.)
    let proxy_dir = tempfile::tempdir().unwrap();
    let socket = proxy_dir.path().join("cri.sock");
    let mut proxy = tokio::process::Command::new(env!("CARGO_BIN_EXE_sgpc-cri-proxy"))
        .arg("--listen")
        .arg(&socket)
        .args(["--upstream", session.runtime.endpoint.trim_start_matches("unix://"), "--fault", "slow", "--pods", "^preflight$", "--delay-ms", "3600000"])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    sgpc::provision::wait_until("the proxy's socket", Duration::from_secs(10), || std::future::ready(socket.exists())).await.unwrap();
    let (kubeconfig, node_name) = session.node().map(|n| (n.kubeconfig.clone(), n.node_name.clone())).unwrap();
    // The live node's apiserver runs without the ServiceAccount admission: the plugin reaches
    // it with the node's kubeconfig instead of a service account token.
    let content = sgpc::plugin::image(&support::sgpc_binary(), std::path::Path::new(sgpc::provision::registry::DEFAULT_BINARY)).unwrap();
    let paths = sgpc::plugin::NodePaths::new(socket, work_root.clone(), Some(kubeconfig.clone()), &content).unwrap();
    let image = sgpc::image::build(&content).unwrap();
    let reference = session.load_image(&image).await.unwrap();

    let client = sgpc::provision::node::client(&kubeconfig).await.unwrap();
    let namespace = "sgpc-plugin";
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.create(&PostParams::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).unwrap()).await.unwrap();
    let daemonsets: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(client.clone(), namespace);
    let daemonset = serde_json::from_value(sgpc::plugin::daemonset(&reference, &paths, namespace, &results)).unwrap();
    daemonsets.create(&PostParams::default(), &daemonset).await.unwrap();

    // No controller manager runs on the live node: the DaemonSet's Pod is created here as its
    // controller would, bound to the one node.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let mut template = daemonset.spec.unwrap().template;
    let mut spec = template.spec.take().unwrap();
    spec.node_name = Some(node_name.clone());
    let pod = k8s_openapi::api::core::v1::Pod { metadata: kube::api::ObjectMeta { name: Some("sgpc-plugin-0".into()), ..template.metadata.unwrap_or_default() }, spec: Some(spec), ..Default::default() };
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let done = results.join("done");
    let finished = sgpc::provision::wait_until("the plugin's done file", Duration::from_secs(900), || std::future::ready(done.exists())).await;
    let logs = pods.logs("sgpc-plugin-0", &Default::default()).await.unwrap_or_else(|e| format!("(no logs: {e})"));
    // The run's own namespace was deleted at its end (no namespace controller runs here to
    // finish the deletion: it stays Terminating).
    let left: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|n| n.metadata.name.as_deref().is_some_and(|name| name.starts_with("sgpc-") && name != namespace) && n.metadata.deletion_timestamp.is_none())
        .filter_map(|n| n.metadata.name)
        .collect();
    let status = pods.get("sgpc-plugin-0").await.map(|p| format!("{:?}", p.status)).unwrap_or_default();
    pods.delete("sgpc-plugin-0", &DeleteParams::default()).await.unwrap();
    sgpc::provision::wait_until("the plugin's Pod to be gone", Duration::from_secs(60), || async { pods.list(&ListParams::default()).await.is_ok_and(|l| l.items.is_empty()) }).await.unwrap();
    proxy.kill().await.unwrap();
    session.teardown().await.unwrap();
    finished.unwrap_or_else(|e| panic!("{e}: {status}\n{logs}"));
    assert!(left.is_empty(), "the plugin's run left its namespace: {left:?}\n{logs}");

    let named = std::fs::read_to_string(&done).unwrap();
    let bundle = results.join(named.strip_prefix(&format!("{}/", sgpc::plugin::RESULTS_DIR)).unwrap_or_else(|| panic!("done names {named:?}")));
    assert_eq!(bundle.file_name().unwrap().to_string_lossy(), format!("sgpc-{node_name}.tar.gz"), "the bundle is named after its node");
    let verified = std::process::Command::new(support::sgpc_binary()).arg("verify").arg(&bundle).output().unwrap();
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(verified.status.code(), Some(sgpc::outcome::exit_code::PASS), "{stdout}\n{logs}");
    assert!(stdout.contains(" 0 findings;") && stdout.contains("; the built-in catalogue"), "{stdout}\n{logs}");
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    assert!(std::process::Command::new("tar").arg("-xzf").arg(&bundle).current_dir(&unpacked).status().unwrap().success());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(unpacked.join("sgpc/report.json")).unwrap()).unwrap();
    let endpoint = report["runtime"]["endpoint"].as_str().unwrap_or_else(|| panic!("{}\n{logs}", report["setup_error"]));
    let expected = format!("kubelet {} node {node_name} over unix://{}", node().kubernetes, sgpc::plugin::SOCKET_IN_POD);
    assert_eq!(endpoint, expected, "through the node's kubelet (the version it reports), over its runtime's mounted socket");
    assert!(report["setup_error"].is_null(), "{}", report["setup_error"]);
    // As at the CRI level on this containerd: its known findings, no hostUsers: false Pods.
    support::assert_containerd_2_judged_everything(&report, &catalogue, &logs);
    assert!(logs.contains("waiting for SIGTERM"), "{logs}");
    assert_eq!(support::new_host_runtime_paths(&host_paths_before), Vec::<std::path::PathBuf>::new(), "the plugin's run left these in the host's runtime paths");
}
