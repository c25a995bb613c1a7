//! critest, the validation suite of cri-tools, as a peer of sgpc: its SupplementalGroupsPolicy
//! specs run against a runtime a session started, so that a report shows what critest says
//! beside what sgpc says.
//!
//! From cri-tools v1.37.0, the module sgpc builds it from (`sgpc build critest`):
//! - two specs, `Security Context SupplementalGroupsPolicy when SupplementalGroupsPolicy=Merge
//!   (Default)` and `...=Strict` (`pkg/validate/security_context_linux.go`), each skipped when
//!   CRI `Status` lacks `features.supplemental_groups_policy`;
//! - each runs `id -G` as uid 1000 with `supplementalGroups: [1234]` in the image [`IMAGE`],
//!   whose `/etc/group` puts uid 1000 in 50000 (`pkg/validate/consts.go`), and compares three
//!   identity points: `status.user.linux`, the container log and `ExecSync id -G`;
//! - it pulls the image only when `ImageStatus` misses, without credentials
//!   (`pkg/validate/util.go`). sgpc builds it from the catalogue's `cri-tools` recipe, pushes it
//!   to its own registry under [`REPOSITORY`] and pulls it by that name, which the runtimes sgpc
//!   starts resolve to its registry ([`crate::provision::MIRRORED_REGISTRY`]).
//!
//! critest's own sandboxes ask for no cgroup parent and carry none of sgpc's labels: the
//! session's proxy adopts them into the run ([`crate::proxy::Adoption`]), so that they are
//! removed with it whether or not critest's `AfterEach` runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The cri-tools release sgpc builds critest from.
pub const VERSION: &str = "v1.37.0";
/// The image critest's specs create their containers from (`:latest` is appended by critest).
pub const IMAGE: &str = "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest";
/// [`IMAGE`]'s repository and tag inside the registry.
pub const REPOSITORY: &str = "k8s-staging-cri-tools/test-image-predefined-group";
pub const TAG: &str = "latest";
/// The catalogue recipe that builds [`IMAGE`]: USER 1000, in 50000 through `/etc/group`.
pub const RECIPE: &str = "cri-tools";
/// The Ginkgo focus selecting the specs.
pub const FOCUS: &str = "SupplementalGroupsPolicy";
/// Identity points one spec compares: `status.user.linux`, the log, `ExecSync`.
pub const IDENTITY_POINTS_PER_SPEC: usize = 3;
/// How long a critest run may take: each spec polls for a minute at most (`Eventually`).
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// What critest said of one spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    pub name: String,
    pub outcome: SpecOutcome,
    pub seconds: f64,
    /// The failure or the reason for the skip, as critest wrote it (escaped).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpecOutcome {
    Passed,
    Skipped,
    Failed,
}

/// One critest run: its version and the focused specs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CritestRun {
    pub version: String,
    pub specs: Vec<Spec>,
    pub seconds: f64,
}

/// critest's message as a reader sees it: ginkgo's colour codes removed, anything else
/// unprintable escaped (reports are HTML, Markdown, JUnit and a terminal alike).
fn readable(message: &str) -> String {
    static COLOUR: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| regex::Regex::new("\x1b\\[[0-9;]*m").expect("a valid pattern"));
    crate::input::escape_unprintable(&COLOUR.replace_all(message, ""))
}

impl CritestRun {
    /// `2 passed`, `2 skipped (The runtime does not support ...)`, `1 failed, 1 passed`.
    pub fn summary(&self) -> String {
        let count = |o: SpecOutcome| self.specs.iter().filter(|s| s.outcome == o).count();
        let mut parts = Vec::new();
        for (outcome, word) in [(SpecOutcome::Failed, "failed"), (SpecOutcome::Passed, "passed"), (SpecOutcome::Skipped, "skipped")] {
            if count(outcome) > 0 {
                parts.push(format!("{} {word}", count(outcome)));
            }
        }
        let mut text = parts.join(", ");
        if let Some(skip) = self.specs.iter().find(|s| s.outcome == SpecOutcome::Skipped && !s.message.is_empty()) {
            text.push_str(&format!(" ({})", skip.message));
        }
        text
    }

    pub fn all(&self, outcome: SpecOutcome) -> bool {
        !self.specs.is_empty() && self.specs.iter().all(|s| s.outcome == outcome)
    }
}

/// What critest said of a runtime, or why it could not say anything (an ERROR of sgpc's or
/// critest's, never a verdict on the runtime).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum CritestSays {
    Ran(CritestRun),
    NotRun { reason: String },
}

impl From<anyhow::Result<CritestRun>> for CritestSays {
    fn from(result: anyhow::Result<CritestRun>) -> CritestSays {
        match result {
            Ok(run) => CritestSays::Ran(run),
            Err(e) => CritestSays::NotRun { reason: crate::input::escape_unprintable(&format!("{e:#}")) },
        }
    }
}

