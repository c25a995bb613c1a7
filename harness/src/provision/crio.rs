//! A private CRI-O started from a directory of binaries (`crio`, `pinns`, `conmon` or Debian's,
//! and `runc` or `crun` or the entry's OCI runtime), with its own root, runroot, socket and
//! generated configuration.
//!
//! CRI-O is not packaged for Debian: sgpc builds it from its Go module (`sgpc build crio`,
//! [`crate::provision::gomodule`]), or takes a directory of the user's own binaries (`--crio DIR`,
//! `SGPC_CRIO_DIR` in the tests). What the
//! configuration must say, from CRI-O's own sources and measured:
//!
//! - the registries file is read from `CONTAINER_REGISTRIES_CONF` (CRI-O's `--registries-conf`,
//!   `internal/criocli/criocli.go`), not podman's `CONTAINERS_REGISTRIES_CONF`;
//! - sgpc's plain-HTTP registry is marked `insecure = true` there: since CRI-O 1.35 crio.conf's
//!   `insecure_registries` "is deprecated and no longer effective" (`internal/storage/image.go`);
//! - `pause_command = ""` runs the pause image's own entrypoint (`/pause`, sgpc's
//!   `programs/pause.c`) rather than a command CRI-O assumes (`pkg/config/config.go`, `PauseCommand`);
//! - the registry wants credentials: sgpc pulls the pause image over CRI with them before any
//!   sandbox needs it.
//!
//! CRI-O has no `restrict_oom_score_adj`. It asks for a negative `oom_score_adj` for the infra
//! container, which runc cannot set without CAP_SYS_RESOURCE. When the capability is missing,
//! the OCI runtime is called through [`OOM_WRAPPER`], a shell wrapper that clamps a negative
//! `process.oomScoreAdj` in the bundle's `config.json` to 0 and then execs the real runtime,
//! which is what containerd's `restrict_oom_score_adj` does inside containerd.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tokio::process::Command;

use super::containerd::OciRuntime;
use super::{spawn_daemon, Daemon};

/// OCI runtimes looked for in the directory, in order of preference.
pub const OCI_RUNTIMES: &[&str] = &["runc", "crun"];

/// The wrapper script's name in the run directory.
pub const OOM_WRAPPER: &str = "oci-runtime-oom-clamp";

/// The environment variable CRI-O reads its registries file from: the hidden flag
/// `--registries-conf` in `internal/criocli/criocli.go` (1.31 through 1.36), `EnvVars:
/// CONTAINER_REGISTRIES_CONF`. Not podman's `CONTAINERS_REGISTRIES_CONF`.
pub const REGISTRIES_CONF_ENV: &str = "CONTAINER_REGISTRIES_CONF";

#[derive(Debug, Clone)]
pub struct CrioOptions {
    pub bin_dir: PathBuf,
    /// The OCI runtime to use instead of the directory's own.
    pub oci_runtime: Option<OciRuntime>,
    pub dir: PathBuf,
    pub registry_host: String,
    /// The registry's credentials, written to CRI-O's auth file: a pull through the
    /// [`super::MIRRORED_REGISTRY`] prefix (critest's image) does not use the CRI request's.
    pub registry_credentials: Option<super::registry::Credentials>,
    pub pause_image: String,
}

/// The checked binaries of a CRI-O directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrioBinaries {
    pub crio: PathBuf,
    pub conmon: PathBuf,
    pub pinns: PathBuf,
    /// The OCI runtime's name (`runc` or `crun`) and path.
    pub oci_runtime: (String, PathBuf),
}

/// Debian's `conmon` (`make setup` installs it): used when a CRI-O directory has none, as for
/// CRI-O built from its Go module. A root-owned system path, never looked up on `PATH`.
pub const DEBIAN_CONMON: &str = "/usr/bin/conmon";

/// [`find_binaries_with`] with Debian's conmon as the fallback.
pub fn find_binaries(bin_dir: &Path, oci_runtime: Option<&OciRuntime>) -> anyhow::Result<CrioBinaries> {
    find_binaries_with(bin_dir, Path::new(DEBIAN_CONMON), oci_runtime)
}

