//! The runner: [`run_cases`] runs cases on any [`Driver`] `jobs` at a time, resolving,
//! running and judging each in [`run_case`], and emits [`Event`]s; the result is a
//! [`RunReport`] ([`crate::outcome`], plain data for the reporters). A lifecycle around it
//! provisions what a driver needs and removes it: [`run_session`] (a CRI runtime, a live node
//! or an existing node's kubelet over one) and [`run_kube_session`] (a cluster, `kube.rs`);
//! [`clean_stale`] removes what a killed run left.

mod clean;
mod kube;
mod node;
mod session;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::case::Case;
use crate::driver::{Driver, Member, RuntimeInfo};
use crate::image::ImageRecord;
use crate::observation::Observations;
use crate::outcome::{error_result, CaseResult, Event, Phase, RunReport, Selection, Stop};
use crate::scenario::{Catalogue, CaseId};
use crate::verdict::{self, Judgement, Verdict};

pub use clean::{clean_stale, Cleaned};
pub use kube::{run_kube_session, KindSetup, KubeConfig};
pub use node::{node_binaries, run_session, ExistingNode, Level, NodeChoice, NodeRun};
pub use session::{NodeSettings, ProxySettings, Session, SessionConfig, SessionSettings, TargetChoice};

/// Runs cases on any driver, `jobs` Pods at a time (the cases of a Pod of several containers
/// run together, [`Catalogue::pods`], and where the driver shares sandboxes, the cases whose
/// Pod-level context is the same, [`Catalogue::sandboxes`]); `on_event` sees each result as it finishes. Results come back in
/// the order of `cases`.
pub async fn run_cases(
    driver: &impl Driver,
    catalogue: &Catalogue,
    images: &BTreeMap<String, ImageRecord>,
    cases: &[CaseId],
    jobs: usize,
    on_event: &mut impl FnMut(Event<'_>),
) -> Vec<CaseResult> {
    on_event(Event::RunStarted { total: cases.len(), runtime: driver.runtime() });
    let mut results: Vec<CaseResult> = Vec::with_capacity(cases.len());
    let groups = if driver.shares_sandboxes() {
        // Largest first, so that no large sandbox starts last and runs alone at the end.
        let mut groups = catalogue.sandboxes(cases);
        groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
        groups
    } else {
        catalogue.pods(cases)
    };
    let mut stream = futures::stream::iter(&groups).map(|ids| run_isolated(ids, run_pod(driver, catalogue, images, ids))).buffer_unordered(jobs.max(1));
    while let Some(finished) = stream.next().await {
        for result in finished {
            results.push(result);
            let done = results.len();
            on_event(Event::CaseFinished { result: &results[done - 1], done, total: cases.len() });
        }
    }
    results.sort_by_key(|r| cases.iter().position(|c| *c == r.id));
    results
}

/// Runs one case on a driver and judges it (a Pod of one container).
pub async fn run_case(driver: &impl Driver, catalogue: &Catalogue, images: &BTreeMap<String, ImageRecord>, id: &CaseId) -> CaseResult {
    let mut results = run_pod(driver, catalogue, images, std::slice::from_ref(id)).await;
    results.pop().unwrap_or_else(|| error_result(id, "", "not run"))
}

/// Runs the cases of one Pod on a driver and judges each: the one place where cases are
/// resolved, run and judged. What sgpc could not observe is an ERROR; everything else the
/// verdict engine decides. One result per id, in order.
pub async fn run_pod(driver: &impl Driver, catalogue: &Catalogue, images: &BTreeMap<String, ImageRecord>, ids: &[CaseId]) -> Vec<CaseResult> {
    let started = Instant::now();
    let mut results: Vec<CaseResult> = Vec::new();
    let mut runnable: Vec<(usize, Case<'_>, &ImageRecord)> = Vec::new();
    for id in ids {
        let mut result = error_result(id, "", "not run");
        match Case::resolve(catalogue, id) {
            Err(e) => result.judgement = Judgement::error(error_chain(&e)),
            Ok(case) => {
                result.describe(case.scenario);
                result.image = images.get(&case.scenario.image).cloned();
                match (images.get(&case.scenario.image), not_run(&case, driver.runtime())) {
                    (None, _) => result.judgement = Judgement::error(format!("image {:?} was not provisioned", case.scenario.image)),
                    (Some(_), Some(not_run)) => result.judgement = not_run,
                    (Some(image), None) => runnable.push((results.len(), case, image)),
                }
            }
        }
        results.push(result);
    }
    let members: Vec<Member<'_, '_>> = runnable.iter().map(|(_, case, image)| Member { case, image }).collect();
    for (index, _, _) in &runnable {
        results[*index].sandbox_with = runnable.iter().filter(|(other, _, _)| other != index).map(|(_, c, _)| c.id.clone()).collect();
    }
    let observed = if members.is_empty() { Vec::new() } else { driver.run_pod(&members).await };
    for ((index, case, image), observed) in runnable.iter().zip(observed.into_iter().map(Some).chain(std::iter::repeat_with(|| None))) {
        let result = &mut results[*index];
        result.judgement = match observed {
            None => Judgement::error("the driver returned no observations for this container"),
            Some(Err(e)) => Judgement::error(error_chain(&e)),
            Some(Ok(observations)) => {
                let (judgement, by_deviation) = judge_observed(case, driver.runtime(), driver.reads_host_proc(), image, &observations);
                result.passed_by_deviation = by_deviation;
                result.observations = Some(observations);
                judgement
            }
        };
    }
    for result in &mut results {
        result.duration = started.elapsed();
    }
    results
}

/// A case the runtime cannot run at all (`hostUsers: false` where it offers no user
/// namespaces): NOT RUN, with the reason.
pub fn not_run(case: &Case<'_>, runtime: &RuntimeInfo) -> Option<Judgement> {
    let why = runtime.no_user_namespaces.as_deref().filter(|_| case.scenario.pod.user_namespace())?;
    Some(Judgement::not_run(&format!("not run (hostUsers: false): {why}")))
}

/// Judges what was observed of a case: the verdict engine's one entry, for a run and for
/// `sgpc verify`, which judges a bundle's recorded observations again. Also whether the case
/// passes only by its scenario's `deviation:`.
pub fn judge_observed(case: &Case<'_>, runtime: &RuntimeInfo, host_view: bool, image: &ImageRecord, observations: &Observations) -> (Judgement, bool) {
    if let Some(why) = unjudgeable(runtime, observations, image) {
        return (Judgement::error(why), false);
    }
    let mut judgement = verdict::judge(&case.context(runtime.supplemental_groups_policy, host_view), observations);
    verdict::name_known_bugs(&mut judgement, &runtime.runtime_name, observations, case.expected, &case.self_named);
    let by_deviation = judgement.verdict == Verdict::Pass && case.expected.deviation.is_some();
    (judgement, by_deviation)
}

/// What a lifecycle ([`run_lifecycle`]) gives: the run's report, and how long set-up took (`None` when it
/// failed).
pub struct SessionRun {
    pub report: RunReport,
    pub startup: Option<Duration>,
    /// The cases that got an ERROR without running (set-up failed, interrupted).
    pub not_run: Vec<CaseId>,
}

/// Why a run did not start, with what was learnt about the runtime before it failed, so
/// that reports of a failed set-up still name the runtime that answered.
#[derive(Debug)]
pub struct StartError {
    pub runtime: Option<RuntimeInfo>,
    pub provisioned: Option<String>,
    pub error: anyhow::Error,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for StartError {}

/// What a lifecycle starts and must end: a driver with the images it holds. [`Session`] (a CRI
/// runtime and its registry) and `driver::kube::KubeRun` (a cluster's namespace).
pub trait Started: Driver {
    fn images(&self) -> &BTreeMap<String, ImageRecord>;
    /// What sgpc started for it, e.g. `containerd 2.1.9 from /path`.
    fn provisioned(&self) -> Option<String> {
        None
    }
    /// After the cases: what a peer tool (critest) says of the same runtime, if asked for.
    fn peer(&self) -> impl std::future::Future<Output = Option<crate::critest::CritestSays>> {
        std::future::ready(None)
    }
    /// Removes everything the start created.
    fn teardown(self) -> impl std::future::Future<Output = anyhow::Result<()>>;
}

/// The one lifecycle of every run: start, run the cases `jobs` at a time, tear down, make
/// every case that did not finish an ERROR for the one reason that stopped it, and tell the
/// reporters. `interrupted` (a signal, say) stops set-up or the run and names why.
pub async fn run_lifecycle<S: Started>(
    start: impl std::future::Future<Output = Result<S, StartError>>,
    started: Instant,
    catalogue: &Catalogue,
    cases: &[CaseId],
    jobs: usize,
    interrupted: impl std::future::Future<Output = String>,
    mut on_event: impl FnMut(Event<'_>),
) -> SessionRun {
    let mut report = RunReport::empty();
    report.selection = Selection::of(catalogue, cases, None);
    let mut startup = None;
    let mut stop: Option<Stop> = None;
    let interrupted = std::pin::pin!(interrupted);
    let mut interrupted = futures::FutureExt::fuse(interrupted);
    let driver = tokio::select! {
        s = start => Some(s),
        signal = &mut interrupted => { stop = Some(Stop::Interrupted { signal, during: Phase::SetUp }); None }
    };
    match driver {
        None => {}
        Some(Err(e)) => {
            stop = Some(Stop::SetupFailed(e.to_string()));
            report.runtime = e.runtime;
            report.provisioned = e.provisioned;
        }
        Some(Ok(driver)) => {
            startup = Some(started.elapsed());
            report.runtime = Some(driver.runtime().clone());
            report.provisioned = driver.provisioned();
            report.images = driver.images().values().cloned().collect();
            // Kept as they finish, so that an interrupted run still reports them.
            let mut finished = Vec::new();
            let mut hear = |event: Event<'_>| {
                if let Event::CaseFinished { result, .. } = &event {
                    finished.push((*result).clone());
                }
                on_event(event);
            };
            tokio::select! {
                results = run_cases(&driver, catalogue, driver.images(), cases, jobs, &mut hear) => report.cases = results,
                signal = &mut interrupted => {
                    stop = Some(Stop::Interrupted { signal, during: Phase::Cases });
                    report.cases = finished;
                }
            }
            if stop.is_none() {
                tokio::select! {
                    says = driver.peer() => report.critest = says,
                    signal = &mut interrupted => stop = Some(Stop::Interrupted { signal, during: Phase::Critest }),
                }
            }
            if let Err(e) = driver.teardown().await {
                stop = Some(Stop::TeardownFailed { before: stop.take().map(Box::new), error: format!("{e:#}") });
            }
        }
    }
    report.setup_error = stop.as_ref().map(ToString::to_string);
    let reason = stop.unwrap_or(Stop::Unfinished);
    let not_run = fill_unfinished(&mut report.cases, cases, catalogue, &reason.to_string());
    if !not_run.is_empty() {
        on_event(Event::CasesNotRun { cases: &not_run, reason: &reason });
    }
    report.duration = started.elapsed();
    on_event(Event::RunFinished { report: &report });
    SessionRun { report, startup, not_run }
}

pub(crate) use crate::chain::error_chain;

/// Why observations cannot be judged, whatever the driver: a refusal of an image that may not
/// be sgpc's says nothing about how the runtime treats sgpc's Pod, and without its node's
/// feature flag the Kubernetes level cannot tell UNSUPPORTED from FAIL.
fn unjudgeable(runtime: &RuntimeInfo, observations: &Observations, image: &ImageRecord) -> Option<String> {
    if let Some(refusal) = &observations.refusal {
        if !refusal.held_image.as_deref().is_some_and(|held| image.digests().named_by(held)) {
            return Some(format!(
                "{} failed ({}), and the runtime holds {:?} under {}, not the bytes sgpc built (config {})",
                refusal.step, refusal.message, refusal.held_image, image.reference, image.config_digest
            ));
        }
    } else if runtime.feature_per_node && observations.admission.is_none() {
        return Some("the Kubernetes level reported no admission outcome, so the node's feature flag is unknown".into());
    }
    None
}

/// Runs a Pod's future; a panic inside it becomes an ERROR result for each of its cases
/// instead of ending the run.
pub async fn run_isolated(ids: &[CaseId], pod: impl std::future::Future<Output = Vec<CaseResult>>) -> Vec<CaseResult> {
    match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(pod)).await {
        Ok(results) => results,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            ids.iter().map(|id| error_result(id, "", &format!("the case panicked: {message}"))).collect()
        }
    }
}

/// Adds an ERROR result, with `reason`, for every case that has none (set-up failed, the run
/// was interrupted), and puts the results in the order of `cases`. Returns the ids it added.
pub fn fill_unfinished(results: &mut Vec<CaseResult>, cases: &[CaseId], catalogue: &Catalogue, reason: &str) -> Vec<CaseId> {
    let missing: Vec<CaseId> = cases.iter().filter(|c| !results.iter().any(|r| r.id == **c)).cloned().collect();
    for id in &missing {
        let mut result = error_result(id, "", reason);
        if let Some(scenario) = catalogue.scenario(&id.scenario) {
            result.describe(scenario);
        }
        results.push(result);
    }
    results.sort_by_key(|r| cases.iter().position(|c| *c == r.id));
    missing
}

