//! What a runtime sgpc starts leaves in the host's own paths because it cannot be told
//! otherwise, found from the run directory alone and removed, so that a run killed with SIGKILL
//! leaves nothing there after `sgpc clean`:
//!
//! - containerd's shim sockets, `/run/containerd/s/<sha256(address/namespace/id)>`: the
//!   directory is a constant in containerd (`pkg/shim/util_unix.go`, `SocketAddress`, 1.6 to
//!   2.x), not a setting; the ids are those of the tasks in the instance's private state.
//! - cgroups. Sandboxes sgpc creates itself get the cgroup parent `/<run id>` (one tree per run,
//!   [`cgroup_parent`]); a live node's kubelet sends none (with `cgroupsPerQOS: false` its pod
//!   cgroup parent is empty: `podContainerManagerNoop`), so containerd puts those under its
//!   namespace, `k8s.io/<id>`, where only the ids this run's runtime knows are removed.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// containerd's fixed shim socket directory.
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// Where the cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The cgroup that containerd's CRI plugin uses for a sandbox with no cgroup parent.
const CONTAINERD_CRI_NAMESPACE: &str = "k8s.io";

/// The cgroup parent sgpc sends for the sandboxes of a runtime it started: one tree per run.
pub fn cgroup_parent(run_id: &str) -> String {
    format!("/{run_id}")
}

/// A task (sandbox or container) of a containerd instance under a run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The instance's gRPC address, which its shims are given as `-address`.
    pub address: PathBuf,
    pub namespace: String,
    pub id: String,
}

impl Task {
    /// The shim sockets containerd derives for this task: the shim's own and its debug socket.
    pub fn shim_sockets(&self) -> [PathBuf; 2] {
        let base = clean(&self.address.join(&self.namespace).join(&self.id));
        [base.clone(), base.join("debug")].map(|path| Path::new(SHIM_SOCKET_DIR).join(hex::encode(Sha256::digest(path.as_os_str().as_encoded_bytes()))))
    }
}

/// The path as Go's `filepath.Clean` gives it for an absolute path (containerd hashes
/// `filepath.Join`'s result): no `.`, no repeated separator, `..` taken lexically.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The file, in a containerd instance's directory, where sgpc notes the id of every sandbox and
/// container it creates there: a shim killed before its task was deleted leaves its socket
/// behind after containerd has removed the task's own state.
pub fn task_ledger(instance_dir: &Path) -> PathBuf {
    instance_dir.join("sgpc-task-ids")
}

/// Runtime ids are 64 lowercase hex digits (containerd's and runc's); anything else read from
/// a directory is not used to name a host path.
fn is_runtime_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    // `file_type` does not follow symlinks: a link planted in the tree leads nowhere.
    entries.filter_map(Result::ok).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect()
}

fn names(dir: &Path) -> Vec<String> {
    subdirectories(dir).iter().filter_map(|p| Some(p.file_name()?.to_str()?.to_string())).collect()
}

/// The private state directories (`state/io.containerd.runtime.v2.task`) of every containerd
/// instance at most two levels below `dir`, where the config sgpc writes puts them.
fn containerd_task_roots(dir: &Path) -> Vec<PathBuf> {
    let mut instances = vec![dir.to_path_buf()];
    for child in subdirectories(dir) {
        instances.extend(subdirectories(&child));
        instances.push(child);
    }
    // Neither component may be a link: a planted one would name another instance's tasks.
    let real_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    instances.into_iter().filter(|i| real_dir(&i.join("state"))).map(|i| i.join("state/io.containerd.runtime.v2.task")).filter(|root| real_dir(root)).collect()
}

/// The tasks of every containerd instance under `dir` (`containerd_task_roots`).
pub fn containerd_tasks(dir: &Path) -> Vec<Task> {
    let mut tasks = Vec::new();
    for task_root in containerd_task_roots(dir) {
        let Some(instance) = task_root.parent().and_then(Path::parent) else { continue };
        let address = instance.join("containerd.sock");
        for namespace in names(&task_root) {
            for id in names(&task_root.join(&namespace)).into_iter().filter(|id| is_runtime_id(id)) {
                tasks.push(Task { address: address.clone(), namespace: namespace.clone(), id });
            }
        }
        let noted = std::fs::read_to_string(task_ledger(instance)).unwrap_or_default();
        for id in noted.lines().filter(|id| is_runtime_id(id)) {
            let task = Task { address: address.clone(), namespace: CONTAINERD_CRI_NAMESPACE.into(), id: id.to_string() };
            if !tasks.contains(&task) {
                tasks.push(task);
            }
        }
    }
    tasks
}

/// Every cgroup hierarchy: the v1 controllers' mounts (not the links between them), or the
/// unified v2 root itself.
fn hierarchies() -> Vec<PathBuf> {
    let controllers = subdirectories(Path::new(CGROUP_ROOT));
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        vec![PathBuf::from(CGROUP_ROOT)]
    } else {
        controllers
    }
}

