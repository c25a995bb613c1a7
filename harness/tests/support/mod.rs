//! Shared set-up for the integration tests: where the repository and containerd binaries are.
#![allow(dead_code)]

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

/// CRI-O binaries (crio, conmon, pinns, runc or crun) from `SGPC_CRIO_DIR`, or why there are
/// none: CRI-O is not packaged for Debian, so these tests run where someone built or
/// installed it.
pub fn crio_dir() -> Result<PathBuf, String> {
    let dir = std::env::var_os("SGPC_CRIO_DIR").map(PathBuf::from).ok_or("SGPC_CRIO_DIR is not set (a directory of CRI-O binaries: crio, conmon, pinns, runc)")?;
    sgpc::provision::crio::find_binaries(&dir).map_err(|e| format!("{e:#}"))?;
    Ok(dir)
}

pub fn crio_config() -> Result<SessionConfig, String> {
    Ok(SessionConfig::new(TargetChoice::Crio { bin_dir: crio_dir()? }))
}
