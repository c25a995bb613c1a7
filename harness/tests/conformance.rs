//! The conformance catalogue as a test target: one trial per (runtime, scenario, policy).
//!
//! `cargo test --test conformance -- --list` lists them without starting anything; a filter
//! selects trials as usual. The first trial of a runtime starts it privately with the registry:
//! containerd 2.x always (see `support::containerd_dir`), CRI-O from `SGPC_CRIO_DIR` or else
//! the release `make setup` builds (`support::crio_config`). Without either the CRI-O trials are
//! listed as ignored, and the reason is printed: never counted as passed. Each session is torn down after the last trial.
//! Any verdict other than PASS fails its trial, except containerd's known findings
//! (`support::CONTAINERD_KNOWN_FINDINGS`): the same-name-group cases must FAIL naming
//! containerd/containerd#11937, the gids above 2147483647 must be REFUSED; PASS fails them too
//! (the bug fixed: drop the entry).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use libtest_mimic::{Arguments, Failed, Trial};
use sgpc::outcome::CaseResult;
use sgpc::run::{Session, SessionConfig};
use sgpc::scenario::{Catalogue, CaseId};
use sgpc::verdict::Verdict;

/// One runtime the trials run on, or why it cannot run here.
struct Runtime {
    kind: &'static str,
    /// Case ids this runtime must give a known verdict for, with a reason containing the text.
    known_findings: &'static [(&'static str, Verdict, &'static str)],
    config: Result<SessionConfig, String>,
    session: OnceLock<Result<Arc<Session>, String>>,
}

struct Shared {
    tokio: tokio::runtime::Runtime,
    catalogue: Catalogue,
    cases: Vec<CaseId>,
    runtimes: Vec<Runtime>,
    /// The results of each Pod of several containers, run once for all its trials: runtime
    /// and first case id -> one result per container.
    pods: Mutex<HashMap<String, Arc<OnceLock<Vec<CaseResult>>>>>,
}

impl Shared {
    fn session(&self, runtime: &Runtime) -> Result<Arc<Session>, Failed> {
        let started = runtime.session.get_or_init(|| {
            let config = runtime.config.clone()?;
            match self.tokio.block_on(Session::start(&config, &self.catalogue, &self.cases)) {
                Ok(session) => Ok(Arc::new(session)),
                Err(e) => Err(format!("ERROR: could not start {}: {e:#}", runtime.kind)),
            }
        });
        started.clone().map_err(Failed::from)
    }

    /// A case's result: a case of a Pod of several containers runs with the rest of its Pod,
    /// once for all their trials.
    fn judge(&self, runtime: usize, session: &Session, case: &CaseId) -> CaseResult {
        let pod = self.catalogue.pods(&self.cases).into_iter().find(|ids| ids.contains(case)).unwrap_or_else(|| vec![case.clone()]);
        if pod.len() == 1 {
            return self.tokio.block_on(session.judge_case(case));
        }
        let key = format!("{runtime}:{}", pod[0]);
        let once = self.pods.lock().expect("not poisoned").entry(key).or_default().clone();
        let results = once.get_or_init(|| self.tokio.block_on(session.judge_pod(&pod)));
        results.iter().find(|r| r.id == *case).cloned().unwrap_or_else(|| sgpc::outcome::error_result(case, "", "its Pod gave no result for it"))
    }

    fn run(&self, runtime: usize, case: &CaseId) -> Result<(), Failed> {
        let session = self.session(&self.runtimes[runtime])?;
        let result = self.judge(runtime, &session, case);
        let mut known = self.runtimes[runtime].known_findings.iter().find(|(id, _, _)| *id == case.to_string()).copied();
        // A Pod with hostUsers: false where the runtime cannot run it: not run, never a pass.
        if self.catalogue.scenario(&case.scenario).is_some_and(|s| s.pod.user_namespace()) {
            known = support::userns_not_run(self.runtimes[runtime].kind).map(|why| ("", Verdict::NotRun, why));
        }
        let j = &result.judgement;
        match (j.verdict, known) {
            (Verdict::Pass, None) => Ok(()),
            (verdict, Some((_, want, text))) if verdict == want && j.reasons.iter().any(|r| r.contains(text)) => Ok(()),
            (verdict, Some((_, want, text))) => Err(format!("expected {want} with a reason containing {text:?}, got {verdict}: {}", j.reasons.join("\n")).into()),
            (verdict, None) => Err(format!("{verdict}: {}", j.reasons.join("\n")).into()),
        }
    }
}

