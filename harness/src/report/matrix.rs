//! Matrix reports: Markdown (READMEs, PR comments), a self-contained HTML page, JSON.
//! Rows are scenario × policy, columns runtime builds, cells verdicts with the LEAK mark.

use std::io::Write;

use crate::divergence::{Behaviour, Divergence};
use crate::matrix::{Column, MatrixReport};
use crate::verdict::Verdict;

/// `containerd 1.7.24~ds1 · runc · feature: no`, or the entry name when it did not run.
fn column_title(c: &Column) -> String {
    match &c.runtime {
        Some(r) => format!(
            "{} {} · {} · feature: {}",
            r.runtime_name,
            r.runtime_version,
            c.oci_runtime,
            if r.supplemental_groups_policy { "yes" } else { "no" }
        ),
        None => format!("{} · {}", c.name, c.oci_runtime),
    }
}

fn expectation_line(c: &Column) -> String {
    match (&c.expect, c.deviations.is_empty()) {
        (None, _) => String::new(),
        (Some(e), true) => format!(" — shows its expected outcome ({})", e.outcome),
        (Some(e), false) => format!(" — DEVIATES from its expected outcome ({}): {}", e.outcome, c.deviations.join("; ")),
    }
}

/// One line per finished case of a column, prefixed by its name, and one when it starts.
pub fn write_progress(out: &mut dyn Write, column: &str, event: &crate::outcome::Event<'_>) -> std::io::Result<()> {
    use crate::outcome::Event;
    match *event {
        Event::RunStarted { total, runtime } => writeln!(out, "{column:<24} started: {} {}, {total} cases", runtime.runtime_name, runtime.runtime_version),
        Event::CaseFinished { result, done, total } => writeln!(out, "{column:<24} {:>16} ({done:>3}/{total}) {}", result.label(), result.id),
        Event::CasesNotRun { cases, reason } => writeln!(out, "{column:<24} {} cases not run: {reason}", cases.len()),
        Event::RunFinished { .. } => Ok(()),
    }
}

/// The terminal's end of a matrix: a line per column with its deviations, and the divergences.
pub fn write_summary(out: &mut dyn Write, report: &MatrixReport) -> std::io::Result<()> {
    for column in &report.columns {
        writeln!(out, "{:<24} {}", column.name, column.summary)?;
        if let Some(says) = &column.critest {
            writeln!(out, "{:<24}   {}", "", crate::input::escape_unprintable(&says.line()))?;
        }
        for deviation in &column.deviations {
            writeln!(out, "{:<24}   DEVIATION {deviation}", "")?;
        }
    }
    let expected_leaks = report.divergences.iter().filter(|d| d.only_missing_feature).count();
    match report.divergences.len() {
        0 => writeln!(out, "No divergence: every runtime that ran a case attached the same identity"),
        n => writeln!(out, "Divergences on {n} cases ({} where runtimes disagree, {expected_leaks} expected Strict leaks); see the reports", n - expected_leaks),
    }
}

/// What each mark of the table means: the legend above it, in a reader's words.
const LEGEND: &[(&str, &str)] = &[
    ("PASS", "the identity and file access the specs allow"),
    ("REJECTED", "kubelet refused a Strict Pod on a node without the feature, as KEP-3619 requires"),
    ("FAIL", "another identity or file access than the specs allow"),
    ("REFUSED", "the runtime refused a Pod the Kubernetes API accepts"),
    ("UNSUPPORTED", "Strict on a runtime that does not advertise it; +LEAK: it attached groups the Pod did not declare"),
    ("NOT RUN", "the target lacks what the case needs (the reason is given); never a pass"),
    ("ERROR", "sgpc could not run or judge the case: nothing is said of the runtime"),
    ("◆", "the runtimes disagree on this case (see the divergences)"),
    ("◇", "the runtimes differ only by the expected leak of a runtime without Strict support"),
];

