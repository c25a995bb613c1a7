//! The verdict engine: observations of one case, held against what the KEP requires.
//!
//! - `Pass`: every observation point agrees with the expectation.
//! - `Fail`: a Merge (or unset) case is wrong, or a runtime that advertises
//!   `supplemental_groups_policy` got a Strict case wrong, or did not report `status.user`.
//! - `Unsupported { leak }`: a Strict case on a runtime that does not advertise the feature;
//!   `leak` when the image's implicit groups were attached anyway. Never counted as a pass.
//! - `Error`: sgpc could not observe the case (harness or infrastructure failure).

use std::fmt;

use serde::Serialize;

use crate::identity::GroupSet;
use crate::observation::{Observations, Point};
use crate::scenario::{Expectation, Policy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    Fail,
    Unsupported { leak: bool },
    Error,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Unsupported { leak: true } => "UNSUPPORTED+LEAK",
            Verdict::Unsupported { leak: false } => "UNSUPPORTED",
            Verdict::Error => "ERROR",
        })
    }
}

/// A verdict with the reasons behind it and notes that are not failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// Why the case is not PASS, in KEP terms, one mismatch per line.
    pub reasons: Vec<String>,
    /// Divergences that are not failures (group order, status.user on an unsupporting runtime).
    pub notes: Vec<String>,
}

impl Judgement {
    pub fn error(message: impl Into<String>) -> Judgement {
        Judgement { verdict: Verdict::Error, reasons: vec![message.into()], notes: Vec::new() }
    }
}

/// What the verdict engine needs besides the observations.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub policy: Policy,
    pub expected: &'a Expectation,
    /// Groups that the image's `/etc/group` gives the user (from the oracle).
    pub implicit_groups: &'a GroupSet,
    /// The runtime advertises `features.supplemental_groups_policy`.
    pub feature: bool,
}

fn explain_extra(extra: &GroupSet, implicit: &GroupSet) -> String {
    let from_image = extra.iter().filter(|g| implicit.contains(*g)).map(|g| format!("+{g} from image /etc/group"));
    let other = extra.iter().filter(|g| !implicit.contains(*g)).map(|g| format!("+{g}"));
    from_image.chain(other).collect::<Vec<_>>().join(", ")
}

/// Compares every observation point with the expectation; returns the mismatches.
fn mismatches(ctx: &Context<'_>, obs: &Observations) -> Vec<String> {
    let want = &ctx.expected.identity;
    let mut out = Vec::new();
    for o in &obs.identities {
        let got = &o.identity;
        let at = o.point.describe();
        if got.uid != want.uid {
            out.push(format!("uid via {at}: expected {}, got {}", want.uid, got.uid));
        }
        if got.gid != want.gid {
            out.push(format!("primary gid via {at}: expected {}, got {}", want.gid, got.gid));
        }
        if got.groups != want.groups {
            let extra = got.groups.minus(&want.groups);
            let missing = want.groups.minus(&got.groups);
            let mut detail = Vec::new();
            if !extra.is_empty() {
                detail.push(explain_extra(&extra, ctx.implicit_groups));
            }
            if !missing.is_empty() {
                detail.push(missing.iter().map(|g| format!("-{g} missing")).collect::<Vec<_>>().join(", "));
            }
            out.push(format!("groups via {at}: expected {}, got {} ({})", want.groups, got.groups, detail.join("; ")));
        }
    }
    for a in &obs.access {
        match ctx.expected.access.get(&a.path) {
            Some(want) if *want != a.access => out.push(format!(
                "file access by the {:?} process: {} should be {want:?}, was {:?} {}",
                a.prober, a.path, a.access, a.detail
            )),
            Some(_) => {}
            None => out.push(format!("file access: {} was probed but has no expectation", a.path)),
        }
    }
    out
}

fn order_notes(obs: &Observations) -> Vec<String> {
    obs.identities
        .iter()
        .filter(|o| o.raw_groups.windows(2).any(|w| w[0] >= w[1]))
        .map(|o| format!("{} lists groups unsorted or repeated: {:?} (order is not a conformance property)", o.point.describe(), o.raw_groups))
        .collect()
}

/// Judges one case from its observations.
pub fn judge(ctx: &Context<'_>, obs: &Observations) -> Judgement {
    if let Some(missing) = [Point::FirstProcessId, Point::ExecId, Point::FirstProcessKernel]
        .into_iter()
        .find(|p| !obs.identities.iter().any(|o| o.point == *p))
    {
        return Judgement::error(format!("no observation from {}", missing.describe()));
    }
    let expected_files = ctx.expected.access.len();
    if obs.access.len() != 2 * expected_files {
        return Judgement::error(format!("expected {} file access probes, got {}", 2 * expected_files, obs.access.len()));
    }

    let mut reasons = mismatches(ctx, obs);
    let mut notes = order_notes(obs);
    if !obs.identities.iter().any(|o| o.point == Point::HostKernel) {
        notes.push("the runtime did not report the first process's pid; the host's view of /proc/<pid>/status was not read".into());
    }
    match (obs.status_user_missing, ctx.feature) {
        (true, true) => reasons.push("ContainerStatus.user is missing although the runtime advertises supplemental_groups_policy (KEP-3619 requires it)".into()),
        (false, false) => notes.push("ContainerStatus.user is reported although the runtime does not advertise supplemental_groups_policy".into()),
        _ => {}
    }

    let verdict = if ctx.policy == Policy::Strict && !ctx.feature {
        let leaked = obs.identities.iter().any(|o| o.identity.groups.iter().any(|g| ctx.implicit_groups.contains(g) && !ctx.expected.identity.groups.contains(g)));
        reasons.insert(0, "the runtime does not advertise features.supplemental_groups_policy, so Strict cannot be enforced".into());
        if leaked {
            reasons.insert(1, format!("LEAK: implicit groups from the image's /etc/group were attached despite Strict (image groups {})", ctx.implicit_groups));
        }
        Verdict::Unsupported { leak: leaked }
    } else if reasons.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    Judgement { verdict, reasons, notes }
}
