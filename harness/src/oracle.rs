//! The KEP-3619 rules as a model: what identity a container's first process must get.
//!
//! Every written expectation in `scenarios/*.yaml` is held to this model when the files load.
//! Each rule states a spec, never what one runtime does:
//!
//! - uid: container `runAsUser`, else pod `runAsUser` (Kubernetes API, `SecurityContext` /
//!   `PodSecurityContext`), else the image's user as kubelet sends it: CRI `ImageStatus` gives
//!   the part of the OCI config `User` before `:` (kubernetes `pkg/kubelet/kuberuntime`,
//!   `getImageUser`); a name is looked up in the image's `/etc/passwd`; no `USER` is uid 0.
//! - primary gid: `runAsGroup` (container, then pod; Kubernetes API), else the gid of the
//!   user's `/etc/passwd` entry, else 0 (the group of `USER name:group` never reaches the
//!   runtime through kubelet: kubernetes/kubernetes#61967).
//! - groups: the primary gid, `fsGroup`, `supplementalGroups` (the kubelet → CRI mapping), and,
//!   under `Merge` only, every group of the image's `/etc/group` whose member list names the
//!   user (KEP-3619, "Merge"; membership as `initgroups(3)`/POSIX `getgrent` define it: a user
//!   is a member of every group that lists it, whatever that group is called). Under `Strict`
//!   only the former (KEP-3619, "Strict").
//! - where the specs leave the file's reading open (comments, blanks, CRLF line endings, extra
//!   fields, a GID that is no number: see [`Reading`]), every outcome an allowed reading gives
//!   is allowed, and the verdict names a reading that gives the runtime's.
//! - access: uid 0 reads everything (CAP_DAC_OVERRIDE), anyone else through membership of the
//!   protected directory's group (POSIX file permissions).
//!
//! containerd leaves out a group named like the user (containerd/containerd#11937, an open bug);
//! the model does not copy it: [`crate::verdict`] names the bug where it shows.

use std::collections::BTreeMap;

use thiserror::Error;

use serde::Serialize;

use crate::escalation::Program;
use crate::etc::{self, GroupLine, PasswdEntry, Reading};
use crate::identity::{GroupSet, Identity};
use crate::image::Recipe;
use crate::pod::{Access, ContainerSecurity, PodSecurity, Policy, Volume};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OracleError {
    #[error("image USER {user:?} names a user that the image's /etc/passwd lacks: the container cannot start")]
    UnknownUser { user: String },
}

/// The Pod fields the rules read: a scenario's security contexts and volumes.
#[derive(Debug, Clone, Copy)]
pub struct PodSpec<'a> {
    pub pod: &'a PodSecurity,
    pub container: &'a ContainerSecurity,
    pub volumes: &'a [Volume],
}

/// What the rules give for one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    /// The identity under glibc's `getgrent` reading of the image's `/etc/group`
    /// ([`Reading::GETGRENT`]).
    pub identity: Identity,
    /// Groups that `/etc/group` gives the user (`getgrent`'s reading): attached under Merge,
    /// never under Strict.
    pub implicit_groups: GroupSet,
    pub access: BTreeMap<String, Access>,
    /// Where each id comes from, one line each: what `sgpc list --explain` prints.
    pub explanation: Vec<String>,
    /// The name of the uid's `/etc/passwd` entry, if it has one: whose memberships count.
    pub user_name: Option<String>,
    /// Why each expected group is expected ("supplementalGroups", "image /etc/group line 3"),
    /// under every reading.
    pub sources: BTreeMap<u32, Vec<String>>,
    /// Where the readings of the image's `/etc/group` allowed by the specs give different
    /// identities: every allowed outcome, glibc's first. Empty when they all agree.
    pub open: Vec<AllowedOutcome>,
    /// What each escalation program of the image reaches if the kernel grants it its bits
    /// (the setgid program: effective gid := its group; the cap_setgid+ep program: its group
    /// joins the supplementary groups); empty for an image without them.
    pub escalated: BTreeMap<Program, BTreeMap<String, Access>>,
    /// Why the runtime may refuse the Pod: with `hostUsers: false`, an id the identity needs lies
    /// outside the Pod's user namespace, which no runtime can attach.
    pub refusal_allowed: Option<String>,
}

/// The ids of a Pod's user namespace: container ids 0..65536 (kubelet's `idsPerPod`; Kubernetes
/// docs, "User Namespaces": "The valid UIDs/GIDs when this feature is enabled is the range
/// 0-65535").
pub const USERNS_IDS: u32 = 65536;

