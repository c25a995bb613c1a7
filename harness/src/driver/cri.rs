//! The CRI target: drives a runtime over its gRPC socket exactly as kubelet would.
//!
//! A scenario is translated the way kubelet translates a Pod: the policy goes on both the sandbox
//! and the container security context; the CRI `supplemental_groups` list is `fsGroup` first,
//! then `supplementalGroups`; `ImageSpec.user_specified_image` is set (CRI-O refuses a container
//! without it); the PID namespace is per container (kubelet's default), so PID 1 of an exec'd
//! process's view is the container's own first process.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{RuntimeInfo, Timeouts, RUN_LABEL};
use crate::observation::{self, Observations, Point, ProbeError};
use crate::scenario::{Policy, Scenario};


#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("cannot connect to the CRI endpoint {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// The status is kept whole (its code, and the transport error beneath it), not as the
    /// error's source: tonic's own Display repeats the message with its metadata.
    #[error("{step} failed: {}: {}", status.code(), status.message())]
    Rpc { step: &'static str, status: tonic::Status },
    /// The runtime itself answered a step that creates the Pod with an error (not a transport
    /// failure, a timeout or a cancellation): it refuses to run it.
    #[error("{step} was refused by the runtime: {}", refusal(status))]
    Refused { step: &'static str, status: tonic::Status },
    #[error("the host gives out ids (/etc/passwd, /etc/group, /etc/subuid, /etc/subgid) so high that no 65536 ids below 2^31 are free for the Pod's user namespace")]
    NoUsernsSlot,
    #[error("the exec'd probe exited {exit_code}: {stderr}")]
    ProbeExit { exit_code: i32, stderr: String },
    #[error("{step} did not finish within {after:?}")]
    Timeout { step: &'static str, after: Duration },
    #[error("the container runs image {reported:?}, not the bytes sgpc built (manifest {}, config {}): the verdict would not be about sgpc's image", expected.manifest, expected.config)]
    ImageMismatch { expected: crate::image::Digests, reported: String },
    #[error("reading the probe output")]
    Probe(#[from] ProbeError),
    #[error("{step} failed ({message}); checking the image afterwards failed too")]
    RefusalUnchecked {
        step: &'static str,
        message: String,
        #[source]
        source: Box<CriError>,
    },
    /// A failure of a Pod of several containers (its sandbox, or its removal), told to each.
    #[error("the Pod failed")]
    PodFailed(#[source] std::sync::Arc<CriError>),
    /// An init container before this one did not complete: kubelet starts nothing after it
    /// (the Pod's containers start only once every init container has succeeded).
    #[error("not started: init container {container} of the Pod did not complete")]
    InitNotCompleted { container: String },
    /// sgpc asked for something no runtime could give (its own bug).
    #[error("{0}")]
    Internal(&'static str),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// One failure told to each of `count` containers of a Pod: a refusal stays each one's refusal
/// (the runtime refused the Pod they are in); anything else is each one's through one shared
/// cause. A Pod of one keeps its error as it is.
fn for_each_container(error: CriError, count: usize) -> Vec<CriError> {
    match error {
        e if count == 1 => vec![e],
        CriError::Refused { step, status } => (0..count).map(|_| CriError::Refused { step, status: status.clone() }).collect(),
        other => {
            let shared = std::sync::Arc::new(other);
            (0..count).map(|_| CriError::PodFailed(shared.clone())).collect()
        }
    }
}

/// `code: message` of a status the runtime answered.
pub fn refusal(status: &tonic::Status) -> String {
    format!("{}: {}", status.code(), status.message())
}

/// Everything the target needs to run one case: plain data prepared by the runner.
#[derive(Debug, Clone)]
pub struct CaseRequest<'a> {
    /// The case id, printed by the probe so each case can check that output is its own.
    pub case: String,
    pub scenario: &'a Scenario,
    pub policy: Policy,
    pub image_ref: String,
    /// The bytes sgpc built: the image every container must report running.
    pub image_digests: crate::image::Digests,
    /// A fresh directory for this case's fixtures; the first container's holds the Pod's logs.
    pub case_dir: PathBuf,
    /// The container's name in the Pod (`probe` for a Pod of one).
    pub container: String,
    /// An init container: observed, then stopped before the Pod's containers start.
    pub init: bool,
    pub run_id: String,
    /// The CRI runtime handler (an OCI runtime of the runtime's config); empty for the default.
    pub runtime_handler: String,
    /// The sandbox's cgroup parent: the run's own for a runtime sgpc started
    /// ([`crate::provision::host_paths::cgroup_parent`]); empty (the runtime's default) for `--cri`.
    pub cgroup_parent: String,
    /// The slot of 65536 host ids this case's user namespace maps onto ([`userns_mapping`]);
    /// `None` where the host leaves no slot free.
    pub userns_slot: Option<u32>,
}

/// A container created and started, waiting to be observed.
struct StartedContainer {
    id: String,
    /// The image's user as `ImageStatus` gave it, where kubelet would have asked.
    image_user: Option<ImageUser>,
}

/// A connected CRI runtime.
#[derive(Clone)]
pub struct CriDriver {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    endpoint: String,
    timeouts: Timeouts,
    /// Where the id of every sandbox and container created is noted, for a runtime sgpc
    /// started ([`crate::provision::host_paths::task_ledger`]).
    task_ledger: Option<PathBuf>,
}

/// The innermost error of a chain: for a failed connect, the socket's own error.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |e| e.source()).last().map(ToString::to_string).unwrap_or_default()
}

/// Accepts `unix:///path`, `unix:/path` or a plain path.
pub fn socket_path(endpoint: &str) -> PathBuf {
    let path = endpoint.strip_prefix("unix://").or_else(|| endpoint.strip_prefix("unix:")).unwrap_or(endpoint);
    PathBuf::from(path)
}

async fn bounded<T>(step: &'static str, after: Duration, call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>) -> Result<T, CriError> {
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(after, call).await;
    tracing::debug!(step, elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "CRI call");
    match outcome {
        Err(_) => Err(CriError::Timeout { step, after }),
        Ok(Err(status)) => Err(CriError::Rpc { step, status }),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}

/// Like [`bounded`], for the calls that create a Pod: an error status that the runtime itself
/// sent (tonic attaches no source to those; transport failures carry one) is a refusal, unless
/// its code says the runtime was unreachable, slow or cancelled.
async fn creating<T>(step: &'static str, after: Duration, call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>) -> Result<T, CriError> {
    let outcome = tokio::time::timeout(after, call).await.map_err(|_| CriError::Timeout { step, after })?;
    match outcome {
        Ok(response) => Ok(response.into_inner()),
        Err(status) => {
            let from_runtime = std::error::Error::source(&status).is_none();
            match status.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Err(CriError::Rpc { step, status }),
                _ if from_runtime => Err(CriError::Refused { step, status }),
                _ => Err(CriError::Rpc { step, status }),
            }
        }
    }
}

/// The labels that mark a sandbox or container as the run's, and select them for cleanup.
pub fn run_labels(run_id: &str) -> HashMap<String, String> {
    HashMap::from([(RUN_LABEL.to_string(), run_id.to_string())])
}

fn id_value(id: Option<u32>) -> Option<cri::Int64Value> {
    id.map(|v| cri::Int64Value { value: i64::from(v) })
}

/// The namespaces kubelet asks for: the node's network, a PID namespace per container, IPC per
/// Pod; with `hostUsers: false` a user namespace and a network namespace per Pod (the API forbids
/// hostNetwork with it; sgpc's runtimes give it only loopback).
fn namespace_options(userns: Option<&cri::IdMapping>) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: if userns.is_some() { cri::NamespaceMode::Pod } else { cri::NamespaceMode::Node } as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        userns_options: userns.map(|mapping| cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![*mapping],
            gids: vec![*mapping],
        }),
        ..Default::default()
    }
}

/// The ids a Pod gets per user namespace: kubelet's default (`idsPerPod`, 65536).
pub const USERNS_LENGTH: u32 = 65536;

/// The mapping of a `hostUsers: false` case, as kubelet's user namespace manager makes one
/// (`pkg/kubelet/userns`, `allocateOne`): container ids 0..65536 onto a host range that starts
/// at a multiple of 65536, one range per Pod. The slot is the session's ([`UsernsSlots`]).
pub fn userns_mapping(req: &CaseRequest<'_>) -> Option<cri::IdMapping> {
    let slot = req.userns_slot.filter(|_| req.scenario.pod.user_namespace())?;
    Some(cri::IdMapping { host_id: slot * USERNS_LENGTH, container_id: 0, length: USERNS_LENGTH })
}

/// The host-id slots a session's user namespaces take: 65536 ids each, below 2^31 (runc
/// refuses larger ids), none holding an id the host's `/etc/passwd` or `/etc/group` names or a
/// range `/etc/subuid` or `/etc/subgid` gives out (kubelet takes its Pods' ranges from the
/// `kubelet` entry there where there is one; without it kubelet uses ids from 65536 up, so on
/// a kubelet's node `--cri` may share host ids with its Pods). The cases of a session take the
/// free slots in turn from an offset drawn from the run id, so that sessions at once (the
/// matrix's columns) start apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernsSlots {
    free: Vec<u32>,
    offset: usize,
}

