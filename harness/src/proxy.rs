//! A fault-injecting CRI proxy: listens on its own unix socket, forwards every gRPC call to a
//! real runtime, and, when asked, lies or breaks in the ways a faulty runtime could. It exists to
//! prove that sgpc notices (see `tests/mutants.rs`); the binary is `sgpc-cri-proxy`.
//!
//! Calls are forwarded as HTTP/2 streams, untouched, except the few a fault needs to read or
//! rewrite: those are decoded as CRI messages, edited and re-encoded.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_cri::v1 as cri;
use prost::Message;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A fault the proxy can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Fault {
    /// Advertise the feature but turn Strict into Merge on the way in.
    StrictToMerge,
    /// Stop advertising `features.supplemental_groups_policy` while still honouring Strict.
    HideFeature,
    /// Remove `ContainerStatus.user`.
    DropStatusUser,
    /// Report a primary gid one higher than the real one in `ContainerStatus.user`.
    WrongStatusGid,
    /// Report an extra group (55555) in `ContainerStatus.user`.
    ExtraStatusGroup,
    /// Reverse the group list in `ContainerStatus.user` (an order-only change).
    ReorderStatusGroups,
    /// Leave the primary gid out of `ContainerStatus.user`'s supplementary groups.
    DropPrimaryGid,
    /// Hold `RunPodSandbox` of the selected pods for `--delay-ms` before forwarding it.
    Slow,
    /// Close the client's connection when `CreateContainer` of a selected pod arrives.
    CloseConnection,
    /// SIGKILL the runtime process when `CreateContainer` of a selected pod arrives.
    KillRuntime,
    /// Run other bytes than the image asked for: `CreateContainer` of a selected pod gets
    /// another image the runtime pulled, as if someone had pushed over the tag.
    SwapImage,
    /// Refuse `CreateContainer` of a selected pod with an error text that carries terminal
    /// escapes redrawing the line as a pass.
    PaintTerminal,
    /// SIGKILL the shim of a selected pod's sandbox when its `CreateContainer` arrives: a shim
    /// killed so cannot remove its socket from the host's shim directory.
    KillShim,
    /// Clear `no_new_privs` in `CreateContainer`, as a runtime that ignored
    /// `allowPrivilegeEscalation: false` would.
    ClearNoNewPrivs,
    /// Clear `capabilities.drop_capabilities` in `CreateContainer`, as a runtime that ignored
    /// `drop: [ALL]` would.
    KeepCapabilities,
    /// Drop `userns_options` (and the mounts' id mappings) from `RunPodSandbox` and
    /// `CreateContainer`, as a runtime that ignored `hostUsers: false` would run the Pod.
    IgnoreUserNamespace,
    /// Give every later container of a sandbox the identity fields (`run_as_user`,
    /// `run_as_username`, `run_as_group`, `supplemental_groups`) of its first container's
    /// `CreateContainer`, as a runtime that took a Pod's user from its first container would:
    /// the second container runs as the first's user, with that user's groups.
    CopyFirstContainerIdentity,
}

/// [`Fault::CopyFirstContainerIdentity`]: remembers a sandbox's first container's security
/// context, and gives its identity fields to every later one.
fn copy_first_identity(first: &Mutex<HashMap<String, cri::LinuxContainerSecurityContext>>, pod_id: &str, sc: &mut cri::LinuxContainerSecurityContext) {
    let Ok(mut first) = first.lock() else { return };
    match first.get(pod_id) {
        None => {
            first.insert(pod_id.to_string(), sc.clone());
        }
        Some(original) => {
            tracing::info!("giving a container of sandbox {pod_id} its first container's identity (fault copy-first-container-identity)");
            sc.run_as_user.clone_from(&original.run_as_user);
            sc.run_as_username.clone_from(&original.run_as_username);
            sc.run_as_group.clone_from(&original.run_as_group);
            sc.supplemental_groups.clone_from(&original.supplemental_groups);
        }
    }
}