impl CritestSays {
    /// One line for a report: `critest v1.37.0: 2 passed`.
    pub fn line(&self) -> String {
        match self {
            CritestSays::Ran(run) => format!("critest {}: {}", run.version, run.summary()),
            CritestSays::NotRun { reason } => format!("critest not run (ERROR): {reason}"),
        }
    }
}

#[derive(Debug, Error)]
pub enum CritestError {
    #[error("starting {}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("preparing {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("critest did not finish within {0:?}")]
    Timeout(Duration),
    #[error("critest wrote no readable report {}; its last output:\n{tail}", path.display())]
    Report {
        path: PathBuf,
        tail: String,
        #[source]
        source: Option<serde_json::Error>,
    },
    #[error("critest ran no spec matching {FOCUS:?}; its last output:\n{tail}")]
    NoSpecs { tail: String },
    /// The suite itself failed or was cut short (a `BeforeSuite`, an interrupt, an abort):
    /// critest said nothing about the runtime.
    #[error("critest's suite did not run through ({what}); its last output:\n{tail}")]
    Incomplete { what: String, tail: String },
}

/// Runs critest's focused specs against `endpoint`, in `dir` (its working directory, output and
/// report), and reads its JSON report.
pub async fn run(binary: &Path, endpoint: &str, dir: &Path, timeout: Duration) -> Result<CritestRun, CritestError> {
    let report = dir.join("critest.json");
    let output = dir.join("critest.log");
    // A report of an earlier run in the same directory is never read as this run's.
    match std::fs::remove_file(&report) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(CritestError::Io { path: report, source: e }),
        _ => {}
    }
    let log = std::fs::File::create(&output).and_then(|f| Ok((f.try_clone()?, f))).map_err(|source| CritestError::Io { path: output.clone(), source })?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        // critest reads the endpoints it is not given from /etc/crictl.yaml or a crictl.yaml in
        // its working directory's parent (cri-tools pkg/common/config.go): it is given both.
        // Its spec's log directories go to TMPDIR (os.MkdirTemp): the run's own directory.
        .current_dir(dir)
        .env("TMPDIR", dir)
        .env("HOME", dir)
        .arg(format!("-runtime-endpoint={endpoint}"))
        .arg(format!("-image-endpoint={endpoint}"))
        .arg(format!("-ginkgo.focus={FOCUS}"))
        .arg(format!("-ginkgo.json-report={}", report.display()))
        .arg("-ginkgo.no-color")
        .stdin(std::process::Stdio::null())
        .stdout(log.0)
        .stderr(log.1)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CritestError::Spawn { path: binary.to_path_buf(), source })?;
    // critest exits 1 when a spec fails: its report says which.
    if tokio::time::timeout(timeout, child.wait()).await.is_err() {
        let _ = child.kill().await;
        return Err(CritestError::Timeout(timeout));
    }
    let tail = || crate::input::last_lines(&std::fs::read_to_string(&output).unwrap_or_default(), 8);
    let text = std::fs::read_to_string(&report).map_err(|_| CritestError::Report { path: report.clone(), tail: tail(), source: None })?;
    let specs = match parse_report(&text) {
        Ok(Ok(specs)) => specs,
        Ok(Err(what)) => return Err(CritestError::Incomplete { what, tail: tail() }),
        Err(e) => return Err(CritestError::Report { path: report.clone(), tail: tail(), source: Some(e) }),
    };
    if specs.is_empty() {
        return Err(CritestError::NoSpecs { tail: tail() });
    }
    Ok(CritestRun { version: VERSION.to_string(), specs, seconds: started.elapsed().as_secs_f64() })
}

