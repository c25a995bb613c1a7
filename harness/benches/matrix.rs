//! `make bench` (second part): the runtime matrix against each of its runtimes alone.
//!
//! Each runtime of `matrix.yaml` that this machine can run is run alone (set-up, catalogue,
//! teardown), then all of them together as `sgpc matrix` does. Printed: start-up time per
//! runtime (build, registry, runtime start, pulls), each single run's wall time, the matrix's
//! wall time and its ratio to the slowest single run (target: <= 1.5).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sgpc::matrix::{self, MatrixConfig};
use sgpc::run::SessionSettings;
use sgpc::scenario::Catalogue;

const JOBS: usize = 2;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let catalogue = Catalogue::load(&root.join("scenarios"), &root.join("images")).expect("catalogue");
    let entries = matrix::load(&root.join("matrix.yaml"), &catalogue).expect("matrix.yaml");
    let cases = catalogue.cases();
    let config = MatrixConfig { settings: SessionSettings::default(), cache: root.join(".cache"), jobs: JOBS };

    println!("{} cases, {JOBS} in flight per runtime", cases.len());
    println!("{:<24} {:>12} {:>12}", "runtime", "start-up ms", "alone ms");
    let mut runnable = Vec::new();
    let mut slowest = Duration::ZERO;
    for entry in &entries {
        let started = Instant::now();
        let report = matrix::run_matrix(std::slice::from_ref(entry), &catalogue, &cases, &config).await;
        let wall = started.elapsed();
        let column = &report.columns[0];
        if let Some(why) = &column.skipped {
            println!("{:<24} not run: {why}", entry.name);
            continue;
        }
        let startup = column.startup.map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0)).unwrap_or_else(|| "-".into());
        println!("{:<24} {startup:>12} {:>12.0}", entry.name, wall.as_secs_f64() * 1000.0);
        slowest = slowest.max(wall);
        runnable.push(entry.clone());
    }
    let started = Instant::now();
    let report = matrix::run_matrix(&runnable, &catalogue, &cases, &config).await;
    let wall = started.elapsed();
    assert!(report.columns.iter().all(|c| c.deviations.is_empty()), "the matrix shows its expected outcomes");
    println!();
    println!("matrix of {} runtimes: {:.0} ms; slowest alone: {:.0} ms", runnable.len(), wall.as_secs_f64() * 1000.0, slowest.as_secs_f64() * 1000.0);
    println!("matrix / slowest single run: {:.2}  (target <= 1.5)", wall.as_secs_f64() / slowest.as_secs_f64());
}
