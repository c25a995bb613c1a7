//! Runtime binaries from Debian suites: `apt-get download` with a temporary sources list built
//! from the mirror already configured on this machine (read at run time, never written down),
//! unpacked with `dpkg-deb -x` into a cache directory, not installed — packages from newer
//! suites may want a newer glibc, and the binaries sgpc needs are static Go programs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// A package unpacked into the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// `<cache>/debs/<suite>/<package>`: the package's file tree.
    pub root: PathBuf,
    /// The version the suite served (suites move; it is recorded, never pinned).
    pub version: String,
}

impl Unpacked {
    pub fn bin_dir(&self) -> PathBuf {
        self.root.join("usr/bin")
    }
}

/// The Debian mirror this machine's apt uses (deb822 `URIs:` or a one-line `deb` entry).
pub fn configured_mirror() -> anyhow::Result<String> {
    let mut files: Vec<PathBuf> = fs_err::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "sources")).collect())
        .unwrap_or_default();
    files.sort();
    for file in &files {
        let text = fs_err::read_to_string(file).unwrap_or_default();
        if let Some(uri) = text.lines().filter_map(|l| l.strip_prefix("URIs:")).flat_map(str::split_whitespace).find(|u| !u.contains("security")) {
            return Ok(uri.to_string());
        }
    }
    let list = fs_err::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    list.lines()
        .filter_map(|l| l.strip_prefix("deb "))
        .filter_map(|l| l.split_whitespace().find(|w| w.contains("://")))
        .find(|u| !u.contains("security"))
        .map(str::to_string)
        .context("no Debian mirror is configured in /etc/apt (sources.list or sources.list.d/*.sources)")
}

/// The cache location of a package from a suite.
pub fn cache_path(cache: &Path, suite: &str, package: &str) -> PathBuf {
    cache.join("debs").join(suite).join(package)
}

/// Reads a cached package without fetching.
pub fn cached(cache: &Path, suite: &str, package: &str) -> Option<Unpacked> {
    let root = cache_path(cache, suite, package);
    let version = fs_err::read_to_string(root.join(".version")).ok()?;
    Some(Unpacked { root, version: version.trim().to_string() })
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<std::process::Output> {
    let output = command.output().with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(output)
}

/// Fetches `package` from `suite` into the cache, unless it is cached already.
pub fn fetch(cache: &Path, suite: &str, package: &str) -> anyhow::Result<Unpacked> {
    if let Some(found) = cached(cache, suite, package) {
        return Ok(found);
    }
    let mirror = configured_mirror()?;
    let work = tempfile::tempdir().context("creating a temporary apt directory")?;
    let w = work.path();
    for dir in ["parts", "lists/partial", "cache/archives/partial"] {
        fs_err::create_dir_all(w.join(dir))?;
    }
    fs_err::write(
        w.join("parts").join(format!("{suite}.sources")),
        format!("Types: deb\nURIs: {mirror}\nSuites: {suite}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"),
    )?;
    let options = [
        "Dir::Etc::SourceList=/dev/null".to_string(),
        format!("Dir::Etc::SourceParts={}", w.join("parts").display()),
        format!("Dir::State::Lists={}", w.join("lists").display()),
        format!("Dir::Cache={}", w.join("cache").display()),
        "Dir::State::status=/dev/null".into(),
        "Debug::NoLocking=1".into(),
        "APT::Sandbox::User=root".into(),
    ];
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.current_dir(w).arg("-qq");
        for o in &options {
            c.arg("-o").arg(o);
        }
        c.args(args);
        c
    };
    run(&mut apt(&["update"]), &format!("apt-get update for suite {suite}"))?;
    run(&mut apt(&["download", package]), &format!("apt-get download {package} from {suite}"))?;
    let deb = fs_err::read_dir(w)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    let version = run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version"), "dpkg-deb -f")?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();

    install(&cache_path(cache, suite, package), &deb, &version)
}

/// Unpacks `deb` into `root` as one rename, under a lock beside it, so that runs fetching the
/// same package at once (the matrix's columns) never see, or remove, a half-unpacked tree: the
/// first unpacks, the others find its tree complete. Under the lock, what a killed run left
/// (a tree without `.version`, an unpacking directory) is removed.
fn install(root: &Path, deb: &Path, version: &str) -> anyhow::Result<Unpacked> {
    let parent = root.parent().context("the cache path has no parent")?;
    fs_err::create_dir_all(parent)?;
    let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let lock = fs_err::File::create(parent.join(format!(".{name}.lock")))?;
    lock.file().lock().with_context(|| format!("locking {}", lock.path().display()))?;
    let complete = |root: &Path| root.join(".version").is_file();
    if !complete(root) {
        for leftover in fs_err::read_dir(parent)?.filter_map(Result::ok).map(|e| e.path()) {
            let file_name = leftover.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if leftover == root || (file_name.starts_with(&format!(".{name}-")) && leftover.is_dir()) {
                fs_err::remove_dir_all(&leftover)?;
            }
        }
        let partial = tempfile::Builder::new().prefix(&format!(".{name}-")).tempdir_in(parent).with_context(|| format!("creating a directory in {}", parent.display()))?;
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(partial.path()), "dpkg-deb -x")?;
        fs_err::write(partial.path().join(".version"), format!("{version}\n"))?;
        fs_err::rename(partial.keep(), root).with_context(|| format!("moving the package into {}", root.display()))?;
    }
    let version = fs_err::read_to_string(root.join(".version"))?.trim().to_string();
    Ok(Unpacked { root: root.to_path_buf(), version })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A package of one file, built with `dpkg-deb -b`.
    fn tiny_deb(dir: &Path) -> PathBuf {
        let tree = dir.join("tree");
        fs_err::create_dir_all(tree.join("DEBIAN")).unwrap();
        fs_err::create_dir_all(tree.join("usr/bin")).unwrap();
        fs_err::write(tree.join("DEBIAN/control"), "Package: tiny\nVersion: 1.0\nArchitecture: all\nMaintainer: sgpc <sgpc@localhost>\nDescription: a test package\n").unwrap();
        fs_err::write(tree.join("usr/bin/tiny"), "#!/bin/sh\n").unwrap();
        let deb = dir.join("tiny.deb");
        run(Command::new("dpkg-deb").arg("-b").arg(&tree).arg(&deb), "dpkg-deb -b").unwrap();
        deb
    }

    /// Several runs unpacking the same package at once all get the complete tree (the
    /// matrix's columns on one suite did not: one removed the other's half-unpacked tree).
    #[test]
    fn installs_at_once_all_get_the_complete_tree() {
        let dir = tempfile::tempdir().unwrap();
        let deb = tiny_deb(dir.path());
        let root = dir.path().join("debs/sid/tiny");
        // What a run killed half-way left: a tree without `.version`, an unpacking directory.
        fs_err::create_dir_all(root.join("usr")).unwrap();
        fs_err::create_dir_all(dir.path().join("debs/sid/.tiny-killed/usr")).unwrap();
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6).map(|_| scope.spawn(|| install(&root, &deb, "1.0"))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for result in results {
            let unpacked = result.unwrap();
            assert!(unpacked.root.join("usr/bin/tiny").is_file() && unpacked.version == "1.0");
        }
        let mut left: Vec<_> = fs_err::read_dir(root.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, vec![std::ffi::OsString::from(".tiny.lock"), std::ffi::OsString::from("tiny")], "no half-unpacked directory is left");
    }
}
