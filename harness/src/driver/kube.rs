//! The kube target: the same scenarios as Pods on a Kubernetes cluster, through kube-rs. The CRI
//! level proves the runtime; this level proves what Kubernetes users see: kubelet's admission,
//! pod status and node status.
//!
//! Split in three: [`pod_manifest`] builds the Pod (pure), [`KubeDriver`] creates it and collects
//! [`KubeFacts`] (typed API objects as the API server returned them, plus the probe output), and
//! [`observations`] turns the facts into observations (pure), which the verdict engine judges
//! like any other, so every verdict is tested on recorded shapes. [`KubeRun`] is the driver.
//!
//! Protected volumes become an `emptyDir` that an init container, running as root, fills with
//! the token and gives to `root:<gid>` with the modes of `Volume::modes`: no host path on the node is needed.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, Event, Namespace, Node, Pod, PodSecurityContext, PodSpec, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Driver, DriverError, Member, RuntimeInfo, CONTAINER_NAME, RUN_LABEL};
use crate::image::ImageRecord;
use crate::observation::{self, Admission, Observations, Point, ProbeError};
use crate::scenario::{CaseId, Catalogue, Policy, Scenario};
use crate::verdict::admission::{REJECTION_MESSAGE, REJECTION_REASON};

/// Repository the images get when loaded into a cluster (`kind load image-archive`).
pub const IMAGE_REPOSITORY: &str = "sgpc.local/sgpc";

/// Why the Kubernetes level could not observe a case (an ERROR, never a verdict on the cluster).
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("reading kubeconfig {path}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("finding the cluster (KUBECONFIG, ~/.kube/config or in-cluster)")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("{step}")]
    Api {
        step: String,
        #[source]
        source: kube::Error,
    },
    #[error("the API server's minor version {0:?} is no number")]
    Version(String),
    #[error("Pod {pod} neither ran the probe of container {container} nor was rejected within {after:?} (phase {phase:?}{containers})")]
    Timeout { pod: String, container: String, after: Duration, phase: String, containers: String },
    /// A failure of a Pod of several containers, told to each.
    #[error("the Pod failed")]
    PodFailed(#[source] std::sync::Arc<KubeError>),
    /// An init container before this one did not complete: kubelet starts nothing after it.
    #[error("not started: init container {container} of the Pod did not complete")]
    InitNotCompleted { container: String },
    #[error("the first process printed no probe output (the Pod did not run)")]
    NoProbeOutput,
    #[error("the exec'd probe gave no output")]
    NoExecOutput,
    #[error("reading the exec'd probe's output")]
    Exec(#[source] std::io::Error),
    #[error("{source_name}")]
    Probe {
        source_name: &'static str,
        #[source]
        source: ProbeError,
    },
}

fn api(step: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
    let step = step.into();
    move |source| KubeError::Api { step, source }
}

/// Everything needed to build one Pod: its containers' cases (init containers first) and where it runs.
#[derive(Debug, Clone)]
pub struct PodRequest<'a> {
    pub containers: Vec<ContainerRequest<'a>>,
    pub policy: Policy,
    pub namespace: String,
    pub run_id: String,
    /// A node sgpc started: the Pod names it (no scheduler runs) and uses the host network.
    pub node_name: Option<String>,
}

/// One container of a Pod: its case and image.
#[derive(Debug, Clone)]
pub struct ContainerRequest<'a> {
    pub case: String,
    pub scenario: &'a Scenario,
    /// `sgpc.local/sgpc/<name>:<tag>`: loaded into the nodes, never pulled.
    pub image_ref: String,
}

impl ContainerRequest<'_> {
    /// Its name in the Pod (`probe` for a Pod of one).
    pub fn name(&self) -> &str {
        self.scenario.member.as_ref().map_or(CONTAINER_NAME, |m| m.container.as_str())
    }

    pub fn init(&self) -> bool {
        self.scenario.member.as_ref().is_some_and(|m| m.init)
    }

    /// Where kubelet's events name it: `spec.containers{NAME}` or `spec.initContainers{NAME}`.
    pub fn field_path(&self) -> String {
        field_path(self.name(), self.init())
    }

    /// The container as a user would write it.
    fn container(&self) -> Container {
        let s = self.scenario;
        let env = |name: &str, value: String| EnvVar { name: name.into(), value: Some(value), ..Default::default() };
        let c = &s.container;
        let any = c.run_as_user.is_some() || c.run_as_group.is_some() || c.allow_privilege_escalation.is_some() || !c.drop_capabilities.is_empty();
        let security_context = any.then(|| SecurityContext {
            run_as_user: c.run_as_user.map(i64::from),
            run_as_group: c.run_as_group.map(i64::from),
            allow_privilege_escalation: c.allow_privilege_escalation,
            capabilities: (!c.drop_capabilities.is_empty()).then(|| Capabilities { drop: Some(c.drop_capabilities.clone()), add: None }),
            ..Default::default()
        });
        let mounts: Vec<VolumeMount> = s.volumes.iter().map(|v| VolumeMount { name: v.name.clone(), mount_path: v.mount_path.clone(), read_only: Some(true), ..Default::default() }).collect();
        Container {
            name: self.name().to_string(),
            image: Some(self.image_ref.clone()),
            image_pull_policy: Some("Never".into()),
            command: Some(observation::first_process_command()),
            env: Some(vec![env(observation::CASE_ENV, self.case.clone()), env(observation::PROBE_FILES_ENV, s.probed_files().join(" "))]),
            security_context,
            volume_mounts: (!mounts.is_empty()).then_some(mounts),
            ..Default::default()
        }
    }
}

