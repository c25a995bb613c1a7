//! The Kubernetes level's own rules: what the API server and kubelet must do with a Pod before
//! any runtime sees it (KEP-3619, "Strict on nodes without support").

use super::{Judgement, Verdict};
use crate::observation::Admission;
use crate::scenario::Policy;

/// The reason kubelet (>= 1.33) gives when it rejects a Strict Pod on a node without support.
pub const REJECTION_REASON: &str = "SupplementalGroupsPolicyNotSupported";
/// The message kubelet gives with it.
pub const REJECTION_MESSAGE: &str = "Pod was rejected: SupplementalGroupsPolicy=Strict is not supported in this node";
/// From this minor version on, kubelet rejects Strict on a node without the feature instead of
/// falling back to Merge.
const REJECTING_KUBELET_MINOR: u32 = 33;

/// A rejected Pod: REJECTED (a pass) when only a Strict Pod on a node without the feature was
/// rejected, with the Warning event; FAIL otherwise. `None` when the Pod was not rejected.
pub fn rejection(policy: Policy, admission: &Admission) -> Option<Judgement> {
    if !admission.rejected {
        return None;
    }
    let mut reasons = Vec::new();
    if policy != Policy::Strict {
        reasons.push(format!("kubelet rejected a {policy} Pod with {REJECTION_REASON}; only Strict may be rejected"));
    }
    if admission.node_feature {
        reasons.push("kubelet rejected the Pod although the node advertises status.features.supplementalGroupsPolicy".into());
    }
    if !admission.rejection_message {
        reasons.push(format!("the rejected Pod's status.message is not kubelet's {REJECTION_MESSAGE:?}"));
    }
    if !admission.warning_event {
        reasons.push(format!("the Pod was rejected without a Warning event with reason {REJECTION_REASON}"));
    }
    Some(if reasons.is_empty() {
        Judgement { verdict: Verdict::Rejected, reasons: vec![REJECTION_MESSAGE.into()], notes: Vec::new(), known_bugs: Vec::new() }
    } else {
        Judgement { verdict: Verdict::Fail, reasons, notes: Vec::new(), known_bugs: Vec::new() }
    })
}

/// Whether the runtime may be held to the feature: the node advertises it and the API server
/// kept the Pod's policy (a dropped policy reaches the runtime as no policy at all).
pub fn feature(admission: &Admission) -> bool {
    admission.node_feature && !admission.policy_dropped
}

/// What a Pod that ran adds to its judgement: a dropped policy is noted, and a Strict Pod that
/// kubelet >= 1.33 ran on a node without the feature is a FAIL, whatever the process got.
pub fn after_run(policy: Policy, admission: &Admission, judgement: &mut Judgement) {
    if admission.policy_dropped {
        judgement.notes.push("the API server dropped spec.securityContext.supplementalGroupsPolicy (feature gate off or API server too old)".into());
    }
    let must_reject = policy == Policy::Strict && !admission.node_feature && !admission.policy_dropped && admission.server_minor >= REJECTING_KUBELET_MINOR;
    if must_reject && judgement.verdict != Verdict::Error {
        judgement.verdict = Verdict::Fail;
        judgement.reasons.insert(
            0,
            format!("kubelet 1.{} ran a Strict Pod on a node without status.features.supplementalGroupsPolicy; it must reject it ({REJECTION_REASON})", admission.server_minor),
        );
    }
}
