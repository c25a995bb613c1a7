//! The discovery reports: Markdown for people, JSON for tools, and each class's minimal case
//! as catalogue files.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::discover::generate::{self, GenCase};
use crate::discover::{Class, DiscoveryReport, Progress};

/// A line per progress event: runtimes started, cases done, classes found, shrink steps.
pub fn write_progress(out: &mut dyn Write, event: &Progress<'_>) -> std::io::Result<()> {
    match event {
        Progress::RuntimeStarted { runtime, info } => writeln!(out, "{runtime:<24} started: {} {}", info.runtime_name, info.runtime_version),
        Progress::RuntimeNotRun { runtime, reason } => writeln!(out, "{runtime:<24} not run: {reason}"),
        Progress::CaseDone { runtime, done, total, classes, elapsed } => writeln!(out, "{runtime:<24} {done:>5}/{total} cases, {classes} classes, {:.0} s", elapsed.as_secs_f64()),
        Progress::ClassFound { number, key, case } => writeln!(out, "class {number:>2} found on {case}: {}", key.describe()),
        Progress::Shrunk { number, step, case } => {
            let lines = |l: &Option<Vec<String>>| l.as_ref().map_or(0, Vec::len);
            writeln!(out, "class {number:>2} shrink step {step}: {} passwd + {} group lines", lines(&case.passwd), lines(&case.group))
        }
    }
}

/// A line per class: its size, how it shrank, whether it was verified.
pub fn write_summary(out: &mut dyn Write, report: &DiscoveryReport) -> std::io::Result<()> {
    for class in &report.classes {
        let verified = if class.verified { "verified" } else { "NOT verified on every runtime" };
        writeln!(out, "Class {:>2} ({} cases, shrunk in {} steps, {verified}): {}", class.number, class.cases.len(), class.shrink_rounds, class.description)?;
    }
    Ok(())
}

/// Writes every class's scenario and recipe under `dir`, after removing the class directories
/// an earlier discovery left there (they would read as this one's).
pub fn write_class_files(dir: &Path, report: &DiscoveryReport) -> anyhow::Result<()> {
    let classes_dir = dir.join("classes");
    if classes_dir.is_dir() {
        let ours = regex::Regex::new(r"^c\d{2,}$")?;
        for entry in std::fs::read_dir(&classes_dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() && ours.is_match(&entry.file_name().to_string_lossy()) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
    }
    for (path, text) in class_files(report) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The emitted case of a class under a stable name, `d<seed>-c<class>`: its minimal case, or,
/// when that did not show the whole class when run again, the generated case that did.
pub fn emitted(report: &DiscoveryReport, class: &Class) -> GenCase {
    let (mut case, how) = match class.verified {
        true => (class.minimal.clone(), format!("shrunk from {}", class.first.name)),
        false => (class.first.clone(), format!("{} as generated: its shrunk form did not show the whole class when run again", class.first.name)),
    };
    case.name = format!("d{}-c{:02}", report.seed, class.number);
    case.origin = format!("seed {}, class {}: {}; {how}", report.seed, class.number, class.key.kind.describe());
    case
}

/// Where a class's files go under the output directory: `classes/c<NN>/{scenarios,images}/`.
pub fn class_dir(class: &Class) -> PathBuf {
    PathBuf::from("classes").join(format!("c{:02}", class.number))
}

/// Every class's scenario and recipe, as (path under the output directory, text).
pub fn class_files(report: &DiscoveryReport) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    for class in &report.classes {
        let case = emitted(report, class);
        let dir = class_dir(class);
        files.push((dir.join("scenarios").join(format!("{}.yaml", case.name)), generate::scenario_yaml(&case)));
        files.push((dir.join("images").join(format!("{}.yaml", case.name)), generate::recipe_yaml(&case)));
    }
    files
}

pub fn write_json(out: &mut dyn Write, report: &DiscoveryReport) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report)?;
    writeln!(out)?;
    Ok(())
}

