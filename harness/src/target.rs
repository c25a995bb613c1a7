//! What sgpc runs cases on, as one value: `sgpc run`'s runtime flags and a `matrix.yaml` entry
//! both become a [`Target`], and [`resolve`] makes either runnable (fetches a package or a
//! release, builds a Go module, checks a directory) into the session's config. So `sgpc run`
//! and a matrix column (or a discovery runtime) are the same thing.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::provision::containerd::{self, OciRuntime};
use crate::provision::gomodule::{self, Program, Version};
use crate::provision::{crio, debian, release};
use crate::run::{NodeChoice, SessionConfig, SessionSettings, TargetChoice};

/// Where the runtime comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    ContainerdDebian { suite: String },
    ContainerdDir { dir: PathBuf },
    ContainerdRelease { version: String },
    /// containerd 2.x built from `github.com/containerd/containerd/v2` at this version.
    ContainerdModule { version: Version },
    CrioDir { dir: PathBuf },
    /// CRI-O built from `github.com/cri-o/cri-o` at this version, with Debian's conmon.
    CrioModule { version: Version },
    /// An existing CRI endpoint: sgpc starts nothing but its registry.
    Cri { endpoint: String },
}

/// A runtime to judge: its source, its OCI runtimes and handler, and a live node over it.
#[derive(Debug, Clone)]
pub struct Target {
    pub source: Source,
    /// For containerd, each a CRI runtime handler, the first the default (none: runc at
    /// `/usr/sbin/runc`); for CRI-O the one it runs (none: a directory's own runc or crun, runc
    /// for a release); unused for a CRI endpoint.
    pub oci_runtimes: Vec<OciRuntime>,
    /// The first OCI runtime is runc built from its Go module at this version.
    pub runc_module: Option<Version>,
    /// The CRI runtime handler cases ask for; empty: the runtime's default.
    pub runtime_handler: String,
    /// A live node over the runtime (never over a CRI endpoint): the cases run as Pods.
    pub node: Option<NodeChoice>,
}

impl Target {
    /// The OCI runtime as a matrix column names it.
    pub fn oci_runtime_label(&self) -> String {
        match (&self.source, &self.runc_module, self.oci_runtimes.first()) {
            (Source::CrioDir { .. }, _, None) => "runc or crun from the directory".into(),
            (_, Some(version), Some(runtime)) => format!("{} {version} (Go module)", runtime.handler),
            (_, _, Some(runtime)) => runtime.handler.clone(),
            (_, _, None) => "runc".into(),
        }
    }
}

/// Why a target cannot run on this machine (missing binaries, no network, a failed build).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

fn unavailable(e: impl Into<anyhow::Error>) -> Unavailable {
    Unavailable(format!("{:#}", e.into()))
}

/// Makes a target runnable: fetches Debian packages and upstream releases, builds Go modules,
/// checks directories. Gives the session's config and the version its source served. Blocks.
pub fn resolve(target: &Target, settings: &SessionSettings, cache: &Path) -> Result<(SessionConfig, Option<String>), Unavailable> {
    let runtimes = oci_runtimes(target)?;
    let (choice, version) = match &target.source {
        Source::ContainerdDebian { suite } => {
            let unpacked = debian::fetch(cache, suite, "containerd").map_err(unavailable)?;
            (TargetChoice::Containerd { bin_dir: unpacked.bin_dir() }, Some(unpacked.version))
        }
        Source::ContainerdDir { dir } => {
            let default = [OciRuntime::runc()];
            containerd::check_binaries(dir, if runtimes.is_empty() { &default } else { &runtimes }).map_err(unavailable)?;
            (TargetChoice::Containerd { bin_dir: dir.clone() }, None)
        }
        Source::ContainerdRelease { version } => {
            let dir = release::fetch(cache, version).map_err(unavailable)?;
            (TargetChoice::Containerd { bin_dir: dir }, Some(version.clone()))
        }
        Source::ContainerdModule { version } => {
            let dir = gomodule::ensure(Program::Containerd, version, &mut std::io::stderr()).map_err(unavailable)?;
            (TargetChoice::Containerd { bin_dir: dir }, Some(format!("{version} (Go module)")))
        }
        Source::CrioDir { dir } => {
            let runtime = runtimes.first().cloned();
            crio::find_binaries(dir, runtime.as_ref()).map_err(unavailable)?;
            (TargetChoice::Crio { bin_dir: dir.clone(), oci_runtime: runtime }, None)
        }
        Source::CrioModule { version } => {
            let dir = gomodule::ensure(Program::Crio, version, &mut std::io::stderr()).map_err(unavailable)?;
            let runtime = runtimes.first().cloned().unwrap_or_else(OciRuntime::runc);
            crio::find_binaries(&dir, Some(&runtime)).map_err(unavailable)?;
            (TargetChoice::Crio { bin_dir: dir, oci_runtime: Some(runtime) }, Some(format!("{version} (Go module)")))
        }
        Source::Cri { endpoint } => (TargetChoice::Cri { endpoint: endpoint.clone() }, None),
    };
    let mut config = SessionConfig::new(choice);
    config.settings = settings.clone();
    if !runtimes.is_empty() {
        config.oci_runtimes = runtimes;
    }
    config.runtime_handler.clone_from(&target.runtime_handler);
    Ok((config, version))
}

/// [`resolve`] off the async threads: fetching a package or building a module blocks.
pub async fn resolve_blocking(target: &Target, settings: &SessionSettings, cache: &Path) -> Result<(SessionConfig, Option<String>), Unavailable> {
    let (target, settings, cache) = (target.clone(), settings.clone(), cache.to_path_buf());
    tokio::task::spawn_blocking(move || resolve(&target, &settings, &cache)).await.unwrap_or_else(|e| Err(Unavailable(e.to_string())))
}

/// The target's OCI runtimes, the first built from its Go module first where it is runc's.
fn oci_runtimes(target: &Target) -> Result<Vec<OciRuntime>, Unavailable> {
    let mut runtimes = target.oci_runtimes.clone();
    if let (Some(version), Some(first)) = (&target.runc_module, runtimes.first_mut()) {
        let dir = gomodule::ensure(Program::Runc, version, &mut std::io::stderr()).map_err(unavailable)?;
        first.binary = dir.join("runc");
    }
    Ok(runtimes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(source: Source) -> Target {
        Target { source, oci_runtimes: Vec::new(), runc_module: None, runtime_handler: String::new(), node: None }
    }

    /// A matrix column over a containerd directory is checked as `sgpc run --containerd` is:
    /// every binary the runtime needs, not only `containerd` (before, the column failed later,
    /// after its registry and images).
    #[test]
    fn an_incomplete_containerd_directory_is_unavailable_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("containerd"), "").unwrap();
        let err = resolve(&target(Source::ContainerdDir { dir: dir.path().into() }), &SessionSettings::default(), dir.path()).unwrap_err();
        assert!(err.0.contains("containerd-shim-runc-v2 is missing"), "{err}");
    }

    #[test]
    fn the_oci_runtime_label_names_where_runc_comes_from() {
        let dir = |source| target(source).oci_runtime_label();
        assert_eq!(dir(Source::CrioDir { dir: "/x".into() }), "runc or crun from the directory");
        let mut module = target(Source::ContainerdDebian { suite: "sid".into() });
        module.oci_runtimes = vec![OciRuntime::runc()];
        assert_eq!(module.oci_runtime_label(), "runc");
        module.runc_module = Some("v1.4.4".parse().unwrap());
        assert_eq!(module.oci_runtime_label(), "runc v1.4.4 (Go module)");
    }
}
