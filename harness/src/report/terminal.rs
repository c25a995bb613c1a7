//! The terminal reporter: a line per finished case while the run goes, then a summary.
//!
//! ```text
//!    PASS [  0.182s] ( 3/36) kep-blog/strict
//!    FAIL [  0.201s] ( 4/36) issue-112879/strict
//!         groups via exec'd `id`: expected {1000 60000}, got {1000 50000 60000} (+50000 from image /etc/group)
//! ```

use std::io::{self, Write};

use crate::driver::RuntimeInfo;
use crate::outcome::{CaseResult, Event, RunReport};
use crate::run::Cleaned;
use crate::scenario::{CaseId, Catalogue, Policy, Scenario};
use crate::verdict::Verdict;

/// Formatting options; colour only when the caller decided the output is a terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    pub color: bool,
    /// Print notes under passing cases too.
    pub verbose: bool,
}

fn paint(style: Style, code: &str, text: &str) -> String {
    if style.color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Text from outside sgpc (a runtime's error, its version, a log line) as it may appear on a
/// terminal: control and invisible characters escaped, each of its lines indented, so that it
/// can neither redraw the screen nor pass for a line of sgpc's own.
fn safe(text: &str, indent: &str) -> String {
    crate::input::escape_unprintable(text).replace('\n', &format!("\n{indent}  "))
}

fn verdict_color(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass | Verdict::Rejected => "1;32",
        Verdict::Fail => "1;31",
        Verdict::Refused => "1;36",
        Verdict::Unsupported { leak: true } => "1;35",
        Verdict::Unsupported { leak: false } | Verdict::NotRun => "1;33",
        Verdict::Error => "1;31;7",
    }
}

/// One runner event: the header, a line per case, the cases not run, the summary.
pub fn write_event(out: &mut dyn Write, style: Style, event: &Event<'_>) -> io::Result<()> {
    match *event {
        Event::RunStarted { total, runtime } => write_header(out, style, runtime, total),
        Event::CaseFinished { result, done, total } => write_case(out, style, result, done, total),
        Event::CasesNotRun { cases, .. } => write_not_run(out, cases),
        Event::RunFinished { report } => write_summary(out, style, report),
    }
}

/// Cases that never finished are ERROR for one reason, which the summary prints once.
fn write_not_run(out: &mut dyn Write, cases: &[CaseId]) -> io::Result<()> {
    let names: Vec<String> = cases.iter().map(ToString::to_string).collect();
    writeln!(out, "           ERROR {} cases not run (the reason follows): {}", cases.len(), names.join(" "))
}

/// One paragraph per stale run: what was (or would be) removed, and what could not be.
pub fn write_cleaned(out: &mut dyn Write, cleaned: &[Cleaned], dry_run: bool) -> io::Result<()> {
    for c in cleaned {
        let verb = if dry_run { "would clean" } else { "cleaned" };
        writeln!(out, "{verb} run {} (owner pid {} is gone), {}", c.record.run_id, c.record.owner.pid, c.record.dir.display())?;
        for action in &c.actions {
            writeln!(out, "  {action}")?;
        }
        for problem in &c.problems {
            writeln!(out, "  could not: {problem}")?;
        }
    }
    Ok(())
}

/// `sgpc list`: a line per case; with `explain`, its expectation and the rules that give it.
pub fn write_list(out: &mut dyn Write, catalogue: &Catalogue, cases: &[CaseId], explain: bool) -> anyhow::Result<()> {
    for case in cases {
        let Some(scenario) = catalogue.scenario(&case.scenario) else { continue };
        writeln!(out, "{case:<32} {}", scenario.summary)?;
        if explain {
            write_explanation(out, catalogue, scenario, case.policy)?;
        }
    }
    Ok(())
}

fn write_explanation(out: &mut dyn Write, catalogue: &Catalogue, scenario: &Scenario, policy: Policy) -> anyhow::Result<()> {
    let recipe = catalogue.recipe(&scenario.image).ok_or_else(|| anyhow::anyhow!("no image recipe named {:?}", scenario.image))?;
    let derivation = crate::oracle::derive(recipe, &scenario.spec(), policy)?;
    let expected = scenario.expectation(policy);
    writeln!(out, "    expect {expected}")?;
    for line in &derivation.explanation {
        writeln!(out, "      {line}")?;
    }
    if let Some(reason) = &expected.deviation {
        writeln!(out, "      deliberate deviation from the model ({}): {reason}", derivation.identity)?;
    }
    Ok(())
}

pub fn write_header(out: &mut dyn Write, style: Style, runtime: &RuntimeInfo, total: usize) -> io::Result<()> {
    let feature = match (runtime.feature_per_node, runtime.supplemental_groups_policy) {
        (true, _) => "per node (status.features)",
        (false, true) => "advertised",
        (false, false) => "NOT advertised",
    };
    let api = if runtime.feature_per_node { "API" } else { "CRI" };
    writeln!(
        out,
        "{} {} {} ({api} {}) at {}; supplemental_groups_policy {feature}; {total} cases",
        paint(style, "1", "Running"),
        safe(&runtime.runtime_name, ""),
        safe(&runtime.runtime_version, ""),
        safe(&runtime.runtime_api_version, ""),
        safe(&runtime.endpoint, "")
    )
}

pub fn write_case(out: &mut dyn Write, style: Style, result: &CaseResult, done: usize, total: usize) -> io::Result<()> {
    let label = format!("{:>16}", result.label());
    let width = total.to_string().len();
    writeln!(
        out,
        "{} [{:>8.3}s] ({done:>width$}/{total}) {}",
        paint(style, verdict_color(result.judgement.verdict), &label),
        result.duration.as_secs_f64(),
        result.id
    )?;
    let indent = " ".repeat(18);
    if !matches!(result.judgement.verdict, Verdict::Pass | Verdict::Rejected) {
        if let Some(spec) = &result.spec {
            writeln!(out, "{indent}{}", paint(style, "1", &format!("spec: {spec}")))?;
        }
        for reason in &result.judgement.reasons {
            writeln!(out, "{indent}{}", safe(reason, &indent))?;
        }
    }
    if style.verbose || result.judgement.verdict != Verdict::Pass || result.passed_by_deviation {
        for note in &result.judgement.notes {
            writeln!(out, "{indent}{}", paint(style, "2", &format!("note: {}", safe(note, &indent))))?;
        }
    }
    Ok(())
}

pub fn write_summary(out: &mut dyn Write, style: Style, report: &RunReport) -> io::Result<()> {
    if let Some(error) = &report.setup_error {
        writeln!(out, "{} {}", paint(style, verdict_color(Verdict::Error), "ERROR"), safe(error, ""))?;
    }
    let t = report.totals();
    let runtime = report.runtime.as_ref().map(|r| format!(" on {} {}", safe(&r.runtime_name, ""), safe(&r.runtime_version, ""))).unwrap_or_default();
    let refused = if t.refused > 0 { format!(", {} refused", t.refused) } else { String::new() };
    let rejected = if t.rejected > 0 { format!(", {} rejected by kubelet", t.rejected) } else { String::new() };
    let deviated = if t.passed_by_deviation > 0 { format!(" ({} only by a deviation from the KEP model)", t.passed_by_deviation) } else { String::new() };
    let not_run = if t.not_run > 0 { format!(", {} not run (the target lacks what they need)", t.not_run) } else { String::new() };
    writeln!(
        out,
        "{} [{:>8.3}s] {} cases run{runtime}: {} passed{deviated}{rejected}, {} failed{refused}, {} unsupported ({} leak){not_run}, {} errors",
        paint(style, "1", "Summary"),
        report.duration.as_secs_f64(),
        report.cases.len() - t.not_run,
        t.pass,
        t.fail,
        t.unsupported,
        t.leak,
        t.error
    )?;
    if let Some(says) = &report.critest {
        writeln!(out, "Beside it {}", safe(&says.line(), "  "))?;
    }
    write_selection(out, style, &report.selection)
}

/// A partial selection is said, so that a green is never taken for the whole catalogue.
fn write_selection(out: &mut dyn Write, style: Style, selection: &crate::outcome::Selection) -> io::Result<()> {
    if !selection.is_partial() {
        return Ok(());
    }
    let filter = selection.filter.as_deref().map(|f| format!(" (--filter {})", safe(f, ""))).unwrap_or_default();
    let policies: Vec<String> = selection.policies_not_run.iter().map(ToString::to_string).collect();
    let not_run = if policies.is_empty() { String::new() } else { format!("; no case ran under {}", policies.join(", ")) };
    writeln!(out, "{} only {} of the catalogue's {} cases{filter}{not_run}", paint(style, "1", "Partial"), selection.selected, selection.catalogue_cases)
}
