//! `make bench`: the catalogue against a private containerd 2.x, sgpc against a floor.
//!
//! The floor is a minimal direct CRI client that sends the same configs (built by the same pure
//! functions) and makes the same RPC sequence per case, with no observation parsing, verdicts,
//! fixtures or reports. Both run in the same process against the same containerd, interleaved
//! round by round, one at a time and then `JOBS` in flight. Printed: per-case times, the ratio
//! sgpc/floor, and the amortized time per case with concurrency. Targets (conformance core
//! issue): ratio <= 1.25, amortized <= 100 ms per case. Then the runner as `sgpc run` uses it,
//! cases with the same Pod-level context sharing a sandbox, against the one-sandbox-per-case
//! floor: target <= 0.6.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use sgpc::run::{Session, SessionConfig, TargetChoice};
use sgpc::scenario::{Catalogue, CaseId, Policy};
use sgpc::driver::cri::{container_config, parse_cri_log, sandbox_config, socket_path, CaseRequest};
use tonic::transport::{Endpoint, Uri};

const JOBS: usize = 4;
const ROUNDS: usize = 2;

struct Floor {
    client: RuntimeServiceClient<tonic::transport::Channel>,
    dir: PathBuf,
    run_id: String,
}

impl Floor {
    /// `run_id` is the session's, so that the floor's sandboxes share its cgroup tree, which the
    /// session's teardown removes.
    async fn connect(endpoint: &str, dir: PathBuf, run_id: &str) -> Floor {
        let path = socket_path(endpoint);
        let channel = Endpoint::from_static("http://[::]:50051")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
            .expect("the floor client connects");
        Floor { client: RuntimeServiceClient::new(channel), dir, run_id: run_id.to_string() }
    }

    /// RunPodSandbox, CreateContainer, StartContainer, wait for the log, ExecSync (unless
    /// `exec` is false), ContainerStatus, StopPodSandbox, RemovePodSandbox.
    async fn case(&self, catalogue: &Catalogue, id: &CaseId, image_ref: String, n: usize, exec: bool) {
        let scenario = catalogue.scenario(&id.scenario).expect("known scenario");
        let req = CaseRequest {
            case: id.to_string(),
            scenario,
            policy: id.policy,
            image_ref,
            // The floor client checks nothing, the image digests included.
            image_digests: sgpc::image::Digests { manifest: String::new(), config: String::new() },
            case_dir: self.dir.join(format!("floor-{n}-{}-{}", id.scenario, id.policy)),
            container: "probe".into(),
            init: false,
            run_id: self.run_id.clone(),
            runtime_handler: String::new(),
            // The same cgroup tree as sgpc's own sessions on this runtime.
            cgroup_parent: sgpc::provision::host_paths::cgroup_parent(&self.run_id),
            userns_slot: sgpc::driver::cri::UsernsSlots::free_of(std::path::Path::new("/etc"), &self.run_id).nth(n),
        };
        std::fs::create_dir_all(&req.case_dir).expect("case dir");
        let mut c = self.client.clone();
        let mut sandbox = sandbox_config(&req);
        if let Some(m) = sandbox.metadata.as_mut() {
            m.uid = format!("floor-{n}-{}", m.uid);
        }
        let pod = c.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(sandbox.clone()), runtime_handler: String::new() }).await.expect("RunPodSandbox").into_inner().pod_sandbox_id;
        let mut config = container_config(&req, Vec::new(), None);
        config.mounts.clear();
        let log = req.case_dir.join(&config.log_path);
        let cid = c.create_container(cri::CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(config), sandbox_config: Some(sandbox) }).await.expect("CreateContainer").into_inner().container_id;
        c.start_container(cri::StartContainerRequest { container_id: cid.clone() }).await.expect("StartContainer");
        loop {
            if std::fs::read_to_string(&log).is_ok_and(|l| parse_cri_log(&l).contains("sgpc-end")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if exec {
            c.exec_sync(cri::ExecSyncRequest { container_id: cid.clone(), cmd: sgpc::observation::exec_command(), timeout: 10 }).await.expect("ExecSync");
        }
        c.container_status(cri::ContainerStatusRequest { container_id: cid.clone(), verbose: true }).await.expect("ContainerStatus");
        c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("StopPodSandbox");
        c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod }).await.expect("RemovePodSandbox");
    }
}

