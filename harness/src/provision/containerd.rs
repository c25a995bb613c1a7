//! A private containerd 2.x started from a directory of binaries, with its own root, state,
//! socket and generated config, pulling from sgpc's registry.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tokio::process::Command;

use super::{spawn_daemon, Daemon};

/// An OCI runtime binary, offered to the CRI as runtime handler `handler`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRuntime {
    pub handler: String,
    pub binary: PathBuf,
}

impl OciRuntime {
    pub fn runc() -> OciRuntime {
        OciRuntime { handler: "runc".into(), binary: PathBuf::from("/usr/sbin/runc") }
    }
}

/// What a containerd needs to be started.
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// Directory holding `containerd` and `containerd-shim-runc-v2`.
    pub bin_dir: PathBuf,
    /// OCI runtimes, each a CRI runtime handler; the first is the default.
    pub oci_runtimes: Vec<OciRuntime>,
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
    pub daemon: Daemon,
}

/// The binaries a containerd directory must hold.
pub const BINARIES: &[&str] = &["containerd", "containerd-shim-runc-v2"];

/// Checks that `bin_dir` holds containerd and its shim and that every OCI runtime exists.
pub fn check_binaries(bin_dir: &Path, oci_runtimes: &[OciRuntime]) -> anyhow::Result<()> {
    for name in BINARIES {
        let path = bin_dir.join(name);
        if !path.is_file() {
            bail!("{} is missing: a containerd directory (--containerd DIR, or `containerd: {{dir: DIR}}` in a matrix) holds {}", path.display(), BINARIES.join(" and "));
        }
    }
    for runtime in oci_runtimes {
        if !runtime.binary.is_file() {
            bail!("OCI runtime {} ({}) is missing; `make setup` installs runc and youki", runtime.handler, runtime.binary.display());
        }
    }
    Ok(())
}

/// The version `containerd --version` prints (`containerd <module> 2.1.9+unknown <commit>`).
pub async fn binary_version(bin_dir: &Path) -> anyhow::Result<String> {
    let out = Command::new(bin_dir.join("containerd")).arg("--version").output().await.context("running containerd --version")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(2).map(str::to_string).with_context(|| format!("unexpected `containerd --version` output: {text:?}"))
}

/// The CRI plugin table under which runtimes are configured, per config version.
fn runtimes_table(config_version: u8) -> &'static str {
    if config_version >= 3 {
        r#"plugins."io.containerd.cri.v1.runtime".containerd.runtimes"#
    } else {
        r#"plugins."io.containerd.grpc.v1.cri".containerd.runtimes"#
    }
}

/// One `[...runtimes.<handler>]` table per OCI runtime; each is a CRI runtime handler. The
/// OCI runtime keeps its state (`Root`, its `--root`) in the instance's directory, not in
/// `/run/containerd/runc`, which a node's own containerd uses.
fn runtime_tables(config_version: u8, opts: &ContainerdOptions) -> String {
    let table = runtimes_table(config_version);
    opts.oci_runtimes
        .iter()
        .map(|r| {
            format!(
                "    [{table}.{name}]\n      runtime_type = \"io.containerd.runc.v2\"\n      [{table}.{name}.options]\n        BinaryName = \"{binary}\"\n        Root = \"{root}\"\n        SystemdCgroup = false\n",
                name = r.handler,
                binary = r.binary.display(),
                root = opts.dir.join("oci-runtime").join(&r.handler).display()
            )
        })
        .collect()
}

/// The config for a private instance: version 3 for containerd 2.x, version 2 for 1.6 and 1.7.
pub fn config(major: u32, opts: &ContainerdOptions, restrict_oom_score_adj: bool) -> String {
    if major >= 2 {
        config_v3(opts, restrict_oom_score_adj)
    } else {
        config_v2(opts, restrict_oom_score_adj)
    }
}

/// What both config versions share: the version line, and every path and socket of the
/// instance kept inside its private directory (NRI, which wants a host-wide socket, is off).
fn private_paths(config_version: u8, opts: &ContainerdOptions) -> String {
    let dir = opts.dir.display();
    // `temp` is a top-level key from config version 3 on; it must come before any table.
    let temp = if config_version >= 3 { format!("\ntemp = \"{dir}/tmp\"") } else { String::new() };
    format!(
        r#"version = {config_version}
root = "{dir}/root"
state = "{dir}/state"{temp}

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"

[plugins."io.containerd.nri.v1.nri"]
  disable = true"#
    )
}

/// The first OCI runtime is the default handler.
fn default_handler(opts: &ContainerdOptions) -> &str {
    opts.oci_runtimes.first().map(|r| r.handler.as_str()).unwrap_or("runc")
}

fn config_v3(opts: &ContainerdOptions, restrict_oom_score_adj: bool) -> String {
    let dir = opts.dir.display();
    format!(
        r#"{head}

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
    default_runtime_name = "{default}"
{runtimes}  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{dir}/cni"
"#,
        head = private_paths(3, opts),
        pause = opts.pause_image,
        default = default_handler(opts),
        runtimes = runtime_tables(3, opts),
    )
}

