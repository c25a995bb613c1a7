//! Drivers: the ways sgpc drives a runtime: over the CRI, or through Kubernetes. (Named
//! `driver`, not `target`, so that tools skipping Cargo's `target/` do not skip it.)

pub mod cri;
pub mod kube;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::case::Case;
use crate::image::ImageRecord;
use crate::observation::Observations;

/// Label put on every sandbox, container, namespace and Pod of a run; cleanup selects on it.
pub const RUN_LABEL: &str = "sgpc.io/run";
/// The probe container's name, at every level.
const CONTAINER_NAME: &str = "probe";

/// A way of running cases on a runtime: a CRI endpoint ([`crate::run::Session`]), a Kubernetes
/// cluster ([`kube::KubeRun`]). The runner ([`crate::run::run_case`]) resolves each case, asks
/// the driver to run it, and judges what comes back; a driver only observes. A refusal must
/// name the image the runtime held ([`crate::observation::Refusal::held_image`]); a driver
/// whose runtime has no feature flag of its own (`feature_per_node`) must report admission.
pub trait Driver {
    /// Who runs the cases: name, version, and whether it advertises the feature.
    fn runtime(&self) -> &RuntimeInfo;
    /// Whether this level reads the host's `/proc/<pid>/status` of the first process (the CRI
    /// level does; the Kubernetes level is no process on the node).
    fn reads_host_proc(&self) -> bool;
    /// Runs the cases of one Pod, one container each, in one sandbox, each on its `image` (sgpc's
    /// own bytes for its recipe), and returns what was seen of each, in the order given (init
    /// containers first): a refusal or admission outcome included; an error means sgpc could not
    /// observe that container.
    fn run_pod(&self, members: &[Member<'_, '_>]) -> impl Future<Output = Vec<Result<Observations, DriverError>>>;
    /// Whether cases of different scenarios with the same Pod-level context may run as
    /// containers of one sandbox ([`crate::scenario::Catalogue::sandboxes`]). The Kubernetes
    /// level never does: a Pod there is what its scenario wrote.
    fn shares_sandboxes(&self) -> bool {
        false
    }
}

/// One container of a Pod to run: its case, and the image it runs.
#[derive(Debug, Clone, Copy)]
pub struct Member<'c, 'a> {
    pub case: &'c Case<'a>,
    pub image: &'c ImageRecord,
}

impl Member<'_, '_> {
    /// The container's name in its Pod (`probe` for a Pod of one).
    pub fn container_name(&self) -> &str {
        self.case.scenario.member.as_ref().map_or(CONTAINER_NAME, |m| m.container.as_str())
    }

    /// Its name in a sandbox of `members` containers: a shared sandbox names each after its
    /// case (`<scenario>-<policy>`), unique there as a runtime requires (a name it has
    /// reserved is refused, which would read as the runtime's fault).
    pub fn container_name_among(&self, members: usize) -> String {
        match (&self.case.scenario.member, members) {
            (None, 2..) => format!("{}-{}", self.case.scenario.name, self.case.id.policy),
            _ => self.container_name().to_string(),
        }
    }

    /// Whether it is an init container, which exits before the Pod's containers start.
    pub fn init(&self) -> bool {
        self.case.scenario.member.as_ref().is_some_and(|m| m.init)
    }
}

/// Why a driver could not observe a case: sgpc's or the infrastructure's failure (an ERROR).
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Cri(#[from] cri::CriError),
    #[error(transparent)]
    Kube(#[from] kube::KubeError),
}

/// How long each kind of step may take. Every RPC and wait in a driver is bounded by one of these.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// One CRI call (except pulls), including `ExecSync`.
    pub rpc: Duration,
    /// One image pull.
    pub pull: Duration,
    /// Waiting for the first process to print its probe output.
    pub probe: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { rpc: Duration::from_secs(30), pull: Duration::from_secs(120), probe: Duration::from_secs(30) }
    }
}

/// What a runtime says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub endpoint: String,
    pub runtime_name: String,
    pub runtime_version: String,
    pub runtime_api_version: String,
    /// `StatusResponse.features.supplemental_groups_policy`; `false` when `features` is absent.
    pub supplemental_groups_policy: bool,
    /// The feature is a node's, not the runtime's (the Kubernetes level): each case's
    /// `Observations::admission` must carry its node's flag.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub feature_per_node: bool,
    /// Why a Pod with `hostUsers: false` cannot run on this target; `None` when it can: the
    /// runtime handler advertises `features.user_namespaces` (CRI `RuntimeHandlerFeatures`;
    /// kubelet refuses such a Pod otherwise) and the target gives Pods what they need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_user_namespaces: Option<String>,
    /// CRI `Status` (verbose) as the runtime gave it, kept as evidence: its conditions, its
    /// handlers' features and its `info` map (each value parsed where it is JSON). `None` for a
    /// cluster (`--kube`), whose runtimes only kubelet asks; a live node sgpc starts keeps its
    /// runtime's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cri_status: Option<serde_json::Value>,
}
