//! A session on a CRI runtime: the run directory, the registry, the runtime (started by sgpc
//! or an existing endpoint), the proxy, the images pushed and pulled; their drop guard
//! ([`Resources`]); and [`run_session`], the lifecycle `sgpc run` and every matrix column use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;

use super::StartError;
use crate::driver::cri::{CaseRequest, CriDriver, CriError};
use crate::driver::{Driver, DriverError, Member, RuntimeInfo, Timeouts};
use crate::image::{self, ImageContent, ImageRecord};
use crate::observation::Observations;
use crate::outcome::CaseResult;
use crate::provision::containerd::{Containerd, ContainerdOptions, OciRuntime};
use crate::provision::crio::{Crio, CrioOptions};
use crate::provision::node::{LiveNode, NodeBinaries, NodeOptions};
use crate::provision::registry::{self, Registry};
use crate::provision::RuntimeDaemon;
use crate::provision::state::{CriRecord, ProcessRecord, RunRecord, StateDir};
use crate::proxy::Fault;
use crate::scenario::{CaseId, Catalogue};

/// Which runtime a session drives.
#[derive(Debug, Clone)]
pub enum TargetChoice {
    /// An existing CRI endpoint; sgpc starts nothing but its registry.
    Cri { endpoint: String },
    /// Start containerd from a directory of binaries.
    Containerd { bin_dir: PathBuf },
    /// Start CRI-O from a directory holding crio and pinns (see [`crate::provision::crio::find_binaries`]
    /// for conmon), over `oci_runtime` if given, else the directory's runc or crun.
    Crio { bin_dir: PathBuf, oci_runtime: Option<OciRuntime> },
}

/// What one session runs on: the runtime (resolved to binaries or an endpoint), its OCI
/// runtimes and handler, a live node over it, and the [`SessionSettings`] every session shares.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub target: TargetChoice,
    /// OCI runtimes for a containerd sgpc starts, each a runtime handler; the first is the default.
    pub oci_runtimes: Vec<OciRuntime>,
    /// The CRI runtime handler cases ask for; empty means the runtime's default.
    pub runtime_handler: String,
    /// Start a live Kubernetes node on the runtime (`sgpc run --kubernetes VERSION`).
    pub node: Option<NodeSettings>,
    pub settings: SessionSettings,
}

/// How sessions run, whatever their target: `sgpc run`'s, and the one every matrix column and
/// discovery runtime shares.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Where the run directory (`sgpc-XXXXXX`) is created.
    pub work_root: PathBuf,
    pub timeouts: Timeouts,
    /// The static busybox critest's image needs (sgpc's own images hold only its probe).
    pub critest_busybox: PathBuf,
    pub registry_binary: PathBuf,
    /// Put `sgpc-cri-proxy` between sgpc and the runtime, injecting faults.
    pub proxy: Option<ProxySettings>,
    /// Where the run records itself, so that a later run or `sgpc clean` can remove what a
    /// killed run left.
    pub state_dir: StateDir,
    /// After the cases, run this critest's SupplementalGroupsPolicy specs against the runtime.
    pub critest: Option<PathBuf>,
    /// Run cases whose Pod-level sandbox config is identical as containers of one sandbox
    /// ([`Catalogue::sandboxes`]); `false`: one sandbox per case (or per Pod of several).
    pub share_sandboxes: bool,
    /// A kubelet runs beside the runtime (`--node`): sgpc makes no sandbox at the CRI level,
    /// which the kubelet's pod clean-up kills as one no Pod of its own owns; the Pods it runs
    /// through that kubelet prove that the runtime starts sandboxes.
    pub external_kubelet: bool,
}

/// A live node over the session's runtime: its binaries, and how long it may take to be Ready.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub binaries: NodeBinaries,
    pub timeout: Duration,
}

/// How to start the fault-injecting proxy.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub binary: PathBuf,
    pub faults: Vec<Fault>,
    /// Sandbox names (`<scenario>-<policy>`) the pod-scoped faults apply to.
    pub pods: Option<String>,
    pub delay: Duration,
}

impl ProxySettings {
    /// The proxy binary installed next to the running executable (or its parent, for tests).
    pub fn beside_current_exe(faults: Vec<Fault>) -> ProxySettings {
        let exe = std::env::current_exe().unwrap_or_default();
        let candidates = exe.ancestors().skip(1).take(2).map(|d| d.join("sgpc-cri-proxy"));
        let binary = candidates.clone().find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("sgpc-cri-proxy"));
        ProxySettings { binary, faults, pods: None, delay: Duration::from_secs(60) }
    }
}