/// Removes a cgroup and every cgroup below it, deepest first. A cgroup whose last task has just
/// been killed can stay busy for a moment, so a busy one is tried again for up to two seconds.
fn remove_cgroup_tree(cgroup: &Path) -> std::io::Result<()> {
    for child in subdirectories(cgroup) {
        remove_cgroup_tree(&child)?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(cgroup) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e),
        }
    }
}

/// The host paths a run directory's runtimes left: shim sockets that exist, and cgroups.
pub fn leftovers(run_dir: &Path) -> Vec<PathBuf> {
    let tasks = containerd_tasks(run_dir);
    let sockets = tasks.iter().flat_map(Task::shim_sockets).filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()));
    let run_id = run_dir.file_name().and_then(|n| n.to_str()).filter(|n| n.starts_with("sgpc-"));
    let cgroups = hierarchies().into_iter().flat_map(|h| {
        let run_tree = run_id.map(|id| h.join(id));
        let namespaced = tasks.iter().map(move |t| h.join(CONTAINERD_CRI_NAMESPACE).join(&t.id));
        run_tree.into_iter().chain(namespaced).collect::<Vec<_>>()
    });
    sockets.chain(cgroups.filter(|p| p.is_dir())).collect()
}

/// Removes what [`leftovers`] finds; returns what could not be removed and why. Call it once
/// no process of the run is left (a cgroup with a task cannot go). The directories containerd
/// shares between instances (`/run/containerd/s`, `<hierarchy>/k8s.io`) stay, even empty: a
/// shim or runc of another run creates them and then its entry in them, and removing them in
/// between would fail that run.
pub fn remove_leftovers(run_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for path in leftovers(run_dir) {
        let removed = if path.starts_with(CGROUP_ROOT) { remove_cgroup_tree(&path) } else { std::fs::remove_file(&path) };
        if let Err(e) = removed {
            problems.push(format!("removing {}: {e}", path.display()));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "5f1b0c7a9e2d4c3b8a6f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b";

    #[test]
    fn shim_sockets_are_derived_as_containerd_does() {
        // sha256("/run/sgpc-x/containerd/containerd.sock/k8s.io/<ID>"), computed independently
        // with `printf %s … | sha256sum`.
        let task = Task { address: PathBuf::from("/run/sgpc-x/containerd/containerd.sock"), namespace: "k8s.io".into(), id: ID.into() };
        let [socket, debug] = task.shim_sockets();
        assert_eq!(socket, Path::new(SHIM_SOCKET_DIR).join(EXPECTED_SOCKET));
        assert_ne!(socket, debug);
    }

    #[test]
    fn the_address_is_cleaned_as_go_joins_it() {
        let messy = Task { address: PathBuf::from("/run//sgpc-x/./containerd/../containerd/containerd.sock"), namespace: "k8s.io".into(), id: ID.into() };
        assert_eq!(messy.shim_sockets()[0], Path::new(SHIM_SOCKET_DIR).join(EXPECTED_SOCKET));
    }

    const EXPECTED_SOCKET: &str = "324e34c7342b845e07e9db7fe8f9aa85d8539b7284f388152d23225b5410ec93";

    #[test]
    fn tasks_are_found_in_the_instances_private_state_only_with_runtime_ids() {
        let run = tempfile::tempdir().unwrap();
        let tasks = run.path().join("containerd/state/io.containerd.runtime.v2.task/k8s.io");
        std::fs::create_dir_all(tasks.join(ID)).unwrap();
        std::fs::create_dir_all(tasks.join("not-an-id")).unwrap();
        std::os::unix::fs::symlink("/", tasks.join(ID.replace('5', "6"))).unwrap();
        let found = containerd_tasks(run.path());
        assert_eq!(found, vec![Task { address: run.path().join("containerd/containerd.sock"), namespace: "k8s.io".into(), id: ID.into() }]);
    }

    #[test]
    fn a_task_noted_in_the_ledger_is_found_after_its_state_is_gone() {
        let run = tempfile::tempdir().unwrap();
        let instance = run.path().join("containerd");
        std::fs::create_dir_all(instance.join("state/io.containerd.runtime.v2.task/k8s.io")).unwrap();
        std::fs::write(task_ledger(&instance), format!("{ID}\n../../etc\n")).unwrap();
        let found = containerd_tasks(run.path());
        assert_eq!(found, vec![Task { address: instance.join("containerd.sock"), namespace: "k8s.io".into(), id: ID.into() }]);
    }

    #[test]
    fn only_a_run_directory_names_a_cgroup_tree() {
        let dir = tempfile::tempdir().unwrap();
        assert!(leftovers(dir.path()).is_empty(), "a directory not named sgpc-* and holding no task names nothing");
        assert_eq!(cgroup_parent("sgpc-abc123"), "/sgpc-abc123");
    }
}
