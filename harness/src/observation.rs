//! What sgpc reads from a running case, and the probe that prints it.
//!
//! The container's command is [`first_process_command`]: sgpc's static probe (`programs/probe.c`)
//! becomes PID 1, prints its case marker, its identity as `id` prints it (from the same calls), its
//! own `/proc/self/status` lines and the result of reading each probed file, then waits. An exec'd
//! process runs the same probe ([`exec_command`]). Lines start with `sgpc-` so that they can be
//! picked out of a CRI log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::escalation::Program;
use crate::identity::Identity;
use crate::image::PROBE_PATH;
use crate::scenario::Access;

/// Where an identity was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Point {
    /// `id` run by the container's first process, read from the CRI container log.
    FirstProcessId,
    /// `/proc/self/status` of the first process, read by itself from inside.
    FirstProcessKernel,
    /// `/proc/<pid>/status` of the first process, read on the host: the kernel's own view.
    HostKernel,
    /// `id` run in an `ExecSync`'d process.
    ExecId,
    /// `ContainerStatus.user.linux` as the runtime reports it.
    CriStatus,
    /// `status.containerStatuses[].user.linux` of the Pod, as the API server reports it.
    PodStatus,
}

impl Point {
    pub fn describe(self) -> &'static str {
        match self {
            Point::FirstProcessId => "first process `id`",
            Point::FirstProcessKernel => "first process /proc/self/status",
            Point::HostKernel => "host /proc/<pid>/status",
            Point::ExecId => "exec'd `id`",
            Point::CriStatus => "CRI ContainerStatus.user",
            Point::PodStatus => "Pod status.containerStatuses[].user",
        }
    }
}

/// Which process tried to read a probed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Prober {
    FirstProcess,
    Exec,
}

impl Prober {
    pub fn describe(self) -> &'static str {
        match self {
            Prober::FirstProcess => "first process",
            Prober::Exec => "exec'd process",
        }
    }
}

/// `CapPrm`, `CapEff` and `CapBnd` of `/proc/self/status`, as bit masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilitySets {
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
}

impl CapabilitySets {
    pub fn is_empty(&self) -> bool {
        self.permitted == 0 && self.effective == 0 && self.bounding == 0
    }
}

impl std::fmt::Display for CapabilitySets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CapPrm {:#x}, CapEff {:#x}, CapBnd {:#x}", self.permitted, self.effective, self.bounding)
    }
}

/// One identity observation, with the raw group list in the order the source gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityObservation {
    pub point: Point,
    pub identity: Identity,
    pub raw_groups: Vec<u32>,
    /// What `id` printed, names included (empty for the other points).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub printed: String,
}

impl IdentityObservation {
    /// The source listed groups out of ascending order, or one twice: a note, never a failure
    /// (POSIX leaves the order of getgroups(2) and duplicates to the implementation).
    pub fn groups_unsorted_or_repeated(&self) -> bool {
        self.raw_groups.windows(2).any(|w| w[0] >= w[1])
    }
}

/// The outcome of reading one probed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessObservation {
    pub prober: Prober,
    pub path: String,
    pub access: Access,
    /// The failed call and its error the probe printed (`open: Permission denied`), for a denied
    /// read.
    pub detail: String,
}

/// What one of the image's escalation programs ([`crate::escalation`]) ended up with, run by one
/// process of the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationObservation {
    pub prober: Prober,
    pub program: Program,
    pub outcome: Escalated,
}

/// What one escalation program printed, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Escalated {
    /// The program ran.
    Ran {
        /// The effective gid after `execve(2)`.
        egid: u32,
        /// What `setgroups(2)` answered when the program tried to join its group: `ok` or the error.
        setgroups: String,
        /// The supplementary groups after that attempt.
        groups: Vec<u32>,
        /// Per probed file: whether the program could read it, and the error if not.
        access: BTreeMap<String, (Access, String)>,
    },
    /// The shell could not run it (its exit status): `execve(2)` refuses a file whose
    /// capabilities the bounding set withholds (capabilities(7), "safety checking for
    /// capability-dumb binaries").
    NotExecuted { status: u32 },
}