/// A sandbox config as a runtime that ignored `hostUsers: false` would read it.
fn without_user_namespace(config: &mut cri::PodSandboxConfig) {
    let options = config.linux.as_mut().and_then(|l| l.security_context.as_mut()).and_then(|sc| sc.namespace_options.as_mut());
    options.into_iter().for_each(|n| n.userns_options = None);
}

/// The error text [`Fault::PaintTerminal`] sends: erase the line, draw a pass, hide the rest.
pub const PAINTED_ERROR: &str = "\x1b[1A\x1b[2K\r            PASS [   0.500s] (1/1) painted-by-the-runtime\x1b[8m";

/// The extra group [`Fault::ExtraStatusGroup`] reports.
pub const EXTRA_GROUP: i64 = 55555;

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: PathBuf,
    pub upstream: PathBuf,
    pub faults: Vec<Fault>,
    /// Sandbox names (`<scenario>-<policy>`) the pod-scoped faults apply to; all when `None`.
    pub pods: Option<regex::Regex>,
    pub delay: Duration,
    pub runtime_pid: Option<u32>,
    /// Sandboxes of a peer tool (critest) made part of the run; not a fault.
    pub adopt: Option<Adoption>,
}

/// What the proxy changes in the sandbox config of every `RunPodSandbox` and `CreateContainer`
/// of a peer tool so that its sandboxes and containers are
/// the run's: the run's labels and cgroup parent (removed with the run, never in the host's
/// runtime paths) and the host network (the runtimes sgpc starts have no pod network). No
/// field that decides the process identity is touched.
#[derive(Debug, Clone)]
pub struct Adoption {
    pub labels: HashMap<String, String>,
    pub cgroup_parent: String,
}

impl Adoption {
    fn apply(&self, config: &mut cri::PodSandboxConfig) {
        config.labels.extend(self.labels.clone());
        let linux = config.linux.get_or_insert_default();
        linux.cgroup_parent.clone_from(&self.cgroup_parent);
        let namespaces = linux.security_context.get_or_insert_default().namespace_options.get_or_insert_default();
        namespaces.network = cri::NamespaceMode::Node as i32;
    }
}

struct State {
    config: ProxyConfig,
    /// sandbox id -> sandbox name, learnt from RunPodSandbox.
    pods: Mutex<HashMap<String, String>>,
    /// container id -> sandbox id, learnt from CreateContainer.
    containers: Mutex<HashMap<String, String>>,
    /// Images pulled through the proxy, in order, learnt from PullImage.
    images: Mutex<Vec<String>>,
    /// sandbox id -> the security context of its first CreateContainer.
    first_containers: Mutex<HashMap<String, cri::LinuxContainerSecurityContext>>,
}

impl State {
    fn has(&self, fault: Fault) -> bool {
        self.config.faults.contains(&fault)
    }

    fn pod_selected(&self, name: &str) -> bool {
        self.config.pods.as_ref().is_none_or(|re| re.is_match(name))
    }

    fn sandbox_selected(&self, pod_id: &str) -> bool {
        let name = self.pods.lock().ok().and_then(|p| p.get(pod_id).cloned()).unwrap_or_default();
        self.pod_selected(&name)
    }

    fn container_selected(&self, container_id: &str) -> bool {
        let pod_id = self.containers.lock().ok().and_then(|c| c.get(container_id).cloned()).unwrap_or_default();
        self.sandbox_selected(&pod_id)
    }
}

/// Serves until the listener fails; each client connection gets its own upstream connection.
pub async fn serve(config: ProxyConfig) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(&config.listen);
    let listener = UnixListener::bind(&config.listen).with_context(|| format!("listening on {}", config.listen.display()))?;
    serve_on(listener, config).await
}