impl SessionConfig {
    /// runc as the only OCI runtime, the runtime's default handler, no node, default settings.
    pub fn new(target: TargetChoice) -> SessionConfig {
        SessionConfig { target, oci_runtimes: vec![OciRuntime::runc()], runtime_handler: String::new(), node: None, settings: SessionSettings::default() }
    }
}

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        SessionSettings {
            work_root: std::env::temp_dir(),
            timeouts: Timeouts::default(),
            critest_busybox: PathBuf::from("/bin/busybox"),
            registry_binary: PathBuf::from(registry::DEFAULT_BINARY),
            proxy: None,
            state_dir: StateDir::from_env(),
            critest: None,
            share_sandboxes: true,
            external_kubelet: false,
        }
    }
}

/// What a session started and must remove: the run directory, the registry, the runtime, the proxy.
/// Dropping it without [`Resources::teardown`] (after a panic) kills and removes synchronously.
struct Resources {
    dir: PathBuf,
    registry: Option<Registry>,
    runtime: Option<RuntimeDaemon>,
    proxy: Option<tokio::process::Child>,
    /// A live node over the runtime; stopped first, so that kubelet recreates nothing.
    node: Option<LiveNode>,
    /// What the state directory says about this run, for a later run to clean after a SIGKILL.
    record: RunRecord,
    state: StateDir,
    /// What the runtime said about itself, once it answered.
    runtime_info: Option<RuntimeInfo>,
    provisioned: Option<String>,
    /// Teardown already tried to remove the run directory: dropping does not try again (it
    /// would block an async thread for as long as processes keep appearing); the record stays
    /// for `sgpc clean`.
    removal_tried: bool,
}

impl Resources {
    /// Records a daemon just started, before anything else happens.
    fn record_daemon(&mut self, name: &str, pid: Option<u32>) -> anyhow::Result<()> {
        if let Some(process) = pid.and_then(|pid| ProcessRecord::of(name, pid)) {
            self.record.daemons.push(process);
        }
        Ok(self.state.save(&self.record)?)
    }

    async fn teardown(mut self, target: Option<(&CriDriver, &str)>) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if let Some(node) = self.node.take() {
            problems.extend(node.stop().await);
        }
        // Also after a node that failed to start, and after another run's node that was killed.
        problems.extend(self.state.release_sysctls(&self.record.run_id));
        // A runtime of ours that died took its sandboxes' state with it; what is left of
        // them (shims, container processes, mounts) lives under the run directory.
        let runtime_died = self.runtime.as_mut().is_some_and(RuntimeDaemon::has_exited);
        if let (Some((target, run_id)), false) = (target, runtime_died) {
            if let Err(e) = remove_and_verify(target, run_id).await {
                // A private runtime that died meanwhile (a SIGKILL still being delivered on a
                // loaded machine) cannot answer; removing its directory below ends what it left.
                let died = match self.runtime.as_mut() {
                    Some(runtime) => runtime.exits_within(Duration::from_secs(5)).await,
                    None => false,
                };
                if !died {
                    problems.push(format!("removing the run's sandboxes: {e:#}"));
                }
            }
        }
        if let Some(cri) = &self.record.cri {
            // A set-up that failed after pulling has no target to hand: connect again.
            let reconnected = match target {
                Some(_) => None,
                None => CriDriver::connect(&cri.endpoint, Timeouts::default()).await.map_err(|e| problems.push(format!("{e}"))).ok(),
            };
            if let Some(target) = &reconnected {
                if let Err(e) = target.remove_run(&self.record.run_id).await {
                    problems.push(format!("removing the run's sandboxes: {e:#}"));
                }
            }
            if let Some(target) = target.map(|(t, _)| t).or(reconnected.as_ref()) {
                for image in &cri.pulled_images {
                    if let Err(e) = target.remove_image(image).await {
                        problems.push(format!("removing image {image} from {}: {e:#}", cri.endpoint));
                    }
                }
            }
        }
        if let Some(mut proxy) = self.proxy.take() {
            if let Err(e) = crate::provision::stop_child(&mut proxy).await {
                problems.push(format!("stopping the proxy: {e:#}"));
            }
        }
        if let Some(runtime) = self.runtime.take() {
            if let Err(e) = runtime.stop().await {
                problems.push(format!("stopping the runtime: {e:#}"));
            }
        }
        if let Some(registry) = self.registry.take() {
            if let Err(e) = registry.stop().await {
                problems.push(format!("stopping the registry: {e:#}"));
            }
        }
        self.removal_tried = true;
        if let Err(e) = crate::provision::remove_tree_async(self.dir.clone()).await {
            problems.push(format!("{e:#}"));
        }
        if problems.is_empty() {
            self.state.forget(&self.record.run_id);
            Ok(())
        } else {
            anyhow::bail!("cleanup incomplete: {}", problems.join("; "))
        }
    }
}