/// Where kubelet's events name a container of a Pod.
pub fn field_path(name: &str, init: bool) -> String {
    format!("spec.{}{{{name}}}", if init { "initContainers" } else { "containers" })
}

/// The run's namespace, labelled so that a leftover one can be found and removed.
pub fn namespace_manifest(name: &str, run_id: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(RUN_LABEL.to_string(), run_id.to_string())])),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A Pod name for a case: `<scenario>-<policy>`.
pub fn pod_name(scenario: &str, policy: Policy) -> String {
    format!("{scenario}-{policy}")
}

fn ids(values: impl IntoIterator<Item = u32>) -> Vec<i64> {
    values.into_iter().map(i64::from).collect()
}

/// The Pod of a request, as a user would write it: the Pod-level fields are its first
/// container's scenario's, which every container of the Pod shares.
pub fn pod_manifest(req: &PodRequest<'_>) -> Pod {
    let Some(first) = req.containers.first() else { return Pod::default() };
    let s = first.scenario;
    let prepare = s.volumes.iter().map(|v| Container {
        name: format!("prepare-{}", v.name),
        image: Some(first.image_ref.clone()),
        image_pull_policy: Some("Never".into()),
        command: Some(vec![
            crate::image::PROBE_PATH.into(),
            "prepare".into(),
            "/volume".into(),
            crate::scenario::Volume::TOKEN_FILE.into(),
            format!("secret of {}", first.case),
            v.gid.to_string(),
            format!("{:o}", v.modes().1),
            format!("{:o}", v.modes().0),
        ]),
        security_context: Some(SecurityContext { run_as_user: Some(0), run_as_group: Some(0), ..Default::default() }),
        volume_mounts: Some(vec![VolumeMount { name: v.name.clone(), mount_path: "/volume".into(), ..Default::default() }]),
        ..Default::default()
    });
    let init_containers: Vec<Container> = prepare.chain(req.containers.iter().filter(|c| c.init()).map(ContainerRequest::container)).collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(s.pod_name(), req.policy)),
            namespace: Some(req.namespace.clone()),
            labels: Some(BTreeMap::from([(RUN_LABEL.to_string(), req.run_id.clone())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: req.node_name.clone(),
            // The API forbids the host network with hostUsers: false (validateHostUsers).
            host_network: (req.node_name.is_some() && !s.pod.user_namespace()).then_some(true),
            host_users: s.pod.host_users,
            restart_policy: Some("Never".into()),
            termination_grace_period_seconds: Some(0),
            security_context: Some(PodSecurityContext {
                run_as_user: s.pod.run_as_user.map(i64::from),
                run_as_group: s.pod.run_as_group.map(i64::from),
                fs_group: s.pod.fs_group.map(i64::from),
                supplemental_groups: (!s.pod.supplemental_groups.is_empty()).then(|| ids(s.pod.supplemental_groups.iter().copied())),
                supplemental_groups_policy: req.policy.api_value().map(str::to_string),
                ..Default::default()
            }),
            init_containers: (!init_containers.is_empty()).then_some(init_containers),
            containers: req.containers.iter().filter(|c| !c.init()).map(ContainerRequest::container).collect(),
            volumes: (!s.volumes.is_empty()).then(|| {
                s.volumes.iter().map(|v| Volume { name: v.name.clone(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() }).collect()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What the cluster showed for one container's case: API objects as returned, and the probe outputs.
#[derive(Debug, Clone, Default)]
pub struct KubeFacts {
    /// The container's name in the Pod.
    pub container: String,
    /// An init container (its status is among `initContainerStatuses`).
    pub init: bool,
    /// The Pod as stored and as its status was read after the container's probes (an init
    /// container's while it still ran).
    pub pod: Pod,
    /// The node it was scheduled to, when it was.
    pub node: Option<Node>,
    /// Events about the Pod.
    pub events: Vec<Event>,
    /// The first process's probe output (the container log).
    pub log: Option<String>,
    /// The exec'd probe's output.
    pub exec: Option<String>,
    /// The API server's minor version (33 for v1.33).
    pub server_minor: u32,
    /// The runtime refused the container, as kubelet reported it in the container's state.
    pub refusal: Option<ContainerRefusal>,
}

/// A runtime's refusal as kubelet reports it: the CRI step and the message kubelet recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRefusal {
    pub step: &'static str,
    pub message: String,
    /// `status.containerStatuses[].imageID`, when kubelet filled it in.
    pub image_id: Option<String>,
}

/// A runtime's refusal told by kubelet's Warning event `Failed` about the container at
/// `field_path` ([`field_path`]; `events.FailedToCreateContainer` and `FailedToStartContainer`
/// share that reason, with the runtime's error as `Error: <message>`); pulls, which share it
/// too, never happen for sgpc's Pods (`imagePullPolicy: Never`).
pub fn event_refusal(events: &[Event], field_path: &str) -> Option<ContainerRefusal> {
    let event = events.iter().find(|e| {
        e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("Failed") && e.involved_object.field_path.as_deref() == Some(field_path) && e.source.as_ref().and_then(|s| s.component.as_deref()) == Some("kubelet")
    })?;
    let message = event.message.as_deref().unwrap_or_default();
    Some(ContainerRefusal { step: "CreateContainer or StartContainer (kubelet's Failed event)", message: crate::input::escape_unprintable(message.strip_prefix("Error: ").unwrap_or(message)), image_id: None })
}

/// The states of a Pod's containers that are not running, as `; name: reason: message`.
fn container_states(pod: &Pod) -> String {
    let Some(status) = pod.status.as_ref() else { return String::new() };
    let all = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    let describe = |c: &k8s_openapi::api::core::v1::ContainerStatus| {
        let state = c.state.as_ref()?;
        let (reason, message) = match (&state.waiting, &state.terminated) {
            (Some(w), _) => (w.reason.clone(), w.message.clone()),
            (None, Some(t)) => (t.reason.clone(), t.message.clone()),
            (None, None) => return None,
        };
        Some(format!("; {}: {}: {}", c.name, reason.unwrap_or_default(), message.unwrap_or_default()))
    };
    crate::input::escape_unprintable(&all.filter_map(describe).collect::<String>())
}

/// The status kubelet reports for a container of the Pod.
fn container_status<'p>(pod: &'p Pod, name: &str, init: bool) -> Option<&'p k8s_openapi::api::core::v1::ContainerStatus> {
    let status = pod.status.as_ref()?;
    let list = if init { status.init_container_statuses.as_ref() } else { status.container_statuses.as_ref() };
    list?.iter().find(|c| c.name == name)
}

fn running(pod: &Pod, name: &str, init: bool) -> bool {
    container_status(pod, name, init).and_then(|c| c.state.as_ref()).is_some_and(|s| s.running.is_some())
}

/// The refusal kubelet reports for a container of the Pod, if any: a `waiting` state with reason
/// `CreateContainerError` (CRI `CreateContainer` failed) or `RunContainerError` (`StartContainer`
/// failed), or a `terminated` state with reason `StartError` (kubelet's names,
/// `pkg/kubelet/container/sync_result.go` and `kuberuntime_container.go`). Kubelet's own
/// configuration errors (`CreateContainerConfigError`) are not the runtime's and stay out.
pub fn container_refusal(pod: &Pod, name: &str, init: bool) -> Option<ContainerRefusal> {
    let status = container_status(pod, name, init)?;
    let state = status.state.as_ref()?;
    let (step, message) = if let Some(waiting) = &state.waiting {
        let step = match waiting.reason.as_deref()? {
            "CreateContainerError" => "CreateContainer",
            "RunContainerError" => "StartContainer",
            _ => return None,
        };
        (step, waiting.message.clone().unwrap_or_default())
    } else {
        let terminated = state.terminated.as_ref().filter(|t| t.reason.as_deref() == Some("StartError"))?;
        ("StartContainer", terminated.message.clone().unwrap_or_default())
    };
    let image_id = Some(status.image_id.clone()).filter(|id| !id.is_empty());
    Some(ContainerRefusal { step, message: crate::input::escape_unprintable(&message), image_id })
}

/// The node's `status.features.supplementalGroupsPolicy`; absent means no.
pub fn node_feature(node: Option<&Node>) -> bool {
    node.and_then(|n| n.status.as_ref()).and_then(|s| s.features.as_ref()).and_then(|f| f.supplemental_groups_policy).unwrap_or(false)
}

/// Why `hostUsers: false` Pods cannot run on these nodes, if they cannot: a node whose default
/// runtime handler does not report `features.userNamespaces` (Kubernetes API
/// `NodeStatus.runtimeHandlers`, filled by kubelet from CRI `RuntimeHandlerFeatures`; kubelet
/// refuses such Pods there, `pkg/kubelet/userns` HandlerSupportsUserNamespaces). The Pods may
/// land on any node, so every node must.
pub fn nodes_without_user_namespaces(nodes: &[Node]) -> Option<String> {
    let lacking: Vec<&str> = nodes
        .iter()
        .filter(|node| {
            let handlers = node.status.as_ref().and_then(|s| s.runtime_handlers.as_deref()).unwrap_or_default();
            !handlers.iter().any(|h| h.name.as_deref().unwrap_or_default().is_empty() && h.features.as_ref().and_then(|f| f.user_namespaces) == Some(true))
        })
        .map(|node| node.metadata.name.as_deref().unwrap_or("(unnamed)"))
        .collect();
    match (nodes.is_empty(), lacking.is_empty()) {
        (true, _) => Some("the cluster has no nodes".into()),
        (false, true) => None,
        (false, false) => Some(format!(
            "node {} does not report user namespaces for its default runtime handler (status.runtimeHandlers[].features.userNamespaces), and kubelet refuses a Pod with hostUsers: false there (pkg/kubelet/userns, HandlerSupportsUserNamespaces)",
            lacking.join(", ")
        )),
    }
}

fn rejected(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some(REJECTION_REASON))
}

fn warning_event(events: &[Event]) -> bool {
    events.iter().any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(REJECTION_REASON))
}

fn stored_policy(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.security_context.as_ref()?.supplemental_groups_policy.as_deref()
}

/// What the API server and kubelet did with the Pod asked for with `policy`.
pub fn admission(policy: Policy, facts: &KubeFacts) -> Admission {
    Admission {
        server_minor: facts.server_minor,
        node_feature: node_feature(facts.node.as_ref()),
        policy_dropped: policy.api_value().is_some() && stored_policy(&facts.pod).is_none(),
        rejected: rejected(&facts.pod),
        warning_event: warning_event(&facts.events),
        rejection_message: facts.pod.status.as_ref().and_then(|s| s.message.as_deref()) == Some(REJECTION_MESSAGE),
    }
}

/// What the cluster showed, as observations for the verdict engine: the admission outcome,
/// and for a Pod that ran, the probe outputs and `status.user`.
pub fn observations(id: &CaseId, facts: &KubeFacts) -> Result<Observations, KubeError> {
    let admission = admission(id.policy, facts);
    let case = &id.to_string();
    if admission.rejected {
        return Ok(Observations { admission: Some(admission), ..Observations::default() });
    }
    if let Some(refusal) = &facts.refusal {
        let mut obs = Observations::refused(refusal.step, &refusal.message, refusal.image_id.clone());
        obs.admission = Some(admission);
        return Ok(obs);
    }
    let log = facts.log.as_deref().ok_or(KubeError::NoProbeOutput)?;
    let exec = facts.exec.as_deref().ok_or(KubeError::NoExecOutput)?;
    let first = observation::parse_probe(log, case).map_err(|source| KubeError::Probe { source_name: "container log", source })?;
    let exec = observation::parse_probe(exec, case).map_err(|source| KubeError::Probe { source_name: "exec", source })?;
    let mut obs = Observations::from_probes(first, exec);
    let user = container_status(&facts.pod, &facts.container, facts.init)
        .and_then(|c| c.user.as_ref())
        .and_then(|u| u.linux.as_ref())
        .map(|u| (u.uid, u.gid, u.supplemental_groups.clone().unwrap_or_default()));
    obs.push_reported_user(Point::PodStatus, user);
    obs.admission = Some(admission);
    Ok(obs)
}

/// A live cluster, through kube-rs.
pub struct KubeDriver {
    client: kube::Client,
    timeout: Duration,
}

impl KubeDriver {
    /// Connects with a kubeconfig file, or the default (`KUBECONFIG`, `~/.kube/config`, in-cluster).
    pub async fn connect(kubeconfig: Option<&std::path::Path>, timeout: Duration) -> Result<KubeDriver, KubeError> {
        let config = match kubeconfig {
            Some(path) => {
                let bad = |source| KubeError::Kubeconfig { path: path.display().to_string(), source };
                let file = kube::config::Kubeconfig::read_from(path).map_err(bad)?;
                kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await.map_err(bad)?
            }
            None => kube::Config::infer().await.map_err(KubeError::Infer)?,
        };
        Ok(KubeDriver { client: kube::Client::try_from(config).map_err(api("creating the API client"))?, timeout })
    }

    /// Why `hostUsers: false` Pods cannot run on the cluster's nodes, or on `node` alone
    /// ([`nodes_without_user_namespaces`]). Nodes that cannot be read are a reason too: the
    /// cases that need them are NOT RUN, and every other case still runs.
    pub async fn user_namespaces_lacking(&self, node: Option<&str>) -> Option<String> {
        let nodes: kube::Api<Node> = kube::Api::all(self.client.clone());
        let listed = match node {
            Some(name) => nodes.get(name).await.map(|n| vec![n]),
            None => nodes.list(&kube::api::ListParams::default()).await.map(|l| l.items),
        };
        match listed {
            Ok(listed) => nodes_without_user_namespaces(&listed),
            Err(e) => Some(format!("the nodes' runtime handler features could not be read: {e}")),
        }
    }

    /// The kubelet version a node reports (`status.nodeInfo.kubeletVersion`), if it can be read.
    pub async fn kubelet_version(&self, node: &str) -> Option<String> {
        let nodes: kube::Api<Node> = kube::Api::all(self.client.clone());
        nodes.get(node).await.ok()?.status?.node_info.map(|info| info.kubelet_version)
    }

    /// The API server's minor version.
    pub async fn server_minor(&self) -> Result<u32, KubeError> {
        let info = self.client.apiserver_version().await.map_err(api("asking the API server for its version"))?;
        info.minor.trim_end_matches('+').parse().map_err(|_| KubeError::Version(info.minor.clone()))
    }

    pub async fn create_namespace(&self, name: &str, run_id: &str) -> Result<(), KubeError> {
        let api_: kube::Api<Namespace> = kube::Api::all(self.client.clone());
        api_.create(&kube::api::PostParams::default(), &namespace_manifest(name, run_id)).await.map_err(api(format!("creating namespace {name}")))?;
        Ok(())
    }

    pub async fn delete_namespace(&self, name: &str) -> Result<(), KubeError> {
        let api_: kube::Api<Namespace> = kube::Api::all(self.client.clone());
        match api_.delete(name, &kube::api::DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(api(format!("deleting namespace {name}"))(e)),
        }
    }

    /// Creates the Pod, waits for it to run or be rejected, and collects the facts of each of
    /// its containers, in the order of the request; deletes the Pod whatever happened. Each
    /// init container is observed while it runs, then ended from inside (its first process
    /// exits 0 on SIGTERM), so that kubelet starts the next one and then the Pod's containers.
    /// Every wait is bounded by one deadline: the timeout once per init container and once more.
    pub async fn run_pod(&self, req: &PodRequest<'_>, server_minor: u32) -> Vec<Result<KubeFacts, KubeError>> {
        let pods: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), &req.namespace);
        let Some(first) = req.containers.first() else { return Vec::new() };
        let name = pod_name(first.scenario.pod_name(), req.policy);
        let inits = req.containers.iter().filter(|c| c.init()).count() as u32;
        let deadline = tokio::time::Instant::now() + self.timeout * (inits + 1);
        let observed = match pods.create(&kube::api::PostParams::default(), &pod_manifest(req)).await {
            Err(e) => Err(api(format!("creating Pod {name}"))(e)),
            Ok(_) => {
                let watched = tokio::time::timeout_at(deadline, self.watch_pod(&pods, &name, req, server_minor, deadline)).await;
                let deleted = pods.delete(&name, &kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.map_err(api(format!("deleting Pod {name}")));
                match (watched, deleted) {
                    (Err(_), _) => Err(KubeError::Timeout { pod: name.clone(), container: "(a call to the API server)".into(), after: self.timeout * (inits + 1), phase: String::new(), containers: String::new() }),
                    (Ok(Err(e)), _) | (Ok(Ok(_)), Err(e)) => Err(e),
                    (Ok(Ok(facts)), Ok(_)) => Ok(facts),
                }
            }
        };
        match observed {
            Ok(facts) => facts,
            Err(e) if req.containers.len() == 1 => vec![Err(e)],
            Err(e) => {
                let shared = std::sync::Arc::new(e);
                req.containers.iter().map(|_| Err(KubeError::PodFailed(shared.clone()))).collect()
            }
        }
    }

    /// Watches the created Pod until each container has run its probe or cannot, and
    /// collects the facts; a container that did not finish by `deadline` gets a timeout.
    async fn watch_pod(&self, pods: &kube::Api<Pod>, name: &str, req: &PodRequest<'_>, server_minor: u32, deadline: tokio::time::Instant) -> Result<Vec<Result<KubeFacts, KubeError>>, KubeError> {
        use kube::api::ListParams;
        let mut facts: Vec<KubeFacts> = req.containers.iter().map(|c| KubeFacts { container: c.name().to_string(), init: c.init(), server_minor, ..Default::default() }).collect();
        let events_api: kube::Api<Event> = kube::Api::namespaced(self.client.clone(), &req.namespace);
        let selector = format!("involvedObject.name={name}");
        let settled = |f: &KubeFacts| f.refusal.is_some() || f.log.is_some();
        let mut polls = 0u32;
        let mut timed_out = None;
        loop {
            let pod = pods.get(name).await.map_err(api(format!("reading Pod {name}")))?;
            // Before the phase: a refused start ends a Pod with restartPolicy Never (Failed).
            for f in facts.iter_mut().filter(|f| !settled(f)) {
                f.refusal = container_refusal(&pod, &f.container, f.init);
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            // kubelet cannot always write the container's state (a status the API server
            // refuses stays unwritten), but its Warning event about the failed start is stored.
            polls += 1;
            if phase == "Pending" && polls.is_multiple_of(5) {
                let events = events_api.list(&ListParams::default().fields(&selector)).await.map_err(api(format!("listing the events of Pod {name}")))?.items;
                for f in facts.iter_mut().filter(|f| !settled(f)) {
                    f.refusal = event_refusal(&events, &field_path(&f.container, f.init));
                }
            }
            if phase == "Failed" || phase == "Succeeded" {
                break;
            }
            // Init containers in turn: only the first unsettled one can be running.
            if let Some(f) = facts.iter_mut().find(|f| f.init && !settled(f)) {
                if running(&pod, &f.container, true) && self.observe_init(pods, name, f).await? {
                    continue;
                }
            } else {
                for f in facts.iter_mut().filter(|f| !f.init && !settled(f)) {
                    f.log = self.finished_log(pods, name, &pod, &f.container).await?;
                }
            }
            // kubelet starts nothing after an init container that did not start.
            if facts.iter().all(settled) || facts.iter().any(|f| f.init && f.refusal.is_some()) {
                break;
            }
            if tokio::time::Instant::now() + Duration::from_millis(200) >= deadline {
                timed_out = Some((phase, container_states(&pod)));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut execs = Vec::new();
        for f in facts.iter().filter(|f| !f.init && f.log.is_some()) {
            execs.push((f.container.clone(), self.exec(pods, name, &f.container, observation::exec_command()).await));
        }
        let pod = pods.get(name).await.map_err(api(format!("reading Pod {name}")))?;
        let node = match pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            Some(node_name) => {
                let nodes: kube::Api<Node> = kube::Api::all(self.client.clone());
                Some(nodes.get(&node_name).await.map_err(api(format!("reading node {node_name}")))?)
            }
            None => None,
        };
        let events = events_api.list(&ListParams::default().fields(&selector)).await.map_err(api(format!("listing the events of Pod {name}")))?.items;
        let incomplete = facts.iter().find(|f| f.init && !(f.log.is_some() && f.exec.is_some())).map(|f| f.container.clone());
        let mut results = Vec::new();
        for mut f in facts {
            let exec = execs.iter_mut().find(|(c, _)| *c == f.container).map(|(_, e)| std::mem::replace(e, Ok(String::new())));
            // An init container's status as read while it ran; every other's as read last.
            if !(f.init && f.exec.is_some()) {
                f.pod = pod.clone();
            }
            f.node = node.clone();
            f.events = events.clone();
            results.push(match (exec, &timed_out, &incomplete) {
                (Some(Err(e)), _, _) => Err(e),
                (Some(Ok(text)), _, _) => Ok(KubeFacts { exec: Some(text), ..f }),
                _ if settled(&f) || rejected(&f.pod) => Ok(f),
                (None, _, Some(init)) if !f.init || *init != f.container => Err(KubeError::InitNotCompleted { container: init.clone() }),
                (None, Some((phase, states)), _) => Err(KubeError::Timeout { pod: name.to_string(), container: f.container.clone(), after: self.timeout, phase: phase.clone(), containers: states.clone() }),
                (None, None, _) => Ok(f),
            });
        }
        Ok(results)
    }

    /// The container's log once its probe has printed everything; `None` before (or while the
    /// container is not running, when kubelet has no log to give).
    async fn finished_log(&self, pods: &kube::Api<Pod>, name: &str, pod: &Pod, container: &str) -> Result<Option<String>, KubeError> {
        let init = !pod.spec.as_ref().is_some_and(|s| s.containers.iter().any(|c| c.name == container));
        if !running(pod, container, init) {
            return Ok(None);
        }
        let params = kube::api::LogParams { container: Some(container.into()), ..Default::default() };
        let log = pods.logs(name, &params).await.map_err(api(format!("reading the log of container {container} of Pod {name}")))?;
        Ok(observation::probe_finished(&log).then_some(log))
    }

    /// Observes a running init container once its probe has printed: the exec'd probe, its
    /// status (read while it runs), then ends it. Returns whether it was observed.
    async fn observe_init(&self, pods: &kube::Api<Pod>, name: &str, f: &mut KubeFacts) -> Result<bool, KubeError> {
        let pod = pods.get(name).await.map_err(api(format!("reading Pod {name}")))?;
        let Some(log) = self.finished_log(pods, name, &pod, &f.container).await? else { return Ok(false) };
        f.log = Some(log);
        f.exec = Some(self.exec(pods, name, &f.container, observation::exec_command()).await?);
        f.pod = pods.get(name).await.map_err(api(format!("reading Pod {name}")))?;
        // The stream may break as the container ends; whether it ended shows in its status: a
        // container that did not is a timeout of the containers after it.
        if let Err(e) = self.exec(pods, name, &f.container, observation::stop_command()).await {
            tracing::debug!("ending init container {} of Pod {name}: {}", f.container, crate::chain::error_chain(&e));
        }
        Ok(true)
    }

    /// Runs a command in a container of the Pod; its standard output.
    async fn exec(&self, pods: &kube::Api<Pod>, name: &str, container: &str, command: Vec<String>) -> Result<String, KubeError> {
        let params = kube::api::AttachParams::default().container(container).stderr(false);
        let mut attached = pods.exec(name, command, &params).await.map_err(api(format!("exec'ing in container {container} of Pod {name}")))?;
        let mut stdout = attached.stdout().ok_or(KubeError::NoExecOutput)?;
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut text).await.map_err(KubeError::Exec)?;
        attached.join().await.map_err(|e| KubeError::Exec(std::io::Error::other(e)))?;
        Ok(text)
    }
}

/// Why a case has no Pod request: the plan and the catalogue disagree (sgpc's own bug).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no scenario named {0:?}")]
    NoScenario(String),
    #[error("image {0:?} was not built")]
    NotBuilt(String),
}

