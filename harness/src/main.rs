//! `sgpc`: parse the command line, call the library, map the outcome to an exit code.

use std::io::{IsTerminal, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

mod cli;

use cli::{Cli, Command, DiscoverArgs, ImagesCommand, MatrixArgs, RunArgs};
use sgpc::image::{self, Payload};
use sgpc::provision::state::StateDir;
use sgpc::report::{json, junit, terminal};
use sgpc::run::{self, exit_code, Event, RunReport, SessionConfig, TargetChoice};
use sgpc::scenario::Catalogue;
use sgpc::driver::Timeouts;

fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_env("SGPC_LOG")).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let code = match run_command(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code::ERROR
        }
    };
    std::process::exit(code);
}

fn run_command(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Images { command: ImagesCommand::Build { images, out, busybox } } => build_images(&images, &out, &busybox),
        Command::List { input, filter, explain } => {
            let catalogue = Catalogue::load(&input.scenarios, &input.images)?;
            for case in run::select_cases(&catalogue, filter.as_ref()) {
                let Some(scenario) = catalogue.scenario(&case.scenario) else { continue };
                println!("{case:<32} {}", scenario.summary);
                if explain {
                    explain_case(&catalogue, scenario, case.policy)?;
                }
            }
            Ok(exit_code::PASS)
        }
        Command::Matrix(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(run_matrix(args))
        }
        Command::Discover(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(run_discover(args))
        }
        Command::Fetch { suite, package, cache } => {
            let unpacked = sgpc::provision::debian::fetch(&cache, &suite, &package)?;
            println!("{package} {} from {suite} in {}", unpacked.version, unpacked.root.display());
            Ok(exit_code::PASS)
        }
        Command::Run(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(run_catalogue(args))
        }
        Command::Clean { dry_run } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let cleaned = runtime.block_on(run::clean_stale(&StateDir::from_env(), dry_run, Timeouts::default()));
            if cleaned.is_empty() {
                println!("nothing to clean: no run in {} was left by a process that is gone", StateDir::from_env().path.display());
            }
            print_cleaned(&cleaned, dry_run, &mut std::io::stdout().lock())?;
            Ok(if cleaned.iter().all(|c| c.problems.is_empty()) { exit_code::PASS } else { exit_code::ERROR })
        }
    }
}

/// One paragraph per stale run: what was (or would be) removed, and what could not be.
fn print_cleaned(cleaned: &[run::Cleaned], dry_run: bool, out: &mut dyn Write) -> std::io::Result<()> {
    for c in cleaned {
        let verb = if dry_run { "would clean" } else { "cleaned" };
        writeln!(out, "{verb} run {} (owner pid {} is gone), {}", c.record.run_id, c.record.owner.pid, c.record.dir.display())?;
        for action in &c.actions {
            writeln!(out, "  {action}")?;
        }
        for problem in &c.problems {
            writeln!(out, "  could not: {problem}")?;
        }
    }
    Ok(())
}

/// What earlier runs killed with SIGKILL left is removed before a new run starts.
async fn clean_before_run() -> anyhow::Result<()> {
    let cleaned = run::clean_stale(&StateDir::from_env(), false, Timeouts::default()).await;
    print_cleaned(&cleaned, false, &mut std::io::stderr().lock())?;
    Ok(())
}

/// `sgpc list --explain`: the expectation of a case and the rules that give it.
fn explain_case(catalogue: &Catalogue, scenario: &sgpc::scenario::Scenario, policy: sgpc::scenario::Policy) -> anyhow::Result<()> {
    let recipe = catalogue.recipe(&scenario.image).with_context(|| format!("no image recipe named {:?}", scenario.image))?;
    let derivation = sgpc::oracle::derive(recipe, scenario, policy)?;
    let expected = scenario.expectation(policy);
    println!("    expect {expected}");
    for line in &derivation.explanation {
        println!("      {line}");
    }
    if let Some(reason) = &expected.deviation {
        println!("      deliberate deviation from the model ({}): {reason}", derivation.identity);
    }
    Ok(())
}

fn build_images(dir: &Path, out: &Path, busybox: &Path) -> anyhow::Result<i32> {
    let payload = Payload { busybox: busybox.to_path_buf(), ..Payload::default() };
    let recipes = image::Recipe::load_dir(dir)?;
    for (built, path) in image::write_archives(&recipes, &payload, out, sgpc::driver::kube::IMAGE_REPOSITORY)? {
        println!("{:<16} {} {}", built.name, built.manifest.digest, path.display());
    }
    Ok(exit_code::PASS)
}