fn per_case(total: Duration, cases: usize) -> f64 {
    total.as_secs_f64() * 1000.0 / cases as f64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let catalogue = Catalogue::load(&root.join("scenarios"), &root.join("images")).expect("catalogue");
    let bin_dir = std::env::var_os("SGPC_CONTAINERD_DIR").map(PathBuf::from).unwrap_or_else(|| root.join(".cache/debs/sid/containerd/usr/bin"));
    let cases = catalogue.cases();

    let started = Instant::now();
    let session = Session::start(&SessionConfig::new(TargetChoice::Containerd { bin_dir }), &catalogue, &cases).await.expect("containerd starts");
    println!("set-up (build, registry, containerd start, pulls): {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
    println!("runtime: {} {}; {} cases; {ROUNDS} rounds, interleaved", session.runtime.runtime_name, session.runtime.runtime_version, cases.len());
    // Only cases that PASS here are measured: a FAIL or REFUSED case (containerd's known
    // findings) takes another path through the runtime than the floor's.
    let mut cases = cases;
    let mut left_out = Vec::new();
    for id in cases.clone() {
        let verdict = session.judge_case(&id).await.judgement.verdict;
        assert_ne!(verdict, sgpc::verdict::Verdict::Error, "{id} could not be run");
        if verdict != sgpc::verdict::Verdict::Pass {
            left_out.push(format!("{id} ({verdict})"));
        }
    }
    cases.retain(|id| !left_out.iter().any(|l| l.starts_with(&format!("{id} "))));
    println!("measured: {} cases that PASS here; left out: {}", cases.len(), if left_out.is_empty() { "none".to_string() } else { left_out.join(", ") });
    let floor = Floor::connect(&session.runtime.endpoint, session.dir().join("floor"), &session.run_id).await;
    let image_of = |id: &CaseId| {
        let scenario = catalogue.scenario(&id.scenario).expect("known scenario");
        session.images[&scenario.image].reference.clone()
    };

    let mut totals: HashMap<&str, Duration> = HashMap::new();
    let mut n = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for id in &cases {
            let r = session.judge_case(id).await;
            assert_eq!(r.judgement.verdict, sgpc::verdict::Verdict::Pass, "{id}: {:?}", r.judgement);
        }
        *totals.entry("sgpc, 1 in flight").or_default() += t.elapsed();

        let t = Instant::now();
        for id in &cases {
            n += 1;
            floor.case(&catalogue, id, image_of(id), n, true).await;
        }
        *totals.entry("floor, 1 in flight").or_default() += t.elapsed();

        let t = Instant::now();
        let results: Vec<_> = futures::stream::iter(&cases).map(|id| session.judge_case(id)).buffer_unordered(JOBS).collect().await;
        assert!(results.iter().all(|r| r.judgement.verdict == sgpc::verdict::Verdict::Pass), "{:?}", results.iter().find(|r| r.judgement.verdict != sgpc::verdict::Verdict::Pass));
        *totals.entry("sgpc, 4 in flight").or_default() += t.elapsed();

        let t = Instant::now();
        let base = n;
        n += cases.len();
        futures::stream::iter(cases.iter().enumerate()).map(|(i, id)| floor.case(&catalogue, id, image_of(id), base + i + 1, true)).buffer_unordered(JOBS).collect::<Vec<_>>().await;
        *totals.entry("floor, 4 in flight").or_default() += t.elapsed();

        // The runner as `sgpc run` uses it: cases with the same Pod-level context share a sandbox.
        let t = Instant::now();
        let results = sgpc::run::run_cases(&session, &catalogue, &session.images, &cases, JOBS, &mut |_| {}).await;
        assert!(results.iter().all(|r| r.judgement.verdict == sgpc::verdict::Verdict::Pass), "{:?}", results.iter().find(|r| r.judgement.verdict != sgpc::verdict::Verdict::Pass));
        *totals.entry("sgpc, shared sandboxes, 4 in flight").or_default() += t.elapsed();

        // Informative: what the exec'd-process observation costs the runtime.
        let t = Instant::now();
        let base = n;
        n += cases.len();
        futures::stream::iter(cases.iter().enumerate()).map(|(i, id)| floor.case(&catalogue, id, image_of(id), base + i + 1, false)).buffer_unordered(JOBS).collect::<Vec<_>>().await;
        *totals.entry("floor without ExecSync, 4 in flight").or_default() += t.elapsed();
    }

    let count = cases.len() * ROUNDS;
    let ms = |key: &str| per_case(totals[key], count);
    println!();
    println!("{:<38} {:>12}", "", "ms per case");
    for key in ["floor, 1 in flight", "sgpc, 1 in flight", "floor, 4 in flight", "sgpc, 4 in flight", "sgpc, shared sandboxes, 4 in flight", "floor without ExecSync, 4 in flight"] {
        println!("{key:<38} {:>12.1}", ms(key));
    }
    let ratio_1 = ms("sgpc, 1 in flight") / ms("floor, 1 in flight");
    let ratio_4 = ms("sgpc, 4 in flight") / ms("floor, 4 in flight");
    println!();
    println!("sgpc / floor, 1 in flight: {ratio_1:.3}  (target <= 1.25)");
    println!("sgpc / floor, 4 in flight: {ratio_4:.3}  (target <= 1.25)");
    println!("sgpc amortized, 4 in flight: {:.1} ms per case (target <= 100 ms)", ms("sgpc, 4 in flight"));
    let groups = catalogue.sandboxes(&cases).len();
    println!(
        "sgpc with shared sandboxes / floor (one sandbox per case), 4 in flight: {:.3}  (target <= 0.6; {} cases in {groups} sandboxes)",
        ms("sgpc, shared sandboxes, 4 in flight") / ms("floor, 4 in flight"),
        cases.len()
    );
    critest_beside_sgpc(&session).await;
    session.teardown().await.expect("teardown");
}

