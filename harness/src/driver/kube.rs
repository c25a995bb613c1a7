//! The kube target: the same scenarios as Pods on a Kubernetes cluster, through kube-rs. The CRI
//! level proves the runtime; this level proves what Kubernetes users see: kubelet's admission,
//! pod status and node status.
//!
//! Split in three: [`pod_manifest`] builds the Pod (pure), [`KubeDriver`] creates it and collects
//! [`KubeFacts`] (typed API objects as the API server returned them, plus the probe output), and
//! [`interpret`] judges the facts (pure), so every verdict is tested on recorded shapes.
//!
//! Protected volumes become an `emptyDir` that an init container, running as root, fills with
//! the token and gives to `root:<gid>`, mode 0070: no host path on the node is needed.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, Event, Namespace, Node, Pod, PodSecurityContext, PodSpec, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::case::Case;
use crate::observation::{self, Observations, Point};
use crate::scenario::{Policy, Scenario};
use crate::verdict::{self, Judgement, Verdict};

/// Label put on the namespace and every Pod of a run.
pub const RUN_LABEL: &str = "sgpc.io/run";
/// The reason kubelet (>= 1.33) gives when it rejects a Strict pod on a node without support.
pub const REJECTION_REASON: &str = "SupplementalGroupsPolicyNotSupported";
/// The message kubelet gives with it.
pub const REJECTION_MESSAGE: &str = "Pod was rejected: SupplementalGroupsPolicy=Strict is not supported in this node";
/// Repository the images get when loaded into a cluster (`kind load image-archive`).
pub const IMAGE_REPOSITORY: &str = "sgpc.local/sgpc";
const CONTAINER_NAME: &str = "probe";

/// Everything needed to build one case's Pod.
#[derive(Debug, Clone)]
pub struct PodRequest<'a> {
    pub case: String,
    pub scenario: &'a Scenario,
    pub policy: Policy,
    /// `sgpc.local/sgpc/<name>:<tag>`: loaded into the nodes, never pulled.
    pub image_ref: String,
    pub namespace: String,
    pub run_id: String,
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