/// Everything observed in one case.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Observations {
    pub identities: Vec<IdentityObservation>,
    pub access: Vec<AccessObservation>,
    /// `ContainerStatus.user` was absent.
    pub status_user_missing: bool,
    /// What the CRI driver sent for the user when the Pod set no `runAsUser`, as kubelet does
    /// (`run_as_user=1000 (from ImageStatus)`); `None` when the Pod set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_user: Option<String>,
    /// Ids a runtime reported that are no ids (see [`Observations::push_reported_user`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid_ids: Vec<String>,
    /// `NoNewPrivs` of `/proc/self/status`, per process (absent where the kernel printed none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub no_new_privs: BTreeMap<Prober, bool>,
    /// The capability sets of `/proc/self/status`, per process.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capabilities: BTreeMap<Prober, CapabilitySets>,
    /// The first line of `/proc/self/uid_map`, per process: which user namespace it runs in.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uid_map: BTreeMap<Prober, UidMapLine>,
    /// The user-namespace mapping the CRI driver sent (`hostUsers: false`), as a process in it
    /// shows it in `/proc/self/uid_map`; `None` where sgpc sent none (the Kubernetes level).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_uid_map: Option<UidMapLine>,
    /// What the image's escalation programs got, per process that ran them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<EscalationObservation>,
    /// The runtime refused the Pod (CRI level): no process ran, so nothing else was observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// What Kubernetes did with the Pod (Kubernetes level only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission: Option<Admission>,
}

/// A runtime's own error answer to a step that creates the Pod (not a transport failure, a
/// timeout or a cancellation), for a Pod whose image is checked to be sgpc's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// `RunPodSandbox`, `CreateContainer` or `StartContainer`.
    pub step: String,
    /// `code: message` as the runtime answered.
    pub message: String,
    /// The image id the runtime holds under the case's reference, asked after the refusal: a
    /// refusal is the runtime's verdict on sgpc's Pod only if these are sgpc's bytes.
    pub held_image: Option<String>,
}

/// As the judgement's reason and the divergence report say it.
impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the runtime refused a Pod the Kubernetes API accepts: {} failed: {}", self.step, self.message)
    }
}

/// What the API server and kubelet did with a case's Pod, read from the API objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// The API server's minor version (33 for v1.33): from 1.33 kubelet must reject Strict on
    /// a node without the feature (KEP-3619, "Strict on unsupported nodes").
    pub server_minor: u32,
    /// The node's `status.features.supplementalGroupsPolicy` (absent means no).
    pub node_feature: bool,
    /// The Pod asked for a policy and the stored Pod has none: the API server dropped the field
    /// (feature gate off, or too old a server).
    pub policy_dropped: bool,
    /// The Pod failed with reason `SupplementalGroupsPolicyNotSupported`.
    pub rejected: bool,
    /// A Warning event with that reason was recorded for the Pod.
    pub warning_event: bool,
    /// The rejected Pod's `status.message` is kubelet's (`pkg/kubelet/lifecycle/predicate.go`):
    /// `Pod was rejected: SupplementalGroupsPolicy=Strict is not supported in this node`.
    #[serde(default)]
    pub rejection_message: bool,
}

impl Observations {
    /// A runtime's refusal, and the image it held: the only observation of a Pod that never ran.
    pub fn refused(step: &str, message: &str, held_image: Option<String>) -> Observations {
        let refusal = Refusal { step: step.to_string(), message: message.to_string(), held_image };
        Observations { refusal: Some(refusal), ..Observations::default() }
    }
}

impl Observations {
    /// The observations both probes give: `id` and `/proc/self/status` of the first process,
    /// `id` of the exec'd process, and every file access.
    pub fn from_probes(first: ProbeOutput, exec: ProbeOutput) -> Observations {
        let mut obs = Observations::default();
        for (prober, id_point, probe) in [(Prober::FirstProcess, Point::FirstProcessId, first), (Prober::Exec, Point::ExecId, exec)] {
            obs.push(id_point, probe.id, &probe.id_printed);
            // The exec'd process's own status adds nothing the host's view does not.
            if prober == Prober::FirstProcess {
                obs.push(Point::FirstProcessKernel, probe.kernel, "");
            }
            obs.no_new_privs.extend(probe.no_new_privs.map(|set| (prober, set)));
            obs.capabilities.extend(probe.capabilities.map(|sets| (prober, sets)));
            obs.uid_map.extend(probe.uid_map.map(|line| (prober, line)));
            for (path, (access, detail)) in probe.access {
                obs.access.push(AccessObservation { prober, path, access, detail });
            }
            obs.escalations.extend(probe.escalations.into_iter().map(|(program, outcome)| EscalationObservation { prober, program, outcome }));
        }
        obs
    }