/// critest's SupplementalGroupsPolicy specs and sgpc's `cri-tools` cases (the same image, Pod
/// and policies) against the same runtime, interleaved round by round: time per case and the
/// identity points each observes.
async fn critest_beside_sgpc(session: &Session) {
    println!();
    let version: sgpc::provision::gomodule::Version = sgpc::critest::VERSION.parse().expect("a release version");
    let Some(dir) = sgpc::provision::gomodule::built(sgpc::provision::gomodule::Program::Critest, &version) else {
        println!("critest: not run: critest {version} is not built (make setup builds it)");
        return;
    };
    let cases = [CaseId { scenario: "cri-tools".into(), policy: Policy::Merge }, CaseId { scenario: "cri-tools".into(), policy: Policy::Strict }];
    let (mut sgpc_time, mut critest_wall, mut critest_specs, mut points) = (Duration::ZERO, Duration::ZERO, 0.0, 0);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for id in &cases {
            let r = session.judge_case(id).await;
            assert_eq!(r.judgement.verdict, sgpc::verdict::Verdict::Pass, "{id}: {:?}", r.judgement);
            points = r.observations.as_ref().map_or(0, |o| o.identities.len());
        }
        sgpc_time += t.elapsed();
        let t = Instant::now();
        let run = session.run_critest(&dir.join("critest")).await.expect("critest runs");
        critest_wall += t.elapsed();
        assert!(run.all(sgpc::critest::SpecOutcome::Passed), "critest: {}", run.summary());
        critest_specs += run.specs.iter().map(|s| s.seconds).sum::<f64>();
    }
    let count = cases.len() * ROUNDS;
    let (sgpc_ms, wall_ms, spec_ms) = (per_case(sgpc_time, count), per_case(critest_wall, count), critest_specs * 1000.0 / count as f64);
    println!("critest {} beside sgpc, {ROUNDS} rounds interleaved, cri-tools Merge and Strict:", sgpc::critest::VERSION);
    println!("{:<38} {:>12} {:>16}", "", "ms per case", "identity points");
    println!("{:<38} {sgpc_ms:>12.1} {points:>16}", "sgpc (1 in flight)");
    println!("{:<38} {wall_ms:>12.1} {:>16}", "critest (whole run, per spec)", sgpc::critest::IDENTITY_POINTS_PER_SPEC);
    println!("{:<38} {spec_ms:>12.1} {:>16}", "critest (spec bodies only)", sgpc::critest::IDENTITY_POINTS_PER_SPEC);
    println!("sgpc / critest per case: {:.3} (whole run), {:.3} (spec bodies)", sgpc_ms / wall_ms, sgpc_ms / spec_ms);
}