fn config_v2(opts: &ContainerdOptions, restrict_oom_score_adj: bool) -> String {
    let dir = opts.dir.display();
    format!(
        r#"{head}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  enable_selinux = false
  restrict_oom_score_adj = {restrict_oom_score_adj}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "{default}"
{runtimes}  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{dir}/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{dir}/certs.d"
"#,
        head = private_paths(2, opts),
        pause = opts.pause_image,
        default = default_handler(opts),
        runtimes = runtime_tables(2, opts),
    )
}

/// The major version of a containerd version string (`1.7.24~ds1`, `2.1.9+unknown`, and
/// `v2.4.2` as a build from the Go module reports itself).
pub fn major_version(version: &str) -> Option<u32> {
    version.strip_prefix('v').unwrap_or(version).split('.').next()?.parse().ok()
}

/// `certs.d/<host>/hosts.toml` telling containerd that the registry speaks plain HTTP; written
/// for sgpc's registry and for [`super::MIRRORED_REGISTRY`], which it serves.
pub fn hosts_toml(registry_host: &str) -> String {
    format!("server = \"http://{registry_host}\"\n\n[host.\"http://{registry_host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n")
}

impl Containerd {
    pub async fn start(opts: &ContainerdOptions) -> anyhow::Result<Containerd> {
        check_binaries(&opts.bin_dir, &opts.oci_runtimes)?;
        let version = binary_version(&opts.bin_dir).await?;
        let major = match major_version(&version) {
            Some(major @ 1..=2) => major,
            _ => bail!("containerd {version} in {}: only 1.x (config version 2) and 2.x (config version 3) are supported", opts.bin_dir.display()),
        };
        for host in [opts.registry_host.as_str(), super::MIRRORED_REGISTRY] {
            let certs = opts.dir.join("certs.d").join(host);
            fs_err::create_dir_all(&certs)?;
            fs_err::write(certs.join("hosts.toml"), hosts_toml(&opts.registry_host))?;
        }
        super::write_loopback_cni(&opts.dir.join("cni"))?;
        let config = opts.dir.join("config.toml");
        fs_err::write(&config, self::config(major, opts, !super::has_cap_sys_resource()))?;

        let log = opts.dir.join("containerd.log");
        let path = format!("{}:{}", opts.bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let mut command = Command::new(opts.bin_dir.join("containerd"));
        command.arg("--config").arg(&config).env("PATH", path);
        let mut child = spawn_daemon(command, &log)?;

        let endpoint = format!("unix://{}/containerd.sock", opts.dir.display());
        super::wait_for_cri(&mut child, &endpoint, &log, "containerd").await?;
        Ok(Containerd { endpoint, version, daemon: Daemon::new(child, &opts.dir) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions_of_debian_and_go_module_builds() {
        assert_eq!(major_version("1.7.24~ds1"), Some(1));
        assert_eq!(major_version("2.1.9+unknown"), Some(2));
        assert_eq!(major_version("v2.4.2"), Some(2));
        assert_eq!(major_version("vx"), None);
    }

    fn opts() -> ContainerdOptions {
        ContainerdOptions {
            bin_dir: PathBuf::from("/bin"),
            oci_runtimes: vec![OciRuntime { handler: "youki".into(), binary: PathBuf::from("/y") }, OciRuntime::runc()],
            dir: PathBuf::from("/run/sgpc-x"),
            registry_host: "127.0.0.1:5000".into(),
            pause_image: "127.0.0.1:5000/sgpc/pause:t".into(),
        }
    }

    #[test]
    fn both_config_versions_keep_everything_private() {
        for (major, version) in [(1, 2), (2, 3)] {
            let config: toml::Table = config(major, &opts(), true).parse().unwrap();
            assert_eq!(config["version"].as_integer(), Some(version));
            assert_eq!(config["root"].as_str(), Some("/run/sgpc-x/root"));
            assert_eq!(config["grpc"]["address"].as_str(), Some("/run/sgpc-x/containerd.sock"));
            assert_eq!(config.contains_key("temp"), version == 3, "temp is top-level in v3 only");
            assert_eq!(config["plugins"]["io.containerd.nri.v1.nri"].as_table().map(|t| t.len()), Some(1), "only `disable` in the NRI table");
        }
        let v2: toml::Table = config(1, &opts(), true).parse().unwrap();
        let cri = &v2["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["sandbox_image"].as_str(), Some("127.0.0.1:5000/sgpc/pause:t"));
        assert_eq!(cri["containerd"]["default_runtime_name"].as_str(), Some("youki"));
        assert_eq!(cri["containerd"]["runtimes"]["runc"]["options"]["BinaryName"].as_str(), Some("/usr/sbin/runc"));
        assert_eq!(cri["containerd"]["runtimes"]["runc"]["options"]["Root"].as_str(), Some("/run/sgpc-x/oci-runtime/runc"), "runc's state stays private");
        let v3: toml::Table = config(2, &opts(), false).parse().unwrap();
        let runtime = &v3["plugins"]["io.containerd.cri.v1.runtime"];
        assert_eq!(runtime["restrict_oom_score_adj"].as_bool(), Some(false));
        assert_eq!(runtime["containerd"]["runtimes"]["youki"]["options"]["BinaryName"].as_str(), Some("/y"));
        assert_eq!(runtime["containerd"]["runtimes"]["youki"]["options"]["Root"].as_str(), Some("/run/sgpc-x/oci-runtime/youki"));
        assert_eq!(v3["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"].as_str(), Some("127.0.0.1:5000/sgpc/pause:t"));
    }
}
