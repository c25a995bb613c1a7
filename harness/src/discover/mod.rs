//! Differential discovery: generated cases run on every runtime of a matrix; each class of
//! divergence is shrunk to a minimal case and written in the catalogue's format.
//!
//! One session per runtime lives for the whole discovery; images are built once per batch and
//! pushed to the registry of every session that runs them; the runtimes run each batch
//! concurrently. Shrinking runs every class's candidates in the same round, each only on its
//! own class's representatives.

pub mod classify;
pub mod generate;
pub mod shrink;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::divergence::Behaviour;
use crate::driver::RuntimeInfo;
use crate::image::{self, ImageContent};
use crate::matrix::Entry;
use crate::outcome::{self, CaseResult};
use crate::run::{self, Session, SessionSettings};
use crate::scenario::{Catalogue, CaseId, Policy};
use crate::verdict::Verdict;

use classify::ClassKey;
use generate::GenCase;
use shrink::Shrinker;

/// What a discovery needs besides the matrix entries.
#[derive(Debug, Clone)]
pub struct DiscoverConfig {
    /// What every runtime's session shares.
    pub settings: SessionSettings,
    /// Cache for Debian packages and releases.
    pub cache: std::path::PathBuf,
    /// Cases in flight at once, per runtime.
    pub jobs: usize,
    pub seed: u64,
    /// Cases to run on every runtime: generated scenarios × their three policies.
    pub cases: usize,
    /// Scenarios whose images are built and pushed together.
    pub batch: usize,
    /// Shrinking rounds per class at most (each keeps one smaller candidate).
    pub max_shrink_rounds: usize,
    /// Candidates per class tried in one round.
    pub shrink_window: usize,
    /// Cases in flight at once, per runtime, while shrinking (few runtimes run each round).
    pub shrink_jobs: usize,
    /// Run every shrinking round's candidates on the representatives of every class in the
    /// round, and every minimal case on the runtimes of every class, not only on their own
    /// class's: the way before 2026-12-03, kept as `make bench`'s baseline. The same minimal
    /// cases and verdicts either way; only the time differs.
    pub candidates_everywhere: bool,
}

impl DiscoverConfig {
    pub fn new(settings: SessionSettings, seed: u64, cases: usize) -> DiscoverConfig {
        DiscoverConfig { settings, cache: ".cache".into(), jobs: 2, seed, cases, batch: 50, max_shrink_rounds: 40, shrink_window: 4, shrink_jobs: 4, candidates_everywhere: false }
    }
}

/// What a discovery tells its caller while it works.
#[derive(Debug)]
pub enum Progress<'a> {
    RuntimeStarted { runtime: &'a str, info: &'a RuntimeInfo },
    RuntimeNotRun { runtime: &'a str, reason: &'a str },
    /// A runtime finished a case of the generated batches.
    CaseDone { runtime: &'a str, done: usize, total: usize, classes: usize, elapsed: Duration },
    ClassFound { number: usize, key: &'a ClassKey, case: &'a CaseId },
    /// A class's case got smaller: its `step`th kept reduction.
    Shrunk { number: usize, step: usize, case: &'a GenCase },
}

/// One runtime of the discovery.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeRun {
    pub name: String,
    pub runtime: Option<RuntimeInfo>,
    /// Why it did not run (not available here, or its set-up failed).
    pub not_run: Option<String>,
    pub cases_run: usize,
    /// Cases it could not run (ERROR): they say nothing about the runtime.
    pub errors: usize,
    /// Why the end of its session was not clean.
    pub teardown_error: Option<String>,
}

