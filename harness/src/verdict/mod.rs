//! The verdict engine: observations of one case, held against what the KEP requires.
//!
//! - `Pass`: every observation point agrees with the expectation.
//! - `Fail`: a Merge (or unset) case is wrong, or a runtime that advertises
//!   `supplemental_groups_policy` got a Strict case wrong, or did not report `status.user`.
//! - `Unsupported { leak }`: a Strict case on a runtime that does not advertise the feature;
//!   `leak` whenever a process held a group the Pod did not declare (observed, not inferred
//!   from the image). Never counted as a pass.
//! - `Rejected` (Kubernetes level): kubelet refused a Strict Pod it cannot honour; a pass.
//! - `Refused`: the runtime answered RunPodSandbox, CreateContainer or StartContainer with an
//!   error for a Pod the Kubernetes API accepts: the runtime's behaviour, a finding (exit code
//!   and JUnit as FAIL), never an ERROR.
//! - `Error`: sgpc could not observe the case (harness or infrastructure failure).
//!
//! Every rule lives here: the identity and access rules below, the Kubernetes level's
//! admission rules in [`admission`], the model itself in `oracle.rs`.

pub mod admission;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::escalation::Program;
use crate::etc::GroupLine;
use crate::identity::{GroupSet, Identity};
use crate::observation::{CapabilitySets, Escalated, Observations, Point, Prober, Refusal};
use crate::oracle::AllowedOutcome;
use crate::scenario::{Access, Expectation, Policy};

/// How `cat` reports EACCES.
const PERMISSION_DENIED: &str = "Permission denied";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    Fail,
    Unsupported { leak: bool },
    /// Kubernetes level: kubelet refused a Strict Pod on a node without the feature, as the KEP
    /// requires from 1.33 on. Counts as a pass.
    Rejected,
    /// The runtime refused to run a Pod the Kubernetes API accepts: a finding about the runtime.
    Refused,
    /// The case needs what the target does not offer (a user namespace): not run, with the
    /// reason; never a pass.
    NotRun,
    Error,
}

impl Verdict {
    /// Every verdict, for parsing labels and for tests that must cover them all.
    pub const ALL: [Verdict; 8] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::Unsupported { leak: false },
        Verdict::Unsupported { leak: true },
        Verdict::Rejected,
        Verdict::Refused,
        Verdict::NotRun,
        Verdict::Error,
    ];

    /// The verdict a label (`PASS`, `UNSUPPORTED+LEAK`, ...) names: the inverse of `Display`.
    pub fn from_label(label: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.to_string() == label)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Unsupported { leak: true } => "UNSUPPORTED+LEAK",
            Verdict::Unsupported { leak: false } => "UNSUPPORTED",
            Verdict::Rejected => "REJECTED",
            Verdict::Refused => "REFUSED",
            Verdict::NotRun => "NOT RUN",
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
    /// Upstream bugs whose signature the failure shows (`containerd/containerd#11937`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub known_bugs: Vec<String>,
}

impl Judgement {
    pub fn error(message: impl Into<String>) -> Judgement {
        Judgement { verdict: Verdict::Error, reasons: vec![message.into()], notes: Vec::new(), known_bugs: Vec::new() }
    }

    /// The runtime refused the Pod, with what a user can do about it where the cause is known.
    fn refused(refusal: &Refusal) -> Judgement {
        Judgement { verdict: Verdict::Refused, reasons: vec![refusal.to_string()], notes: refusal_hint(&refusal.message).into_iter().collect(), known_bugs: Vec::new() }
    }
}

/// Why a `hostUsers: false` case is not run on a target whose runtime handler does not advertise
/// user namespaces.
pub const USERNS_NOT_ADVERTISED: &str = "the runtime handler does not advertise user namespaces (CRI RuntimeHandlerFeatures.user_namespaces), and kubelet refuses a Pod with hostUsers: false on such a handler (pkg/kubelet/userns, HandlerSupportsUserNamespaces)";

/// Why a `hostUsers: false` case is not run on a containerd sgpc started: containerd takes the
/// Pod's address from the CNI result's `eth0` ("failed to find network info for sandbox"), and
/// sgpc gives the runtimes it starts a loopback-only network, which creates no host device.
pub const USERNS_NEEDS_POD_NETWORK: &str = "containerd needs an address on the Pod's own network (a user-namespaced Pod may not use the host's: Kubernetes API validateHostUsers), and sgpc gives the runtimes it starts loopback only (measured: RunPodSandbox fails with \"failed to find network info for sandbox\")";

impl Judgement {
    /// A case the target cannot run as kubelet would send it: NOT RUN, never a pass.
    pub fn not_run(reason: &str) -> Judgement {
        Judgement { verdict: Verdict::NotRun, reasons: vec![reason.to_string()], notes: Vec::new(), known_bugs: Vec::new() }
    }
}

/// What a user can do about a refusal whose cause is known; only where its own pattern matches.
fn refusal_hint(message: &str) -> Option<String> {
    (message.contains("OCI runtime create failed") && message.contains("unknown version specified")).then(|| {
        "the OCI runtime refused the runtime spec; Debian 12's crun 1.8.1, for one, refuses the specs containerd 1.7 and 2.x write with `unknown version specified`".to_string()
    })
}

/// What the verdict engine needs besides the observations.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub policy: Policy,
    pub expected: &'a Expectation,
    /// The groups the Pod declares (primary gid, fsGroup, supplementalGroups): all that
    /// Strict may attach ([`crate::case::Case::declared`]).
    pub declared: &'a GroupSet,
    /// The image's `/etc/group`, read leniently: only to say where an extra group came from.
    pub image_groups: &'a [GroupLine],
    /// The runtime advertises `features.supplemental_groups_policy`.
    pub feature: bool,
    /// This level can read the host's `/proc/<pid>/status` (the CRI level; not the Kubernetes
    /// level, where sgpc is no process on the node).
    pub host_view: bool,
    /// The Pod sets `allowPrivilegeEscalation: false`: every process must run with
    /// `no_new_privs` ([`NO_NEW_PRIVS_RULE`]).
    pub no_new_privs: bool,
    /// The Pod drops ALL capabilities: no process may hold one ([`DROP_ALL_RULE`]).
    pub drop_all_capabilities: bool,
    /// The Pod drops `CAP_SETGID` (by name or with ALL): a file capability cannot grant it.
    pub drops_setgid: bool,
    /// The group that owns the image's escalation programs, if it carries them.
    pub escalation_gid: Option<u32>,
    /// The Pod sets `hostUsers: false`: every process must run in a user namespace of its own
    /// ([`USER_NAMESPACE_RULE`]).
    pub user_namespace: bool,
}

