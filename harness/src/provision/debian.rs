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

    let root = cache_path(cache, suite, package);
    let partial = root.with_extension("partial");
    let _ = fs_err::remove_dir_all(&partial);
    fs_err::create_dir_all(&partial)?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial), "dpkg-deb -x")?;
    fs_err::write(partial.join(".version"), format!("{version}\n"))?;
    let _ = fs_err::remove_dir_all(&root);
    fs_err::rename(&partial, &root).with_context(|| format!("moving the package into {}", root.display()))?;
    Ok(Unpacked { root, version })
}
