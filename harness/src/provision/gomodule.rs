//! Go programs built from the Go module proxy by module path and exact version, like a crate
//! from crates.io: kubelet and kube-apiserver (`k8s.io/kubernetes`), etcd, and containerd 2.x
//! with its runc shim (`github.com/containerd/containerd/v2`), runc, and CRI-O with its `pinns`
//! (`github.com/cri-o/cri-o`; `conmon` is Debian's).
//!
//! The binaries go into a cache outside the clone keyed by program and version
//! (`$SGPC_GO_CACHE`, else `~/.cache/sgpc/go/<program>/<version>/`), so a machine builds each
//! version once; Go's own module and build caches stay where `go env` puts them.
//!
//! `go install k8s.io/kubernetes/cmd/kubelet@vX` is refused: that go.mod replaces its staging
//! modules with `./staging/...`, which the module zip lacks (etcd's server module does the same
//! with `../api` and friends). So a wrapper module requires the program and points every such
//! local replacement at the published module of the same release (`k8s.io/api v0.37.2` for
//! kubernetes v1.37.2), copying the version's own `go` and `godebug` lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

/// A Go program sgpc knows how to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `k8s.io/kubernetes`: kubelet and kube-apiserver.
    Kubernetes,
    /// `go.etcd.io/etcd/server/v3`: etcd.
    Etcd,
    /// `github.com/containerd/containerd/v2`: containerd and `containerd-shim-runc-v2`.
    Containerd,
    /// `github.com/opencontainers/runc`: runc, with cgo (its `nsenter` is C) and seccomp.
    Runc,
    /// `github.com/cri-o/cri-o`: crio (cgo: seccomp, sqlite) and `pinns`, a C program in the
    /// module's `pinns/src`.
    Crio,
    /// `sigs.k8s.io/cri-tools`: `critest`, a Ginkgo test binary (`go test -c`, as its Makefile).
    Critest,
    /// `github.com/vmware-tanzu/sonobuoy`: the sonobuoy CLI, whose `sonobuoy results` reads an
    /// evidence bundle as it reads a sonobuoy results archive (tests/bundle.rs).
    Sonobuoy,
}

/// The etcd a live node runs: a v3.6 release, which kube-apiserver 1.34 to 1.37 support.
pub const ETCD_VERSION: &str = "v3.6.16";

/// The sonobuoy whose `sonobuoy results` tests/bundle.rs runs on a bundle (the Makefile's `SONOBUOY`).
pub const SONOBUOY_VERSION: &str = "v0.57.5";