    pub fn push(&mut self, point: Point, (identity, raw_groups): (Identity, Vec<u32>), printed: &str) {
        self.identities.push(IdentityObservation { point, identity, raw_groups, printed: printed.to_string() });
    }

    /// Records a reported user (`status.user.linux`), or that it is missing. The API types the
    /// ids as int64; one outside 0..=4294967295 is no id (`uid_t`/`gid_t` are 32-bit): a
    /// finding about the runtime, recorded instead of an identity that a cast would invent
    /// (-1 would read as 4294967295, 4294968296 as 1000).
    pub fn push_reported_user(&mut self, point: Point, user: Option<(i64, i64, Vec<i64>)>) {
        let Some((uid, gid, groups)) = user else {
            self.status_user_missing = true;
            return;
        };
        let mut bad = Vec::new();
        let mut id = |what: String, value: i64| {
            u32::try_from(value).map_err(|_| bad.push(format!("{} reports {what} {value}, which is no id (0..=4294967295)", point.describe()))).ok()
        };
        let uid = id("uid".into(), uid);
        let gid = id("gid".into(), gid);
        let raw: Vec<Option<u32>> = groups.iter().enumerate().map(|(i, &g)| id(format!("supplementalGroups[{i}]"), g)).collect();
        match (uid, gid, raw.into_iter().collect::<Option<Vec<u32>>>()) {
            (Some(uid), Some(gid), Some(raw)) => self.push(point, (Identity::observed(uid, gid, raw.iter().copied()), raw), ""),
            _ => self.invalid_ids.extend(bad),
        }
    }
}

/// Why probe output could not be read: the case is an ERROR, not a FAIL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("probe output lacks the `{0}` line")]
    Missing(&'static str),
    #[error("probe output line {line:?} cannot be parsed: {why}")]
    Unparsable { line: String, why: &'static str },
    #[error("probe output belongs to case {found:?}, not {expected:?}")]
    WrongCase { expected: String, found: String },
}

const END_MARKER: &str = "sgpc-end";

/// The shell script of the probe. It reads `SGPC_CASE` and `SGPC_PROBE_FILES` from the
/// environment, which the container config sets and exec'd processes inherit; it runs the
/// image's escalation programs where the image has them.
pub const CASE_ENV: &str = "SGPC_CASE";
pub const PROBE_FILES_ENV: &str = "SGPC_PROBE_FILES";

/// The first process: probe, then wait until the harness removes the container (exiting at once
/// on SIGTERM, which PID 1 would otherwise ignore, so no runtime waits out a grace period).
pub fn first_process_command() -> Vec<String> {
    vec![PROBE_PATH.into(), "wait".into()]
}

/// An exec'd process: probe once.
pub fn exec_command() -> Vec<String> {
    vec![PROBE_PATH.into()]
}

/// Ends a waiting first process (SIGTERM to PID 1): how a Pod's init container completes.
pub fn stop_command() -> Vec<String> {
    vec![PROBE_PATH.into(), "stop".into()]
}

/// True once the probe has printed everything.
pub fn probe_finished(output: &str) -> bool {
    output.lines().any(|l| l.trim_end() == END_MARKER)
}

/// What one run of the probe printed, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutput {
    pub id: (Identity, Vec<u32>),
    /// The `id` line as printed.
    pub id_printed: String,
    pub kernel: (Identity, Vec<u32>),
    pub access: BTreeMap<String, (Access, String)>,
    /// `NoNewPrivs:` of `/proc/self/status` (Linux 4.10 and later print it).
    pub no_new_privs: Option<bool>,
    pub capabilities: Option<CapabilitySets>,
    pub escalations: Vec<(Program, Escalated)>,
    /// The first line of `/proc/self/uid_map` (none where the kernel has no user namespaces).
    pub uid_map: Option<UidMapLine>,
}

