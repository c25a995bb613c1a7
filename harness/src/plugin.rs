//! The per-node plugin: sgpc as a sonobuoy DaemonSet plugin, one sgpc Pod per node judging that
//! node's own runtime over its mounted CRI socket.
//!
//! `sgpc plugin --out DIR` writes two files:
//! - `sgpc-plugin.oci.tar`, the plugin's image, built by sgpc from its own binary: the binary,
//!   the registry binary it serves its crafted images from, and the shared objects both load
//!   (listed by their ELF interpreter, as `ldd` lists them). Nothing is pulled.
//! - `sgpc-plugin.yaml`, the sonobuoy plugin definition (`sonobuoy-config` with `driver:
//!   DaemonSet`, a container `spec`, `extra-volumes`, `podSpec`; sonobuoy's
//!   `pkg/plugin/manifest` types): the container runs `sgpc run --cri ... --sonobuoy-results`,
//!   which writes the node's evidence bundle into sonobuoy's results directory, then the `done`
//!   file naming it, and waits to be stopped (a DaemonSet's Pod restarts whatever exits).
//!
//! The node's kubelet would kill every sandbox sgpc made at the CRI level (its pod clean-up
//! lists them all), so the Pod runs the cases as Pods through that kubelet (`sgpc run --cri ...
//! --node`), after pulling their images over the node's runtime socket. It needs the host's
//! network (the runtime pulls sgpc's images from the registry sgpc serves on 127.0.0.1), the
//! runtime's socket, a work root of sgpc's alone on the node, and permission to create a
//! Namespace and Pods (sonobuoy's service account).

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::image::{ImageContent, LayerEntry};
use crate::provision::registry;

/// Where the plugin's container has the node's runtime socket.
pub const SOCKET_IN_POD: &str = "/run/sgpc/cri.sock";
/// sonobuoy's results directory in a plugin's container (its `ResultsDir` default).
pub const RESULTS_DIR: &str = "/tmp/sonobuoy/results";
/// The plugin's image name (the archive's `<repository>/sgpc-plugin:<tag>`).
pub const IMAGE_NAME: &str = "sgpc-plugin";

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Elf { path: PathBuf, why: String },
    #[error("listing the shared objects of {path} with its interpreter {interpreter}: {why}")]
    List { path: PathBuf, interpreter: PathBuf, why: String },
    #[error("{flag} {path}: {why}")]
    Path { flag: &'static str, path: PathBuf, why: String },
}

/// The plugin's image: `/sgpc` (the given binary), the registry binary where the Pod's `sgpc
/// run --registry` looks ([`registry::DEFAULT_BINARY`], wherever it came from), and every shared
/// object either loads, at its path.
pub fn image(sgpc: &Path, registry: &Path) -> Result<ImageContent, PluginError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| PluginError::Read { path: path.to_path_buf(), source });
    let mut files: Vec<(String, Vec<u8>)> = vec![("sgpc".into(), read(sgpc)?), (relative(Path::new(registry::DEFAULT_BINARY)), read(registry)?)];
    let mut objects = shared_objects(sgpc)?;
    objects.extend(shared_objects(registry)?);
    objects.sort();
    objects.dedup();
    for object in objects {
        files.push((relative(&object), read(&object)?));
    }
    let mut layer = vec![LayerEntry::Dir { path: "tmp".into() }];
    let mut dirs: Vec<String> = files.iter().flat_map(|(path, _)| parents(path)).collect();
    dirs.sort();
    dirs.dedup();
    layer.extend(dirs.into_iter().map(|path| LayerEntry::Dir { path }));
    layer.extend(files.into_iter().map(|(path, data)| LayerEntry::File { path, mode: 0o755, data }));
    Ok(ImageContent { name: IMAGE_NAME.into(), layers: vec![layer], user: None, entrypoint: vec!["/sgpc".into()] })
}

fn relative(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches('/').to_string()
}

/// `a/b/c` -> `a`, `a/b`.
fn parents(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').collect();
    (1..parts.len()).map(|n| parts[..n].join("/")).collect()
}