pub fn write_markdown(out: &mut dyn Write, report: &MatrixReport) -> anyhow::Result<()> {
    writeln!(out, "# sgpc runtime matrix\n")?;
    for c in &report.columns {
        writeln!(out, "- **{}**: {}", c.name, c.summary)?;
    }
    writeln!(out)?;
    for (mark, meaning) in LEGEND {
        writeln!(out, "- `{mark}`: {meaning}")?;
    }
    writeln!(out)?;
    write!(out, "| case |")?;
    for c in &report.columns {
        write!(out, " {} |", column_title(c).replace('|', "\\|"))?;
    }
    writeln!(out)?;
    writeln!(out, "|---|{}", "---|".repeat(report.columns.len()))?;
    for row in &report.rows {
        write!(out, "| `{}` |", row.case)?;
        for cell in &row.cells {
            let label = cell.as_ref().map(|c| match c.verdict {
                Verdict::Pass | Verdict::Rejected => c.label.clone(),
                other => format!("**{other}**"),
            });
            write!(out, " {} |", label.unwrap_or_else(|| "—".into()))?;
        }
        writeln!(out)?;
    }
    writeln!(out, "\n## Runtimes\n")?;
    for c in &report.columns {
        let version = c.source_version.as_deref().map(|v| format!(" (package {v})")).unwrap_or_default();
        writeln!(out, "- **{}**{version}: {}{}", c.name, c.summary, expectation_line(c))?;
        if let Some(says) = &c.critest {
            writeln!(out, "  - {}", says.line().replace('\n', " "))?;
        }
        if let Some(error) = &c.setup_error {
            writeln!(out, "  - set-up failed: {}", error.replace('\n', " "))?;
        }
    }
    write_divergences_markdown(out, report)?;
    if !report.notes.is_empty() {
        writeln!(out, "\n## Differences that are no divergence\n")?;
        for note in &report.notes {
            writeln!(out, "- {note}")?;
        }
    }
    Ok(())
}

const NO_DIVERGENCE: &str = "No runtime attached a different identity than another, or refused a Pod that another ran, on any case.";