/// [`serve`] on a listener already bound to `config.listen`, so that a client may connect as
/// soon as this is called.
pub async fn serve_on(listener: UnixListener, config: ProxyConfig) -> anyhow::Result<()> {
    let state = Arc::new(State { config, pods: Mutex::default(), containers: Mutex::default(), images: Mutex::default(), first_containers: Mutex::default() });
    loop {
        let (stream, _) = listener.accept().await.context("accepting a client")?;
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, state).await {
                tracing::warn!("proxy connection ended: {e:#}");
            }
        });
    }
}

async fn connection(client: UnixStream, state: Arc<State>) -> anyhow::Result<()> {
    let upstream = UnixStream::connect(&state.config.upstream).await.with_context(|| format!("connecting to {}", state.config.upstream.display()))?;
    let (sender, upstream_conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(upstream)).await?;
    tokio::spawn(upstream_conn);
    let close = Arc::new(Notify::new());
    let service = {
        let close = close.clone();
        hyper::service::service_fn(move |req| forward(req, sender.clone(), state.clone(), close.clone()))
    };
    let serving = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(client), service);
    tokio::select! {
        result = serving => result.context("serving a client")?,
        // Dropping the connection future closes the client's socket mid-call.
        _ = close.notified() => tracing::info!("closing the client connection (fault close-connection)"),
    }
    Ok(())
}

/// The processes of containerd shims serving `sandbox_id` (`containerd-shim-* ... -id <id>`).
fn shims_of(sandbox_id: &str) -> Vec<u32> {
    crate::provision::pids()
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_shim = args.first().is_some_and(|a| a.windows(15).any(|w| w == b"containerd-shim"));
            is_shim && args.windows(2).any(|w| w[0] == b"-id" && w[1] == sandbox_id.as_bytes())
        })
        .collect()
}

/// The gRPC spec's percent-encoding of `grpc-message`: every byte outside printable ASCII, and
/// `%`, as `%XX` (a raw control byte is no valid header value).
fn percent_encode(message: &str) -> String {
    message.bytes().map(|b| if (0x20..0x7f).contains(&b) && b != b'%' { char::from(b).to_string() } else { format!("%{b:02X}") }).collect()
}

fn grpc_error(code: u32, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).map_err(|never: Infallible| match never {}).boxed());
    let headers = response.headers_mut();
    headers.insert("content-type", hyper::header::HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", code.into());
    if let Ok(value) = percent_encode(message).parse() {
        headers.insert("grpc-message", value);
    }
    response
}

/// Unavailable: what a client sees when the runtime is gone.
const UNAVAILABLE: u32 = 14;
/// Unknown: what a runtime's own error comes back as.
const UNKNOWN: u32 = 2;

async fn forward(req: Request<Incoming>, sender: SendRequest<Body>, state: Arc<State>, close: Arc<Notify>) -> Result<Response<Body>, Infallible> {
    let method = req.uri().path().rsplit('/').next().unwrap_or_default().to_string();
    let req = req.map(|b| b.map_err(Into::into).boxed());
    let result = match method.as_str() {
        "RunPodSandbox" => run_pod_sandbox(req, sender, &state).await,
        "CreateContainer" => create_container(req, sender, &state, &close).await,
        "Status" => unary(req, sender, |_: &mut cri::StatusRequest| {}, |resp: &mut cri::StatusResponse| {
            if state.has(Fault::HideFeature) {
                if let Some(features) = resp.features.as_mut() {
                    features.supplemental_groups_policy = false;
                }
            }
        })
        .await
        .map(|(r, _, _)| r),
        "ContainerStatus" => container_status(req, sender, &state).await,
        "PullImage" => unary(req, sender, |r: &mut cri::PullImageRequest| {
            if let (Some(image), Ok(mut images)) = (r.image.as_ref(), state.images.lock()) {
                images.push(image.image.clone());
            }
        }, |_: &mut cri::PullImageResponse| {})
        .await
        .map(|(r, _, _)| r),
        _ => pass_through(req, sender).await,
    };
    Ok(result.unwrap_or_else(|e| grpc_error(UNAVAILABLE, &format!("sgpc-cri-proxy: {e:#}"))))
}

