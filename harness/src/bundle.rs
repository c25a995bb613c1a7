//! The evidence bundle: `sgpc run ... --bundle FILE.tar.gz` writes what a run judged and what it
//! judged it by; `sgpc verify FILE.tar.gz` checks that the bundle is consistent (every file as
//! its manifest lists it, the JUnit file saying what the JSON report says, the cases the
//! recorded selection chose, each once) and judges every case again from its recorded
//! observations with the verdict engine this sgpc ships. The manifest carries no key: whoever
//! rewrites a file can rewrite it too, so authenticity rests on the bundle's SHA-256, which the
//! run prints, recorded somewhere the bundle's holder cannot write.
//!
//! Layout (sonobuoy's results layout for a JUnit plugin named `sgpc`: `sonobuoy results
//! FILE.tar.gz` reads a bundle as it reads sonobuoy's own archive, tests/bundle.rs runs it):
//!
//! ```text
//! MANIFEST.sha256                          sha256sum format: every other file, once
//! meta/info.json                           sonobuoy's run info: the plugins, `["sgpc"]`
//! plugins/sgpc/sonobuoy_results.yaml       sonobuoy's item tree of the JUnit report
//! plugins/sgpc/results/global/junit.xml    the JUnit report
//! sgpc/report.json                         the JSON report: every case's observations, the images'
//!                                          digests, CRI `Version` and verbose `Status` (`runtime`)
//! sgpc/environment.json                    sgpc's version, the kernel
//! sgpc/catalogue/scenarios/*.yaml          the exact catalogue the run used
//! sgpc/catalogue/images/*.yaml
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::case::Case;
use crate::driver::RuntimeInfo;
use crate::image::ImageRecord;
use crate::observation::Observations;
use crate::outcome::RunReport;
use crate::report::sonobuoy;
use crate::scenario::{CaseId, Catalogue};
use crate::verdict::Verdict;

pub const MANIFEST: &str = "MANIFEST.sha256";
const REPORT: &str = "sgpc/report.json";
const JUNIT: &str = "plugins/sgpc/results/global/junit.xml";
const ENVIRONMENT: &str = "sgpc/environment.json";
const CATALOGUE: &str = "sgpc/catalogue";

/// The limits a bundle read by `sgpc verify` is held to: it is input like any other.
const MAX_FILES: usize = 4096;
/// A whole catalogue's bundle is a few hundred KiB; what is read is held in memory several
/// times over while it is parsed.
const MAX_BYTES: u64 = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Malformed { path: PathBuf, why: String },
    #[error("writing the {0} of the bundle")]
    Report(&'static str, #[source] anyhow::Error),
}

/// The catalogue files a run used, as they were read: `(path, text)` per kind.
pub struct CatalogueFiles<'a> {
    pub scenarios: &'a [(PathBuf, String)],
    pub images: &'a [(PathBuf, String)],
}

/// Writes the bundle of a finished run.
pub fn write(path: &Path, report: &RunReport, catalogue: &CatalogueFiles<'_>) -> Result<(), BundleError> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut json = Vec::new();
    crate::report::json::write(&mut json, report).map_err(|e| BundleError::Report("JSON report", e))?;
    files.insert(REPORT.into(), json);
    let mut junit = Vec::new();
    crate::report::junit::write(&mut junit, report).map_err(|e| BundleError::Report("JUnit report", e))?;
    files.insert(JUNIT.into(), junit);
    files.insert(sonobuoy::RESULTS_FILE.into(), sonobuoy::write(report).map_err(|e| BundleError::Report("sonobuoy results", e))?);
    files.insert(sonobuoy::INFO_FILE.into(), sonobuoy::info());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let environment = serde_json::json!({"sgpc_version": env!("CARGO_PKG_VERSION"), "kernel": kernel.trim()});
    files.insert(ENVIRONMENT.into(), serde_json::to_vec_pretty(&environment).map_err(|e| BundleError::Report("environment", e.into()))?);
    for (kind, kind_files) in [("scenarios", catalogue.scenarios), ("images", catalogue.images)] {
        for (file, text) in kind_files {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            files.insert(format!("{CATALOGUE}/{kind}/{name}"), text.clone().into_bytes());
        }
    }
    let manifest: String = files.iter().map(|(name, bytes)| format!("{}  {name}\n", hex(&Sha256::digest(bytes)))).collect();
    files.insert(MANIFEST.into(), manifest.into_bytes());
    write_tar_gz(path, &files)
}