/// A class of divergence: the key, how many cases showed it, and its shrunk case.
#[derive(Debug, Clone, Serialize)]
pub struct Class {
    pub number: usize,
    pub key: ClassKey,
    pub description: String,
    /// The generated cases that showed it, in generation order (the first is the one shrunk).
    pub cases: Vec<CaseId>,
    pub first: GenCase,
    pub minimal: GenCase,
    /// What every runtime did on the minimal case.
    pub behaviours: Vec<Behaviour>,
    /// The identity fields of the CRI requests the minimal case sends (as kubelet would).
    pub cri_request: String,
    /// One runtime per side and verdict of the class: shrinking runs candidates only on these.
    pub representatives: Vec<String>,
    /// The class as the representatives alone show it: what a candidate must keep.
    #[serde(skip)]
    pub representative_key: ClassKey,
    /// The minimal case, run again on every runtime of the class, shows the same class.
    pub verified: bool,
    /// Runtimes that could not run the minimal case when it was run again (ERROR), with why.
    pub verification_errors: Vec<String>,
    pub shrink_rounds: usize,
    pub candidates_run: usize,
    /// Shrinking rounds in which a representative could not run a candidate (ERROR): the window
    /// was tried again (at most [`SHRINK_RETRIES`] times, then passed over).
    pub shrink_errors: usize,
    /// From the start of shrinking until this class's shrinking ended (classes shrink side by
    /// side, so these overlap).
    #[serde(serialize_with = "crate::outcome::serialize_millis", rename = "shrink_ms")]
    pub shrink_time: Duration,
}

/// Where the time went.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    #[serde(serialize_with = "crate::outcome::serialize_millis", rename = "startup_ms")]
    pub startup: Duration,
    #[serde(serialize_with = "crate::outcome::serialize_millis", rename = "build_ms")]
    pub build: Duration,
    /// Pushing to the registries and pulling into the runtimes.
    #[serde(serialize_with = "crate::outcome::serialize_millis", rename = "provision_ms")]
    pub provision: Duration,
    #[serde(serialize_with = "crate::outcome::serialize_millis", rename = "run_ms")]
    pub run: Duration,
    #[serde(serialize_with = "crate::outcome::serialize_millis", rename = "shrink_ms")]
    pub shrink: Duration,
    #[serde(serialize_with = "crate::outcome::serialize_millis", rename = "teardown_ms")]
    pub teardown: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiscoveryReport {
    pub schema_version: u32,
    pub harness_version: String,
    pub seed: u64,
    pub scenarios: usize,
    pub cases: usize,
    pub runtimes: Vec<RuntimeRun>,
    pub classes: Vec<Class>,
    /// Cases left out of the classes because some runtime could not run them (ERROR).
    pub unclassified: usize,
    /// Cases some runtime could not run, with the reason (at most 20 listed).
    pub errors: Vec<String>,
    pub timings: Timings,
    #[serde(serialize_with = "crate::outcome::serialize_millis", rename = "duration_ms")]
    pub duration: Duration,
}

impl DiscoveryReport {
    /// 2 when no runtime ran or every case was an ERROR; 1 when a class breaks the rules
    /// (a divergence, every runtime outside the model, a failing verdict); 0 otherwise (no class, or only
    /// expected leaks and divergences within the allowed outcomes).
    pub fn exit_code(&self) -> i32 {
        let ran = self.runtimes.iter().any(|r| r.not_run.is_none() && r.cases_run > r.errors);
        if !ran {
            return outcome::exit_code::ERROR;
        }
        let news = self.classes.iter().any(|c| matches!(c.key.kind, classify::Kind::Divergence | classify::Kind::ModelFailure | classify::Kind::ReportFailure));
        if news {
            outcome::exit_code::FAIL
        } else {
            outcome::exit_code::PASS
        }
    }
}

struct Running {
    name: String,
    session: Session,
}