/// Removes every sandbox of the run, then checks the runtime's own lists are empty of it.
async fn remove_and_verify(target: &CriDriver, run_id: &str) -> anyhow::Result<()> {
    target.remove_run(run_id).await?;
    let sandboxes = target.sandboxes_of_run(run_id).await?;
    let containers = target.containers_of_run(run_id).await?;
    anyhow::ensure!(sandboxes.is_empty() && containers.is_empty(), "still listed by the runtime: sandboxes {sandboxes:?}, containers {containers:?}");
    Ok(())
}

impl Drop for Resources {
    /// After a panic, or when the run's future is dropped (`sgpc matrix` and `sgpc discover`
    /// on a signal): kills every process under the run directory, unmounts and removes it. The
    /// record goes too, unless the run put sandboxes or images into a `--cri` runtime, which
    /// only an async clean can remove (`sgpc clean`, or the next run).
    fn drop(&mut self) {
        if !self.removal_tried && self.dir.exists() && crate::provision::remove_tree(&self.dir).is_ok() && self.record.cri.is_none() {
            self.state.forget(&self.record.run_id);
        }
    }
}

/// A provisioned runtime ready to run cases. Call [`Session::teardown`] at the end.
pub struct Session {
    pub run_id: String,
    pub runtime_handler: String,
    pub runtime: RuntimeInfo,
    pub provisioned: Option<String>,
    pub images: BTreeMap<String, ImageRecord>,
    catalogue: Catalogue,
    /// The busybox of critest's image, built on demand.
    critest_busybox: PathBuf,
    critest: Option<PathBuf>,
    target: CriDriver,
    resources: Resources,
    /// Cases started so far: each run of a case gets a directory of its own, also a case run
    /// again in the same session (protected directories are always created fresh).
    cases_started: std::sync::atomic::AtomicUsize,
    /// The host ids the cases' user namespaces take.
    userns_slots: crate::driver::cri::UsernsSlots,
    share_sandboxes: bool,
}

/// What provisioning produced, before it becomes a session.
struct Provisioned {
    target: CriDriver,
    runtime: RuntimeInfo,
    provisioned: Option<String>,
    images: BTreeMap<String, ImageRecord>,
}

