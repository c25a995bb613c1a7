//! Reporters: each takes a finished [`RunReport`](crate::run::RunReport) (or a runner event)
//! and any `io::Write`. They never run anything, read the clock or the environment.
//! [`RunReporters`] wires them to a run: the terminal on stdout, the files asked for.

pub mod discover;
pub mod json;
pub mod junit;
pub mod matrix;
pub mod output;
pub mod terminal;

use std::io::Write;
use std::path::Path;

use crate::run::Event;
pub use output::Output;

/// The reporters of one run, consuming its events: the terminal streams them; the JUnit and
/// JSON files asked for are opened at once and written on `RunFinished`.
pub struct RunReporters {
    style: terminal::Style,
    junit: Option<Output>,
    json: Option<Output>,
    /// The `--filter` the run's cases were chosen by, for every report's selection.
    filter: Option<String>,
    /// The first report that could not be written.
    failed: Option<anyhow::Error>,
}

impl RunReporters {
    pub fn new(style: terminal::Style, junit: Option<&Path>, json: Option<&Path>) -> anyhow::Result<RunReporters> {
        Ok(RunReporters { style, junit: junit.map(Output::open).transpose()?, json: json.map(Output::open).transpose()?, filter: None, failed: None })
    }

    /// Records the `--filter` in every report (the runner knows the cases, not how they were chosen).
    pub fn with_filter(mut self, filter: Option<String>) -> RunReporters {
        self.filter = filter;
        self
    }

    pub fn on_event(&mut self, event: Event<'_>) {
        let stamped;
        let event = match event {
            Event::RunFinished { report } => {
                let mut copy = report.clone();
                copy.selection.filter.clone_from(&self.filter);
                stamped = copy;
                Event::RunFinished { report: &stamped }
            }
            other => other,
        };
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        // A terminal that went away is no reason to stop a run.
        let _ = terminal::write_event(&mut out, self.style, &event);
        let _ = out.flush();
        if let Event::RunFinished { report } = event {
            if let Some(output) = self.junit.take() {
                self.record(output.write(|out| junit::write(out, report)));
            }
            if let Some(output) = self.json.take() {
                self.record(output.write(|out| json::write(out, report)));
            }
        }
    }

    fn record(&mut self, written: anyhow::Result<()>) {
        if let Err(e) = written {
            self.failed.get_or_insert(e);
        }
    }

    /// Whether every report was written.
    pub fn finish(self) -> anyhow::Result<()> {
        self.failed.map_or(Ok(()), Err)
    }
}
