//! A one-node Kubernetes cluster on a runtime sgpc started, as kubernetes' `test/e2e_node`
//! runs one: etcd, kube-apiserver and kubelet, nothing else (Pods carry `spec.nodeName`, so no
//! scheduler; Pods are deleted one by one, so no namespace controller).
//!
//! Everything listens on 127.0.0.1 only and lives in the node's directory inside the run
//! directory. The API server authenticates one bearer token (a `system:masters` user, as
//! e2e_node does) and serves a certificate it generates into that directory, which sgpc and
//! kubelet then trust: a process that grabbed the port first cannot answer in its place.
//!
//! Two things kubelet does to the host are undone or fenced off:
//! - at start it writes six kernel tunables (`pkg/kubelet/cm/container_manager_linux.go`,
//!   `setupKernelTunables`): sgpc writes them down first in its state directory and writes
//!   them back when the last node stops (or at `sgpc clean`, after a SIGKILL);
//! - it writes to fixed host paths a node's own kubelet uses (`/var/log/containers`,
//!   `/var/lib/kubelet/device-plugins`): kubelet runs in a mount namespace of its own where
//!   those directories are private tmpfs mounts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use thiserror::Error;
use tokio::process::{Child, Command};

use super::gomodule::Version;
use super::{free_port, log_tail, spawn_daemon, stop_child};

/// The binaries a node runs.
#[derive(Debug, Clone)]
pub struct NodeBinaries {
    pub version: Version,
    pub kubelet: PathBuf,
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
}

impl NodeBinaries {
    /// The binaries of `version` in `kubernetes_dir` and etcd in `etcd_dir` (the Go build cache).
    pub fn in_dirs(version: Version, kubernetes_dir: &Path, etcd_dir: &Path) -> NodeBinaries {
        NodeBinaries { version, kubelet: kubernetes_dir.join("kubelet"), kube_apiserver: kubernetes_dir.join("kube-apiserver"), etcd: etcd_dir.join("etcd") }
    }
}

/// What a node needs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub binaries: NodeBinaries,
    /// The node's private directory (inside the run directory).
    pub dir: PathBuf,
    /// The CRI endpoint of the runtime under test.
    pub runtime_endpoint: String,
    /// The runtime's CNI configuration directory, where the node's network config goes.
    pub cni_dir: PathBuf,
    pub node_name: String,
    /// Whether the runtime advertises `supplemental_groups_policy`: the node must then report
    /// `status.features.supplementalGroupsPolicy: true` before the first Strict Pod (upstream's
    /// own tests raced on it: kubernetes#137859, #137869).
    pub expect_feature: bool,
    /// How long each component may take to become ready.
    pub timeout: Duration,
}