impl Session {
    /// Provisions everything the cases need. On failure, whatever was started is removed.
    pub async fn start(config: &SessionConfig, catalogue: &Catalogue, cases: &[CaseId]) -> Result<Session, StartError> {
        let early = |error: anyhow::Error| StartError { runtime: None, provisioned: None, error };
        let dir = tempfile::Builder::new()
            .prefix("sgpc-")
            .tempdir_in(&config.settings.work_root)
            .with_context(|| format!("creating a run directory in {}", config.settings.work_root.display()))
            .map_err(early)?
            .keep();
        // Only root may look inside: credentials, sockets and fixtures live here.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).with_context(|| format!("restricting {}", dir.display())).map_err(early)?;
        let run_id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).context("the run directory has no name").map_err(early)?;
        let record = RunRecord::new(&run_id, &dir);
        let mut resources = Resources { dir, registry: None, runtime: None, proxy: None, node: None, record, state: config.settings.state_dir.clone(), runtime_info: None, provisioned: None, removal_tried: false };
        if let Err(e) = resources.state.save(&resources.record) {
            let _ = crate::provision::remove_tree(&resources.dir);
            return Err(StartError { runtime: None, provisioned: None, error: anyhow::Error::from(e).context("recording the run (set SGPC_STATE_DIR to a directory you may write)") });
        }
        let userns_slots = crate::driver::cri::UsernsSlots::free_of(Path::new("/etc"), &run_id);
        match provision(&mut resources, config, catalogue, cases, &run_id).await {
            Ok(p) => Ok(Session {
                run_id,
                runtime_handler: config.runtime_handler.clone(),
                runtime: p.runtime,
                provisioned: p.provisioned,
                images: p.images,
                catalogue: catalogue.clone(),
                critest_busybox: config.settings.critest_busybox.clone(),
                critest: config.settings.critest.clone(),
                target: p.target,
                resources,
                cases_started: std::sync::atomic::AtomicUsize::new(0),
                userns_slots,
                share_sandboxes: config.settings.share_sandboxes,
            }),
            Err(e) => {
                let (runtime, provisioned) = (resources.runtime_info.take(), resources.provisioned.take());
                let error = match resources.teardown(None).await {
                    Ok(()) => e,
                    Err(cleanup) => e.context(format!("cleaning up after the failure failed too: {cleanup:#}")),
                };
                Err(StartError { runtime, provisioned, error })
            }
        }
    }

    /// The scenarios and recipes the session can run (discovery adds to them).
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The run directory: logs, fixtures, the runtime's and registry's data.
    pub fn dir(&self) -> &Path {
        &self.resources.dir
    }

    /// Runs one case and judges it. Runtime misbehaviour and harness failures become verdicts.
    pub async fn judge_case(&self, id: &CaseId) -> CaseResult {
        super::run_case(self, &self.catalogue, &self.images, id).await
    }

    /// Runs the cases of one Pod ([`Catalogue::pods`]) together and judges each.
    pub async fn judge_pod(&self, ids: &[CaseId]) -> Vec<CaseResult> {
        super::run_pod(self, &self.catalogue, &self.images, ids).await
    }

    /// Adds scenarios to a running session (discovery grows its catalogue batch by batch):
    /// pushes the images built for them that the session lacks to its registry and pulls them.
    pub async fn add(&mut self, catalogue: &Catalogue, built: &[&image::BuiltImage]) -> anyhow::Result<()> {
        if let Some(scenario) = catalogue.scenarios.iter().find(|s| self.catalogue.scenario(&s.name).is_some()) {
            anyhow::bail!("scenario {:?} is already in the session", scenario.name);
        }
        let registry = self.resources.registry.as_ref().context("the session has no registry")?;
        let credentials = registry.credentials.clone();
        // Pushes and pulls four at a time: a discovery adds hundreds of small images.
        const IN_FLIGHT: usize = 4;
        let new = built.iter().copied().filter(|b| !self.images.contains_key(&b.name) && b.name != image::PAUSE_IMAGE);
        let pushed: Vec<ImageRecord> = futures::stream::iter(new)
            .map(|image| async move {
                let reference = registry.push(image).await.with_context(|| format!("pushing image {}", image.name))?;
                anyhow::Ok(ImageRecord { name: image.name.clone(), reference, manifest_digest: image.manifest.digest.clone(), config_digest: image.config.digest.clone() })
            })
            .buffered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        for record in &pushed {
            remember_if_new(&mut self.resources, &self.target, record).await?;
        }
        let target = &self.target;
        futures::stream::iter(&pushed)
            .map(|record| pull_checked(target, record, &credentials))
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<()>>>()?;
        self.images.extend(pushed.into_iter().map(|r| (r.name.clone(), r)));
        let new_recipes = catalogue.images.iter().filter(|r| self.catalogue.recipe(&r.name).is_none()).cloned().collect::<Vec<_>>();
        self.catalogue.images.extend(new_recipes);
        self.catalogue.scenarios.extend(catalogue.scenarios.iter().cloned());
        Ok(())
    }

    /// Whether the session was asked to run critest after its cases (`--critest`).
    pub fn critest_asked(&self) -> bool {
        self.critest.is_some()
    }

    /// Runs critest's SupplementalGroupsPolicy specs against the runtime the session started
    /// (see [`crate::critest`]): builds its image from the catalogue's recipe, pushes it under
    /// critest's name and pulls it, so that critest finds it without a network.
    pub async fn run_critest(&self, binary: &Path) -> anyhow::Result<crate::critest::CritestRun> {
        use crate::critest;
        let runtime = self.resources.runtime.as_ref().with_context(|| format!("critest runs only against a runtime sgpc starts: only there does {} resolve to sgpc's registry", critest::IMAGE))?;
        let recipe = self.catalogue.recipe(critest::RECIPE).with_context(|| format!("critest's image is built from the recipe {:?}, which the catalogue lacks", critest::RECIPE))?;
        let built = image::build(&ImageContent::from_recipe(recipe).with_busybox(&self.critest_busybox)?)?;
        let registry = self.resources.registry.as_ref().context("the session has no registry")?;
        registry.push_as(&built, critest::REPOSITORY, critest::TAG).await.context("pushing critest's image")?;
        self.target.pull(critest::IMAGE, Some(&registry.credentials)).await.with_context(|| format!("pulling {}", critest::IMAGE))?;
        let dir = self.resources.dir.join("critest");
        fs_err::create_dir_all(&dir)?;
        // critest reaches the runtime through an in-process proxy that makes its sandboxes the
        // run's (crate::proxy::Adoption).
        let proxy = crate::proxy::ProxyConfig {
            listen: dir.join("cri.sock"),
            upstream: crate::driver::cri::socket_path(runtime.endpoint()),
            faults: Vec::new(),
            pods: None,
            delay: Duration::ZERO,
            runtime_pid: None,
            adopt: Some(crate::proxy::Adoption { labels: crate::driver::cri::run_labels(&self.run_id), cgroup_parent: self.cgroup_parent() }),
        };
        let endpoint = format!("unix://{}", proxy.listen.display());
        // A socket left by an earlier critest of this session (make bench runs it per round),
        // in sgpc's own run directory.
        if proxy.listen.exists() {
            fs_err::remove_file(&proxy.listen)?;
        }
        let listener = tokio::net::UnixListener::bind(&proxy.listen).with_context(|| format!("listening on {}", proxy.listen.display()))?;
        // Aborted when critest is done, or when an interrupt drops this future.
        let mut serving = AbortOnDrop(tokio::spawn(crate::proxy::serve_on(listener, proxy)));
        let said = critest::run(binary, &endpoint, &dir, critest::TIMEOUT).await;
        if serving.0.is_finished() {
            // The proxy stopped under critest: what critest says is about sgpc, not the runtime.
            let stopped = (&mut serving.0).await;
            anyhow::bail!("the proxy in front of critest stopped: {}", match stopped { Ok(Err(e)) => format!("{e:#}"), Ok(Ok(())) => "it returned".into(), Err(e) => e.to_string() });
        }
        Ok(said?)
    }

    /// Pushes an image to the session's registry and pulls it into the runtime (what a node then
    /// holds for a Pod, such as the per-node plugin's): its reference.
    pub async fn load_image(&self, built: &image::BuiltImage) -> anyhow::Result<String> {
        let registry = self.resources.registry.as_ref().context("the session has no registry")?;
        let reference = registry.push(built).await.with_context(|| format!("pushing image {}", built.name))?;
        self.target.pull(&reference, Some(&registry.credentials)).await.with_context(|| format!("pulling {reference}"))?;
        Ok(reference)
    }

    /// The CRI target, for tests that inspect the runtime directly.
    pub fn target(&self) -> &CriDriver {
        &self.target
    }

    /// The live node over the runtime, when the session started one.
    pub fn node(&self) -> Option<&LiveNode> {
        self.resources.node.as_ref()
    }

    /// Pids of the daemons the session started.
    pub fn daemon_pids(&self) -> Vec<u32> {
        let registry = self.resources.registry.iter().filter_map(Registry::pid);
        registry.chain(self.resources.runtime.iter().filter_map(RuntimeDaemon::pid)).collect()
    }

    /// Removes every sandbox of the run, stops containerd and the registry, removes the run dir.
    pub async fn teardown(self) -> anyhow::Result<()> {
        self.resources.teardown(Some((&self.target, &self.run_id))).await
    }

    /// The run's own cgroup tree for a runtime sgpc started; a `--cri` runtime's own default.
    fn cgroup_parent(&self) -> String {
        match self.resources.runtime {
            Some(_) => crate::provision::host_paths::cgroup_parent(&self.run_id),
            None => String::new(),
        }
    }
}

