//! Classification: which generated cases are news, and which are the same news.
//!
//! A case is news when runtimes attach different identities (or one refuses the Pod), or when
//! they agree on an outcome that matches no allowed outcome of the model, or when any verdict is
//! FAIL or REFUSED. Cases are the same news (one class) when the runtimes split into the same
//! groups, each group matching the same rule with the same verdicts. The policy is not part of
//! the class: default and Merge are one rule.

use serde::Serialize;

use crate::divergence::{self, Behaviour, Rule};
use crate::outcome::CaseResult;
use crate::verdict::Verdict;

/// What kind of news a class is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Runtimes disagree, and at least one breaks the rules beyond a missing Strict.
    Divergence,
    /// Runtimes disagree, each within an allowed outcome (the specs leave the case open).
    AllowedDivergence,
    /// The only rule broken is Strict on runtimes that do not support it: the expected leak.
    ExpectedLeak,
    /// Every runtime did the same, and it breaks the rules: the model and the runtimes disagree.
    ModelFailure,
    /// Every runtime attached the model's identity, but a verdict fails on what a runtime
    /// reported (`status.user`, an id out of range).
    ReportFailure,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Divergence => "divergence",
            Kind::AllowedDivergence => "divergence within the allowed outcomes",
            Kind::ExpectedLeak => "expected Strict leak (runtimes without the feature)",
            Kind::ModelFailure => "every runtime outside the model",
            Kind::ReportFailure => "the model's identity, but a verdict fails on what a runtime reported",
        }
    }
}

/// One group of a class: runtimes that did the same, the rule it matches, their verdicts.
/// (In JSON, the rule and the verdicts as [`rule_label`] and `Verdict`'s labels write them.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Side {
    pub runtimes: Vec<String>,
    #[serde(serialize_with = "serialize_rule")]
    pub rule: Rule,
    /// Distinct, in the order of their labels.
    #[serde(serialize_with = "serialize_verdicts")]
    pub verdicts: Vec<Verdict>,
}

/// A side's rule in one phrase; which reading gave an allowed outcome is part of the news.
pub fn rule_label(rule: &Rule) -> String {
    match rule {
        Rule::Allowed { reading } => format!("allowed outcome ({reading})"),
        other => other.to_string(),
    }
}

fn serialize_rule<S: serde::Serializer>(rule: &Rule, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rule_label(rule))
}

fn serialize_verdicts<S: serde::Serializer>(verdicts: &[Verdict], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(verdicts.iter().map(ToString::to_string))
}

fn labels(verdicts: &[Verdict]) -> String {
    verdicts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// What makes two cases the same news.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ClassKey {
    pub kind: Kind,
    pub sides: Vec<Side>,
}

impl ClassKey {
    /// The runtimes whose behaviour makes the class: the ones to re-run when shrinking.
    pub fn runtimes(&self) -> Vec<String> {
        let mut names: Vec<String> = self.sides.iter().flat_map(|s| s.runtimes.clone()).collect();
        names.sort();
        names
    }

    /// One line: `runc, youki: refused (REFUSED) | 1.6, 1.7: the model's outcome (PASS)`.
    pub fn describe(&self) -> String {
        let sides: Vec<String> = self.sides.iter().map(|s| format!("{}: {} ({})", s.runtimes.join(", "), rule_label(&s.rule), labels(&s.verdicts))).collect();
        format!("{}: {}", self.kind.describe(), sides.join(" | "))
    }
}

/// The class of one case from each runtime's result, or `None` when the case is no news.
pub fn classify(results: &[(&str, &CaseResult)]) -> Option<(ClassKey, Vec<Behaviour>)> {
    let behaviours = divergence::behaviours(results);
    let violation = behaviours.iter().any(|b| b.rule.is_violation());
    let failed = behaviours.iter().flat_map(|b| &b.verdicts).any(|v| matches!(v, Verdict::Fail | Verdict::Refused));
    let kind = match behaviours.len() {
        0 => return None,
        1 if violation => Kind::ModelFailure,
        1 if failed => Kind::ReportFailure,
        1 => return None,
        _ if divergence::only_missing_feature(&behaviours) && !failed => {
            if violation {
                Kind::ExpectedLeak
            } else {
                Kind::AllowedDivergence
            }
        }
        _ => Kind::Divergence,
    };
    let mut sides: Vec<Side> = behaviours.iter().map(side).collect();
    sides.sort();
    Some((ClassKey { kind, sides }, behaviours))
}