impl Program {
    pub fn module(self) -> &'static str {
        match self {
            Program::Kubernetes => "k8s.io/kubernetes",
            Program::Etcd => "go.etcd.io/etcd/server/v3",
            Program::Containerd => "github.com/containerd/containerd/v2",
            Program::Runc => "github.com/opencontainers/runc",
            Program::Crio => "github.com/cri-o/cri-o",
            Program::Critest => "sigs.k8s.io/cri-tools",
            Program::Sonobuoy => "github.com/vmware-tanzu/sonobuoy",
        }
    }

    /// The binaries a build leaves in the cache.
    pub fn binaries(self) -> &'static [&'static str] {
        match self {
            Program::Kubernetes => &["kubelet", "kube-apiserver"],
            Program::Etcd => &["etcd"],
            Program::Containerd => crate::provision::containerd::BINARIES,
            Program::Runc => &["runc"],
            Program::Crio => &["crio", "pinns"],
            Program::Critest => &["critest"],
            Program::Sonobuoy => &["sonobuoy"],
        }
    }

    /// Package paths below the module, one per binary.
    fn packages(self) -> &'static [&'static str] {
        match self {
            Program::Kubernetes => &["cmd/kubelet", "cmd/kube-apiserver"],
            Program::Etcd | Program::Runc | Program::Sonobuoy => &[""],
            Program::Containerd => &["cmd/containerd", "cmd/containerd-shim-runc-v2"],
            Program::Crio => &["cmd/crio"],
            Program::Critest => &["cmd/critest"],
        }
    }

    fn cache_name(self) -> &'static str {
        match self {
            Program::Kubernetes => "kubernetes",
            Program::Etcd => "etcd",
            Program::Containerd => "containerd",
            Program::Runc => "runc",
            Program::Crio => "crio",
            Program::Critest => "critest",
            Program::Sonobuoy => "sonobuoy",
        }
    }

    /// The version the module's locally replaced parts are published at.
    fn published(self, version: &Version) -> String {
        match self {
            // k8s.io/api and the other staging modules: v0.37.2 for v1.37.2.
            Program::Kubernetes => format!("v0.{}.{}", version.minor, version.patch),
            Program::Etcd | Program::Containerd | Program::Runc | Program::Crio | Program::Critest | Program::Sonobuoy => version.to_string(),
        }
    }

    /// Build tags: containerd without the btrfs snapshotter, whose package needs cgo and the
    /// kernel's btrfs headers (containerd's own `BUILDTAGS=no_btrfs`).
    fn tags(self) -> &'static str {
        match self {
            Program::Containerd => "no_btrfs",
            // runc's Makefile default; needs libseccomp-dev.
            Program::Runc => "seccomp",
            // The tags CRI-O's Makefile gives a build with seccomp and sqlite but no gpgme and no
            // btrfs (`BUILDTAGS`); needs libseccomp-dev and libsqlite3-dev.
            Program::Crio => "containers_image_openpgp seccomp libsqlite3 exclude_graphdriver_btrfs",
            Program::Kubernetes | Program::Etcd | Program::Critest | Program::Sonobuoy => "",
        }
    }

    /// runc and CRI-O cannot be built without cgo; everything else is built static without it.
    fn cgo(self) -> &'static str {
        match self {
            Program::Runc | Program::Crio => "1",
            Program::Kubernetes | Program::Etcd | Program::Containerd | Program::Critest | Program::Sonobuoy => "0",
        }
    }

    fn ldflags(self, version: &Version) -> String {
        let mut flags = String::from("-s -w");
        if self == Program::Runc {
            // What `runc --version` reports (runc's Makefile sets the same, without the `v`).
            flags.push_str(&format!(" -X main.version={}.{}.{}", version.major, version.minor, version.patch));
        }
        if self == Program::Critest {
            // What `critest -version` reports (cri-tools' Makefile GO_LDFLAGS).
            flags.push_str(&format!(" -X sigs.k8s.io/cri-tools/pkg/version.Version={version}"));
        }
        if self == Program::Sonobuoy {
            // What `sonobuoy version` reports (its .goreleaser.yml).
            flags.push_str(&format!(" -X github.com/vmware-tanzu/sonobuoy/pkg/buildinfo.Version={version}"));
        }
        if self == Program::Containerd {
            // What `containerd --version` and CRI `Version` report.
            flags.push_str(&format!(" -X github.com/containerd/containerd/v2/version.Version={version}"));
        }
        if self == Program::Kubernetes {
            for package in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
                flags.push_str(&format!(" -X {package}.gitVersion={version} -X {package}.gitTreeState=clean -X {package}.gitMajor={} -X {package}.gitMinor={}", version.major, version.minor));
            }
        }
        flags
    }
}