impl Driver for Session {
    fn runtime(&self) -> &RuntimeInfo {
        &self.runtime
    }

    fn reads_host_proc(&self) -> bool {
        true
    }

    fn shares_sandboxes(&self) -> bool {
        self.share_sandboxes
    }

    async fn run_pod(&self, members: &[Member<'_, '_>]) -> Vec<Result<Observations, DriverError>> {
        // The Pod's user namespace is one slot, the first container's.
        let started = self.cases_started.fetch_add(members.len(), std::sync::atomic::Ordering::Relaxed);
        let userns_slot = self.userns_slots.nth(started);
        let requests: Vec<CaseRequest<'_>> = members
            .iter()
            .enumerate()
            .map(|(i, member)| {
                let id = &member.case.id;
                CaseRequest {
                    case: id.to_string(),
                    scenario: member.case.scenario,
                    policy: id.policy,
                    image_ref: member.image.reference.clone(),
                    image_digests: member.image.digests(),
                    case_dir: self.dir().join("cases").join(format!("{}-{}-{}", id.scenario, id.policy, started + i)),
                    container: member.container_name_among(members.len()),
                    init: member.init(),
                    run_id: self.run_id.clone(),
                    runtime_handler: self.runtime_handler.clone(),
                    cgroup_parent: self.cgroup_parent(),
                    userns_slot,
                }
            })
            .collect();
        let observed = self.target.run_pod(&requests).await;
        let mut results = Vec::new();
        for (member, observed) in members.iter().zip(observed) {
            results.push(match observed {
                Err(CriError::Refused { step, status }) => {
                    let message = crate::driver::cri::refusal(&status);
                    // The runner accepts the refusal only if this is sgpc's image.
                    match self.target.image_id(&member.image.reference).await {
                        Ok(held) => Ok(Observations::refused(step, &message, held)),
                        Err(e) => Err(CriError::RefusalUnchecked { step, message, source: Box::new(e) }.into()),
                    }
                }
                observed => observed.map_err(DriverError::from),
            });
        }
        results
    }
}