/// One outcome the specs allow for an open case, and a reading that gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowedOutcome {
    pub identity: Identity,
    pub access: BTreeMap<String, Access>,
    /// A reading of the image's `/etc/group` that gives this outcome ([`Reading::choices`]),
    /// with the known readers that read so.
    pub reading: String,
}

impl AllowedOutcome {
    /// The reading behind this outcome, for a note or a reason.
    pub fn describe(&self) -> &str {
        &self.reading
    }
}

/// The groups the image's `/etc/group` lists the user in under `reading`.
fn memberships(recipe: &Recipe, user: &str, reading: Reading) -> Vec<GroupLine> {
    etc::read_group(recipe.group_lines.as_deref().unwrap_or_default(), reading).into_iter().filter(|line| line.members.iter().any(|m| m == user)).collect()
}

/// What a runtime without Strict support attaches beyond the declared groups under each
/// reading of the image's `/etc/group`: what the matrix's `no-strict` outcome expects to leak.
pub fn leaks_by_reading(recipe: &Recipe, spec: &PodSpec<'_>) -> Result<Vec<GroupSet>, OracleError> {
    let strict = derive(recipe, spec, Policy::Strict)?;
    let Some(user) = strict.user_name else { return Ok(vec![GroupSet::default()]) };
    Ok(Reading::all()
        .into_iter()
        .map(|reading| memberships(recipe, &user, reading).iter().map(|l| l.gid).filter(|g| !strict.identity.groups.contains(*g)).collect())
        .collect())
}

/// Groups of the image's `/etc/group` named like the user (the passwd name of the derived uid,
/// [`Derivation::user_name`]) that list the user, under any reading: where
/// containerd/containerd#11937 shows.
pub fn self_named_groups(recipe: &Recipe, user: Option<&str>) -> GroupSet {
    let Some(user) = user else { return GroupSet::default() };
    Reading::all().into_iter().flat_map(|r| memberships(recipe, user, r)).filter(|g| g.name == user).map(|g| g.gid).collect()
}