/// The Pod for a case, as a user would write it.
pub fn pod_manifest(req: &PodRequest<'_>) -> Pod {
    let s = req.scenario;
    let env = |name: &str, value: String| EnvVar { name: name.into(), value: Some(value), ..Default::default() };
    let container_security = (s.container.run_as_user.is_some() || s.container.run_as_group.is_some()).then(|| SecurityContext {
        run_as_user: s.container.run_as_user.map(i64::from),
        run_as_group: s.container.run_as_group.map(i64::from),
        ..Default::default()
    });
    let mounts: Vec<VolumeMount> = s.volumes.iter().map(|v| VolumeMount { name: v.name.clone(), mount_path: v.mount_path.clone(), read_only: Some(true), ..Default::default() }).collect();
    let init_containers: Vec<Container> = s
        .volumes
        .iter()
        .map(|v| Container {
            name: format!("prepare-{}", v.name),
            image: Some(req.image_ref.clone()),
            image_pull_policy: Some("Never".into()),
            command: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "cd /volume && echo 'secret of {case}' > {token} && chown 0:{gid} {token} . && chmod 0040 {token} && chmod 0070 .",
                    case = req.case,
                    token = crate::scenario::Volume::TOKEN_FILE,
                    gid = v.gid
                ),
            ]),
            security_context: Some(SecurityContext { run_as_user: Some(0), run_as_group: Some(0), ..Default::default() }),
            volume_mounts: Some(vec![VolumeMount { name: v.name.clone(), mount_path: "/volume".into(), ..Default::default() }]),
            ..Default::default()
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(&s.name, req.policy)),
            namespace: Some(req.namespace.clone()),
            labels: Some(BTreeMap::from([(RUN_LABEL.to_string(), req.run_id.clone())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
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
            containers: vec![Container {
                name: CONTAINER_NAME.into(),
                image: Some(req.image_ref.clone()),
                image_pull_policy: Some("Never".into()),
                command: Some(observation::first_process_command()),
                env: Some(vec![env(observation::CASE_ENV, req.case.clone()), env(observation::PROBE_FILES_ENV, s.probed_files().join(" "))]),
                security_context: container_security,
                volume_mounts: (!mounts.is_empty()).then_some(mounts),
                ..Default::default()
            }],
            volumes: (!s.volumes.is_empty()).then(|| {
                s.volumes.iter().map(|v| Volume { name: v.name.clone(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() }).collect()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What the cluster showed for one case: API objects as returned, and the probe outputs.
#[derive(Debug, Clone, Default)]
pub struct KubeFacts {
    /// The Pod as stored and as its status last read.
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
}

/// The node's `status.features.supplementalGroupsPolicy`; absent means no.
pub fn node_feature(node: Option<&Node>) -> bool {
    node.and_then(|n| n.status.as_ref()).and_then(|s| s.features.as_ref()).and_then(|f| f.supplemental_groups_policy).unwrap_or(false)
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

/// The probe outputs and `status.user` as observations, for the verdict engine.
fn observations(case: &str, facts: &KubeFacts) -> Result<Observations, String> {
    let log = facts.log.as_deref().ok_or("the first process printed no probe output (the Pod did not run)")?;
    let exec = facts.exec.as_deref().ok_or("the exec'd probe printed nothing")?;
    let first = observation::parse_probe(log, case).map_err(|e| format!("container log: {e}"))?;
    let exec = observation::parse_probe(exec, case).map_err(|e| format!("exec: {e}"))?;
    let mut obs = Observations::from_probes(first, exec);
    let user = facts
        .pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER_NAME))
        .and_then(|c| c.user.as_ref())
        .and_then(|u| u.linux.as_ref())
        .map(|u| (u.uid, u.gid, u.supplemental_groups.clone().unwrap_or_default()));
    obs.push_reported_user(Point::PodStatus, user);
    Ok(obs)
}

/// Judges one case from what the cluster showed.
///
/// - Strict on a node without the feature: kubelet >= 1.33 must reject the Pod (`REJECTED`, a
///   pass, with the Warning event); a Pod that runs instead is `FAIL`. Before 1.33 Strict fell
///   back to Merge: `UNSUPPORTED`, with `LEAK` when image groups show up.
/// - A policy the API server dropped (feature gate off) is `UNSUPPORTED` for Strict.
/// - A Pod that ran is judged like a CRI case, with `status.user` held against the process and
///   the node's feature flag standing for the runtime's.
pub fn interpret(case: &Case<'_>, facts: &KubeFacts) -> Judgement {
    let policy = case.id.policy;
    let feature = node_feature(facts.node.as_ref());
    if rejected(&facts.pod) {
        let mut reasons = Vec::new();
        if policy != Policy::Strict {
            reasons.push(format!("kubelet rejected a {policy} Pod with {REJECTION_REASON}; only Strict may be rejected"));
        }
        if feature {
            reasons.push("kubelet rejected the Pod although the node advertises status.features.supplementalGroupsPolicy".into());
        }
        if !warning_event(&facts.events) {
            reasons.push(format!("the Pod was rejected without a Warning event with reason {REJECTION_REASON}"));
        }
        return if reasons.is_empty() {
            Judgement { verdict: Verdict::Rejected, reasons: vec![REJECTION_MESSAGE.into()], notes: Vec::new(), known_bugs: Vec::new() }
        } else {
            Judgement { verdict: Verdict::Fail, reasons, notes: Vec::new(), known_bugs: Vec::new() }
        };
    }
    let dropped = policy.api_value().is_some() && stored_policy(&facts.pod).is_none();
    let obs = match observations(&case.id.to_string(), facts) {
        Ok(obs) => obs,
        Err(e) => return Judgement::error(e),
    };
    let mut judgement = verdict::judge(&case.context(feature && !dropped, false), &obs);
    if dropped {
        judgement.notes.push("the API server dropped spec.securityContext.supplementalGroupsPolicy (feature gate off or API server too old)".into());
    }
    if policy == Policy::Strict && !feature && !dropped && facts.server_minor >= 33 && judgement.verdict != Verdict::Error {
        judgement.verdict = Verdict::Fail;
        judgement.reasons.insert(0, format!("kubelet 1.{} ran a Strict Pod on a node without status.features.supplementalGroupsPolicy; it must reject it ({REJECTION_REASON})", facts.server_minor));
    }
    judgement
}

/// A live cluster, through kube-rs.
pub struct KubeDriver {
    client: kube::Client,
    timeout: Duration,
}

impl KubeDriver {
    /// Connects with a kubeconfig file, or the default (`KUBECONFIG`, `~/.kube/config`, in-cluster).
    pub async fn connect(kubeconfig: Option<&std::path::Path>, timeout: Duration) -> anyhow::Result<KubeDriver> {
        let config = match kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path).map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await?
            }
            None => kube::Config::infer().await?,
        };
        Ok(KubeDriver { client: kube::Client::try_from(config)?, timeout })
    }

    /// The API server's minor version.
    pub async fn server_minor(&self) -> anyhow::Result<u32> {
        let info = self.client.apiserver_version().await?;
        Ok(info.minor.trim_end_matches('+').parse()?)
    }

    pub async fn create_namespace(&self, name: &str, run_id: &str) -> anyhow::Result<()> {
        let api: kube::Api<Namespace> = kube::Api::all(self.client.clone());
        api.create(&kube::api::PostParams::default(), &namespace_manifest(name, run_id)).await?;
        Ok(())
    }

    pub async fn delete_namespace(&self, name: &str) -> anyhow::Result<()> {
        let api: kube::Api<Namespace> = kube::Api::all(self.client.clone());
        match api.delete(name, &kube::api::DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the Pod, waits for it to run or be rejected, and collects the facts.
    pub async fn run_case(&self, req: &PodRequest<'_>, server_minor: u32) -> anyhow::Result<KubeFacts> {
        use kube::api::{AttachParams, DeleteParams, ListParams, LogParams, PostParams};
        let pods: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), &req.namespace);
        let name = pod_name(&req.scenario.name, req.policy);
        pods.create(&PostParams::default(), &pod_manifest(req)).await?;
        let mut facts = KubeFacts { server_minor, ..Default::default() };
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            facts.pod = pods.get(&name).await?;
            let phase = facts.pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            if phase == "Failed" || phase == "Succeeded" {
                break;
            }
            if phase == "Running" {
                let log = pods.logs(&name, &LogParams { container: Some(CONTAINER_NAME.into()), ..Default::default() }).await?;
                if observation::probe_finished(&log) {
                    facts.log = Some(log);
                    break;
                }
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "Pod {name} neither ran its probe nor was rejected within {:?} (phase {phase:?})", self.timeout);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if facts.log.is_some() {
            let mut attached = pods.exec(&name, observation::exec_command(), &AttachParams::default().container(CONTAINER_NAME).stderr(false)).await?;
            let mut stdout = attached.stdout().ok_or_else(|| anyhow::anyhow!("exec gave no stdout"))?;
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut text).await?;
            attached.join().await?;
            facts.exec = Some(text);
            facts.pod = pods.get(&name).await?;
        }
        if let Some(node_name) = facts.pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            let nodes: kube::Api<Node> = kube::Api::all(self.client.clone());
            facts.node = Some(nodes.get(&node_name).await?);
        }
        let events: kube::Api<Event> = kube::Api::namespaced(self.client.clone(), &req.namespace);
        let selector = format!("involvedObject.name={name}");
        facts.events = events.list(&ListParams::default().fields(&selector)).await?.items;
        pods.delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await?;
        Ok(facts)
    }
}