fn seconds(d: std::time::Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

pub fn write_markdown(out: &mut dyn Write, report: &DiscoveryReport) -> anyhow::Result<()> {
    writeln!(out, "# sgpc discover, seed {}\n", report.seed)?;
    writeln!(
        out,
        "{} cases ({} generated scenarios under default, Merge and Strict) on {} runtimes in {}; {} classes.\n",
        report.cases,
        report.scenarios,
        report.runtimes.iter().filter(|r| r.not_run.is_none()).count(),
        seconds(report.duration),
        report.classes.len()
    )?;
    if report.unclassified > 0 {
        writeln!(out, "{} cases are left out of the classes: some runtime could not run them (ERROR, listed at the end).\n", report.unclassified)?;
    }
    writeln!(out, "| runtime | version | cases run | ERROR | note |\n|---|---|---|---|---|")?;
    for r in &report.runtimes {
        let version = r.runtime.as_ref().map(|i| format!("{} {}", i.runtime_name, i.runtime_version)).unwrap_or_default();
        let note = r.not_run.as_deref().or(r.teardown_error.as_deref()).unwrap_or("").replace('|', "\\|").replace('\n', " ");
        writeln!(out, "| {} | {version} | {} | {} | {note} |", r.name, r.cases_run, r.errors)?;
    }
    let t = &report.timings;
    writeln!(
        out,
        "\nTime: start-up {}, image builds {}, pushes and pulls {}, running cases {}, shrinking {}, teardown {}.",
        seconds(t.startup),
        seconds(t.build),
        seconds(t.provision),
        seconds(t.run),
        seconds(t.shrink),
        seconds(t.teardown)
    )?;
    for class in &report.classes {
        write_class(out, report, class)?;
    }
    if !report.errors.is_empty() {
        writeln!(out, "\n## Cases a runtime could not run (ERROR: sgpc's failure, not the runtime's)\n")?;
        for e in &report.errors {
            writeln!(out, "- {}", e.replace('\n', " "))?;
        }
    }
    Ok(())
}

fn write_class(out: &mut dyn Write, report: &DiscoveryReport, class: &Class) -> anyhow::Result<()> {
    let case = emitted(report, class);
    let dir = class_dir(class);
    writeln!(out, "\n## Class {}: {}\n", class.number, class.key.kind.describe())?;
    writeln!(out, "{}\n", class.description.replace('|', "\\|"))?;
    let examples: Vec<String> = class.cases.iter().take(8).map(|c| format!("`{c}`")).collect();
    writeln!(out, "- shown by {} generated cases: {}{}", class.cases.len(), examples.join(", "), if class.cases.len() > 8 { ", …" } else { "" })?;
    writeln!(
        out,
        "- shrunk from `{}` in {} steps ({} candidates run, {})",
        class.first.name,
        class.shrink_rounds,
        class.candidates_run,
        seconds(class.shrink_time)
    )?;
    writeln!(out, "- files: `{}`, `{}`", dir.join("scenarios").join(format!("{}.yaml", case.name)).display(), dir.join("images").join(format!("{}.yaml", case.name)).display())?;
    writeln!(out, "- reproduce (paths under the output directory): `sgpc run --containerd DIR --scenarios {0}/scenarios --images {0}/images`\n", dir.display())?;
    writeln!(out, "{}:\n\n```yaml\n{}{}```\n", if class.verified { "Minimal case" } else { "Case (as generated)" }, generate::recipe_yaml(&case), generate::scenario_yaml(&case))?;
    writeln!(out, "CRI request: `{}`\n", class.cri_request)?;
    writeln!(out, "| runtimes | attached | matches | verdicts |\n|---|---|---|---|")?;
    for b in &class.behaviours {
        let verdicts: Vec<String> = b.verdicts.iter().map(ToString::to_string).collect();
        writeln!(out, "| {} | {} | {} | {} |", b.runtimes.join(", "), b.attached.replace('|', "\\|"), b.rule.to_string().replace('|', "\\|"), verdicts.join(", "))?;
    }
    writeln!(out)?;
    for b in &class.behaviours {
        for bug in &b.known_bugs {
            writeln!(out, "- {}: known bug {bug}", b.runtimes.join(", "))?;
        }
        if let Some(refusal) = &b.refusal {
            writeln!(out, "- {} refused: {}", b.runtimes.join(", "), refusal.replace('\n', " "))?;
        }
    }
    match class.verified {
        true => writeln!(out, "- verified: the minimal case, run again on all {} runtimes of the class, shows the same class", class.key.runtimes().len())?,
        false => writeln!(out, "- **not verified**: run again on all runtimes of the class, the shrunk case showed the behaviours above, not the whole class (shrinking ran it on {} only); the files hold the case as generated", class.representatives.join(", "))?,
    }
    for error in &class.verification_errors {
        writeln!(out, "- could not run it again on {} (ERROR)", error.replace('\n', " "))?;
    }
    if class.shrink_errors > 0 {
        writeln!(out, "- {} shrinking rounds had a candidate a runtime could not run (ERROR); those windows ran again", class.shrink_errors)?;
    }
    Ok(())
}
