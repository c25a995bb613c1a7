//! Reporters: each takes a finished [`RunReport`](crate::outcome::RunReport) (or a runner event)
//! and any `io::Write`. They never run anything, read the clock or the environment.
//! [`RunReporters`] wires them to a run: the terminal on stdout, the files asked for.

pub mod bundle;
pub mod discover;
pub mod json;
pub mod junit;
pub mod matrix;
pub mod output;
pub mod sonobuoy;
pub mod terminal;

use std::io::Write;
use std::path::Path;

use crate::outcome::Event;
pub use output::Output;

/// One consumer of a run's events (after cargo-nextest's reporter). A new report format is a
/// type implementing this and one [`RunReporters::with`]. An error is the reporter's alone: the
/// run and the other reporters go on, and [`RunReporters::finish`] returns the first.
pub trait Reporter {
    fn on_event(&mut self, event: &Event<'_>) -> anyhow::Result<()>;
}

/// The terminal on stdout, streaming every event.
struct Terminal {
    style: terminal::Style,
}

impl Reporter for Terminal {
    fn on_event(&mut self, event: &Event<'_>) -> anyhow::Result<()> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        // A terminal that went away is no reason to stop a run.
        let _ = terminal::write_event(&mut out, self.style, event);
        let _ = out.flush();
        Ok(())
    }
}

/// A report file, opened before the run (an unwritable path costs nothing) and written once
/// the run finishes.
struct FileReport {
    output: Option<Output>,
    write: fn(&mut dyn Write, &crate::outcome::RunReport) -> anyhow::Result<()>,
}

impl Reporter for FileReport {
    fn on_event(&mut self, event: &Event<'_>) -> anyhow::Result<()> {
        match (event, self.output.take()) {
            (Event::RunFinished { report }, Some(output)) => output.write(|out| (self.write)(out, report)),
            (_, output) => {
                self.output = output;
                Ok(())
            }
        }
    }
}

/// The reporters of one run, consuming its events: the terminal, then the files asked for.
pub struct RunReporters {
    reporters: Vec<Box<dyn Reporter>>,
    /// The `--filter` the run's cases were chosen by, for every report's selection.
    filter: Option<String>,
    /// The first report that could not be written.
    failed: Option<anyhow::Error>,
}

impl RunReporters {
    pub fn new(style: terminal::Style, junit: Option<&Path>, json: Option<&Path>) -> anyhow::Result<RunReporters> {
        let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(Terminal { style })];
        for (path, write) in [(junit, junit::write as fn(&mut dyn Write, &crate::outcome::RunReport) -> anyhow::Result<()>), (json, json::write)] {
            if let Some(path) = path {
                reporters.push(Box::new(FileReport { output: Some(Output::open(path)?), write }));
            }
        }
        Ok(RunReporters { reporters, filter: None, failed: None })
    }

    /// Adds a reporter after the others.
    pub fn with(mut self, reporter: impl Reporter + 'static) -> RunReporters {
        self.reporters.push(Box::new(reporter));
        self
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
        for reporter in &mut self.reporters {
            if let Err(e) = reporter.on_event(&event) {
                self.failed.get_or_insert(e);
            }
        }
    }

    /// Whether every report was written.
    pub fn finish(self) -> anyhow::Result<()> {
        self.failed.map_or(Ok(()), Err)
    }
}