async fn shutdown_signal() -> String {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    let signal = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    signal.to_string()
}

async fn run_catalogue(args: RunArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let catalogue = Catalogue::load(&args.input.scenarios, &args.input.images)?;
    let cases = run::select_cases(&catalogue, args.filter.as_ref());
    if cases.is_empty() {
        anyhow::bail!("no case matches the filter; `sgpc list` shows the case ids");
    }
    // Opened before anything runs, so that an unwritable path costs nothing.
    let outputs = RunOutputs { junit: args.junit.as_deref().map(Output::open).transpose()?, json: args.json.as_deref().map(Output::open).transpose()? };
    if !args.work_root.is_dir() {
        anyhow::bail!("--work-root {} is not a directory", args.work_root.display());
    }
    if args.kube {
        return run_kube(&args, &catalogue, &cases, started, outputs).await;
    }
    let config = args.session_config()?;
    clean_before_run().await?;
    let stdout = std::io::stdout();
    let style = terminal::Style { color: stdout.is_terminal(), verbose: args.verbose };
    let on_event = |event: Event<'_>| {
        let mut out = stdout.lock();
        let _ = match event {
            Event::Started { total, runtime } => terminal::write_header(&mut out, style, runtime, total),
            Event::CaseFinished { result, done, total } => terminal::write_case(&mut out, style, result, done, total),
        };
        let _ = out.flush();
    };
    let run = run::run_session(&config, &catalogue, &cases, usize::from(args.jobs), shutdown_signal(), on_event).await;
    // Cases that never finished (set-up failed or the run was interrupted) are ERROR, for one
    // reason that the summary prints once.
    if !run.not_run.is_empty() {
        let names: Vec<String> = run.not_run.iter().map(ToString::to_string).collect();
        println!("           ERROR {} cases not run (the reason follows): {}", run.not_run.len(), names.join(" "));
    }
    let mut report = run.report;
    report.duration = started.elapsed();
    finish_run(&report, outputs, style)
}

async fn run_matrix(args: MatrixArgs) -> anyhow::Result<i32> {
    let catalogue = Catalogue::load(&args.input.scenarios, &args.input.images)?;
    let entries = sgpc::matrix::load(&args.file, &catalogue)?;
    let [markdown, html, json] = ["matrix.md", "matrix.html", "matrix.json"].map(|name| Output::open(&args.out.join(name)));
    let (markdown, html, json) = (markdown?, html?, json?);
    if !args.work_root.is_dir() {
        anyhow::bail!("--work-root {} is not a directory", args.work_root.display());
    }
    clean_before_run().await?;
    let cases = run::select_cases(&catalogue, args.filter.as_ref());
    let mut base = SessionConfig::new(TargetChoice::Cri { endpoint: String::new() });
    base.work_root = args.work_root.clone();
    let config = sgpc::matrix::MatrixConfig { base, cache: args.cache.clone(), jobs: usize::from(args.jobs) };
    println!("Running {} cases on {} runtimes: {}", cases.len(), entries.len(), entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", "));
    let report = tokio::select! {
        report = sgpc::matrix::run_matrix_with_progress(&entries, &catalogue, &cases, &config, &matrix_progress) => report,
        signal = shutdown_signal() => anyhow::bail!("interrupted by {signal}; every runtime was stopped"),
    };
    for column in &report.columns {
        println!("{:<24} {}", column.name, column.summary);
        for deviation in &column.deviations {
            println!("{:<24}   DEVIATION {deviation}", "");
        }
    }
    let expected_leaks = report.divergences.iter().filter(|d| d.only_missing_feature).count();
    match report.divergences.len() {
        0 => println!("No divergence: every runtime that ran a case attached the same identity"),
        n => println!("Divergences on {n} cases ({} where runtimes disagree, {expected_leaks} expected Strict leaks); see the reports", n - expected_leaks),
    }
    use sgpc::report::matrix as m;
    markdown.write(|out| m::write_markdown(out, &report))?;
    html.write(|out| m::write_html(out, &report))?;
    json.write(|out| m::write_json(out, &report))?;
    println!("Matrix [{:>8.3}s] reports in {}", report.duration.as_secs_f64(), args.out.display());
    Ok(report.exit_code())
}

