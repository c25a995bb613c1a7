//! Mutation tests: the catalogue through `sgpc-cri-proxy`, one fault at a time, against real
//! containerd. Each fault must give exactly the verdicts its description implies, computed here
//! from the scenarios' written expectations, with a reason that names the fault in KEP terms.
//! One trial per fault; prints `mutants caught: N/N`; any survivor fails its trial.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Arguments, Trial};

use sgpc::outcome::CaseResult;
use sgpc::proxy::Fault;
use sgpc::run::{run_cases, ProxySettings, Session};
use sgpc::scenario::{Catalogue, CaseId, Policy};
use sgpc::verdict::Verdict;

/// What a fault must do to one case.
#[derive(Debug)]
enum Expect {
    Pass,
    PassWithNote(&'static str),
    Fail(&'static str),
    Unsupported(&'static str),
    Error(&'static str),
    /// Anything but a pass.
    NotPass,
}

/// What a mutant must give for a case, by its position in the run.
type ExpectFn = Box<dyn Fn(&Catalogue, &CaseId, usize) -> Expect + Send>;

/// The runtime a mutant runs on: containerd for every case it can run; CRI-O (over the runc
/// `make setup` builds) for the `hostUsers: false` cases, which a containerd sgpc starts cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Containerd,
    CrioUserNamespaces,
}

struct Mutant {
    fault: Fault,
    on: On,
    pods: Option<&'static str>,
    jobs: usize,
    expect: ExpectFn,
    /// Two busy loops run beside it: the run must still clean up after itself.
    under_load: bool,
}

impl Mutant {
    fn new(fault: Fault, pods: Option<&'static str>, jobs: usize, expect: impl Fn(&Catalogue, &CaseId, usize) -> Expect + Send + 'static) -> Mutant {
        Mutant { fault, on: On::Containerd, pods, jobs, expect: Box::new(expect), under_load: false }
    }
}

/// Busy loops, one per core, that live as long as the value.
struct CpuHogs(Vec<std::process::Child>);

impl CpuHogs {
    fn start(count: usize) -> CpuHogs {
        CpuHogs((0..count).map(|_| std::process::Command::new("/bin/sh").args(["-c", "while :; do :; done"]).spawn().expect("a busy loop starts")).collect())
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        for hog in &mut self.0 {
            let _ = hog.kill();
            let _ = hog.wait();
        }
    }
}

fn strict_differs(catalogue: &Catalogue, case: &CaseId) -> bool {
    let s = catalogue.scenario(&case.scenario).unwrap();
    case.policy == Policy::Strict && s.expect_merge.identity != s.expect_strict.identity
}

fn carries_escalation(catalogue: &Catalogue, case: &CaseId) -> bool {
    let scenario = catalogue.scenario(&case.scenario).unwrap();
    catalogue.recipe(&scenario.image).unwrap().escalation_gid.is_some()
}

/// Whether a container of a Pod of several is sent other identity fields than its Pod's first
/// container (an init container counts: it is created first).
fn identity_differs_from_first_container(catalogue: &Catalogue, case: &CaseId) -> bool {
    let scenario = catalogue.scenario(&case.scenario).unwrap();
    let Some(member) = &scenario.member else { return false };
    let first = catalogue.scenarios.iter().find(|s| s.member.as_ref().is_some_and(|m| m.pod == member.pod)).unwrap();
    let sent = |s: &sgpc::scenario::Scenario| sgpc::driver::cri::identity_request(s, catalogue.recipe(&s.image).unwrap(), case.policy).split_once("CreateContainer").map(|(_, c)| c.to_string());
    first.name != scenario.name && sent(first) != sent(scenario)
}

/// Whether an init container of the case's Pod starts before it.
fn after_an_init_container(catalogue: &Catalogue, case: &CaseId) -> bool {
    let scenario = catalogue.scenario(&case.scenario).unwrap();
    let Some(member) = &scenario.member else { return false };
    let first_init = catalogue.scenarios.iter().find(|s| s.member.as_ref().is_some_and(|m| m.pod == member.pod && m.init));
    first_init.is_some_and(|init| init.name != scenario.name)
}

fn mutants(catalogue: &Catalogue) -> Vec<Mutant> {
    let kill_at = mutant_cases(catalogue, On::Containerd).iter().position(|c| c.to_string() == "kep-blog/strict").unwrap();
    let kill_runtime = move |_: &Catalogue, _: &CaseId, index: usize| if index >= kill_at { Expect::Error("failed") } else { Expect::Pass };
    vec![
        Mutant::new(Fault::StrictToMerge, None, 4, |cat, case, _| if strict_differs(cat, case) { Expect::Fail("from image /etc/group") } else { Expect::Pass }),
        Mutant::new(Fault::HideFeature, None, 4, |_, case, _| {
            if case.policy == Policy::Strict {
                Expect::Unsupported("does not advertise features.supplemental_groups_policy")
            } else {
                Expect::Pass
            }
        }),
        Mutant::new(Fault::DropStatusUser, None, 4, |_, _, _| Expect::Fail("ContainerStatus.user is missing")),
        Mutant::new(Fault::WrongStatusGid, None, 4, |_, _, _| Expect::Fail("primary gid via CRI ContainerStatus.user")),
        Mutant::new(Fault::ExtraStatusGroup, None, 4, |_, _, _| Expect::Fail("groups via CRI ContainerStatus.user")),
        Mutant::new(Fault::ReorderStatusGroups, None, 4, |_, _, _| Expect::PassWithNote("CRI ContainerStatus.user lists groups unsorted")),
        Mutant::new(Fault::DropPrimaryGid, None, 4, |_, _, _| Expect::Fail(sgpc::verdict::PRIMARY_GID_RULE)),
        // Where the image carries escalation programs, the fault must show as the escalation
        // it lets through, not only as the flag it clears.
        Mutant::new(Fault::KeepCapabilities, None, 4, |cat, case, _| match (cat.scenario(&case.scenario).unwrap().container.drops_all_capabilities(), carries_escalation(cat, case)) {
            (true, true) => Expect::Fail(sgpc::verdict::ESCALATION_RULE),
            (true, false) => Expect::Fail(sgpc::verdict::DROP_ALL_RULE),
            (false, _) => Expect::Pass,
        }),
        Mutant::new(Fault::ClearNoNewPrivs, None, 4, |cat, case, _| match (cat.scenario(&case.scenario).unwrap().container.no_new_privs(), carries_escalation(cat, case)) {
            (true, true) => Expect::Fail(sgpc::verdict::ESCALATION_RULE),
            (true, false) => Expect::Fail(sgpc::verdict::NO_NEW_PRIVS_RULE),
            (false, _) => Expect::Pass,
        }),
        Mutant { on: On::CrioUserNamespaces, ..Mutant::new(Fault::IgnoreUserNamespace, None, 4, |_, _, _| Expect::Fail(sgpc::verdict::USER_NAMESPACE_RULE)) },
        Mutant::new(Fault::CopyFirstContainerIdentity, None, 4, |cat, case, _| if identity_differs_from_first_container(cat, case) { Expect::Fail("uid via") } else { Expect::Pass }),
        Mutant::new(Fault::Slow, Some("^kep-blog-strict$"), 4, |_, case, _| {
            if case.to_string() == "kep-blog/strict" {
                Expect::Error("RunPodSandbox did not finish within")
            } else {
                Expect::Pass
            }
        }),
        Mutant::new(Fault::CloseConnection, Some("^kep-blog-merge$"), 1, |_, case, _| {
            if case.to_string() == "kep-blog/merge" {
                Expect::Error("CreateContainer failed")
            } else {
                Expect::Pass
            }
        }),
        Mutant::new(Fault::KillRuntime, Some("^kep-blog-strict$"), 1, kill_runtime),
        Mutant { under_load: true, ..Mutant::new(Fault::KillRuntime, Some("^kep-blog-strict$"), 1, kill_runtime) },
        // Other bytes behind the reference: never a pass. A container that runs is ERROR naming
        // the digests; without runAsUser the user sent is the asked-for image's (as kubelet does),
        // which the other bytes may lack, so the runtime may refuse before any container exists.
        Mutant::new(Fault::SwapImage, None, 4, |cat, case, _| {
            let s = cat.scenario(&case.scenario).unwrap();
            // The init container before it ran other bytes (ERROR): nothing starts after it.
            if after_an_init_container(cat, case) {
                Expect::Error("not started: init container")
            } else if s.container.run_as_user.or(s.pod.run_as_user).is_some() {
                Expect::Error("not the bytes sgpc built")
            } else {
                Expect::NotPass
            }
        }),
        // A runtime's error text never reaches the terminal raw (checked for every mutant below).
        Mutant::new(Fault::PaintTerminal, Some("^kep-blog-strict$"), 4, |_, case, _| if case.to_string() == "kep-blog/strict" { Expect::NotPass } else { Expect::Pass }),
        // A shim killed with its sandbox alive leaves its socket in the host's shim directory:
        // the run's teardown removes it (checked for every mutant below).
        Mutant::new(Fault::KillShim, Some("^kep-blog-strict$"), 4, |_, case, _| if case.to_string() == "kep-blog/strict" { Expect::NotPass } else { Expect::Pass }),
    ]
}

/// The case as the terminal shows it, if it holds a control character other than a newline.
fn painted(result: &CaseResult) -> Option<String> {
    let mut out = Vec::new();
    let style = sgpc::report::terminal::Style { color: false, verbose: true };
    sgpc::report::terminal::write_case(&mut out, style, result, 1, 1).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.chars().any(|c| c.is_control() && c != '\n').then(|| format!("{}: the terminal line carries raw control characters: {text:?}", result.id))
}

/// Why a case does not meet its expectation, if it does not.
fn mismatch(result: &CaseResult, expect: &Expect) -> Option<String> {
    let j = &result.judgement;
    let has_reason = |needle: &str| j.reasons.iter().any(|r| r.contains(needle));
    let ok = match expect {
        Expect::Pass => j.verdict == Verdict::Pass,
        Expect::PassWithNote(note) => j.verdict == Verdict::Pass && j.notes.iter().any(|n| n.contains(note)),
        Expect::Fail(reason) => j.verdict == Verdict::Fail && has_reason(reason),
        Expect::Unsupported(reason) => j.verdict == Verdict::Unsupported { leak: false } && has_reason(reason),
        Expect::Error(reason) => j.verdict == Verdict::Error && has_reason(reason),
        Expect::NotPass => !matches!(j.verdict, Verdict::Pass | Verdict::Rejected),
    };
    (!ok).then(|| format!("{}: expected {expect:?}, got {} {:?} notes {:?}", result.id, j.verdict, j.reasons, j.notes))
}

/// Runs the catalogue through the proxy with one fault; `Err` lists the cases it got wrong.
/// The cases a mutant runs: a mutant needs a baseline that passes with one right outcome, so
/// the scenarios with a known finding on containerd (`support::CONTAINERD_KNOWN_FINDINGS`) and
/// those the specs leave open are left out.
fn mutant_cases(catalogue: &Catalogue, on: On) -> Vec<CaseId> {
    if on == On::CrioUserNamespaces {
        return catalogue.cases().into_iter().filter(|c| catalogue.scenario(&c.scenario).is_some_and(|s| s.pod.user_namespace())).collect();
    }
    catalogue
        .cases()
        .into_iter()
        // A fault may turn one policy into another: the whole scenario must pass.
        .filter(|c| !support::CONTAINERD_KNOWN_FINDINGS.iter().any(|(id, _, _)| id.split('/').next() == Some(c.scenario.as_str())))
        .filter(|c| catalogue.scenario(&c.scenario).is_some_and(|s| s.expect_merge.allowed.is_empty() && s.expect_strict.allowed.is_empty()))
        // A containerd sgpc starts runs no Pod with hostUsers: false (NOT RUN).
        .filter(|c| catalogue.scenario(&c.scenario).is_some_and(|s| !s.pod.user_namespace()))
        .collect()
}

async fn run_mutant(catalogue: &Catalogue, mutant: &Mutant) -> Result<(), String> {
    let cases = mutant_cases(catalogue, mutant.on);
    let mut config = match mutant.on {
        On::Containerd => support::containerd_config(),
        On::CrioUserNamespaces => support::crio_config()?,
    };
    let mut proxy = ProxySettings::beside_current_exe(vec![mutant.fault]);
    proxy.pods = mutant.pods.map(str::to_string);
    // A pod-scoped fault selects a sandbox by its case's name, and copy-first-container-identity
    // is judged per Pod as written: both run one sandbox per case. Every other mutant runs the
    // shared sandboxes `sgpc run` uses.
    config.settings.share_sandboxes = mutant.pods.is_none() && mutant.fault != Fault::CopyFirstContainerIdentity;
    // Only `slow` needs a short RPC timeout (it holds one call past it); every other mutant keeps
    // the default, so that a loaded machine cannot turn an innocent case into an ERROR.
    if mutant.fault == Fault::Slow {
        proxy.delay = Duration::from_secs(20);
        config.settings.timeouts.rpc = Duration::from_secs(10);
    }
    config.settings.proxy = Some(proxy);
    let _hogs = mutant.under_load.then(|| CpuHogs::start(2));
    let work_root = tempfile::tempdir().map_err(|e| e.to_string())?;
    config.settings.work_root = work_root.path().to_path_buf();

    let host_paths_before = support::host_runtime_paths();
    let session = Session::start(&config, catalogue, &cases).await.map_err(|e| format!("ERROR: session with proxy did not start: {e:#}"))?;
    let results = run_cases(&session, session.catalogue(), &session.images, &cases, mutant.jobs, &mut |_| {}).await;
    session.teardown().await.map_err(|e| format!("teardown failed: {e:#}"))?;
    if std::fs::read_dir(work_root.path()).map(|d| d.count()).unwrap_or(1) != 0 || !sgpc::provision::processes_under(work_root.path()).is_empty() {
        return Err("the run left files or processes behind".into());
    }
    let left = support::new_host_runtime_paths(&host_paths_before);
    if !left.is_empty() {
        return Err(format!("the run left these in the host's runtime paths: {left:?}"));
    }
    let wrong: Vec<String> = results.iter().enumerate().filter_map(|(i, r)| mismatch(r, &(mutant.expect)(catalogue, &r.id, i)).or_else(|| painted(r))).collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("SURVIVED:\n  {}", wrong.join("\n  ")))
    }
}

fn main() {
    let mut args = Arguments::from_args();
    // One containerd at a time: the `slow` fault relies on a 10 s RPC timeout, which a
    // machine loaded by several runtimes at once could trip for innocent cases.
    args.test_threads = Some(1);
    let catalogue = Arc::new(support::catalogue());
    let caught = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let trials = mutants(&catalogue)
        .into_iter()
        .map(|mutant| {
            let fault = clap::ValueEnum::to_possible_value(&mutant.fault).map(|v| v.get_name().to_string()).unwrap_or_default();
            let name = if mutant.under_load { format!("{fault}-beside-two-cpu-hogs") } else { fault };
            let (catalogue, caught, ran) = (catalogue.clone(), caught.clone(), ran.clone());
            let unavailable = match mutant.on {
                On::Containerd => None,
                On::CrioUserNamespaces => support::crio_config().err().or_else(|| support::userns_not_run("crio").map(str::to_string)),
            };
            if let Some(why) = &unavailable {
                eprintln!("not run: mutant {name}: {why}");
            }
            Trial::test(name, move || {
                ran.fetch_add(1, Ordering::SeqCst);
                let tokio = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
                tokio.block_on(run_mutant(&catalogue, &mutant))?;
                caught.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .with_kind("mutant")
            .with_ignored_flag(unavailable.is_some())
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    let ran = ran.load(Ordering::SeqCst);
    if ran > 0 {
        println!("mutants caught: {}/{ran}", caught.load(Ordering::SeqCst));
    }
    conclusion.exit();
}
