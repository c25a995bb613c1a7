//! The lifecycle of a live node: `sgpc run --kubernetes VERSION --containerd DIR` (or
//! `--crio DIR`). A CRI [`Session`] starts the runtime, pushes and pulls sgpc's images and
//! starts etcd, kube-apiserver and kubelet over it; the catalogue then runs as Pods through
//! the Kubernetes driver, exactly as `--kube` does on a user's cluster.

use std::collections::BTreeMap;

use super::{NodeSettings, SessionConfig, SessionRun, StartError, Started};
use crate::driver::{Driver, DriverError, Member, RuntimeInfo};
use crate::driver::kube::{KubePlan, KubeRun};
use crate::image::ImageRecord;
use crate::observation::Observations;
use crate::outcome::Event;
use crate::provision::gomodule::{self, Program, Version};
use crate::provision::node::NodeBinaries;
use crate::run::Session;
use crate::scenario::{CaseId, Catalogue};

/// A runtime with a live node over it, and the run's namespace there.
pub struct NodeRun {
    session: Session,
    kube: KubeRun,
    provisioned: String,
    /// A node of an existing cluster (`--node`): its run's namespace must be deleted at the end.
    attached: bool,
}

/// A node of an existing cluster: its name, and the kubeconfig that reaches the cluster (none:
/// `KUBECONFIG`, `~/.kube/config` or the Pod's service account).
#[derive(Debug, Clone)]
pub struct ExistingNode {
    pub name: String,
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// Which node to start: the Kubernetes and etcd releases, built from the Go module proxy
/// into the cache when it lacks them, and how long the node may take to be Ready.
#[derive(Debug, Clone)]
pub struct NodeChoice {
    pub kubernetes: Version,
    pub etcd: Version,
    pub timeout: std::time::Duration,
}

/// The node's binaries from the cache, built first if missing (progress on stderr).
pub async fn node_binaries(choice: &NodeChoice) -> anyhow::Result<NodeBinaries> {
    let (kubernetes, etcd) = (choice.kubernetes.clone(), choice.etcd.clone());
    let build = move || -> anyhow::Result<NodeBinaries> {
        let mut progress = std::io::stderr();
        let kubernetes_dir = gomodule::ensure(Program::Kubernetes, &kubernetes, &mut progress)?;
        let etcd_dir = gomodule::ensure(Program::Etcd, &etcd, &mut progress)?;
        Ok(NodeBinaries::in_dirs(kubernetes, &kubernetes_dir, &etcd_dir))
    };
    tokio::task::spawn_blocking(build).await?
}

impl NodeRun {
    /// Builds or finds the node's binaries, starts the session (runtime, registry, images,
    /// node), then the Kubernetes driver.
    pub async fn start(config: &SessionConfig, choice: &NodeChoice, catalogue: &Catalogue, cases: &[CaseId]) -> Result<NodeRun, StartError> {
        let binaries = node_binaries(choice).await.map_err(|error| StartError { runtime: None, provisioned: None, error })?;
        let mut config = config.clone();
        config.node = Some(NodeSettings { binaries, timeout: choice.timeout });
        let session = Session::start(&config, catalogue, cases).await?;
        let Some(node) = session.node() else {
            let error = anyhow::anyhow!("the session was asked for no node");
            return Err(fail_after(session, error).await);
        };
        let plan = KubePlan::on_node(&session.run_id, session.images.clone(), &node.node_name);
        let timeout = config.settings.timeouts.probe + config.settings.timeouts.pull;
        let version = node.version.to_string();
        let provisioned = format!("kubelet, kube-apiserver {version} and etcd (node {}, up in {:.1}s) over {}", node.node_name, node.startup.as_secs_f64(), session.provisioned.as_deref().unwrap_or("the runtime"));
        match KubeRun::on_node(Some(&node.kubeconfig), &version, &session.runtime, timeout, plan).await {
            Ok(kube) => Ok(NodeRun { session, kube, provisioned, attached: false }),
            Err(e) => Err(fail_after(session, anyhow::anyhow!(super::error_chain(&e)).context("connecting to the node's API server")).await),
        }
    }

    /// An existing node of a cluster over its runtime (`sgpc run --cri ENDPOINT --node NAME`):
    /// the session pushes sgpc's images and pulls them over the CRI, then the catalogue runs as
    /// Pods pinned to the node through its own kubelet. (At the CRI level beside a kubelet, the
    /// kubelet kills every sandbox it did not make: its pod cleanup lists all of them.)
    pub async fn attach(config: &SessionConfig, node: &ExistingNode, catalogue: &Catalogue, cases: &[CaseId]) -> Result<NodeRun, StartError> {
        let mut config = config.clone();
        config.settings.external_kubelet = true;
        let session = Session::start(&config, catalogue, cases).await?;
        let plan = KubePlan::on_node(&session.run_id, session.images.clone(), &node.name);
        let timeout = config.settings.timeouts.probe + config.settings.timeouts.pull;
        let provisioned = format!("node {} of the cluster (its kubelet), over {}", node.name, session.runtime.endpoint);
        match KubeRun::on_node(node.kubeconfig.as_deref(), "", &session.runtime, timeout, plan).await {
            Ok(kube) => Ok(NodeRun { session, kube, provisioned, attached: true }),
            Err(e) => Err(fail_after(session, anyhow::anyhow!(super::error_chain(&e)).context("connecting to the cluster's API server")).await),
        }
    }