/// `+gid` and where it comes from: the image's `/etc/group` lines that carry it, or
/// "source unknown".
fn explain_extra(extra: &GroupSet, image_groups: &[GroupLine]) -> String {
    extra
        .iter()
        .map(|g| {
            let lines: Vec<String> = image_groups.iter().filter(|l| l.gid == g).map(|l| format!("line {} {:?}", l.number, l.text)).collect();
            if lines.is_empty() {
                format!("+{g} (source unknown)")
            } else {
                format!("+{g} from image /etc/group {}", lines.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Groups a process holds beyond its primary gid that the Pod did not declare: under Strict,
/// every one of them is a leak, whatever sgpc makes of the image's files.
fn undeclared(obs: &Observations, declared: &GroupSet) -> GroupSet {
    obs.identities
        .iter()
        .flat_map(|o| o.identity.groups.iter().filter(move |g| *g != o.identity.gid))
        .filter(|g| !declared.contains(*g))
        .collect()
}

/// `-gid missing` and where the group was expected from.
fn explain_missing(missing: &GroupSet, sources: &BTreeMap<u32, Vec<String>>) -> String {
    missing
        .iter()
        .map(|g| match sources.get(&g) {
            Some(from) => format!("-{g} missing, expected from {}", from.join(" and ")),
            None => format!("-{g} missing"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares every observation point with one allowed identity and access; returns the
/// mismatches.
fn mismatches(ctx: &Context<'_>, want: &Identity, want_access: &BTreeMap<String, Access>, obs: &Observations) -> Vec<String> {
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
                detail.push(explain_extra(&extra, ctx.image_groups));
            }
            if !missing.is_empty() {
                detail.push(explain_missing(&missing, &ctx.expected.sources));
            }
            out.push(format!("groups via {at}: expected {}, got {} ({})", want.groups, got.groups, detail.join("; ")));
        }
    }
    for a in &obs.access {
        match want_access.get(&a.path) {
            Some(want) if *want != a.access => out.push(format!(
                "file access by the {}: {} should be {want}, was {} {}",
                a.prober.describe(), a.path, a.access, a.detail
            )),
            Some(_) => {}
            None => out.push(format!("file access: {} was probed but has no expectation", a.path)),
        }
    }
    out
}

/// Which outcome a case's observations match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched<'a> {
    /// The model's one outcome.
    Model,
    /// One of the outcomes the specs allow where they leave the case open.
    Allowed(&'a AllowedOutcome),
    /// None.
    Nothing,
}

/// The one matcher of observations against the outcomes an expectation allows, for the verdict
/// and for divergences alike: every observation point and every file access must agree.
pub fn matched_outcome<'a>(expected: &'a Expectation, obs: &Observations) -> Matched<'a> {
    let agrees = |identity: &Identity, access: &BTreeMap<String, Access>| {
        obs.identities.iter().all(|o| o.identity == *identity) && obs.access.iter().all(|a| access.get(&a.path) == Some(&a.access))
    };
    if let Some(outcome) = expected.allowed.iter().find(|o| agrees(&o.identity, &o.access)) {
        return Matched::Allowed(outcome);
    }
    if expected.allowed.is_empty() && agrees(&expected.identity, &expected.access) {
        Matched::Model
    } else {
        Matched::Nothing
    }
}

/// Holds the observations to the expectation, or where the specs leave the case open, to each
/// allowed outcome in turn: the mismatches against the first (the primary) when none matches,
/// and a note naming the outcome that matched.
fn held_to_expectation(ctx: &Context<'_>, obs: &Observations) -> (Vec<String>, Option<String>) {
    let open = "the specs leave this case open";
    match matched_outcome(ctx.expected, obs) {
        Matched::Allowed(chosen) => return (Vec::new(), Some(format!("{open}; the runtime's outcome {} is allowed: {}", chosen.identity, chosen.describe()))),
        Matched::Model => return (Vec::new(), None),
        Matched::Nothing => {}
    }
    let mut reasons = mismatches(ctx, &ctx.expected.identity, &ctx.expected.access, obs);
    if ctx.expected.allowed.is_empty() {
        return (reasons, None);
    }
    let allowed: Vec<String> = ctx.expected.allowed.iter().map(|o| format!("{} ({})", o.identity, o.describe())).collect();
    reasons.push(format!("{open}, but the runtime matches none of the allowed outcomes: {}", allowed.join("; ")));
    (reasons, None)
}

/// The "negative group permission" rule: the primary gid is always one of the process's
/// supplementary groups, so that a process that changes its effective gid (a setgid binary) is
/// still held back by a `---` group permission of its primary group. Runtimes that left it out
/// were CVE-2022-2989 (podman), CVE-2022-2990 (buildah), CVE-2022-2995 (CRI-O), CVE-2022-36109
/// (moby) and CVE-2023-25173 (containerd before 1.6.18); the KEP's author restates it in
/// kubernetes/enhancements#3620 and cri-o/cri-o#8268 ("MUST"). Held at the points
/// whose list is the kernel's supplementary list or reports it (`status.user` is "the
/// supplemental groups attached to the first process", Kubernetes API LinuxContainerUser);
/// `id` prints the effective gid whatever the list holds, so it cannot show the rule.
pub const PRIMARY_GID_RULE: &str = "the primary gid is not among the supplementary groups";

fn primary_gid_reasons(obs: &Observations) -> Vec<String> {
    let kernel_lists = [Point::FirstProcessKernel, Point::HostKernel, Point::CriStatus, Point::PodStatus];
    obs.identities
        .iter()
        .filter(|o| kernel_lists.contains(&o.point) && !o.raw_groups.contains(&o.identity.gid))
        .map(|o| {
            format!(
                "{PRIMARY_GID_RULE} via {}: gid {} not in {:?}; a setgid program could then shed a `---` group permission (CVE-2022-2989, CVE-2022-2990, CVE-2022-2995, CVE-2022-36109, CVE-2023-25173; cri-o/cri-o#8268)",
                o.point.describe(),
                o.identity.gid,
                o.raw_groups
            )
        })
        .collect()
}

/// `allowPrivilegeEscalation: false` must reach the kernel as `no_new_privs` on every process of
/// the container (Kubernetes API SecurityContext.allowPrivilegeEscalation: it "directly controls
/// if the no_new_privs flag will be set on the container process"; OCI runtime spec
/// `process.noNewPrivileges`). It is what keeps a setgid or file-capability program in an image
/// from changing the identity Strict gave the process (the GA blog, "Kubernetes v1.35:
/// Fine-grained Supplemental Groups Control Graduates to GA", sets it in its example Pod).
pub const NO_NEW_PRIVS_RULE: &str = "allowPrivilegeEscalation: false, yet the process runs without no_new_privs";

fn no_new_privs_reasons(ctx: &Context<'_>, obs: &Observations) -> Vec<String> {
    let wrong = |set: &bool| (!*set).then(|| "NoNewPrivs: 0, so a setgid or file-capability program could change its groups [Kubernetes API SecurityContext.allowPrivilegeEscalation; OCI runtime spec process.noNewPrivileges]".to_string());
    every_process(ctx.no_new_privs, NO_NEW_PRIVS_RULE, &obs.no_new_privs, wrong, "NoNewPrivs")
}

/// What a rule asks of every process of the container (first and exec'd), as read from its
/// `/proc/self/status`: one reason per process whose reading is `wrong`, or that printed none of
/// `fields` (unreported is not shown). Nothing when the Pod does not ask.
fn every_process<T>(asked: bool, rule: &str, seen: &BTreeMap<Prober, T>, wrong: impl Fn(&T) -> Option<String>, fields: &str) -> Vec<String> {
    if !asked {
        return Vec::new();
    }
    [Prober::FirstProcess, Prober::Exec]
        .into_iter()
        .filter_map(|prober| match seen.get(&prober) {
            Some(value) => wrong(value).map(|why| format!("{rule}: the {} has {why}", prober.describe())),
            None => Some(format!("{rule}: the {} did not report {fields} in /proc/self/status", prober.describe())),
        })
        .collect()
}

/// `hostUsers: false` puts the Pod in a user namespace of its own (Kubernetes API
/// PodSpec.hostUsers: "If set to false, a new userns is created for the pod"; kubelet sends CRI
/// `NamespaceOption.userns_options` with mode POD; OCI runtime spec `linux.namespaces` type
/// `user` with `uidMappings`). A process still in the host's user namespace shows
/// `/proc/self/uid_map` as `0 0 4294967295` (user_namespaces(7)).
pub const USER_NAMESPACE_RULE: &str = "hostUsers: false, yet the process runs in the host's user namespace";

/// Where sgpc sent the mapping itself (the CRI level), a process must show exactly it: one in
/// the runtime's own user namespace (a runtime that runs inside one) shows another line.
fn user_namespace_reasons(ctx: &Context<'_>, obs: &Observations) -> Vec<String> {
    if !ctx.user_namespace {
        return Vec::new();
    }
    const CITED: &str = "[Kubernetes API PodSpec.hostUsers; CRI NamespaceOption.userns_options; user_namespaces(7)]";
    [Prober::FirstProcess, Prober::Exec]
        .into_iter()
        .filter_map(|prober| {
            let why = match (obs.uid_map.get(&prober), obs.requested_uid_map) {
                (None, _) => "printed no /proc/self/uid_map line".to_string(),
                (Some(line), _) if line.is_initial() => format!("/proc/self/uid_map `{line}`, the host's own mapping {CITED}"),
                (Some(line), Some(asked)) if *line != asked => format!("/proc/self/uid_map `{line}`, not the mapping the request asked for (`{asked}`) {CITED}"),
                _ => return None,
            };
            Some(format!("{USER_NAMESPACE_RULE}: the {} has {why}", prober.describe()))
        })
        .collect()
}

/// `capabilities: {drop: [ALL]}` leaves every process of the container without capabilities,
/// its bounding set included (Kubernetes API Capabilities.drop, "Removed capabilities"; kubelet
/// passes the list to CRI `drop_capabilities`; OCI runtime spec `process.capabilities`). With
/// `CAP_SETGID` in the bounding set a file-capability program could still call `setgroups(2)`
/// and change what Strict gave.
pub const DROP_ALL_RULE: &str = "capabilities drop [ALL], yet the process holds capabilities";

fn drop_all_reasons(ctx: &Context<'_>, obs: &Observations) -> Vec<String> {
    let wrong = |sets: &CapabilitySets| (!sets.is_empty()).then(|| format!("{sets} [Kubernetes API Capabilities.drop; OCI runtime spec process.capabilities]"));
    every_process(ctx.drop_all_capabilities, DROP_ALL_RULE, &obs.capabilities, wrong, "CapPrm, CapEff and CapBnd")
}

/// An escalation the Pod's fields should have stopped: `no_new_privs` makes `execve(2)` ignore
/// setgid bits and file capabilities (prctl(2) `PR_SET_NO_NEW_PRIVS`; the Kubernetes API:
/// allowPrivilegeEscalation "directly controls if the no_new_privs flag will be set"); without
/// `CAP_SETGID` in the bounding set a file capability cannot grant it (capabilities(7),
/// "Transformation of capabilities during execve()"; Kubernetes API Capabilities.drop).
pub const ESCALATION_RULE: &str = "an image's program changed its groups although the Pod's fields forbid it";

/// What the image's escalation programs did ([`crate::escalation`]): reasons where the Pod's
/// fields should have stopped one and did not, or where one read a file that even its escalated
/// identity may not read; a note where the policy alone did not keep the image out of the
/// program's group (not a runtime failure: KEP-3619 sets only the starting identity). An
/// escalation the image cannot show (no report from a program) is sgpc's error.
/// Why the escalation programs could not be judged.
#[derive(Debug)]
enum EscalationGap {
    /// A program's report is missing: the image or the runtime kept it from running to the end.
    NotReported(String),
    /// sgpc cannot judge what it has (no model, an odd read): always sgpc's ERROR.
    Unjudgeable(String),
}

impl fmt::Display for EscalationGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EscalationGap::NotReported(why) | EscalationGap::Unjudgeable(why) => f.write_str(why),
        }
    }
}

fn escalation_findings(ctx: &Context<'_>, obs: &Observations) -> Result<(Vec<String>, Vec<String>), EscalationGap> {
    let mut findings = (Vec::new(), Vec::new());
    let Some(program_gid) = ctx.escalation_gid else { return Ok(findings) };
    for program in Program::ALL {
        let reachable = ctx.expected.escalated.get(&program).ok_or_else(|| EscalationGap::Unjudgeable(format!("the model gives no access for {}", program.describe())))?;
        for prober in [Prober::FirstProcess, Prober::Exec] {
            let seen = obs.escalations.iter().find(|e| e.program == program && e.prober == prober);
            let seen = seen.ok_or_else(|| EscalationGap::NotReported(format!("the {} did not report what {} got", prober.describe(), program.describe())))?;
            // What the process itself had: a group the runtime attached is no escalation.
            let point = match prober {
                Prober::FirstProcess => Point::FirstProcessKernel,
                Prober::Exec => Point::ExecId,
            };
            let before = obs.identities.iter().find(|o| o.point == point).map(|o| &o.identity).ok_or_else(|| EscalationGap::Unjudgeable(format!("no observation from {}", point.describe())))?;
            let who = format!("{} ({}) run by the {}", program.describe(), program.path(), prober.describe());
            let one = OneEscalation { ctx, program, program_gid, reachable, before, who };
            one.judge(&seen.outcome, &mut findings)?;
        }
    }
    Ok(findings)
}

/// One escalation program run by one process, with what the model says it may reach.
struct OneEscalation<'a> {
    ctx: &'a Context<'a>,
    program: Program,
    program_gid: u32,
    reachable: &'a BTreeMap<String, Access>,
    /// The identity of the process that ran the program, as observed.
    before: &'a Identity,
    who: String,
}