/// The rules applied to a Pod under a policy.
pub fn derive(recipe: &Recipe, spec: &PodSpec<'_>, policy: Policy) -> Result<Derivation, OracleError> {
    let passwd = recipe.passwd.as_deref().unwrap_or_default();
    let mut explanation = Vec::new();
    let mut sources: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let run_as_user = spec.container.run_as_user.or(spec.pod.run_as_user);
    let run_as_group = spec.container.run_as_group.or(spec.pod.run_as_group);

    let uid = match run_as_user {
        Some(uid) => {
            explanation.push(format!("uid {uid}: runAsUser [Kubernetes API SecurityContext.runAsUser]"));
            uid
        }
        None => {
            let uid = resolve_image_user(recipe)?;
            explanation.push(format!(
                "uid {uid}: image USER {:?} as kubelet sends it, no runAsUser [kubelet getImageUser; OCI image spec config User; kubernetes#61967]",
                recipe.user.as_deref().unwrap_or("")
            ));
            uid
        }
    };
    let entry: Option<&PasswdEntry> = passwd.iter().find(|e| e.uid == uid);
    let (gid, gid_source) = match (run_as_group, entry) {
        (Some(gid), _) => (gid, "runAsGroup".to_string()),
        (None, Some(e)) => (e.gid, format!("the /etc/passwd entry of {:?}", e.name)),
        (None, None) => (0, format!("uid {uid} has no /etc/passwd entry")),
    };
    let gid_rule = if run_as_group.is_some() { "Kubernetes API SecurityContext.runAsGroup" } else { "kubelet's CRI mapping: no run_as_group, the user's passwd gid" };
    explanation.push(format!("gid {gid}: {gid_source} [{gid_rule}]"));
    sources.entry(gid).or_default().push(format!("the primary gid ({gid_source})"));

    let mut declared: GroupSet = GroupSet::default();
    declared.insert(gid);
    if let Some(fs_group) = spec.pod.fs_group {
        declared.insert(fs_group);
        explanation.push(format!("group {fs_group}: fsGroup [Kubernetes API PodSecurityContext.fsGroup]"));
        sources.entry(fs_group).or_default().push("fsGroup".into());
    }
    for &g in &spec.pod.supplemental_groups {
        declared.insert(g);
        explanation.push(format!("group {g}: supplementalGroups [Kubernetes API PodSecurityContext.supplementalGroups]"));
        sources.entry(g).or_default().push("supplementalGroups".into());
    }

    let user_name = entry.map(|e| e.name.clone());
    let by_reading: Vec<(Reading, Vec<GroupLine>)> =
        Reading::all().into_iter().map(|r| (r, user_name.as_deref().map(|u| memberships(recipe, u, r)).unwrap_or_default())).collect();
    let implicit_groups: GroupSet = by_reading[0].1.iter().map(|l| l.gid).collect();
    if policy == Policy::Strict {
        if !implicit_groups.is_empty() {
            explanation.push(format!("groups {implicit_groups} of the image's /etc/group: left out [KEP-3619 Strict]"));
        }
    } else {
        for line in by_reading.iter().flat_map(|(_, lines)| lines) {
            let source = format!("image /etc/group line {} {:?}", line.number, line.text);
            let known = sources.entry(line.gid).or_default();
            if !known.contains(&source) {
                known.push(source);
            }
        }
        if !implicit_groups.is_empty() {
            explanation.push(format!("groups {implicit_groups}: the image's /etc/group lists the user [KEP-3619 Merge; initgroups(3) membership]"));
        }
    }

    let access_of = |groups: &GroupSet| -> BTreeMap<String, Access> { spec.volumes.iter().map(|v| (v.token_path(), access(uid, gid, groups, v))).collect() };
    // Outcomes differ only in their groups (uid and gid do not depend on the reading, access
    // follows from the groups); the known readers that give an outcome name it.
    let mut outcomes: Vec<(AllowedOutcome, Reading, Vec<&str>)> = Vec::new();
    for (reading, lines) in &by_reading {
        let mut groups = declared.clone();
        if policy != Policy::Strict {
            groups.0.extend(lines.iter().map(|l| l.gid));
        }
        let index = match outcomes.iter().position(|(o, _, _)| o.identity.groups == groups) {
            Some(index) => index,
            None => {
                outcomes.push((AllowedOutcome { access: access_of(&groups), identity: Identity { uid, gid, groups }, reading: String::new() }, *reading, Vec::new()));
                outcomes.len() - 1
            }
        };
        if let Some(reader) = reading.known_reader() {
            let (_, shown, readers) = &mut outcomes[index];
            if readers.is_empty() {
                *shown = *reading;
            }
            readers.push(reader);
        }
    }
    let outcomes: Vec<AllowedOutcome> = outcomes
        .into_iter()
        .map(|(mut outcome, shown, readers)| {
            outcome.reading = match readers.as_slice() {
                [] => shown.choices(),
                readers => format!("{} (as {} read it)", shown.choices(), readers.join(" and ")),
            };
            outcome
        })
        .collect();
    let (outcomes, refusal_allowed) = within_user_namespace(spec, outcomes, &mut explanation);
    let primary = outcomes[0].clone();
    let escalated = escalated_access(recipe, spec, &primary.identity);
    if !escalated.is_empty() {
        explanation.push(format!(
            "escalation: if the kernel grants their bits, the image's programs owned by group {} reach: {} [POSIX exec set-group-ID; capabilities(7)]; for a non-root process no_new_privs stops both and dropping CAP_SETGID the cap_setgid+ep one; root holds CAP_SETGID, so for root dropping it is needed too [prctl(2) PR_SET_NO_NEW_PRIVS; setgroups(2)]",
            recipe.escalation_gid.unwrap_or_default(),
            escalated.iter().map(|(program, access)| format!("{} {}", program.describe(), access.iter().map(|(path, a)| format!("{path} {a}")).collect::<Vec<_>>().join(", "))).collect::<Vec<_>>().join("; ")
        ));
    }
    let open = if outcomes.len() > 1 {
        for o in &outcomes[1..] {
            explanation.push(format!("also allowed, groups {}: {} [the specs are silent: POSIX defines no group file, group(5) no comments, blanks or line endings]", o.identity.groups, o.describe()));
        }
        outcomes
    } else {
        Vec::new()
    };
    Ok(Derivation { identity: primary.identity, implicit_groups, access: primary.access, explanation, user_name, sources, open, escalated, refusal_allowed })
}

