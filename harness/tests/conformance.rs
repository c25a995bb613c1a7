//! The conformance catalogue as a test target: one trial per (runtime, scenario, policy).
//!
//! `cargo test --test conformance -- --list` lists them without starting anything; a filter
//! selects trials as usual. The first trial that runs starts a private containerd 2.x (see
//! `support::containerd_dir`) and the registry; the session is torn down after the last trial.
//! Any verdict other than PASS fails its trial: containerd 2.x must conform fully.

mod support;

use std::sync::{Arc, OnceLock};

use libtest_mimic::{Arguments, Failed, Trial};
use sgpc::run::Session;
use sgpc::scenario::{Catalogue, CaseId};
use sgpc::verdict::Verdict;

const RUNTIME: &str = "containerd";

struct Shared {
    tokio: tokio::runtime::Runtime,
    catalogue: Catalogue,
    cases: Vec<CaseId>,
    session: OnceLock<Result<Arc<Session>, String>>,
}

impl Shared {
    fn session(&self) -> Result<Arc<Session>, Failed> {
        let started = self.session.get_or_init(|| {
            let config = support::containerd_config();
            match self.tokio.block_on(Session::start(&config, &self.catalogue, &self.cases)) {
                Ok(session) => Ok(Arc::new(session)),
                Err(e) => Err(format!("ERROR: could not start containerd: {e:#}")),
            }
        });
        started.clone().map_err(Failed::from)
    }

    fn run(&self, case: &CaseId) -> Result<(), Failed> {
        let session = self.session()?;
        let result = self.tokio.block_on(session.run_case(case));
        match result.judgement.verdict {
            Verdict::Pass => Ok(()),
            verdict => Err(format!("{verdict}: {}", result.judgement.reasons.join("\n")).into()),
        }
    }
}

fn main() {
    let mut args = Arguments::from_args();
    // Cases are I/O-bound: four in flight is about twice as fast as two on two cores.
    args.test_threads.get_or_insert(4);
    let catalogue = support::catalogue();
    let cases = catalogue.cases();
    let shared = Arc::new(Shared {
        tokio: tokio::runtime::Runtime::new().expect("a tokio runtime starts"),
        catalogue,
        cases: cases.clone(),
        session: OnceLock::new(),
    });
    let trials = cases
        .into_iter()
        .map(|case| {
            let shared = shared.clone();
            Trial::test(case.to_string(), move || shared.run(&case)).with_kind(RUNTIME)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);

    // The trials, and their references to the session, are gone once `run` returns.
    let Ok(mut shared) = Arc::try_unwrap(shared) else { panic!("every trial has released the shared state") };
    if let Some(Ok(session)) = shared.session.take() {
        let Ok(session) = Arc::try_unwrap(session) else { panic!("every trial has released the session") };
        if let Err(e) = shared.tokio.block_on(session.teardown()) {
            eprintln!("error: teardown failed: {e:#}");
            std::process::exit(101);
        }
    }
    conclusion.exit();
}
