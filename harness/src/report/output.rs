//! A report file: created (with its directories) before a run starts, so that an unwritable
//! path costs nothing, and written when the run ends.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

pub struct Output {
    path: PathBuf,
    file: std::fs::File,
}

impl Output {
    pub fn open(path: &Path) -> anyhow::Result<Output> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create the report directory {}", parent.display()))?;
        }
        let cannot = || format!("cannot create the report file {}", path.display());
        let mut file = std::fs::File::create(path).with_context(cannot)?;
        // Some files open for writing but refuse every write (procfs, sysfs, a full disk): one
        // byte written and taken back finds out now rather than after the run.
        if file.metadata().with_context(cannot)?.is_file() {
            file.write_all(b"\n").and_then(|()| file.set_len(0)).and_then(|()| file.rewind()).with_context(cannot)?;
        }
        Ok(Output { path: path.to_path_buf(), file })
    }

    /// Opens `names` in `dir`, all or none.
    pub fn open_all<const N: usize>(dir: &Path, names: [&str; N]) -> anyhow::Result<[Output; N]> {
        let opened = names.iter().map(|name| Output::open(&dir.join(name))).collect::<anyhow::Result<Vec<_>>>()?;
        opened.try_into().map_err(|_| anyhow::anyhow!("opened a different number of report files than asked"))
    }

    pub fn write(self, write: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::new(self.file);
        write(&mut out).and_then(|()| Ok(out.flush()?)).with_context(|| format!("cannot write the report file {}", self.path.display()))
    }
}
