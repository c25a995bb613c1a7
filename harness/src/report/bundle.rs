//! The evidence bundle as a reporter (`--bundle`): checked writable before the run, written
//! when it finishes ([`crate::bundle::write`]), its SHA-256 printed; with `--sonobuoy-results`,
//! then sonobuoy's `done` file naming it.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Reporter;
use crate::outcome::Event;

pub struct BundleReport {
    path: PathBuf,
    scenarios: Vec<(PathBuf, String)>,
    images: Vec<(PathBuf, String)>,
    /// sonobuoy's results directory: `done` is written there, naming the bundle.
    sonobuoy_results: Option<PathBuf>,
}

impl BundleReport {
    /// A bundle with nowhere to go is bad input: found out before anything runs.
    pub fn new(path: &Path, scenarios: &[(PathBuf, String)], images: &[(PathBuf, String)]) -> anyhow::Result<BundleReport> {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        anyhow::ensure!(!path.is_dir(), "--bundle {}: is a directory; expected a file name", path.display());
        tempfile::NamedTempFile::new_in(parent).with_context(|| format!("--bundle {}: cannot write a file in {}", path.display(), parent.display()))?;
        Ok(BundleReport { path: path.to_path_buf(), scenarios: scenarios.to_vec(), images: images.to_vec(), sonobuoy_results: None })
    }

    /// Also write `<dir>/done` naming the bundle once it is written (sonobuoy's worker waits
    /// for it).
    pub fn with_sonobuoy_done(mut self, dir: &Path) -> BundleReport {
        self.sonobuoy_results = Some(dir.to_path_buf());
        self
    }
}

impl Reporter for BundleReport {
    fn on_event(&mut self, event: &Event<'_>) -> anyhow::Result<()> {
        let Event::RunFinished { report } = event else { return Ok(()) };
        let files = crate::bundle::CatalogueFiles { scenarios: &self.scenarios, images: &self.images };
        crate::bundle::write(&self.path, report, &files)?;
        let sha256 = crate::bundle::sha256_of(&self.path)?;
        eprintln!("bundle: {} sha256 {sha256} (record the digest where the bundle's holder cannot write; `sgpc verify {}` checks it)", self.path.display(), self.path.display());
        if let Some(dir) = &self.sonobuoy_results {
            let done = dir.join("done");
            fs_err::write(&done, self.path.to_string_lossy().as_bytes())?;
            eprintln!("sonobuoy: {} names the bundle", done.display());
        }
        Ok(())
    }
}