    /// How long the node took to be Ready with its features reported.
    pub fn node_startup(&self) -> Option<std::time::Duration> {
        self.session.node().map(|n| n.startup)
    }
}

/// Tears a started session down after a later step failed, keeping what it learnt.
async fn fail_after(session: Session, error: anyhow::Error) -> StartError {
    let (runtime, provisioned) = (Some(session.runtime.clone()), session.provisioned.clone());
    let error = match session.teardown().await {
        Ok(()) => error,
        Err(cleanup) => error.context(format!("cleaning up after the failure failed too: {cleanup:#}")),
    };
    StartError { runtime, provisioned, error }
}

impl Driver for NodeRun {
    fn runtime(&self) -> &RuntimeInfo {
        self.kube.runtime()
    }

    fn reads_host_proc(&self) -> bool {
        false
    }

    /// A refusal kubelet reported without an image id is checked as at the CRI level: the
    /// runtime is asked which image it holds under the case's reference.
    async fn run_pod(&self, members: &[Member<'_, '_>]) -> Vec<Result<Observations, DriverError>> {
        let mut results = self.kube.run_pod(members).await;
        for (member, result) in members.iter().zip(results.iter_mut()) {
            let Ok(observations) = result else { continue };
            if let Some(refusal) = observations.refusal.as_mut().filter(|r| r.held_image.is_none()) {
                match self.session.target().image_id(&member.image.reference).await {
                    Ok(held) => refusal.held_image = held,
                    Err(e) => *result = Err(e.into()),
                }
            }
        }
        results
    }
}

impl Started for NodeRun {
    fn images(&self) -> &BTreeMap<String, ImageRecord> {
        &self.session.images
    }

    /// critest drives the CRI directly; beside a live kubelet its sandboxes would be the
    /// kubelet's to collect. Said, not silently skipped.
    async fn peer(&self) -> Option<crate::critest::CritestSays> {
        self.session.critest_asked().then(|| crate::critest::CritestSays::NotRun { reason: "critest runs at the CRI level only, not beside a live kubelet".into() })
    }

    fn provisioned(&self) -> Option<String> {
        Some(self.provisioned.clone())
    }

    /// A node sgpc started: its etcd goes with the run directory (no namespace controller runs
    /// to empty the run's namespace, and nothing of it outlives the node). A node of an existing
    /// cluster: the run's namespace is deleted first (each Pod already is, whatever happened).
    async fn teardown(self) -> anyhow::Result<()> {
        let namespace = if self.attached { self.kube.finish().await.map_err(|e| anyhow::anyhow!(super::error_chain(&e))) } else { Ok(()) };
        let session = self.session.teardown().await;
        match (namespace, session) {
            (Ok(()), session) => session,
            (Err(e), Ok(())) => Err(e.context("deleting the run's namespace")),
            (Err(e), Err(session)) => Err(session.context(format!("deleting the run's namespace failed too: {e:#}"))),
        }
    }
}

/// Where a session's cases run over its runtime.
#[derive(Debug, Clone, Copy)]
pub enum Level<'a> {
    /// Straight at the runtime's CRI.
    Cri,
    /// As Pods through a live node sgpc starts on the runtime (`--kubernetes`).
    LiveNode(&'a NodeChoice),
    /// As Pods through an existing node's kubelet over its runtime (`--cri ... --node`).
    ExistingNode(&'a ExistingNode),
}

/// The lifecycle ([`super::run_lifecycle`]) of a session at a level: `sgpc run` and each
/// matrix column.
pub async fn run_session(
    config: &SessionConfig,
    level: Level<'_>,
    catalogue: &Catalogue,
    cases: &[CaseId],
    jobs: usize,
    interrupted: impl std::future::Future<Output = String>,
    on_event: impl FnMut(Event<'_>),
) -> SessionRun {
    let started = std::time::Instant::now();
    // Boxed: the three lifecycles are large futures, and a caller's stack holds the largest.
    match level {
        Level::Cri => Box::pin(super::run_lifecycle(Session::start(config, catalogue, cases), started, catalogue, cases, jobs, interrupted, on_event)).await,
        Level::LiveNode(choice) => Box::pin(super::run_lifecycle(NodeRun::start(config, choice, catalogue, cases), started, catalogue, cases, jobs, interrupted, on_event)).await,
        Level::ExistingNode(node) => Box::pin(super::run_lifecycle(NodeRun::attach(config, node, catalogue, cases), started, catalogue, cases, jobs, interrupted, on_event)).await,
    }
}