/// An exact release version, `vMAJOR.MINOR.PATCH`: nothing else reaches a go.mod or a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl std::str::FromStr for Version {
    type Err = GoBuildError;

    fn from_str(text: &str) -> Result<Version, GoBuildError> {
        let bad = || GoBuildError::BadVersion(text.to_string());
        let numbers: Vec<u32> = text.strip_prefix('v').ok_or_else(bad)?.split('.').map(|n| if n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() && n.len() <= 6 { n.parse().map_err(|_| bad()) } else { Err(bad()) }).collect::<Result<_, _>>()?;
        match numbers[..] {
            [major, minor, patch] => Ok(Version { major, minor, patch }),
            _ => Err(bad()),
        }
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[derive(Debug, Error)]
pub enum GoBuildError {
    #[error("{0:?} is not an exact release version (vMAJOR.MINOR.PATCH, e.g. v1.37.2)")]
    BadVersion(String),
    #[error("building {module} {version} needs `{tool}`, and it could not be started")]
    NoTool {
        tool: &'static str,
        module: &'static str,
        version: Version,
        #[source]
        source: std::io::Error,
    },
    #[error("{module} {version} is not served by the Go module proxy:\n{tail}")]
    NotServed { module: &'static str, version: Version, tail: String },
    #[error("building {module} {version} failed at `{step}`; its last lines:\n{tail}")]
    Build { module: &'static str, version: Version, step: &'static str, tail: String },
    #[error("preparing the build of {module} {version} in {}", path.display())]
    Io {
        module: &'static str,
        version: Version,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where built binaries live: `$SGPC_GO_CACHE`, else `$XDG_CACHE_HOME/sgpc/go`, else
/// `~/.cache/sgpc/go`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("SGPC_GO_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache"));
    base.join("sgpc").join("go")
}

/// The directory a version's binaries are cached in.
pub fn cache_dir(program: Program, version: &Version) -> PathBuf {
    cache_root().join(program.cache_name()).join(version.to_string())
}

/// The cached binaries' directory, if every binary is there.
pub fn built(program: Program, version: &Version) -> Option<PathBuf> {
    let dir = cache_dir(program, version);
    program.binaries().iter().all(|b| dir.join(b).is_file()).then_some(dir)
}

/// The directory holding the program's binaries, building them first if the cache lacks them.
/// Progress goes to `progress`: a cold build of kubelet and kube-apiserver takes many minutes.
pub fn ensure(program: Program, version: &Version, progress: &mut dyn Write) -> Result<PathBuf, GoBuildError> {
    if let Some(dir) = built(program, version) {
        return Ok(dir);
    }
    let module = program.module();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        let version = version.clone();
        move |source| GoBuildError::Io { module, version, path, source }
    };
    let out = cache_dir(program, version);
    let parent = out.parent().unwrap_or(&out).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let work = tempfile::Builder::new().prefix(".build-").tempdir_in(&parent).map_err(io(&parent))?;
    let mut steps = Steps { program, version, log: work.path().join("build.log"), started: Instant::now(), progress };
    steps.say("reading its go.mod from the module proxy");
    let download = go(work.path()).args(["mod", "download", "-json", &format!("{module}@{version}")]).output().map_err(|source| GoBuildError::NoTool { tool: "go", module, version: version.clone(), source })?;
    let info: serde_json::Value = serde_json::from_slice(&download.stdout).unwrap_or_default();
    let gomod = match info.get("GoMod").and_then(|v| v.as_str()) {
        Some(path) if download.status.success() => PathBuf::from(path),
        _ => {
            let said = info.get("Error").and_then(|e| e.as_str()).map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(&download.stderr).into_owned());
            return Err(GoBuildError::NotServed { module, version: version.clone(), tail: tail(&said) });
        }
    };
    // Never a relative or empty path: it would name sgpc's working directory.
    let module_dir = match info.get("Dir").and_then(|v| v.as_str()).map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => return Err(GoBuildError::NotServed { module, version: version.clone(), tail: "`go mod download` named no module directory".into() }),
    };
    let upstream = std::fs::read_to_string(&gomod).map_err(io(&gomod))?;
    let wrapper = wrapper_go_mod(program, version, &upstream);
    std::fs::write(work.path().join("go.mod"), &wrapper).map_err(io(work.path()))?;
    // The release's own checksums: its dependencies are verified against them, and a
    // pseudo-version or release candidate the checksum database does not list still builds.
    let sums = module_dir.join("go.sum");
    if sums.is_file() {
        std::fs::copy(&sums, work.path().join("go.sum")).map_err(io(&sums))?;
    }
    steps.say(&format!("{} locally replaced modules pointed at their published versions", wrapper.matches("\nreplace ").count()));

    steps.run(go(work.path()).args(["get", &format!("{module}@{version}")]), "go", "go get")?;
    let staging = work.path().join("bin");
    let packages: Vec<String> = program.packages().iter().map(|p| if p.is_empty() { module.to_string() } else { format!("{module}/{p}") }).collect();
    let mut build = go(work.path());
    // critest is the test binary of its package, as cri-tools' Makefile builds it.
    let verb = if program == Program::Critest { ["test", "-c"].as_slice() } else { ["build"].as_slice() };
    build.env("CGO_ENABLED", program.cgo()).args(verb).args(["-trimpath", "-tags", program.tags(), "-ldflags", &program.ldflags(version), "-o"]);
    if let [single] = program.binaries() {
        build.arg(staging.join(single));
    } else {
        build.arg(format!("{}/", staging.display()));
    }
    let step = if program == Program::Critest { "go test -c" } else { "go build" };
    steps.say(&format!("{step} {} (CGO_ENABLED={}; a cold build takes minutes, kubernetes tens of them on two cores)", packages.join(" "), program.cgo()));
    steps.run(build.args(&packages), "go", step)?;
    if program == Program::Crio {
        steps.say("cc pinns (CRI-O's namespace pinner, C)");
        let pinns = module_dir.join("pinns").join("src");
        let sources = c_sources(&pinns).map_err(io(&pinns))?;
        let mut cc = Command::new("cc");
        // pinns/Makefile's CFLAGS without -Werror: a newer compiler's new warning is no failure.
        cc.current_dir(work.path()).stdin(Stdio::null()).args(["-std=c99", "-Os", "-Wall", "-Wextra", "-static", "-o"]).arg(staging.join("pinns")).args(sources);
        steps.run(&mut cc, "cc", "cc pinns")?;
    }
    // Another build of the same version may have finished meanwhile: either copy is whole.
    if built(program, version).is_none() {
        let _ = std::fs::remove_dir_all(&out);
        std::fs::rename(&staging, &out).map_err(io(&out))?;
    }
    let took = steps.started.elapsed().as_secs_f64();
    steps.say(&format!("built {} in {took:.0}s", program.binaries().join(" and ")));
    Ok(out)
}

