//! `make bench` (fourth part): the Kubernetes level through a live kubelet against the CRI level,
//! on the same containerd, in one run.
//!
//! The catalogue runs once over the CRI (sgpc's own client) and once as Pods through etcd,
//! kube-apiserver and kubelet (`SGPC_KUBERNETES_VERSION`, else v1.37.2) over a containerd of the
//! same binaries. Printed: each level's set-up time (for the node: runtime, registry, pulls and
//! the node until Ready with its features), the mean and median time per case, and the ratio
//! kube / CRI per case.

use std::path::PathBuf;
use std::time::Duration;

use sgpc::provision::gomodule::ETCD_VERSION;
use sgpc::run::{run_session, Level, NodeChoice, SessionConfig, SessionRun, TargetChoice};
use sgpc::scenario::Catalogue;

const JOBS: usize = 2;

fn per_case(run: &SessionRun) -> (f64, f64) {
    let mut millis: Vec<f64> = run.report.cases.iter().map(|c| c.duration.as_secs_f64() * 1000.0).collect();
    millis.sort_by(f64::total_cmp);
    let mean = millis.iter().sum::<f64>() / millis.len().max(1) as f64;
    (mean, millis.get(millis.len() / 2).copied().unwrap_or_default())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let catalogue = Catalogue::load(&root.join("scenarios"), &root.join("images")).expect("catalogue");
    let cases = catalogue.cases();
    let dir = std::env::var_os("SGPC_CONTAINERD_DIR").map_or_else(|| root.join(".cache/debs/sid/containerd/usr/bin"), PathBuf::from);
    let config = SessionConfig::new(TargetChoice::Containerd { bin_dir: dir });
    let kubernetes = std::env::var("SGPC_KUBERNETES_VERSION").unwrap_or_else(|_| "v1.37.2".into());
    let node = NodeChoice { kubernetes: kubernetes.parse().expect("a release"), etcd: ETCD_VERSION.parse().expect("a release"), timeout: Duration::from_secs(180) };

    let cri = run_session(&config, Level::Cri, &catalogue, &cases, JOBS, std::future::pending(), |_| {}).await;
    let kube = run_session(&config, Level::LiveNode(&node), &catalogue, &cases, JOBS, std::future::pending(), |_| {}).await;
    for (level, run) in [("CRI", &cri), ("kube", &kube)] {
        assert!(run.report.setup_error.is_none(), "{level}: {:?}", run.report.setup_error);
    }
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    println!("{} cases on {}, {JOBS} in flight", cases.len(), kube.report.runtime.as_ref().map_or("?".into(), |r| format!("{} {}", r.runtime_name, r.runtime_version)));
    println!("{:<6} {:>12} {:>14} {:>16}", "level", "set-up ms", "mean/case ms", "median/case ms");
    let (cri_mean, cri_median) = per_case(&cri);
    let (kube_mean, kube_median) = per_case(&kube);
    println!("{:<6} {:>12.0} {:>14.1} {:>16.1}", "CRI", ms(cri.startup), cri_mean, cri_median);
    println!("{:<6} {:>12.0} {:>14.1} {:>16.1}", "kube", ms(kube.startup), kube_mean, kube_median);
    println!("node start-up (kube set-up - CRI set-up): {:.0} ms", ms(kube.startup) - ms(cri.startup));
    println!("kube / CRI per case: {:.2} (mean), {:.2} (median)", kube_mean / cri_mean, kube_median / cri_median);
}
