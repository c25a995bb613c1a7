//! The KEP-3619 rules as a model: what identity a container's first process must get.
//!
//! The written expectations in `scenarios/*.yaml` are checked against this model by unit tests,
//! so a typo in either shows. The rules, as kubelet and the CRI runtimes apply them:
//!
//! - uid: container `runAsUser`, else pod `runAsUser`, else the image's `USER` (a name is looked
//!   up in the image's `/etc/passwd`), else 0.
//! - primary gid: `runAsGroup` (container, then pod); else, when the image `USER` names it
//!   (`user:group`) and no `runAsUser` is set, that group; else the passwd entry's gid; else 0.
//! - groups: the primary gid, `fsGroup`, `supplementalGroups`, and, under `Merge` only, every
//!   group of the image's `/etc/group` that lists the user's name as a member (the implicit
//!   groups KEP-3619 exists to control). A group named like the user is its private group and is
//!   not added (containerd skips it).

use std::collections::BTreeMap;

use thiserror::Error;

use crate::etc::PasswdEntry;
use crate::identity::{GroupSet, Identity};
use crate::image::Recipe;
use crate::scenario::{Access, Policy, Scenario};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OracleError {
    #[error("image USER {user:?} names a user that the image's /etc/passwd lacks: the container cannot start")]
    UnknownUser { user: String },
    #[error("image USER {user:?} names a group that the image's /etc/group lacks: the container cannot start")]
    UnknownGroup { user: String },
}

/// What the rules give for one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    pub identity: Identity,
    /// Groups that `/etc/group` gives the user: attached under Merge, never under Strict.
    pub implicit_groups: GroupSet,
    pub access: BTreeMap<String, Access>,
}

pub fn derive(recipe: &Recipe, scenario: &Scenario, policy: Policy) -> Result<Derivation, OracleError> {
    let passwd = recipe.passwd.as_deref().unwrap_or_default();
    let run_as_user = scenario.container.run_as_user.or(scenario.pod.run_as_user);
    let run_as_group = scenario.container.run_as_group.or(scenario.pod.run_as_group);

    let (uid, image_gid) = match run_as_user {
        Some(uid) => (uid, None),
        None => resolve_image_user(recipe)?,
    };
    let entry: Option<&PasswdEntry> = passwd.iter().find(|e| e.uid == uid);
    let gid = run_as_group.or(image_gid).or(entry.map(|e| e.gid)).unwrap_or(0);

    let implicit_groups: GroupSet = match entry {
        Some(user) => recipe
            .group
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|g| g.name != user.name && g.members.contains(&user.name))
            .map(|g| g.gid)
            .collect(),
        None => GroupSet::default(),
    };

    let mut groups: GroupSet = scenario.pod.fs_group.into_iter().chain(scenario.pod.supplemental_groups.iter().copied()).collect();
    groups.insert(gid);
    if policy != Policy::Strict {
        groups.0.extend(implicit_groups.iter());
    }
    let access = scenario
        .volumes
        .iter()
        .map(|v| {
            let readable = uid == 0 || groups.contains(v.gid);
            (v.token_path(), if readable { Access::Allowed } else { Access::Denied })
        })
        .collect();
    Ok(Derivation { identity: Identity { uid, gid, groups }, implicit_groups, access })
}

/// Resolves the image config's `USER` (`name`, `uid`, `name:group`, `uid:gid`) to a uid and,
/// when given, a gid.
fn resolve_image_user(recipe: &Recipe) -> Result<(u32, Option<u32>), OracleError> {
    let Some(user) = recipe.user.as_deref().filter(|u| !u.is_empty()) else {
        return Ok((0, None));
    };
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let unknown_user = || OracleError::UnknownUser { user: user.to_string() };
    let uid = match user_part.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => recipe
            .passwd
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|e| e.name == user_part)
            .map(|e| e.uid)
            .ok_or_else(unknown_user)?,
    };
    let gid = match group_part {
        None => None,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => recipe
                .group
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| OracleError::UnknownGroup { user: user.to_string() })?,
        }),
    };
    Ok((uid, gid))
}