/// The `.c` files of a directory, sorted.
fn c_sources(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "c") {
            sources.push(path);
        }
    }
    sources.sort();
    Ok(sources)
}

/// The wrapper module's go.mod: the version's own `go`/`godebug` lines, a requirement on the
/// module, and every `=> ./local` or `=> ../local` replacement pointed at the published module.
pub fn wrapper_go_mod(program: Program, version: &Version, upstream: &str) -> String {
    let published = program.published(version);
    let mut text = format!("module sgpc.invalid/build/{}\n\n", program.cache_name());
    for line in upstream.lines().filter(|l| l.starts_with("go ") || l.starts_with("godebug ")) {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!("\nrequire {} {version}\n", program.module()));
    for line in upstream.lines() {
        let Some((left, right)) = line.split_once("=>") else { continue };
        let (path, target) = (left.trim().trim_start_matches("replace").trim(), right.trim());
        let local = target.starts_with("./") || target.starts_with("../");
        if local && !path.contains(' ') && !target.contains("FORBIDDEN") && !path.is_empty() {
            text.push_str(&format!("replace {path} => {path} {published}\n"));
        }
    }
    text
}

fn go(dir: &Path) -> Command {
    let mut command = Command::new("go");
    command.current_dir(dir).env("GOFLAGS", "-mod=mod").env("GOWORK", "off").stdin(Stdio::null());
    command
}

/// The steps of one build: they share its log and report progress.
struct Steps<'a> {
    program: Program,
    version: &'a Version,
    log: PathBuf,
    started: Instant,
    progress: &'a mut dyn Write,
}

impl Steps<'_> {
    fn say(&mut self, text: &str) {
        let _ = writeln!(self.progress, "go build: {} {}: {text}", self.program.module(), self.version);
    }

    /// Runs one step with `tool`, printing a line a minute while it works.
    fn run(&mut self, command: &mut Command, tool: &'static str, step: &'static str) -> Result<(), GoBuildError> {
        let (module, version) = (self.program.module(), self.version);
        let output = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).and_then(|file| Ok((file.try_clone()?, file)));
        let (stdout, stderr) = output.map_err(|source| GoBuildError::Io { module, version: version.clone(), path: self.log.clone(), source })?;
        let mut child = command.stdout(stdout).stderr(stderr).spawn().map_err(|source| GoBuildError::NoTool { tool, module, version: version.clone(), source })?;
        let mut next_tick = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(_)) | Err(_) => return Err(GoBuildError::Build { module, version: version.clone(), step, tail: tail(&std::fs::read_to_string(&self.log).unwrap_or_default()) }),
                Ok(None) => {}
            }
            if Instant::now() >= next_tick {
                let elapsed = self.started.elapsed().as_secs_f64();
                self.say(&format!("{step} still running ({elapsed:.0}s)"));
                next_tick += Duration::from_secs(60);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The last lines of a log, for an error message.
fn tail(text: &str) -> String {
    crate::input::escape_unprintable(&crate::input::last_lines(text, 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_exact_releases_only() {
        assert_eq!("v1.37.2".parse::<Version>().unwrap(), Version { major: 1, minor: 37, patch: 2 });
        for bad in ["1.37.2", "v1.37", "v1.37.2-rc.0", "v1.37.2\nreplace x => ./y", "v1..2", "v1.37.2 ", "latest"] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_wrapper_points_each_local_replacement_at_its_published_module() {
        let upstream = "module k8s.io/kubernetes\n\ngo 1.26.0\n\ngodebug default=go1.26\n\nrequire (\n\tk8s.io/api v0.0.0\n)\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/kubelet => ./staging/src/k8s.io/kubelet\n)\nreplace example.org/x => example.org/y v1.0.0\n";
        let version = "v1.37.2".parse().unwrap();
        let text = wrapper_go_mod(Program::Kubernetes, &version, upstream);
        assert_eq!(
            text,
            "module sgpc.invalid/build/kubernetes\n\ngo 1.26.0\ngodebug default=go1.26\n\nrequire k8s.io/kubernetes v1.37.2\nreplace k8s.io/api => k8s.io/api v0.37.2\nreplace k8s.io/kubelet => k8s.io/kubelet v0.37.2\n"
        );
        let etcd = wrapper_go_mod(Program::Etcd, &"v3.6.16".parse().unwrap(), "go 1.25\nreplace (\n\tgo.etcd.io/etcd/api/v3 => ../api\n)\nreplace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY\n");
        assert!(etcd.contains("replace go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 v3.6.16\n"), "{etcd}");
        assert!(!etcd.contains("FORBIDDEN"), "{etcd}");
    }
}