/// One line of `/proc/<pid>/uid_map`: `length` ids from `inside` (the process's namespace) onto
/// `outside` (its parent's) (user_namespaces(7), "User and group ID mappings").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UidMapLine {
    pub inside: u32,
    pub outside: u32,
    pub length: u32,
}

impl std::fmt::Display for UidMapLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.inside, self.outside, self.length)
    }
}

impl UidMapLine {
    /// The initial user namespace maps every id onto itself: `0 0 4294967295`
    /// (user_namespaces(7)). A process showing it is in no user namespace of its own.
    pub fn is_initial(self) -> bool {
        self == UidMapLine { inside: 0, outside: 0, length: u32::MAX }
    }
}

fn parse_uid_map(text: &str) -> Result<Option<UidMapLine>, ProbeError> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let unparsable = || ProbeError::Unparsable { line: text.to_string(), why: "expected `/proc/self/uid_map`'s three ids" };
    match fields.as_slice() {
        [] => Ok(None),
        [inside, outside, length] => {
            let id = |f: &str| f.parse::<u32>().map_err(|_| unparsable());
            Ok(Some(UidMapLine { inside: id(inside)?, outside: id(outside)?, length: id(length)? }))
        }
        _ => Err(unparsable()),
    }
}

/// Parses probe output and checks that it came from the case `case`.
pub fn parse_probe(output: &str, case: &str) -> Result<ProbeOutput, ProbeError> {
    let line = |prefix: &'static str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim_end)
            .ok_or(ProbeError::Missing(prefix))
    };
    let found_case = line("sgpc-case=")?;
    if found_case != case {
        return Err(ProbeError::WrongCase { expected: case.to_string(), found: found_case.to_string() });
    }
    let id_printed = line("sgpc-id=")?.to_string();
    let id = parse_id_output(&id_printed)?;
    let kernel = parse_status(line("sgpc-status-Uid:")?, line("sgpc-status-Gid:")?, line("sgpc-status-Groups:").unwrap_or(""))?;
    let no_new_privs = match line("sgpc-status-NoNewPrivs:").map(str::trim) {
        Err(_) => None,
        Ok("0") => Some(false),
        Ok("1") => Some(true),
        Ok(other) => return Err(ProbeError::Unparsable { line: other.to_string(), why: "expected NoNewPrivs 0 or 1" }),
    };
    let mask = |key: &'static str| -> Result<Option<u64>, ProbeError> {
        let Ok(text) = line(key) else { return Ok(None) };
        u64::from_str_radix(text.trim(), 16).map(Some).map_err(|_| ProbeError::Unparsable { line: text.to_string(), why: "expected a hexadecimal capability mask" })
    };
    let capabilities = match (mask("sgpc-status-CapPrm:")?, mask("sgpc-status-CapEff:")?, mask("sgpc-status-CapBnd:")?) {
        (Some(permitted), Some(effective), Some(bounding)) => Some(CapabilitySets { permitted, effective, bounding }),
        _ => None,
    };
    let mut access = BTreeMap::new();
    for rest in output.lines().filter_map(|l| l.strip_prefix("sgpc-access=")) {
        let (path, outcome, detail) = parse_access(rest)?;
        access.insert(path, (outcome, detail));
    }
    let escalations = parse_escalations(output)?;
    let uid_map = parse_uid_map(line("sgpc-uidmap=").unwrap_or(""))?;
    Ok(ProbeOutput { id, id_printed, kernel, access, no_new_privs, capabilities, escalations, uid_map })
}

/// `<path> allowed` or `<path> denied <error>`.
fn parse_access(rest: &str) -> Result<(String, Access, String), ProbeError> {
    let mut parts = rest.trim_end().splitn(3, ' ');
    let (Some(path), Some(verdict)) = (parts.next(), parts.next()) else {
        return Err(ProbeError::Unparsable { line: rest.to_string(), why: "expected `<path> allowed|denied`" });
    };
    let outcome = match verdict {
        "allowed" => Access::Allowed,
        "denied" => Access::Denied,
        _ => return Err(ProbeError::Unparsable { line: rest.to_string(), why: "expected `allowed` or `denied`" }),
    };
    Ok((path.to_string(), outcome, parts.next().unwrap_or("").to_string()))
}

