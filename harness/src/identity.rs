//! The identity a container process runs with, in numbers.
//!
//! Everything sgpc compares is numeric: names printed by `id` differ between runtimes
//! (CRI-O bind-mounts generated `/etc/passwd` entries), numbers do not.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A set of group ids; order never matters for conformance, only membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupSet(pub BTreeSet<u32>);

impl GroupSet {
    pub fn contains(&self, gid: u32) -> bool {
        self.0.contains(&gid)
    }

    pub fn insert(&mut self, gid: u32) {
        self.0.insert(gid);
    }

    /// Members of `self` that are not in `other`.
    pub fn minus(&self, other: &GroupSet) -> GroupSet {
        GroupSet(self.0.difference(&other.0).copied().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<u32> for GroupSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        GroupSet(iter.into_iter().collect())
    }
}

impl fmt::Display for GroupSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self.0.iter().map(u32::to_string).collect();
        write!(f, "{{{}}}", ids.join(" "))
    }
}

/// uid, primary gid and the supplementary groups attached to a process.
///
/// `groups` always contains `gid`: the KEP reports the primary gid among
/// `status.user.linux.supplementalGroups`, and a kernel list that omits it grants the same access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: GroupSet,
}

impl Identity {
    /// Builds an identity from raw observed values, adding the primary gid to the groups.
    pub fn observed(uid: u32, gid: u32, groups: impl IntoIterator<Item = u32>) -> Identity {
        let mut groups: GroupSet = groups.into_iter().collect();
        groups.insert(gid);
        Identity { uid, gid, groups }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid={} gid={} groups={}", self.uid, self.gid, self.groups)
    }
}
