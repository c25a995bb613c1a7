//! Provisioners: what a run fetches (Debian packages, releases) and starts (a registry, a
//! containerd, a CRI-O), and the removal of
//! everything they leave: processes, mounts and directories.

pub mod containerd;
pub mod crio;
pub mod debian;
pub mod dirs;
pub mod gomodule;
pub mod host_paths;
pub mod kind;
pub mod node;
pub mod registry;
pub mod release;
pub mod state;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// Grace period between SIGTERM and SIGKILL for a process sgpc started.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A free TCP port on 127.0.0.1 (bound, read, released).
/// A registry the runtimes sgpc starts resolve to sgpc's own registry: critest creates its
/// containers from `gcr.io/k8s-staging-cri-tools/...` (cri-tools v1.37.0
/// pkg/validate/consts.go), so the name must resolve offline. sgpc's own images never name it.
pub const MIRRORED_REGISTRY: &str = "gcr.io";

/// The network every runtime sgpc starts gets: loopback only, from Debian's
/// containernetworking-plugins. Most Pods use the host network; a Pod with `hostUsers: false`
/// may not (Kubernetes API validation, `validateHostUsers`) and gets a network namespace with
/// only `lo`; a live node is Ready only once the runtime's network is (CRI `NetworkReady`). No
/// bridge, address or route is ever created.
pub const LOOPBACK_CNI: &str = r#"{"cniVersion": "1.0.0", "name": "sgpc-loopback", "plugins": [{"type": "loopback"}]}
"#;

/// Writes [`LOOPBACK_CNI`] into a runtime's CNI configuration directory, creating it.
pub fn write_loopback_cni(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("10-sgpc-loopback.conflist"), LOOPBACK_CNI)
}

pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Whether this process holds CAP_SYS_RESOURCE (runc needs it to set a negative oom_score_adj).
pub fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Starts a daemon with its output in `log`; killed if the handle is dropped.
pub fn spawn_daemon(mut command: Command, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    command.stdin(Stdio::null()).stdout(out).stderr(err).kill_on_drop(true);
    command.spawn().with_context(|| format!("starting {:?}", command.as_std().get_program()))
}

/// The last lines of a daemon's log, for error messages.
pub fn log_tail(log: &Path) -> String {
    crate::input::last_lines(&std::fs::read_to_string(log).unwrap_or_default(), 8)
}

/// SIGTERM, then SIGKILL after the grace period; waits for the exit.
pub async fn stop_child(child: &mut Child) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return Ok(());
        }
    }
    child.kill().await.context("killing a daemon")?;
    Ok(())
}

/// Pids of processes that belong to a directory: their command line names it, their root lies
/// under it, or, for a process in another mount namespace (a container: its root reads as `/`
/// from here), its root mount is built from it (an overlay whose layers live there). The last
/// one still finds a container whose runtime, shim and run directory are all gone.
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let dir_text = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    let my_mounts = std::fs::read_link("/proc/self/ns/mnt").ok();
    pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap_or_default();
            let other_namespace = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok().is_some_and(|ns| Some(ns) != my_mounts);
            cmdline.contains(&dir_text) || root.starts_with(dir) || (other_namespace && root_mount_mentions(*pid, &dir_text))
        })
        .collect()
}

/// Every pid in `/proc` (none if it cannot be read).
pub fn pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).collect()
}

/// Whether the mount at `/` of a process names `dir_text` (an overlay's `upperdir`/`lowerdir`,
/// or a bind mount's source).
fn root_mount_mentions(pid: u32, dir_text: &str) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    info.lines().filter(|l| l.split(' ').nth(4) == Some("/")).any(|l| l.contains(dir_text))
}

/// Mount points at or below a directory, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    points
}

/// How long [`remove_tree`] keeps killing what appears under a directory: a shim that was
/// starting a container when its runtime died can still start one.
const KILL_SETTLE: Duration = Duration::from_secs(10);

/// How long no process may appear under a directory before it counts as empty: a shim that
/// was daemonizing when its runtime was killed shows up only after its parent is gone.
const QUIET: Duration = Duration::from_millis(500);

