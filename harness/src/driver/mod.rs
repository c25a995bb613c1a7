//! Drivers: the ways sgpc drives a runtime: over the CRI, or through Kubernetes. (Named
//! `driver`, not `target`, so that tools skipping Cargo's `target/` do not skip it.)

pub mod cri;
pub mod kube;

use std::time::Duration;

/// How long each kind of step may take. Every RPC and wait in a target is bounded by one of these.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// One CRI call (except pulls), including `ExecSync`.
    pub rpc: Duration,
    /// One image pull.
    pub pull: Duration,
    /// Waiting for the first process to print its probe output.
    pub probe: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { rpc: Duration::from_secs(30), pull: Duration::from_secs(120), probe: Duration::from_secs(30) }
    }
}