/// Slots `1..=LAST_SLOT` keep every mapped host id below 2^31.
const LAST_SLOT: u32 = (1 << 31) / USERNS_LENGTH - 1;

impl UsernsSlots {
    /// The slots free of the ids the files under `etc` give out (an absent file gives none).
    pub fn free_of(etc: &Path, run_id: &str) -> UsernsSlots {
        let named = |file: &str| std::fs::read_to_string(etc.join(file)).unwrap_or_default();
        let mut taken: Vec<(u64, u64)> = Vec::new();
        for file in ["passwd", "group"] {
            let ids = named(file).lines().filter_map(|l| l.split(':').nth(2)?.trim().parse::<u64>().ok()).collect::<Vec<_>>();
            taken.extend(ids.into_iter().map(|id| (id, id)));
        }
        for file in ["subuid", "subgid"] {
            let text = named(file);
            taken.extend(text.lines().filter_map(|l| {
                let mut fields = l.split(':').skip(1).map(|f| f.trim().parse::<u64>().ok());
                let (start, count) = (fields.next()??, fields.next()??);
                Some((start, start.saturating_add(count.max(1) - 1)))
            }));
        }
        let length = u64::from(USERNS_LENGTH);
        let clear = |slot: &u32| {
            let first = u64::from(*slot) * length;
            !taken.iter().any(|&(lo, hi)| lo < first + length && hi >= first)
        };
        let free: Vec<u32> = (1..=LAST_SLOT).filter(clear).collect();
        let offset = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::hash::DefaultHasher::new();
            run_id.hash(&mut hasher);
            usize::try_from(hasher.finish() % free.len().max(1) as u64).unwrap_or(0)
        };
        UsernsSlots { free, offset }
    }

    /// The slot of the `nth` case of a session; `None` where the host leaves none free.
    pub fn nth(&self, nth: usize) -> Option<u32> {
        let count = self.free.len();
        (count > 0).then(|| self.free[(self.offset + nth % count) % count])
    }
}

/// The id a process in a user namespace sees for a host id its namespace does not map: the
/// kernel's overflow id (user_namespaces(7), "Unmapped user and group IDs";
/// `/proc/sys/kernel/overflowuid`, 65534 unless changed).
pub const OVERFLOW_ID: u32 = 65534;

/// An identity as the host's `/proc` shows it, in the container's view of `mapping`: a host id
/// outside the mapping shows as [`OVERFLOW_ID`], as the kernel would show it inside, so that a
/// process left in the host's user namespace (host uid 1000 where the mapping gives container
/// uid 1000 another host id) is seen as the wrong identity it is.
fn to_container_view(mapping: Option<&cri::IdMapping>, (identity, raw): (crate::identity::Identity, Vec<u32>)) -> (crate::identity::Identity, Vec<u32>) {
    let Some(m) = mapping else { return (identity, raw) };
    let map = |id: u32| if (m.host_id..m.host_id.saturating_add(m.length)).contains(&id) { id - m.host_id + m.container_id } else { OVERFLOW_ID };
    let raw: Vec<u32> = raw.into_iter().map(map).collect();
    (crate::identity::Identity::observed(map(identity.uid), map(identity.gid), raw.iter().copied()), raw)
}

pub use crate::identity::ImageUser;

/// The CRI `supplemental_groups` list as kubelet builds it: fsGroup, then supplementalGroups.
pub fn cri_supplemental_groups(scenario: &Scenario) -> Vec<i64> {
    scenario.pod.fs_group.into_iter().chain(scenario.pod.supplemental_groups.iter().copied()).map(i64::from).collect()
}

