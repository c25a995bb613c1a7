//! The Pod as a scenario declares it: the policy, the security context fields that decide the
//! identity, and the protected volumes. Plain data, below both the scenario language that
//! parses it and the model ([`crate::oracle`]) that reads it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The value of `spec.securityContext.supplementalGroupsPolicy` a case runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Field left unset: the API server and runtimes treat it as `Merge`.
    Default,
    Merge,
    Strict,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::Default, Policy::Merge, Policy::Strict];

    /// The label used in case ids and reports.
    pub fn label(self) -> &'static str {
        match self {
            Policy::Default => "default",
            Policy::Merge => "merge",
            Policy::Strict => "strict",
        }
    }

    /// The value written into the Pod, as the API spells it.
    pub fn api_value(self) -> Option<&'static str> {
        match self {
            Policy::Default => None,
            Policy::Merge => Some("Merge"),
            Policy::Strict => Some("Strict"),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Whether a process may read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Allowed,
    Denied,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Allowed => "readable",
            Access::Denied => "denied",
        })
    }
}

/// Pod-level security context fields that decide the identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurity {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub supplemental_groups: Vec<u32>,
    pub fs_group: Option<u32>,
    /// `spec.hostUsers` as written; `false` puts the Pod in a user namespace of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_users: Option<bool>,
}

impl PodSecurity {
    /// Whether the Pod runs in a user namespace of its own (`hostUsers: false`, KEP-127): kubelet
    /// then sends CRI `NamespaceOption.userns_options` with mode POD.
    pub fn user_namespace(&self) -> bool {
        self.host_users == Some(false)
    }
}

/// Container-level overrides (Kubernetes has no container-level supplemental groups).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSecurity {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// `capabilities.drop`, as written (`ALL` or names like `SETGID`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop_capabilities: Vec<String>,
}

impl ContainerSecurity {
    /// Whether the container process must run with `no_new_privs`: kubelet sets it exactly when
    /// `allowPrivilegeEscalation` is false (kubernetes `pkg/kubelet/kuberuntime`
    /// `security_context.go`, `AddNoNewPrivileges`; the API: it "directly controls if the
    /// no_new_privs flag will be set on the container process").
    pub fn no_new_privs(&self) -> bool {
        self.allow_privilege_escalation == Some(false)
    }

    /// `capabilities: {drop: [ALL]}`: no process of the container may hold a capability, not even
    /// in its bounding set (Kubernetes API Capabilities.drop; kubelet passes the list to CRI
    /// `drop_capabilities` as written; OCI runtime spec `process.capabilities`).
    pub fn drops_all_capabilities(&self) -> bool {
        self.drop_capabilities.iter().any(|c| c == "ALL")
    }

    /// Whether `CAP_SETGID` leaves the bounding set: dropped by name (with or without `CAP_`,
    /// which runtimes add) or with ALL.
    pub fn drops_setgid(&self) -> bool {
        self.drops_all_capabilities() || self.drop_capabilities.iter().any(|c| c == "SETGID" || c == "CAP_SETGID")
    }
}

/// A directory owned `root:<gid>` holding a file `token` owned `root:<gid>`: mode 0070 and 0040,
/// readable only through membership of `gid`; or, with `negative_group_permission`, mode 0755
/// and 0604 (`rw----r--`), readable by anyone except through membership of `gid` (POSIX: the
/// group class applies to a member whatever the others class grants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub mount_path: String,
    pub gid: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub negative_group_permission: bool,
}

impl Volume {
    pub const TOKEN_FILE: &'static str = "token";

    /// The modes of the directory and of the token.
    pub fn modes(&self) -> (u32, u32) {
        if self.negative_group_permission {
            (0o755, 0o604)
        } else {
            (0o070, 0o040)
        }
    }

    pub fn token_path(&self) -> String {
        format!("{}/{}", self.mount_path.trim_end_matches('/'), Self::TOKEN_FILE)
    }
}