async fn pass_through(req: Request<Body>, mut sender: SendRequest<Body>) -> anyhow::Result<Response<Body>> {
    sender.ready().await?;
    let response = sender.send_request(req).await?;
    Ok(response.map(|b| b.map_err(Into::into).boxed()))
}

async fn read_body(body: Body) -> anyhow::Result<Bytes> {
    Ok(body.collect().await.map_err(|e| anyhow::anyhow!("reading a request body: {e}"))?.to_bytes())
}

fn decode<M: Message + Default>(frame: &[u8]) -> anyhow::Result<M> {
    anyhow::ensure!(frame.len() >= 5 && frame[0] == 0, "expected one uncompressed gRPC message");
    let mut body = &frame[1..];
    let len = body.get_u32() as usize;
    anyhow::ensure!(body.len() == len, "gRPC frame length {len} does not match the body ({} bytes)", body.len());
    Ok(M::decode(body)?)
}

fn encode<M: Message>(message: &M) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.encoded_len());
    out.put_u8(0);
    out.put_u32(message.encoded_len() as u32);
    message.encode(&mut out).expect("BytesMut grows as needed");
    out.freeze()
}

/// Forwards a unary call, letting `edit_req` and `edit_resp` rewrite the messages. Returns the
/// response and both (edited) messages; a gRPC error from the runtime passes through unedited.
async fn unary<Req, Resp>(
    req: Request<Body>,
    mut sender: SendRequest<Body>,
    edit_req: impl FnOnce(&mut Req),
    edit_resp: impl FnOnce(&mut Resp),
) -> anyhow::Result<(Response<Body>, Req, Option<Resp>)>
where
    Req: Message + Default,
    Resp: Message + Default,
{
    let (mut parts, body) = req.into_parts();
    let mut message: Req = decode(&read_body(body).await?)?;
    edit_req(&mut message);
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    let body = Full::new(encode(&message)).map_err(|never: Infallible| match never {}).boxed();
    sender.ready().await?;
    let response = sender.send_request(Request::from_parts(parts, body)).await?;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    if data.is_empty() {
        let body = Full::new(data).map_err(|never: Infallible| match never {}).boxed();
        return Ok((Response::from_parts(parts, body), message, None));
    }
    let mut reply: Resp = decode(&data)?;
    edit_resp(&mut reply);
    let mut frames = vec![Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(encode(&reply)))];
    if let Some(trailers) = trailers {
        frames.push(Ok(Frame::trailers(trailers)));
    }
    let body = StreamBody::new(futures::stream::iter(frames)).boxed();
    Ok((Response::from_parts(parts, body), message, Some(reply)))
}

fn merge_instead_of_strict(policy: &mut i32) {
    if *policy == cri::SupplementalGroupsPolicy::Strict as i32 {
        *policy = cri::SupplementalGroupsPolicy::Merge as i32;
    }
}

async fn run_pod_sandbox(req: Request<Body>, sender: SendRequest<Body>, state: &State) -> anyhow::Result<Response<Body>> {
    let mut name = String::new();
    let (response, _, reply) = unary(
        req,
        sender,
        |r: &mut cri::RunPodSandboxRequest| {
            let config = r.config.get_or_insert_default();
            name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
            if let Some(adoption) = &state.config.adopt {
                adoption.apply(config);
            }
            if state.has(Fault::StrictToMerge) {
                if let Some(sc) = config.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
                    merge_instead_of_strict(&mut sc.supplemental_groups_policy);
                }
            }
            if state.has(Fault::IgnoreUserNamespace) {
                without_user_namespace(config);
            }
        },
        |_: &mut cri::RunPodSandboxResponse| {},
    )
    .await?;
    if let Some(reply) = reply {
        state.pods.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(reply.pod_sandbox_id, name.clone());
    }
    if state.has(Fault::Slow) && state.pod_selected(&name) {
        tracing::info!("holding RunPodSandbox of {name} for {:?} (fault slow)", state.config.delay);
        tokio::time::sleep(state.config.delay).await;
    }
    Ok(response)
}