fn cri_policy(policy: Policy) -> i32 {
    match policy {
        Policy::Default | Policy::Merge => cri::SupplementalGroupsPolicy::Merge as i32,
        Policy::Strict => cri::SupplementalGroupsPolicy::Strict as i32,
    }
}

/// The sandbox config kubelet would send for this case's Pod.
pub fn sandbox_config(req: &CaseRequest<'_>) -> cri::PodSandboxConfig {
    let pod = &req.scenario.pod;
    let name = format!("{}-{}", req.scenario.pod_name(), req.policy);
    // The case directory's name is unique in the run: two sandboxes of one Pod's name (its
    // containers judged one by one, at once) must not share a uid, which the runtime reserves.
    let unique = req.case_dir.file_name().map_or_else(|| name.clone(), |n| n.to_string_lossy().into_owned());
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name,
            uid: format!("{}-{unique}", req.run_id),
            namespace: "sgpc".into(),
            attempt: 0,
        }),
        log_directory: req.case_dir.to_string_lossy().into_owned(),
        labels: run_labels(&req.run_id),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(userns_mapping(req).as_ref())),
                run_as_user: id_value(pod.run_as_user),
                run_as_group: id_value(pod.run_as_group),
                supplemental_groups: cri_supplemental_groups(req.scenario),
            supplemental_groups_policy: cri_policy(req.policy),
                ..Default::default()
            }),
            cgroup_parent: req.cgroup_parent.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container config kubelet would send: container settings override the pod's; without a
