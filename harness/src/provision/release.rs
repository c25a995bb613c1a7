//! Upstream containerd release tarballs, for matrix entries `containerd: {release: VERSION}`
//! (needs the internet; `curl` and `tar`).

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReleaseError {
    #[error("creating {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot download {url} (this entry needs the internet)")]
    Download { url: String },
    #[error("cannot unpack {}", tarball.display())]
    Unpack { tarball: PathBuf },
}

/// The upstream release tarball's address for a containerd version.
pub fn url(version: &str) -> String {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    format!("https://github.com/containerd/containerd/releases/download/v{version}/containerd-{version}-linux-{arch}.tar.gz")
}

/// Downloads and unpacks a containerd release into the cache once; returns its `bin/`.
pub fn fetch(cache: &Path, version: &str) -> Result<PathBuf, ReleaseError> {
    let root = cache.join("releases").join(format!("containerd-{version}"));
    let bin = root.join("bin");
    if bin.join("containerd").is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&root).map_err(|source| ReleaseError::Create { path: root.clone(), source })?;
    let url = url(version);
    let tarball = root.join("release.tar.gz");
    let download = std::process::Command::new("curl").args(["-fsSL", "--max-time", "120", "-o"]).arg(&tarball).arg(&url).status();
    if !matches!(download, Ok(s) if s.success()) {
        let _ = std::fs::remove_dir_all(&root);
        return Err(ReleaseError::Download { url });
    }
    let unpack = std::process::Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(&root).status();
    if !matches!(unpack, Ok(s) if s.success()) {
        return Err(ReleaseError::Unpack { tarball });
    }
    Ok(bin)
}
