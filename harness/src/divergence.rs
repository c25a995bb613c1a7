//! Divergences between runtimes: for one case, the runtimes grouped by what they attached.
//!
//! Two runtimes diverge on a case when the identity the kernel gave the first process, any other
//! observation point that disagrees with it (every [`Point`], so a new point joins on its own),
//! or the file access differ, or when one refused the Pod and another ran it. A runtime that
//! does not report a point at all (`ContainerStatus.user` on a runtime without the feature) does
//! not diverge by that alone: the verdict judges it.
//! Cases a runtime could not run (ERROR) say nothing about the runtime and are left out.


use serde::Serialize;

use crate::identity::Identity;
use crate::observation::{Observations, Point};
use crate::outcome::CaseResult;
use crate::scenario::{Access, CaseId};
use crate::verdict::{matched_outcome, Matched, Verdict};

/// One case on which runtimes did different things.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    pub case: CaseId,
    /// One entry per distinct behaviour, in the order the runtimes were given.
    pub behaviours: Vec<Behaviour>,
    /// Every behaviour outside the allowed outcomes is a Strict case on a runtime that does
    /// not support Strict (UNSUPPORTED): the expected leak, not a disagreement about the rules.
    pub only_missing_feature: bool,
}

/// What some runtimes did on a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Behaviour {
    pub runtimes: Vec<String>,
    /// What they attached, or that they refused the Pod.
    pub attached: String,
    /// The rule or allowed alternative it matches, or that it matches none (written as
    /// `matches`, in words).
    #[serde(rename = "matches", serialize_with = "serialize_display")]
    pub rule: Rule,
    /// The verdict of each of `runtimes`, in the same order.
    pub verdicts: Vec<Verdict>,
    /// Upstream bugs the verdicts name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub known_bugs: Vec<String>,
    /// What the runtime said when it refused the Pod (the first of `runtimes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
}

/// What a runtime did on a case, comparable across runtimes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Refused,
    /// The kernel's view of the first process, every other point that disagrees with it (in
    /// [`Point`] order), and the file accesses.
    Ran { process: Identity, disagreeing: Vec<(Point, Identity)>, access: Vec<(String, String, Access)> },
}

fn seen(result: &CaseResult) -> Option<Seen> {
    match result.judgement.verdict {
        Verdict::Refused => return Some(Seen::Refused),
        Verdict::Error | Verdict::NotRun => return None,
        _ => {}
    }
    let obs: &Observations = result.observations.as_ref()?;
    let process = obs.identities.iter().find(|o| o.point == Point::FirstProcessKernel).map(|o| o.identity.clone())?;
    let mut disagreeing: Vec<(Point, Identity)> = obs.identities.iter().filter(|o| o.identity != process).map(|o| (o.point, o.identity.clone())).collect();
    disagreeing.sort_by_key(|(point, _)| *point);
    disagreeing.dedup_by_key(|(point, _)| *point);
    let mut access: Vec<(String, String, Access)> = obs.access.iter().map(|a| (format!("{:?}", a.prober), a.path.clone(), a.access)).collect();
    access.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Some(Seen::Ran { process, disagreeing, access })
}

fn describe(seen: &Seen) -> String {
    match seen {
        Seen::Refused => "refused the Pod".into(),
        Seen::Ran { process, disagreeing, access } => {
            let mut parts = vec![process.to_string()];
            parts.extend(disagreeing.iter().map(|(point, i)| format!("{} {i}", point.describe())));
            let mut files: Vec<String> = access.iter().map(|(_, path, a)| format!("{path} {}", if *a == Access::Allowed { "readable" } else { "denied" })).collect();
            files.dedup();
            parts.extend(files);
            parts.join("; ")
        }
    }
}

/// Which rule of the model, or which allowed alternative, a behaviour matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// The model's one outcome.
    Model,
    /// One of several outcomes the specs allow, by the reading that gives it.
    Allowed { reading: String },
    /// No allowed outcome.
    NoneAllowed,
    /// A Pod the Kubernetes API accepts was not run.
    Refused,
    /// The case has no expectation (it could not be resolved).
    NoExpectation,
}

impl Rule {
    /// Whether the behaviour breaks the rules (matches no allowed outcome or refused the Pod).
    pub fn is_violation(&self) -> bool {
        matches!(self, Rule::NoneAllowed | Rule::Refused)
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Model => f.write_str("the model's outcome"),
            Rule::Allowed { reading } => write!(f, "allowed outcome: {reading}"),
            Rule::NoneAllowed => f.write_str("none of the allowed outcomes"),
            Rule::Refused => f.write_str("none: a Pod the Kubernetes API accepts was not run"),
            Rule::NoExpectation => f.write_str("unknown: the case has no expectation"),
        }
    }
}

