//! sonobuoy's item format (`sonobuoy_results.yaml`; sonobuoy's `pkg/client/results/item.go`),
//! so that `sonobuoy results` reads an evidence bundle as it reads a sonobuoy archive. The tree
//! is the one sonobuoy's own JUnit post-processor builds from sgpc's JUnit file
//! (`pkg/client/results/junit.go`, `junitProcessReader`, and `processing.go`,
//! `aggregateAllResultsAndErrors`): the plugin's summary, the file, its suite, one item per case,
//! a `<failure>` and an `<error>` both `failed` with their message under `failure` or `error`,
//! `system-out` as it is. Two things are sgpc's own: each case's verdict in its details (the
//! word sonobuoy's statuses lose), and `unknown` all the way up for a run without cases
//! (sonobuoy would roll an empty suite up to `passed`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::outcome::{CaseResult, RunReport};
use super::junit::Status;
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
    match Status::of(verdict) {
        Status::Success => "passed",
        Status::Failure | Status::Error => "failed",
        Status::Skipped => "skipped",
    }
}

/// The plugin's tree: `sgpc` (summary) / `junit.xml` (file) / the suite / one item per case.
pub fn results(report: &RunReport) -> Item {
    let suite = parent(super::junit::suite_name(report), BTreeMap::new(), report.cases.iter().map(case_item).collect());
    let file_meta = BTreeMap::from([("file".to_string(), FILE_META.to_string()), ("type".to_string(), "file".to_string())]);
    let file = parent("junit.xml".into(), file_meta, vec![suite]);
    parent(PLUGIN.into(), BTreeMap::from([("type".to_string(), "summary".to_string())]), vec![file])
}

const PLUGIN: &str = "sgpc";
const FILE_META: &str = "results/global/junit.xml";

fn case_item(case: &CaseResult) -> Item {
    let mut details = BTreeMap::from([("verdict".to_string(), case.judgement.verdict.to_string())]);
    if let status @ (Status::Failure | Status::Error) = Status::of(case.judgement.verdict) {
        details.insert(status.word().into(), super::junit::message(case));
    }
    if let Some(out) = super::junit::system_out(case) {
        details.insert("system-out".into(), out);
    }
    Item { name: case.id.to_string(), status: status(case.judgement.verdict).into(), meta: BTreeMap::new(), details, items: Vec::new() }
}

fn parent(name: String, meta: BTreeMap<String, String>, items: Vec<Item>) -> Item {
    Item { name, status: rolled_up(&items).into(), meta, details: BTreeMap::new(), items }
}

/// A parent's status: `failed` when a child is, else `passed` (junitProcessReader); `unknown`
/// without children.
fn rolled_up(items: &[Item]) -> &'static str {
    if items.is_empty() {
        "unknown"
    } else if items.iter().any(|i| i.status == "failed") {
        "failed"
    } else if items.iter().any(|i| i.status == "unknown") {
        "unknown"
    } else {
        "passed"
    }
}

/// A tree read back from a bundle, checked for the shape [`results`] gives it (one file, one
/// suite, cases as leaves, every parent's status rolled up from its children, which is what
/// `sonobuoy results` prints): each case's name and status, or what is wrong.
pub fn case_statuses(tree: &Item) -> Result<Vec<(String, String)>, String> {
    let [file] = tree.items.as_slice() else { return Err(format!("the summary holds {} items, not the one file", tree.items.len())) };
    let [suite] = file.items.as_slice() else { return Err(format!("the file holds {} items, not the one suite", file.items.len())) };
    if tree.name != PLUGIN || file.meta.get("file").map(String::as_str) != Some(FILE_META) {
        return Err(format!("is not plugin {PLUGIN}'s tree of {FILE_META}"));
    }
    if let Some(nested) = suite.items.iter().find(|case| !case.items.is_empty()) {
        return Err(format!("case {} holds items of its own", nested.name));
    }
    for item in [tree, file, suite] {
        if item.status != rolled_up(&item.items) {
            return Err(format!("{} is {}, but its items roll up to {}", item.name, item.status, rolled_up(&item.items)));
        }
    }
    Ok(suite.items.iter().map(|case| (case.name.clone(), case.status.clone())).collect())
}

/// sonobuoy's run info (`meta/info.json`): the plugins the archive holds.
pub fn info() -> Vec<u8> {
    serde_json::json!({"plugins": [PLUGIN]}).to_string().into_bytes()
}

pub fn write(report: &RunReport) -> anyhow::Result<Vec<u8>> {
    Ok(serde_saphyr::to_string(&results(report))?.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_without_cases_is_unknown_all_the_way_up_and_reads_back() {
        let tree = results(&RunReport::empty());
        assert_eq!(tree.status, "unknown");
        assert_eq!(case_statuses(&tree), Ok(Vec::new()));
        let mut lying = tree.clone();
        lying.status = "passed".into();
        assert!(case_statuses(&lying).unwrap_err().contains("roll up to unknown"));
    }
}