/// `runAsUser`, the image's user as `ImageStatus` reported it.
pub fn container_config(req: &CaseRequest<'_>, mounts: Vec<cri::Mount>, image_user: Option<&ImageUser>) -> cri::ContainerConfig {
    let scenario = req.scenario;
    let run_as_user = scenario.container.run_as_user.or(scenario.pod.run_as_user).map(i64::from);
    let (run_as_user, run_as_username) = match (run_as_user, image_user) {
        (Some(uid), _) => (Some(uid), String::new()),
        (None, Some(ImageUser::Uid(uid))) => (Some(*uid), String::new()),
        (None, Some(ImageUser::Name(name))) => (None, name.clone()),
        (None, None) => (None, String::new()),
    };
    let env = |key: &str, value: String| cri::KeyValue { key: key.into(), value };
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: req.container.clone(), attempt: 0 }),
        image: Some(cri::ImageSpec {
            image: req.image_ref.clone(),
            user_specified_image: req.image_ref.clone(),
            ..Default::default()
        }),
        command: observation::first_process_command(),
        envs: vec![
            env(observation::CASE_ENV, req.case.clone()),
            env(observation::PROBE_FILES_ENV, scenario.probed_files().join(" ")),
        ],
        mounts,
        labels: run_labels(&req.run_id),
        log_path: log_path(&req.container),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespace_options(userns_mapping(req).as_ref())),
                run_as_user: run_as_user.map(|value| cri::Int64Value { value }),
                run_as_username,
                run_as_group: id_value(scenario.container.run_as_group.or(scenario.pod.run_as_group)),
                supplemental_groups: cri_supplemental_groups(scenario),
            supplemental_groups_policy: cri_policy(req.policy),
                no_new_privs: scenario.container.no_new_privs(),
                capabilities: (!scenario.container.drop_capabilities.is_empty())
                    .then(|| cri::Capability { drop_capabilities: scenario.container.drop_capabilities.clone(), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The identity fields of the sandbox and container requests a case sends, as one text: what a
/// discovered divergence shows so that anyone can check it against the runtime. The image
/// user is what kubelet takes from `ImageStatus` (the part of `USER` before `:`; none is 0).
pub fn identity_request(scenario: &Scenario, recipe: &crate::image::Recipe, policy: Policy) -> String {
    let req = CaseRequest {
        case: format!("{}/{policy}", scenario.name),
        scenario,
        policy,
        image_ref: String::new(),
        image_digests: crate::image::Digests { manifest: String::new(), config: String::new() },
        case_dir: PathBuf::new(),
        container: String::new(),
        init: false,
        run_id: String::new(),
        runtime_handler: String::new(),
        cgroup_parent: String::new(),
        userns_slot: Some(1),
    };
    let image_user = ImageUser::of_config(recipe.user.as_deref());
    let sandbox = sandbox_config(&req).linux.and_then(|l| l.security_context).unwrap_or_default();
    let container = container_config(&req, Vec::new(), Some(&image_user)).linux.and_then(|l| l.security_context).unwrap_or_default();
    let policy_name = |p: i32| cri::SupplementalGroupsPolicy::try_from(p).map_or_else(|_| p.to_string(), |p| p.as_str_name().to_string());
    format!(
        "RunPodSandbox linux.security_context {{run_as_user: {:?}, run_as_group: {:?}, supplemental_groups: {:?}, supplemental_groups_policy: {}}}; \
         CreateContainer linux.security_context {{run_as_user: {:?}, run_as_username: {:?}, run_as_group: {:?}, supplemental_groups: {:?}, supplemental_groups_policy: {}}}",
        sandbox.run_as_user.map(|v| v.value),
        sandbox.run_as_group.map(|v| v.value),
        sandbox.supplemental_groups,
        policy_name(sandbox.supplemental_groups_policy),
        container.run_as_user.map(|v| v.value),
        container.run_as_username,
        container.run_as_group.map(|v| v.value),
        container.supplemental_groups,
        policy_name(container.supplemental_groups_policy),
    )
}

/// Joins a CRI log file (`<RFC3339Nano> <stream> <P|F> <content>` per line; `P` lines are
/// partial and continue on the next line of the same stream) back into the lines the process
/// wrote, in the order they were completed. A partial line continues only in its own stream:
/// the other stream's lines may come between its parts. A partial line still open at the end
/// is kept as a line of its own, in stream-name order (stderr, then stdout).
pub fn parse_cri_log(log: &str) -> String {
    let mut text = String::new();
    let mut partial: std::collections::BTreeMap<&str, String> = std::collections::BTreeMap::new();
    for line in log.lines() {
        let mut fields = line.splitn(4, ' ');
        let (Some(_time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let pending = partial.entry(stream).or_default();
        pending.push_str(fields.next().unwrap_or(""));
        if tag != "P" {
            text.push_str(&std::mem::take(pending));
            text.push('\n');
        }
    }
    for rest in partial.into_values().filter(|rest| !rest.is_empty()) {
        text.push_str(&rest);
        text.push('\n');
    }
    text
}

/// A container's log, relative to the sandbox's log directory (kubelet's is
/// `<container>/<attempt>.log`; one file per container is enough here).
fn log_path(container: &str) -> String {
    format!("{container}.log")
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> CriError {
    move |source| CriError::Io { what, source }
}

/// Creates each volume's protected directory and its `token`, owned `root:<gid>` with the modes
/// of [`crate::scenario::Volume::modes`].
///
/// Every path is one component below the case directory (volume names are DNS-1123 labels,
/// checked at load), is created fresh (an existing file or symlink there is an error), and is
/// changed through its own open file, never by a path a symlink could redirect.
fn prepare_volumes(req: &CaseRequest<'_>) -> Result<Vec<cri::Mount>, CriError> {
    let mut mounts = Vec::new();
    for volume in &req.scenario.volumes {
        let dir = req.case_dir.join(format!("volume-{}", volume.name));
        let what = format!("preparing the protected directory {}", dir.display());
        if dir.parent() != Some(req.case_dir.as_path()) || !crate::scenario::is_dns_label(&volume.name) {
            return Err(CriError::Io { what, source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the volume name is not a DNS-1123 label") });
        }
        std::fs::create_dir(&dir).map_err(io_error(what.clone()))?;
        let dir_handle = open_no_follow(&dir, libc::O_RDONLY | libc::O_DIRECTORY, false).map_err(io_error(what.clone()))?;
        let token = open_no_follow(&dir.join(crate::scenario::Volume::TOKEN_FILE), libc::O_WRONLY, true).map_err(io_error(what.clone()))?;
        (&token).write_all(format!("secret of {}\n", req.case).as_bytes()).map_err(io_error(what.clone()))?;
        let (dir_mode, token_mode) = volume.modes();
        for (handle, mode) in [(&token, token_mode), (&dir_handle, dir_mode)] {
            std::os::unix::fs::fchown(handle, Some(0), Some(volume.gid)).map_err(io_error(what.clone()))?;
            handle.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io_error(what.clone()))?;
        }
        // kubelet gives every mount of a user-namespaced Pod the Pod's mappings
        // (kuberuntime_container_linux.go, applyPlatformSpecificContainerConfig).
        let mapping: Vec<cri::IdMapping> = userns_mapping(req).into_iter().collect();
        mounts.push(cri::Mount {
            container_path: volume.mount_path.clone(),
            host_path: dir.to_string_lossy().into_owned(),
            readonly: true,
            uid_mappings: mapping.clone(),
            gid_mappings: mapping,
            ..Default::default()
        });
    }
    Ok(mounts)
}

/// Opens `path` without following a symlink at its last component; `create` makes a new file
/// (mode 0600) and fails if anything already exists there.
fn open_no_follow(path: &Path, flags: i32, create: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.custom_flags(flags | libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if create {
        options.write(true).create_new(true).mode(0o600);
    } else {
        options.read(true);
    }
    options.open(path)
}

impl CriDriver {
    /// Connects to a CRI endpoint; fails at once when nothing listens.
    pub async fn connect(endpoint: &str, timeouts: Timeouts) -> Result<CriDriver, CriError> {
        let path = socket_path(endpoint);
        let channel = Endpoint::from_static("http://[::]:50051")
            .connect_timeout(timeouts.rpc)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
            .map_err(|e| CriError::Connect { endpoint: endpoint.to_string(), reason: root_cause(&e) })?;
        Ok(CriDriver {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            endpoint: endpoint.to_string(),
            timeouts,
            task_ledger: None,
        })
    }

    /// Notes every sandbox and container this driver creates in `ledger`.
    pub fn with_task_ledger(mut self, ledger: PathBuf) -> CriDriver {
        self.task_ledger = Some(ledger);
        self
    }

    fn note_task(&self, id: &str) -> Result<(), CriError> {
        let Some(ledger) = &self.task_ledger else { return Ok(()) };
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(ledger).map_err(io_error(format!("opening {}", ledger.display())))?;
        std::io::Write::write_all(&mut file, format!("{id}\n").as_bytes()).map_err(io_error(format!("writing {}", ledger.display())))
    }

    /// What the runtime says of itself, with the features of `runtime_handler` (empty: the
    /// default handler).
    pub async fn info(&self, runtime_handler: &str) -> Result<RuntimeInfo, CriError> {
        let rpc = self.timeouts.rpc;
        let version = bounded("Version", rpc, self.runtime.clone().version(cri::VersionRequest::default())).await?;
        let status = bounded("Status", rpc, self.runtime.clone().status(cri::StatusRequest { verbose: true })).await?;
        let cri_status = status_evidence(&status);
        Ok(RuntimeInfo {
            endpoint: self.endpoint.clone(),
            runtime_name: version.runtime_name,
            runtime_version: version.runtime_version,
            runtime_api_version: version.runtime_api_version,
            feature_per_node: false,
            supplemental_groups_policy: status.features.is_some_and(|f| f.supplemental_groups_policy),
            no_user_namespaces: (!status.runtime_handlers.iter().any(|h| h.name == runtime_handler && h.features.is_some_and(|f| f.user_namespaces)))
                .then(|| crate::verdict::USERNS_NOT_ADVERTISED.to_string()),
            cri_status: Some(cri_status),
        })
    }

    /// Pulls an image with CRI `PullImage`, with the registry's credentials if it has any;
    /// returns the runtime's image reference.
    pub async fn pull(&self, image: &str, credentials: Option<&crate::provision::registry::Credentials>) -> Result<String, CriError> {
        let request = cri::PullImageRequest {
            image: Some(cri::ImageSpec { image: image.into(), user_specified_image: image.into(), ..Default::default() }),
            auth: credentials.map(|c| cri::AuthConfig { username: c.username.clone(), password: c.password.clone(), ..Default::default() }),
            ..Default::default()
        };
        let response = bounded("PullImage", self.timeouts.pull, self.images.clone().pull_image(request)).await?;
        Ok(response.image_ref)
    }

    /// Runs the containers of one Pod (a Pod of one: `reqs` holds one) as kubelet would: one
    /// sandbox; each init container started, observed and stopped in turn; then every container
    /// created and started, and each observed. Removes the sandbox whatever happened. One result
    /// per request, in order.
    pub async fn run_pod(&self, reqs: &[CaseRequest<'_>]) -> Vec<Result<Observations, CriError>> {
        let mut names: Vec<&str> = reqs.iter().map(|r| r.container.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return reqs.iter().map(|_| Err(CriError::Internal("two containers of one sandbox were given one name"))).collect();
        }
        let (pod_id, sandbox, mounts) = match self.start_sandbox(reqs).await {
            Ok(started) => started,
            Err(e) => return for_each_container(e, reqs.len()).into_iter().map(Err).collect(),
        };
        let mut results: Vec<Result<Observations, CriError>> = Vec::with_capacity(reqs.len());
        let mut incomplete: Option<String> = None;
        for (i, req) in reqs.iter().enumerate() {
            if let Some(container) = &incomplete {
                results.push(Err(CriError::InitNotCompleted { container: container.clone() }));
                continue;
            }
            if !req.init {
                break;
            }
            let observed = match self.start_container(req, &pod_id, &sandbox, mounts[i].clone()).await {
                Ok(started) => self.observe(req, &sandbox, started).await,
                Err(e) => Err(e),
            };
            if observed.is_err() {
                incomplete = Some(req.container.clone());
            }
            results.push(observed);
        }
        // Started in order, as kubelet starts a Pod's containers; observed all at once.
        let mut running = Vec::new();
        for (i, req) in reqs.iter().enumerate().skip(results.len()) {
            running.push((i, self.start_container(req, &pod_id, &sandbox, mounts[i].clone()).await));
        }
        let sandbox = &sandbox;
        results.extend(
            futures::future::join_all(running.into_iter().map(|(i, started)| async move {
                match started {
                    Ok(started) => self.observe(&reqs[i], sandbox, started).await,
                    Err(e) => Err(e),
                }
            }))
            .await,
        );
        // A sandbox that cannot be removed is a leak: no container's observations stand.
        if let Err(e) = self.remove_sandbox(&pod_id).await {
            let observed: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
            for (i, error) in observed.iter().zip(for_each_container(e, observed.len())) {
                results[*i] = Err(error);
            }
        }
        results
    }

    /// The Pod's sandbox, with each container's volumes prepared (in its own case directory).
    async fn start_sandbox(&self, reqs: &[CaseRequest<'_>]) -> Result<(String, cri::PodSandboxConfig, Vec<Vec<cri::Mount>>), CriError> {
        let first = reqs.first().ok_or(CriError::Internal("a Pod without containers"))?;
        if first.scenario.pod.user_namespace() && first.userns_slot.is_none() {
            return Err(CriError::NoUsernsSlot);
        }
        let mut mounts = Vec::new();
        for req in reqs {
            std::fs::create_dir_all(&req.case_dir).map_err(io_error(format!("creating {}", req.case_dir.display())))?;
            mounts.push(prepare_volumes(req)?);
        }
        let sandbox = sandbox_config(first);
        let run = cri::RunPodSandboxRequest { config: Some(sandbox.clone()), runtime_handler: first.runtime_handler.clone() };
        let pod_id = creating("RunPodSandbox", self.timeouts.rpc, self.runtime.clone().run_pod_sandbox(run)).await?.pod_sandbox_id;
        if let Err(e) = self.note_task(&pod_id) {
            let _ = self.remove_sandbox(&pod_id).await;
            return Err(e);
        }
        Ok((pod_id, sandbox, mounts))
    }

    /// Creates and starts one container of the Pod; kubelet asks the runtime for the image's
    /// user whenever the container sets no runAsUser and the Pod none either.
    async fn start_container(&self, req: &CaseRequest<'_>, pod_id: &str, sandbox: &cri::PodSandboxConfig, mounts: Vec<cri::Mount>) -> Result<StartedContainer, CriError> {
        let rpc = self.timeouts.rpc;
        let image_user = match req.scenario.container.run_as_user.or(req.scenario.pod.run_as_user) {
            Some(_) => None,
            None => Some(self.image_user(&req.image_ref).await?),
        };
        let create = cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.into(),
            config: Some(container_config(req, mounts, image_user.as_ref())),
            sandbox_config: Some(sandbox.clone()),
        };
        let id = creating("CreateContainer", rpc, self.runtime.clone().create_container(create)).await?.container_id;
        self.note_task(&id)?;
        creating("StartContainer", rpc, self.runtime.clone().start_container(cri::StartContainerRequest { container_id: id.clone() })).await?;
        Ok(StartedContainer { id, image_user })
    }

    /// Observes a started container: its first process's probe output, an exec'd probe, its
    /// status and the host's view of its first process. An init container is then stopped (its
    /// first process exits 0 on SIGTERM), as it would have ended before the Pod's containers start.
    async fn observe(&self, req: &CaseRequest<'_>, sandbox: &cri::PodSandboxConfig, started: StartedContainer) -> Result<Observations, CriError> {
        let rpc = self.timeouts.rpc;
        let StartedContainer { id: container_id, image_user } = started;
        let waited = std::time::Instant::now();
        let first = self.wait_for_probe(&Path::new(&sandbox.log_directory).join(log_path(&req.container))).await?;
        tracing::debug!(elapsed_ms = waited.elapsed().as_secs_f64() * 1000.0, "probe output in the container log");
        let first = observation::parse_probe(&first, &req.case)?;

        let exec = cri::ExecSyncRequest {
            container_id: container_id.clone(),
            cmd: observation::exec_command(),
            timeout: rpc.as_secs() as i64,
        };
        let exec = bounded("ExecSync", rpc + Duration::from_secs(1), self.runtime.clone().exec_sync(exec)).await?;
        if exec.exit_code != 0 {
            return Err(CriError::ProbeExit { exit_code: exec.exit_code, stderr: String::from_utf8_lossy(&exec.stderr).into_owned() });
        }
        let exec = observation::parse_probe(&String::from_utf8_lossy(&exec.stdout), &req.case)?;

        let status = bounded("ContainerStatus", rpc, self.runtime.clone().container_status(cri::ContainerStatusRequest { container_id: container_id.clone(), verbose: true })).await?;

        let reported = status.status.as_ref().map(|s| [s.image_ref.as_str(), s.image_id.as_str()]).unwrap_or_default();
        if !reported.iter().any(|r| req.image_digests.named_by(r)) {
            return Err(CriError::ImageMismatch { expected: req.image_digests.clone(), reported: reported.iter().filter(|r| !r.is_empty()).copied().collect::<Vec<_>>().join(", ") });
        }
        let mut obs = Observations::from_probes(first, exec);
        obs.image_user = image_user.map(|u| u.describe());
        obs.requested_uid_map = userns_mapping(req).map(|m| observation::UidMapLine { inside: m.container_id, outside: m.host_id, length: m.length });
        if let Some(pid) = verbose_pid(&status.info) {
            let text = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(io_error(format!("reading /proc/{pid}/status of the first process")))?;
            obs.push(Point::HostKernel, to_container_view(userns_mapping(req).as_ref(), observation::parse_proc_status(&text)?), "");
        }
        let user = status.status.and_then(|s| s.user).and_then(|u| u.linux).map(|u| (u.uid, u.gid, u.supplemental_groups));
        obs.push_reported_user(Point::CriStatus, user);
        if req.init {
            let stop = cri::StopContainerRequest { container_id, timeout: rpc.as_secs() as i64 };
            bounded("StopContainer", rpc + rpc, self.runtime.clone().stop_container(stop)).await?;
        }
        Ok(obs)
    }

    async fn wait_for_probe(&self, log: &Path) -> Result<String, CriError> {
        let wait = async {
            loop {
                if let Ok(raw) = tokio::fs::read_to_string(log).await {
                    let text = parse_cri_log(&raw);
                    if observation::probe_finished(&text) {
                        return text;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(self.timeouts.probe, wait)
            .await
            .map_err(|_| CriError::Timeout { step: "waiting for the first process's probe output in the container log", after: self.timeouts.probe })
    }

    /// Stops and removes a sandbox; the runtime stops its containers (the probe's PID 1 exits on
    /// SIGTERM, so no grace period is waited out).
    ///
    /// A sandbox whose creation a client abandoned (a case cancelled, sgpc killed) can be
    /// caught with its shim gone before containerd has noticed (`ttrpc: closed`); the removal is
    /// tried again a few times, for about three seconds, before it counts as failed.
    pub async fn remove_sandbox(&self, pod_id: &str) -> Result<(), CriError> {
        const ATTEMPTS: u32 = 6;
        let mut attempt = 1;
        loop {
            match self.try_remove_sandbox(pod_id).await {
                Err(CriError::Rpc { .. } | CriError::Refused { .. }) if attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn try_remove_sandbox(&self, pod_id: &str) -> Result<(), CriError> {
        let rpc = self.timeouts.rpc;
        bounded("StopPodSandbox", rpc, self.runtime.clone().stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod_id.into() })).await?;
        bounded("RemovePodSandbox", rpc, self.runtime.clone().remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod_id.into() })).await?;
        Ok(())
    }

    /// The run label of every sandbox the runtime lists (sgpc's runs only).
    pub async fn labelled_runs(&self) -> Result<Vec<String>, CriError> {
        let list = bounded("ListPodSandbox", self.timeouts.rpc, self.runtime.clone().list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })).await?;
        Ok(list.items.into_iter().filter_map(|s| s.labels.get(RUN_LABEL).cloned()).collect())
    }

    /// Every tag and digest reference of every image the runtime holds.
    pub async fn image_references(&self) -> Result<Vec<String>, CriError> {
        let list = bounded("ListImages", self.timeouts.rpc, self.images.clone().list_images(cri::ListImagesRequest { filter: None })).await?;
        Ok(list.images.into_iter().flat_map(|i| i.repo_tags.into_iter().chain(i.repo_digests)).collect())
    }

    /// The image's user as `ImageStatus` reports it, as kubelet's `getImageUser` reads it: the
    /// uid if set, else the user name, else root (uid 0).
    pub async fn image_user(&self, image: &str) -> Result<ImageUser, CriError> {
        let request = cri::ImageStatusRequest { image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }), verbose: false };
        let status = bounded("ImageStatus", self.timeouts.rpc, self.images.clone().image_status(request)).await?;
        Ok(match status.image {
            Some(cri::Image { uid: Some(uid), .. }) => ImageUser::Uid(uid.value),
            Some(image) if !image.username.is_empty() => ImageUser::Name(image.username),
            _ => ImageUser::Uid(0),
        })
    }

    /// Starts and removes one labelled host-network sandbox: proof that the runtime can start
    /// sandboxes at all before the catalogue relies on it.
    pub async fn preflight_sandbox(&self, run_id: &str, runtime_handler: &str, log_dir: &Path) -> Result<(), CriError> {
        std::fs::create_dir_all(log_dir).map_err(io_error(format!("creating {}", log_dir.display())))?;
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata { name: "preflight".into(), uid: format!("{run_id}-preflight"), namespace: "sgpc".into(), attempt: 0 }),
            log_directory: log_dir.to_string_lossy().into_owned(),
            labels: run_labels(run_id),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext { namespace_options: Some(namespace_options(None)), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let run = cri::RunPodSandboxRequest { config: Some(config), runtime_handler: runtime_handler.to_string() };
        let pod_id = bounded("RunPodSandbox", self.timeouts.pull, self.runtime.clone().run_pod_sandbox(run)).await?.pod_sandbox_id;
        self.remove_sandbox(&pod_id).await
    }

    /// The id of the image the runtime holds under a reference, if any.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, CriError> {
        let request = cri::ImageStatusRequest { image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }), verbose: false };
        Ok(bounded("ImageStatus", self.timeouts.rpc, self.images.clone().image_status(request)).await?.image.map(|i| i.id))
    }

    /// Whether the runtime has an image under this reference or image id.
    pub async fn has_image(&self, image: &str) -> Result<bool, CriError> {
        let request = cri::ImageStatusRequest { image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }), verbose: false };
        Ok(bounded("ImageStatus", self.timeouts.rpc, self.images.clone().image_status(request)).await?.image.is_some())
    }

    /// Removes an image; one that is already gone is no error.
    pub async fn remove_image(&self, image: &str) -> Result<(), CriError> {
        let request = cri::RemoveImageRequest { image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }) };
        bounded("RemoveImage", self.timeouts.rpc, self.images.clone().remove_image(request)).await?;
        Ok(())
    }

    /// The sandboxes a run created that still exist.
    pub async fn sandboxes_of_run(&self, run_id: &str) -> Result<Vec<String>, CriError> {
        let filter = cri::PodSandboxFilter {
            label_selector: run_labels(run_id),
            ..Default::default()
        };
        let list = bounded("ListPodSandbox", self.timeouts.rpc, self.runtime.clone().list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(filter) })).await?;
        Ok(list.items.into_iter().map(|s| s.id).collect())
    }

    /// The containers a run created that still exist.
    pub async fn containers_of_run(&self, run_id: &str) -> Result<Vec<String>, CriError> {
        let filter = cri::ContainerFilter {
            label_selector: run_labels(run_id),
            ..Default::default()
        };
        let list = bounded("ListContainers", self.timeouts.rpc, self.runtime.clone().list_containers(cri::ListContainersRequest { filter: Some(filter) })).await?;
        Ok(list.containers.into_iter().map(|c| c.id).collect())
    }

    /// Removes every sandbox a run left behind (after a cancelled or panicked case).
    pub async fn remove_run(&self, run_id: &str) -> Result<(), CriError> {
        for pod_id in self.sandboxes_of_run(run_id).await? {
            self.remove_sandbox(&pod_id).await?;
        }
        Ok(())
    }
}