impl OneEscalation<'_> {
    fn judge(&self, outcome: &Escalated, (reasons, notes): &mut (Vec<String>, Vec<String>)) -> Result<(), EscalationGap> {
        let stopped = self.program.stopped(self.ctx.no_new_privs, self.ctx.drops_setgid, self.ctx.expected.identity.uid == 0);
        let (egid, groups, access) = match outcome {
            Escalated::Ran { egid, groups, access, .. } => (*egid, groups, access),
            Escalated::NotExecuted { status } => {
                let why = if self.program == Program::CapSetgid && self.ctx.drops_setgid { ": execve(2) refuses a program whose file capabilities the bounding set withholds [capabilities(7)]" } else { "" };
                notes.push(format!("{} could not be executed (shell exit status {status}){why}", self.who));
                return Ok(());
            }
        };
        let before = self.before;
        let gained = (egid == self.program_gid && before.gid != self.program_gid) || (groups.contains(&self.program_gid) && !before.groups.contains(self.program_gid));
        if stopped && gained {
            reasons.push(format!("{ESCALATION_RULE}: {} got effective gid {egid} and groups {groups:?} ({}) [prctl(2) PR_SET_NO_NEW_PRIVS; capabilities(7)]", self.who, escalation_guard(self.ctx)));
        }
        for (path, want_plain) in &self.ctx.expected.access {
            let (got, detail) = access.get(path).ok_or_else(|| EscalationGap::NotReported(format!("{} did not report reading {path}", self.who)))?;
            if *got == Access::Denied && !detail.contains(PERMISSION_DENIED) {
                return Err(EscalationGap::Unjudgeable(format!("{} failed to read {path} for a reason other than permissions: {detail}", self.who)));
            }
            let want_escalated = self.reachable.get(path).copied().unwrap_or(*want_plain);
            if *got == *want_plain {
                continue;
            }
            if stopped || *got != want_escalated {
                let want = if stopped { *want_plain } else { want_escalated };
                reasons.push(format!("file access by {}: {path} should be {want}, was {got} {detail} (effective gid {egid}, groups {groups:?})", self.who));
            } else {
                notes.push(format!(
                    "the policy ({}) alone did not keep the image out of group {}: {} read {path}; {} would have stopped it",
                    self.ctx.policy.api_value().unwrap_or("unset"),
                    self.program_gid,
                    self.who,
                    self.program.stopped_by(self.ctx.expected.identity.uid == 0)
                ));
            }
        }
        Ok(())
    }
}