/// One component of the node, for errors and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Etcd,
    KubeApiserver,
    Kubelet,
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::Kubelet => "kubelet",
        })
    }
}

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("preparing the node in {}", path.display())]
    Prepare {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting {component} ({})", binary.display())]
    Spawn {
        component: Component,
        binary: PathBuf,
        #[source]
        source: anyhow::Error,
    },
    /// A component did not get where it must within the time allowed; `log` is its last lines.
    #[error("{component}: {step}; the last lines of its log:\n{log}")]
    NotReady { component: Component, step: String, log: String },
    #[error("recording {what} for `sgpc clean`")]
    Record {
        what: String,
        #[source]
        source: anyhow::Error,
    },
    #[error("the run directory {} lies under {hidden}, which kubelet's mount namespace hides; choose another --work-root", dir.display())]
    HiddenWorkRoot { dir: PathBuf, hidden: &'static str },
}

/// A kernel tunable's value before kubelet changed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

/// The name a run records its kubelet under.
pub const KUBELET: &str = "kubelet";

/// The tunables kubelet sets at start (`setupKernelTunables`).
pub const KUBELET_SYSCTLS: &[&str] = &["vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops", "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes"];

fn sysctl_path(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

/// The current values of kubelet's tunables.
pub fn read_sysctls() -> Vec<Sysctl> {
    KUBELET_SYSCTLS.iter().filter_map(|name| Some(Sysctl { name: name.to_string(), value: std::fs::read_to_string(sysctl_path(name)).ok()?.trim().to_string() })).collect()
}

/// Writes recorded values back; returns the names that could not be written.
pub fn restore_sysctls(values: &[Sysctl]) -> Vec<String> {
    values
        .iter()
        .filter(|s| restorable(s))
        .filter(|s| std::fs::write(sysctl_path(&s.name), &s.value).is_err())
        .map(|s| s.name.clone())
        .collect()
}

/// A record is input too: only kubelet's own tunables, and only plain numbers, are written.
fn restorable(sysctl: &Sysctl) -> bool {
    KUBELET_SYSCTLS.contains(&sysctl.name.as_str()) && !sysctl.value.is_empty() && sysctl.value.len() <= 20 && sysctl.value.bytes().all(|b| b.is_ascii_digit())
}

/// Hears what a node starts as it starts it: a daemon's name and pid, or (named `sysctls`)
/// the kernel tunables just before kubelet changes them.
/// An error stops the start before the next daemon (kubelet changes nothing unrecorded).
pub type Recorder<'a> = dyn FnMut(&str, Option<u32>, &[Sysctl]) -> anyhow::Result<()> + 'a;

/// A running node.
pub struct LiveNode {
    pub kubeconfig: PathBuf,
    pub node_name: String,
    pub version: Version,
    /// How long the node took from the first process to Ready (and features reported).
    pub startup: Duration,
    etcd: Child,
    apiserver: Option<Child>,
    kubelet: Option<Child>,
}

/// Ports of one node, all on 127.0.0.1.
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
    kubelet: u16,
}

impl LiveNode {
    /// Starts etcd, kube-apiserver and kubelet; `record` hears each pid as soon as it exists,
    /// and the tunables just before kubelet changes them. On failure, whatever started is stopped.
    pub async fn start(opts: &NodeOptions, record: &mut Recorder<'_>) -> Result<LiveNode, NodeError> {
        let started = Instant::now();
        for hidden in hidden_from_kubelet() {
            if opts.dir.starts_with(hidden) {
                return Err(NodeError::HiddenWorkRoot { dir: opts.dir.clone(), hidden });
            }
        }
        let prepare = |path: &Path| {
            let path = path.to_path_buf();
            move |source| NodeError::Prepare { path, source }
        };
        for sub in ["etcd", "pki", "kubelet", "pod-logs", "plugins"] {
            std::fs::create_dir_all(opts.dir.join(sub)).map_err(prepare(&opts.dir))?;
        }
        super::write_loopback_cni(&opts.cni_dir).map_err(prepare(&opts.cni_dir))?;
        let port = || free_port().map_err(|e| NodeError::Prepare { path: opts.dir.clone(), source: std::io::Error::other(e) });
        let ports = Ports { etcd_client: port()?, etcd_peer: port()?, apiserver: port()?, kubelet: port()? };
        let token = random_token().map_err(prepare(&opts.dir))?;
        write_private(&opts.dir.join("tokens.csv"), &format!("{token},sgpc,sgpc,\"system:masters\"\n")).map_err(prepare(&opts.dir))?;
        let (signing, verifying) = service_account_key().map_err(prepare(&opts.dir))?;
        write_private(&opts.dir.join("pki/service-account.key"), &signing).map_err(prepare(&opts.dir))?;
        write_private(&opts.dir.join("pki/service-account.pub"), &verifying).map_err(prepare(&opts.dir))?;

        let etcd = spawn(Component::Etcd, etcd_command(opts, &ports), &opts.dir.join("etcd.log"), &opts.binaries.etcd)?;
        let recorded = record("etcd", etcd.id(), &[]);
        let mut node = LiveNode { kubeconfig: opts.dir.join("kubeconfig"), node_name: opts.node_name.clone(), version: opts.binaries.version.clone(), startup: Duration::ZERO, etcd, apiserver: None, kubelet: None };
        let started_rest = match recorded {
            Ok(()) => node.start_rest(opts, &ports, &token, record).await,
            Err(source) => Err(NodeError::Record { what: "etcd".into(), source }),
        };
        match started_rest {
            Ok(()) => {
                node.startup = started.elapsed();
                Ok(node)
            }
            Err(e) => {
                node.stop().await;
                Err(e)
            }
        }
    }

    async fn start_rest(&mut self, opts: &NodeOptions, ports: &Ports, token: &str, record: &mut Recorder<'_>) -> Result<(), NodeError> {
        let dir = &opts.dir;
        wait_for(Component::Etcd, "etcd to accept connections", opts.timeout, &dir.join("etcd.log"), &mut self.etcd, || async { tokio::net::TcpStream::connect(("127.0.0.1", ports.etcd_client)).await.is_ok() }).await?;

        let apiserver = self.apiserver.insert(spawn(Component::KubeApiserver, apiserver_command(opts, ports), &dir.join("kube-apiserver.log"), &opts.binaries.kube_apiserver)?);
        record("kube-apiserver", apiserver.id(), &[]).map_err(|source| NodeError::Record { what: "kube-apiserver".into(), source })?;
        // The API server writes its self-signed certificate before it listens.
        let cert = dir.join("pki/apiserver.crt");
        let log = dir.join("kube-apiserver.log");
        wait_for(Component::KubeApiserver, "kube-apiserver to write its serving certificate", opts.timeout, &log, apiserver, || async { cert.is_file() }).await?;
        write_private(&self.kubeconfig, &kubeconfig(ports.apiserver, &cert, token)).map_err(|source| NodeError::Prepare { path: self.kubeconfig.clone(), source })?;
        let client = match client(&self.kubeconfig).await {
            Ok(client) => client,
            Err(step) => return Err(NodeError::NotReady { component: Component::KubeApiserver, step, log: log_tail(&log) }),
        };
        let ready = || async { client.apiserver_version().await.is_ok() };
        wait_for(Component::KubeApiserver, "kube-apiserver to answer /version with its certificate", opts.timeout, &log, apiserver, ready).await?;

        write_private(&dir.join("kubelet.yaml"), &kubelet_config(opts, ports.kubelet)).map_err(|source| NodeError::Prepare { path: dir.clone(), source })?;
        record("sysctls", None, &read_sysctls()).map_err(|source| NodeError::Record { what: "the kernel tunables kubelet will change".into(), source })?;
        let kubelet_log = dir.join("kubelet.log");
        let kubelet = self.kubelet.insert(spawn(Component::Kubelet, kubelet_command(opts, &self.kubeconfig), &kubelet_log, &opts.binaries.kubelet)?);
        record(KUBELET, kubelet.id(), &[]).map_err(|source| NodeError::Record { what: "kubelet".into(), source })?;
        let nodes: kube::Api<Node> = kube::Api::all(client);
        let name = opts.node_name.as_str();
        let step = if opts.expect_feature { "the Node to be Ready and report status.features.supplementalGroupsPolicy: true" } else { "the Node to be Ready" };
        let ready = || async {
            let Ok(node) = nodes.get(name).await else { return false };
            node_ready(&node) && (!opts.expect_feature || crate::driver::kube::node_feature(Some(&node)))
        };
        wait_for(Component::Kubelet, step, opts.timeout, &kubelet_log, kubelet, ready).await
    }

    /// Stops kubelet, kube-apiserver and etcd, in that order. Their directories go with the
    /// run directory; the kernel tunables are written back by the run once no other node runs
    /// (`StateDir::release_sysctls`).
    pub async fn stop(mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, child) in [("kubelet", self.kubelet.take()), ("kube-apiserver", self.apiserver.take()), ("etcd", Some(self.etcd))] {
            if let Some(mut child) = child {
                if let Err(e) = stop_child(&mut child).await {
                    problems.push(format!("stopping {name}: {e:#}"));
                }
            }
        }
        problems
    }
}



