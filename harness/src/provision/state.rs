//! Run records: every run writes down what it starts and creates, so that what a run killed
//! with SIGKILL left behind can be found and removed by a later `sgpc run` or by `sgpc clean`.
//!
//! A record is one JSON file per run in the state directory (`SGPC_STATE_DIR`, else
//! `/run/sgpc` for root, which a reboot empties along with the processes it names). A run whose
//! owner process is gone (its pid is free, or now names a process started at another time) is
//! stale: cleaning it kills the daemons it recorded, removes its sandboxes and images from a
//! `--cri` runtime, then kills every process under its run directory, unmounts what is mounted
//! there and removes the directory.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::provision::node::{Sysctl, KUBELET};

/// Where run records live unless `SGPC_STATE_DIR` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/run/sgpc";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot use the state directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state directory {} cannot be trusted", path.display())]
    Unsafe {
        path: PathBuf,
        #[source]
        source: crate::provision::dirs::UnsafeDir,
    },
    #[error("cannot write the run record {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A process sgpc started, named by pid and start time so that a reused pid is never killed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub name: String,
    pub pid: u32,
    pub start_time: u64,
}

impl ProcessRecord {
    /// The process `pid` as it is now; `None` if it is gone.
    pub fn of(name: &str, pid: u32) -> Option<ProcessRecord> {
        Some(ProcessRecord { name: name.to_string(), pid, start_time: start_time(pid)? })
    }

    /// Whether this very process (same pid, same start) still runs.
    pub fn is_alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }
}

/// What a run left in a runtime it did not start (`--cri`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriRecord {
    pub endpoint: String,
    /// The value of the run label on its sandboxes and containers.
    pub run_label: String,
    /// Images the run pulled that the runtime did not have before.
    pub pulled_images: Vec<String>,
}

/// Everything one run must remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub owner: ProcessRecord,
    pub dir: PathBuf,
    pub daemons: Vec<ProcessRecord>,
    pub cri: Option<CriRecord>,
}

impl RunRecord {
    /// A record for a run of this process, in `dir`.
    pub fn new(run_id: &str, dir: &Path) -> RunRecord {
        let me = std::process::id();
        let owner = ProcessRecord::of("sgpc", me).unwrap_or(ProcessRecord { name: "sgpc".into(), pid: me, start_time: 0 });
        RunRecord { run_id: run_id.to_string(), owner, dir: dir.to_path_buf(), daemons: Vec::new(), cri: None }
    }

    /// The owner is gone: nobody will clean this run but a later one.
    pub fn is_stale(&self) -> bool {
        !self.owner.is_alive()
    }
}

/// The directory of run records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    pub path: PathBuf,
}

impl StateDir {
    /// `SGPC_STATE_DIR`, else [`DEFAULT_STATE_DIR`].
    pub fn from_env() -> StateDir {
        StateDir { path: std::env::var_os("SGPC_STATE_DIR").map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from) }
    }

    fn record_path(&self, run_id: &str) -> PathBuf {
        self.path.join(format!("{run_id}.json"))
    }

    /// Writes (or rewrites) a record, atomically, readable by root only.
    pub fn save(&self, record: &RunRecord) -> Result<(), StateError> {
        self.create()?;
        let path = self.record_path(&record.run_id);
        let temporary = self.path.join(format!(".{}.json.tmp", record.run_id));
        let write = || -> std::io::Result<()> {
            let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
            serde_json::to_writer_pretty(&file, record)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        };
        write().map_err(|source| StateError::Write { path, source })
    }

    /// Creates the directory (0700) if needed and checks that nobody else can steer it: a
    /// record tells `sgpc clean` what to kill and delete.
    fn create(&self) -> Result<(), StateError> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.path).map_err(|source| StateError::Dir { path: self.path.clone(), source })?;
        self.secure()
    }

    /// Makes an existing directory that is ours, and that nobody else can write, private
    /// (0700: a temporary directory comes 0755), then checks it ([`StateDir::check`]). A
    /// directory someone else owns or can write is refused, never changed.
    pub fn secure(&self) -> Result<(), StateError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let unsafe_dir = |source| StateError::Unsafe { path: self.path.clone(), source };
        crate::provision::dirs::check_not_steerable(&self.path).map_err(unsafe_dir)?;
        let meta = std::fs::symlink_metadata(&self.path).map_err(|source| StateError::Dir { path: self.path.clone(), source })?;
        // SAFETY: geteuid(2) cannot fail.
        if meta.is_dir() && meta.uid() == unsafe { libc::geteuid() } && meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o700)).map_err(|source| StateError::Dir { path: self.path.clone(), source })?;
        }
        self.check()
    }

    /// Whether the directory is ours alone, below directories nobody else can steer.
    pub fn check(&self) -> Result<(), StateError> {
        crate::provision::dirs::check_private(&self.path).map_err(|source| StateError::Unsafe { path: self.path.clone(), source })
    }

    /// A file of the directory, if the directory and the file are ours alone.
    fn read_own(&self, path: &Path) -> Option<Vec<u8>> {
        self.check().ok()?;
        let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).ok()?;
        let meta = file.metadata().ok()?;
        if !crate::provision::dirs::is_own_file(&meta) || meta.len() > MAX_RECORD_BYTES {
            tracing::warn!("ignoring {}: not a regular file of sgpc's own, or too large", path.display());
            return None;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_RECORD_BYTES), &mut bytes).ok()?;
        Some(bytes)
    }

    /// Forgets a run that was cleaned up.
    pub fn forget(&self, run_id: &str) {
        let _ = std::fs::remove_file(self.record_path(run_id));
    }

    /// Every record, stale or not: only from a directory that is ours alone, and only files
    /// of our own; anything else is skipped with a warning.
    pub fn records(&self) -> Vec<RunRecord> {
        if let Err(e) = self.check() {
            if self.path.exists() {
                tracing::warn!("ignoring every run record: {}", crate::chain::error_chain(&e));
            }
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(&self.path) else { return Vec::new() };
        let mut records: Vec<RunRecord> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json") && p.file_name() != Some(SYSCTLS_FILE.as_ref()))
            .filter_map(|p| match self.read_own(&p).ok_or_else(|| "not sgpc's own".to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())) {
                Ok(record) => Some(record),
                Err(e) => {
                    tracing::warn!("skipping the run record {}: {e}", p.display());
                    None
                }
            })
            .collect();
        records.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        records
    }

    /// Runs whose owner is gone.
    pub fn stale(&self) -> Vec<RunRecord> {
        self.records().into_iter().filter(RunRecord::is_stale).collect()
    }

    fn sysctls_path(&self) -> PathBuf {
        self.path.join(SYSCTLS_FILE)
    }

    /// The kernel tunables as they were before any live node's kubelet changed them: those
    /// written down by a node that came first (of this run or another, killed or alive), else
    /// `current`, now written down. Nodes overlap (matrix columns, concurrent runs); only the
    /// last one to stop writes them back ([`StateDir::release_sysctls`]).
    pub fn sysctls_before_kubelet(&self, current: Vec<Sysctl>) -> Result<Vec<Sysctl>, StateError> {
        let path = self.sysctls_path();
        self.create()?;
        if let Some(before) = self.read_own(&path).and_then(|text| serde_json::from_slice(&text).ok()) {
            return Ok(before);
        }
        let write = || -> std::io::Result<()> {
            let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
            serde_json::to_writer(&file, &current)?;
            file.sync_all()
        };
        match write() {
            Ok(()) => Ok(current),
            // Another node wrote it first: its values are the ones from before.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.read_own(&path).and_then(|t| serde_json::from_slice(&t).ok()).ok_or(StateError::Write { path, source: e }),
            Err(source) => Err(StateError::Write { path, source }),
        }
    }

    /// Writes the tunables back once no other run's kubelet runs; returns what failed.
    pub fn release_sysctls(&self, run_id: &str) -> Vec<String> {
        let path = self.sysctls_path();
        let Some(before) = self.read_own(&path).and_then(|t| serde_json::from_slice::<Vec<Sysctl>>(&t).ok()) else { return Vec::new() };
        let others = self.records().into_iter().any(|r| r.run_id != run_id && r.daemons.iter().any(|d| d.name == KUBELET && d.is_alive()));
        if others {
            return Vec::new();
        }
        let failed = crate::provision::node::restore_sysctls(&before);
        if failed.is_empty() {
            let _ = std::fs::remove_file(&path);
            Vec::new()
        } else {
            vec![format!("writing back the kernel tunables {failed:?} a live node's kubelet changed")]
        }
    }
}

