//! Shared set-up for the integration tests: where the repository and containerd binaries are.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sgpc::run::{SessionConfig, TargetChoice};
use sgpc::scenario::Catalogue;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn catalogue() -> Catalogue {
    let root = repo_root();
    Catalogue::load(&root.join("scenarios"), &root.join("images")).expect("the shipped catalogue loads")
}

/// The containerd 2.x binaries: `SGPC_CONTAINERD_DIR`, else where `make setup` puts them.
/// A missing directory fails the test: these tests are meant to run against real containerd.
pub fn containerd_dir() -> PathBuf {
    let dir = std::env::var_os("SGPC_CONTAINERD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/debs/sid/containerd/usr/bin"));
    assert!(
        dir.join("containerd").is_file(),
        "no containerd in {}: run `make setup` (or set SGPC_CONTAINERD_DIR)",
        dir.display()
    );
    dir
}

pub fn containerd_config() -> SessionConfig {
    SessionConfig::new(TargetChoice::Containerd { bin_dir: containerd_dir() })
}

pub fn sgpc_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sgpc"))
}

/// critest, which `make setup` builds (`sgpc build critest v1.37.0`); a test that needs it
/// fails naming the command when it is missing, it never passes without it.
pub fn critest() -> PathBuf {
    let version = sgpc::critest::VERSION.parse().unwrap();
    let dir = sgpc::provision::gomodule::built(sgpc::provision::gomodule::Program::Critest, &version);
    dir.unwrap_or_else(|| panic!("critest {version} is not built: run `make setup` (sgpc build critest {version})")).join("critest")
}

/// The sonobuoy CLI, which `make setup` builds (`sgpc build sonobuoy v0.57.5`); a test that
/// needs it fails naming the command when it is missing.
pub fn sonobuoy() -> PathBuf {
    let version = sgpc::provision::gomodule::SONOBUOY_VERSION.parse().unwrap();
    let dir = sgpc::provision::gomodule::built(sgpc::provision::gomodule::Program::Sonobuoy, &version);
    dir.unwrap_or_else(|| panic!("sonobuoy {version} is not built: run `make setup` (sgpc build sonobuoy {version})")).join("sonobuoy")
}

/// CRI-O binaries (crio, conmon, pinns, runc or crun) from `SGPC_CRIO_DIR`, or why there are
/// none: CRI-O is not packaged for Debian, so these tests run where someone built or
/// installed it.
/// The first directory of `SGPC_CRIO_DIR`: the CRI-O the conformance trials run on.
pub fn crio_dir() -> Result<PathBuf, String> {
    crio_dirs()?.into_iter().next().ok_or_else(|| "SGPC_CRIO_DIR names no directory".to_string())
}

/// The CRI-O the conformance trials run on: the first directory of `SGPC_CRIO_DIR` when it is
/// set, else the release `make setup` builds from its Go module (`SGPC_CRIO_MODULE`, else
/// v1.36.3) over Debian's runc.
pub fn crio_config() -> Result<SessionConfig, String> {
    if std::env::var_os("SGPC_CRIO_DIR").is_some() {
        return Ok(SessionConfig::new(TargetChoice::Crio { bin_dir: crio_dir()?, oci_runtime: None }));
    }
    let version = std::env::var("SGPC_CRIO_MODULE").unwrap_or_else(|_| "v1.36.3".into());
    let parsed = version.parse().map_err(|e| format!("SGPC_CRIO_MODULE: {e}"))?;
    let dir = sgpc::provision::gomodule::built(sgpc::provision::gomodule::Program::Crio, &parsed).ok_or_else(|| format!("CRI-O {version} is not built (make setup builds it: sgpc build crio {version})"))?;
    Ok(SessionConfig::new(TargetChoice::Crio { bin_dir: dir, oci_runtime: Some(crio_runc()?) }))
}

/// The runc the CRI-O trials run: the release `make setup` builds (`SGPC_RUNC_MODULE`, runc >= 1.2
/// mounts ID-mapped, so `hostUsers: false` cases run), else Debian's.
fn crio_runc() -> Result<sgpc::provision::containerd::OciRuntime, String> {
    let Ok(version) = std::env::var("SGPC_RUNC_MODULE") else { return Ok(sgpc::provision::containerd::OciRuntime::runc()) };
    let parsed = version.parse().map_err(|e| format!("SGPC_RUNC_MODULE: {e}"))?;
    let dir = sgpc::provision::gomodule::built(sgpc::provision::gomodule::Program::Runc, &parsed).ok_or_else(|| format!("runc {version} is not built (make setup builds it: sgpc build runc {version})"))?;
    Ok(sgpc::provision::containerd::OciRuntime { handler: "runc".into(), binary: dir.join("runc") })
}