/// With `hostUsers: false`, the outcomes as a Pod's user namespace allows them, and why the
/// runtime may refuse the Pod. The namespace maps container ids 0..65535 only (the declared ids
/// are held to that when the scenario loads; the image's may lie beyond), and setgroups(2) and
/// setgid(2) fail with EINVAL on an id it does not map (user_namespaces(7); measured: runc's
/// "setgroups: invalid argument"): refusing the Pod is allowed. A group beyond the range cannot
/// be attached as itself, so a Pod that runs runs without it: every outcome loses such groups.
/// An unmappable uid or gid cannot run at all: the outcomes stay, and only a refusal passes.
fn within_user_namespace(spec: &PodSpec<'_>, outcomes: Vec<AllowedOutcome>, explanation: &mut Vec<String>) -> (Vec<AllowedOutcome>, Option<String>) {
    let mappable = |id: u32| id < USERNS_IDS;
    let all_mapped = |o: &AllowedOutcome| mappable(o.identity.uid) && mappable(o.identity.gid) && o.identity.groups.iter().all(mappable);
    if !spec.pod.user_namespace() || outcomes.iter().all(all_mapped) {
        return (outcomes, None);
    }
    let first = &outcomes[0].identity;
    let mut outside: Vec<String> = [("uid", first.uid), ("gid", first.gid)].into_iter().filter(|(_, id)| !mappable(*id)).map(|(what, id)| format!("{what} {id}")).collect();
    let groups: GroupSet = outcomes.iter().flat_map(|o| o.identity.groups.iter()).filter(|g| !mappable(*g)).collect();
    if !groups.is_empty() {
        outside.push(format!("groups {groups}"));
    }
    let why = format!(
        "with hostUsers: false the Pod's user namespace maps ids 0..65535 only (Kubernetes docs, \"User Namespaces\"), and {} lie outside it: no runtime can attach them (setgroups(2), setgid(2): EINVAL)",
        outside.join(", ")
    );
    explanation.push(format!("{why}; refusing the Pod is allowed"));
    if !mappable(first.uid) || !mappable(first.gid) {
        return (outcomes, Some(why));
    }
    let mut stripped: Vec<AllowedOutcome> = Vec::new();
    for outcome in outcomes {
        let Identity { uid, gid, groups } = outcome.identity;
        let unmapped: GroupSet = groups.iter().filter(|g| !mappable(*g)).collect();
        let groups = groups.minus(&unmapped);
        if stripped.iter().any(|o| o.identity.groups == groups) {
            continue;
        }
        let access = spec.volumes.iter().map(|v| (v.token_path(), access(uid, gid, &groups, v))).collect();
        let reading = if unmapped.is_empty() { outcome.reading } else { format!("{}, without the groups the user namespace cannot map ({unmapped})", outcome.reading) };
        stripped.push(AllowedOutcome { identity: Identity { uid, gid, groups }, access, reading });
    }
    explanation.push(format!("a Pod that runs runs without them: groups {}", stripped[0].identity.groups));
    (stripped, Some(why))
}

/// Whether a process may read a volume's token (POSIX file permission classes): uid 0 reads
/// everything (CAP_DAC_OVERRIDE); a member of the token's group (its effective gid or a
/// supplementary group) gets the group class, anyone else the others class.
pub fn access(uid: u32, egid: u32, groups: &GroupSet, volume: &Volume) -> Access {
    let member = egid == volume.gid || groups.contains(volume.gid);
    if uid == 0 || member != volume.negative_group_permission {
        Access::Allowed
    } else {
        Access::Denied
    }
}

/// What each escalation program reaches from `identity` if the kernel grants its bits.
fn escalated_access(recipe: &Recipe, spec: &PodSpec<'_>, identity: &Identity) -> BTreeMap<Program, BTreeMap<String, Access>> {
    let Some(program_gid) = recipe.escalation_gid else { return BTreeMap::new() };
    Program::ALL
        .into_iter()
        .map(|program| {
            let (egid, mut groups) = (identity.gid, identity.groups.clone());
            let egid = match program {
                Program::Setgid => program_gid,
                Program::CapSetgid => {
                    groups.insert(program_gid);
                    egid
                }
            };
            (program, spec.volumes.iter().map(|v| (v.token_path(), access(identity.uid, egid, &groups, v))).collect())
        })
        .collect()
}

/// Resolves the image config's `USER` (`name`, `uid`, `name:group`, `uid:gid`) as it reaches a
/// runtime through kubelet: CRI `ImageStatus` carries only what precedes `:` (a uid or a user
/// name), which kubelet sends as `run_as_user` or `run_as_username`; the group part never
/// arrives (kubernetes/kubernetes#61967), so the primary gid comes from `/etc/passwd`. The OCI
/// image spec's own rule for `user:group` binds engines that honour the group, not Kubernetes.
fn resolve_image_user(recipe: &Recipe) -> Result<u32, OracleError> {
    let unknown = || OracleError::UnknownUser { user: recipe.user.clone().unwrap_or_default() };
    match crate::identity::ImageUser::of_config(recipe.user.as_deref()) {
        // The recipe loader admits only uids in 0..=4294967294.
        crate::identity::ImageUser::Uid(uid) => u32::try_from(uid).map_err(|_| unknown()),
        crate::identity::ImageUser::Name(name) => recipe.passwd.as_deref().unwrap_or_default().iter().find(|e| e.name == name).map(|e| e.uid).ok_or_else(unknown),
    }
}
