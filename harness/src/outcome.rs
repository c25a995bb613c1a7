//! What a run judged, as plain data below the runner and the reporters: each case's result,
//! the run's report and totals, the selection it covered, the exit code it maps to, and the
//! events the runner emits while it works.

use std::time::Duration;

use serde::Serialize;

use crate::driver::RuntimeInfo;
use crate::image::ImageRecord;
use crate::observation::Observations;
use crate::scenario::{Catalogue, CaseId, Expectation};
use crate::verdict::{Judgement, Verdict};

/// Named process exit codes of `sgpc run`.
pub mod exit_code {
    /// Every case passed.
    pub const PASS: i32 = 0;
    /// At least one case failed: the runtime does not conform.
    pub const FAIL: i32 = 1;
    /// No case failed but at least one could not be run (harness or infrastructure error, or bad input).
    pub const ERROR: i32 = 2;
    /// No failure or error, but some Strict cases are unsupported by the runtime, or some cases
    /// need what the target does not offer (NOT RUN).
    pub const UNSUPPORTED: i32 = 3;

    use crate::verdict::Verdict;

    /// The one ranking of verdicts, for runs and matrices: FAIL and REFUSED (a found fault is
    /// the most important news) outrank ERROR, which outranks UNSUPPORTED; nothing is PASS.
    pub fn of(verdicts: impl IntoIterator<Item = Verdict>) -> i32 {
        let severity = |verdict: Verdict| match verdict {
            Verdict::Pass | Verdict::Rejected => (0, PASS),
            Verdict::Unsupported { .. } | Verdict::NotRun => (1, UNSUPPORTED),
            Verdict::Error => (2, ERROR),
            Verdict::Fail | Verdict::Refused => (3, FAIL),
        };
        verdicts.into_iter().map(severity).max_by_key(|(rank, _)| *rank).map_or(PASS, |(_, code)| code)
    }
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub id: CaseId,
    pub summary: String,
    /// What the runtime should do under this case's policy, one sentence (critest's style).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    /// Where the case's rules come from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    pub image: Option<ImageRecord>,
    pub expected: Option<Expectation>,
    pub observations: Option<Observations>,
    #[serde(flatten)]
    pub judgement: Judgement,
    /// PASS only because the scenario's `deviation:` rewrote the KEP model's expectation: held
    /// to the model, the same observations would not pass.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub passed_by_deviation: bool,
    /// Wall time of the case: of its whole sandbox where it shared one.
    #[serde(serialize_with = "serialize_millis", rename = "duration_ms")]
    pub duration: Duration,
    /// The other cases whose containers ran in the same sandbox (its Pod's, or a shared one),
    /// in the order they started; empty for a sandbox of its own. A finding about one of them
    /// can be run again alone (`--one-sandbox-per-case`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sandbox_with: Vec<CaseId>,
}

impl CaseResult {
    /// Fills in what the scenario says about this case: summary, spec sentence, references and
    /// the expectation.
    pub fn describe(&mut self, scenario: &crate::scenario::Scenario) {
        self.summary = scenario.summary.clone();
        self.spec = scenario.spec_sentence(self.id.policy).map(str::to_string);
        self.references = scenario.references.clone();
        self.expected = Some(scenario.expectation(self.id.policy).clone());
    }

    /// The verdict as every report shows it: a pass that holds only by the scenario's own
    /// `deviation:` never looks like a plain one.
    pub fn label(&self) -> String {
        match self.passed_by_deviation {
            true => format!("{} (DEVIATION)", self.judgement.verdict),
            false => self.judgement.verdict.to_string(),
        }
    }
}

pub(crate) fn serialize_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0)
}

/// A finished run: everything the reporters need, nothing they must compute from the clock.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub schema_version: u32,
    pub harness_version: String,
    /// What sgpc started, e.g. `containerd 2.1.9 from /path`; `None` for an existing endpoint.
    pub provisioned: Option<String>,
    pub runtime: Option<RuntimeInfo>,
    pub images: Vec<ImageRecord>,
    /// Which cases of which catalogue ran: what a green covers.
    pub selection: Selection,
    pub cases: Vec<CaseResult>,
    /// Why the run could not start or finish (every unfinished case is then ERROR).
    pub setup_error: Option<String>,
    /// What critest's SupplementalGroupsPolicy specs said of the same runtime (`--critest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critest: Option<crate::critest::CritestSays>,
    #[serde(serialize_with = "serialize_millis", rename = "duration_ms")]
    pub duration: Duration,
}

/// Counts of each verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub pass: usize,
    /// Of the passes, those that pass only by a scenario's `deviation:`.
    pub passed_by_deviation: usize,
    /// Kubernetes level: Strict Pods kubelet rightly refused (passes).
    pub rejected: usize,
    pub fail: usize,
    /// The runtime refused a valid Pod (counts with the failures in the exit code).
    pub refused: usize,
    pub unsupported: usize,
    pub leak: usize,
    /// Cases that need what the target does not offer (NOT RUN).
    pub not_run: usize,
    pub error: usize,
}

impl Totals {
    /// The counts of the verdicts of `results` (a run, a matrix column).
    pub fn of<'a>(results: impl IntoIterator<Item = &'a CaseResult>) -> Totals {
        let mut t = Totals::default();
        for c in results {
            match c.judgement.verdict {
                Verdict::Pass => {
                    t.pass += 1;
                    t.passed_by_deviation += usize::from(c.passed_by_deviation);
                }
                Verdict::Rejected => t.rejected += 1,
                Verdict::Fail => t.fail += 1,
                Verdict::Refused => t.refused += 1,
                Verdict::Unsupported { leak } => {
                    t.unsupported += 1;
                    t.leak += usize::from(leak);
                }
                Verdict::NotRun => t.not_run += 1,
                Verdict::Error => t.error += 1,
            }
        }
        t
    }
}