async fn connect(endpoint: &str, config: &SessionConfig) -> anyhow::Result<(CriDriver, RuntimeInfo)> {
    let target = CriDriver::connect(endpoint, config.settings.timeouts).await?;
    let runtime = target.info(&config.runtime_handler).await.context("asking the runtime for its version and status")?;
    Ok((target, runtime))
}

/// Starts `sgpc-cri-proxy` in front of `upstream`; returns it and its endpoint.
async fn start_proxy(settings: &ProxySettings, upstream: &str, runtime_pid: Option<u32>, dir: &Path) -> anyhow::Result<(tokio::process::Child, String)> {
    let socket = dir.join("proxy.sock");
    let mut command = tokio::process::Command::new(&settings.binary);
    command.arg("--listen").arg(&socket).arg("--upstream").arg(crate::driver::cri::socket_path(upstream));
    command.arg("--delay-ms").arg(settings.delay.as_millis().to_string());
    for fault in &settings.faults {
        command.arg("--fault").arg(clap::ValueEnum::to_possible_value(fault).map(|v| v.get_name().to_string()).unwrap_or_default());
    }
    if let Some(pods) = &settings.pods {
        command.arg("--pods").arg(pods);
    }
    if let Some(pid) = runtime_pid {
        command.arg("--runtime-pid").arg(pid.to_string());
    }
    let log = dir.join("proxy.log");
    let mut child = crate::provision::spawn_daemon(command, &log).with_context(|| format!("starting {}", settings.binary.display()))?;
    let ready = crate::provision::wait_until("the proxy to listen", Duration::from_secs(10), || async { tokio::net::UnixStream::connect(&socket).await.is_ok() }).await;
    if let Err(e) = ready {
        let _ = child.kill().await;
        return Err(e.context(format!("proxy log:\n{}", crate::provision::log_tail(&log))));
    }
    Ok((child, format!("unix://{}", socket.display())))
}

/// What the runtime says of itself, and what the network sgpc gave it rules out: a containerd sgpc
/// started cannot run a Pod on a network of its own ([`crate::verdict::USERNS_NEEDS_POD_NETWORK`]).
fn with_pod_network_limits(resources: &Resources, mut runtime: RuntimeInfo) -> RuntimeInfo {
    if matches!(resources.runtime, Some(RuntimeDaemon::Containerd(_))) && runtime.no_user_namespaces.is_none() {
        runtime.no_user_namespaces = Some(crate::verdict::USERNS_NEEDS_POD_NETWORK.into());
    }
    runtime
}

