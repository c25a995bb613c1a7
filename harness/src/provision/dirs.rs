//! Directories sgpc writes into as root must not be steerable by anyone else: the work root
//! (run directories), the state directory (run records, which `sgpc clean` acts on) and every
//! directory above them. The rule is ssh's StrictModes: each is owned by root or by sgpc's own
//! user, and nobody else may write to it, unless its sticky bit keeps others from renaming or
//! deleting what they do not own (`/tmp`). A symbolic link on the way is held to the owner rule
//! too: its owner could point it elsewhere.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a directory sgpc would write into is refused.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeDir {
    #[error("cannot inspect {}", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is owned by uid {owner}, not by root or uid {me}: its owner could replace what sgpc creates below it", path.display())]
    Owner { path: PathBuf, owner: u32, me: u32 },
    #[error("{} is writable by others (mode {mode:04o}) and has no sticky bit: they could rename or replace what sgpc creates below it", path.display())]
    Writable { path: PathBuf, mode: u32 },
    #[error("{} must be private to its owner (mode {mode:04o}, expected no group or other access)", path.display())]
    NotPrivate { path: PathBuf, mode: u32 },
}

fn inspect(path: &Path) -> impl FnOnce(std::io::Error) -> UnsafeDir + '_ {
    move |source| UnsafeDir::Inspect { path: path.to_path_buf(), source }
}

fn my_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() }
}

fn owned_by_us(meta: &std::fs::Metadata, path: &Path) -> Result<(), UnsafeDir> {
    let me = my_uid();
    if meta.uid() == 0 || meta.uid() == me {
        Ok(())
    } else {
        Err(UnsafeDir::Owner { path: path.to_path_buf(), owner: meta.uid(), me })
    }
}

/// Checks `dir` and every directory above it (and every link on the way) against the rule.
pub fn check_not_steerable(dir: &Path) -> Result<(), UnsafeDir> {
    let absolute = std::path::absolute(dir).map_err(inspect(dir))?;
    for link in absolute.ancestors() {
        let meta = std::fs::symlink_metadata(link).map_err(inspect(link))?;
        if meta.file_type().is_symlink() {
            owned_by_us(&meta, link)?;
        }
    }
    let real = std::fs::canonicalize(&absolute).map_err(inspect(&absolute))?;
    for path in real.ancestors() {
        let meta = std::fs::metadata(path).map_err(inspect(path))?;
        owned_by_us(&meta, path)?;
        let mode = meta.permissions().mode();
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            return Err(UnsafeDir::Writable { path: path.to_path_buf(), mode: mode & 0o7777 });
        }
    }
    Ok(())
}

/// A directory only its owner may enter, owned by us, below directories nobody else can steer.
pub fn check_private(dir: &Path) -> Result<(), UnsafeDir> {
    check_not_steerable(dir)?;
    let meta = std::fs::symlink_metadata(dir).map_err(inspect(dir))?;
    let mode = meta.permissions().mode() & 0o7777;
    if meta.uid() != my_uid() {
        return Err(UnsafeDir::Owner { path: dir.to_path_buf(), owner: meta.uid(), me: my_uid() });
    }
    if mode & 0o077 != 0 {
        return Err(UnsafeDir::NotPrivate { path: dir.to_path_buf(), mode });
    }
    Ok(())
}

/// A file sgpc wrote itself, to be trusted as input: a regular file (not a link), ours, that
/// nobody else may write.
pub fn is_own_file(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_file() && meta.uid() == my_uid() && meta.permissions().mode() & 0o022 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_world_writable_directory_is_refused_unless_sticky_and_tmp_is_fine() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("work");
        std::fs::create_dir(&dir).unwrap();
        check_not_steerable(&dir).unwrap();
        chmod(&dir, 0o777);
        assert!(matches!(check_not_steerable(&dir), Err(UnsafeDir::Writable { .. })));
        chmod(&dir, 0o1777);
        check_not_steerable(&dir).unwrap();
        // Below it, a private directory is only as safe as its parents.
        chmod(&dir, 0o777);
        let below = dir.join("state");
        std::fs::create_dir(&below).unwrap();
        chmod(&below, 0o700);
        assert!(matches!(check_private(&below), Err(UnsafeDir::Writable { .. })));
        chmod(&dir, 0o755);
        check_private(&below).unwrap();
        chmod(&below, 0o750);
        assert!(matches!(check_private(&below), Err(UnsafeDir::NotPrivate { .. })));
        check_not_steerable(Path::new("/tmp")).unwrap();
    }

    #[test]
    fn a_directory_or_link_owned_by_another_user_is_refused() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("theirs");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        assert!(matches!(check_not_steerable(&dir), Err(UnsafeDir::Owner { owner: 65534, .. })), "{:?}", check_not_steerable(&dir));
        let mine = top.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        let link = top.path().join("link");
        std::os::unix::fs::symlink(&mine, &link).unwrap();
        check_not_steerable(&link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        assert!(matches!(check_not_steerable(&link), Err(UnsafeDir::Owner { .. })));
    }
}
