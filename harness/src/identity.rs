//! The identity a container process runs with, in numbers.
//!
//! Everything sgpc compares is numeric: names printed by `id` differ between runtimes
//! (CRI-O bind-mounts generated `/etc/passwd` entries), numbers do not.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The largest valid uid or gid: 4294967295 is `(uid_t)-1`.
pub const MAX_ID: u32 = 4_294_967_294;
/// The largest id the Kubernetes API accepts in a Pod.
pub const MAX_POD_ID: u32 = 2_147_483_647;

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

/// The user kubelet sends when the Pod sets no `runAsUser`: what CRI `ImageStatus` reports of
/// the image's `USER` (kubernetes `pkg/kubelet/kuberuntime`: `getImageUser`, then
/// `determineEffectiveSecurityContext`). Runtimes fill `ImageStatus` from the config `User`,
/// keeping only what precedes `:`, so the group of `USER name:group` never reaches the runtime
/// (kubernetes/kubernetes#61967).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageUser {
    /// `ImageStatus.image.uid`: sent as `run_as_user`.
    Uid(i64),
    /// `ImageStatus.image.username`: sent as `run_as_username`.
    Name(String),
}

impl ImageUser {
    /// The one reading of a config `User` (`None` when the config has none), used by the
    /// recipe check, the model and the CRI driver alike. Only what precedes `:` counts; a number
    /// is a uid (containerd's `getUserFromImage` parses it as an int64); an empty or absent user
    /// is uid 0, as the image spec says ("If unset, ... root") and as kubelet runs an image whose
    /// `ImageStatus` carries neither uid nor name.
    pub fn of_config(user: Option<&str>) -> ImageUser {
        let user_part = user.map_or("", |u| u.split_once(':').map_or(u, |(user, _)| user));
        if user_part.is_empty() {
            return ImageUser::Uid(0);
        }
        user_part.parse::<i64>().map_or_else(|_| ImageUser::Name(user_part.to_string()), ImageUser::Uid)
    }

    /// The security context field kubelet sets, as the JSON report records it.
    pub fn describe(&self) -> String {
        match self {
            ImageUser::Uid(uid) => format!("run_as_user={uid} (from ImageStatus)"),
            ImageUser::Name(name) => format!("run_as_username={name} (from ImageStatus)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ImageUser;

    #[test]
    fn only_the_user_part_of_a_config_user_counts() {
        assert_eq!(ImageUser::of_config(None), ImageUser::Uid(0));
        assert_eq!(ImageUser::of_config(Some("")), ImageUser::Uid(0));
        assert_eq!(ImageUser::of_config(Some(":3000")), ImageUser::Uid(0));
        assert_eq!(ImageUser::of_config(Some("1000:3000")), ImageUser::Uid(1000));
        assert_eq!(ImageUser::of_config(Some("alice:wheel")), ImageUser::Name("alice".into()));
        assert_eq!(ImageUser::of_config(Some("4294967296")), ImageUser::Uid(4294967296), "a number is a uid, checked by the recipe loader");
    }
}