/// A verbose `StatusResponse` as JSON, for the record: the `info` map's values are JSON in
/// containerd and CRI-O (its `config`, `golang`, CNI status), kept as text where they are not.
/// Bundles are shared: every credential in the runtime's config is redacted ([`redact`]).
fn status_evidence(status: &cri::StatusResponse) -> serde_json::Value {
    let info: serde_json::Map<String, serde_json::Value> = status
        .info
        .iter()
        .map(|(k, v)| {
            let mut value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.clone()));
            redact(&mut value);
            (k.clone(), value)
        })
        .collect();
    let conditions: Vec<serde_json::Value> = status
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .map(|c| serde_json::json!({"type": c.r#type, "status": c.status, "reason": c.reason, "message": c.message}))
        .collect();
    let handlers: Vec<serde_json::Value> = status
        .runtime_handlers
        .iter()
        .map(|h| serde_json::json!({"name": h.name, "features": h.features.map(|f| serde_json::json!({"recursive_read_only_mounts": f.recursive_read_only_mounts, "user_namespaces": f.user_namespaces}))}))
        .collect();
    serde_json::json!({
        "conditions": conditions,
        "runtime_handlers": handlers,
        "features": status.features.map(|f| serde_json::json!({"supplemental_groups_policy": f.supplemental_groups_policy})),
        "info": info,
    })
}

/// Keys whose values are credentials in containerd's registry `auth` (`username`, `password`,
/// `auth`, `identitytoken`) and CRI-O's, compared without case, `_` or `-`.
const SECRET_KEYS: &[&str] = &["auth", "username", "password", "identitytoken", "registrytoken", "token", "secret"];

/// Replaces every value under a credential key, at any depth, by `"(redacted)"`.
fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                let key: String = key.chars().filter(|c| *c != '_' && *c != '-').collect::<String>().to_ascii_lowercase();
                if SECRET_KEYS.contains(&key.as_str()) && !inner.is_null() {
                    *inner = serde_json::Value::String("(redacted)".into());
                } else {
                    redact(inner);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The first process's pid from a verbose `ContainerStatus` (`info["info"]` is JSON with `pid`).
fn verbose_pid(info: &HashMap<String, String>) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    value.get("pid")?.as_u64().and_then(|p| u32::try_from(p).ok()).filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_runtime_config_are_redacted() {
        let config = r#"{"registry": {"configs": {"r.example": {"auth": {"username": "u", "password": "p", "identitytoken": "t"}, "tls": {"insecure_skip_verify": true}}}}, "Identity_Token": "x", "list": [{"Password": "q"}], "sandboxImage": "pause"}"#;
        let status = cri::StatusResponse { info: [("config".to_string(), config.to_string())].into(), ..Default::default() };
        let evidence = status_evidence(&status).to_string();
        for secret in ["\"u\"", "\"p\"", "\"t\"", "\"x\"", "\"q\""] {
            assert!(!evidence.contains(secret), "{secret} is in {evidence}");
        }
        assert!(evidence.contains("insecure_skip_verify") && evidence.contains("\"pause\""), "the rest is kept: {evidence}");
    }

    #[test]
    fn cri_log_joins_partial_lines() {
        let log = "2024-01-01T00:00:00.000000000Z stdout P sgpc-\n2024-01-01T00:00:00.000000001Z stdout F end\n2024-01-01T00:00:00.1Z stderr F x y\n";
        assert_eq!(parse_cri_log(log), "sgpc-end\nx y\n");
        // The other stream between the parts of a partial line does not split it.
        let log = "t stdout P sgpc-escalate=sgpc-cap\nt stderr F sh: denied\nt stdout F setgid not-executed 126\n";
        assert_eq!(parse_cri_log(log), "sh: denied\nsgpc-escalate=sgpc-capsetgid not-executed 126\n");
        // Lines left open at the end stay lines of their own, in one order every time.
        let log = "t stdout P sgpc-end\nt stderr P err\n";
        assert_eq!(parse_cri_log(log), "err\nsgpc-end\n");
    }

    #[test]
    fn socket_path_forms() {
        assert_eq!(socket_path("unix:///run/c.sock"), PathBuf::from("/run/c.sock"));
        assert_eq!(socket_path("/run/c.sock"), PathBuf::from("/run/c.sock"));
    }

    fn scenario(security_context: &str) -> crate::scenario::Scenario {
        let recipe = crate::image::Recipe::parse(
            Path::new("r.yaml"),
            "name: r\nuser: \"alice:other\"\npasswd: [\"alice:x:1000:1000::/:/bin/sh\"]\ngroup: [\"other:x:7000:\", \"g:x:50000:alice\"]\n",
        )
        .unwrap();
        crate::scenario::Scenario::parse(Path::new("s.yaml"), &format!("name: s\nsummary: s\nimage: r\npod:\n  securityContext: {security_context}\n"), &[recipe]).unwrap()
    }

    /// A Merge request of a test scenario, as the session would make it.
    fn merge_request(scenario: &crate::scenario::Scenario) -> CaseRequest<'_> {
        CaseRequest {
            case: "s/merge".into(),
            scenario,
            policy: Policy::Merge,
            image_ref: "r".into(),
            image_digests: crate::image::Digests { manifest: String::new(), config: String::new() },
            case_dir: PathBuf::from("/nonexistent"),
            container: "probe".into(),
            init: false,
            run_id: "sgpc-test".into(),
            runtime_handler: String::new(),
            cgroup_parent: String::new(),
            userns_slot: Some(2),
        }
    }

    fn sent_user(scenario: &crate::scenario::Scenario, image_user: Option<&ImageUser>) -> (Option<i64>, String) {
        let req = merge_request(scenario);
        let sc = container_config(&req, Vec::new(), image_user).linux.unwrap().security_context.unwrap();
        (sc.run_as_user.map(|u| u.value), sc.run_as_username)
    }

    #[test]
    fn without_run_as_user_the_image_user_is_sent_as_kubelet_sends_it() {
        let s = scenario("{supplementalGroups: [60000]}");
        assert_eq!(sent_user(&s, Some(&ImageUser::Uid(1000))), (Some(1000), String::new()));
        assert_eq!(sent_user(&s, Some(&ImageUser::Name("alice".into()))), (None, "alice".to_string()));
        // No USER at all: kubelet's getImageUser answers uid 0.
        assert_eq!(sent_user(&s, Some(&ImageUser::Uid(0))), (Some(0), String::new()));
        // The model: `USER alice:other` reaches the runtime as `alice`; the gid is alice's own.
        assert_eq!((s.expect_merge.identity.uid, s.expect_merge.identity.gid), (1000, 1000));
        assert_eq!(s.expect_merge.identity.groups.iter().collect::<Vec<_>>(), vec![1000, 50000, 60000]);
    }

    /// kubelet's requests for a `hostUsers: false` Pod: one mapping of 65536 ids at a multiple of
    /// 65536, the same in the sandbox, the container and every mount; the Pod's own network.
    #[test]
    fn a_user_namespaced_pod_is_sent_as_kubelet_sends_it() {
        let recipe = crate::image::Recipe::parse(Path::new("r.yaml"), "name: r\n").unwrap();
        let text = |host_users: &str| format!("name: s\nsummary: s\nimage: r\npod:\n  {host_users}securityContext: {{runAsUser: 1000}}\n");
        let userns = crate::scenario::Scenario::parse(Path::new("s.yaml"), &text("hostUsers: false\n  "), std::slice::from_ref(&recipe)).unwrap();
        let host = crate::scenario::Scenario::parse(Path::new("s.yaml"), &text("hostUsers: true\n  "), &[recipe]).unwrap();
        let req = merge_request;
        let mapping = userns_mapping(&req(&userns)).unwrap();
        assert_eq!((mapping.container_id, mapping.length, mapping.host_id), (0, 65536, 2 * 65536));
        let sandbox = sandbox_config(&req(&userns)).linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        let mount = cri::Mount { uid_mappings: vec![mapping], gid_mappings: vec![mapping], ..Default::default() };
        let container = container_config(&req(&userns), vec![mount], None).linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!(sandbox, container, "containerd refuses a container whose user namespace differs from its sandbox's");
        let options = sandbox.userns_options.unwrap();
        assert_eq!((options.mode, options.uids, options.gids), (cri::NamespaceMode::Pod as i32, vec![mapping], vec![mapping]));
        assert_eq!(sandbox.network, cri::NamespaceMode::Pod as i32, "the API forbids the host network with hostUsers: false");
        let plain = sandbox_config(&req(&host)).linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!((plain.userns_options, plain.network), (None, cri::NamespaceMode::Node as i32));

        let host_view = (crate::identity::Identity::observed(mapping.host_id + 1000, mapping.host_id + 3000, [mapping.host_id + 3000, 7]), vec![mapping.host_id + 3000, 7]);
        let (identity, raw) = to_container_view(Some(&mapping), host_view);
        assert_eq!((identity.uid, identity.gid, raw), (1000, 3000, vec![3000, OVERFLOW_ID]), "an id outside the mapping shows as the overflow id");
        // A runtime that ignored the user namespace: the host ids equal the container ids asked for.
        let ignored = (crate::identity::Identity::observed(1000, 3000, [3000]), vec![3000]);
        let (identity, _) = to_container_view(Some(&mapping), ignored);
        assert_eq!((identity.uid, identity.gid), (OVERFLOW_ID, OVERFLOW_ID));
    }

    /// The slots stay clear of every id and range the host gives out, and of each other.
    #[test]
    fn user_namespace_slots_avoid_the_hosts_ids() {
        let etc = tempfile::tempdir().unwrap();
        let slots = UsernsSlots::free_of(etc.path(), "run");
        assert!(slots.nth(0).is_some_and(|slot| slot >= 1), "nothing given out: a slot above the first 65536 ids");
        std::fs::write(etc.path().join("passwd"), "root:x:0:0::/:/bin/sh\nbig:x:200000:5::/:/bin/sh\nodd:x:nonsense\nnfs:x:4294967294:1::/:/bin/sh\n").unwrap();
        std::fs::write(etc.path().join("subgid"), "alice:300000:65536\n# comment\n").unwrap();
        for run in ["a", "b", "c"] {
            let slots = UsernsSlots::free_of(etc.path(), run);
            let taken: Vec<u32> = (0..5000).filter_map(|n| slots.nth(n)).collect();
            assert_eq!(taken.len(), 5000, "an id far above the slots takes none of them");
            assert!(!taken.iter().any(|slot| [3, 4, 5].contains(slot)), "slots 3 (uid 200000), 4 and 5 (alice's ids) are taken");
            let mut distinct = taken.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), taken.len(), "cases of a session take their own slots");
        }
        std::fs::write(etc.path().join("subuid"), "k:65536:2147418112\n").unwrap();
        assert_eq!(UsernsSlots::free_of(etc.path(), "run").nth(0), None, "no room below 2^31");
    }

    #[test]
    fn a_run_as_user_wins_over_the_image_user() {
        let s = scenario("{runAsUser: 2000}");
        assert_eq!(sent_user(&s, None), (Some(2000), String::new()));
        assert_eq!(sent_user(&s, Some(&ImageUser::Name("alice".into()))), (Some(2000), String::new()));
    }

    #[test]
    fn verbose_pid_is_read_from_info_json() {
        let info = HashMap::from([("info".to_string(), r#"{"pid": 4242, "sandboxID": "x"}"#.to_string())]);
        assert_eq!(verbose_pid(&info), Some(4242));
        assert_eq!(verbose_pid(&HashMap::new()), None);
    }
}