impl RunReport {
    /// A report of nothing yet: what a run fills in.
    pub fn empty() -> RunReport {
        RunReport {
            schema_version: 1,
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
            provisioned: None,
            runtime: None,
            images: Vec::new(),
            selection: Selection::default(),
            cases: Vec::new(),
            setup_error: None,
            critest: None,
            duration: Duration::ZERO,
        }
    }

    pub fn totals(&self) -> Totals {
        Totals::of(&self.cases)
    }

    /// FAIL outranks ERROR (a found fault is the more important news), ERROR outranks UNSUPPORTED.
    /// A failed set-up or a run of nothing counts as an ERROR.
    pub fn exit_code(&self) -> i32 {
        let not_run = (self.setup_error.is_some() || self.cases.is_empty()).then_some(Verdict::Error);
        exit_code::of(self.cases.iter().map(|c| c.judgement.verdict).chain(not_run))
    }
}

/// What the runner tells reporters while it works (after cargo-nextest's events): the terminal
/// streams them; file reports are written on `RunFinished`.
#[derive(Debug)]
pub enum Event<'a> {
    RunStarted { total: usize, runtime: &'a RuntimeInfo },
    CaseFinished { result: &'a CaseResult, done: usize, total: usize },
    /// Cases that got an ERROR without running (set-up failed, interrupted), for one reason.
    CasesNotRun { cases: &'a [CaseId], reason: &'a Stop },
    RunFinished { report: &'a RunReport },
}

/// Why a run did not run all its cases, or did not end cleanly (`RunReport.setup_error` holds
/// its text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The driver could not start: its error chain.
    SetupFailed(String),
    /// A signal (`SIGINT`, `SIGTERM`) arrived during a phase of the run.
    Interrupted { signal: String, during: Phase },
    /// Teardown failed, after whatever stopped the run before it.
    TeardownFailed { before: Option<Box<Stop>>, error: String },
    /// Cases were left without a result although nothing stopped the run.
    Unfinished,
}

/// Where a run was when a signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    SetUp,
    Cases,
    Critest,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::SetupFailed(error) => f.write_str(error),
            Stop::Interrupted { signal, during: Phase::SetUp } => write!(f, "interrupted by {signal} during set-up"),
            Stop::Interrupted { signal, during: Phase::Cases } => write!(f, "interrupted by {signal}; cases not finished are ERROR"),
            Stop::Interrupted { signal, during: Phase::Critest } => write!(f, "interrupted by {signal} while critest ran"),
            Stop::TeardownFailed { before: Some(before), error } => write!(f, "{before}; {error}"),
            Stop::TeardownFailed { before: None, error } => f.write_str(error),
            Stop::Unfinished => f.write_str("not run"),
        }
    }
}

/// A case that could not run, with the reason.
pub fn error_result(id: &CaseId, summary: &str, message: &str) -> CaseResult {
    CaseResult {
        id: id.clone(),
        summary: summary.to_string(),
        spec: None,
        references: Vec::new(),
        image: None,
        expected: None,
        observations: None,
        judgement: Judgement::error(message),
        passed_by_deviation: false,
        duration: Duration::ZERO,
        sandbox_with: Vec::new(),
    }
}

/// Which cases of which catalogue a run ran: what a green covers (KEP-3619's three policies,
/// every scenario), so that a partial selection is never mistaken for the whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// The `--filter` that chose the cases; `None` when every case was chosen.
    pub filter: Option<String>,
    /// SHA-256 of the catalogue's content ([`Catalogue::digest`]).
    pub catalogue_digest: String,
    pub selected: usize,
    pub catalogue_cases: usize,
    /// Policies that cases of the catalogue run under but no selected case does.
    pub policies_not_run: Vec<crate::scenario::Policy>,
}

impl Selection {
    pub fn of(catalogue: &Catalogue, cases: &[CaseId], filter: Option<&regex::Regex>) -> Selection {
        let all = catalogue.cases();
        let mut policies_not_run: Vec<_> = all.iter().map(|c| c.policy).filter(|p| !cases.iter().any(|c| c.policy == *p)).collect();
        policies_not_run.sort_unstable();
        policies_not_run.dedup();
        Selection {
            filter: filter.map(|f| f.as_str().to_string()),
            catalogue_digest: catalogue.digest(),
            selected: cases.len(),
            catalogue_cases: all.len(),
            policies_not_run,
        }
    }

    /// Fewer cases ran than the catalogue holds.
    pub fn is_partial(&self) -> bool {
        self.selected < self.catalogue_cases
    }
}

/// The longest case filter a run takes and a bundle may record (a bundle's is compiled from
/// hostile input, so its text and compiled size are held small).
pub const MAX_FILTER_BYTES: usize = 4096;

/// Compiles a case filter, the same for `--filter` and a bundle's recorded one.
pub fn compile_filter(text: &str) -> Result<regex::Regex, String> {
    if text.len() > MAX_FILTER_BYTES {
        return Err(format!("longer than the limit of {MAX_FILTER_BYTES} bytes"));
    }
    regex::RegexBuilder::new(text).size_limit(1 << 20).build().map_err(|e| e.to_string())
}

/// Selects cases whose id (`scenario/policy`) matches `filter`.
pub fn select_cases(catalogue: &Catalogue, filter: Option<&regex::Regex>) -> Vec<CaseId> {
    catalogue.cases().into_iter().filter(|c| filter.is_none_or(|f| f.is_match(&c.to_string()))).collect()
}
