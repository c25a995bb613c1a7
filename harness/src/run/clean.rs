//! `sgpc clean` (and the start of every run): removing what runs killed with SIGKILL left.

use crate::driver::cri::CriDriver;
use crate::driver::Timeouts;
use crate::provision::state::{RunRecord, StateDir};

/// What cleaning after one stale run did (or, dry, would do).
#[derive(Debug, Clone)]
pub struct Cleaned {
    pub record: RunRecord,
    pub actions: Vec<String>,
    /// What could not be removed; the record is kept so that a later clean tries again.
    pub problems: Vec<String>,
}

/// Finds the runs whose owner is gone (killed with SIGKILL, crashed) and removes all they left:
/// their sandboxes and images in a `--cri` runtime, the daemons they started, every process
/// and mount under their run directory, the directory. With `dry_run`, only says so.
pub async fn clean_stale(state: &StateDir, dry_run: bool, timeouts: Timeouts) -> Vec<Cleaned> {
    let mut cleaned = Vec::new();
    for record in state.stale() {
        cleaned.push(clean_run(state, record, dry_run, timeouts).await);
    }
    cleaned
}

async fn clean_run(state: &StateDir, record: RunRecord, dry_run: bool, timeouts: Timeouts) -> Cleaned {
    let mut actions = Vec::new();
    let mut problems = Vec::new();
    // The record names a directory to delete: only ever a run directory of its own name.
    let own_dir = record.run_id.starts_with("sgpc-") && record.dir.is_absolute() && record.dir.file_name().is_some_and(|n| *n == *record.run_id);
    if !own_dir {
        problems.push(format!("the record names {} for run {:?}; refusing to touch it", record.dir.display(), record.run_id));
        return Cleaned { record, actions, problems };
    }
    if let Some(cri) = &record.cri {
        match CriDriver::connect(&cri.endpoint, timeouts).await {
            Err(e) => problems.push(format!("{e}")),
            Ok(target) => {
                for sandbox in target.sandboxes_of_run(&cri.run_label).await.unwrap_or_else(|e| {
                    problems.push(format!("listing sandboxes: {e}"));
                    Vec::new()
                }) {
                    actions.push(format!("remove sandbox {sandbox} from {}", cri.endpoint));
                    if !dry_run {
                        if let Err(e) = target.remove_sandbox(&sandbox).await {
                            problems.push(e.to_string());
                        }
                    }
                }
                for image in &cri.pulled_images {
                    if target.has_image(image).await.unwrap_or(true) {
                        actions.push(format!("remove image {image} from {}", cri.endpoint));
                        if !dry_run {
                            if let Err(e) = target.remove_image(image).await {
                                problems.push(e.to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    for daemon in record.daemons.iter().filter(|d| d.is_alive()) {
        actions.push(format!("kill {} (pid {})", daemon.name, daemon.pid));
        if !dry_run {
            // SAFETY: kill(2) on a pid whose start time was just checked against the record.
            unsafe { libc::kill(daemon.pid as i32, libc::SIGKILL) };
        }
    }
    if !dry_run {
        problems.extend(state.release_sysctls(&record.run_id));
    }
    let processes = crate::provision::processes_under(&record.dir);
    let mounts = crate::provision::mounts_under(&record.dir);
    // The run's cgroups are named after it, so they are found even when its directory is gone.
    let host_leftovers = crate::provision::host_paths::leftovers(&record.dir);
    if record.dir.exists() || !processes.is_empty() || !mounts.is_empty() || !host_leftovers.is_empty() {
        let dir = if record.dir.exists() { format!("remove {}", record.dir.display()) } else { format!("{} is gone already", record.dir.display()) };
        actions.push(format!("kill {} processes, unmount {} mounts, remove {} host paths (cgroups, shim sockets); {dir}", processes.len(), mounts.len(), host_leftovers.len()));
        if !dry_run {
            if let Err(e) = crate::provision::remove_tree_async(record.dir.clone()).await {
                problems.push(format!("{e:#}"));
            }
        }
    }
    if !dry_run && problems.is_empty() {
        state.forget(&record.run_id);
    }
    Cleaned { record, actions, problems }
}