/// One matrix, every column running at once: containerd 2.x and each CRI-O directory, each
/// with its own root, socket, registry and registries.conf; every one must be conformant.
fn crio_matrix(dirs: Vec<std::path::PathBuf>) -> Result<(), Failed> {
    use sgpc::matrix::{Entry, Expected, MatrixConfig, Outcome};
    use sgpc::target::{Source, Target};
    let catalogue = support::catalogue();
    let cases: Vec<CaseId> = catalogue.cases().into_iter().filter(|c| c.scenario == "kep-blog" || c.scenario == "protected-file-access").collect();
    let conformant = || Some(Expected { outcome: Outcome::Conformant, kubernetes: false, exceptions: Default::default(), user_namespaces: false });
    let target = |source: Source| Target { source, oci_runtimes: Vec::new(), runc_module: None, runtime_handler: String::new(), node: None };
    let mut entries = vec![Entry { name: "containerd-2.x".into(), target: target(Source::ContainerdDir { dir: support::containerd_dir() }), expect: conformant() }];
    for (i, dir) in dirs.into_iter().enumerate() {
        entries.push(Entry { name: format!("crio-{i}"), target: target(Source::CrioDir { dir }), expect: conformant() });
    }
    let config = MatrixConfig { settings: sgpc::run::SessionSettings::default(), cache: support::repo_root().join(".cache"), jobs: 2 };
    let tokio = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let report = tokio.block_on(sgpc::matrix::run_matrix(&entries, &catalogue, &cases, &config));
    let problems: Vec<String> = report.columns.iter().filter(|c| !c.deviations.is_empty() || c.setup_error.is_some()).map(|c| format!("{}: {} {:?} {:?}", c.name, c.summary, c.setup_error, c.deviations)).collect();
    if problems.is_empty() && report.columns.iter().all(|c| c.runtime.is_some()) {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

fn main() {
    let mut args = Arguments::from_args();
    // Cases are I/O-bound: four in flight is about twice as fast as two on two cores.
    args.test_threads.get_or_insert(4);
    let catalogue = support::catalogue();
    let cases = catalogue.cases();
    let runtimes = vec![
        Runtime { kind: "containerd", known_findings: support::CONTAINERD_KNOWN_FINDINGS, config: Ok(support::containerd_config()), session: OnceLock::new() },
        Runtime { kind: "crio", known_findings: &[], config: support::crio_config(), session: OnceLock::new() },
    ];
    for runtime in &runtimes {
        if let Err(why) = &runtime.config {
            eprintln!("not run: the {} [{}] trials: {why}", cases.len(), runtime.kind);
        }
    }
    let shared = Arc::new(Shared { tokio: tokio::runtime::Runtime::new().expect("a tokio runtime starts"), catalogue, cases: cases.clone(), runtimes, pods: Mutex::default() });
    let trials: Vec<Trial> = (0..shared.runtimes.len())
        .flat_map(|runtime| {
            let shared = shared.clone();
            let kind = shared.runtimes[runtime].kind;
            let unavailable = shared.runtimes[runtime].config.is_err();
            cases.clone().into_iter().map(move |case| {
                let shared = shared.clone();
                Trial::test(case.to_string(), move || shared.run(runtime, &case)).with_kind(kind).with_ignored_flag(unavailable)
            })
        })
        .collect();
    let mut trials = trials;
    let crio_dirs = support::crio_dirs();
    let matrix_unavailable = crio_dirs.is_err();
    trials.push(
        Trial::test("containerd 2.x and every CRI-O of SGPC_CRIO_DIR side by side in one matrix", move || crio_matrix(crio_dirs?))
            .with_kind("crio")
            .with_ignored_flag(matrix_unavailable),
    );
    let conclusion = libtest_mimic::run(&args, trials);

    // The trials, and their references to the sessions, are gone once `run` returns.
    let Ok(shared) = Arc::try_unwrap(shared) else { panic!("every trial has released the shared state") };
    let mut failed = false;
    for mut runtime in shared.runtimes {
        if let Some(Ok(session)) = runtime.session.take() {
            let Ok(session) = Arc::try_unwrap(session) else { panic!("every trial has released the session") };
            if let Err(e) = shared.tokio.block_on(session.teardown()) {
                eprintln!("error: {} teardown failed: {e:#}", runtime.kind);
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(101);
    }
    conclusion.exit();
}