/// The shared objects a dynamically linked executable loads, as its own ELF interpreter lists
/// them (`ld.so --list`, what `ldd` runs), the interpreter included; none for a static one.
pub fn shared_objects(executable: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let bytes = std::fs::read(executable).map_err(|source| PluginError::Read { path: executable.to_path_buf(), source })?;
    let elf = |why: String| PluginError::Elf { path: executable.to_path_buf(), why };
    let Some(interpreter) = elf_interpreter(&bytes).map_err(elf)? else {
        return Ok(Vec::new());
    };
    if !interpreter.is_absolute() {
        return Err(elf(format!("its interpreter {} is not an absolute path", interpreter.display())));
    }
    let fail = |why: String| PluginError::List { path: executable.to_path_buf(), interpreter: interpreter.clone(), why };
    let output = std::process::Command::new(&interpreter).arg("--list").arg(executable).output().map_err(|e| fail(e.to_string()))?;
    if !output.status.success() {
        return Err(fail(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim())));
    }
    let mut objects = vec![interpreter.clone()];
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "\t/lib64/ld-linux-x86-64.so.2 (0x...)",
        // "\tlinux-vdso.so.1 (0x...)" (the kernel's, no file).
        let target = line.split_once("=>").map_or(line, |(_, t)| t).trim();
        let path = target.split(" (").next().unwrap_or_default().trim();
        if path == "not found" {
            return Err(fail(format!("a shared object is missing: {}", line.trim())));
        }
        if path.starts_with('/') && !objects.iter().any(|o| o == Path::new(path)) {
            objects.push(PathBuf::from(path));
        }
    }
    Ok(objects)
}

/// The `PT_INTERP` path of a 64-bit little-endian ELF file (System V ABI, "Program Header").
fn elf_interpreter(bytes: &[u8]) -> Result<Option<PathBuf>, String> {
    const PT_INTERP: u32 = 3;
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let outside = || "a header points outside the file".to_string();
    let range = |offset: usize, len: usize| offset.checked_add(len).and_then(|end| bytes.get(offset..end)).ok_or_else(outside);
    let number = |offset: usize, len: usize| -> Result<usize, String> {
        let value = range(offset, len)?.iter().rev().fold(0u64, |n, b| n << 8 | u64::from(*b));
        usize::try_from(value).map_err(|_| outside())
    };
    let (phoff, phentsize, phnum) = (number(0x20, 8)?, number(0x36, 2)?, number(0x38, 2)?);
    for index in 0..phnum {
        let header = index.checked_mul(phentsize).and_then(|at| at.checked_add(phoff)).ok_or_else(outside)?;
        if number(header, 4)? != PT_INTERP as usize {
            continue;
        }
        let field = |at: usize| header.checked_add(at).ok_or_else(outside).and_then(|at| number(at, 8));
        let text = range(field(8)?, field(32)?)?;
        let text = std::str::from_utf8(text).map_err(|_| "PT_INTERP is not text")?;
        return Ok(Some(PathBuf::from(text.trim_end_matches('\0'))));
    }
    Ok(None)
}

/// Where the plugin's Pods find the node: the runtime's socket on the node, a work root that is
/// sgpc's alone on every node, and the kubeconfig that reaches the cluster (none: the Pod's
/// service account; sonobuoy's may create Pods, which sgpc needs).
#[derive(Debug, Clone)]
pub struct NodePaths {
    socket: PathBuf,
    work_root: PathBuf,
    kubeconfig: Option<PathBuf>,
}

/// Paths in the plugin's container that a host directory mounted at the same path must neither
/// hide nor sit in, beside the image's own files: the socket's and results' mount points, the
/// kernel's.
const POD_PATHS: &[&str] = &["/run/sgpc", "/tmp/sonobuoy", "/proc", "/sys", "/dev"];
/// Host directories a node's runtime, kubelet, CNI or etcd keeps state or logs in, and its
/// system's own: the work root is written to, so it may be none of these, inside one, or hold
/// one. (A list is never complete: the work root must also be named `sgpc...`.)
const NODE_STATE: &[&str] = &[
    "/var/lib/containerd", "/run/containerd", "/var/lib/containers", "/run/containers", "/run/crio", "/var/run",
    "/var/lib/docker", "/var/lib/rancher", "/run/k3s", "/var/lib/k0s", "/var/snap", "/var/lib/kubelet",
    "/var/log/pods", "/var/log/containers", "/var/lib/cni", "/opt/cni", "/var/lib/calico", "/var/lib/etcd", "/etc",
    "/bin", "/sbin", "/lib", "/lib64", "/usr/bin", "/usr/sbin", "/usr/lib", "/boot", "/proc", "/sys", "/dev",
];

