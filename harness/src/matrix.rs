//! The runtime matrix: one catalogue against many runtime builds at once, one table that says
//! which build is safe.
//!
//! `matrix.yaml` lists entries: a runtime source (containerd from a Debian suite, a directory or
//! an upstream release; CRI-O from a directory; an existing CRI endpoint), the OCI runtime, and
//! optionally the outcome the entry is expected to show, so that CI can pin "1.7 leaks under
//! Strict" and fail on any change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::divergence::{self, Divergence};
use crate::driver::RuntimeInfo;
use crate::input::{self, InputError};
use crate::oracle;
use crate::outcome::{self, CaseResult, Event};
use crate::provision::containerd::OciRuntime;
use crate::run::{self, SessionSettings};
use crate::target::{self, Source, Target};
use crate::scenario::{Catalogue, CaseId, Policy};
use crate::verdict::Verdict;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    entries: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEntry {
    name: String,
    containerd: Option<RawContainerdSource>,
    crio: Option<RawCrioSource>,
    cri: Option<String>,
    oci_runtime: Option<RawOciRuntime>,
    kubernetes: Option<RawKubernetes>,
    expect: Option<RawExpect>,
}

/// A live node over the entry's runtime: `kubernetes: {version: v1.37.2}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetes {
    version: String,
    etcd: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainerdSource {
    debian: Option<String>,
    dir: Option<PathBuf>,
    release: Option<String>,
    /// A 2.x release built from its Go module, e.g. `v2.4.2`.
    module: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrioSource {
    dir: Option<PathBuf>,
    /// A release built from its Go module, e.g. `v1.36.3`.
    module: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawOciRuntime {
    Known(String),
    Custom { name: String, path: PathBuf },
    /// runc built from its Go module: `{runc: v1.4.4}`.
    Module { runc: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    outcome: Outcome,
    #[serde(default)]
    exceptions: BTreeMap<String, String>,
    #[serde(default, rename = "userNamespaces")]
    user_namespaces: bool,
}

/// The outcome an entry is expected to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every case PASS.
    Conformant,
    /// No Strict support: default and Merge PASS; Strict UNSUPPORTED, with LEAK exactly where
    /// the image's `/etc/group`, read as leniently as runtimes read it, lists the user in a
    /// group the Pod did not declare.
    NoStrict,
}

/// As `matrix.yaml` spells it (`expect.outcome`), never the enum's name.
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Conformant => "conformant",
            Outcome::NoStrict => "no-strict",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Expected {
    pub outcome: Outcome,
    /// The column runs through a live kubelet: under `no-strict`, kubelet (>= 1.33) must
    /// reject every Strict Pod (REJECTED) instead of the runtime leaking (UNSUPPORTED).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub kubernetes: bool,
    /// Cases whose verdict differs from the outcome's, parsed when the matrix loads (written
    /// as `case id: verdict label`).
    #[serde(serialize_with = "serialize_exceptions")]
    pub exceptions: BTreeMap<CaseId, Verdict>,
    /// The column runs Pods with `hostUsers: false`; without it those cases are expected not run
    /// (UNSUPPORTED, never a pass).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub user_namespaces: bool,
}

fn serialize_exceptions<S: serde::Serializer>(exceptions: &BTreeMap<CaseId, Verdict>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(exceptions.iter().map(|(case, verdict)| (case.to_string(), verdict.to_string())))
}

/// One column: its name, what it runs on (`kubernetes: {version}` makes the target's live
/// node: the column runs as Pods), and what it is expected to show.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub target: Target,
    pub expect: Option<Expected>,
}

/// The verdicts a matrix column can give: REJECTED only through a live kubelet.
const COLUMN_VERDICTS: [Verdict; 8] = [Verdict::Pass, Verdict::Fail, Verdict::Refused, Verdict::Unsupported { leak: false }, Verdict::Unsupported { leak: true }, Verdict::NotRun, Verdict::Error, Verdict::Rejected];

/// Resolves an OCI runtime named in the matrix: `runc` and `youki` have default paths.
fn known_oci_runtime(name: &str) -> Option<OciRuntime> {
    let binary = match name {
        "runc" => PathBuf::from("/usr/sbin/runc"),
        "youki" => std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?
            .join("bin/youki"),
        _ => return None,
    };
    Some(OciRuntime { handler: name.to_string(), binary })
}

/// Loads and checks a matrix file against the catalogue's case ids.
pub fn load(path: &Path, catalogue: &Catalogue) -> Result<Vec<Entry>, InputError> {
    let raw: RawMatrix = input::read_yaml(path)?;
    let case_ids: BTreeMap<String, CaseId> = catalogue.cases().into_iter().map(|c| (c.to_string(), c)).collect();
    let mut entries: Vec<Entry> = Vec::new();
    for (i, e) in raw.entries.into_iter().enumerate() {
        let field = |f: &str| format!("entries[{i}].{f}");
        let err = |f: &str, m: String| InputError::new(path, None, Some(&field(f)), m);
        if entries.iter().any(|x| x.name == e.name) {
            return Err(err("name", format!("{:?} is used by another entry", e.name)));
        }
        let source = match (e.containerd, e.crio, e.cri) {
            (Some(c), None, None) => match (c.debian, c.dir, c.release, c.module) {
                (Some(suite), None, None, None) => Source::ContainerdDebian { suite },
                (None, Some(dir), None, None) => Source::ContainerdDir { dir },
                (None, None, Some(version), None) => Source::ContainerdRelease { version },
                (None, None, None, Some(version)) => match version.parse::<crate::provision::gomodule::Version>() {
                    Ok(v) if v.major == 2 => Source::ContainerdModule { version: v },
                    _ => return Err(err("containerd.module", format!("{version:?}: expected an exact containerd 2.x release, e.g. v2.4.2 (the module github.com/containerd/containerd/v2)"))),
                },
                _ => return Err(err("containerd", "give exactly one of `debian: SUITE`, `dir: PATH`, `release: VERSION`, `module: VERSION`".into())),
            },
            (None, Some(crio), None) => match (crio.dir, crio.module) {
                (Some(dir), None) => Source::CrioDir { dir },
                (None, Some(version)) => match version.parse::<crate::provision::gomodule::Version>() {
                    Ok(v) if v.major == 1 => Source::CrioModule { version: v },
                    _ => return Err(err("crio.module", format!("{version:?}: expected an exact CRI-O release, e.g. v1.36.3 (the module github.com/cri-o/cri-o)"))),
                },
                _ => return Err(err("crio", "give exactly one of `dir: PATH`, `module: VERSION`".into())),
            },
            (None, None, Some(endpoint)) => Source::Cri { endpoint },
            _ => return Err(err("name", format!("entry {:?}: give exactly one of `containerd`, `crio`, `cri`", e.name))),
        };
        let node = match e.kubernetes {
            None => None,
            Some(_) if matches!(source, Source::Cri { .. }) => return Err(err("kubernetes", "a live node runs over a runtime sgpc starts: give `containerd` or `crio`, not `cri`".into())),
            Some(k) => {
                let kubernetes = k.version.parse().map_err(|e: crate::provision::gomodule::GoBuildError| err("kubernetes.version", e.to_string()))?;
                let etcd = k.etcd.as_deref().unwrap_or(crate::provision::gomodule::ETCD_VERSION).parse().map_err(|e: crate::provision::gomodule::GoBuildError| err("kubernetes.etcd", e.to_string()))?;
                Some(run::NodeChoice { kubernetes, etcd, timeout: Duration::from_secs(180) })
            }
        };
        if matches!(source, Source::CrioDir { .. }) && e.oci_runtime.is_some() {
            return Err(err("ociRuntime", "a `crio: {dir: PATH}` entry runs the directory's own runc or crun; `ociRuntime` applies to `crio: {module: VERSION}` and containerd".into()));
        }
        let mut runc_module = None;
        let oci_runtime = match e.oci_runtime {
            None => OciRuntime::runc(),
            Some(RawOciRuntime::Known(name)) => known_oci_runtime(&name)
                .ok_or_else(|| err("ociRuntime", format!("{name:?} is not a known runtime (runc, youki); write {{name: NAME, path: PATH}} or {{runc: VERSION}}")))?,
            Some(RawOciRuntime::Custom { name, path }) => OciRuntime { handler: name, binary: path },
            Some(RawOciRuntime::Module { runc }) => {
                let version: crate::provision::gomodule::Version = runc.parse().map_err(|e: crate::provision::gomodule::GoBuildError| err("ociRuntime.runc", e.to_string()))?;
                let binary = crate::provision::gomodule::cache_dir(crate::provision::gomodule::Program::Runc, &version).join("runc");
                runc_module = Some(version);
                OciRuntime { handler: "runc".into(), binary }
            }
        };
        let expect = match e.expect {
            None => None,
            Some(x) => {
                let mut exceptions = BTreeMap::new();
                for (case, label) in &x.exceptions {
                    let id = case_ids.get(case).ok_or_else(|| err("expect.exceptions", format!("{case:?} is not a case id of the catalogue (see `sgpc list`)")))?;
                    let allowed = |v: &Verdict| COLUMN_VERDICTS.contains(v) && (node.is_some() || *v != Verdict::Rejected);
                    let verdict = Verdict::from_label(label).filter(allowed).ok_or_else(|| {
                        let labels: Vec<String> = COLUMN_VERDICTS.iter().filter(|v| allowed(v)).map(ToString::to_string).collect();
                        err("expect.exceptions", format!("{label:?} for {case}: expected one of {labels:?}"))
                    })?;
                    exceptions.insert(id.clone(), verdict);
                }
                Some(Expected { outcome: x.outcome, kubernetes: node.is_some(), exceptions, user_namespaces: x.user_namespaces })
            }
        };
        // A CRI-O directory runs its own runc or crun (checked above: no `ociRuntime` there).
        let oci_runtimes = if matches!(source, Source::CrioDir { .. }) { Vec::new() } else { vec![oci_runtime] };
        let target = Target { source, oci_runtimes, runc_module, runtime_handler: String::new(), node };
        entries.push(Entry { name: e.name, target, expect });
    }
    Ok(entries)
}

/// The verdicts an entry allows for a case: one, or under `no-strict` both with and without
/// LEAK where the allowed readings of the image's `/etc/group` disagree on a leak. None when
/// the model cannot derive the case (loading the catalogue derived every case, so this cannot
/// happen; if it did, no verdict would match and the matrix would say so).
pub fn expected_verdicts(expected: &Expected, catalogue: &Catalogue, case: &CaseId) -> Vec<Verdict> {
    if let Some(verdict) = expected.exceptions.get(case) {
        return vec![*verdict];
    }
    if !expected.user_namespaces && catalogue.scenario(&case.scenario).is_some_and(|s| s.pod.user_namespace()) {
        return vec![Verdict::NotRun];
    }
    match (expected.outcome, case.policy) {
        (Outcome::Conformant, _) | (Outcome::NoStrict, Policy::Default | Policy::Merge) => vec![Verdict::Pass],
        // KEP-3619: kubelet >= 1.33 rejects Strict on a node without the feature.
        (Outcome::NoStrict, Policy::Strict) if expected.kubernetes => vec![Verdict::Rejected],
        (Outcome::NoStrict, Policy::Strict) => {
            let leaks = catalogue.scenario(&case.scenario).and_then(|s| oracle::leaks_by_reading(catalogue.recipe(&s.image)?, &s.spec()).ok());
            let mut verdicts: Vec<Verdict> = leaks.iter().flatten().map(|leak| Verdict::Unsupported { leak: !leak.is_empty() }).collect();
            verdicts.sort_by_key(|v| *v == (Verdict::Unsupported { leak: true }));
            verdicts.dedup();
            verdicts
        }
    }
}

/// One column of the matrix: an entry and what its run gave.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub name: String,
    pub source: Source,
    /// The version the source served (Debian package version), when known before starting.
    pub source_version: Option<String>,
    pub oci_runtime: String,
    pub runtime: Option<RuntimeInfo>,
    /// Why the entry was not run on this machine (missing binaries, no network).
    pub skipped: Option<String>,
    pub setup_error: Option<String>,
    /// One line: conformant, does not support Strict, non-conformant...
    pub summary: String,
    pub expect: Option<Expected>,
    /// Cases whose verdict differs from the expected outcome.
    pub deviations: Vec<String>,
    /// What critest's SupplementalGroupsPolicy specs said of the same runtime (`--critest`);
    /// it never changes the column's verdicts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critest: Option<crate::critest::CritestSays>,
    /// Set-up time: image build, registry, runtime start, pulls.
    #[serde(serialize_with = "serialize_opt_millis", rename = "startup_ms")]
    pub startup: Option<Duration>,
    #[serde(serialize_with = "crate::outcome::serialize_millis", rename = "duration_ms")]
    pub duration: Duration,
    #[serde(skip)]
    pub results: Vec<CaseResult>,
}

