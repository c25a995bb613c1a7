//! kind clusters for the Kubernetes level: the generated cluster config, and the `kind` commands
//! to create a cluster, load sgpc's image archives into it, and delete it.
//!
//! The containerd inside a `kindest/node` image is the one of the kind release that built it:
//! kind v0.26 and older ship containerd 1.7 (no Strict support), v0.27 ships 2.0.2, v0.28 2.1.0,
//! v0.30 2.1.4, v0.31 2.2.0. A node image tells the Kubernetes version, not the runtime's.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// One cluster to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// kind cluster name (`sgpc-...`).
    pub name: String,
    /// Node image, e.g. `kindest/node:v1.33.1`, or a CRI-O node built from `kind/crio`.
    pub node_image: String,
    /// Kubernetes minor version of the node image (31 for v1.31.x).
    pub minor: u32,
    /// The node runs CRI-O (`kind/crio/Dockerfile`) instead of containerd.
    pub crio: bool,
}

/// Whether `SupplementalGroupsPolicy` must be switched on: alpha (off by default) in 1.31 and
/// 1.32, beta (on) from 1.33, GA in 1.35.
pub fn needs_feature_gate(minor: u32) -> bool {
    minor < 33
}

/// The kind cluster config for a spec (the top-level `kind-config.yaml` is the containerd
/// template; `kind/crio-config.yaml` the CRI-O one).
pub fn config(spec: &ClusterSpec) -> String {
    let mut text = String::from("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n");
    if needs_feature_gate(spec.minor) {
        text.push_str("featureGates:\n  SupplementalGroupsPolicy: true\n");
    }
    text.push_str(&format!("nodes:\n  - role: control-plane\n    image: {}\n", spec.node_image));
    if spec.crio {
        text.push_str(
            "    kubeadmConfigPatches:\n      - |\n        kind: InitConfiguration\n        nodeRegistration:\n          criSocket: unix:///var/run/crio/crio.sock\n      - |\n        kind: JoinConfiguration\n        nodeRegistration:\n          criSocket: unix:///var/run/crio/crio.sock\n",
        );
    }
    text
}

/// Finds the `kind` binary on PATH; the error says what is missing.
pub fn find_kind() -> anyhow::Result<PathBuf> {
    find_kind_in(&std::env::var_os("PATH").unwrap_or_default())
}

/// Finds `kind` in a PATH-style list of directories.
pub fn find_kind_in(path: &std::ffi::OsStr) -> anyhow::Result<PathBuf> {
    std::env::split_paths(path)
        .map(|d| d.join("kind"))
        .find(|p| p.is_file())
        .context("`kind` is not on PATH: install kind (Debian unstable packages it as `kind`) to run the Kubernetes level")
}

/// The commands, as argument lists, so that they can be shown and tested.
pub fn create_args(spec: &ClusterSpec, config_file: &Path) -> Vec<String> {
    vec![
        "create".into(),
        "cluster".into(),
        "--name".into(),
        spec.name.clone(),
        "--config".into(),
        config_file.display().to_string(),
        "--wait".into(),
        "180s".into(),
    ]
}

pub fn load_args(spec: &ClusterSpec, archive: &Path) -> Vec<String> {
    vec!["load".into(), "image-archive".into(), archive.display().to_string(), "--name".into(), spec.name.clone()]
}

pub fn delete_args(spec: &ClusterSpec) -> Vec<String> {
    vec!["delete".into(), "cluster".into(), "--name".into(), spec.name.clone()]
}

fn run_kind(kind: &Path, args: &[String]) -> anyhow::Result<String> {
    let output = Command::new(kind).args(args).output().with_context(|| format!("running kind {}", args.join(" ")))?;
    if !output.status.success() {
        bail!("kind {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether a cluster of that name exists (for `--reuse-cluster`).
pub fn exists(kind: &Path, name: &str) -> anyhow::Result<bool> {
    Ok(run_kind(kind, &["get".into(), "clusters".into()])?.lines().any(|l| l.trim() == name))
}

/// Creates the cluster unless `reuse` and it exists; returns whether sgpc created it (and so
/// must delete it).
pub fn create(kind: &Path, spec: &ClusterSpec, work_dir: &Path, reuse: bool) -> anyhow::Result<bool> {
    if reuse && exists(kind, &spec.name)? {
        return Ok(false);
    }
    let config_file = work_dir.join(format!("{}.kind.yaml", spec.name));
    fs_err::write(&config_file, config(spec))?;
    run_kind(kind, &create_args(spec, &config_file)).with_context(|| format!("creating kind cluster {} from {}", spec.name, spec.node_image))?;
    Ok(true)
}

pub fn load_archive(kind: &Path, spec: &ClusterSpec, archive: &Path) -> anyhow::Result<()> {
    run_kind(kind, &load_args(spec, archive)).map(|_| ())
}

/// The cluster's kubeconfig (`kind get kubeconfig`).
pub fn kubeconfig(kind: &Path, spec: &ClusterSpec) -> anyhow::Result<String> {
    run_kind(kind, &["get".into(), "kubeconfig".into(), "--name".into(), spec.name.clone()])
}

/// The Kubernetes minor version in a node image tag (`kindest/node:v1.33.1` -> 33).
pub fn minor_of(node_image: &str) -> Option<u32> {
    let tag = node_image.rsplit_once(':')?.1;
    tag.trim_start_matches('v').split('.').nth(1)?.parse().ok()
}

/// A spec for a node image: cluster `sgpc-v1-<minor>`.
pub fn spec_for(node_image: &str, crio: bool) -> anyhow::Result<ClusterSpec> {
    let minor = minor_of(node_image).with_context(|| format!("{node_image:?}: expected a node image tagged vMAJOR.MINOR.PATCH"))?;
    Ok(ClusterSpec { name: format!("sgpc-v1-{minor}{}", if crio { "-crio" } else { "" }), node_image: node_image.to_string(), minor, crio })
}

pub fn delete(kind: &Path, spec: &ClusterSpec) -> anyhow::Result<()> {
    run_kind(kind, &delete_args(spec)).map(|_| ())
}

/// A cluster ready for a run: created (or reused), images loaded, kubeconfig written.
pub struct Prepared {
    pub binary: PathBuf,
    pub spec: ClusterSpec,
    pub kubeconfig: PathBuf,
    /// sgpc created the cluster, so it deletes it at the end.
    pub created: bool,
}

/// Creates (or, with `reuse`, reuses) a cluster for `node_image`, loads the image archives and
/// writes its kubeconfig into `work`.
pub fn prepare(node_image: &str, reuse: bool, archives: &[PathBuf], work: &Path) -> anyhow::Result<Prepared> {
    let binary = find_kind()?;
    let spec = spec_for(node_image, false)?;
    let created = create(&binary, &spec, work, reuse)?;
    let prepared = Prepared { kubeconfig: work.join("kubeconfig"), binary, spec, created };
    let loaded = archives.iter().try_for_each(|a| load_archive(&prepared.binary, &prepared.spec, a));
    let written = loaded.and_then(|()| Ok(fs_err::write(&prepared.kubeconfig, kubeconfig(&prepared.binary, &prepared.spec)?)?));
    if let Err(e) = written {
        prepared.finish()?;
        return Err(e);
    }
    Ok(prepared)
}

impl Prepared {
    /// Deletes the cluster if sgpc created it.
    pub fn finish(&self) -> anyhow::Result<()> {
        if self.created {
            delete(&self.binary, &self.spec).context("deleting the kind cluster")?;
        }
        Ok(())
    }
}