/// Ginkgo's JSON report: one report per suite, each with its spec reports.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SuiteReport {
    spec_reports: Option<Vec<SpecReport>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SpecReport {
    /// `null` for suite-level nodes.
    container_hierarchy_texts: Option<Vec<String>>,
    #[serde(default)]
    leaf_node_type: String,
    #[serde(default)]
    leaf_node_text: String,
    state: String,
    /// Nanoseconds.
    #[serde(default)]
    run_time: u64,
    failure: Option<Failure>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Failure {
    #[serde(default)]
    message: String,
}

/// The focused `It` specs of a Ginkgo JSON report, or what cut the suite short. A spec the
/// focus left out is not one of them. A spec that failed, timed out or panicked is a failure;
/// a suite-level node (`BeforeSuite`, ...) that did not pass, or a spec interrupted or aborted,
/// means critest said nothing about the runtime.
pub fn parse_report(json: &str) -> Result<Result<Vec<Spec>, String>, serde_json::Error> {
    let suites: Vec<SuiteReport> = serde_json::from_str(json)?;
    let reports: Vec<SpecReport> = suites.into_iter().flat_map(|s| s.spec_reports.unwrap_or_default()).collect();
    let cut_short = |r: &SpecReport| {
        let suite_node = r.leaf_node_type != "It" && !matches!(r.state.as_str(), "passed" | "skipped");
        suite_node || matches!(r.state.as_str(), "interrupted" | "aborted")
    };
    if let Some(r) = reports.iter().find(|r| cut_short(r)) {
        return Ok(Err(crate::input::escape_unprintable(&format!("{} {} {}", r.leaf_node_type, r.leaf_node_text, r.state))));
    }
    let specs = reports.into_iter().filter(|r| r.leaf_node_type == "It");
    Ok(Ok(specs
        .map(|r| (r.container_hierarchy_texts.iter().flatten().chain([&r.leaf_node_text]).map(String::as_str).collect::<Vec<_>>().join(" "), r))
        .filter(|(name, _)| name.contains(FOCUS))
        .map(|(name, r)| {
            let outcome = match r.state.as_str() {
                "passed" => SpecOutcome::Passed,
                "skipped" => SpecOutcome::Skipped,
                _ => SpecOutcome::Failed,
            };
            let message = r.failure.map(|f| readable(f.message.trim())).unwrap_or_default();
            Spec { name: crate::input::escape_unprintable(&name), outcome, seconds: r.run_time as f64 / 1e9, message }
        })
        .collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"[{"SuiteDescription":"CRI validation","SpecReports":[
        {"ContainerHierarchyTexts":null,"LeafNodeType":"BeforeSuite","State":"passed","RunTime":1000},
        {"ContainerHierarchyTexts":["[k8s.io] Security Context","SupplementalGroupsPolicy","when SupplementalGroupsPolicy=Strict"],"LeafNodeType":"It","LeafNodeText":"even if ...","State":"passed","RunTime":4500000000},
        {"ContainerHierarchyTexts":["[k8s.io] Security Context","SupplementalGroupsPolicy","when SupplementalGroupsPolicy=Merge (Default)"],"LeafNodeType":"It","LeafNodeText":"if ...","State":"skipped","RunTime":100,"Failure":{"Message":"The runtime does not support SupplementalGroupsPolicy feature\u001b[0m"}},
        {"ContainerHierarchyTexts":["[k8s.io] Security Context","bucket"],"LeafNodeType":"It","LeafNodeText":"runtime should support SupplementalGroups","State":"skipped"},
        {"ContainerHierarchyTexts":["[k8s.io] Security Context","SupplementalGroupsPolicy","x"],"LeafNodeType":"It","LeafNodeText":"y","State":"timedout"}
    ]}]"#;

    #[test]
    fn the_report_gives_the_focused_specs_with_their_outcome() {
        let specs = parse_report(REPORT).unwrap().unwrap();
        assert_eq!(specs.len(), 3, "BeforeSuite and the unfocused spec are not specs of the run: {specs:?}");
        assert_eq!(specs[0].outcome, SpecOutcome::Passed);
        assert_eq!(specs[0].seconds, 4.5);
        assert!(specs[0].name.starts_with("[k8s.io] Security Context SupplementalGroupsPolicy when SupplementalGroupsPolicy=Strict"), "{}", specs[0].name);
        assert_eq!(specs[1].outcome, SpecOutcome::Skipped);
        assert_eq!(specs[1].message, "The runtime does not support SupplementalGroupsPolicy feature", "ginkgo's colour codes are no part of the message");
        assert_eq!(specs[2].outcome, SpecOutcome::Failed, "a timed-out spec is no pass");
        let run = CritestRun { version: VERSION.into(), specs, seconds: 5.0 };
        assert!(run.summary().starts_with("1 failed, 1 passed, 1 skipped (The runtime does not support"), "{}", run.summary());
        assert!(!run.all(SpecOutcome::Passed));
        assert!(!CritestRun { version: VERSION.into(), specs: vec![], seconds: 0.0 }.all(SpecOutcome::Passed), "no spec is no pass");
    }

    #[test]
    fn a_suite_cut_short_says_nothing_about_the_runtime() {
        let failed_setup = REPORT.replace(r#""LeafNodeType":"BeforeSuite","State":"passed""#, r#""LeafNodeType":"BeforeSuite","State":"failed""#);
        assert!(parse_report(&failed_setup).unwrap().unwrap_err().contains("BeforeSuite"));
        let interrupted = REPORT.replace(r#""State":"timedout""#, r#""State":"interrupted""#);
        assert!(parse_report(&interrupted).unwrap().unwrap_err().contains("interrupted"));
    }
}