/// The Kubernetes level: what a run needs before it touches a cluster.
#[derive(Debug, Clone)]
pub struct KubePlan {
    pub run_id: String,
    pub namespace: String,
    /// Image name -> reference in the cluster (`sgpc.local/sgpc/<name>:<tag>`, or sgpc's
    /// registry by digest on a node sgpc started, whose runtime already pulled them).
    pub images: BTreeMap<String, ImageRecord>,
    /// The node sgpc started, which every Pod names.
    pub node_name: Option<String>,
}

impl KubePlan {
    /// Builds the images (locally, to know their tags: the archives `sgpc images build` writes
    /// and `kind load image-archive` loads carry the same) and names the run.
    pub fn new(catalogue: &Catalogue, cases: &[CaseId], run_id: &str) -> anyhow::Result<KubePlan> {
        Ok(KubePlan::of_built(&catalogue.build_images(cases)?, run_id))
    }

    /// The plan for images already built (`sgpc run --kube` builds them once, for the plan and
    /// for the archives kind loads).
    pub fn of_built(built: &[crate::image::BuiltImage], run_id: &str) -> KubePlan {
        let images = built
            .iter()
            .map(|b| {
                let reference = format!("{IMAGE_REPOSITORY}/{}:{}", b.name, b.tag());
                (b.name.clone(), ImageRecord { name: b.name.clone(), reference, manifest_digest: b.manifest.digest.clone(), config_digest: b.config.digest.clone() })
            })
            .collect();
        KubePlan { run_id: run_id.to_string(), namespace: run_id.to_string(), images, node_name: None }
    }