async fn create_container(req: Request<Body>, sender: SendRequest<Body>, state: &State, close: &Notify) -> anyhow::Result<Response<Body>> {
    let (parts, body) = req.into_parts();
    let bytes = read_body(body).await?;
    let peek: cri::CreateContainerRequest = decode(&bytes)?;
    if state.sandbox_selected(&peek.pod_sandbox_id) {
        if state.has(Fault::CloseConnection) {
            close.notify_one();
            std::future::pending::<()>().await;
        }
        if state.has(Fault::PaintTerminal) {
            return Ok(grpc_error(UNKNOWN, PAINTED_ERROR));
        }
        if state.has(Fault::KillShim) {
            for pid in shims_of(&peek.pod_sandbox_id) {
                tracing::info!("killing the shim (pid {pid}) of sandbox {} (fault kill-shim)", peek.pod_sandbox_id);
                // SAFETY: kill(2) on a pid read from /proc.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        if let (true, Some(pid)) = (state.has(Fault::KillRuntime), state.config.runtime_pid) {
            tracing::info!("killing the runtime (pid {pid}) (fault kill-runtime)");
            // SAFETY: kill(2) on the pid the harness handed us.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    // Rebuild the request from the bytes already read, then forward it with the edit.
    let req = Request::from_parts(parts, Full::new(bytes).map_err(|never: Infallible| match never {}).boxed());
    let pod_id = peek.pod_sandbox_id.clone();
    let swap = state.has(Fault::SwapImage) && state.sandbox_selected(&pod_id);
    let (response, _, reply) = unary(
        req,
        sender,
        |r: &mut cri::CreateContainerRequest| {
            if let Some(image) = r.config.as_mut().and_then(|c| c.image.as_mut()).filter(|_| swap) {
                let pulled = state.images.lock().map(|i| i.clone()).unwrap_or_default();
                // Another image with a shell if there is one, so that the probe still runs.
                let others: Vec<String> = pulled.into_iter().filter(|i| *i != image.image).collect();
                if let Some(other) = others.iter().find(|i| !i.contains("/pause@")).or(others.first()).cloned() {
                    tracing::info!("running {other} instead of {} (fault swap-image)", image.image);
                    image.user_specified_image = other.clone();
                    image.image = other;
                }
            }
            // containerd takes a container's cgroup from the sandbox config sent with it
            // (internal/cri/server/container_create.go), not from the sandbox it runs in.
            if let (Some(adoption), Some(sandbox)) = (&state.config.adopt, r.sandbox_config.as_mut()) {
                adoption.apply(sandbox);
            }
            if let Some(sc) = r.config.as_mut().and_then(|c| c.linux.as_mut()).and_then(|l| l.security_context.as_mut()) {
                if state.has(Fault::ClearNoNewPrivs) {
                    sc.no_new_privs = false;
                }
                if state.has(Fault::KeepCapabilities) {
                    sc.capabilities = None;
                }
                if state.has(Fault::IgnoreUserNamespace) {
                    sc.namespace_options.iter_mut().for_each(|n| n.userns_options = None);
                }
                if state.has(Fault::CopyFirstContainerIdentity) && state.sandbox_selected(&pod_id) {
                    copy_first_identity(&state.first_containers, &pod_id, sc);
                }
            }
            if state.has(Fault::IgnoreUserNamespace) {
                r.sandbox_config.iter_mut().for_each(without_user_namespace);
                for mount in r.config.iter_mut().flat_map(|c| c.mounts.iter_mut()) {
                    (mount.uid_mappings, mount.gid_mappings) = (Vec::new(), Vec::new());
                }
            }
            if state.has(Fault::StrictToMerge) {
                if let Some(sc) = r.config.as_mut().and_then(|c| c.linux.as_mut()).and_then(|l| l.security_context.as_mut()) {
                    merge_instead_of_strict(&mut sc.supplemental_groups_policy);
                }
                if let Some(sc) = r.sandbox_config.as_mut().and_then(|c| c.linux.as_mut()).and_then(|l| l.security_context.as_mut()) {
                    merge_instead_of_strict(&mut sc.supplemental_groups_policy);
                }
            }
        },
        |_: &mut cri::CreateContainerResponse| {},
    )
    .await?;
    if let Some(reply) = reply {
        state.containers.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(reply.container_id, pod_id);
    }
    Ok(response)
}

async fn container_status(req: Request<Body>, sender: SendRequest<Body>, state: &State) -> anyhow::Result<Response<Body>> {
    let (parts, body) = req.into_parts();
    let bytes = read_body(body).await?;
    let peek: cri::ContainerStatusRequest = decode(&bytes)?;
    let selected = state.container_selected(&peek.container_id);
    let req = Request::from_parts(parts, Full::new(bytes).map_err(|never: Infallible| match never {}).boxed());
    let (response, _, _) = unary(req, sender, |_: &mut cri::ContainerStatusRequest| {}, |resp: &mut cri::ContainerStatusResponse| {
        let Some(status) = resp.status.as_mut().filter(|_| selected) else { return };
        if state.has(Fault::DropStatusUser) {
            status.user = None;
        }
        if let Some(user) = status.user.as_mut().and_then(|u| u.linux.as_mut()) {
            if state.has(Fault::WrongStatusGid) {
                user.gid += 1;
            }
            if state.has(Fault::ExtraStatusGroup) {
                user.supplemental_groups.push(EXTRA_GROUP);
            }
            if state.has(Fault::ReorderStatusGroups) {
                user.supplemental_groups.reverse();
            }
            if state.has(Fault::DropPrimaryGid) {
                let gid = user.gid;
                user.supplemental_groups.retain(|g| *g != gid);
            }
        }
    })
    .await?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adopted_sandbox_is_the_runs_and_keeps_its_identity() {
        let security_context = cri::LinuxSandboxSecurityContext {
            run_as_user: Some(cri::Int64Value { value: 1000 }),
            supplemental_groups: vec![1234],
            supplemental_groups_policy: cri::SupplementalGroupsPolicy::Strict as i32,
            namespace_options: Some(cri::NamespaceOption { network: cri::NamespaceMode::Pod as i32, pid: cri::NamespaceMode::Container as i32, ..Default::default() }),
            ..Default::default()
        };
        let mut config = cri::PodSandboxConfig {
            labels: HashMap::from([("theirs".to_string(), "kept".to_string())]),
            linux: Some(cri::LinuxPodSandboxConfig { security_context: Some(security_context.clone()), ..Default::default() }),
            ..Default::default()
        };
        let adoption = Adoption { labels: HashMap::from([("sgpc.io/run".to_string(), "sgpc-abc".to_string())]), cgroup_parent: "/sgpc-abc".into() };
        adoption.apply(&mut config);
        assert_eq!(config.labels.len(), 2);
        let linux = config.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/sgpc-abc");
        let after = linux.security_context.unwrap();
        assert_eq!(after.namespace_options.as_ref().map(|n| (n.network, n.pid)), Some((cri::NamespaceMode::Node as i32, cri::NamespaceMode::Container as i32)));
        let identity = |s: &cri::LinuxSandboxSecurityContext| (s.run_as_user, s.run_as_group, s.supplemental_groups.clone(), s.supplemental_groups_policy);
        assert_eq!(identity(&after), identity(&security_context), "no identity field changes");
    }
}
