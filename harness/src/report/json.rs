//! The JSON reporter: the [`RunReport`] serialised as documented in `docs/report-schema.md`.

use std::io::Write;

use serde::Serialize;

use crate::outcome::{RunReport, Totals};

/// The report with its counts, so that a reader needs no verdict logic of its own.
#[derive(Serialize)]
struct Document<'a> {
    #[serde(flatten)]
    report: &'a RunReport,
    totals: Totals,
}

pub fn write(out: &mut dyn Write, report: &RunReport) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &Document { report, totals: report.totals() })?;
    writeln!(out)?;
    Ok(())
}