    /// The plan on a node sgpc started: the images its runtime pulled, Pods bound to the node.
    pub fn on_node(run_id: &str, images: BTreeMap<String, ImageRecord>, node_name: &str) -> KubePlan {
        KubePlan { run_id: run_id.to_string(), namespace: run_id.to_ascii_lowercase(), images, node_name: Some(node_name.to_string()) }
    }

    /// The Pod request of the cases of one Pod ([`Catalogue::pods`]), or why there is none.
    pub fn request<'a>(&self, catalogue: &'a Catalogue, ids: &[CaseId]) -> Result<PodRequest<'a>, PlanError> {
        let mut containers = Vec::new();
        for id in ids {
            let scenario = catalogue.scenario(&id.scenario).ok_or_else(|| PlanError::NoScenario(id.scenario.clone()))?;
            let image = self.images.get(&scenario.image).ok_or_else(|| PlanError::NotBuilt(scenario.image.clone()))?;
            containers.push(ContainerRequest { case: id.to_string(), scenario, image_ref: image.reference.clone() });
        }
        Ok(self.pod_request(containers, ids.first().map_or(Policy::Default, |id| id.policy)))
    }

    fn pod_request<'a>(&self, containers: Vec<ContainerRequest<'a>>, policy: Policy) -> PodRequest<'a> {
        PodRequest { containers, policy, namespace: self.namespace.clone(), run_id: self.run_id.clone(), node_name: self.node_name.clone() }
    }

    /// The namespace and every Pod, as YAML documents: what `--dry-run` prints.
    pub fn manifests_yaml(&self, catalogue: &Catalogue, cases: &[CaseId]) -> anyhow::Result<String> {
        let mut docs = vec![serde_saphyr::to_string(&namespace_manifest(&self.namespace, &self.run_id))?];
        for ids in catalogue.pods(cases) {
            docs.push(serde_saphyr::to_string(&pod_manifest(&self.request(catalogue, &ids)?))?);
        }
        Ok(docs.iter().map(|d| format!("---\n{d}")).collect())
    }
}