/// A run record is small; a larger file is no record of sgpc's.
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// The file in the state directory that keeps kernel tunables from before kubelet.
const SYSCTLS_FILE: &str = "kubelet-sysctls.json";


/// The start time of a process in clock ticks after boot (`/proc/<pid>/stat`, field 22).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessRecord::of("me", std::process::id()).unwrap();
        assert!(me.is_alive());
        assert!(!ProcessRecord { start_time: me.start_time + 1, ..me.clone() }.is_alive());
    }

    #[test]
    fn records_round_trip_and_only_dead_owners_are_stale() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir { path: dir.path().join("state") };
        let mine = RunRecord::new("sgpc-mine", Path::new("/nonexistent/sgpc-mine"));
        let mut gone = RunRecord::new("sgpc-gone", Path::new("/nonexistent/sgpc-gone"));
        gone.owner.start_time += 1;
        gone.cri = Some(CriRecord { endpoint: "unix:///x.sock".into(), run_label: "sgpc-gone".into(), pulled_images: vec!["a@sha256:1".into()] });
        state.save(&mine).unwrap();
        state.save(&gone).unwrap();
        assert_eq!(state.records(), vec![gone.clone(), mine]);
        assert_eq!(state.stale(), vec![gone]);
        let mode = std::fs::metadata(state.record_path("sgpc-gone")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        state.forget("sgpc-gone");
        assert_eq!(state.stale(), vec![]);
    }

    #[test]
    fn the_first_nodes_tunables_are_kept_and_only_the_last_node_writes_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir { path: dir.path().join("state") };
        // The values now, so that writing them back changes nothing on the machine.
        let before = crate::provision::node::read_sysctls();
        assert_eq!(state.sysctls_before_kubelet(before.clone()).unwrap(), before);
        let changed: Vec<Sysctl> = before.iter().map(|s| Sysctl { value: "7".into(), ..s.clone() }).collect();
        assert_eq!(state.sysctls_before_kubelet(changed).unwrap(), before, "a second node sees kubelet's values, not the machine's");
        // Another run's kubelet still runs (this test process stands in for it).
        let mut other = RunRecord::new("sgpc-other", Path::new("/nonexistent/sgpc-other"));
        other.daemons.push(ProcessRecord::of(KUBELET, std::process::id()).unwrap());
        state.save(&other).unwrap();
        assert!(state.release_sysctls("sgpc-mine").is_empty());
        assert!(state.sysctls_path().exists(), "kept while another kubelet runs");
        state.forget("sgpc-other");
        assert!(state.release_sysctls("sgpc-mine").is_empty());
        assert!(!state.sysctls_path().exists(), "written back and forgotten by the last node");
        assert_eq!(crate::provision::node::read_sysctls(), before);
    }
}