/// The divergences that disagree about the rules first, then the expected leaks of runtimes
/// without Strict support.
fn ordered(report: &MatrixReport) -> [(&'static str, Vec<&Divergence>); 2] {
    let (expected, real): (Vec<&Divergence>, Vec<&Divergence>) = report.divergences.iter().partition(|d| d.only_missing_feature);
    [("Runtimes that disagree", real), ("Expected leaks: Strict on runtimes that do not support it", expected)]
}

fn verdict_list(b: &Behaviour) -> String {
    b.verdicts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn write_divergences_markdown(out: &mut dyn Write, report: &MatrixReport) -> anyhow::Result<()> {
    writeln!(out, "\n## Divergences between runtimes")?;
    if report.divergences.is_empty() {
        writeln!(out, "\n{NO_DIVERGENCE}")?;
        return Ok(());
    }
    for (title, divergences) in ordered(report) {
        if divergences.is_empty() {
            continue;
        }
        writeln!(out, "\n### {title} ({} cases)\n", divergences.len())?;
        writeln!(out, "| case | runtimes | attached | matches | verdicts |\n|---|---|---|---|---|")?;
        for d in divergences {
            for b in &d.behaviours {
                let cells = [b.runtimes.join(", "), b.attached.clone(), b.rule.to_string(), verdict_list(b)].map(|c| c.replace('|', "\\|"));
                writeln!(out, "| `{}` | {} |", d.case, cells.join(" | "))?;
            }
        }
    }
    Ok(())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn css_class(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Unsupported { leak: true } => "leak",
        Verdict::Unsupported { leak: false } => "unsupported",
        Verdict::Rejected => "rejected",
        Verdict::Refused => "refused",
        Verdict::NotRun => "notrun",
        Verdict::Error => "error",
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}td.case{font-family:monospace;white-space:nowrap}
td.pass,td.rejected{background:#d9f2d9}td.fail{background:#f8c6c6;font-weight:bold}td.leak{background:#e9c6f5;font-weight:bold}
td.unsupported,td.notrun{background:#fcefc2}td.refused{background:#f5d0a9;font-weight:bold}td.error{background:#444;color:#fff;font-weight:bold}td.none{color:#999}
a.diverges{text-decoration:none;color:#b00}details{font-weight:normal;font-size:11px;max-width:28em}summary{cursor:pointer}ul{line-height:1.5}
dl.legend{display:grid;grid-template-columns:max-content auto;gap:2px 1em;font-size:13px}dl.legend dt{font-weight:bold}dl.legend dd{margin:0}";

pub fn write_html(out: &mut dyn Write, report: &MatrixReport) -> anyhow::Result<()> {
    writeln!(out, "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>sgpc runtime matrix</title><style>{STYLE}</style></head><body>")?;
    writeln!(out, "<h1>sgpc runtime matrix</h1><ul class=\"summary\">")?;
    for c in &report.columns {
        writeln!(out, "<li><b>{}</b>: {}</li>", escape(&c.name), escape(&c.summary))?;
    }
    writeln!(out, "</ul><dl class=\"legend\">")?;
    for (mark, meaning) in LEGEND {
        writeln!(out, "<dt>{}</dt><dd>{}</dd>", escape(mark), escape(meaning))?;
    }
    writeln!(out, "</dl><table><thead><tr><th>case</th>")?;
    for c in &report.columns {
        writeln!(out, "<th>{}</th>", escape(&column_title(c)))?;
    }
    writeln!(out, "</tr></thead><tbody>")?;
    for row in &report.rows {
        write!(out, "<tr><td class=\"case\" title=\"{}\">{}</td>", escape(&row.summary), escape(&row.case.to_string()))?;
        for cell in &row.cells {
            match cell {
                None => write!(out, "<td class=\"none\">not run</td>")?,
                Some(cell) => {
                    let hover = cell.observed.join("\n");
                    write!(out, "<td class=\"{}\" title=\"{}\">{}", css_class(cell.verdict), escape(&hover), escape(&cell.label))?;
                    if let Some(d) = report.divergences.iter().find(|d| d.case == row.case) {
                        let (mark, what) = if d.only_missing_feature { ("◇", "runtimes differ: the expected leak of a runtime without Strict support") } else { ("◆", "runtimes disagree on this case") };
                        write!(out, " <a class=\"diverges\" href=\"#divergences\" title=\"{what}\">{mark}</a>")?;
                    }
                    if !cell.reasons.is_empty() || !cell.notes.is_empty() {
                        write!(out, "<details><summary>why</summary>")?;
                        for line in cell.reasons.iter().chain(&cell.notes).chain(&cell.observed) {
                            write!(out, "<div>{}</div>", escape(line))?;
                        }
                        write!(out, "</details>")?;
                    }
                    write!(out, "</td>")?;
                }
            }
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</tbody></table><h2>Runtimes</h2><ul>")?;
    for c in &report.columns {
        let version = c.source_version.as_deref().map(|v| format!(" (package {v})")).unwrap_or_default();
        let setup = c.setup_error.as_deref().map(|e| format!("<br>set-up failed: {}", escape(e))).unwrap_or_default();
        let critest = c.critest.as_ref().map(|s| format!("<br>{}", escape(&s.line()))).unwrap_or_default();
        writeln!(out, "<li><b>{}</b>{}: {}{}{setup}{critest}</li>", escape(&c.name), escape(&version), escape(&c.summary), escape(&expectation_line(c)))?;
    }
    writeln!(out, "</ul>")?;
    writeln!(out, "<h2 id=\"divergences\">Divergences between runtimes</h2>")?;
    if report.divergences.is_empty() {
        writeln!(out, "<p>{}</p>", escape(NO_DIVERGENCE))?;
    }
    for (title, divergences) in ordered(report) {
        if divergences.is_empty() {
            continue;
        }
        writeln!(out, "<h3>{} ({} cases)</h3><table><tr><th>case</th><th>runtimes</th><th>attached</th><th>matches</th><th>verdicts</th></tr>", escape(title), divergences.len())?;
        for d in divergences {
            for b in &d.behaviours {
                let cells = [d.case.to_string(), b.runtimes.join(", "), b.attached.clone(), b.rule.to_string(), verdict_list(b)];
                writeln!(out, "<tr>{}</tr>", cells.iter().map(|c| format!("<td>{}</td>", escape(c))).collect::<String>())?;
            }
        }
        writeln!(out, "</table>")?;
    }
    if !report.notes.is_empty() {
        writeln!(out, "<h2>Differences that are no divergence</h2><ul>")?;
        for note in &report.notes {
            writeln!(out, "<li>{}</li>", escape(note))?;
        }
        writeln!(out, "</ul>")?;
    }
    writeln!(out, "</body></html>")?;
    Ok(())
}

pub fn write_json(out: &mut dyn Write, report: &MatrixReport) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::Column;
    use crate::target::Source;
    use crate::driver::RuntimeInfo;

    /// A column whose runtime answered, then failed to set up: every format names the runtime
    /// and shows the set-up error.
    fn failed_setup() -> MatrixReport {
        let column = Column {
            name: "cri-o-1.36".into(),
            source: Source::CrioDir { dir: "/opt/crio/bin".into() },
            source_version: None,
            oci_runtime: "runc".into(),
            runtime: Some(RuntimeInfo {
                endpoint: "unix:///run/crio.sock".into(),
                runtime_name: "cri-o".into(),
                runtime_version: "1.36.3".into(),
                runtime_api_version: "v1".into(),
                supplemental_groups_policy: true,
                feature_per_node: false,
                no_user_namespaces: None,
            cri_status: None,
            }),
            skipped: None,
            setup_error: Some("pulling 127.0.0.1:1/sgpc/pause: http: server gave HTTP response to HTTPS client".into()),
            summary: "36 cases could not be run (ERROR)".into(),
            expect: None,
            deviations: Vec::new(),
            critest: None,
            startup: None,
            duration: std::time::Duration::ZERO,
            results: Vec::new(),
        };
        MatrixReport { schema_version: 2, harness_version: "0".into(), columns: vec![column], rows: Vec::new(), divergences: Vec::new(), notes: Vec::new(), duration: std::time::Duration::ZERO }
    }

    #[test]
    fn a_matrix_without_divergence_says_so_and_one_with_a_divergence_shows_it() {
        let mut report = failed_setup();
        for write in [write_markdown, write_html] {
            let mut out = Vec::new();
            write(&mut out, &report).unwrap();
            assert!(String::from_utf8(out).unwrap().contains(NO_DIVERGENCE));
        }
        let case = crate::scenario::CaseId { scenario: "gid-4294967294".into(), policy: crate::scenario::Policy::Merge };
        let behaviour = |runtimes: &[&str], attached: &str, rule: crate::divergence::Rule, verdict: Verdict| Behaviour {
            runtimes: runtimes.iter().map(|r| r.to_string()).collect(),
            attached: attached.into(),
            rule,
            verdicts: vec![verdict; runtimes.len()],
            known_bugs: Vec::new(),
            refusal: None,
        };
        report.divergences = vec![Divergence {
            case: case.clone(),
            behaviours: vec![
                behaviour(&["containerd-1.7"], "uid=1000 gid=1000 groups={1000 4294967294}", crate::divergence::Rule::Model, Verdict::Pass),
                behaviour(&["containerd-2.1"], "refused the Pod", crate::divergence::Rule::Refused, Verdict::Refused),
            ],
            only_missing_feature: false,
        }];
        report.rows = vec![crate::matrix::Row { case, summary: String::new(), cells: vec![None] }];
        let mut md = Vec::new();
        write_markdown(&mut md, &report).unwrap();
        let md = String::from_utf8(md).unwrap();
        assert!(md.contains("### Runtimes that disagree (1 cases)"), "{md}");
        assert!(md.contains("| `gid-4294967294/merge` | containerd-2.1 | refused the Pod | none: a Pod the Kubernetes API accepts was not run | REFUSED |"), "{md}");
        let mut json = Vec::new();
        write_json(&mut json, &report).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(json["divergences"][0]["behaviours"][1]["verdicts"][0]["kind"], "REFUSED");
    }

    #[test]
    fn a_failed_setup_shows_in_every_format_with_the_runtime_that_answered() {
        let report = failed_setup();
        for write in [write_markdown, write_html, write_json] {
            let mut out = Vec::new();
            write(&mut out, &report).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("server gave HTTP response to HTTPS client"), "{text}");
            assert!(text.contains("1.36.3"), "{text}");
        }
    }
}