/// A cluster with the run's namespace: the Kubernetes level's [`Driver`].
pub struct KubeRun {
    driver: KubeDriver,
    plan: KubePlan,
    runtime: RuntimeInfo,
    server_minor: u32,
}

impl KubeRun {
    /// Connects, asks the API server its version and creates the run's namespace. `endpoint`
    /// names the cluster in reports.
    pub async fn start(kubeconfig: Option<&std::path::Path>, endpoint: String, timeout: Duration, plan: KubePlan) -> Result<KubeRun, KubeError> {
        let driver = KubeDriver::connect(kubeconfig, timeout).await?;
        let server_minor = driver.server_minor().await?;
        let runtime = RuntimeInfo {
            endpoint,
            runtime_name: "kubernetes".into(),
            runtime_version: format!("1.{server_minor}"),
            runtime_api_version: "v1".into(),
            supplemental_groups_policy: false,
            // Read with each case (`Admission::node_feature`).
            feature_per_node: true,
            no_user_namespaces: driver.user_namespaces_lacking(None).await,
            cri_status: None,
        };
        Self::with_runtime(driver, server_minor, runtime, plan).await
    }

    /// On a node sgpc started over a runtime it knows: the run is named after that runtime
    /// (kubelet `version` over `runtime`), so that its known bugs are named as at the CRI level.
    /// `kubelet_version` empty: the version the Node reports.
    pub async fn on_node(kubeconfig: Option<&std::path::Path>, kubelet_version: &str, runtime: &RuntimeInfo, timeout: Duration, plan: KubePlan) -> Result<KubeRun, KubeError> {
        let driver = KubeDriver::connect(kubeconfig, timeout).await?;
        let reported = match (kubelet_version, plan.node_name.as_deref()) {
            ("", Some(node)) => driver.kubelet_version(node).await,
            _ => None,
        };
        let kubelet_version = reported.as_deref().unwrap_or(if kubelet_version.is_empty() { "(version unknown)" } else { kubelet_version });
        let server_minor = driver.server_minor().await?;
        let runtime = RuntimeInfo {
            endpoint: format!("kubelet {kubelet_version} node {} over {}", plan.node_name.as_deref().unwrap_or_default(), runtime.endpoint),
            runtime_name: runtime.runtime_name.clone(),
            runtime_version: format!("{} under kubelet {kubelet_version}", runtime.runtime_version),
            runtime_api_version: runtime.runtime_api_version.clone(),
            supplemental_groups_policy: runtime.supplemental_groups_policy,
            feature_per_node: true,
            // kubelet's own word, where the runtime's does not already say no.
            no_user_namespaces: match runtime.no_user_namespaces.clone() {
                Some(why) => Some(why),
                None => driver.user_namespaces_lacking(plan.node_name.as_deref()).await,
            },
            cri_status: runtime.cri_status.clone(),
        };
        Self::with_runtime(driver, server_minor, runtime, plan).await
    }

