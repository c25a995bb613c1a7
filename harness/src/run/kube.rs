//! The lifecycle on a Kubernetes cluster: `sgpc run --kube`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{run_lifecycle, Event, SessionRun, StartError, Started};
use crate::driver::kube::{KubePlan, KubeRun};
use crate::image::{self, ImageRecord, Payload};
use crate::scenario::{CaseId, Catalogue};

/// What `sgpc run --kube` needs: where the cluster is (or the kind node image to create one
/// from), how long a Pod may take, and the image payload.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    pub kubeconfig: Option<PathBuf>,
    /// Create a kind cluster from this node image, and whether to reuse (and keep) it.
    pub kind: Option<(String, bool)>,
    pub timeout: Duration,
    pub payload: Payload,
    pub work_root: PathBuf,
}

/// The same lifecycle on a Kubernetes cluster: (create a kind cluster and load the images,)
/// create the run's namespace, run the cases as Pods, delete the namespace (and the cluster).
pub async fn run_kube_session(
    config: &KubeConfig,
    plan: KubePlan,
    catalogue: &Catalogue,
    cases: &[CaseId],
    jobs: usize,
    interrupted: impl std::future::Future<Output = String>,
    on_event: impl FnMut(Event<'_>),
) -> anyhow::Result<SessionRun> {
    // The run's duration includes creating the cluster.
    let started = Instant::now();
    let work = tempfile::Builder::new().prefix("sgpc-kube-").tempdir_in(&config.work_root)?;
    let cluster = match &config.kind {
        None => None,
        Some((node_image, reuse)) => {
            let archives = image::write_archives(&catalogue.images, &config.payload, work.path(), crate::driver::kube::IMAGE_REPOSITORY)?;
            let archives: Vec<PathBuf> = archives.into_iter().map(|(_, path)| path).collect();
            Some(crate::provision::kind::prepare(node_image, *reuse, &archives, work.path())?)
        }
    };
    let (kubeconfig, endpoint) = match (&cluster, &config.kubeconfig) {
        (Some(c), _) => (Some(c.kubeconfig.clone()), format!("kind cluster {}", c.spec.name)),
        (None, Some(path)) => (Some(path.clone()), path.display().to_string()),
        (None, None) => (None, "default kubeconfig".to_string()),
    };
    let start = async {
        KubeRun::start(kubeconfig.as_deref(), endpoint, config.timeout, plan).await.map_err(|e| StartError { runtime: None, provisioned: None, error: anyhow::anyhow!(super::error_chain(&e)) })
    };
    let run = run_lifecycle(start, started, catalogue, cases, jobs, interrupted, on_event).await;
    if let Some(cluster) = cluster {
        cluster.finish()?;
    }
    Ok(run)
}

impl Started for KubeRun {
    fn images(&self) -> &BTreeMap<String, ImageRecord> {
        KubeRun::images(self)
    }

    async fn teardown(self) -> anyhow::Result<()> {
        Ok(self.finish().await?)
    }
}