async fn run_discover(args: DiscoverArgs) -> anyhow::Result<i32> {
    use sgpc::discover::{self, Progress};
    use sgpc::report::discover as d;
    let catalogue = Catalogue::load(&args.input.scenarios, &args.input.images)?;
    let entries = sgpc::matrix::load(&args.matrix, &catalogue)?;
    let [markdown, json] = ["discovery.md", "discovery.json"].map(|name| Output::open(&args.out.join(name)));
    let (markdown, json) = (markdown?, json?);
    if !args.work_root.is_dir() {
        anyhow::bail!("--work-root {} is not a directory", args.work_root.display());
    }
    clean_before_run().await?;
    let config = args.config();
    println!("Discovering with seed {}: {} cases on {} runtimes: {}", args.seed, args.cases, entries.len(), entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", "));
    let progress = |event: Progress<'_>| match event {
        Progress::RuntimeStarted { runtime, info } => println!("{runtime:<24} started: {} {}", info.runtime_name, info.runtime_version),
        Progress::RuntimeNotRun { runtime, reason } => println!("{runtime:<24} not run: {reason}"),
        Progress::CaseDone { runtime, done, total, classes, elapsed } => println!("{runtime:<24} {done:>5}/{total} cases, {classes} classes, {:.0} s", elapsed.as_secs_f64()),
        Progress::ClassFound { number, key, case } => println!("class {number:>2} found on {case}: {}", key.describe()),
        Progress::Shrunk { number, step, case } => {
            let lines = |l: &Option<Vec<String>>| l.as_ref().map_or(0, Vec::len);
            println!("class {number:>2} shrink step {step}: {} passwd + {} group lines", lines(&case.passwd), lines(&case.group));
        }
    };
    let report = tokio::select! {
        report = discover::discover(&entries, &config, &progress) => report,
        signal = shutdown_signal() => anyhow::bail!("interrupted by {signal}; every runtime sgpc started was stopped (`sgpc clean` removes what a --cri runtime still holds)"),
    };
    for class in &report.classes {
        let verified = if class.verified { "verified" } else { "NOT verified on every runtime" };
        println!("Class {:>2} ({} cases, shrunk in {} steps, {verified}): {}", class.number, class.cases.len(), class.shrink_rounds, class.description);
    }
    let classes_dir = args.out.join("classes");
    if classes_dir.is_dir() {
        // Classes of an earlier discovery would read as this one's.
        let ours = regex::Regex::new(r"^c\d{2,}$")?;
        for entry in std::fs::read_dir(&classes_dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() && ours.is_match(&entry.file_name().to_string_lossy()) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
    }
    for (path, text) in d::class_files(&report) {
        let path = args.out.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    markdown.write(|out| d::write_markdown(out, &report))?;
    json.write(|out| d::write_json(out, &report))?;
    println!("Discovery [{:>8.3}s] {} classes; reports in {}", report.duration.as_secs_f64(), report.classes.len(), args.out.display());
    Ok(report.exit_code())
}

/// One line per finished case, prefixed by its column, and one when a column starts.
fn matrix_progress(column: &str, event: run::Event<'_>) {
    match event {
        run::Event::Started { total, runtime } => println!("{column:<24} started: {} {}, {total} cases", runtime.runtime_name, runtime.runtime_version),
        run::Event::CaseFinished { result, done, total } => println!("{column:<24} {:>16} ({done:>3}/{total}) {}", result.judgement.verdict.to_string(), result.id),
    }
}

/// The report files of a run, opened before it starts.
struct RunOutputs {
    junit: Option<Output>,
    json: Option<Output>,
}

/// Prints the summary, writes the JUnit and JSON reports asked for, and gives the exit code.
fn finish_run(report: &RunReport, outputs: RunOutputs, style: terminal::Style) -> anyhow::Result<i32> {
    terminal::write_summary(&mut std::io::stdout().lock(), style, report)?;
    if let Some(output) = outputs.junit {
        output.write(|out| junit::write(out, report))?;
    }
    if let Some(output) = outputs.json {
        output.write(|out| json::write(out, report))?;
    }
    Ok(report.exit_code())
}

/// `sgpc run --kube`: the cases as Pods on a cluster; the namespace is removed at the end.
async fn run_kube(args: &RunArgs, catalogue: &Catalogue, cases: &[sgpc::scenario::CaseId], started: Instant, outputs: RunOutputs) -> anyhow::Result<i32> {
    let payload = Payload { busybox: args.busybox.clone(), ..Payload::default() };
    let run_id = format!("sgpc-{}", std::process::id());
    let plan = run::KubePlan::new(catalogue, cases, &payload, &run_id)?;
    if args.dry_run {
        print!("{}", plan.manifests_yaml(catalogue, cases)?);
        return Ok(exit_code::PASS);
    }
    let timeout = Duration::from_secs(args.probe_timeout + args.pull_timeout);
    let work = tempfile::Builder::new().prefix("sgpc-kube-").tempdir_in(&args.work_root)?;
    let cluster = match &args.kind {
        None => None,
        Some(node_image) => {
            let archives = image::write_archives(&catalogue.images, &payload, work.path(), sgpc::driver::kube::IMAGE_REPOSITORY)?;
            let archives: Vec<PathBuf> = archives.into_iter().map(|(_, path)| path).collect();
            Some(sgpc::provision::kind::prepare(node_image, args.reuse_cluster, &archives, work.path())?)
        }
    };
    let kubeconfig = cluster.as_ref().map(|c| c.kubeconfig.clone()).or_else(|| args.kubeconfig.clone());
    let outcome = run_kube_on_cluster(args, catalogue, cases, &plan, kubeconfig.as_deref(), timeout, started, outputs).await;
    if let Some(cluster) = cluster {
        cluster.finish()?;
    }
    outcome
}

// The kube path still wires its own lifecycle here; the runner issue (#9) folds it into one loop.
#[allow(clippy::too_many_arguments)]
async fn run_kube_on_cluster(
    args: &RunArgs,
    catalogue: &Catalogue,
    cases: &[sgpc::scenario::CaseId],
    plan: &run::KubePlan,
    kubeconfig: Option<&Path>,
    timeout: Duration,
    started: Instant,
    outputs: RunOutputs,
) -> anyhow::Result<i32> {
    use sgpc::driver::kube::KubeDriver;
    let stdout = std::io::stdout();
    let style = terminal::Style { color: stdout.is_terminal(), verbose: args.verbose };
    let mut report = RunReport::empty();
    report.images = plan.images.values().cloned().collect();
    let target = KubeDriver::connect(kubeconfig, timeout).await?;
    let minor = target.server_minor().await.context("asking the API server for its version")?;
    report.runtime = Some(sgpc::driver::cri::RuntimeInfo {
        endpoint: args.kubeconfig.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "default kubeconfig".into()),
        runtime_name: "kubernetes".into(),
        runtime_version: format!("1.{minor}"),
        runtime_api_version: "v1".into(),
        supplemental_groups_policy: false,
    });
    target.create_namespace(&plan.namespace, &plan.run_id).await.context("creating the run's namespace")?;
    let on_event = |result: &run::CaseResult, done: usize, total: usize| {
        let _ = terminal::write_case(&mut stdout.lock(), style, result, done, total);
    };
    tokio::select! {
        results = run::run_kube_cases(&target, plan, catalogue, cases, minor, usize::from(args.jobs), on_event) => report.cases = results,
        signal = shutdown_signal() => report.setup_error = Some(format!("interrupted by {signal}; cases not finished are ERROR")),
    }
    if let Err(e) = target.delete_namespace(&plan.namespace).await {
        report.setup_error = Some(format!("deleting namespace {}: {e:#}", plan.namespace));
    }
    let reason = report.setup_error.clone().unwrap_or_else(|| "not run".into());
    run::fill_unfinished(&mut report.cases, cases, catalogue, &reason);
    report.duration = started.elapsed();
    finish_run(&report, outputs, style)
}

/// A report file, created (with its directories) when a run starts and written when it ends.
struct Output {
    path: PathBuf,
    file: std::fs::File,
}

impl Output {
    fn open(path: &Path) -> anyhow::Result<Output> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create the report directory {}", parent.display()))?;
        }
        let cannot = || format!("cannot create the report file {}", path.display());
        let mut file = std::fs::File::create(path).with_context(cannot)?;
        // Some files open for writing but refuse every write (procfs, sysfs, a full disk): one
        // byte written and taken back finds out now rather than after the run.
        if file.metadata().with_context(cannot)?.is_file() {
            file.write_all(b"\n").and_then(|()| file.set_len(0)).and_then(|()| file.rewind()).with_context(cannot)?;
        }
        Ok(Output { path: path.to_path_buf(), file })
    }

    fn write(self, write: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::new(self.file);
        write(&mut out).and_then(|()| Ok(out.flush()?)).with_context(|| format!("cannot write the report file {}", self.path.display()))
    }
}