/// The SHA-256 of a written bundle, as `sha256sum` prints it.
pub fn sha256_of(path: &Path) -> Result<String, BundleError> {
    let bytes = std::fs::read(path).map_err(|source| BundleError::Io { path: path.to_path_buf(), what: "reading the bundle", source })?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the archive beside `path` and renames it there: a failure leaves no partial bundle.
fn write_tar_gz(path: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), BundleError> {
    let io = |what| move |source| BundleError::Io { path: path.to_path_buf(), what, source };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let partial = tempfile::NamedTempFile::new_in(parent).map_err(io("creating the bundle"))?;
    let file = partial.reopen().map_err(io("creating the bundle"))?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes.as_slice()).map_err(io("writing the bundle"))?;
    }
    tar.into_inner().and_then(|gz| gz.finish()).map_err(io("finishing the bundle"))?;
    partial.persist(path).map_err(|e| e.error).map_err(io("moving the bundle into place"))?;
    Ok(())
}

/// What `sgpc verify` found wrong: a file, or a case whose verdict moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file or case id.
    pub subject: String,
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.subject, self.problem)
    }
}

/// What `sgpc verify` made of a bundle.
#[derive(Debug, Default)]
pub struct Verification {
    pub findings: Vec<Finding>,
    /// Cases judged again (their verdict did not move unless a finding says so).
    pub judged: usize,
    /// Cases that ran into sgpc's own ERROR before anything was observed: nothing to judge.
    pub not_judged: usize,
    /// The runtime the bundle judged (CRI `Version`: name and version), if it answered.
    pub runtime: Option<String>,
    /// Whether the runtime held Strict: what a fleet's merged result says per node.
    pub strict: StrictHeld,
    /// Whether the bundled catalogue is the one this sgpc carries: if not, the rules the cases
    /// were judged again by are the bundle's own (a `--scenarios` run, or a forger's).
    pub builtin_catalogue: bool,
}

/// Whether a bundle's runtime held Strict, from its recorded Strict verdicts (a verdict that
/// moved when judged again is a finding of its own).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum StrictHeld {
    /// Every Strict case that ran passed (or was rejected as the KEP asks); some may not have run.
    Held { not_run: usize },
    /// The Strict cases that FAIL, leak (UNSUPPORTED with a leak) or were REFUSED, with verdicts.
    NotHeld(Vec<(CaseId, Verdict)>),
    /// Nothing can be said: the runtime was unreachable, a Strict case is sgpc's ERROR, or none ran.
    #[default]
    NotJudged,
}

impl std::fmt::Display for StrictHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StrictHeld::Held { not_run: 0 } => write!(f, "yes"),
            StrictHeld::Held { not_run } => write!(f, "yes ({not_run} Strict cases not run)"),
            StrictHeld::NotHeld(cases) => write!(f, "NO: {}", cases.iter().map(|(id, v)| format!("{id} {v}")).collect::<Vec<_>>().join(", ")),
            StrictHeld::NotJudged => write!(f, "not judged (runtime unreachable, a Strict case ERROR, or none ran)"),
        }
    }
}

fn strict_held(recorded: &Recorded) -> StrictHeld {
    let strict: Vec<&RecordedCase> = recorded.cases.iter().filter(|c| c.id.policy == crate::scenario::Policy::Strict).collect();
    let not_run = strict.iter().filter(|c| c.verdict == Verdict::NotRun).count();
    if recorded.runtime.is_none() || not_run == strict.len() || strict.iter().any(|c| c.verdict == Verdict::Error) {
        return StrictHeld::NotJudged;
    }
    let failed: Vec<(CaseId, Verdict)> = strict
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Fail | Verdict::Refused | Verdict::Unsupported { leak: true }))
        .map(|c| (c.id.clone(), c.verdict))
        .collect();
    if failed.is_empty() { StrictHeld::Held { not_run } } else { StrictHeld::NotHeld(failed) }
}

/// The part of the JSON report a verdict is judged again from.
#[derive(Deserialize)]
struct Recorded {
    runtime: Option<RuntimeInfo>,
    selection: RecordedSelection,
    cases: Vec<RecordedCase>,
}

#[derive(Deserialize)]
struct RecordedSelection {
    filter: Option<String>,
    catalogue_digest: String,
}

#[derive(Deserialize)]
struct RecordedCase {
    id: CaseId,
    verdict: Verdict,
    reasons: Vec<String>,
    #[serde(default)]
    known_bugs: Vec<String>,
    #[serde(default)]
    passed_by_deviation: bool,
    image: Option<ImageRecord>,
    observations: Option<Observations>,
}