/// Checks a directory for everything CRI-O needs; the error names what is missing. `conmon`
/// comes from the directory, else from `fallback_conmon`; the OCI runtime is `oci_runtime`
/// when given (`--oci-runtime`, a matrix entry's `ociRuntime`), else the directory's `runc` or
/// `crun`.
pub fn find_binaries_with(bin_dir: &Path, fallback_conmon: &Path, oci_runtime: Option<&OciRuntime>) -> anyhow::Result<CrioBinaries> {
    let conmon = [bin_dir.join("conmon"), fallback_conmon.to_path_buf()].into_iter().find(|p| p.is_file());
    let mut missing: Vec<String> = ["crio", "pinns"].iter().map(|b| bin_dir.join(b)).filter(|p| !p.is_file()).map(|p| p.display().to_string()).collect();
    if conmon.is_none() {
        missing.push(format!("conmon (neither {} nor {})", bin_dir.join("conmon").display(), fallback_conmon.display()));
    }
    let runtime = match oci_runtime {
        Some(given) if given.binary.is_file() => Some((given.handler.clone(), given.binary.clone())),
        Some(given) => {
            missing.push(format!("the OCI runtime {}", given.binary.display()));
            None
        }
        None => OCI_RUNTIMES.iter().find(|r| bin_dir.join(r).is_file()).map(|r| (r.to_string(), bin_dir.join(r))),
    };
    if runtime.is_none() && oci_runtime.is_none() {
        missing.push(format!("an OCI runtime ({})", OCI_RUNTIMES.join(" or ")));
    }
    match (conmon, runtime) {
        (Some(conmon), Some(oci_runtime)) if missing.is_empty() => Ok(CrioBinaries { crio: bin_dir.join("crio"), conmon, pinns: bin_dir.join("pinns"), oci_runtime }),
        _ => bail!("--crio {}: missing {}; the directory must hold crio and pinns, conmon unless {} is installed, and runc or crun unless --oci-runtime (or a `crio: {{module: VERSION}}` entry's ociRuntime) names one", bin_dir.display(), missing.join(", "), fallback_conmon.display()),
    }
}

/// The OCI runtime wrapper that clamps a negative `oomScoreAdj` (see the module docs).
pub fn oom_wrapper(runtime: &Path) -> String {
    format!(
        r#"#!/bin/sh
# Written by sgpc. This host lacks CAP_SYS_RESOURCE, so the OCI runtime cannot lower
# oom_score_adj; clamp a negative process.oomScoreAdj in the bundle to 0, then run it.
bundle=""
prev=""
for arg in "$@"; do
  case "$prev" in --bundle|-b) bundle="$arg" ;; esac
  case "$arg" in --bundle=*) bundle="${{arg#--bundle=}}" ;; esac
  prev="$arg"
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
  sed -i 's/"oomScoreAdj": *-[0-9]*/"oomScoreAdj":0/' "$bundle/config.json"
fi
exec {runtime} "$@"
"#,
        runtime = runtime.display()
    )
}

/// `crio.conf` for a private instance. `runtime_path` is the OCI runtime or its wrapper.
pub fn config(opts: &CrioOptions, bins: &CrioBinaries, runtime_path: &Path) -> String {
    let dir = opts.dir.display();
    let (runtime, _) = &bins.oci_runtime;
    format!(
        r#"[crio]
root = "{dir}/root"
runroot = "{dir}/run"
storage_driver = "overlay"
log_dir = "{dir}/logs"
version_file = "{dir}/version"
version_file_persist = "{dir}/version-persist"
clean_shutdown_file = "{dir}/clean.shutdown"

[crio.api]
listen = "{dir}/crio.sock"
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "{runtime}"
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
pinns_path = "{pinns}"
namespaces_dir = "{dir}/ns"
container_exits_dir = "{dir}/exits"
container_attach_socket_dir = "{dir}/attach"

[crio.runtime.runtimes.{runtime}]
runtime_path = "{runtime_path}"
runtime_type = "oci"
runtime_root = "{dir}/{runtime}-root"
monitor_path = "{conmon}"

[crio.image]
pause_image = "{pause}"
pause_command = ""
signature_policy = "{dir}/policy.json"
global_auth_file = "{dir}/auth.json"

[crio.network]
network_dir = "{dir}/cni"
plugin_dirs = ["/usr/lib/cni"]

[crio.metrics]
enable_metrics = false
"#,
        pinns = bins.pinns.display(),
        conmon = bins.conmon.display(),
        runtime_path = runtime_path.display(),
        pause = opts.pause_image,
    )
}