/// What a `hostUsers: false` case gives on a runtime of the trials: the containerd trials run
/// Debian's runc 1.1, which cannot mount ID-mapped (and over a newer runc, a containerd sgpc
/// starts has no Pod network: `verdict::USERNS_NEEDS_POD_NETWORK`); CRI-O runs it over the runc
/// `make setup` builds.
pub fn userns_not_run(kind: &str) -> Option<&'static str> {
    match kind {
        "containerd" => Some("does not advertise user namespaces"),
        _ if std::env::var_os("SGPC_RUNC_MODULE").is_none() && std::env::var_os("SGPC_CRIO_DIR").is_none() => Some("does not advertise user namespaces"),
        _ => None,
    }
}

/// Every directory of `SGPC_CRIO_DIR` (colon-separated, like PATH): one CRI-O version each.
pub fn crio_dirs() -> Result<Vec<PathBuf>, String> {
    let value = std::env::var_os("SGPC_CRIO_DIR").ok_or("SGPC_CRIO_DIR is not set (directories of CRI-O binaries, separated by ':')")?;
    std::env::split_paths(&value)
        .map(|dir| sgpc::provision::crio::find_binaries(&dir, None).map(|_| dir).map_err(|e| format!("{e:#}")))
        .collect()
}

/// A JSON run report of the whole catalogue on the containerd 2.x of `make setup` (at the CRI or
/// the Kubernetes level): every case there, and none other than its known findings (FAIL or
/// REFUSED) and the `hostUsers: false` Pods (NOT RUN: no Pod network) not PASS. `context` is
/// printed with a failure (a Pod's logs, say).
pub fn assert_containerd_2_judged_everything(report: &serde_json::Value, catalogue: &sgpc::scenario::Catalogue, context: &str) {
    let cases = report["cases"].as_array().unwrap_or_else(|| panic!("no cases: {}\n{context}", report["setup_error"]));
    assert_eq!(cases.len(), catalogue.cases().len(), "the whole catalogue\n{context}");
    for case in cases {
        let id = format!("{}/{}", case["id"]["scenario"].as_str().unwrap(), case["id"]["policy"].as_str().unwrap());
        let verdict = case["verdict"]["kind"].as_str().unwrap();
        let known = CONTAINERD_KNOWN_FINDINGS.iter().any(|(k, _, _)| *k == id);
        let userns = catalogue.scenario(case["id"]["scenario"].as_str().unwrap()).unwrap().pod.user_namespace();
        let allowed = match (known, userns) {
            (true, _) => verdict == "FAIL" || verdict == "REFUSED",
            (false, true) => verdict == "NOT_RUN",
            (false, false) => verdict == "PASS",
        };
        assert!(allowed, "{id}: {verdict} {}\n{context}", case["reasons"]);
    }
}

/// What the containerd 2.x of `make setup` (2.1 with runc) shows where it does not PASS: each
/// case with its verdict and a text its first reason must contain. Pinned so that a change
/// (the bug fixed, another failure) fails the tests; the verdicts stay what they are.
pub const CONTAINERD_KNOWN_FINDINGS: &[(&str, sgpc::verdict::Verdict, &str)] = &[
    // containerd/containerd#11937 (open): a group named like the user is left out.
    ("same-name-group/default", sgpc::verdict::Verdict::Fail, sgpc::verdict::CONTAINERD_11937),
    ("same-name-group/merge", sgpc::verdict::Verdict::Fail, sgpc::verdict::CONTAINERD_11937),
    // containerd 2.x passes the image's gids to runc as additionalGids, and runc refuses any
    // above 2147483647; the Kubernetes API does not validate image gids, the kernel takes them.
    ("gid-2147483648/default", sgpc::verdict::Verdict::Refused, "uids and gids must be in range 0-2147483647"),
    ("gid-2147483648/merge", sgpc::verdict::Verdict::Refused, "uids and gids must be in range 0-2147483647"),
    ("gid-4294967294/default", sgpc::verdict::Verdict::Refused, "uids and gids must be in range 0-2147483647"),
    ("gid-4294967294/merge", sgpc::verdict::Verdict::Refused, "uids and gids must be in range 0-2147483647"),
];

/// Every entry up to `depth` levels below `root`, symlinks not followed; nothing if it is absent.
fn entries(root: &Path, depth: usize, out: &mut BTreeSet<PathBuf>) {
    let Ok(dir) = std::fs::read_dir(root) else { return };
    for entry in dir.flatten() {
        let path = entry.path();
        out.insert(path.clone());
        if depth > 1 && entry.file_type().is_ok_and(|t| t.is_dir()) {
            entries(&path, depth - 1, out);
        }
    }
}