/// Which of the Pod's fields should have stopped an escalation.
fn escalation_guard(ctx: &Context<'_>) -> &'static str {
    if ctx.no_new_privs {
        "the Pod sets allowPrivilegeEscalation: false, so the process runs with no_new_privs"
    } else {
        "the Pod drops CAP_SETGID, so no file capability can grant it"
    }
}

fn order_notes(obs: &Observations) -> Vec<String> {
    obs.identities
        .iter()
        .filter(|o| o.groups_unsorted_or_repeated())
        .map(|o| format!("{} lists groups unsorted or repeated: {:?} (order is not a conformance property)", o.point.describe(), o.raw_groups))
        .collect()
}

/// Whether a refusal is the one an id outside the Pod's user namespace causes: the container's
/// process cannot take it (setgroups(2), setgid(2), setuid(2), chown(2): EINVAL, "invalid
/// argument"; measured: runc's "setgroups: invalid argument", "chown /dev/stdout: invalid
/// argument"), so creating or starting the container fails. Any other refusal (of the sandbox,
/// an ID-mapped mount the runtime cannot make, another error) is the runtime's own. At the
/// Kubernetes level the step is kubelet's Failed event, which names both container steps.
fn refusal_for_unmapped_ids(refusal: &Refusal) -> bool {
    const ID_CALLS: [&str; 4] = ["setgroups", "setgid", "setuid", "chown"];
    let message = refusal.message.to_ascii_lowercase();
    let container_step = ["CreateContainer", "StartContainer"].iter().any(|step| refusal.step.contains(step));
    container_step && message.contains("invalid argument") && ID_CALLS.iter().any(|call| message.contains(call))
}

/// Judges one case from its observations: a refusal, then the Kubernetes level's admission,
/// then what the processes got.
pub fn judge(ctx: &Context<'_>, obs: &Observations) -> Judgement {
    if let Some(refusal) = &obs.refusal {
        return match ctx.expected.refusal_allowed.as_ref().filter(|_| refusal_for_unmapped_ids(refusal)) {
            Some(why) => Judgement {
                verdict: Verdict::Pass,
                reasons: Vec::new(),
                notes: vec![format!("the runtime refused the Pod ({} failed: {}), which is allowed: {why}", refusal.step, refusal.message)],
                known_bugs: Vec::new(),
            },
            None => Judgement::refused(refusal),
        };
    }
    let Some(admission) = &obs.admission else { return judge_run(ctx, obs) };
    if let Some(judgement) = admission::rejection(ctx.policy, admission) {
        return judgement;
    }
    // The node's flag stands for the runtime's, which the Kubernetes level cannot ask.
    let mut judgement = judge_run(&Context { feature: admission::feature(admission), ..ctx.clone() }, obs);
    admission::after_run(ctx.policy, admission, &mut judgement);
    judgement
}

/// Judges what the processes of a case that ran got.
fn judge_run(ctx: &Context<'_>, obs: &Observations) -> Judgement {
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
    // A read that failed for another reason than permissions (a missing mount) proves nothing.
    if let Some(odd) = obs.access.iter().find(|a| a.access == Access::Denied && !a.detail.contains(PERMISSION_DENIED)) {
        return Judgement::error(format!("reading {} failed for a reason other than permissions: {}", odd.path, odd.detail));
    }

    let (mut reasons, chosen) = held_to_expectation(ctx, obs);
    reasons.extend(obs.invalid_ids.iter().cloned());
    reasons.extend(primary_gid_reasons(obs));
    reasons.extend(no_new_privs_reasons(ctx, obs));
    reasons.extend(drop_all_reasons(ctx, obs));
    reasons.extend(user_namespace_reasons(ctx, obs));
    let mut notes = order_notes(obs);
    notes.extend(chosen);
    match escalation_findings(ctx, obs) {
        Ok((escalation_reasons, escalation_notes)) => {
            reasons.extend(escalation_reasons);
            notes.extend(escalation_notes);
        }
        // A runtime already shown wrong stays judged; only a verdict that rests on the
        // programs' report is sgpc's error without it.
        Err(EscalationGap::NotReported(missing)) if !reasons.is_empty() || (ctx.policy == Policy::Strict && !ctx.feature) => notes.push(format!("the image's escalation programs were not judged: {missing}")),
        Err(gap) => return Judgement::error(gap.to_string()),
    }
    if let Some(reason) = &ctx.expected.deviation {
        notes.insert(0, format!("this case's expectation deliberately departs from the KEP model: {reason}"));
    }
    if ctx.host_view && !obs.identities.iter().any(|o| o.point == Point::HostKernel) {
        notes.push("the runtime did not report the first process's pid; the host's view of /proc/<pid>/status was not read".into());
    }
    match (obs.status_user_missing, ctx.feature) {
        (true, true) => reasons.push("ContainerStatus.user is missing although the runtime advertises supplemental_groups_policy (KEP-3619 requires it)".into()),
        (false, false) => notes.push("ContainerStatus.user is reported although the runtime does not advertise supplemental_groups_policy".into()),
        _ => {}
    }

    let verdict = if ctx.policy == Policy::Strict && !ctx.feature {
        let leaked = undeclared(obs, ctx.declared);
        reasons.insert(0, "the runtime does not advertise features.supplemental_groups_policy, so Strict cannot be enforced".into());
        if !leaked.is_empty() {
            reasons.insert(1, format!("LEAK: groups the Pod did not declare were attached despite Strict: {}", explain_extra(&leaked, ctx.image_groups)));
        }
        Verdict::Unsupported { leak: !leaked.is_empty() }
    } else if reasons.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    Judgement { verdict, reasons, notes, known_bugs: Vec::new() }
}

/// Upstream bugs whose signature a FAIL can show. The verdict stays FAIL; the reason names the
/// bug, so that a known failure reads as one and an unknown one stands out.
pub const CONTAINERD_11937: &str = "containerd/containerd#11937";

/// Adds the name of a known runtime bug to a FAIL that shows exactly its signature.
///
/// containerd/containerd#11937 (open, kind/bug; fix proposed in #13587): containerd leaves out
/// of the supplementary groups a group whose name equals the user's name, although `/etc/group`
/// lists the user in it. Signature: on containerd, every observation has the expected uid and
/// gid, no extra group, and misses only groups named like the user (`self_named`), against the
/// expectation or one of its allowed outcomes.
pub fn name_known_bugs(judgement: &mut Judgement, runtime_name: &str, obs: &Observations, expected: &Expectation, self_named: &GroupSet) {
    if judgement.verdict != Verdict::Fail || runtime_name != "containerd" || self_named.is_empty() {
        return;
    }
    let shows_signature = |want: &Identity| {
        let only_self_named_missing = obs.identities.iter().all(|o| {
            let got = &o.identity;
            got.uid == want.uid && got.gid == want.gid && got.groups.minus(&want.groups).is_empty() && want.groups.minus(&got.groups).iter().all(|g| self_named.contains(g))
        });
        only_self_named_missing && obs.identities.iter().any(|o| !want.groups.minus(&o.identity.groups).is_empty())
    };
    let mut wants = std::iter::once(&expected.identity).chain(expected.allowed.iter().map(|o| &o.identity));
    if wants.any(shows_signature) {
        judgement.known_bugs.push(CONTAINERD_11937.to_string());
        judgement.reasons.insert(
            0,
            format!("known bug {CONTAINERD_11937} (open): containerd leaves out a group named like the user ({self_named}) although /etc/group lists the user in it; POSIX initgroups(3) membership includes it"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::{AccessObservation, IdentityObservation, Prober};

    const ALL_POINTS: [Point; 5] = [Point::FirstProcessId, Point::FirstProcessKernel, Point::HostKernel, Point::ExecId, Point::CriStatus];

    /// The KEP blog case: Strict must give {3000 4000}; the image adds 50000 under Merge.
    fn strict_blog() -> (Expectation, GroupSet) {
        let expected = Expectation { identity: Identity::observed(1000, 3000, [3000, 4000]), access: BTreeMap::new(), deviation: None, allowed: Vec::new(), sources: BTreeMap::new(), escalated: BTreeMap::new(), refusal_allowed: None };
        (expected.clone(), expected.identity.groups)
    }

    fn blog_group_file() -> Vec<GroupLine> {
        crate::etc::lenient_group_lines(&["root:x:0:".into(), "group-defined-in-image:x:50000:user-defined-in-image".into()])
    }

    fn ctx<'a>(policy: Policy, expected: &'a Expectation, declared: &'a GroupSet, image_groups: &'a [GroupLine], feature: bool) -> Context<'a> {
        Context { policy, expected, declared, image_groups, feature, host_view: true, no_new_privs: false, drop_all_capabilities: false, drops_setgid: false, escalation_gid: None, user_namespace: false }
    }

    fn observed(groups: &[u32]) -> Observations {
        let identities = ALL_POINTS
            .iter()
            .map(|&point| IdentityObservation { point, identity: Identity::observed(1000, 3000, groups.iter().copied()), raw_groups: groups.to_vec(), printed: String::new() })
            .collect();
        Observations { identities, ..Observations::default() }
    }

    fn judge_strict(feature: bool, obs: &Observations) -> Judgement {
        let (expected, declared) = strict_blog();
        judge(&ctx(Policy::Strict, &expected, &declared, &blog_group_file(), feature), obs)
    }

    /// `allowPrivilegeEscalation: false` is held on every process; a process that reports no
    /// `NoNewPrivs` line cannot show it.
    #[test]
    fn no_new_privs_is_required_of_every_process_when_the_pod_asks() {
        let (expected, declared) = strict_blog();
        let groups = blog_group_file();
        let asked = Context { no_new_privs: true, ..ctx(Policy::Strict, &expected, &declared, &groups, true) };
        let with = |first: Option<bool>, exec: Option<bool>| {
            let mut obs = observed(&[3000, 4000]);
            obs.no_new_privs.extend(first.map(|v| (Prober::FirstProcess, v)));
            obs.no_new_privs.extend(exec.map(|v| (Prober::Exec, v)));
            obs
        };
        assert_eq!(judge(&asked, &with(Some(true), Some(true))).verdict, Verdict::Pass);
        let j = judge(&asked, &with(Some(true), Some(false)));
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reasons.iter().any(|r| r.starts_with(NO_NEW_PRIVS_RULE) && r.contains("exec'd process has NoNewPrivs: 0")), "{:?}", j.reasons);
        assert_eq!(judge(&asked, &with(None, Some(true))).verdict, Verdict::Fail, "unreported is not shown");
        let not_asked = ctx(Policy::Strict, &expected, &declared, &groups, true);
        assert_eq!(judge(&not_asked, &with(Some(false), Some(false))).verdict, Verdict::Pass, "without the field the specs ask nothing");
    }

    /// `hostUsers: false` is held on every process: one that shows the host's own uid_map runs in
    /// no user namespace of its own, though its ids look right from inside.
    #[test]
    fn host_users_false_requires_a_user_namespace_of_every_process() {
        use crate::observation::UidMapLine;
        let (expected, declared) = strict_blog();
        let groups = blog_group_file();
        let asked = Context { user_namespace: true, ..ctx(Policy::Strict, &expected, &declared, &groups, true) };
        let pod = UidMapLine { inside: 0, outside: 131072, length: 65536 };
        let host = UidMapLine { inside: 0, outside: 0, length: u32::MAX };
        let with = |exec: Option<UidMapLine>| {
            let mut obs = observed(&[3000, 4000]);
            obs.uid_map.insert(Prober::FirstProcess, pod);
            obs.uid_map.extend(exec.map(|line| (Prober::Exec, line)));
            obs
        };
        assert_eq!(judge(&asked, &with(Some(pod))).verdict, Verdict::Pass);
        let j = judge(&asked, &with(Some(host)));
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reasons.iter().any(|r| r.starts_with(USER_NAMESPACE_RULE) && r.contains("exec'd process")), "{:?}", j.reasons);
        assert_eq!(judge(&asked, &with(None)).verdict, Verdict::Fail, "unreported is not shown");
        let not_asked = ctx(Policy::Strict, &expected, &declared, &groups, true);
        assert_eq!(judge(&not_asked, &with(Some(host))).verdict, Verdict::Pass);
        // Where the request's mapping is known, another one (the runtime's own namespace) fails.
        let mut requested = with(Some(pod));
        requested.requested_uid_map = Some(pod);
        assert_eq!(judge(&asked, &requested).verdict, Verdict::Pass);
        requested.requested_uid_map = Some(UidMapLine { outside: 196608, ..pod });
        let j = judge(&asked, &requested);
        assert!(j.verdict == Verdict::Fail && j.reasons.iter().any(|r| r.contains("not the mapping the request asked for")), "{:?}", j.reasons);
    }

    /// `drop: [ALL]` leaves no capability in any set of any process, the bounding set included.
    #[test]
    fn drop_all_leaves_no_capability_in_any_process() {
        use crate::observation::CapabilitySets;
        let (expected, declared) = strict_blog();
        let groups = blog_group_file();
        let asked = Context { drop_all_capabilities: true, ..ctx(Policy::Strict, &expected, &declared, &groups, true) };
        let none = CapabilitySets { permitted: 0, effective: 0, bounding: 0 };
        let with = |exec: Option<CapabilitySets>| {
            let mut obs = observed(&[3000, 4000]);
            obs.capabilities.insert(Prober::FirstProcess, none);
            obs.capabilities.extend(exec.map(|c| (Prober::Exec, c)));
            obs
        };
        assert_eq!(judge(&asked, &with(Some(none))).verdict, Verdict::Pass);
        let j = judge(&asked, &with(Some(CapabilitySets { bounding: 1 << 6, ..none })));
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reasons.iter().any(|r| r.starts_with(DROP_ALL_RULE) && r.contains("exec'd process has CapPrm 0x0, CapEff 0x0, CapBnd 0x40")), "{:?}", j.reasons);
        assert_eq!(judge(&asked, &with(None)).verdict, Verdict::Fail, "unreported is not shown");
        let not_asked = ctx(Policy::Strict, &expected, &declared, &groups, true);
        assert_eq!(judge(&not_asked, &with(Some(CapabilitySets { bounding: u64::MAX, ..none }))).verdict, Verdict::Pass);
    }

    #[test]
    fn correct_strict_is_pass() {
        let j = judge_strict(true, &observed(&[3000, 4000]));
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        assert!(j.reasons.is_empty());
    }

    #[test]
    fn a_kernel_list_without_the_primary_gid_fails_an_id_listing_cannot() {
        assert_eq!(judge_strict(true, &observed(&[3000, 4000])).verdict, Verdict::Pass);
        for point in [Point::FirstProcessKernel, Point::HostKernel, Point::CriStatus] {
            let mut obs = observed(&[3000, 4000]);
            obs.identities.iter_mut().filter(|o| o.point == point).for_each(|o| o.raw_groups = vec![4000]);
            let j = judge_strict(true, &obs);
            assert_eq!(j.verdict, Verdict::Fail, "{point:?}");
            assert!(j.reasons.iter().any(|r| r.starts_with(PRIMARY_GID_RULE) && r.contains(point.describe()) && r.contains("CVE-2022-2995")), "{:?}", j.reasons);
        }
        // `id` prints the effective gid whatever the kernel's list holds.
        let mut obs = observed(&[3000, 4000]);
        obs.identities.iter_mut().filter(|o| matches!(o.point, Point::FirstProcessId | Point::ExecId)).for_each(|o| o.raw_groups = vec![4000]);
        assert_eq!(judge_strict(true, &obs).verdict, Verdict::Pass);
    }

    #[test]
    fn leak_on_advertising_runtime_is_fail_and_names_the_image_group() {
        let j = judge_strict(true, &observed(&[3000, 4000, 50000]));
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reasons.iter().any(|r| r.contains("+50000 from image /etc/group line 2")), "{:?}", j.reasons);
    }

    #[test]
    fn leak_without_feature_is_unsupported_leak_never_pass() {
        let j = judge_strict(false, &observed(&[3000, 4000, 50000]));
        assert_eq!(j.verdict, Verdict::Unsupported { leak: true });
        assert!(j.reasons.iter().any(|r| r.starts_with("LEAK")), "{:?}", j.reasons);
    }

    #[test]
    fn leak_is_what_was_observed_even_when_no_image_line_explains_it() {
        let (expected, declared) = strict_blog();
        let j = judge(&ctx(Policy::Strict, &expected, &declared, &[], false), &observed(&[3000, 4000, 50000]));
        assert_eq!(j.verdict, Verdict::Unsupported { leak: true });
        assert!(j.reasons.iter().any(|r| r.contains("+50000 (source unknown)")), "{:?}", j.reasons);
    }

    #[test]
    fn deviation_reason_is_shown_with_the_verdict() {
        let (mut expected, declared) = strict_blog();
        expected.deviation = Some("runtime X documents otherwise".into());
        let j = judge(&ctx(Policy::Strict, &expected, &declared, &[], true), &observed(&[3000, 4000]));
        assert!(j.notes.iter().any(|n| n.contains("runtime X documents otherwise")), "{:?}", j.notes);
    }

    #[test]
    fn the_same_name_group_bug_is_named_only_on_containerd_and_only_on_its_signature() {
        let expected = Expectation { identity: Identity::observed(1000, 1, [1, 1000]), access: BTreeMap::new(), deviation: None, allowed: Vec::new(), sources: BTreeMap::new(), escalated: BTreeMap::new(), refusal_allowed: None };
        let self_named = GroupSet::from_iter([1000]);
        let declared = GroupSet::from_iter([1]);
        let judged = |runtime: &str, groups: &[u32]| {
            let mut obs = observed(groups);
            for o in &mut obs.identities {
                o.identity = Identity::observed(1000, 1, groups.iter().copied());
            }
            let mut j = judge(&ctx(Policy::Merge, &expected, &declared, &[], true), &obs);
            name_known_bugs(&mut j, runtime, &obs, &expected, &self_named);
            j
        };
        let j = judged("containerd", &[1]);
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reasons[0].starts_with("known bug containerd/containerd#11937"), "{:?}", j.reasons);
        assert!(!judged("cri-o", &[1]).reasons.iter().any(|r| r.contains("#11937")), "another runtime's FAIL is not containerd's bug");
        assert!(!judged("containerd", &[1, 55555]).reasons.iter().any(|r| r.contains("#11937")), "an extra group is another failure");
        assert_eq!(judged("containerd", &[1, 1000]).verdict, Verdict::Pass);
    }

    /// A Merge case whose image group file is CRLF: glibc's reading gives {3000 4000}, a
    /// trimming reader {3000 4000 50000}.
    fn open_merge_case() -> Expectation {
        let outcome = |groups: &[u32], reading: &str| crate::oracle::AllowedOutcome {
            identity: Identity::observed(1000, 3000, groups.iter().copied()),
            access: BTreeMap::new(),
            reading: reading.into(),
        };
        let (mut expected, _) = strict_blog();
        expected.allowed = vec![outcome(&[3000, 4000], "as getgrent reads it"), outcome(&[3000, 4000, 50000], "blanks dropped around lines")];
        expected.sources = BTreeMap::from([(4000, vec!["supplementalGroups".to_string()])]);
        expected
    }

    #[test]
    fn an_allowed_alternative_passes_with_a_note_naming_it() {
        let expected = open_merge_case();
        let declared = GroupSet::from_iter([3000, 4000]);
        for (groups, named) in [(&[3000, 4000][..], "getgrent"), (&[3000, 4000, 50000][..], "blanks dropped")] {
            let j = judge(&ctx(Policy::Merge, &expected, &declared, &blog_group_file(), true), &observed(groups));
            assert_eq!(j.verdict, Verdict::Pass, "{groups:?}: {j:?}");
            assert!(j.notes.iter().any(|n| n.contains("leave this case open") && n.contains(named)), "{groups:?}: {:?}", j.notes);
        }
        let j = judge(&ctx(Policy::Merge, &expected, &declared, &blog_group_file(), true), &observed(&[3000, 4000, 50000, 60000]));
        assert_eq!(j.verdict, Verdict::Fail, "outside every allowed outcome: {j:?}");
        assert!(j.reasons.iter().any(|r| r.contains("matches none of the allowed outcomes")), "{:?}", j.reasons);
    }

    #[test]
    fn a_missing_group_says_where_it_was_expected_from() {
        let expected = open_merge_case();
        let declared = GroupSet::from_iter([3000, 4000]);
        let j = judge(&ctx(Policy::Strict, &expected, &declared, &[], true), &observed(&[3000]));
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reasons.iter().any(|r| r.contains("-4000 missing, expected from supplementalGroups")), "{:?}", j.reasons);
    }

    #[test]
    fn strict_without_feature_but_no_leak_is_still_unsupported() {
        let j = judge_strict(false, &observed(&[3000, 4000]));
        assert_eq!(j.verdict, Verdict::Unsupported { leak: false });
    }

    #[test]
    fn a_reported_id_out_of_range_is_a_finding_not_a_cast() {
        for (uid, gid, groups) in [(1000, 3000, vec![3000, 4000 + (1 << 32)]), (1000, -1, vec![3000, 4000]), (1000 + (1 << 32), 3000, vec![3000, 4000])] {
            let mut obs = observed(&[3000, 4000]);
            obs.identities.retain(|o| o.point != Point::CriStatus);
            obs.push_reported_user(Point::CriStatus, Some((uid, gid, groups.clone())));
            assert!(!obs.identities.iter().any(|o| o.point == Point::CriStatus), "no identity is invented from {groups:?}");
            let j = judge_strict(true, &obs);
            assert_eq!(j.verdict, Verdict::Fail, "{uid} {gid} {groups:?}: {j:?}");
            assert!(j.reasons.iter().any(|r| r.contains("which is no id (0..=4294967295)")), "{:?}", j.reasons);
        }
        let mut obs = observed(&[3000, 4000]);
        obs.identities.retain(|o| o.point != Point::CriStatus);
        obs.push_reported_user(Point::CriStatus, Some((1000, 3000, vec![3000, 4000])));
        assert_eq!(judge_strict(true, &obs).verdict, Verdict::Pass);
    }

    #[test]
    fn missing_status_user_on_advertising_runtime_is_fail() {
        let mut obs = observed(&[3000, 4000]);
        obs.identities.retain(|o| o.point != Point::CriStatus);
        obs.status_user_missing = true;
        let j = judge_strict(true, &obs);
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reasons[0].contains("ContainerStatus.user is missing"));
    }

    #[test]
    fn status_user_on_non_advertising_runtime_is_a_note() {
        let (expected, declared) = strict_blog();
        let j = judge(&ctx(Policy::Merge, &expected, &declared, &[], false), &observed(&[3000, 4000]));
        assert_eq!(j.verdict, Verdict::Pass);
        assert!(j.notes.iter().any(|n| n.contains("does not advertise")), "{:?}", j.notes);
    }

    #[test]
    fn group_order_is_a_note_not_a_failure() {
        let mut obs = observed(&[3000, 4000]);
        obs.identities[4].raw_groups = vec![4000, 3000];
        let j = judge_strict(true, &obs);
        assert_eq!(j.verdict, Verdict::Pass);
        assert!(j.notes.iter().any(|n| n.contains("unsorted")), "{:?}", j.notes);
    }

    #[test]
    fn wrong_uid_is_fail() {
        let mut obs = observed(&[3000, 4000]);
        obs.identities[3].identity.uid = 0;
        let j = judge_strict(true, &obs);
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reasons[0].starts_with("uid via exec'd `id`: expected 1000, got 0"), "{:?}", j.reasons);
    }

    #[test]
    fn missing_observation_is_error() {
        let mut obs = observed(&[3000, 4000]);
        obs.identities.retain(|o| o.point != Point::ExecId);
        assert_eq!(judge_strict(true, &obs).verdict, Verdict::Error);
    }

    fn with_access(access: Access, detail: &str) -> (Expectation, Observations) {
        let (mut expected, _) = strict_blog();
        expected.access.insert("/p/token".into(), Access::Denied);
        let mut obs = observed(&[3000, 4000]);
        for prober in [Prober::FirstProcess, Prober::Exec] {
            obs.access.push(AccessObservation { prober, path: "/p/token".into(), access, detail: detail.into() });
        }
        (expected, obs)
    }

    #[test]
    fn readable_protected_file_under_strict_is_fail() {
        let (expected, obs) = with_access(Access::Allowed, "");
        let declared = expected.identity.groups.clone();
        let j = judge(&ctx(Policy::Strict, &expected, &declared, &[], true), &obs);
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reasons.iter().any(|r| r.contains("/p/token should be denied")), "{:?}", j.reasons);
    }

    #[test]
    fn denial_for_another_reason_is_error() {
        let (expected, obs) = with_access(Access::Denied, "cat: can't open '/p/token': No such file or directory");
        let declared = expected.identity.groups.clone();
        let j = judge(&ctx(Policy::Strict, &expected, &declared, &[], true), &obs);
        assert_eq!(j.verdict, Verdict::Error);
        let (expected, obs) = with_access(Access::Denied, "cat: can't open '/p/token': Permission denied");
        let j = judge(&ctx(Policy::Strict, &expected, &declared, &[], true), &obs);
        assert_eq!(j.verdict, Verdict::Pass);
    }

    /// The `escalation` image under Strict: a token of group 50000 (closed to the process), and
    /// what each program reaches when the kernel grants its bits.
    fn escalation_case(token: Access, escalated: Access) -> (Expectation, Observations) {
        let (mut expected, _) = strict_blog();
        expected.access.insert("/p/token".into(), token);
        expected.escalated = Program::ALL.into_iter().map(|p| (p, BTreeMap::from([("/p/token".to_string(), escalated)]))).collect();
        let mut obs = observed(&[3000, 4000]);
        for prober in [Prober::FirstProcess, Prober::Exec] {
            obs.access.push(AccessObservation { prober, path: "/p/token".into(), access: token, detail: "Permission denied".into() });
        }
        (expected, obs)
    }

    /// The program's output as `programs/escalate.c` prints it, for both processes.
    fn ran(obs: &mut Observations, program: Program, egid: u32, groups: &[u32], access: Access) {
        for prober in [Prober::FirstProcess, Prober::Exec] {
            let access = BTreeMap::from([("/p/token".to_string(), (access, if access == Access::Denied { "Permission denied".into() } else { String::new() }))]);
            let outcome = Escalated::Ran { egid, setgroups: "ok".into(), groups: groups.to_vec(), access };
            obs.escalations.push(crate::observation::EscalationObservation { prober, program, outcome });
        }
    }

    fn escalation_ctx<'a>(expected: &'a Expectation, declared: &'a GroupSet, no_new_privs: bool, drops_setgid: bool) -> Context<'a> {
        Context { no_new_privs, drops_setgid, escalation_gid: Some(50000), ..ctx(Policy::Strict, expected, declared, &[], true) }
    }

    /// Without a guard, an escalation the kernel grants is allowed, and the report says which
    /// field would have stopped it.
    #[test]
    fn an_unguarded_escalation_passes_with_a_note_naming_the_field() {
        let (expected, mut obs) = escalation_case(Access::Denied, Access::Allowed);
        ran(&mut obs, Program::Setgid, 50000, &[3000, 4000], Access::Allowed);
        ran(&mut obs, Program::CapSetgid, 3000, &[3000, 4000, 50000], Access::Allowed);
        let declared = expected.identity.groups.clone();
        let j = judge(&escalation_ctx(&expected, &declared, false, false), &obs);
        assert_eq!(j.verdict, Verdict::Pass, "{:?}", j.reasons);
        assert!(j.notes.iter().any(|n| n.contains("(Strict) alone did not keep the image out of group 50000") && n.contains("/bin/sgpc-setgid") && n.contains("allowPrivilegeEscalation: false")), "{:?}", j.notes);
        assert!(j.notes.iter().any(|n| n.contains("/bin/sgpc-capsetgid") && n.contains("drop: [ALL]")), "{:?}", j.notes);
    }

    /// `no_new_privs` must stop both programs; dropping CAP_SETGID must stop the capability one.
    #[test]
    fn an_escalation_the_pod_forbids_fails() {
        let (expected, mut obs) = escalation_case(Access::Denied, Access::Allowed);
        ran(&mut obs, Program::Setgid, 50000, &[3000, 4000], Access::Allowed);
        ran(&mut obs, Program::CapSetgid, 3000, &[3000, 4000], Access::Denied);
        let declared = expected.identity.groups.clone();
        let j = judge(&escalation_ctx(&expected, &declared, true, false), &obs);
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reasons.iter().any(|r| r.starts_with(ESCALATION_RULE) && r.contains("/bin/sgpc-setgid") && r.contains("effective gid 50000")), "{:?}", j.reasons);
        assert!(j.reasons.iter().any(|r| r.contains("/p/token should be denied")), "{:?}", j.reasons);
        assert!(!j.reasons.iter().any(|r| r.contains("sgpc-capsetgid")), "the stopped program is no finding: {:?}", j.reasons);

        let (expected, mut obs) = escalation_case(Access::Denied, Access::Allowed);
        ran(&mut obs, Program::Setgid, 50000, &[3000, 4000], Access::Allowed);
        ran(&mut obs, Program::CapSetgid, 3000, &[3000, 4000, 50000], Access::Allowed);
        let j = judge(&escalation_ctx(&expected, &declared, false, true), &obs);
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reasons.iter().any(|r| r.starts_with(ESCALATION_RULE) && r.contains("/bin/sgpc-capsetgid") && r.contains("drops CAP_SETGID")), "{:?}", j.reasons);
        assert!(!j.reasons.iter().any(|r| r.contains("sgpc-setgid")), "dropping capabilities does not stop a setgid bit: {:?}", j.reasons);
    }

    /// A `rw----r--` token of the primary group: a setgid program that reads it shows that the
    /// primary gid was not among the supplementary groups (the negative group permission CVEs).
    #[test]
    fn a_negative_group_permission_opened_by_a_setgid_program_fails() {
        let (expected, mut obs) = escalation_case(Access::Denied, Access::Denied);
        ran(&mut obs, Program::Setgid, 50000, &[4000], Access::Allowed);
        ran(&mut obs, Program::CapSetgid, 3000, &[3000, 4000, 50000], Access::Denied);
        let declared = expected.identity.groups.clone();
        let j = judge(&escalation_ctx(&expected, &declared, false, false), &obs);
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(j.reasons.iter().any(|r| r.contains("/bin/sgpc-setgid") && r.contains("/p/token should be denied, was readable")), "{:?}", j.reasons);
    }

    /// uid 0 holds CAP_SETGID: no_new_privs alone does not keep it from setgroups(2), so a root
    /// process joining the group is no runtime failure; dropping CAP_SETGID is what stops it.
    #[test]
    fn root_joining_a_group_under_no_new_privs_is_no_failure() {
        let (mut expected, mut obs) = escalation_case(Access::Allowed, Access::Allowed);
        expected.identity.uid = 0;
        obs.identities.iter_mut().for_each(|o| o.identity.uid = 0);
        obs.no_new_privs.extend([(Prober::FirstProcess, true), (Prober::Exec, true)]);
        ran(&mut obs, Program::Setgid, 3000, &[3000, 4000, 50000], Access::Allowed);
        ran(&mut obs, Program::CapSetgid, 3000, &[3000, 4000, 50000], Access::Allowed);
        let declared = expected.identity.groups.clone();
        let j = judge(&escalation_ctx(&expected, &declared, true, false), &obs);
        assert_eq!(j.verdict, Verdict::Pass, "{:?}", j.reasons);
        let j = judge(&escalation_ctx(&expected, &declared, true, true), &obs);
        assert_eq!(j.verdict, Verdict::Fail, "with CAP_SETGID dropped, root cannot join: {:?}", j.notes);
        assert!(j.reasons.iter().any(|r| r.starts_with(ESCALATION_RULE)), "{:?}", j.reasons);
    }

    /// A group the runtime attached (a leak, judged as such) is not an escalation of the program
    /// that merely keeps it.
    #[test]
    fn a_group_the_process_already_had_is_no_escalation() {
        let (expected, mut obs) = escalation_case(Access::Denied, Access::Allowed);
        obs.identities.iter_mut().for_each(|o| o.identity.groups.insert(50000));
        for a in &mut obs.access {
            a.access = Access::Allowed;
        }
        ran(&mut obs, Program::Setgid, 3000, &[3000, 4000, 50000], Access::Allowed);
        ran(&mut obs, Program::CapSetgid, 3000, &[3000, 4000, 50000], Access::Allowed);
        let declared = expected.identity.groups.clone();
        let j = judge(&escalation_ctx(&expected, &declared, true, true), &obs);
        assert_eq!(j.verdict, Verdict::Fail);
        assert!(!j.reasons.iter().any(|r| r.starts_with(ESCALATION_RULE)), "the leak is the finding, not an escalation: {:?}", j.reasons);
        // And without the programs' report, the leak is still a FAIL, not sgpc's ERROR.
        obs.escalations.clear();
        let j = judge(&escalation_ctx(&expected, &declared, true, true), &obs);
        assert_eq!(j.verdict, Verdict::Fail, "{:?}", j.reasons);
        assert!(j.notes.iter().any(|n| n.contains("escalation programs were not judged")), "{:?}", j.notes);
    }

    #[test]
    fn a_program_not_executed_is_a_note_and_a_missing_report_an_error() {
        let (expected, mut obs) = escalation_case(Access::Denied, Access::Allowed);
        ran(&mut obs, Program::Setgid, 3000, &[3000, 4000], Access::Denied);
        let declared = expected.identity.groups.clone();
        let ctx = escalation_ctx(&expected, &declared, false, true);
        let j = judge(&ctx, &obs);
        assert_eq!(j.verdict, Verdict::Error);
        assert!(j.reasons[0].contains("did not report what the image's cap_setgid+ep program got"), "{:?}", j.reasons);
        for prober in [Prober::FirstProcess, Prober::Exec] {
            obs.escalations.push(crate::observation::EscalationObservation { prober, program: Program::CapSetgid, outcome: Escalated::NotExecuted { status: 126 } });
        }
        let j = judge(&ctx, &obs);
        assert_eq!(j.verdict, Verdict::Pass, "{:?}", j.reasons);
        assert!(j.notes.iter().any(|n| n.contains("could not be executed (shell exit status 126)") && n.contains("capabilities(7)")), "{:?}", j.notes);
    }

    /// Where the model allows a refusal (a user namespace that cannot map an id), the runtime's
    /// refusal passes with a note; elsewhere it stays REFUSED.
    #[test]
    fn a_refusal_passes_only_where_the_model_allows_it() {
        let (mut expected, declared) = strict_blog();
        let obs = Observations::refused("CreateContainer", "setgroups: invalid argument", None);
        assert_eq!(judge(&ctx(Policy::Merge, &expected, &declared, &[], true), &obs).verdict, Verdict::Refused);
        expected.refusal_allowed = Some("gid 70000 lies outside the Pod's user namespace".into());
        let j = judge(&ctx(Policy::Merge, &expected, &declared, &[], true), &obs);
        assert_eq!(j.verdict, Verdict::Pass);
        assert!(j.notes[0].contains("CreateContainer failed: setgroups: invalid argument") && j.notes[0].contains("outside the Pod's user namespace"), "{:?}", j.notes);
        // Only the refusal an unmappable id causes: not the sandbox's, not another error's.
        let refused = [
            ("RunPodSandbox", "setgroups: invalid argument"),
            ("CreateContainer", "no space left on device"),
            ("StartContainer", "permission denied"),
            // An ID-mapped mount the runtime cannot make is no unmappable id.
            ("CreateContainer", "mount_setattr /var/lib/x: invalid argument"),
        ];
        for (step, message) in refused {
            let j = judge(&ctx(Policy::Merge, &expected, &declared, &[], true), &Observations::refused(step, message, None));
            assert_eq!(j.verdict, Verdict::Refused, "{step}: {message}");
        }
        let started = Observations::refused("StartContainer", "unknown: setgid: Invalid argument", None);
        assert_eq!(judge(&ctx(Policy::Merge, &expected, &declared, &[], true), &started).verdict, Verdict::Pass);
        // kubelet's Failed event names both container steps.
        let kubelet = Observations::refused("CreateContainer or StartContainer (kubelet's Failed event)", "chown /dev/stdout: invalid argument", None);
        assert_eq!(judge(&ctx(Policy::Merge, &expected, &declared, &[], true), &kubelet).verdict, Verdict::Pass);
    }
}