fn side(behaviour: &Behaviour) -> Side {
    let mut runtimes = behaviour.runtimes.clone();
    runtimes.sort();
    let mut verdicts = behaviour.verdicts.clone();
    verdicts.sort_by_key(ToString::to_string);
    verdicts.dedup();
    Side { runtimes, rule: behaviour.rule.clone(), verdicts }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::identity::Identity;
    use crate::outcome::error_result;
    use crate::scenario::{CaseId, Expectation, Policy};

    fn case() -> CaseId {
        CaseId { scenario: "d7-0000".into(), policy: Policy::Merge }
    }

    /// A result shaped as the live discovery recorded it: every observation point saw `groups`.
    fn ran(groups: &[u32], verdict: Verdict, expected: &[u32]) -> CaseResult {
        let expected = Expectation { identity: Identity::observed(1001, 1001, expected.iter().copied()), access: BTreeMap::new(), deviation: None, allowed: Vec::new(), sources: BTreeMap::new(), escalated: BTreeMap::new(), refusal_allowed: None };
        crate::divergence::tests::recorded(&case(), (1001, 1001), groups, verdict, expected)
    }

    fn refused() -> CaseResult {
        let mut result = ran(&[], Verdict::Refused, &[1001, 2147483648]);
        result.observations = None;
        result
    }

    #[test]
    fn agreement_within_the_model_is_no_news_and_errors_say_nothing() {
        let (a, b) = (ran(&[1001], Verdict::Pass, &[1001]), ran(&[1001], Verdict::Pass, &[1001]));
        let error = error_result(&case(), "", "could not start");
        assert_eq!(classify(&[("a", &a), ("b", &b), ("c", &error)]), None);
    }

    #[test]
    fn the_large_gid_refusal_is_a_divergence_of_its_own() {
        let model = ran(&[1001, 2147483648], Verdict::Pass, &[1001, 2147483648]);
        let (refused_runc, refused_youki) = (refused(), refused());
        let (key, behaviours) = classify(&[("1.6", &model), ("2.x-runc", &refused_runc), ("1.7", &model), ("2.x-youki", &refused_youki)]).expect("news");
        assert_eq!(key.kind, Kind::Divergence);
        assert_eq!(key.sides.len(), 2);
        assert_eq!(key.sides[0], Side { runtimes: vec!["1.6".into(), "1.7".into()], rule: Rule::Model, verdicts: vec![Verdict::Pass] });
        assert_eq!(key.sides[1].rule, Rule::Refused);
        let json = serde_json::to_value(&key).unwrap();
        assert_eq!(json["sides"][0]["rule"], "the model's outcome", "the JSON keeps the labels");
        assert_eq!(json["sides"][1]["verdicts"], serde_json::json!(["REFUSED"]));
        assert_eq!(key.sides[1].runtimes, ["2.x-runc", "2.x-youki"]);
        assert_eq!(key.runtimes(), ["1.6", "1.7", "2.x-runc", "2.x-youki"]);
        assert_eq!(behaviours.len(), 2);
        // The order runtimes come in does not make another class.
        let (again, _) = classify(&[("2.x-youki", &refused_youki), ("1.7", &model), ("2.x-runc", &refused_runc), ("1.6", &model)]).unwrap();
        assert_eq!(again, key);
    }

    #[test]
    fn strict_leaks_of_runtimes_without_the_feature_are_their_own_kind() {
        let pass = ran(&[1001], Verdict::Pass, &[1001]);
        let leak = ran(&[1000, 1001], Verdict::Unsupported { leak: true }, &[1001]);
        let (key, _) = classify(&[("1.6", &leak), ("2.x", &pass)]).unwrap();
        assert_eq!(key.kind, Kind::ExpectedLeak);
        // Another leaked group is the same class.
        let other_leak = ran(&[1001, 60000], Verdict::Unsupported { leak: true }, &[1001]);
        assert_eq!(classify(&[("1.6", &other_leak), ("2.x", &pass)]).unwrap().0, key);
    }

    #[test]
    fn every_runtime_outside_the_model_is_a_model_failure_not_a_divergence() {
        let dropped = ran(&[100], Verdict::Fail, &[100, 1000]);
        let (key, _) = classify(&[("1.6", &dropped), ("2.x", &dropped)]).unwrap();
        assert_eq!(key.kind, Kind::ModelFailure);
        assert_eq!(key.sides.len(), 1);
        let (all_refused, _) = classify(&[("1.6", &refused()), ("2.x", &refused())]).unwrap();
        assert_eq!(all_refused.kind, Kind::ModelFailure);
        assert_ne!(all_refused, key, "a refusal and a dropped group are different news");
    }

    #[test]
    fn shrinking_represents_every_side_and_every_verdict() {
        let model = ran(&[1001, 2147483648], Verdict::Pass, &[1001, 2147483648]);
        let view = [("1.6", &model), ("1.7", &model), ("2.x-runc", &refused()), ("2.x-youki", &refused())];
        let (key, _) = classify(&view).unwrap();
        let (chosen, chosen_key) = crate::discover::representatives(&key, &view, &[]);
        assert_eq!(chosen, ["1.6", "2.x-runc"], "one per side");
        assert_eq!(chosen_key.kind, key.kind);
        // A side whose runtimes got different verdicts keeps one runtime per verdict, so the
        // representatives show the same kind of news.
        let (pass, fail) = (ran(&[1001], Verdict::Pass, &[1001]), ran(&[1001], Verdict::Fail, &[1001]));
        let view = [("a", &pass), ("b", &fail)];
        let (key, _) = classify(&view).unwrap();
        let (chosen, chosen_key) = crate::discover::representatives(&key, &view, &[]);
        assert_eq!(chosen, ["b", "a"]);
        assert_eq!(chosen_key, key);
    }

    #[test]
    fn the_model_identity_with_a_failing_verdict_is_no_model_failure() {
        // One runtime attached the model's identity but its status.user was missing while it
        // advertises the feature (FAIL); the other passed: one behaviour, two verdicts.
        let (pass, fail) = (ran(&[1001], Verdict::Pass, &[1001]), ran(&[1001], Verdict::Fail, &[1001]));
        let (key, _) = classify(&[("a", &pass), ("b", &fail)]).unwrap();
        assert_eq!(key.kind, Kind::ReportFailure);
        assert_eq!(key.sides[0].verdicts, [Verdict::Fail, Verdict::Pass]);
    }
}
