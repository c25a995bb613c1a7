//! A private containerd 2.x started from a directory of binaries, with its own root, state,
//! socket and generated config, pulling from sgpc's registry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use super::{log_tail, spawn_daemon, stop_child, wait_until};
use crate::target::cri::CriTarget;
use crate::target::Timeouts;

/// What a containerd needs to be started.
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// Directory holding `containerd` and `containerd-shim-runc-v2`.
    pub bin_dir: PathBuf,
    pub runc: PathBuf,
    /// Private directory for root, state, socket, config and logs.
    pub dir: PathBuf,
    /// `host:port` of the plain-HTTP registry the runtime pulls from.
    pub registry_host: String,
    /// The sandbox image reference to pin.
    pub pause_image: String,
}

pub struct Containerd {
    pub endpoint: String,
    pub version: String,
    child: Child,
    dir: PathBuf,
}

/// The binaries a containerd directory must hold.
pub const BINARIES: &[&str] = &["containerd", "containerd-shim-runc-v2"];

fn check_binaries(opts: &ContainerdOptions) -> anyhow::Result<()> {
    for name in BINARIES {
        let path = opts.bin_dir.join(name);
        if !path.is_file() {
            bail!("{} is missing: --containerd must name a directory holding {}", path.display(), BINARIES.join(" and "));
        }
    }
    if !opts.runc.is_file() {
        bail!("OCI runtime {} is missing; install Debian's `runc` or run `make setup`", opts.runc.display());
    }
    Ok(())
}

/// The version `containerd --version` prints (`containerd <module> 2.1.9+unknown <commit>`).
pub async fn binary_version(bin_dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin_dir.join("containerd")).arg("--version").output().await.context("running containerd --version")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(2).map(str::to_string).with_context(|| format!("unexpected `containerd --version` output: {text:?}"))
}

/// The config (version 3, containerd 2.x) for a private instance.
pub fn config_v3(opts: &ContainerdOptions, restrict_oom_score_adj: bool) -> String {
    let dir = opts.dir.display();
    format!(
        r#"version = 3
root = "{dir}/root"
state = "{dir}/state"
temp = "{dir}/tmp"

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"

[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{dir}/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  restrict_oom_score_adj = {restrict_oom_score_adj}
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{dir}/cni"
"#,
        pause = opts.pause_image,
        runc = opts.runc.display(),
    )
}

/// `certs.d/<host>/hosts.toml` telling containerd that the registry speaks plain HTTP.
pub fn hosts_toml(registry_host: &str) -> String {
    format!("server = \"http://{registry_host}\"\n\n[host.\"http://{registry_host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n")
}

impl Containerd {
    pub async fn start(opts: &ContainerdOptions) -> anyhow::Result<Containerd> {
        check_binaries(opts)?;
        let version = binary_version(&opts.bin_dir).await?;
        if !version.starts_with("2.") {
            bail!("containerd {version} in {} is not a 2.x release; this provisioner writes config version 3", opts.bin_dir.display());
        }
        let certs = opts.dir.join("certs.d").join(&opts.registry_host);
        std::fs::create_dir_all(&certs)?;
        std::fs::write(certs.join("hosts.toml"), hosts_toml(&opts.registry_host))?;
        let config = opts.dir.join("config.toml");
        std::fs::write(&config, config_v3(opts, !super::has_cap_sys_resource()))?;

        let log = opts.dir.join("containerd.log");
        let path = format!("{}:{}", opts.bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let mut command = Command::new(opts.bin_dir.join("containerd"));
        command.arg("--config").arg(&config).env("PATH", path);
        let mut child = spawn_daemon(command, &log)?;

        let endpoint = format!("unix://{}/containerd.sock", opts.dir.display());
        let ready = wait_until("containerd to answer CRI Version", Duration::from_secs(30), || async {
            match CriTarget::connect(&endpoint, Timeouts::default()).await {
                Ok(target) => target.info().await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
        if let Err(e) = ready {
            let _ = child.kill().await;
            return Err(e.context(format!("containerd log:\n{}", log_tail(&log))));
        }
        Ok(Containerd { endpoint, version, child, dir: opts.dir.clone() })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process has exited (it was killed, or crashed).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops containerd and removes everything under its directory (shims, mounts, files).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        stop_child(&mut self.child).await?;
        super::remove_tree(&self.dir)
    }
}
