//! The lifecycle on a Kubernetes cluster: `sgpc run --kube`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{run_lifecycle, SessionRun, StartError, Started};
use crate::driver::kube::{KubePlan, KubeRun};
use crate::image::{self, ImageRecord};
use crate::outcome::Event;
use crate::scenario::{CaseId, Catalogue};

/// What `sgpc run --kube` needs: where the cluster is (or the kind node image to create one
/// from), how long a Pod may take, and where its work directory goes.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    pub kubeconfig: Option<PathBuf>,
    /// Create a kind cluster (or reuse one) and load images into it.
    pub kind: Option<KindSetup>,
    pub timeout: Duration,
    pub work_root: PathBuf,
}

/// A kind cluster for the run: its node image, whether to reuse (and keep) it, and the images
/// to load, as the plan names them.
#[derive(Debug, Clone)]
pub struct KindSetup {
    pub node_image: String,
    pub reuse: bool,
    pub images: Vec<image::BuiltImage>,
}

/// The same lifecycle on a Kubernetes cluster: (create a kind cluster and load the images,)
/// create the run's namespace, run the cases as Pods, delete the namespace (and the cluster).
/// A failure or a signal while the cluster is created goes through the lifecycle like any other
/// set-up failure: the reports are written, every case is ERROR.
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
    let mut interrupted = std::pin::pin!(interrupted);
    let cluster = match &config.kind {
        None => None,
        Some(setup) => {
            let preparing = prepare_cluster(setup.clone(), work.path().to_path_buf());
            let mut preparing = std::pin::pin!(preparing);
            let prepared = tokio::select! {
                prepared = &mut preparing => prepared,
                why = &mut interrupted => {
                    // kind cannot be stopped half-way: let it finish, then delete what it made.
                    if let Ok(cluster) = preparing.await {
                        cluster.finish()?;
                    }
                    Err(anyhow::anyhow!("interrupted by {why} while the kind cluster was created"))
                }
            };
            match prepared {
                Ok(cluster) => Some(cluster),
                Err(error) => {
                    let failed = std::future::ready(Err::<KubeRun, _>(StartError { runtime: None, provisioned: None, error }));
                    return Ok(run_lifecycle(failed, started, catalogue, cases, jobs, std::future::pending(), on_event).await);
                }
            }
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

/// Writes the archives of the images the plan names and creates (or reuses) the kind cluster
/// with them loaded, off the async threads: kind blocks for minutes.
async fn prepare_cluster(setup: KindSetup, work: PathBuf) -> anyhow::Result<crate::provision::kind::Prepared> {
    let prepared = tokio::task::spawn_blocking(move || {
        let archives = image::write_built_archives(&setup.images, &work, crate::driver::kube::IMAGE_REPOSITORY)?;
        crate::provision::kind::prepare(&setup.node_image, setup.reuse, &archives, &work)
    });
    prepared.await.map_err(|e| anyhow::anyhow!("preparing the kind cluster panicked: {e}"))?
}

impl Started for KubeRun {
    fn images(&self) -> &BTreeMap<String, ImageRecord> {
        KubeRun::images(self)
    }

    async fn teardown(self) -> anyhow::Result<()> {
        Ok(self.finish().await?)
    }
}
