//! The JUnit XML reporter. `<failure>` means the runtime was judged and found wanting (FAIL, and
//! UNSUPPORTED, which is never a pass); `<error>` means the case could not be run. REJECTED
//! (kubelet refused a Strict Pod it cannot honour) is a success.
//!
//! The XML keeps to the JUnit schema Jenkins' xunit plugin validates against (`junit-10.xsd`),
//! which GitLab also reads: `<testsuites>` takes only `name`, `time`, `tests`, `failures` and
//! `errors`, and a `<testcase>` holds no `<properties>`.

use std::io::Write;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::outcome::{CaseResult, RunReport};
use crate::verdict::Verdict;

/// The one suite's name: the runtime judged.
pub fn suite_name(report: &RunReport) -> String {
    let runtime = report
        .runtime
        .as_ref()
        .map(|r| format!("{} {}", r.runtime_name, r.runtime_version))
        .unwrap_or_else(|| "unreachable runtime".into());
    format!("sgpc on {runtime}")
}

/// What a verdict becomes in JUnit: one mapping for this writer, sonobuoy's item tree and
/// `sgpc verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
    Error,
    Skipped,
}

impl Status {
    pub fn of(verdict: Verdict) -> Status {
        match verdict {
            Verdict::Pass | Verdict::Rejected => Status::Success,
            Verdict::Fail | Verdict::Refused | Verdict::Unsupported { .. } => Status::Failure,
            Verdict::Error => Status::Error,
            Verdict::NotRun => Status::Skipped,
        }
    }

    /// The element a `<testcase>` holds (`success` where it holds none).
    pub fn word(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Error => "error",
            Status::Skipped => "skipped",
        }
    }
}

pub fn write(out: &mut dyn Write, report: &RunReport) -> anyhow::Result<()> {
    let mut suite = TestSuite::new(suite_name(report));
    suite.set_time(report.duration);
    let selection = &report.selection;
    suite.add_property(Property::new("catalogue-digest", selection.catalogue_digest.as_str()));
    suite.add_property(Property::new("selected", format!("{} of {} cases", selection.selected, selection.catalogue_cases)));
    if let Some(filter) = &selection.filter {
        suite.add_property(Property::new("filter", filter.as_str()));
    }
    if !selection.policies_not_run.is_empty() {
        suite.add_property(Property::new("policies-not-run", selection.policies_not_run.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")));
    }
    let deviated = report.cases.iter().filter(|c| c.passed_by_deviation).count();
    suite.add_property(Property::new("passed-by-deviation", deviated.to_string()));
    if let Some(says) = &report.critest {
        suite.add_property(Property::new("critest", says.line()));
    }
    for case in &report.cases {
        let message = message(case);
        let mut status = match Status::of(case.judgement.verdict) {
            Status::Success => TestCaseStatus::success(),
            Status::Failure => TestCaseStatus::non_success(NonSuccessKind::Failure),
            Status::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
            Status::Skipped => TestCaseStatus::skipped(),
        };
        if !matches!(status, TestCaseStatus::Success { .. }) {
            status.set_type(case.judgement.verdict.to_string()).set_message(message);
        }
        let mut test = TestCase::new(case.id.to_string(), status);
        test.set_classname(format!("sgpc.{}", case.id.scenario)).set_time(case.duration);
        if let Some(out) = system_out(case) {
            test.set_system_out(out);
        }
        suite.add_test_case(test);
    }
    let mut junit = Report::new("sgpc");
    junit.add_test_suite(suite);
    let xml = junit.to_string()?;
    writeln!(out, "{}", without_testsuites_skipped(&xml))?;
    Ok(())
}

/// A case's `<failure>`, `<error>` or `<skipped>` message: its spec lines, then its reasons.
pub fn message(case: &CaseResult) -> String {
    case.spec.iter().map(|s| format!("spec: {s}")).chain(case.judgement.reasons.iter().cloned()).collect::<Vec<_>>().join("\n")
}

/// A case's `<system-out>`: a pass by deviation and why, its spec lines, references and notes.
pub fn system_out(case: &CaseResult) -> Option<String> {
    let deviation = case.passed_by_deviation.then(|| case.expected.as_ref().and_then(|e| e.deviation.as_deref())).flatten();
    let described = case.spec.iter().map(|s| format!("spec: {s}")).chain(case.references.iter().map(|r| format!("reference: {r}")));
    let described = deviation.map(|reason| format!("passed-by-deviation: {reason}")).into_iter().chain(described);
    let out: Vec<String> = described.chain(case.judgement.notes.iter().map(|n| format!("note: {n}"))).collect();
    (!out.is_empty()).then(|| out.join("\n"))
}

/// quick-junit writes `skipped` on `<testsuites>`, which `junit-10.xsd` does not allow there
/// (each `<testsuite>` keeps its own count).
fn without_testsuites_skipped(xml: &str) -> std::borrow::Cow<'_, str> {
    static SKIPPED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| regex::Regex::new(r#"(<testsuites\b[^>]*?) skipped="\d+""#).expect("a valid pattern"));
    SKIPPED.replace(xml, "$1")
}
