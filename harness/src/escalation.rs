//! The programs an image can carry to change the identity a Pod gave it: a setgid program and a
//! program with the file capability `cap_setgid+ep`, both owned by a group the Pod never
//! declared. KEP-3619's policy sets only the identity the container starts with; the GA blog
//! ("Kubernetes v1.35: Fine-grained Supplemental Groups Control Graduates to GA") warns that a
//! process with enough privilege can change it and advises `allowPrivilegeEscalation: false`.
//!
//! The program is `programs/escalate.c`, compiled static by `build.rs`: it joins the group that
//! owns it with `setgroups(2)` (possible only with `CAP_SETGID`), prints its effective gid and
//! groups, and tries to read every file it is given.

use serde::{Deserialize, Serialize};

/// The static executable planted as every escalation program.
pub const PROGRAM_BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/escalate"));

/// An escalation program of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Program {
    /// Mode 02755, owned `root:<gid>`: `execve(2)` makes `<gid>` the effective gid (POSIX exec,
    /// "set-group-ID mode bit").
    Setgid,
    /// Mode 0755, owned `root:<gid>`, `security.capability` = `cap_setgid+ep`: `execve(2)` grants
    /// `CAP_SETGID` if the bounding set holds it, and the program adds `<gid>` with `setgroups(2)`.
    CapSetgid,
}

impl Program {
    pub const ALL: [Program; 2] = [Program::Setgid, Program::CapSetgid];

    /// The file name the probe runs and the program prints.
    pub fn name(self) -> &'static str {
        match self {
            Program::Setgid => "sgpc-setgid",
            Program::CapSetgid => "sgpc-capsetgid",
        }
    }

    pub fn path(self) -> String {
        format!("/bin/{}", self.name())
    }

    pub fn from_name(name: &str) -> Option<Program> {
        Program::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Program::Setgid => "the image's setgid program",
            Program::CapSetgid => "the image's cap_setgid+ep program",
        }
    }

    /// The file mode in the layer.
    pub fn mode(self) -> u32 {
        match self {
            Program::Setgid => 0o2755,
            Program::CapSetgid => 0o755,
        }
    }

    /// The extended attributes in the layer (PAX `SCHILY.xattr.` records).
    pub fn xattrs(self) -> Vec<(String, Vec<u8>)> {
        match self {
            Program::Setgid => Vec::new(),
            Program::CapSetgid => vec![("security.capability".into(), cap_setgid_effective())],
        }
    }

    /// Whether the Pod's container fields keep the kernel from granting this program anything:
    /// `no_new_privs` makes `execve(2)` ignore setgid bits and file capabilities (prctl(2)
    /// `PR_SET_NO_NEW_PRIVS`); without `CAP_SETGID` in the bounding set a file capability
    /// grants nothing (capabilities(7), "Transformation of capabilities during execve()"). A
    /// setgid bit needs no capability, so dropping capabilities does not stop it. A process
    /// running as uid 0 already holds `CAP_SETGID` (the runtimes' default set keeps it), and both
    /// programs call setgroups(2), which then needs no bit: for root, `CAP_SETGID` must be dropped
    /// as well (setgroups(2): EPERM without it), and the setgid program still needs
    /// `no_new_privs` to keep the bit from changing the effective gid.
    pub fn stopped(self, no_new_privs: bool, drops_setgid: bool, runs_as_root: bool) -> bool {
        let bits_ignored = no_new_privs || (self == Program::CapSetgid && drops_setgid);
        bits_ignored && (drops_setgid || !runs_as_root)
    }

    /// The Pod fields that would have stopped this program, for a report.
    pub fn stopped_by(self, runs_as_root: bool) -> &'static str {
        match (self, runs_as_root) {
            (Program::Setgid, false) => "`allowPrivilegeEscalation: false` (kubelet then sets no_new_privs)",
            (Program::CapSetgid, false) => "`allowPrivilegeEscalation: false` (kubelet then sets no_new_privs) or `capabilities: drop: [ALL]`",
            (Program::Setgid, true) => "`allowPrivilegeEscalation: false` with `capabilities: drop: [SETGID]` (root holds CAP_SETGID)",
            (Program::CapSetgid, true) => "`capabilities: drop: [SETGID]` or `[ALL]` (root holds CAP_SETGID)",
        }
    }
}

/// `struct vfs_cap_data` at `VFS_CAP_REVISION_2` (linux/capability.h), little-endian:
/// `magic_etc` with `VFS_CAP_FLAGS_EFFECTIVE`, then permitted and inheritable of the low and
/// the high 32 capabilities. Only `CAP_SETGID` (6) is permitted.
fn cap_setgid_effective() -> Vec<u8> {
    const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
    const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;
    const CAP_SETGID: u32 = 6;
    [VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, 1 << CAP_SETGID, 0, 0, 0].iter().flat_map(|word| word.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_is_what_setcap_writes() {
        // `setcap cap_setgid+ep FILE; getfattr -n security.capability -e hex FILE` (libcap 2.66).
        assert_eq!(hex::encode(cap_setgid_effective()), "0100000240000000000000000000000000000000");
    }

    #[test]
    fn only_the_fields_the_kernel_reads_stop_a_program() {
        assert!(Program::Setgid.stopped(true, false, false));
        assert!(!Program::Setgid.stopped(false, true, false), "a setgid bit needs no capability");
        assert!(Program::CapSetgid.stopped(false, true, false));
        assert!(Program::CapSetgid.stopped(true, false, false));
        assert!(!Program::CapSetgid.stopped(false, false, false));
        // uid 0 holds CAP_SETGID: no_new_privs alone does not keep it from setgroups(2).
        for program in Program::ALL {
            assert!(!program.stopped(true, false, true), "{program:?}");
            assert!(program.stopped(true, true, true), "{program:?}");
        }
        assert!(Program::CapSetgid.stopped(false, true, true));
        assert!(!Program::Setgid.stopped(false, true, true), "the bit still sets the effective gid");
    }

    #[test]
    fn the_program_is_a_static_executable() {
        assert_eq!(&PROGRAM_BYTES[..4], b"\x7fELF");
        // ELF64: no program header of type PT_INTERP (3), so no dynamic loader is needed.
        let at = |offset: usize, len: usize| PROGRAM_BYTES[offset..offset + len].iter().rev().fold(0usize, |n, b| n << 8 | usize::from(*b));
        let (phoff, phentsize, phnum) = (at(0x20, 8), at(0x36, 2), at(0x38, 2));
        assert!(phnum > 0);
        assert!((0..phnum).all(|i| at(phoff + i * phentsize, 4) != 3), "a PT_INTERP header: the program is dynamically linked");
    }
}