/// The lines of `programs/escalate.c`: `sgpc-escalate=NAME egid=N setgroups=RESULT groups=A,B`
/// then `sgpc-escalate-access=NAME <path> allowed|denied`; or the probe's
/// `sgpc-escalate=NAME not-executed STATUS` when the shell could not run it. A program reported
/// twice, or a line of a program sgpc does not plant, is unparsable.
fn parse_escalations(output: &str) -> Result<Vec<(Program, Escalated)>, ProbeError> {
    let unparsable = |line: &str, why| ProbeError::Unparsable { line: line.to_string(), why };
    let mut escalations: Vec<(Program, Escalated)> = Vec::new();
    for line in output.lines().filter_map(|l| l.strip_prefix("sgpc-escalate=")).map(str::trim_end) {
        let (name, rest) = line.split_once(' ').ok_or_else(|| unparsable(line, "expected `NAME egid=...`"))?;
        let program = Program::from_name(name).ok_or_else(|| unparsable(line, "not an escalation program sgpc plants"))?;
        if escalations.iter().any(|(p, _)| *p == program) {
            return Err(unparsable(line, "the program reported twice"));
        }
        let outcome = match rest.strip_prefix("not-executed ") {
            Some(status) => Escalated::NotExecuted { status: number(status, line, "bad exit status")? },
            None => {
                let (egid, rest) = rest.strip_prefix("egid=").and_then(|r| r.split_once(" setgroups=")).ok_or_else(|| unparsable(line, "expected `egid=N setgroups=...`"))?;
                let (setgroups, groups) = rest.rsplit_once(" groups=").ok_or_else(|| unparsable(line, "expected `groups=...`"))?;
                let groups = groups.split(',').filter(|g| !g.is_empty()).map(|g| number(g, line, "bad group id")).collect::<Result<Vec<_>, _>>()?;
                Escalated::Ran { egid: number(egid, line, "bad egid")?, setgroups: setgroups.to_string(), groups, access: BTreeMap::new() }
            }
        };
        escalations.push((program, outcome));
    }
    for line in output.lines().filter_map(|l| l.strip_prefix("sgpc-escalate-access=")) {
        let (name, rest) = line.split_once(' ').ok_or_else(|| unparsable(line, "expected `NAME <path> allowed|denied`"))?;
        let Some((_, Escalated::Ran { access, .. })) = escalations.iter_mut().find(|(p, _)| p.name() == name) else {
            return Err(unparsable(line, "access by a program that reported no identity"));
        };
        let (path, outcome, detail) = parse_access(rest)?;
        access.insert(path, (outcome, detail));
    }
    Ok(escalations)
}

fn number(text: &str, line: &str, why: &'static str) -> Result<u32, ProbeError> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().map_err(|_| ProbeError::Unparsable { line: line.to_string(), why })
}