async fn provision(resources: &mut Resources, config: &SessionConfig, catalogue: &Catalogue, cases: &[CaseId], run_id: &str) -> anyhow::Result<Provisioned> {
    // An existing endpoint is checked first, so that an unreachable one fails before any work.
    let existing = match &config.target {
        TargetChoice::Cri { endpoint } => Some(connect(endpoint, config).await?),
        TargetChoice::Containerd { .. } | TargetChoice::Crio { .. } => None,
    };
    let built = catalogue.build_images(cases)?;

    let registry = Registry::start(&config.settings.registry_binary, &resources.dir.join("registry")).await.context("starting the image registry")?;
    resources.record_daemon("registry", registry.pid())?;
    let (registry_host, credentials) = (registry.host.clone(), registry.credentials.clone());
    let registry = resources.registry.insert(registry);
    let mut pushed = Vec::new();
    for image in &built {
        let reference = registry.push(image).await.with_context(|| format!("pushing image {}", image.name))?;
        pushed.push(ImageRecord { name: image.name.clone(), reference, manifest_digest: image.manifest.digest.clone(), config_digest: image.config.digest.clone() });
    }

    let mut provisioned = None;
    let (target, runtime) = match (existing, &config.target) {
        (Some(connected), _) => connected,
        (None, TargetChoice::Cri { endpoint }) => connect(endpoint, config).await?,
        (None, TargetChoice::Containerd { bin_dir }) => {
            let opts = ContainerdOptions {
                bin_dir: bin_dir.clone(),
                oci_runtimes: config.oci_runtimes.clone(),
                dir: resources.dir.join("containerd"),
                registry_host: registry_host.clone(),
                pause_image: pushed[0].reference.clone(),
            };
            let containerd = Containerd::start(&opts).await.context("starting containerd")?;
            resources.record_daemon("containerd", containerd.daemon.pid())?;
            provisioned = Some(format!("containerd {} from {}", containerd.version, bin_dir.display()));
            let endpoint = resources.runtime.insert(RuntimeDaemon::Containerd(containerd)).endpoint().to_string();
            connect(&endpoint, config).await?
        }
        (None, TargetChoice::Crio { bin_dir, oci_runtime }) => {
            let opts = CrioOptions {
                bin_dir: bin_dir.clone(),
                oci_runtime: oci_runtime.clone(),
                dir: resources.dir.join("crio"),
                registry_host: registry_host.clone(),
                registry_credentials: Some(credentials.clone()),
                pause_image: pushed[0].reference.clone(),
            };
            let crio = Crio::start(&opts).await.context("starting CRI-O")?;
            resources.record_daemon("crio", crio.daemon.pid())?;
            provisioned = Some(format!("CRI-O from {}", bin_dir.display()));
            let endpoint = resources.runtime.insert(RuntimeDaemon::Crio(crio)).endpoint().to_string();
            connect(&endpoint, config).await?
        }
    };
    let runtime = with_pod_network_limits(resources, runtime);
    resources.runtime_info = Some(runtime.clone());
    resources.provisioned.clone_from(&provisioned);
    let (target, runtime) = match &config.settings.proxy {
        None => (target, runtime),
        Some(settings) => {
            let runtime_pid = resources.runtime.as_ref().and_then(RuntimeDaemon::pid);
            let (proxy, endpoint) = start_proxy(settings, &runtime.endpoint, runtime_pid, &resources.dir).await?;
            let pid = proxy.id();
            resources.proxy = Some(proxy);
            resources.record_daemon("sgpc-cri-proxy", pid)?;
            let (target, runtime) = connect(&endpoint, config).await?;
            (target, with_pod_network_limits(resources, runtime))
        }
    };
    // Through the proxy too: the ledger names the tasks of the runtime sgpc started.
    let target = match &resources.runtime {
        Some(RuntimeDaemon::Containerd(_)) => target.with_task_ledger(crate::provision::host_paths::task_ledger(&resources.dir.join("containerd"))),
        _ => target,
    };
    if let TargetChoice::Cri { endpoint } = &config.target {
        resources.record.cri = Some(CriRecord { endpoint: endpoint.clone(), run_label: run_id.to_string(), pulled_images: Vec::new() });
    }
    let mut images = BTreeMap::new();
    for record in pushed {
        // A runtime sgpc did not start runs sandboxes from its own sandbox image.
        if resources.record.cri.is_some() && record.name == image::PAUSE_IMAGE {
            continue;
        }
        pull(resources, &target, &record, &credentials).await?;
        images.insert(record.name.clone(), record);
    }
    if let (TargetChoice::Cri { endpoint }, false) = (&config.target, config.settings.external_kubelet) {
        // One sandbox before the catalogue: a runtime that cannot start any (its own sandbox
        // image cannot be pulled offline, say) is one clear error, not one per case.
        target.preflight_sandbox(run_id, &config.runtime_handler, &resources.dir.join("preflight")).await.map_err(|e| anyhow::anyhow!(sandbox_hint(endpoint, &e.to_string())))?;
    }
    if let Some(settings) = &config.node {
        start_node(resources, settings, &runtime).await?;
    }
    Ok(Provisioned { target, runtime, provisioned, images })
}

/// Starts a live node on the runtime (through the proxy, when there is one), recording every
/// daemon and the kernel tunables before kubelet changes them.
async fn start_node(resources: &mut Resources, settings: &NodeSettings, runtime: &RuntimeInfo) -> anyhow::Result<()> {
    let opts = NodeOptions {
        binaries: settings.binaries.clone(),
        dir: resources.dir.join("node"),
        runtime_endpoint: runtime.endpoint.clone(),
        cni_dir: resources.runtime.as_ref().map(RuntimeDaemon::cni_dir).context("a live node needs a runtime sgpc starts")?,
        node_name: crate::provision::node::NODE_NAME.to_string(),
        expect_feature: runtime.supplemental_groups_policy,
        timeout: settings.timeout,
    };
    let mut record = |name: &str, pid: Option<u32>, sysctls: &[crate::provision::node::Sysctl]| match sysctls.is_empty() {
        true => resources.record_daemon(name, pid),
        false => Ok(resources.state.sysctls_before_kubelet(sysctls.to_vec()).map(drop)?),
    };
    let node = LiveNode::start(&opts, &mut record).await;
    resources.node = Some(node.with_context(|| format!("starting a Kubernetes {} node on {} {}", settings.binaries.version, runtime.runtime_name, runtime.runtime_version))?);
    Ok(())
}