/// The rule a behaviour matches, by the verdict's own matcher ([`matched_outcome`]).
fn matched(seen: &Seen, result: &CaseResult) -> Rule {
    match (seen, result.expected.as_ref(), result.observations.as_ref()) {
        (Seen::Refused, _, _) => Rule::Refused,
        (Seen::Ran { .. }, Some(expected), Some(obs)) => match matched_outcome(expected, obs) {
            Matched::Model => Rule::Model,
            Matched::Allowed(outcome) => Rule::Allowed { reading: outcome.describe().to_string() },
            Matched::Nothing => Rule::NoneAllowed,
        },
        (Seen::Ran { .. }, _, _) => Rule::NoExpectation,
    }
}

fn serialize_display<S: serde::Serializer>(value: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// The runtimes (`(runtime name, its result)`) grouped by what they did on one case, in the
/// order given; runtimes that could not run the case (ERROR) are left out.
pub fn behaviours(results: &[(&str, &CaseResult)]) -> Vec<Behaviour> {
    let mut groups: Vec<(Seen, Vec<(&str, &CaseResult)>)> = Vec::new();
    for &(name, result) in results {
        let Some(seen) = seen(result) else { continue };
        match groups.iter_mut().find(|(s, _)| *s == seen) {
            Some((_, members)) => members.push((name, result)),
            None => groups.push((seen, vec![(name, result)])),
        }
    }
    groups
        .iter()
        .map(|(seen, members)| {
            let rule = matched(seen, members[0].1);
            Behaviour {
                runtimes: members.iter().map(|(name, _)| name.to_string()).collect(),
                attached: describe(seen),
                rule,
                verdicts: members.iter().map(|(_, r)| r.judgement.verdict).collect(),
                known_bugs: {
                    let mut bugs: Vec<String> = members.iter().flat_map(|(_, r)| r.judgement.known_bugs.clone()).collect();
                    bugs.sort();
                    bugs.dedup();
                    bugs
                },
                refusal: (*seen == Seen::Refused).then(|| members[0].1.observations.as_ref().and_then(|o| o.refusal.as_ref()).map(ToString::to_string)).flatten(),
            }
        })
        .collect()
}

/// Every behaviour that breaks the rules is a Strict case on a runtime that does not support
/// Strict (UNSUPPORTED): the expected leak, not a disagreement about the rules.
pub fn only_missing_feature(behaviours: &[Behaviour]) -> bool {
    behaviours.iter().filter(|b| b.rule.is_violation()).all(|b| b.verdicts.iter().all(|v| matches!(v, Verdict::Unsupported { .. })))
}

/// The divergence of one case across runtimes (`(runtime name, its result)`), if any.
pub fn of_case(case: &CaseId, results: &[(&str, &CaseResult)]) -> Option<Divergence> {
    let behaviours = behaviours(results);
    if behaviours.len() < 2 {
        return None;
    }
    let only_missing_feature = only_missing_feature(&behaviours);
    Some(Divergence { case: case.clone(), behaviours, only_missing_feature })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::observation::IdentityObservation;
    use crate::outcome::error_result;
    use crate::scenario::{Expectation, Policy};
    use std::collections::BTreeMap;
    use crate::verdict::Judgement;

    fn case() -> CaseId {
        CaseId { scenario: "kep-blog".into(), policy: Policy::Strict }
    }

    fn expected() -> Expectation {
        Expectation { identity: Identity::observed(1000, 3000, [3000, 4000]), access: BTreeMap::new(), deviation: None, allowed: Vec::new(), sources: BTreeMap::new(), escalated: BTreeMap::new(), refusal_allowed: None }
    }

    /// A recorded result: what a runtime attached (`uid`, `gid`, `groups`), as every observation
    /// point saw it, judged `verdict` against `expected`.
    pub(crate) fn recorded(case: &CaseId, (uid, gid): (u32, u32), groups: &[u32], verdict: Verdict, expected: Expectation) -> CaseResult {
        let mut result = error_result(case, "", "");
        let identity = Identity::observed(uid, gid, groups.iter().copied());
        let identities = [Point::FirstProcessId, Point::FirstProcessKernel, Point::ExecId, Point::CriStatus]
            .into_iter()
            .map(|point| IdentityObservation { point, identity: identity.clone(), raw_groups: groups.to_vec(), printed: String::new() })
            .collect();
        result.observations = Some(Observations { identities, ..Observations::default() });
        result.expected = Some(expected);
        result.judgement = Judgement { verdict, reasons: Vec::new(), notes: Vec::new(), known_bugs: Vec::new() };
        result
    }

    fn ran(groups: &[u32], verdict: Verdict) -> CaseResult {
        recorded(&case(), (1000, 3000), groups, verdict, expected())
    }

    #[test]
    fn runtimes_that_agree_do_not_diverge_and_errors_say_nothing() {
        let (a, b) = (ran(&[3000, 4000], Verdict::Pass), ran(&[3000, 4000], Verdict::Pass));
        let error = error_result(&case(), "", "could not start");
        assert_eq!(of_case(&case(), &[("a", &a), ("b", &b), ("c", &error)]), None);
    }

    #[test]
    fn a_leak_and_a_refusal_are_divergences_with_the_rule_each_side_matches() {
        let pass = ran(&[3000, 4000], Verdict::Pass);
        let leak = ran(&[3000, 4000, 50000], Verdict::Unsupported { leak: true });
        let d = of_case(&case(), &[("2.x", &pass), ("1.7", &leak), ("1.6", &leak)]).expect("a divergence");
        assert_eq!(d.behaviours.len(), 2);
        assert_eq!(d.behaviours[0].runtimes, ["2.x"]);
        assert_eq!(d.behaviours[0].rule.to_string(), "the model's outcome");
        assert_eq!(d.behaviours[1].runtimes, ["1.7", "1.6"]);
        assert_eq!(d.behaviours[1].attached, "uid=1000 gid=3000 groups={3000 4000 50000}");
        assert_eq!(d.behaviours[1].rule.to_string(), "none of the allowed outcomes");
        assert!(d.only_missing_feature, "only runtimes without Strict support are outside the model");

        let mut refused = ran(&[], Verdict::Refused);
        let refusal = crate::observation::Refusal { step: "CreateContainer".into(), message: "Unknown: gid out of range".into(), held_image: None };
        refused.observations = Some(Observations { refusal: Some(refusal), ..Observations::default() });
        // The runtime's own answer, from the observation, not from the judgement's wording.
        refused.judgement.reasons = vec!["a note first".into()];
        let d = of_case(&case(), &[("2.x", &refused), ("1.7", &pass)]).expect("a refusal diverges from a run");
        assert_eq!(d.behaviours[0].attached, "refused the Pod");
        assert_eq!(d.behaviours[0].refusal.as_deref(), Some("the runtime refused a Pod the Kubernetes API accepts: CreateContainer failed: Unknown: gid out of range"));
        assert!(!d.only_missing_feature, "a refusal is a real divergence");
    }

    #[test]
    fn a_status_user_that_disagrees_with_the_process_is_part_of_the_behaviour() {
        let pass = ran(&[3000, 4000], Verdict::Pass);
        let mut lying = ran(&[3000, 4000], Verdict::Fail);
        for o in &mut lying.observations.as_mut().unwrap().identities {
            if o.point == Point::CriStatus {
                o.identity = Identity::observed(1000, 3000, [3000]);
            }
        }
        let d = of_case(&case(), &[("a", &pass), ("b", &lying)]).expect("status.user differs");
        assert_eq!(d.behaviours[1].attached, "uid=1000 gid=3000 groups={3000 4000}; CRI ContainerStatus.user uid=1000 gid=3000 groups={3000}");
        assert_eq!(d.behaviours[1].rule, Rule::NoneAllowed, "every point is held to the rules, as in the verdict");
        // Absent status.user (a runtime without the feature) is not a divergence by itself.
        let mut absent = ran(&[3000, 4000], Verdict::Pass);
        absent.observations.as_mut().unwrap().identities.retain(|o| o.point != Point::CriStatus);
        assert_eq!(of_case(&case(), &[("a", &pass), ("c", &absent)]), None);
    }

    /// Every observation point joins the comparison, not a list of names: the host's view of
    /// the process, which no divergence looked at before, is one (the house issue).
    #[test]
    fn any_observation_point_that_disagrees_is_part_of_the_behaviour() {
        let pass = ran(&[3000, 4000], Verdict::Pass);
        let mut other = ran(&[3000, 4000], Verdict::Fail);
        let host = Identity::observed(1000, 3000, [3000, 4000, 50000]);
        other.observations.as_mut().unwrap().identities.push(IdentityObservation { point: Point::HostKernel, identity: host, raw_groups: vec![3000, 4000, 50000], printed: String::new() });
        let d = of_case(&case(), &[("a", &pass), ("b", &other)]).expect("the host's view differs");
        assert_eq!(d.behaviours[1].attached, "uid=1000 gid=3000 groups={3000 4000}; host /proc/<pid>/status uid=1000 gid=3000 groups={3000 4000 50000}");
    }
}