/// Checks a bundle: the manifest against every file, then every case's verdict against the one
/// this sgpc gives its recorded observations under the bundle's own catalogue.
pub fn verify(path: &Path) -> Result<Verification, BundleError> {
    let files = read_tar_gz(path)?;
    let mut verification = Verification { findings: manifest_findings(&files), ..Verification::default() };
    let malformed = |name: &str, why: String| BundleError::Malformed { path: path.join(name), why };
    let report = files.get(REPORT).ok_or_else(|| malformed(REPORT, "missing".into()))?;
    let recorded: Recorded = serde_json::from_slice(report).map_err(|e| malformed(REPORT, e.to_string()))?;
    let catalogue = bundled_catalogue(&files).map_err(|e| malformed(CATALOGUE, e.to_string()))?;
    verification.findings.extend(selection_findings(&catalogue, &recorded));
    verification.builtin_catalogue = Catalogue::open(None, None).is_ok_and(|builtin| builtin.digest() == catalogue.digest());
    let junit = junit_statuses(files.get(JUNIT).map(Vec::as_slice).unwrap_or_default());
    verification.findings.extend(listing_findings(JUNIT, junit, &recorded.cases, junit_status));
    let items = files.get(sonobuoy::RESULTS_FILE).map_or_else(|| Err("missing".to_string()), |yaml| sonobuoy_statuses(yaml));
    verification.findings.extend(listing_findings(sonobuoy::RESULTS_FILE, items, &recorded.cases, sonobuoy::status));
    if files.get(sonobuoy::INFO_FILE) != Some(&sonobuoy::info()) {
        verification.findings.push(Finding { subject: sonobuoy::INFO_FILE.into(), problem: "missing, or lists other plugins than sgpc".into() });
    }
    verification.runtime = recorded.runtime.as_ref().map(|r| format!("{} {}", r.runtime_name, r.runtime_version));
    verification.strict = strict_held(&recorded);
    let Some(runtime) = &recorded.runtime else {
        // The run never started: every case is sgpc's ERROR without observations, nothing was judged.
        verification.not_judged = recorded.cases.len();
        for case in recorded.cases.iter().filter(|c| c.verdict != Verdict::Error || c.observations.is_some()) {
            verification.findings.push(Finding { subject: case.id.to_string(), problem: format!("recorded {}, but the runtime never answered: only an ERROR without observations can be", case.verdict) });
        }
        return Ok(verification);
    };
    for case in &recorded.cases {
        match judge_again(&catalogue, runtime, case) {
            Some(Ok(())) => verification.judged += 1,
            Some(Err(problem)) => {
                verification.judged += 1;
                verification.findings.push(Finding { subject: case.id.to_string(), problem });
            }
            None => verification.not_judged += 1,
        }
    }
    Ok(verification)
}

/// The case's judgement as this sgpc gives it, against the recorded one (verdict, reasons,
/// known bugs, a pass by deviation); `None` where nothing was observed (sgpc's ERROR), so there
/// is nothing to judge.
fn judge_again(catalogue: &Catalogue, runtime: &RuntimeInfo, recorded: &RecordedCase) -> Option<Result<(), String>> {
    let (judged, by_deviation) = match Case::resolve(catalogue, &recorded.id) {
        Err(e) => (crate::verdict::Judgement::error(crate::chain::error_chain(&e)), false),
        // Set-up failed or the run was interrupted before the case ran: nothing to judge, even
        // where the runtime could not have run it.
        Ok(_) if recorded.verdict == Verdict::Error && recorded.observations.is_none() => return None,
        Ok(case) => match (crate::run::not_run(&case, runtime), &recorded.observations, &recorded.image) {
            (Some(_), Some(_), _) => (crate::verdict::Judgement::error("observations are recorded for a case the runtime could not run"), false),
            (Some(not_run), None, _) => (not_run, false),
            (None, Some(observations), Some(image)) => crate::run::judge_observed(&case, runtime, !runtime.feature_per_node, image, observations),
            (None, Some(_), None) => (crate::verdict::Judgement::error("observations are recorded without the image they were made on"), false),
            (None, _, _) if recorded.verdict == Verdict::Error => return None,
            (None, _, _) => (crate::verdict::Judgement::error("the bundle records no observations for a case that was judged"), false),
        },
    };
    let same = judged.verdict == recorded.verdict && judged.reasons == recorded.reasons && judged.known_bugs == recorded.known_bugs && by_deviation == recorded.passed_by_deviation;
    Some(if same {
        Ok(())
    } else if judged.verdict != recorded.verdict {
        let why = judged.reasons.first().map(|r| format!(": {r}")).unwrap_or_default();
        Err(format!("recorded {}, but its recorded observations are {} under this sgpc{why}", recorded.verdict, judged.verdict))
    } else {
        Err(format!("recorded {} with other reasons, known bugs or deviation than this sgpc gives its recorded observations", recorded.verdict))
    })
}