/// A finished matrix run.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixReport {
    pub schema_version: u32,
    pub harness_version: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    /// Every case on which runtimes attached different identities or one refused the Pod.
    pub divergences: Vec<Divergence>,
    /// Differences between runtimes that are no divergence: the names `id` prints for the same
    /// numbers, the order of `status.user`.
    pub notes: Vec<String>,
    #[serde(serialize_with = "crate::outcome::serialize_millis", rename = "duration_ms")]
    pub duration: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub case: CaseId,
    pub summary: String,
    /// One per column; `None` where the column was skipped.
    pub cells: Vec<Option<Cell>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub verdict: Verdict,
    pub label: String,
    pub reasons: Vec<String>,
    pub notes: Vec<String>,
    /// `point: groups` for every observation point.
    pub observed: Vec<String>,
}

fn serialize_opt_millis<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => crate::outcome::serialize_millis(d, s),
        None => s.serialize_none(),
    }
}

/// What the machine needs to run entries.
#[derive(Debug, Clone)]
pub struct MatrixConfig {
    /// What every column shares; each entry gives its own target.
    pub settings: SessionSettings,
    pub cache: PathBuf,
    pub jobs: usize,
}

/// What a matrix run tells its caller while it works: a column's events, by column name.
pub type Progress<'p> = &'p dyn Fn(&str, Event<'_>);

/// Runs one entry from start to teardown.
async fn run_entry(entry: &Entry, catalogue: &Catalogue, cases: &[CaseId], config: &MatrixConfig, progress: Progress<'_>) -> Column {
    let started = Instant::now();
    let mut column = Column {
        name: entry.name.clone(),
        source: entry.target.source.clone(),
        source_version: None,
        oci_runtime: entry.target.oci_runtime_label(),
        runtime: None,
        skipped: None,
        setup_error: None,
        summary: String::new(),
        expect: entry.expect.clone(),
        deviations: Vec::new(),
        critest: None,
        startup: None,
        duration: Duration::ZERO,
        results: Vec::new(),
    };
    let session_config = match target::resolve_blocking(&entry.target, &config.settings, &config.cache).await {
        Ok((session_config, version)) => {
            column.source_version = version;
            session_config
        }
        Err(reason) => {
            column.skipped = Some(reason.to_string());
            return finish(column, catalogue, started);
        }
    };
    let on_event = |event: Event<'_>| progress(&entry.name, event);
    let level = entry.target.node.as_ref().map_or(run::Level::Cri, run::Level::LiveNode);
    let run = run::run_session(&session_config, level, catalogue, cases, config.jobs, std::future::pending(), on_event).await;
    column.startup = run.startup;
    column.runtime = run.report.runtime;
    column.setup_error = run.report.setup_error;
    column.critest = run.report.critest;
    column.results = run.report.cases;
    finish(column, catalogue, started)
}

/// The column's summary and deviations; every case of a column that ran has a result
/// ([`run::run_session`] makes the unfinished ones ERROR).
fn finish(mut column: Column, catalogue: &Catalogue, started: Instant) -> Column {
    column.summary = summarize(&column);
    if let Some(expected) = &column.expect {
        column.deviations = match &column.skipped {
            Some(why) => vec![format!("expected outcome {} but the entry was not run: {why}", expected.outcome)],
            None => column
                .results
                .iter()
                .filter_map(|r| {
                    let want = expected_verdicts(expected, catalogue, &r.id);
                    let got = r.judgement.verdict;
                    let wanted = || match want.is_empty() {
                        true => "no verdict (the KEP model cannot derive this case)".to_string(),
                        false => want.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or "),
                    };
                    (!want.contains(&got)).then(|| format!("{}: expected {}, got {got}", r.id, wanted()))
                })
                .collect(),
        };
    }
    column.duration = started.elapsed();
    column
}

/// The one-line verdict of a column.
pub fn summarize(column: &Column) -> String {
    if let Some(why) = &column.skipped {
        return format!("not run on this machine: {why}");
    }
    let outcome::Totals { fail, refused, error, unsupported, leak, rejected, not_run, .. } = outcome::Totals::of(&column.results);
    let mut parts = Vec::new();
    if fail > 0 {
        parts.push(format!("non-conformant: {fail} failures"));
    }
    if refused > 0 {
        parts.push(format!("refuses {refused} Pods the Kubernetes API accepts"));
    }
    if unsupported > 0 {
        parts.push(format!("does not support Strict: {leak} cases leak implicit groups ({unsupported} Strict cases unsupported)"));
    }
    if rejected > 0 {
        parts.push(format!("kubelet rejects {rejected} Strict Pods: the node does not support Strict"));
    }
    if error > 0 {
        parts.push(format!("{error} cases could not be run (ERROR)"));
    }
    if not_run > 0 {
        if parts.is_empty() {
            parts.push("conformant on the cases it ran".into());
        }
        parts.push(format!("{not_run} cases need what the target does not offer (NOT RUN)"));
    }
    if parts.is_empty() {
        "conformant".into()
    } else {
        parts.join("; ")
    }
}

/// Runs every entry concurrently and assembles the table.
pub async fn run_matrix(entries: &[Entry], catalogue: &Catalogue, cases: &[CaseId], config: &MatrixConfig) -> MatrixReport {
    run_matrix_with_progress(entries, catalogue, cases, config, &|_, _| {}).await
}

/// [`run_matrix`], telling `progress` each column's events as they happen.
pub async fn run_matrix_with_progress(entries: &[Entry], catalogue: &Catalogue, cases: &[CaseId], config: &MatrixConfig, progress: Progress<'_>) -> MatrixReport {
    let started = Instant::now();
    let columns = futures::future::join_all(entries.iter().map(|e| run_entry(e, catalogue, cases, config, progress))).await;
    let rows = cases
        .iter()
        .map(|case| Row {
            case: case.clone(),
            summary: catalogue.scenario(&case.scenario).map(|s| s.summary.clone()).unwrap_or_default(),
            cells: columns.iter().map(|c| c.results.iter().find(|r| r.id == *case).map(cell)).collect(),
        })
        .collect();
    let notes = notes(&columns, cases);
    let divergences = cases
        .iter()
        .filter_map(|case| {
            let results: Vec<(&str, &CaseResult)> =
                columns.iter().filter_map(|c| c.results.iter().find(|r| r.id == *case).map(|r| (c.name.as_str(), r))).collect();
            divergence::of_case(case, &results)
        })
        .collect();
    MatrixReport {
        schema_version: 2,
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        columns,
        rows,
        divergences,
        notes,
        duration: started.elapsed(),
    }
}

fn cell(result: &CaseResult) -> Cell {
    let observed = result
        .observations
        .iter()
        .flat_map(|o| &o.identities)
        .map(|o| format!("{}: {}", o.point.describe(), o.identity))
        .collect();
    Cell {
        verdict: result.judgement.verdict,
        label: result.label(),
        reasons: result.judgement.reasons.clone(),
        notes: result.judgement.notes.clone(),
        observed,
    }
}

/// Differences between runtimes that are no divergence: group order in `status.user`, the
/// names `id` prints for the same numbers.
fn notes(columns: &[Column], cases: &[CaseId]) -> Vec<String> {
    let mut out = Vec::new();
    for case in cases {
        // identity (numbers) -> what `id` printed -> columns
        let mut printed: BTreeMap<String, BTreeMap<String, Vec<&str>>> = BTreeMap::new();
        let mut unordered: Vec<&str> = Vec::new();
        for column in columns {
            let Some(obs) = column.results.iter().find(|r| r.id == *case).and_then(|r| r.observations.as_ref()) else { continue };
            if let Some(first) = obs.identities.iter().find(|o| o.point == crate::observation::Point::FirstProcessId) {
                printed.entry(first.identity.to_string()).or_default().entry(first.printed.clone()).or_default().push(&column.name);
            }
            if obs.identities.iter().any(|o| o.point == crate::observation::Point::CriStatus && o.groups_unsorted_or_repeated()) {
                unordered.push(&column.name);
            }
        }
        for (identity, variants) in printed.iter().filter(|(_, v)| v.len() > 1) {
            let variants: Vec<String> = variants.iter().map(|(text, names)| format!("{} print `{text}`", names.join(", "))).collect();
            out.push(format!("{case}: `id` prints different names for the same identity ({identity}): {}", variants.join("; ")));
        }
        if !unordered.is_empty() {
            out.push(format!("{case}: status.user lists groups out of ascending order on {}", unordered.join(", ")));
        }
    }
    out
}

impl MatrixReport {
    /// 0 when every entry that declares an outcome shows exactly it; otherwise the ranking of
    /// `sgpc run` over the entries without a declared outcome, and 1 for any deviation.
    pub fn exit_code(&self) -> i32 {
        if self.columns.iter().any(|c| !c.deviations.is_empty()) {
            return outcome::exit_code::FAIL;
        }
        let undeclared = self.columns.iter().filter(|c| c.expect.is_none() && c.skipped.is_none()).flat_map(|c| &c.results);
        outcome::exit_code::of(undeclared.map(|r| r.judgement.verdict))
    }
}