impl NodePaths {
    /// Checks the paths before they reach a definition: absolute, without `..`, the work root
    /// clear of every node state directory and of the socket, and neither mounted directory
    /// overlapping the other, a file of the plugin's `image` or a path the container needs.
    /// Paths are compared as written: a symlink on the node (a runtime's state directory
    /// behind another name) is beyond what `sgpc plugin` can see.
    pub fn new(socket: PathBuf, work_root: PathBuf, kubeconfig: Option<PathBuf>, image: &ImageContent) -> Result<NodePaths, PluginError> {
        let bad = |flag: &'static str, path: &Path, why: String| PluginError::Path { flag, path: path.to_path_buf(), why };
        for (flag, path) in [("--socket", Some(&socket)), ("--work-root", Some(&work_root)), ("--kubeconfig", kubeconfig.as_ref())] {
            let Some(path) = path else { continue };
            if !path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) || path.parent().is_none() {
                return Err(bad(flag, path, "expected an absolute path below / without `..`".into()));
            }
            // Kubernetes expands `$(VAR)` in a container's arguments, not in its mounts.
            if path.to_str().is_none_or(|text| text.contains("$(") || text.chars().any(char::is_control)) {
                return Err(bad(flag, path, "expected UTF-8 without `$(` or control characters".into()));
            }
        }
        if !work_root.file_name().is_some_and(|name| name.to_string_lossy().starts_with("sgpc")) {
            return Err(bad("--work-root", &work_root, "expected a directory of sgpc's own, named sgpc...".into()));
        }
        let overlaps = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
        if let Some(state) = NODE_STATE.iter().find(|s| overlaps(&work_root, Path::new(s))) {
            return Err(bad("--work-root", &work_root, format!("overlaps {state}, where a node's runtime or kubelet keeps its state")));
        }
        let kubeconfig_dir = kubeconfig.as_deref().and_then(Path::parent).filter(|d| d.parent().is_some());
        if let (Some(kubeconfig), None) = (&kubeconfig, kubeconfig_dir) {
            return Err(bad("--kubeconfig", kubeconfig, "expected a file below a directory other than / (its directory is mounted)".into()));
        }
        // A mount below an image's directory is harmless; one at or above an image's file hides it.
        let image_files: Vec<PathBuf> = image.layers.iter().flatten().filter(|e| !matches!(e, LayerEntry::Dir { .. })).map(|e| Path::new("/").join(e.path())).collect();
        for (flag, dir) in [("--work-root", Some(work_root.as_path())), ("--kubeconfig", kubeconfig_dir)] {
            let Some(dir) = dir else { continue };
            if let Some(taken) = POD_PATHS.iter().map(Path::new).find(|p| overlaps(dir, p)) {
                return Err(bad(flag, dir, format!("overlaps {} in the plugin's container", taken.display())));
            }
            if let Some(hidden) = image_files.iter().find(|f| f.starts_with(dir)) {
                return Err(bad(flag, dir, format!("would hide {} of the plugin's image", hidden.display())));
            }
            if overlaps(dir, &socket) {
                return Err(bad(flag, dir, format!("overlaps the runtime's socket {}", socket.display())));
            }
        }
        if let Some(dir) = kubeconfig_dir.filter(|d| overlaps(d, &work_root)) {
            return Err(bad("--kubeconfig", dir, format!("overlaps the work root {}", work_root.display())));
        }
        Ok(NodePaths { socket, work_root, kubeconfig })
    }
}

/// The sonobuoy plugin definition for the image `image` (a reference the nodes can pull or
/// already hold).
pub fn sonobuoy_definition(image: &str, paths: &NodePaths) -> serde_json::Value {
    let pod = pod_parts(image, paths);
    json!({
        "sonobuoy-config": {"driver": "DaemonSet", "plugin-name": "sgpc", "result-format": "junit", "description": "sgpc: supplementalGroupsPolicy conformance of each node's container runtime"},
        "spec": pod.container,
        "extra-volumes": pod.volumes,
        // sonobuoy uses a plugin's podSpec as given: its service account (the aggregator's
        // permissions, which may create Namespaces and Pods) must be named here.
        "podSpec": {"serviceAccountName": "sonobuoy-serviceaccount", "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet", "restartPolicy": "Always", "tolerations": [{"operator": "Exists"}]},
    })
}