/// The cgroup hierarchies: each v1 controller's mount, or the unified v2 root itself.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    std::fs::read_dir(root).unwrap().flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect()
}

/// What the host's own runtimes keep: the paths the issue found sgpc's leftovers in.
pub fn host_runtime_paths() -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for (root, depth) in [("/run/containerd", 3), ("/run/runc", 1), ("/run/crio", 1), ("/var/lib/containers", 2)] {
        entries(Path::new(root), depth, &mut out);
    }
    for hierarchy in cgroup_hierarchies() {
        let namespace = hierarchy.join("k8s.io");
        out.extend(subdirectories(&namespace));
        out.extend(subdirectories(&hierarchy).into_iter().filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("sgpc-"))));
    }
    out
}

fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).into_iter().flatten().flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect()
}

/// What [`host_runtime_paths`] lists now that it did not in `before`, but for the directories
/// containerd shares between instances when they hold nothing (sgpc leaves those; see
/// `provision/host_paths.rs`).
pub fn new_host_runtime_paths(before: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let shared_and_empty = |p: &PathBuf| {
        (p == Path::new("/run/containerd") || p == Path::new("/run/containerd/s")) && std::fs::read_dir(p).is_ok_and(|mut e| e.next().is_none())
    };
    host_runtime_paths().difference(before).filter(|p| !shared_and_empty(p)).cloned().collect()
}

/// One file of an image archive's layers: (archive, layer index, path, bytes; `None` for a
/// directory or a link).
pub type LayerFile = (String, usize, String, Option<Vec<u8>>);

/// Every entry of every layer of each `*.oci.tar` in `dir`, bottom layer first, read through
/// the archive's own index and manifest.
pub fn archive_layer_files(dir: &Path) -> Vec<LayerFile> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(".oci.tar")).collect();
    names.sort();
    for archive in names {
        let mut blobs = std::collections::BTreeMap::new();
        for entry in tar::Archive::new(std::fs::File::open(&archive).unwrap()).entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            blobs.insert(entry.path().unwrap().to_string_lossy().into_owned(), data);
        }
        let blob = |digest: &serde_json::Value| blobs[&format!("blobs/sha256/{}", digest.as_str().unwrap().trim_start_matches("sha256:"))].clone();
        let index: serde_json::Value = serde_json::from_slice(&blobs["index.json"]).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&blob(&index["manifests"][0]["digest"])).unwrap();
        let name = archive.file_name().unwrap().to_string_lossy().trim_end_matches(".oci.tar").to_string();
        for (layer, descriptor) in manifest["layers"].as_array().unwrap().iter().enumerate() {
            let tar = flate2::read::GzDecoder::new(std::io::Cursor::new(blob(&descriptor["digest"])));
            for entry in tar::Archive::new(tar).entries().unwrap() {
                let mut entry = entry.unwrap();
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                let data = entry.header().entry_type().is_file().then(|| {
                    let mut data = Vec::new();
                    entry.read_to_end(&mut data).unwrap();
                    data
                });
                out.push((name.clone(), layer, path, data));
            }
        }
    }
    out
}

/// Lists every layer file of the archives in `dir` and asserts that none came from the host:
/// each regular file is a program sgpc compiled (probe, pause, escalation) or a planted `/etc`
/// file or whiteout, and none is byte-equal to the host's busybox, `/etc/passwd` or `/etc/group`.
pub fn assert_archives_hold_no_host_file(dir: &Path) {
    let host: Vec<Vec<u8>> = ["/bin/busybox", "/etc/passwd", "/etc/group"].iter().filter_map(|p| std::fs::read(p).ok()).collect();
    let own = [("probe", sgpc::image::PROBE_PROGRAM), ("pause", sgpc::image::PAUSE_PROGRAM), ("escalate", sgpc::escalation::PROGRAM_BYTES)];
    let files = archive_layer_files(dir);
    assert!(files.iter().any(|(image, ..)| image == "kep-blog"), "the archives hold the catalogue's images");
    for (image, layer, path, data) in &files {
        let Some(data) = data else {
            eprintln!("{image} layer {layer}: {path} (directory or link)");
            continue;
        };
        let what = own.iter().find(|(_, bytes)| bytes == data).map(|(name, _)| *name);
        eprintln!("{image} layer {layer}: {path} ({} bytes, {})", data.len(), what.unwrap_or("planted"));
        assert!(what.is_some() || path.starts_with("etc/"), "{image} layer {layer}: {path} is neither a program sgpc built nor a planted /etc file");
        assert!(!host.contains(data), "{image} layer {layer}: {path} is a host file");
    }
}
