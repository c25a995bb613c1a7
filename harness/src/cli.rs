//! The command line: clap's arguments, and their conversion into the library's plans
//! (`SessionConfig`, `DiscoverConfig`), checked before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use sgpc::driver::Timeouts;
use sgpc::provision::containerd::OciRuntime;
use sgpc::run::{ProxySettings, SessionConfig, SessionSettings};
use sgpc::target::{Source, Target};

/// End-to-end conformance harness for Kubernetes supplementalGroupsPolicy (KEP-3619).
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Work with the crafted images.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// List the cases (scenario/policy) of the catalogue.
    List {
        #[command(flatten)]
        input: InputArgs,
        /// Only cases whose id (scenario/policy) matches this regular expression.
        #[arg(long, value_parser = sgpc::outcome::compile_filter)]
        filter: Option<regex::Regex>,
        /// Print how the KEP model derives each case's expected identity, rule by rule.
        #[arg(long)]
        explain: bool,
    },
    /// Run the catalogue against a runtime.
    Run(Box<RunArgs>),
    /// Run the catalogue against every runtime of a matrix file at once; write the matrix reports.
    Matrix(MatrixArgs),
    /// Generate cases, run them on every runtime of a matrix file, and report each class of
    /// divergence shrunk to a minimal case, written as catalogue files.
    Discover(DiscoverArgs),
    /// Check an evidence bundle (`sgpc run --bundle`): every file against its manifest, and every
    /// case judged again from its recorded observations by this sgpc. Exit 0: intact and every
    /// verdict the same; 1: a file changed or a verdict moved (each named); 2: unreadable.
    Verify {
        /// The bundles (`.tar.gz`), e.g. one per node from the plugin; with several, a summary
        /// names each one's runtime and the Strict cases it did not hold to.
        #[arg(required = true)]
        bundles: Vec<PathBuf>,
    },
    /// Write the per-node plugin: its image, built from this binary (`sgpc-plugin.oci.tar`), and
    /// the sonobuoy plugin definition that runs it on every node (`sgpc-plugin.yaml`).
    Plugin {
        /// Directory for the two files.
        #[arg(long, default_value = "target/sgpc/plugin")]
        out: PathBuf,
        /// The image's repository, as the nodes will find it (`<repository>/sgpc-plugin:<tag>`).
        #[arg(long, default_value = sgpc::driver::kube::IMAGE_REPOSITORY, value_parser = repository_name)]
        repository: String,
        /// The runtime's CRI socket on every node.
        #[arg(long, default_value = "/run/containerd/containerd.sock")]
        socket: PathBuf,
        /// A directory of sgpc's alone on every node, mounted at the same path in its Pod (the
        /// runtime mounts case volumes and writes container logs there).
        #[arg(long, default_value = "/var/lib/sgpc-plugin")]
        work_root: PathBuf,
        /// The registry binary the image carries (Debian's docker-registry).
        #[arg(long, default_value = sgpc::provision::registry::DEFAULT_BINARY)]
        registry: PathBuf,
    },
    /// Remove what runs killed before they could clean up left behind (processes, mounts,
    /// directories, sandboxes and images in a --cri runtime). `sgpc run` does this first too.
    Clean {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Build a Go program from the Go module proxy into the cache outside the clone
    /// (`~/.cache/sgpc/go/<program>/<version>`, or SGPC_GO_CACHE), unless it is there already.
    Build {
        /// What to build: kubernetes (kubelet and kube-apiserver), etcd, containerd (2.x, with
        /// containerd-shim-runc-v2; the printed directory is what `--containerd` takes), runc
        /// (needs gcc and libseccomp-dev), or crio (with pinns; needs gcc, libseccomp-dev and
        /// libsqlite3-dev; conmon is Debian's), or critest (cri-tools' validation suite).
        #[arg(value_enum)]
        program: GoProgram,
        /// The exact release, e.g. v1.37.2 (kubernetes), v3.6.16 (etcd), v2.4.2 (containerd), v1.4.4 (runc), v1.36.3 (crio), v1.37.0 (critest).
        version: sgpc::provision::gomodule::Version,
    },
    /// Download a package from a Debian suite into the cache and unpack it (not installed).
    Fetch {
        /// Debian suite or codename, e.g. bookworm, trixie, sid.
        #[arg(long)]
        suite: String,
        #[arg(long, default_value = "containerd")]
        package: String,
        #[arg(long, default_value = ".cache")]
        cache: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum GoProgram {
    Kubernetes,
    Etcd,
    Containerd,
    Runc,
    Crio,
    Critest,
    Sonobuoy,
}

impl From<GoProgram> for sgpc::provision::gomodule::Program {
    fn from(program: GoProgram) -> Self {
        match program {
            GoProgram::Kubernetes => sgpc::provision::gomodule::Program::Kubernetes,
            GoProgram::Etcd => sgpc::provision::gomodule::Program::Etcd,
            GoProgram::Containerd => sgpc::provision::gomodule::Program::Containerd,
            GoProgram::Runc => sgpc::provision::gomodule::Program::Runc,
            GoProgram::Crio => sgpc::provision::gomodule::Program::Crio,
            GoProgram::Critest => sgpc::provision::gomodule::Program::Critest,
            GoProgram::Sonobuoy => sgpc::provision::gomodule::Program::Sonobuoy,
        }
    }
}

#[derive(Subcommand)]
pub enum ImagesCommand {
    /// Build every image recipe (and the pause image) into OCI archives.
    Build {
        /// Directory of image recipes (default: the recipes built into sgpc).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Directory for the `<name>.oci.tar` archives.
        #[arg(long, default_value = "target/sgpc/images")]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct InputArgs {
    /// Directory of scenario files (default: the catalogue built into sgpc, `sgpc list` says
    /// which is in use).
    #[arg(long)]
    pub scenarios: Option<PathBuf>,
    /// Directory of image recipes (default: the recipes built into sgpc).
    #[arg(long)]
    pub images: Option<PathBuf>,
}

/// A catalogue and the files it was read from, as they were read (what a bundle records).
pub struct LoadedCatalogue {
    pub catalogue: sgpc::scenario::Catalogue,
    pub scenario_files: Vec<(PathBuf, String)>,
    pub image_files: Vec<(PathBuf, String)>,
}

impl InputArgs {
    /// The catalogue these arguments name, each part from its directory or built in, read once.
    pub fn load(&self) -> Result<LoadedCatalogue, sgpc::input::InputError> {
        let scenario_files = sgpc::builtin::files(self.scenarios.as_deref(), "scenarios")?;
        let image_files = sgpc::builtin::files(self.images.as_deref(), "images")?;
        let catalogue = sgpc::scenario::Catalogue::from_files(&scenario_files, &image_files)?;
        Ok(LoadedCatalogue { catalogue, scenario_files, image_files })
    }

    /// Where the catalogue comes from, in words.
    pub fn describe(&self) -> String {
        format!("{}, {}", sgpc::builtin::describe(self.scenarios.as_deref(), "scenarios"), sgpc::builtin::describe(self.images.as_deref(), "images"))
    }
}

#[derive(Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// The matrix file.
    #[arg(long, default_value = "matrix.yaml")]
    pub file: PathBuf,
    /// Directory for matrix.md, matrix.html and matrix.json.
    #[arg(long, default_value = "target/sgpc/matrix")]
    pub out: PathBuf,
    /// Cache for Debian packages and releases.
    #[arg(long, default_value = ".cache")]
    pub cache: PathBuf,
    /// Cases in flight at once, per runtime (at least 1).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Only cases whose id (scenario/policy) matches this regular expression.
    #[arg(long, value_parser = sgpc::outcome::compile_filter)]
    pub filter: Option<regex::Regex>,
    /// Where run directories are created (removed at the end).
    #[arg(long, default_value_os_t = std::env::temp_dir(), value_parser = clap::builder::OsStringValueParser::new().try_map(work_root))]
    pub work_root: PathBuf,
    /// After the cases, run critest's SupplementalGroupsPolicy specs against the same runtime
    /// (the binary `sgpc build critest v1.37.0` prints); what it says is reported beside
    /// sgpc's verdicts and never changes them.
    #[arg(long, value_name = "CRITEST", value_parser = existing_file)]
    pub critest: Option<PathBuf>,
}

/// An image repository as a reference names it (distribution's reference grammar: an optional
/// registry host and port, then lower-case path components).
fn repository_name(text: &str) -> Result<String, String> {
    const COMPONENT: &str = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    let grammar = regex::Regex::new(&format!(r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{COMPONENT}(?:/{COMPONENT})*$")).map_err(|e| e.to_string())?;
    // The whole name, `<repository>/sgpc-plugin`, stays within distribution's 255 bytes.
    if text.len() <= 240 && grammar.is_match(text) {
        Ok(text.to_string())
    } else {
        Err("expected an image repository: lower-case path components, optionally after a registry host[:port]/".into())
    }
}

/// A path that names a regular file (checked before anything runs).
fn existing_file(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(format!("{text}: not a regular file")),
        Err(e) => Err(format!("{text}: {e}")),
    }
}

#[derive(Args)]
pub struct DiscoverArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// The matrix file naming the runtimes.
    #[arg(long, default_value = "matrix.yaml")]
    pub matrix: PathBuf,
    /// Cases to run on every runtime (generated scenarios under default, Merge and Strict).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub cases: u32,
    /// The seed: the same seed gives the same cases, classes and minimal cases.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for discovery.md, discovery.json and classes/cNN/{scenarios,images}/.
    #[arg(long, default_value = "target/sgpc/discover")]
    pub out: PathBuf,
    /// Cache for Debian packages and releases.
    #[arg(long, default_value = ".cache")]
    pub cache: PathBuf,
    /// Cases in flight at once, per runtime (at least 1).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Generated scenarios whose images are built and pushed together.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..))]
    pub batch: u16,
    /// Shrinking steps per class at most (0: report the first case as found).
    #[arg(long, default_value_t = 40)]
    pub shrink_steps: u16,
    /// Where run directories are created (removed at the end).
    #[arg(long, default_value_os_t = std::env::temp_dir(), value_parser = clap::builder::OsStringValueParser::new().try_map(work_root))]
    pub work_root: PathBuf,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// An existing CRI endpoint, e.g. unix:///run/containerd/containerd.sock.
    #[arg(long, group = "runtime")]
    pub cri: Option<String>,
    /// A directory holding containerd 1.x or 2.x binaries to start privately.
    #[arg(long, group = "runtime")]
    pub containerd: Option<PathBuf>,
    /// A directory holding crio, conmon, pinns and runc or crun, to start privately.
    #[arg(long, group = "runtime")]
    pub crio: Option<PathBuf>,
    /// The Kubernetes level: run the cases as Pods on the current cluster (images must be
    /// loaded: `sgpc images build`, then `kind load image-archive`).
    #[arg(long, group = "runtime")]
    pub kube: bool,
    /// A live node: build (once) and start etcd, kube-apiserver and kubelet of this Kubernetes
    /// release (e.g. v1.37.2) over the runtime --containerd or --crio starts, and run the
    /// catalogue as Pods there.
    #[arg(long, value_name = "VERSION")]
    pub kubernetes: Option<sgpc::provision::gomodule::Version>,
    /// With --kubernetes: the etcd release the node runs.
    #[arg(long, value_name = "VERSION", default_value = sgpc::provision::gomodule::ETCD_VERSION, requires = "kubernetes")]
    pub etcd: sgpc::provision::gomodule::Version,
    /// With --kubernetes: seconds each node component may take to become ready.
    #[arg(long, default_value_t = 180, requires = "kubernetes")]
    pub node_timeout: u64,
    /// With --cri: the runtime is this node's, whose kubelet would kill sandboxes it did not
    /// make; run the catalogue as Pods through that kubelet (pinned to the node), the images
    /// pulled over the CRI first. The cluster is --kubeconfig's, else the in-cluster one.
    #[arg(long, value_name = "NAME", requires = "cri", conflicts_with_all = ["kubernetes", "faults", "fault_pods", "runtime_handler", "one_sandbox_per_case"])]
    pub node: Option<String>,
    /// With --kube or --node: the kubeconfig to use (default: KUBECONFIG, ~/.kube/config, or
    /// the Pod's service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// With --kube: print the exact manifests that would be applied, and touch nothing.
    #[arg(long, requires = "kube")]
    pub dry_run: bool,
    /// With --kube: create a kind cluster from this node image (e.g. kindest/node:v1.33.1),
    /// load sgpc's images into it, run there, and delete it at the end.
    #[arg(long, requires = "kube")]
    pub kind: Option<String>,
    /// With --kind: reuse the cluster if it exists, and keep it at the end.
    #[arg(long, requires = "kind")]
    pub reuse_cluster: bool,
    /// After the cases, run critest's SupplementalGroupsPolicy specs against the same runtime
    /// (the binary `sgpc build critest v1.37.0` prints); what it says is reported beside
    /// sgpc's verdicts and never changes them.
    /// CRI level only: not with --kube or --kubernetes.
    #[arg(long, value_name = "CRITEST", value_parser = existing_file, conflicts_with_all = ["kube", "kubernetes"])]
    pub critest: Option<PathBuf>,
    /// With --containerd: an OCI runtime as NAME=PATH, offered as CRI runtime handler NAME
    /// (repeatable; the first is the default). Without it: runc=/usr/sbin/runc. With --crio:
    /// the OCI runtime CRI-O uses instead of the directory's own runc or crun.
    #[arg(long = "oci-runtime", value_parser = parse_oci_runtime)]
    pub oci_runtimes: Vec<OciRuntime>,
    /// The CRI runtime handler the cases ask for (default: the runtime's default handler).
    #[arg(long, default_value = "")]
    pub runtime_handler: String,
    /// The registry binary (Debian's docker-registry).
    #[arg(long, default_value = sgpc::provision::registry::DEFAULT_BINARY)]
    pub registry: PathBuf,
    /// Static busybox for critest's image only (critest runs `sh -c 'id -G'`; sgpc's own images
    /// hold only its probe).
    #[arg(long, default_value = "/bin/busybox")]
    pub busybox: PathBuf,
    /// Only cases whose id (scenario/policy) matches this regular expression.
    #[arg(long, value_parser = sgpc::outcome::compile_filter)]
    pub filter: Option<regex::Regex>,
    /// Certification: refuse, before anything runs, a selected case whose expectation departs
    /// from the KEP model (a scenario's `deviation:`).
    #[arg(long)]
    pub no_deviations: bool,
    /// Write a JUnit XML report here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write a JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an evidence bundle here (`.tar.gz`: the reports, the catalogue used, every case's
    /// observations and a SHA-256 manifest) that `sgpc verify` checks.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// As a sonobuoy plugin (`sgpc plugin`): after the bundle (default `DIR/sgpc.tar.gz`), write
    /// `DIR/done` naming it, then wait for SIGTERM (a DaemonSet restarts a container that exits).
    #[arg(long, value_name = "DIR")]
    pub sonobuoy_results: Option<PathBuf>,
    /// Cases in flight at once (at least 1).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Seconds one CRI call may take.
    #[arg(long, default_value_t = 30)]
    pub rpc_timeout: u64,
    /// Seconds one image pull may take.
    #[arg(long, default_value_t = 120)]
    pub pull_timeout: u64,
    /// Seconds the first process may take to print its probe output.
    #[arg(long, default_value_t = 30)]
    pub probe_timeout: u64,
    /// Print notes for passing cases too.
    #[arg(long, short)]
    pub verbose: bool,
    /// Where the run directory is created (removed at the end).
    #[arg(long, default_value_os_t = std::env::temp_dir(), value_parser = clap::builder::OsStringValueParser::new().try_map(work_root))]
    pub work_root: PathBuf,
    /// Self-test: put sgpc-cri-proxy in front of the runtime and inject this fault (repeatable).
    #[arg(long = "fault", value_enum)]
    pub faults: Vec<sgpc::proxy::Fault>,
    /// With --fault: pod-scoped faults apply to sandboxes (`<scenario>-<policy>`) matching this.
    #[arg(long)]
    pub fault_pods: Option<String>,
    /// With --fault slow: how long a call is held, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub fault_delay_ms: u64,
    /// CRI level: run every case in a sandbox of its own. By default cases whose Pod-level
    /// security context is the same run as containers of one sandbox, as one Pod's would.
    #[arg(long)]
    pub one_sandbox_per_case: bool,
}


impl RunArgs {
    /// The runtime `sgpc run` judges, as a matrix entry would name it.
    pub fn target(&self) -> anyhow::Result<Target> {
        let source = match (&self.cri, &self.containerd, &self.crio) {
            (Some(endpoint), _, _) => Source::Cri { endpoint: endpoint.clone() },
            (None, Some(dir), _) => Source::ContainerdDir { dir: dir.clone() },
            (None, None, Some(dir)) => Source::CrioDir { dir: dir.clone() },
            (None, None, None) => anyhow::bail!("give --cri ENDPOINT, --containerd DIR, --crio DIR or --kube"),
        };
        Ok(Target { source, oci_runtimes: self.oci_runtimes.clone(), runc_module: None, runtime_handler: self.runtime_handler.clone(), node: self.node_choice()? })
    }

    /// The session `sgpc run` starts for `target` (and the live node over it): resolved as a
    /// matrix column's is, which fails at once, before anything is built, when a directory is
    /// incomplete.
    pub fn session_config(&self, target: &Target) -> anyhow::Result<SessionConfig> {
        let (config, _) = sgpc::target::resolve(target, &self.settings(), std::path::Path::new(".cache"))?;
        Ok(config)
    }

    fn settings(&self) -> SessionSettings {
        let proxy = (!self.faults.is_empty()).then(|| {
            let mut proxy = ProxySettings::beside_current_exe(self.faults.clone());
            proxy.pods = self.fault_pods.clone();
            proxy.delay = Duration::from_millis(self.fault_delay_ms);
            proxy
        });
        SessionSettings {
            work_root: self.work_root.clone(),
            timeouts: Timeouts { rpc: Duration::from_secs(self.rpc_timeout), pull: Duration::from_secs(self.pull_timeout), probe: Duration::from_secs(self.probe_timeout) },
            critest_busybox: self.busybox.clone(),
            registry_binary: self.registry.clone(),
            proxy,
            critest: self.critest.clone(),
            // A pod-scoped fault selects sandboxes by their case's name.
            share_sandboxes: !self.one_sandbox_per_case && self.fault_pods.is_none(),
            ..SessionSettings::default()
        }
    }
}

impl RunArgs {
    /// The live node `--kubernetes` asks for, over a runtime sgpc starts.
    pub fn node_choice(&self) -> anyhow::Result<Option<sgpc::run::NodeChoice>> {
        let Some(kubernetes) = &self.kubernetes else { return Ok(None) };
        anyhow::ensure!(self.containerd.is_some() || self.crio.is_some(), "--kubernetes starts a node over a runtime sgpc starts: give --containerd DIR or --crio DIR");
        Ok(Some(sgpc::run::NodeChoice { kubernetes: kubernetes.clone(), etcd: self.etcd.clone(), timeout: Duration::from_secs(self.node_timeout) }))
    }

    /// The Kubernetes level's plan for `sgpc run --kube`.
    pub fn kube_config(&self, images: Vec<sgpc::image::BuiltImage>) -> sgpc::run::KubeConfig {
        sgpc::run::KubeConfig {
            kubeconfig: self.kubeconfig.clone(),
            kind: self.kind.clone().map(|node_image| sgpc::run::KindSetup { node_image, reuse: self.reuse_cluster, images }),
            timeout: Duration::from_secs(self.probe_timeout + self.pull_timeout),
            work_root: self.work_root.clone(),
        }
    }
}

impl MatrixArgs {
    pub fn config(&self) -> sgpc::matrix::MatrixConfig {
        let settings = SessionSettings { work_root: self.work_root.clone(), critest: self.critest.clone(), ..SessionSettings::default() };
        sgpc::matrix::MatrixConfig { settings, cache: self.cache.clone(), jobs: usize::from(self.jobs) }
    }
}

/// `--work-root` (of `run`, `matrix` and `discover`) must be a directory nobody else can steer:
/// checked once, while the arguments are parsed, before anything runs.
fn work_root(text: std::ffi::OsString) -> Result<PathBuf, String> {
    let dir = PathBuf::from(text);
    if !dir.is_dir() {
        return Err("not a directory".to_string());
    }
    sgpc::provision::dirs::check_not_steerable(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

impl DiscoverArgs {
    pub fn config(&self) -> sgpc::discover::DiscoverConfig {
        let settings = SessionSettings { work_root: self.work_root.clone(), ..SessionSettings::default() };
        let mut config = sgpc::discover::DiscoverConfig::new(settings, self.seed, self.cases as usize);
        config.cache = self.cache.clone();
        config.jobs = usize::from(self.jobs);
        config.batch = usize::from(self.batch);
        config.max_shrink_rounds = usize::from(self.shrink_steps);
        config
    }
}

fn parse_oci_runtime(text: &str) -> Result<OciRuntime, String> {
    let (handler, binary) = text.split_once('=').ok_or_else(|| format!("{text:?}: expected NAME=PATH, e.g. youki=/root/.cargo/bin/youki"))?;
    if handler.is_empty() || !handler.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(format!("{handler:?}: a runtime handler name is letters, digits, '-' and '_'"));
    }
    Ok(OciRuntime { handler: handler.to_string(), binary: PathBuf::from(binary) })
}