/// The same Pod as a DaemonSet of its own, for a cluster without sonobuoy: sonobuoy's results
/// directory is then a host directory (`results`) sgpc collects the bundles from.
pub fn daemonset(image: &str, paths: &NodePaths, namespace: &str, results: &Path) -> serde_json::Value {
    let pod = pod_parts(image, paths);
    let mut volumes = pod.volumes;
    volumes.push(json!({"name": "results", "hostPath": {"path": results, "type": "Directory"}}));
    let labels = json!({"app.kubernetes.io/name": "sgpc-plugin"});
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "sgpc-plugin", "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"hostNetwork": true, "tolerations": [{"operator": "Exists"}], "containers": [pod.container], "volumes": volumes},
            },
        },
    })
}

struct PodParts {
    container: serde_json::Value,
    volumes: Vec<serde_json::Value>,
}

/// The plugin's container and volumes. The node's kubelet would kill every sandbox it did not
/// make (its pod cleanup lists them all), so the cases run as Pods through that kubelet
/// (`--node`), their images pulled over the mounted socket first.
fn pod_parts(image: &str, paths: &NodePaths) -> PodParts {
    let work_root = paths.work_root.to_string_lossy();
    let mut args: Vec<String> = [
        "run", "--cri", &format!("unix://{SOCKET_IN_POD}"), "--node", "$(NODE_NAME)", "--work-root", &work_root, "--registry", registry::DEFAULT_BINARY,
        "--sonobuoy-results", RESULTS_DIR, "--bundle", &format!("{RESULTS_DIR}/sgpc-$(NODE_NAME).tar.gz"),
    ]
    .map(String::from)
    .to_vec();
    let mut mounts = vec![
        json!({"name": "cri-socket", "mountPath": SOCKET_IN_POD}),
        json!({"name": "work-root", "mountPath": work_root}),
        json!({"name": "results", "mountPath": RESULTS_DIR}),
    ];
    let mut volumes = vec![
        json!({"name": "cri-socket", "hostPath": {"path": paths.socket, "type": "Socket"}}),
        json!({"name": "work-root", "hostPath": {"path": paths.work_root, "type": "DirectoryOrCreate"}}),
    ];
    // The kubeconfig's directory at the same path: it may name its CA file by path.
    if let Some(kubeconfig) = &paths.kubeconfig {
        let dir = kubeconfig.parent().unwrap_or(Path::new("/"));
        args.extend(["--kubeconfig".to_string(), kubeconfig.to_string_lossy().into_owned()]);
        mounts.push(json!({"name": "kubeconfig", "mountPath": dir, "readOnly": true}));
        volumes.push(json!({"name": "kubeconfig", "hostPath": {"path": dir, "type": "Directory"}}));
    }
    let container = json!({
        "name": "sgpc",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/sgpc"],
        "args": args,
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SGPC_STATE_DIR", "value": format!("{work_root}/state")},
        ],
        "securityContext": {"runAsUser": 0},
        "volumeMounts": mounts,
    });
    PodParts { container, volumes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpreter_is_read_from_the_program_headers() {
        let sgpc = std::env::current_exe().unwrap();
        let interpreter = elf_interpreter(&std::fs::read(&sgpc).unwrap()).unwrap().expect("a test binary is dynamically linked");
        assert!(interpreter.is_absolute() && interpreter.exists(), "{interpreter:?}");
        assert_eq!(elf_interpreter(crate::image::PROBE_PROGRAM).unwrap(), None, "the probe is static");
        assert!(elf_interpreter(b"#!/bin/sh\n").is_err());
        assert!(elf_interpreter(b"\x7fELF\x02\x01").is_err(), "cut short");
        // A program header table at the end of the address space: no overflow, an error.
        let mut hostile = vec![0u8; 64];
        hostile[..6].copy_from_slice(b"\x7fELF\x02\x01");
        hostile[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        hostile[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        hostile[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        assert!(elf_interpreter(&hostile).is_err());
    }

    #[test]
    fn shared_objects_are_those_the_loader_lists() {
        let objects = shared_objects(&std::env::current_exe().unwrap()).unwrap();
        assert!(objects.iter().any(|o| o.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libc.so"))), "{objects:?}");
        assert!(objects.iter().all(|o| o.is_absolute() && o.exists()), "{objects:?}");
    }

    #[test]
    fn the_plugin_pod_mounts_the_work_root_at_its_own_path() {
        let paths = NodePaths::new("/run/containerd/containerd.sock".into(), "/var/lib/sgpc-plugin".into(), None, &test_image()).unwrap();
        let definition = sonobuoy_definition("sgpc/sgpc-plugin:x", &paths);
        assert_eq!(definition["sonobuoy-config"]["driver"], "DaemonSet");
        let mounts = definition["spec"]["volumeMounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["name"] == "work-root" && m["mountPath"] == "/var/lib/sgpc-plugin"));
        assert!(definition["extra-volumes"].as_array().unwrap().iter().any(|v| v["hostPath"]["path"] == "/var/lib/sgpc-plugin"));
        assert_eq!(definition["podSpec"]["serviceAccountName"], "sonobuoy-serviceaccount", "sonobuoy takes a plugin's podSpec as given");
    }

    /// The image's files as `image` lays them out, a shared object under a build host's own prefix among them.
    fn test_image() -> ImageContent {
        let file = |path: &str| LayerEntry::File { path: path.into(), mode: 0o755, data: Vec::new() };
        let dir = |path: &str| LayerEntry::Dir { path: path.into() };
        let layer = vec![dir("tmp"), dir("usr"), dir("usr/bin"), file("sgpc"), file("usr/bin/docker-registry"), file("nix/store/abc-glibc/lib/libc.so.6")];
        ImageContent { name: IMAGE_NAME.into(), layers: vec![layer], user: None, entrypoint: Vec::new() }
    }

    #[test]
    fn node_paths_refuse_what_would_hide_or_write_into_something_else() {
        use std::os::unix::ffi::OsStrExt;
        let socket = PathBuf::from("/run/containerd/containerd.sock");
        let image = test_image();
        let ok = |work: &str, kubeconfig: Option<&str>| NodePaths::new(socket.clone(), work.into(), kubeconfig.map(PathBuf::from), &image);
        assert!(ok("/var/lib/sgpc-plugin", Some("/etc/kubernetes/admin.conf")).is_ok());
        assert!(ok("/usr/local/sgpc", Some("/tmp/k/admin.conf")).is_ok(), "below an image's directory, hiding none of its files");
        for (work, kubeconfig, flag) in [
            ("var/lib/sgpc-plugin", None, "--work-root"),
            ("/var/lib/sgpc/../containerd", None, "--work-root"),
            ("/", None, "--work-root"),
            ("/var/lib/containerd/sgpc", None, "--work-root"),
            ("/var/lib", None, "--work-root"),
            ("/usr", None, "--work-root"),
            ("/usr/bin/sgpc", None, "--work-root"),
            ("/tmp/sonobuoy/work", None, "--work-root"),
            ("/var/lib/sgpc-plugin", Some("admin.conf"), "--kubeconfig"),
            ("/var/lib/sgpc-plugin", Some("/admin.conf"), "--kubeconfig"),
            ("/var/lib/sgpc-plugin", Some("/usr/bin/admin.conf"), "--kubeconfig"),
            ("/var/lib/sgpc-plugin", Some("/nix/store/admin.conf"), "--kubeconfig"),
            ("/var/log", None, "--work-root"),
            ("/var/lib/sgpc-plugin", Some("/run/containerd/admin.conf"), "--kubeconfig"),
            ("/var/lib/sgpc-plugin", Some("/var/lib/sgpc-plugin/admin.conf"), "--kubeconfig"),
            ("/var/lib/work", None, "--work-root"),
            ("/mnt/$(NODE_NAME)/sgpc", None, "--work-root"),
            ("/srv/sgpc\nx", None, "--work-root"),
        ] {
            let error = ok(work, kubeconfig).expect_err(&format!("{work} {kubeconfig:?}")).to_string();
            assert!(error.starts_with(flag), "{work} {kubeconfig:?}: {error}");
        }
        // Only the socket itself is mounted: a socket at / is no reason to refuse anything, a
        // work root holding the socket is.
        assert!(NodePaths::new("/cri.sock".into(), "/var/lib/sgpc-plugin".into(), Some("/etc/kubernetes/admin.conf".into()), &image).is_ok());
        let non_utf8 = PathBuf::from(std::ffi::OsStr::from_bytes(b"/srv/sgpc-\xff"));
        assert!(NodePaths::new(socket.clone(), non_utf8, None, &image).unwrap_err().to_string().starts_with("--work-root"));
        let error = NodePaths::new("/srv/sgpc/cri.sock".into(), "/srv/sgpc".into(), None, &image).unwrap_err().to_string();
        assert!(error.starts_with("--work-root") && error.contains("socket"), "{error}");
    }
}