/// `registries.conf`: the local registry speaks plain HTTP, and serves
/// [`super::MIRRORED_REGISTRY`].
pub fn registries_conf(registry_host: &str) -> String {
    let mirrored = super::MIRRORED_REGISTRY;
    format!("[[registry]]\nlocation = \"{registry_host}\"\ninsecure = true\n\n[[registry]]\nprefix = \"{mirrored}\"\nlocation = \"{registry_host}\"\ninsecure = true\n")
}

/// containers-auth.json(5) with the registry's credentials, if it has any.
pub fn auth_json(registry_host: &str, credentials: Option<&super::registry::Credentials>) -> String {
    use base64::Engine as _;
    let auths = credentials.map(|c| serde_json::json!({ registry_host: { "auth": base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password)) } }));
    serde_json::json!({ "auths": auths.unwrap_or_else(|| serde_json::json!({})) }).to_string()
}

/// Accept every image: sgpc's images are unsigned and come from its own registry.
pub const POLICY_JSON: &str = r#"{"default": [{"type": "insecureAcceptAnything"}]}"#;

/// Writes every file CRI-O needs into `opts.dir`; returns the path of `crio.conf`.
pub fn write_config(opts: &CrioOptions, bins: &CrioBinaries, clamp_oom: bool) -> anyhow::Result<PathBuf> {
    super::write_loopback_cni(&opts.dir.join("cni"))?;
    let runtime_path = if clamp_oom {
        let wrapper = opts.dir.join(OOM_WRAPPER);
        fs_err::write(&wrapper, oom_wrapper(&bins.oci_runtime.1))?;
        fs_err::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
        wrapper
    } else {
        bins.oci_runtime.1.clone()
    };
    fs_err::write(opts.dir.join("policy.json"), POLICY_JSON)?;
    let auth = opts.dir.join("auth.json");
    // Created 0600: never readable by others, not even for a moment.
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&auth).with_context(|| format!("creating {}", auth.display()))?;
    std::io::Write::write_all(&mut file, auth_json(&opts.registry_host, opts.registry_credentials.as_ref()).as_bytes()).with_context(|| format!("writing {}", auth.display()))?;
    fs_err::write(opts.dir.join("registries.conf"), registries_conf(&opts.registry_host))?;
    let config = opts.dir.join("crio.conf");
    fs_err::write(&config, self::config(opts, bins, &runtime_path))?;
    Ok(config)
}

/// The `crio` command line for a private instance whose files [`write_config`] wrote.
pub fn command(opts: &CrioOptions, bins: &CrioBinaries, config: &Path) -> Command {
    let mut command = Command::new(&bins.crio);
    command
        .arg("--config")
        .arg(config)
        .env(REGISTRIES_CONF_ENV, opts.dir.join("registries.conf"))
        .env("PATH", format!("{}:{}", opts.bin_dir.display(), std::env::var("PATH").unwrap_or_default()));
    command
}

pub struct Crio {
    pub endpoint: String,
    pub daemon: Daemon,
}

impl Crio {
    pub async fn start(opts: &CrioOptions) -> anyhow::Result<Crio> {
        let bins = find_binaries(&opts.bin_dir, opts.oci_runtime.as_ref())?;
        let config = write_config(opts, &bins, !super::has_cap_sys_resource())?;
        let log = opts.dir.join("crio.log");
        let mut child = spawn_daemon(command(opts, &bins, &config), &log).context("starting crio")?;
        let endpoint = format!("unix://{}/crio.sock", opts.dir.display());
        super::wait_for_cri(&mut child, &endpoint, &log, "CRI-O").await?;
        Ok(Crio { endpoint, daemon: Daemon::new(child, &opts.dir) })
    }
}