    async fn with_runtime(driver: KubeDriver, server_minor: u32, runtime: RuntimeInfo, plan: KubePlan) -> Result<KubeRun, KubeError> {
        driver.create_namespace(&plan.namespace, &plan.run_id).await?;
        Ok(KubeRun { driver, plan, runtime, server_minor })
    }

    pub fn images(&self) -> &BTreeMap<String, ImageRecord> {
        &self.plan.images
    }

    /// Removes the run's namespace, and with it every Pod left.
    pub async fn finish(self) -> Result<(), KubeError> {
        self.driver.delete_namespace(&self.plan.namespace).await
    }
}

impl Driver for KubeRun {
    fn runtime(&self) -> &RuntimeInfo {
        &self.runtime
    }

    fn reads_host_proc(&self) -> bool {
        false
    }

    async fn run_pod(&self, members: &[Member<'_, '_>]) -> Vec<Result<Observations, DriverError>> {
        let containers = members.iter().map(|m| ContainerRequest { case: m.case.id.to_string(), scenario: m.case.scenario, image_ref: m.image.reference.clone() }).collect();
        let policy = members.first().map_or(Policy::Default, |m| m.case.id.policy);
        let facts = self.driver.run_pod(&self.plan.pod_request(containers, policy), self.server_minor).await;
        members.iter().zip(facts).map(|(m, f)| Ok(observations(&m.case.id, &f?)?)).collect()
    }

}