/// Runs a discovery: starts every entry's runtime, runs the generated cases, classifies and
/// shrinks. Every session is torn down before it returns.
pub async fn discover(entries: &[Entry], config: &DiscoverConfig, progress: &dyn Fn(Progress<'_>)) -> DiscoveryReport {
    let started = Instant::now();
    let scenarios = config.cases.div_ceil(Policy::ALL.len());
    let generated = generate::generate(config.seed, scenarios);
    let all_cases: Vec<CaseId> = generated.iter().flat_map(|g| Policy::ALL.map(|policy| CaseId { scenario: g.name.clone(), policy })).take(config.cases).collect();
    let mut timings = Timings::default();
    let mut runtimes: Vec<RuntimeRun> = entries.iter().map(|e| RuntimeRun { name: e.name.clone(), runtime: None, not_run: None, cases_run: 0, errors: 0, teardown_error: None }).collect();

    let starting = Instant::now();
    let mut running = start_sessions(entries, config, &mut runtimes, progress).await;
    timings.startup = starting.elapsed();

    let mut results: BTreeMap<CaseId, Vec<(String, CaseResult)>> = BTreeMap::new();
    let mut found = Found::default();
    let mut done_per_runtime: BTreeMap<String, usize> = BTreeMap::new();
    for batch in generated.chunks(config.batch.max(1)) {
        let ids: Vec<CaseId> = all_cases.iter().filter(|c| batch.iter().any(|g| g.name == c.scenario)).cloned().collect();
        let counted = std::cell::RefCell::new(&mut done_per_runtime);
        let on_case = |runtime: &str| {
            let mut counts = counted.borrow_mut();
            let done = counts.entry(runtime.to_string()).or_default();
            *done += 1;
            if done.is_multiple_of(25) {
                progress(Progress::CaseDone { runtime, done: *done, total: all_cases.len(), classes: found.classes.len(), elapsed: started.elapsed() });
            }
        };
        let batch_results = run_batch(&mut running, &Batch { cases: batch, ids: &ids, runs_on: None, jobs: config.jobs }, &mut timings, &on_case).await;
        for (runtime, result) in batch_results {
            results.entry(result.id.clone()).or_default().push((runtime, result));
        }
        for id in &ids {
            if let (Some(per_runtime), Some(first)) = (results.get(id), generated.iter().find(|g| g.name == id.scenario)) {
                found.classify(id, per_runtime, first, progress);
            }
        }
    }
    for (runtime, done) in &done_per_runtime {
        progress(Progress::CaseDone { runtime, done: *done, total: all_cases.len(), classes: found.classes.len(), elapsed: started.elapsed() });
    }
    let errors = count_runs(&mut runtimes, &results);
    let Found { mut classes, unclassified, .. } = found;

    let shrinking = Instant::now();
    shrink_classes(&mut running, &mut classes, config, progress).await;
    timings.shrink = shrinking.elapsed();

    let tearing = Instant::now();
    teardown_all(running, &mut runtimes).await;
    timings.teardown = tearing.elapsed();
    DiscoveryReport {
        schema_version: 1,
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        seed: config.seed,
        scenarios,
        cases: all_cases.len(),
        runtimes,
        classes,
        unclassified,
        errors,
        timings,
        duration: started.elapsed(),
    }
}

/// The classes found so far, and how many cases could not be classified.
#[derive(Default)]
struct Found {
    classes: Vec<Class>,
    class_of: BTreeMap<ClassKey, usize>,
    unclassified: usize,
}

impl Found {
    /// Adds one generated case's results (`first`: the scenario as generated) to its class, or
    /// makes a new class of it.
    fn classify(&mut self, id: &CaseId, per_runtime: &[(String, CaseResult)], first: &GenCase, progress: &dyn Fn(Progress<'_>)) {
        // A case some runtime could not run (ERROR: sgpc's failure) is not classified: without
        // that runtime, the others would form a class of their own.
        if per_runtime.iter().any(|(_, r)| r.judgement.verdict == Verdict::Error) {
            self.unclassified += 1;
            return;
        }
        let view: Vec<(&str, &CaseResult)> = per_runtime.iter().map(|(n, r)| (n.as_str(), r)).collect();
        let Some((key, behaviours)) = classify::classify(&view) else { return };
        if let Some(&i) = self.class_of.get(&key) {
            self.classes[i].cases.push(id.clone());
            return;
        }
        let (representatives, representative_key) = representatives(&key, &view, &self.classes);
        self.class_of.insert(key.clone(), self.classes.len());
        progress(Progress::ClassFound { number: self.classes.len() + 1, key: &key, case: id });
        self.classes.push(Class {
            number: self.classes.len() + 1,
            description: key.describe(),
            key,
            cases: vec![id.clone()],
            cri_request: String::new(),
            minimal: pinned(first.clone(), id.policy),
            first: pinned(first.clone(), id.policy),
            behaviours,
            representatives,
            representative_key,
            verified: false,
            verification_errors: Vec::new(),
            shrink_rounds: 0,
            candidates_run: 0,
            shrink_errors: 0,
            shrink_time: Duration::ZERO,
        });
    }
}

/// Counts each runtime's case runs and ERRORs; gives the first 20 ERRORs with their reasons.
fn count_runs(runtimes: &mut [RuntimeRun], results: &BTreeMap<CaseId, Vec<(String, CaseResult)>>) -> Vec<String> {
    let mut errors = Vec::new();
    for run in runtimes {
        for (_, result) in results.values().flatten().filter(|(n, _)| *n == run.name) {
            run.cases_run += 1;
            if result.judgement.verdict == Verdict::Error {
                run.errors += 1;
                if errors.len() < 20 {
                    errors.push(format!("{} on {}: {}", result.id, run.name, result.judgement.reasons.join("; ")));
                }
            }
        }
    }
    errors
}

/// Stops every session side by side, as they started (each its own runtime and registry).
async fn teardown_all(running: Vec<Running>, runtimes: &mut [RuntimeRun]) {
    let stopped = futures::future::join_all(running.into_iter().map(|Running { name, session }| async move {
        let tearing = Instant::now();
        let outcome = session.teardown().await;
        tracing::info!(runtime = name, ms = tearing.elapsed().as_millis() as u64, "teardown");
        (name, outcome)
    }))
    .await;
    for (name, outcome) in stopped {
        if let (Err(e), Some(run)) = (outcome, runtimes.iter_mut().find(|r| r.name == name)) {
            run.teardown_error = Some(format!("{e:#}"));
        }
    }
}

/// Pins a generated scenario to the policy a class showed under (default runs unpinned).
fn pinned(mut case: GenCase, policy: Policy) -> GenCase {
    case.policy = (policy != Policy::Default).then_some(policy);
    case
}

/// The runtimes shrinking runs candidates on, and the class as they alone show it. Per side, one
/// runtime per distinct verdict (the one representing the fewest classes so far, so the work
/// spreads): the representatives then show every side with every verdict, hence the same kind.
/// Where they would not (cannot happen by construction, but the class must never vanish),
/// every runtime of the class represents it.
fn representatives(key: &ClassKey, view: &[(&str, &CaseResult)], classes: &[Class]) -> (Vec<String>, ClassKey) {
    let load = |name: &String| classes.iter().filter(|c| c.representatives.contains(name)).count();
    let verdict_of = |name: &String| view.iter().find(|(n, _)| n == name).map(|(_, r)| r.judgement.verdict);
    let mut chosen: Vec<String> = Vec::new();
    for side in &key.sides {
        for verdict in &side.verdicts {
            let showing = side.runtimes.iter().filter(|n| verdict_of(n).as_ref() == Some(verdict));
            chosen.extend(showing.min_by_key(|n| load(n)).cloned());
        }
    }
    let of_chosen: Vec<(&str, &CaseResult)> = view.iter().filter(|(n, _)| chosen.iter().any(|c| c == n)).copied().collect();
    match classify::classify(&of_chosen) {
        Some((chosen_key, _)) if chosen_key.kind == key.kind => (chosen, chosen_key),
        _ => (key.runtimes(), key.clone()),
    }
}

async fn start_sessions(entries: &[Entry], config: &DiscoverConfig, runtimes: &mut [RuntimeRun], progress: &dyn Fn(Progress<'_>)) -> Vec<Running> {
    let empty = Catalogue { scenarios: Vec::new(), images: Vec::new() };
    let starts = entries.iter().map(|entry| {
        let empty = &empty;
        async move {
            if let Some(node) = &entry.target.node {
                return Err(format!("discovery runs at the CRI level; the live node (kubernetes {}) is not started", node.kubernetes));
            }
            let (session_config, _) = crate::target::resolve_blocking(&entry.target, &config.settings, &config.cache).await.map_err(|e| e.to_string())?;
            Session::start(&session_config, empty, &[]).await.map_err(|e| format!("set-up failed: {e}"))
        }
    });
    let started = futures::future::join_all(starts).await;
    let mut running = Vec::new();
    for ((entry, run), outcome) in entries.iter().zip(runtimes.iter_mut()).zip(started) {
        match outcome {
            Ok(session) => {
                progress(Progress::RuntimeStarted { runtime: &entry.name, info: &session.runtime });
                run.runtime = Some(session.runtime.clone());
                running.push(Running { name: entry.name.clone(), session });
            }
            Err(reason) => {
                progress(Progress::RuntimeNotRun { runtime: &entry.name, reason: &reason });
                run.not_run = Some(reason);
            }
        }
    }
    running
}

/// Builds a batch's images once, adds to each session the images of the scenarios it runs,
/// runs those scenarios' cases on each concurrently. Results are `(runtime, result)`; a session
/// that could not take its part of the batch gives ERROR results for it.
async fn run_batch(running: &mut [Running], work: &Batch<'_>, timings: &mut Timings, on_case: &dyn Fn(&str)) -> Vec<(String, CaseResult)> {
    let Batch { cases: batch, ids, runs_on, jobs } = *work;
    // Per runtime, the indices in `batch` of the scenarios it runs.
    let part_of = |name: &str| -> Vec<usize> { (0..batch.len()).filter(|&i| runs_on.is_none_or(|on| on[i].iter().any(|n| n == name))).collect() };
    let parts: Vec<(usize, Vec<usize>)> = running.iter().enumerate().map(|(r, run)| (r, part_of(&run.name))).filter(|(_, part)| !part.is_empty()).collect();
    let ids_of = |part: &[usize]| -> Vec<CaseId> { ids.iter().filter(|id| part.iter().any(|&i| batch[i].name == id.scenario)).cloned().collect() };
    let building = Instant::now();
    let built = build_batch(batch).await;
    let providing = Instant::now();
    timings.build += providing - building;
    // Runtime -> why it cannot run its part of the batch.
    let failed: BTreeMap<String, String> = match &built {
        Err(e) => parts.iter().map(|(r, _)| (running[*r].name.clone(), format!("building the batch's images: {e:#}"))).collect(),
        Ok((catalogue, built)) => {
            let adds = running.iter_mut().enumerate().filter_map(|(r, run)| parts.iter().find(|(p, _)| *p == r).map(|(_, part)| (run, part))).map(|(run, part)| async move {
                // generate::catalogue gives scenario i and recipe i for case i.
                let mine = Catalogue { scenarios: part.iter().map(|&i| catalogue.scenarios[i].clone()).collect(), images: part.iter().map(|&i| catalogue.images[i].clone()).collect() };
                let images: Vec<&image::BuiltImage> = built.iter().filter(|b| mine.recipe(&b.name).is_some()).collect();
                (run.name.clone(), run.session.add(&mine, &images).await)
            });
            futures::future::join_all(adds).await.into_iter().filter_map(|(name, outcome)| outcome.err().map(|e| (name, format!("adding the batch's images: {e:#}")))).collect()
        }
    };
    timings.provision += providing.elapsed();
    let running_now = Instant::now();
    let running = &*running;
    let ran = futures::future::join_all(parts.iter().filter(|(r, _)| !failed.contains_key(&running[*r].name)).map(|(r, part)| async move {
        let r = &running[*r];
        let mut on_event = |event: outcome::Event<'_>| {
            if let outcome::Event::CaseFinished { .. } = event {
                on_case(&r.name);
            }
        };
        (r.name.clone(), run::run_cases(&r.session, r.session.catalogue(), &r.session.images, &ids_of(part), jobs, &mut on_event).await)
    }))
    .await;
    timings.run += running_now.elapsed();
    let case_runs: usize = parts.iter().map(|(_, part)| ids_of(part).len()).sum();
    tracing::info!(images = batch.len(), cases = ids.len(), case_runs, build_ms = (providing - building).as_millis() as u64, provision_ms = (running_now - providing).as_millis() as u64, run_ms = running_now.elapsed().as_millis() as u64, "batch");
    let mut out = Vec::new();
    for (name, results) in ran {
        out.extend(results.into_iter().map(|r| (name.clone(), r)));
    }
    for (r, part) in &parts {
        if let Some(why) = failed.get(&running[*r].name) {
            out.extend(ids_of(part).iter().map(|id| (running[*r].name.clone(), outcome::error_result(id, "", why))));
        }
    }
    out
}

/// What one batch runs: its generated scenarios, the cases of them, on which runtimes, how many
/// at once per runtime.
#[derive(Clone, Copy)]
struct Batch<'a> {
    cases: &'a [GenCase],
    ids: &'a [CaseId],
    /// For each of `cases`, the runtimes that run it; `None`: every runtime runs every case.
    runs_on: Option<&'a [Vec<String>]>,
    jobs: usize,
}

/// Loads a batch through the catalogue's parsers and builds its images (off the async threads).
async fn build_batch(batch: &[GenCase]) -> anyhow::Result<(Catalogue, Vec<image::BuiltImage>)> {
    let batch = batch.to_vec();
    tokio::task::spawn_blocking(move || {
        let catalogue = generate::catalogue(&batch)?;
        let built = catalogue.images.iter().map(|r| image::build(&ImageContent::from_recipe(r))).collect::<anyhow::Result<Vec<_>>>()?;
        Ok((catalogue, built))
    })
    .await?
}

/// How often a window is run again after a representative could not run one of its candidates.
pub const SHRINK_RETRIES: usize = 2;

/// What one candidate showed on the class's representatives.
enum Shown {
    Class,
    Other,
    /// A representative could not run it (ERROR): nothing is known.
    Unknown,
}

fn shown(class: &Class, results: &[(String, CaseResult)], id: &CaseId) -> Shown {
    let view: Vec<(&str, &CaseResult)> = results.iter().filter(|(n, r)| r.id == *id && class.representatives.contains(n)).map(|(n, r)| (n.as_str(), r)).collect();
    if view.len() < class.representatives.len() || view.iter().any(|(_, r)| r.judgement.verdict == Verdict::Error) {
        return Shown::Unknown;
    }
    match classify::classify(&view) {
        Some((key, _)) if key == class.representative_key => Shown::Class,
        _ => Shown::Other,
    }
}

async fn shrink_classes(running: &mut [Running], classes: &mut [Class], config: &DiscoverConfig, progress: &dyn Fn(Progress<'_>)) {
    // Shrinking's own build and run times are in the shrink time, not in the generation's.
    let mut timings = Timings::default();
    let started = Instant::now();
    let mut shrinkers: Vec<Shrinker> = classes.iter().map(|c| Shrinker::new(c.minimal.clone(), config.shrink_window, config.max_shrink_rounds)).collect();
    let mut retries = vec![0; classes.len()];
    for round in 1.. {
        // Every open class's next window, named uniquely for this round.
        let mut batch: Vec<GenCase> = Vec::new();
        let mut ids: Vec<CaseId> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        for (i, shrinker) in shrinkers.iter().enumerate() {
            for (k, candidate) in shrinker.window().iter().enumerate() {
                let name = format!("{}-c{:02}-r{round:03}-{k}", name_prefix(config.seed), classes[i].number);
                ids.push(CaseId { scenario: name.clone(), policy: classes[i].cases[0].policy });
                batch.push(GenCase { name, ..candidate.clone() });
                owners.push(i);
            }
        }
        if batch.is_empty() {
            break;
        }
        let runs_on = runs_on(owners.iter().map(|&i| classes[i].representatives.clone()).collect(), config.candidates_everywhere);
        let results = run_batch(running, &Batch { cases: &batch, ids: &ids, runs_on: Some(&runs_on), jobs: config.shrink_jobs }, &mut timings, &|_| {}).await;
        for (i, (shrinker, class)) in shrinkers.iter_mut().zip(classes.iter_mut()).enumerate() {
            if shrinker.is_done() {
                continue;
            }
            // The first candidate, in order, that shows the class; an unknown one before it
            // leaves the answer open, so the window runs again (the result must not depend on
            // which candidates happened to fail).
            let mine = owners.iter().zip(&ids).filter(|(owner, _)| **owner == i).map(|(_, id)| id);
            let mut kept = None;
            let mut unknown = false;
            for (k, id) in mine.enumerate() {
                match shown(class, &results, id) {
                    Shown::Class => {
                        kept = Some(k);
                        break;
                    }
                    Shown::Other => {}
                    Shown::Unknown => {
                        unknown = true;
                        break;
                    }
                }
            }
            if unknown && retries[i] < SHRINK_RETRIES {
                retries[i] += 1;
                class.shrink_errors += 1;
                continue;
            }
            retries[i] = 0;
            shrinker.observe(kept);
            if kept.is_some() {
                progress(Progress::Shrunk { number: class.number, step: shrinker.steps, case: &shrinker.current });
            }
            if shrinker.is_done() {
                class.shrink_time = started.elapsed();
            }
        }
    }
    for (class, shrinker) in classes.iter_mut().zip(shrinkers) {
        class.minimal = shrinker.current;
        class.shrink_rounds = shrinker.steps;
        class.candidates_run = shrinker.tried;
        class.cri_request = cri_request(&class.minimal, class.cases[0].policy);
    }
    verify(running, classes, config, &mut timings).await;
}

/// The runtimes each case of a batch runs on: its own class's, or with `everywhere` (the way
/// before 2026-12-03, `make bench`'s baseline) those of every class in the batch.
fn runs_on(own: Vec<Vec<String>>, everywhere: bool) -> Vec<Vec<String>> {
    if !everywhere {
        return own;
    }
    let mut every: Vec<String> = own.concat();
    every.sort();
    every.dedup();
    vec![every; own.len()]
}

/// Generated names start `d<seed>`: `d7-0012`, `d7-c01-r003-2`.
fn name_prefix(seed: u64) -> String {
    format!("d{seed}")
}

/// Runs every class's minimal case once more on all the class's runtimes: what the report shows
/// is that run, and whether it still shows the whole class.
async fn verify(running: &mut [Running], classes: &mut [Class], config: &DiscoverConfig, timings: &mut Timings) {
    if classes.is_empty() {
        return;
    }
    let batch: Vec<GenCase> = classes.iter().map(|c| GenCase { name: format!("{}-c{:02}-verify", name_prefix(config.seed), c.number), ..c.minimal.clone() }).collect();
    let ids: Vec<CaseId> = batch.iter().zip(classes.iter()).map(|(g, c)| CaseId { scenario: g.name.clone(), policy: c.cases[0].policy }).collect();
    let runs_on = runs_on(classes.iter().map(|c| c.key.runtimes()).collect(), config.candidates_everywhere);
    let results = run_batch(running, &Batch { cases: &batch, ids: &ids, runs_on: Some(&runs_on), jobs: config.shrink_jobs }, timings, &|_| {}).await;
    for (class, id) in classes.iter_mut().zip(&ids) {
        let wanted = class.key.runtimes();
        let view: Vec<(&str, &CaseResult)> = results.iter().filter(|(n, r)| r.id == *id && wanted.contains(n)).map(|(n, r)| (n.as_str(), r)).collect();
        class.verification_errors = view.iter().filter(|(_, r)| r.judgement.verdict == Verdict::Error).map(|(n, r)| format!("{n}: {}", r.judgement.reasons.join("; "))).collect();
        class.behaviours = crate::divergence::behaviours(&view);
        class.verified = class.verification_errors.is_empty() && classify::classify(&view).is_some_and(|(key, _)| key == class.key);
    }
}

/// The identity fields of the CRI requests a case sends, with the image user as kubelet
/// derives it from `ImageStatus`.
fn cri_request(case: &GenCase, policy: Policy) -> String {
    let Ok(catalogue) = generate::catalogue(std::slice::from_ref(case)) else { return String::new() };
    let (Some(scenario), Some(recipe)) = (catalogue.scenarios.first(), catalogue.images.first()) else { return String::new() };
    crate::driver::cri::identity_request(scenario, recipe, policy)
}