/// The recorded cases against the selection: exactly the cases the recorded filter chooses from
/// the bundled catalogue, each once, and that catalogue the one the report names.
fn selection_findings(catalogue: &Catalogue, recorded: &Recorded) -> Vec<Finding> {
    let finding = |subject: &str, problem: String| Finding { subject: subject.to_string(), problem };
    let mut findings = Vec::new();
    if catalogue.digest() != recorded.selection.catalogue_digest {
        findings.push(finding(CATALOGUE, "is not the catalogue the report names (selection.catalogue_digest)".into()));
    }
    let filter = match recorded.selection.filter.as_deref().map(crate::outcome::compile_filter).transpose() {
        Ok(filter) => filter,
        Err(e) => return vec![finding(REPORT, format!("selection.filter is no regular expression: {e}"))],
    };
    let chosen = crate::outcome::select_cases(catalogue, filter.as_ref());
    let mut seen: BTreeMap<&CaseId, usize> = BTreeMap::new();
    for case in &recorded.cases {
        *seen.entry(&case.id).or_default() += 1;
    }
    for id in &chosen {
        match seen.remove(id) {
            None => findings.push(finding(&id.to_string(), "chosen by the recorded selection but missing from the report".into())),
            Some(1) => {}
            Some(n) => findings.push(finding(&id.to_string(), format!("recorded {n} times"))),
        }
    }
    findings.extend(seen.keys().map(|id| finding(&id.to_string(), "recorded but not chosen by the recorded selection".into())));
    findings
}

/// A file listing every case with a status (the JUnit file, sonobuoy's items) against the JSON
/// report: each case once, with the status its verdict calls for (the files CI and sonobuoy
/// read must say what was judged).
fn listing_findings(file: &str, listed: Result<Vec<(String, String)>, String>, cases: &[RecordedCase], status: fn(Verdict) -> &'static str) -> Vec<Finding> {
    let finding = |problem: String| Finding { subject: file.to_string(), problem };
    let statuses = match listed {
        Ok(statuses) => statuses,
        Err(why) => return vec![finding(why)],
    };
    let mut want: BTreeMap<String, &str> = cases.iter().map(|c| (c.id.to_string(), status(c.verdict))).collect();
    let mut findings = Vec::new();
    for (name, status) in &statuses {
        match want.remove(name) {
            Some(wanted) if wanted == *status => {}
            Some(wanted) => findings.push(finding(format!("{name} is {status}, but its verdict calls for {wanted}"))),
            None => findings.push(finding(format!("{name} is no case of the report, or is listed twice"))),
        }
    }
    findings.extend(want.keys().map(|name| finding(format!("{name} is missing"))));
    findings
}

/// How the JUnit report shows a verdict.
fn junit_status(verdict: Verdict) -> &'static str {
    crate::report::junit::Status::of(verdict).word()
}

/// Each case item's name and status in sonobuoy's item tree.
fn sonobuoy_statuses(yaml: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(yaml).map_err(|e| format!("is no UTF-8: {e}"))?;
    let tree: sonobuoy::Item = serde_saphyr::from_str(text).map_err(|e| format!("is no sonobuoy item tree: {e}"))?;
    sonobuoy::case_statuses(&tree)
}

/// Each `<testcase>`'s name and status (`success`, or its first `failure`, `error` or
/// `skipped` child: what JUnit readers take; the same word nested deeper is text to them).
fn junit_statuses(junit: &[u8]) -> Result<Vec<(String, String)>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(junit);
    let mut buffer = Vec::new();
    let mut statuses: Vec<(String, String)> = Vec::new();
    // Elements open inside the current `<testcase>`, when one is open.
    let mut inside: Option<usize> = None;
    loop {
        let event = reader.read_event_into(&mut buffer).map_err(|e| format!("is no XML: {e}"))?;
        match (&event, inside) {
            (Event::Start(e) | Event::Empty(e), None) if e.name().as_ref() == b"testcase" => {
                let name = e.try_get_attribute("name").ok().flatten().and_then(|a| a.normalized_value(quick_xml::XmlVersion::Explicit1_0).ok()).map(|v| v.into_owned()).ok_or("a <testcase> has no name")?;
                statuses.push((name, "success".to_string()));
                inside = matches!(event, Event::Start(_)).then_some(0);
            }
            (Event::Start(e) | Event::Empty(e), Some(depth)) => {
                let status = match e.name().as_ref() {
                    b"failure" => Some("failure"),
                    b"error" => Some("error"),
                    b"skipped" => Some("skipped"),
                    _ => None,
                };
                if let (0, Some(status), Some(last)) = (depth, status, statuses.last_mut().filter(|last| last.1 == "success")) {
                    last.1 = status.to_string();
                }
                if matches!(event, Event::Start(_)) {
                    inside = Some(depth + 1);
                }
            }
            (Event::End(_), Some(depth)) => inside = depth.checked_sub(1),
            (Event::Eof, _) => break,
            _ => {}
        }
        buffer.clear();
    }
    Ok(statuses)
}