/// SIGKILLs every process under `dir` until none is left for [`QUIET`] (or [`KILL_SETTLE`]
/// passes); returns what is still there.
fn kill_all_under(dir: &Path) -> Vec<u32> {
    let deadline = std::time::Instant::now() + KILL_SETTLE;
    let mut empty_since: Option<std::time::Instant> = None;
    loop {
        let pids: Vec<u32> = processes_under(dir).into_iter().filter(|pid| !is_zombie(*pid)).collect();
        let now = std::time::Instant::now();
        if pids.is_empty() {
            let since = *empty_since.get_or_insert(now);
            if now.duration_since(since) >= QUIET || now >= deadline {
                return pids;
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        empty_since = None;
        if now >= deadline {
            return pids;
        }
        for pid in pids {
            // SAFETY: kill(2) with a pid read from /proc; at worst the process is already gone.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A zombie has exited; only its parent's bookkeeping remains.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
}

/// Kills leftover processes, removes what they left in the host's own paths ([`host_paths`]),
/// unmounts leftover mounts and removes a run directory.
/// Safe to call more than once; errors name what is left.
pub fn remove_tree(dir: &Path) -> anyhow::Result<()> {
    let alive = kill_all_under(dir);
    if !alive.is_empty() {
        bail!("processes under {} survived SIGKILL for {KILL_SETTLE:?}: {alive:?}", dir.display());
    }
    // Before the directory goes: it is what names the shim sockets and cgroups to remove.
    let left = host_paths::remove_leftovers(dir);
    if !left.is_empty() {
        bail!("left in the host's paths: {}", left.join("; "));
    }
    for point in mounts_under(dir) {
        let c_point = std::ffi::CString::new(point.clone())?;
        // SAFETY: umount2(2) with a valid C string.
        unsafe { libc::umount2(c_point.as_ptr(), libc::MNT_DETACH) };
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let left = mounts_under(dir);
    if !left.is_empty() {
        bail!("mounts left under {}: {left:?}", dir.display());
    }
    Ok(())
}

/// [`remove_tree`] on a blocking thread: it sleeps while it waits for processes to stay gone,
/// and several sessions tear down side by side.
pub async fn remove_tree_async(dir: PathBuf) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || remove_tree(&dir)).await.context("removing a directory: the task failed")?
}

/// Waits until a runtime daemon sgpc started answers CRI `Version`; on failure kills it and
/// puts the tail of its log in the error.
pub async fn wait_for_cri(child: &mut Child, endpoint: &str, log: &Path, name: &str) -> anyhow::Result<()> {
    use crate::driver::{cri::CriDriver, Timeouts};
    let ready = wait_until(&format!("{name} to answer CRI Version"), Duration::from_secs(30), || async {
        match CriDriver::connect(endpoint, Timeouts::default()).await {
            Ok(target) => target.info("").await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    if let Err(e) = ready {
        let _ = child.kill().await;
        return Err(e.context(format!("{name} log:\n{}", log_tail(log))));
    }
    Ok(())
}

/// Polls `check` every 20 ms until it succeeds or `timeout` passes; the error names `what`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// A daemon sgpc started, with the private directory everything it made lives in.
pub struct Daemon {
    child: Child,
    dir: std::path::PathBuf,
}

impl Daemon {
    pub fn new(child: Child, dir: &Path) -> Daemon {
        Daemon { child, dir: dir.to_path_buf() }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The daemon's private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the process has exited (it was killed, or crashed).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the daemon and removes everything under its directory (shims, mounts, files).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        stop_child(&mut self.child).await?;
        remove_tree_async(self.dir).await
    }
}

/// A runtime daemon sgpc started.
pub enum RuntimeDaemon {
    Containerd(containerd::Containerd),
    Crio(crio::Crio),
}

impl RuntimeDaemon {
    pub fn endpoint(&self) -> &str {
        match self {
            RuntimeDaemon::Containerd(c) => &c.endpoint,
            RuntimeDaemon::Crio(c) => &c.endpoint,
        }
    }

    /// The CNI configuration directory sgpc's config gave the runtime (empty unless a live
    /// node needs one).
    pub fn cni_dir(&self) -> std::path::PathBuf {
        match self {
            RuntimeDaemon::Containerd(c) => c.daemon.dir().join("cni"),
            RuntimeDaemon::Crio(c) => c.daemon.dir().join("cni"),
        }
    }

    fn daemon(&mut self) -> &mut Daemon {
        match self {
            RuntimeDaemon::Containerd(c) => &mut c.daemon,
            RuntimeDaemon::Crio(c) => &mut c.daemon,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            RuntimeDaemon::Containerd(c) => c.daemon.pid(),
            RuntimeDaemon::Crio(c) => c.daemon.pid(),
        }
    }

    pub fn has_exited(&mut self) -> bool {
        self.daemon().has_exited()
    }

    /// Whether the process exits within `timeout` (without being asked to).
    pub async fn exits_within(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.daemon().child.wait()).await.is_ok()
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        match self {
            RuntimeDaemon::Containerd(c) => c.daemon.stop().await,
            RuntimeDaemon::Crio(c) => c.daemon.stop().await,
        }
    }
}