/// Parses busybox or coreutils `id` output: `uid=1000(name) gid=3000 groups=3000,4000(g)`.
pub fn parse_id_output(text: &str) -> Result<(Identity, Vec<u32>), ProbeError> {
    let field = |key: &str| text.split_whitespace().find_map(|w| w.strip_prefix(key));
    let uid = number(field("uid=").ok_or(ProbeError::Missing("uid="))?, text, "bad uid")?;
    let gid = number(field("gid=").ok_or(ProbeError::Missing("gid="))?, text, "bad gid")?;
    // Group names never contain ',' in sgpc's images; a name in parentheses follows each id.
    let groups = match text.split_once(" groups=") {
        Some((_, list)) => list.split(',').map(|g| number(g, text, "bad group id")).collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    Ok((Identity::observed(uid, gid, groups.iter().copied()), groups))
}

/// Parses the `Uid:`, `Gid:` and `Groups:` lines of `/proc/<pid>/status` (values after the key).
/// The effective ids (second column) are the ones that grant access.
pub fn parse_status(uid_line: &str, gid_line: &str, groups_line: &str) -> Result<(Identity, Vec<u32>), ProbeError> {
    let effective = |line: &str, why| {
        let column = line.split_whitespace().nth(1).ok_or(ProbeError::Unparsable { line: line.to_string(), why })?;
        number(column, line, why)
    };
    let uid = effective(uid_line, "bad Uid line")?;
    let gid = effective(gid_line, "bad Gid line")?;
    let groups = groups_line
        .split_whitespace()
        .map(|g| number(g, groups_line, "bad Groups line"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((Identity::observed(uid, gid, groups.iter().copied()), groups))
}

/// Parses a whole `/proc/<pid>/status` file.
pub fn parse_proc_status(text: &str) -> Result<(Identity, Vec<u32>), ProbeError> {
    let value = |key: &'static str| text.lines().find_map(|l| l.strip_prefix(key)).ok_or(ProbeError::Missing(key));
    parse_status(value("Uid:")?, value("Gid:")?, value("Groups:").unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_output_with_names() {
        let (identity, raw) = parse_id_output("uid=1000(alice) gid=3000 groups=3000,4000,50000(bypassed-group)").unwrap();
        assert_eq!(identity.uid, 1000);
        assert_eq!(identity.gid, 3000);
        assert_eq!(raw, vec![3000, 4000, 50000]);
    }

    #[test]
    fn id_output_without_groups_still_holds_the_primary_gid() {
        let (identity, raw) = parse_id_output("uid=0(root) gid=0(root)").unwrap();
        assert!(raw.is_empty());
        assert!(identity.groups.contains(0));
    }

    #[test]
    fn proc_status_uses_effective_ids() {
        let text = "Name:\tsh\nUid:\t1000\t1001\t1000\t1000\nGid:\t3000\t3000\t3000\t3000\nGroups:\t3000 4000 \n";
        let (identity, raw) = parse_proc_status(text).unwrap();
        assert_eq!(identity.uid, 1001);
        assert_eq!(raw, vec![3000, 4000]);
    }

    #[test]
    fn probe_output_from_another_case_is_refused() {
        let out = "sgpc-case=a/strict\nsgpc-id=uid=1 gid=1\nsgpc-status-Uid:\t1\t1\t1\t1\nsgpc-status-Gid:\t1\t1\t1\t1\nsgpc-end\n";
        assert!(parse_probe(out, "a/strict").is_ok());
        assert!(matches!(parse_probe(out, "b/strict"), Err(ProbeError::WrongCase { .. })));
    }

    #[test]
    fn no_new_privs_is_read_from_the_status_lines() {
        let out = |value: &str| format!("sgpc-case=c\nsgpc-id=uid=1 gid=1\nsgpc-status-Uid:\t1\t1\t1\t1\nsgpc-status-Gid:\t1\t1\t1\t1\nsgpc-status-Groups:\t\n{value}sgpc-end\n");
        assert_eq!(parse_probe(&out("sgpc-status-NoNewPrivs:\t1\n"), "c").unwrap().no_new_privs, Some(true));
        assert_eq!(parse_probe(&out("sgpc-status-NoNewPrivs:\t0\n"), "c").unwrap().no_new_privs, Some(false));
        assert_eq!(parse_probe(&out(""), "c").unwrap().no_new_privs, None, "a kernel before 4.10 prints none");
        assert!(parse_probe(&out("sgpc-status-NoNewPrivs:\t2\n"), "c").is_err());
        let caps = parse_probe(&out("sgpc-status-CapPrm:\t0000000000000000\nsgpc-status-CapEff:\t0000000000000000\nsgpc-status-CapBnd:\t00000000a80425fb\n"), "c").unwrap().capabilities.unwrap();
        assert_eq!((caps.permitted, caps.effective, caps.bounding), (0, 0, 0xa80425fb));
        assert!(!caps.is_empty());
        assert!(parse_probe(&out("sgpc-status-CapPrm:\tzz\nsgpc-status-CapEff:\t0\nsgpc-status-CapBnd:\t0\n"), "c").is_err());
    }

    #[test]
    fn probe_access_lines() {
        let out = "sgpc-case=c\nsgpc-id=uid=1 gid=1\nsgpc-status-Uid:\t1\t1\t1\t1\nsgpc-status-Gid:\t1\t1\t1\t1\nsgpc-status-Groups:\t\nsgpc-access=/p/token denied cat: can't open '/p/token': Permission denied\nsgpc-end\n";
        let parsed = parse_probe(out, "c").unwrap();
        let (access, detail) = &parsed.access["/p/token"];
        assert_eq!(*access, Access::Denied);
        assert!(detail.contains("Permission denied"));
    }
}