fn bundled_catalogue(files: &BTreeMap<String, Vec<u8>>) -> Result<Catalogue, crate::input::InputError> {
    let kind = |kind: &str| -> Vec<(PathBuf, String)> {
        let prefix = format!("{CATALOGUE}/{kind}/");
        files.iter().filter(|(name, _)| name.starts_with(&prefix)).map(|(name, bytes)| (PathBuf::from(name), String::from_utf8_lossy(bytes).into_owned())).collect()
    };
    Catalogue::from_files(&kind("scenarios"), &kind("images"))
}

/// Every file against the manifest: one finding per file changed, missing or not listed.
fn manifest_findings(files: &BTreeMap<String, Vec<u8>>) -> Vec<Finding> {
    let finding = |subject: &str, problem: &str| Finding { subject: subject.to_string(), problem: problem.to_string() };
    let Some(manifest) = files.get(MANIFEST) else { return vec![finding(MANIFEST, "missing: nothing in the bundle can be checked")] };
    let mut listed: BTreeMap<&str, &str> = BTreeMap::new();
    let mut findings = Vec::new();
    let text = String::from_utf8_lossy(manifest);
    for line in text.lines() {
        match line.split_once("  ") {
            Some((sum, name)) if sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()) && listed.insert(name, sum).is_none() => {}
            _ => findings.push(finding(MANIFEST, &format!("line {line:?} is not `SHA256  FILE` of a file listed once"))),
        }
    }
    for (name, bytes) in files.iter().filter(|(name, _)| name.as_str() != MANIFEST) {
        match listed.remove(name.as_str()) {
            None => findings.push(finding(name, "not in the manifest")),
            Some(sum) if sum != hex(&Sha256::digest(bytes)) => findings.push(finding(name, "changed: its SHA-256 differs from the manifest's")),
            Some(_) => {}
        }
    }
    findings.extend(listed.keys().map(|name| finding(name, "listed in the manifest but missing")));
    findings
}

/// Reads a bundle into memory: regular files with clean relative paths, within the limits.
fn read_tar_gz(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    let io = |what| move |source| BundleError::Io { path: path.to_path_buf(), what, source };
    let malformed = |why: String| BundleError::Malformed { path: path.to_path_buf(), why };
    let file = std::fs::File::open(path).map_err(io("opening the bundle"))?;
    // Every gzip member (another tool reads them all), and nothing after the archive's end.
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file).take(MAX_BYTES + 1));
    let too_large = || malformed(format!("more than {MAX_FILES} files or {MAX_BYTES} bytes"));
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(io("reading the bundle"))? {
        let mut entry = entry.map_err(io("reading the bundle"))?;
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let name = entry.path().map_err(io("reading a file name"))?.to_string_lossy().into_owned();
        let clean = !name.is_empty() && !name.starts_with('/') && name.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
        if !entry.header().entry_type().is_file() || !clean {
            return Err(malformed(format!("{name:?} is not a regular file with a clean relative path")));
        }
        total += entry.size();
        if files.len() >= MAX_FILES || total > MAX_BYTES {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(io("reading a file of the bundle"))?;
        if files.insert(name.clone(), bytes).is_some() {
            return Err(malformed(format!("{name:?} appears twice")));
        }
    }
    // The limit ends the stream where it falls: what was cut is too large, not changed.
    let mut rest = archive.into_inner();
    if rest.limit() == 0 {
        return Err(too_large());
    }
    let mut trailing = Vec::new();
    rest.read_to_end(&mut trailing).map_err(io("reading the bundle's end"))?;
    if rest.limit() == 0 {
        return Err(too_large());
    }
    if trailing.iter().any(|b| *b != 0) {
        return Err(malformed(format!("{} bytes follow the archive's end", trailing.len())));
    }
    Ok(files)
}
