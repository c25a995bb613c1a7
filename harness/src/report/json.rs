//! The JSON reporter: the [`RunReport`] serialised as documented in `docs/report-schema.md`.

use std::io::Write;

use crate::run::RunReport;

pub fn write(out: &mut dyn Write, report: &RunReport) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report)?;
    writeln!(out)?;
    Ok(())
}