/// The node's name. kubelet refuses a loopback `--node-ip`; named `localhost`, the node has
/// the address `Hostname: localhost`, which the API server is told to prefer, so it reaches
/// kubelet on 127.0.0.1 and never on the host's own address.
pub const NODE_NAME: &str = "localhost";

/// Directories kubelet writes to whatever its configuration says, hidden from it by tmpfs
/// mounts in its own mount namespace: `/var/log`, and `/var/lib/kubelet` or, where that does not
/// exist (a tmpfs needs a directory to cover), all of `/var/lib`.
fn hidden_from_kubelet() -> [&'static str; 2] {
    ["/var/log", if Path::new("/var/lib/kubelet").is_dir() { "/var/lib/kubelet" } else { "/var/lib" }]
}

fn spawn(component: Component, command: Command, log: &Path, binary: &Path) -> Result<Child, NodeError> {
    if !binary.is_file() {
        return Err(NodeError::Spawn { component, binary: binary.to_path_buf(), source: anyhow::anyhow!("no such file") });
    }
    spawn_daemon(command, log).map_err(|source| NodeError::Spawn { component, binary: binary.to_path_buf(), source })
}

/// Polls `check` until it holds; a component that exits or a deadline that passes is an error
/// naming the step, with the component's log.
async fn wait_for<F, Fut>(component: Component, step: &str, timeout: Duration, log: &Path, child: &mut Child, mut check: F) -> Result<(), NodeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NodeError::NotReady { component, step: format!("exited ({status}) while sgpc waited for {step}"), log: log_tail(log) });
        }
        if check().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NodeError::NotReady { component, step: format!("timed out after {timeout:?} waiting for {step}"), log: log_tail(log) });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn node_ready(node: &Node) -> bool {
    node.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A client for the node's API server, trusting only the certificate it generated.
pub async fn client(kubeconfig: &Path) -> Result<kube::Client, String> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| format!("reading {}: {e}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await.map_err(|e| format!("loading {}: {e}", kubeconfig.display()))?;
    kube::Client::try_from(config).map_err(|e| format!("creating the API client: {e}"))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())
}

fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| std::io::Error::other("reading random bytes"))?;
    Ok(hex::encode(bytes))
}

/// A fresh ECDSA P-256 key pair for service-account tokens, as PEM: the private key (PKCS#8,
/// the signing key) and its public key (PKIX, the verification key).
fn service_account_key() -> std::io::Result<(String, String)> {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    // SubjectPublicKeyInfo of an uncompressed P-256 point, up to the point itself (RFC 5480).
    const P256_SPKI_PREFIX: [u8; 26] = [0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00];
    let failed = |_| std::io::Error::other("generating an ECDSA key");
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).map_err(failed)?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).map_err(|_| std::io::Error::other("reading the ECDSA key back"))?;
    let public: Vec<u8> = P256_SPKI_PREFIX.iter().chain(pair.public_key().as_ref()).copied().collect();
    Ok((pem("PRIVATE KEY", pkcs8.as_ref()), pem("PUBLIC KEY", &public)))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn kubeconfig(port: u16, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sgpc\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {ca}\nusers:\n- name: sgpc\n  user:\n    token: {token}\ncontexts:\n- name: sgpc\n  context:\n    cluster: sgpc\n    user: sgpc\ncurrent-context: sgpc\n",
        ca = ca.display()
    )
}

fn etcd_command(opts: &NodeOptions, ports: &Ports) -> Command {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    let mut command = Command::new(&opts.binaries.etcd);
    command
        .arg("--name=sgpc")
        .arg(format!("--data-dir={}", opts.dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=sgpc={peer}"))
        .arg("--log-level=warn")
        .arg("--unsafe-no-fsync");
    command
}

/// The API server as `test/e2e_node/services/apiserver.go` runs it: no ServiceAccount or
/// TaintNodesByCondition admission, one token, privileged containers allowed.
fn apiserver_command(opts: &NodeOptions, ports: &Ports) -> Command {
    let dir = &opts.dir;
    let (key, public) = (dir.join("pki/service-account.key"), dir.join("pki/service-account.pub"));
    let mut command = Command::new(&opts.binaries.kube_apiserver);
    command
        .arg(format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg(format!("--secure-port={}", ports.apiserver))
        .arg(format!("--cert-dir={}", dir.join("pki").display()))
        .arg(format!("--token-auth-file={}", dir.join("tokens.csv").display()))
        .arg("--anonymous-auth=false")
        .arg("--authorization-mode=AlwaysAllow")
        .arg("--allow-privileged=true")
        .arg("--disable-admission-plugins=ServiceAccount,TaintNodesByCondition")
        .arg(format!("--service-account-key-file={}", public.display()))
        .arg(format!("--service-account-signing-key-file={}", key.display()))
        .arg("--service-account-issuer=https://kubernetes.default.svc")
        // Never routed: no kube-proxy runs and every Pod uses the host network.
        .arg("--service-cluster-ip-range=10.0.0.0/24")
        .arg("--endpoint-reconciler-type=none")
        .arg("--kubelet-preferred-address-types=Hostname")
        .arg("--enable-priority-and-fairness=false")
        .arg("--profiling=false");
    command
}

/// kubelet's configuration for this machine kind: cgroupfs and the v1 hierarchy
/// (`failCgroupV1: false`; 1.35+ refuse v1 otherwise, KEP-5573), no QoS cgroups, no swap
/// check, no iptables chains, every directory inside the node's, and no image garbage
/// collection (sgpc's images must stay until the run ends).
fn kubelet_config(opts: &NodeOptions, port: u16) -> String {
    let dir = opts.dir.display();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
makeIPTablesUtilChains: false
containerRuntimeEndpoint: {endpoint}
podLogsDir: {dir}/pod-logs
volumePluginDir: {dir}/plugins
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
nodeStatusUpdateFrequency: 2s
serializeImagePulls: false
"#,
        endpoint = opts.runtime_endpoint
    )
}

/// kubelet in a mount namespace of its own whose `/var/log` and `/var/lib/kubelet` (or all of
/// `/var/lib` where that does not exist yet) are private tmpfs mounts.
fn kubelet_command(opts: &NodeOptions, kubeconfig: &Path) -> Command {
    let [log, lib] = hidden_from_kubelet();
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "slave", "--", "/bin/sh", "-c"])
        .arg("mount -t tmpfs -o mode=0755,size=64m sgpc-kubelet \"$1\" && mount -t tmpfs -o mode=0755,size=64m sgpc-kubelet \"$2\" && shift 2 && exec \"$@\"")
        .arg("sgpc-kubelet")
        .arg(log)
        .arg(lib)
        .arg(&opts.binaries.kubelet)
        .arg(format!("--config={}", opts.dir.join("kubelet.yaml").display()))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--root-dir={}", opts.dir.join("kubelet").display()))
        .arg(format!("--cert-dir={}", opts.dir.join("kubelet/pki").display()))
        .arg(format!("--hostname-override={}", opts.node_name));
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_account_key_is_pem_pkcs8() {
        let (key, public) = service_account_key().unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n") && key.ends_with("-----END PRIVATE KEY-----\n"), "{key}");
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"), "{public}");
        assert_ne!(key, service_account_key().unwrap().0, "each run gets its own key");
    }

    #[test]
    fn only_kubelets_own_tunables_are_written_back_and_only_as_numbers() {
        assert!(!restorable(&Sysctl { name: "kernel.core_pattern".into(), value: "1".into() }));
        assert!(!restorable(&Sysctl { name: "kernel.panic".into(), value: "1; rm".into() }));
        assert!(!restorable(&Sysctl { name: "kernel.panic".into(), value: String::new() }));
        assert!(restorable(&Sysctl { name: "kernel.panic".into(), value: "10".into() }));
        assert_eq!(read_sysctls().len(), KUBELET_SYSCTLS.len());
    }
}
