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
//! - access: uid 0 reads everything (CAP_DAC_OVERRIDE), anyone else through membership of the
//!   protected directory's group (POSIX file permissions).
//!
//! containerd leaves out a group named like the user (containerd/containerd#11937, an open bug);
//! the model does not copy it: [`crate::verdict`] names the bug where it shows.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::etc::PasswdEntry;
use crate::identity::{GroupSet, Identity};
use crate::image::Recipe;
use crate::scenario::{Access, ContainerSecurity, PodSecurity, Policy, Scenario, Volume};

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
    pub identity: Identity,
    /// Groups that `/etc/group` gives the user: attached under Merge, never under Strict.
    pub implicit_groups: GroupSet,
    pub access: BTreeMap<String, Access>,
    /// Where each id comes from, one line each: what `sgpc list --explain` prints.
    pub explanation: Vec<String>,
    /// The name of the uid's `/etc/passwd` entry, if it has one: whose memberships count.
    pub user_name: Option<String>,
}

/// The rules applied to a scenario under a policy.
pub fn derive(recipe: &Recipe, scenario: &Scenario, policy: Policy) -> Result<Derivation, OracleError> {
    derive_spec(recipe, &PodSpec { pod: &scenario.pod, container: &scenario.container, volumes: &scenario.volumes }, policy)
}

/// The groups the Pod itself declares, which Strict attaches and nothing more (KEP-3619,
/// "Strict"): the primary gid, `fsGroup` and `supplementalGroups`. Any other group a process
/// holds under Strict is a leak.
pub fn declared_groups(recipe: &Recipe, scenario: &Scenario) -> Result<GroupSet, OracleError> {
    Ok(derive(recipe, scenario, Policy::Strict)?.identity.groups)
}

/// The groups a runtime without Strict support attaches beyond the declared ones: the image's
/// `/etc/group` lines that list the user, read as leniently as runtimes read them (a CRLF file,
/// spaces around members). What the matrix's `no-strict` outcome expects to leak.
pub fn lenient_leak(recipe: &Recipe, scenario: &Scenario) -> Result<GroupSet, OracleError> {
    let strict = derive(recipe, scenario, Policy::Strict)?;
    let Some(user) = strict.user_name else { return Ok(GroupSet::default()) };
    Ok(recipe
        .lenient_group_lines()
        .iter()
        .filter(|line| line.members.contains(&user) && !strict.identity.groups.contains(line.gid))
        .map(|line| line.gid)
        .collect())
}

/// Groups of the image's `/etc/group` named like the user that list the user: where
/// containerd/containerd#11937 shows.
pub fn self_named_groups(recipe: &Recipe, scenario: &Scenario) -> Result<GroupSet, OracleError> {
    let Some(user) = derive(recipe, scenario, Policy::Strict)?.user_name else { return Ok(GroupSet::default()) };
    Ok(recipe.group.as_deref().unwrap_or_default().iter().filter(|g| g.name == user && g.members.contains(&user)).map(|g| g.gid).collect())
}

pub fn derive_spec(recipe: &Recipe, spec: &PodSpec<'_>, policy: Policy) -> Result<Derivation, OracleError> {
    let passwd = recipe.passwd.as_deref().unwrap_or_default();
    let mut explanation = Vec::new();
    let run_as_user = spec.container.run_as_user.or(spec.pod.run_as_user);
    let run_as_group = spec.container.run_as_group.or(spec.pod.run_as_group);

    let uid = match run_as_user {
        Some(uid) => {
            explanation.push(format!("uid {uid}: runAsUser"));
            uid
        }
        None => {
            let uid = resolve_image_user(recipe)?;
            explanation.push(format!("uid {uid}: image USER {:?} as kubelet sends it (no runAsUser)", recipe.user.as_deref().unwrap_or("")));
            uid
        }
    };
    let entry: Option<&PasswdEntry> = passwd.iter().find(|e| e.uid == uid);
    let gid = match (run_as_group, entry) {
        (Some(gid), _) => {
            explanation.push(format!("gid {gid}: runAsGroup"));
            gid
        }
        (None, Some(e)) => {
            explanation.push(format!("gid {}: /etc/passwd entry of {:?}", e.gid, e.name));
            e.gid
        }
        (None, None) => {
            explanation.push(format!("gid 0: uid {uid} has no /etc/passwd entry"));
            0
        }
    };

    let implicit_groups: GroupSet = match entry {
        Some(user) => recipe
            .group
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|g| g.members.contains(&user.name))
            .map(|g| g.gid)
            .collect(),
        None => GroupSet::default(),
    };

    let mut groups: GroupSet = spec.pod.fs_group.into_iter().chain(spec.pod.supplemental_groups.iter().copied()).collect();
    groups.insert(gid);
    if let Some(fs_group) = spec.pod.fs_group {
        explanation.push(format!("group {fs_group}: fsGroup"));
    }
    for g in &spec.pod.supplemental_groups {
        explanation.push(format!("group {g}: supplementalGroups"));
    }
    if policy == Policy::Strict {
        if !implicit_groups.is_empty() {
            explanation.push(format!("groups {implicit_groups} of the image's /etc/group: left out (Strict)"));
        }
    } else {
        groups.0.extend(implicit_groups.iter());
        if !implicit_groups.is_empty() {
            explanation.push(format!("groups {implicit_groups}: the image's /etc/group lists the user (Merge)"));
        }
    }
    let access = spec
        .volumes
        .iter()
        .map(|v| {
            let readable = uid == 0 || groups.contains(v.gid);
            (v.token_path(), if readable { Access::Allowed } else { Access::Denied })
        })
        .collect();
    Ok(Derivation { identity: Identity { uid, gid, groups }, implicit_groups, access, explanation, user_name: entry.map(|e| e.name.clone()) })
}

/// Resolves the image config's `USER` (`name`, `uid`, `name:group`, `uid:gid`) as it reaches a
/// runtime through kubelet: CRI `ImageStatus` carries only what precedes `:` (a uid or a user
/// name), which kubelet sends as `run_as_user` or `run_as_username`; the group part never
/// arrives (kubernetes/kubernetes#61967), so the primary gid comes from `/etc/passwd`. The OCI
/// image spec's own rule for `user:group` binds engines that honour the group, not Kubernetes.
fn resolve_image_user(recipe: &Recipe) -> Result<u32, OracleError> {
    let Some(user) = recipe.user.as_deref().filter(|u| !u.is_empty()) else {
        // No USER: kubelet sends run_as_user 0.
        return Ok(0);
    };
    let user_part = user.split_once(':').map_or(user, |(u, _)| u);
    match user_part.parse::<u32>() {
        Ok(uid) => Ok(uid),
        Err(_) => recipe
            .passwd
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|e| e.name == user_part)
            .map(|e| e.uid)
            .ok_or_else(|| OracleError::UnknownUser { user: user.to_string() }),
    }
}
