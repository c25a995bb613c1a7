//! `make bench` (third part): `sgpc discover` on the runtimes of `matrix.yaml` this machine runs.
//!
//! Discoveries with the same seed: 100 cases with shrinking as before 2026-12-03 (one sandbox
//! per case, every round's candidates on every class's representatives) and as today (shared
//! sandboxes, each candidate on its own class's representatives), then 300 cases without. Printed:
//! cases per minute, where the time went (image builds, pushes and pulls, running cases), the
//! 300/100 ratio of the generation time (linear growth is 3.0), and shrinking time per class.
//! Targets: 300 cases on four runtimes in under 10 minutes; with shrinking, at least 2x the
//! cases per minute of before.

use std::path::PathBuf;

use sgpc::discover::{self, DiscoverConfig, DiscoveryReport};
use sgpc::matrix;
use sgpc::run::SessionSettings;
use sgpc::scenario::Catalogue;

const SEED: u64 = 7;

fn generation_seconds(report: &DiscoveryReport) -> f64 {
    let t = &report.timings;
    (t.startup + t.build + t.provision + t.run + t.teardown).as_secs_f64()
}

fn print(label: &str, report: &DiscoveryReport) {
    let t = &report.timings;
    let generation = generation_seconds(report);
    let runtimes = report.runtimes.iter().filter(|r| r.not_run.is_none()).count();
    let share = |d: std::time::Duration| 100.0 * d.as_secs_f64() / generation;
    println!(
        "{label}: {} cases x {runtimes} runtimes in {generation:.1} s ({:.0} cases/min, {:.0} case runs/min); images {:.0}% (build {:.0}%, push+pull {:.0}%), running cases {:.0}%, start-up+teardown {:.0}%; {} classes",
        report.cases,
        report.cases as f64 * 60.0 / generation,
        (report.cases * runtimes) as f64 * 60.0 / generation,
        share(t.build + t.provision),
        share(t.build),
        share(t.provision),
        share(t.run),
        share(t.startup + t.teardown),
        report.classes.len()
    );
}

/// Wall time of a whole discovery: generation and shrinking.
fn total_seconds(report: &DiscoveryReport) -> f64 {
    generation_seconds(report) + report.timings.shrink.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let catalogue = Catalogue::load(&root.join("scenarios"), &root.join("images")).expect("catalogue");
    let entries = matrix::load(&root.join("matrix.yaml"), &catalogue).expect("matrix.yaml");
    let config = |cases: usize, shrink: usize| {
        let mut config = DiscoverConfig::new(SessionSettings::default(), SEED, cases);
        config.cache = root.join(".cache");
        config.max_shrink_rounds = shrink;
        config
    };
    // Before (until 2026-12-03): one sandbox per case, and every shrinking round's candidates
    // run on the representatives of every class in the round. After: today's defaults, shared
    // sandboxes and each candidate only on its own class's representatives. Neither changes a
    // verdict or the greedy order, so both must end with the same minimal cases.
    // (16 candidates a round instead of 4 was measured too, on 2026-12-03: 0.62x, slower.)
    let mut before = config(100, 40);
    before.settings.share_sandboxes = false;
    before.candidates_everywhere = true;
    let old = discover::discover(&entries, &before, &|_| {}).await;
    print("100 cases, before (one sandbox per case)", &old);
    let small = discover::discover(&entries, &config(100, 40), &|_| {}).await;
    print("100 cases, after (shared sandboxes)", &small);
    for (label, report) in [("before", &old), ("after", &small)] {
        for class in &report.classes {
            println!("  {label} class {:>2}: shrunk in {:>2} steps, {:>3} candidates, {:>6.1} s  ({})", class.number, class.shrink_rounds, class.candidates_run, class.shrink_time.as_secs_f64(), class.key.kind.describe());
        }
    }
    let minimal = |r: &DiscoveryReport| r.classes.iter().map(|c| format!("{:?}", c.minimal)).collect::<Vec<_>>();
    assert_eq!(minimal(&old), minimal(&small), "the same seed must shrink to the same minimal cases");
    let per_minute = |r: &DiscoveryReport| r.cases as f64 * 60.0 / total_seconds(r);
    println!(
        "with shrinking: {:.0} cases/min before, {:.0} after: {:.2}x  (target >= 2x); shrinking {:.1} s before, {:.1} s after",
        per_minute(&old),
        per_minute(&small),
        per_minute(&small) / per_minute(&old),
        old.timings.shrink.as_secs_f64(),
        small.timings.shrink.as_secs_f64()
    );
    let large = discover::discover(&entries, &config(300, 0), &|_| {}).await;
    print("300 cases", &large);
    println!("300 / 100 cases, generation time: {:.2}  (linear: 3.0)", generation_seconds(&large) / generation_seconds(&small));
    println!("300 cases: {:.1} min  (target < 10 min on four runtimes)", generation_seconds(&large) / 60.0);
}