/// Pulls a pushed image into the runtime and checks it got sgpc's bytes.
async fn pull(resources: &mut Resources, target: &CriDriver, record: &ImageRecord, credentials: &registry::Credentials) -> anyhow::Result<()> {
    remember_if_new(resources, target, record).await?;
    pull_checked(target, record, credentials).await
}

/// In a runtime sgpc did not start, records an image that was not there before, to be removed
/// at the end; an image whose id the runtime already had stays (CRI RemoveImage would take the
/// runtime's own references too).
async fn remember_if_new(resources: &mut Resources, target: &CriDriver, record: &ImageRecord) -> anyhow::Result<()> {
    if let Some(cri) = resources.record.cri.as_mut() {
        if !target.has_image(&record.reference).await? && !target.has_image(&record.config_digest).await? {
            cri.pulled_images.push(record.reference.clone());
            resources.state.save(&resources.record)?;
        }
    }
    Ok(())
}

async fn pull_checked(target: &CriDriver, record: &ImageRecord, credentials: &registry::Credentials) -> anyhow::Result<()> {
    let pulled = target.pull(&record.reference, Some(credentials)).await.with_context(|| format!("pulling {}", record.reference))?;
    if !record.digests().named_by(&pulled) {
        anyhow::bail!("pulling {} gave image {pulled:?}, not the bytes sgpc built (manifest {}, config {})", record.reference, record.manifest_digest, record.config_digest);
    }
    Ok(())
}

impl super::Started for Session {
    fn images(&self) -> &BTreeMap<String, ImageRecord> {
        &self.images
    }

    fn provisioned(&self) -> Option<String> {
        self.provisioned.clone()
    }

    async fn peer(&self) -> Option<crate::critest::CritestSays> {
        let binary = self.critest.as_ref()?;
        Some(crate::critest::CritestSays::from(self.run_critest(binary).await))
    }

    async fn teardown(self) -> anyhow::Result<()> {
        Session::teardown(self).await
    }
}

/// A task aborted when dropped (a dropped `JoinHandle` only detaches its task).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why no sandbox could start in a runtime sgpc did not start, and what to do about it: the
/// steps that load sgpc's own pause image offline, with the exact name to pin and the config
/// lines that pin it (`ctr images import` names the image from the archive's
/// `io.containerd.image.name` but prints nothing to pin).
fn sandbox_hint(endpoint: &str, error: &str) -> String {
    let wanted = regex::Regex::new(r#"image \\?"([^"\\]+)\\?""#).ok().and_then(|re| re.captures(error)).map(|c| c[1].to_string());
    let image = wanted.map_or_else(|| "its sandbox (pause) image".to_string(), |i| format!("its sandbox (pause) image {i}"));
    let pause = match image::build(&ImageContent::pause()) {
        Ok(built) => format!("{}/{}:{}", crate::driver::kube::IMAGE_REPOSITORY, built.name, built.tag()),
        Err(_) => "the name `sgpc images build` prints for pause".to_string(),
    };
    format!(
        "the runtime at {endpoint} cannot start a sandbox, so no case can run: {error}. If it cannot pull {image} (no network), provide sgpc's own offline:\n\
         \x20 sgpc images build --out DIR   (writes DIR/pause.oci.tar, the image {pause})\n\
         \x20 containerd: ctr -n k8s.io images import DIR/pause.oci.tar, then in its config and restart it:\n\
         \x20   2.x: [plugins.\"io.containerd.cri.v1.images\".pinned_images]\n\
         \x20          sandbox = \"{pause}\"\n\
         \x20   1.x: [plugins.\"io.containerd.grpc.v1.cri\"]\n\
         \x20          sandbox_image = \"{pause}\"\n\
         \x20 CRI-O: skopeo copy oci-archive:DIR/pause.oci.tar containers-storage:{pause}, then in crio.conf and restart it:\n\
         \x20   [crio.image]\n\
         \x20   pause_image = \"{pause}\"\n\
         \x20   pause_command = \"\""
    )
}
