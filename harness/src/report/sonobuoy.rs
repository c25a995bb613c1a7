//! sonobuoy's item format (`sonobuoy_results.yaml`; sonobuoy's `pkg/client/results/item.go`),
//! so that `sonobuoy results` reads an evidence bundle as it reads a sonobuoy archive. The tree
//! is the one sonobuoy's own JUnit post-processor builds from sgpc's JUnit file
//! (`pkg/client/results/junit.go`, `junitProcessReader`, and `processing.go`,
//! `aggregateAllResultsAndErrors`): the plugin's summary, the file, its suite, one item per case.
//! A `<failure>` and an `<error>` are both `failed` there; the verdict stays in the details.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::run::RunReport;
use crate::verdict::Verdict;

/// Where sonobuoy looks for a plugin's item tree, and the plugin list of its `meta/info.json`.
pub const RESULTS_FILE: &str = "plugins/sgpc/sonobuoy_results.yaml";
pub const INFO_FILE: &str = "meta/info.json";

/// One node of sonobuoy's result tree (its `results.Item`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
}

/// sonobuoy's status for a verdict, as its JUnit post-processor gives sgpc's JUnit status.
pub fn status(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass | Verdict::Rejected => "passed",
        Verdict::Fail | Verdict::Refused | Verdict::Unsupported { .. } | Verdict::Error => "failed",
        Verdict::NotRun => "skipped",
    }
}

/// The plugin's tree: `sgpc` (summary) / `junit.xml` (file) / the suite / one item per case.
pub fn results(report: &RunReport) -> Item {
    let cases: Vec<Item> = report.cases.iter().map(|case| {
        let mut details = BTreeMap::from([("verdict".to_string(), case.judgement.verdict.to_string())]);
        if !case.judgement.reasons.is_empty() {
            let key = if case.judgement.verdict == Verdict::Error { "error" } else { "failure" };
            details.insert(key.into(), case.judgement.reasons.join("\n"));
        }
        Item { name: case.id.to_string(), status: status(case.judgement.verdict).into(), meta: BTreeMap::new(), details, items: Vec::new() }
    }).collect();
    // junitProcessReader: a suite or file is `failed` when a case is, else `passed`.
    let rolled = if cases.iter().any(|c| c.status == "failed") { "failed" } else { "passed" };
    let suite = Item { name: super::junit::suite_name(report), status: rolled.into(), meta: BTreeMap::new(), details: BTreeMap::new(), items: cases };
    let file_meta = BTreeMap::from([("file".to_string(), "results/global/junit.xml".to_string()), ("type".to_string(), "file".to_string())]);
    let file = Item { name: "junit.xml".into(), status: rolled.into(), meta: file_meta, details: BTreeMap::new(), items: vec![suite] };
    // AggregateStatus: nothing judged is `unknown`, never `passed`.
    let summary = if report.cases.is_empty() { "unknown" } else { rolled };
    Item { name: "sgpc".into(), status: summary.into(), meta: BTreeMap::from([("type".to_string(), "summary".to_string())]), details: BTreeMap::new(), items: vec![file] }
}

/// Every case item of a tree `results` made (the third level below the summary), by name.
pub fn case_statuses(tree: &Item) -> Vec<(String, String)> {
    tree.items.iter().flat_map(|file| &file.items).flat_map(|suite| &suite.items).map(|case| (case.name.clone(), case.status.clone())).collect()
}

pub fn write(report: &RunReport) -> anyhow::Result<Vec<u8>> {
    Ok(serde_saphyr::to_string(&results(report))?.into_bytes())
}
