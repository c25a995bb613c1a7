//! `sgpc`: parse the command line, wire signals and reporters, call the library, map the
//! outcome to an exit code.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;

mod cli;

use cli::{Cli, Command, DiscoverArgs, ImagesCommand, MatrixArgs, RunArgs};
use sgpc::driver::Timeouts;
use sgpc::outcome::{self, exit_code};
use sgpc::provision::state::StateDir;
use sgpc::report::{self, terminal, Output, RunReporters};
use sgpc::run;

fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_env("SGPC_LOG")).with_writer(std::io::stderr).init();
    let code = run_command(Cli::parse()).unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        exit_code::ERROR
    });
    std::process::exit(code);
}

fn run_command(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Images { command: ImagesCommand::Build { images, out } } => {
            let recipes = sgpc::image::Recipe::from_files(sgpc::builtin::files(images.as_deref(), "images")?)?;
            eprintln!("catalogue: {}", sgpc::builtin::describe(images.as_deref(), "images"));
            for (built, path) in sgpc::image::write_archives(&recipes, &out, sgpc::driver::kube::IMAGE_REPOSITORY)? {
                println!("{:<16} {} {}", built.name, built.manifest.digest, path.display());
            }
            Ok(exit_code::PASS)
        }
        Command::List { input, filter, explain } => {
            let catalogue = load_catalogue(&input)?.catalogue;
            terminal::write_list(&mut std::io::stdout().lock(), &catalogue, &outcome::select_cases(&catalogue, filter.as_ref()), explain)?;
            Ok(exit_code::PASS)
        }
        Command::Fetch { suite, package, cache } => {
            let unpacked = sgpc::provision::debian::fetch(&cache, &suite, &package)?;
            println!("{package} {} from {suite} in {}", unpacked.version, unpacked.root.display());
            Ok(exit_code::PASS)
        }
        Command::Build { program, version } => {
            let dir = sgpc::provision::gomodule::ensure(program.into(), &version, &mut std::io::stderr())?;
            println!("{}", dir.display());
            Ok(exit_code::PASS)
        }
        Command::Run(args) => block_on(run_catalogue(*args)),
        Command::Verify { bundles } => verify(&bundles),
        Command::Plugin { out, repository, socket, work_root, registry } => {
            let sgpc = std::env::current_exe().context("finding sgpc's own binary")?;
            let content = sgpc::plugin::image(&sgpc, &registry)?;
            let paths = sgpc::plugin::NodePaths::new(socket, work_root, None, &content)?;
            // Before the build: an --out that cannot be a directory fails in a moment.
            fs_err::create_dir_all(&out)?;
            let built = sgpc::image::build(&content)?;
            let archive = out.join("sgpc-plugin.oci.tar");
            built.write_archive(&archive, &repository)?;
            let reference = format!("{repository}/{}:{}", built.name, built.tag());
            let definition = out.join("sgpc-plugin.yaml");
            sgpc::image::write_replacing(&definition, serde_saphyr::to_string(&sgpc::plugin::sonobuoy_definition(&reference, &paths))?.as_bytes())?;
            println!("{reference} {}\n{}\n{}", built.manifest.digest, archive.display(), definition.display());
            Ok(exit_code::PASS)
        }
        Command::Matrix(args) => block_on(run_matrix(args)),
        Command::Discover(args) => block_on(run_discover(args)),
        Command::Clean { dry_run } => block_on(async move {
            let cleaned = clean(dry_run, &mut std::io::stdout().lock()).await?;
            if cleaned.is_empty() {
                println!("nothing to clean: no run in {} was left by a process that is gone", StateDir::from_env().path.display());
            }
            Ok(if cleaned.iter().all(|c| c.problems.is_empty()) { exit_code::PASS } else { exit_code::ERROR })
        }),
    }
}

/// The catalogue the arguments name, and on stderr which one it is.
fn load_catalogue(input: &cli::InputArgs) -> anyhow::Result<cli::LoadedCatalogue> {
    let loaded = input.load()?;
    eprintln!("catalogue: {}", input.describe());
    Ok(loaded)
}

fn block_on(work: impl std::future::Future<Output = anyhow::Result<i32>>) -> anyhow::Result<i32> {
    tokio::runtime::Runtime::new().context("starting the async runtime")?.block_on(work)
}

/// Removes what runs killed with SIGKILL left (also before every run), and says what.
async fn clean(dry_run: bool, out: &mut dyn std::io::Write) -> anyhow::Result<Vec<run::Cleaned>> {
    let state = StateDir::from_env();
    // A record tells clean what to kill and delete: only ever from a directory that is ours alone.
    if state.path.exists() {
        state.secure()?;
    }
    let cleaned = run::clean_stale(&state, dry_run, Timeouts::default()).await;
    terminal::write_cleaned(out, &cleaned, dry_run)?;
    Ok(cleaned)
}

async fn shutdown_signal() -> String {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else { return std::future::pending().await };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT".to_string(),
        _ = term.recv() => "SIGTERM".to_string(),
    }
}

async fn run_catalogue(args: RunArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.kubeconfig.is_none() || args.kube || args.node.is_some(), "--kubeconfig goes with --kube or --node");
    let loaded = load_catalogue(&args.input)?;
    let catalogue = &loaded.catalogue;
    let cases = outcome::select_cases(catalogue, args.filter.as_ref());
    anyhow::ensure!(!cases.is_empty(), "no case matches the filter; `sgpc list` shows the case ids");
    if args.no_deviations {
        catalogue.refuse_deviations(&cases)?;
    }
    let style = terminal::Style { color: std::io::stdout().is_terminal(), verbose: args.verbose };
    let filter = args.filter.as_ref().map(|f| f.as_str().to_string());
    let mut reporters = RunReporters::new(style, args.junit.as_deref(), args.json.as_deref())?.with_filter(filter);
    let bundle = args.bundle.clone().or_else(|| args.sonobuoy_results.as_ref().map(|dir| dir.join("sgpc.tar.gz")));
    if let Some(path) = &bundle {
        let mut bundle = report::bundle::BundleReport::new(path, &loaded.scenario_files, &loaded.image_files)?;
        if let Some(dir) = &args.sonobuoy_results {
            bundle = bundle.with_sonobuoy_done(dir);
        }
        reporters = reporters.with(bundle);
    }
    let on_event = |event: outcome::Event<'_>| reporters.on_event(event);
    let run = if args.kube {
        let built = catalogue.build_images(&cases)?;
        let plan = sgpc::driver::kube::KubePlan::of_built(&built, &format!("sgpc-{}", std::process::id()));
        let config = args.kube_config(built);
        if args.dry_run {
            print!("{}", plan.manifests_yaml(catalogue, &cases)?);
            return Ok(exit_code::PASS);
        }
        run::run_kube_session(&config, plan, catalogue, &cases, usize::from(args.jobs), shutdown_signal(), on_event).await?
    } else {
        let target = args.target()?;
        let config = args.session_config(&target)?;
        clean(false, &mut std::io::stderr().lock()).await?;
        let existing = args.node.as_ref().map(|name| run::ExistingNode { name: name.clone(), kubeconfig: args.kubeconfig.clone() });
        let level = match (&existing, &target.node) {
            (Some(node), _) => run::Level::ExistingNode(node),
            (None, Some(choice)) => run::Level::LiveNode(choice),
            (None, None) => run::Level::Cri,
        };
        run::run_session(&config, level, catalogue, &cases, usize::from(args.jobs), shutdown_signal(), on_event).await
    };
    let written = reporters.finish();
    if args.sonobuoy_results.is_some() {
        // Exiting would make the DaemonSet run everything again over the bundle sonobuoy's
        // worker may be uploading: a report that could not be written is said, then the wait.
        if let Err(e) = &written {
            eprintln!("error: {e:#}");
        }
        eprintln!("sonobuoy: waiting for SIGTERM (a DaemonSet restarts a container that exits)");
        let signal = shutdown_signal().await;
        eprintln!("sonobuoy: {signal}, exiting");
    }
    written?;
    Ok(run.report.exit_code())
}

/// `sgpc verify`: what changed in each bundle, and which verdicts move; with several bundles
/// (a fleet's nodes), which runtime each judged and the Strict cases it did not hold to.
fn verify(paths: &[std::path::PathBuf]) -> anyhow::Result<i32> {
    let mut summary = Vec::new();
    let mut unreadable = false;
    for path in paths {
        let verification = match sgpc::bundle::verify(path) {
            Ok(verification) => verification,
            Err(e) => {
                println!("{}: unreadable: {}", path.display(), sgpc::input::one_line(&format!("{:#}", anyhow::Error::new(e))));
                unreadable = true;
                continue;
            }
        };
        for finding in &verification.findings {
            println!("{}", sgpc::input::one_line(&finding.to_string()));
        }
        println!(
            "{}: {} findings; {} cases judged again, {} without observations (sgpc's ERROR); {}",
            path.display(),
            verification.findings.len(),
            verification.judged,
            verification.not_judged,
            if verification.builtin_catalogue { "the built-in catalogue" } else { "NOT the built-in catalogue: judged by the bundle's own rules" }
        );
        summary.push((path, verification));
    }
    if paths.len() > 1 {
        println!("\nStrict held, per bundle:");
        for (path, v) in &summary {
            let runtime = v.runtime.as_deref().map_or_else(|| "runtime unreachable".to_string(), sgpc::input::one_line);
            println!("  {} ({runtime}): {}", path.display(), sgpc::input::one_line(&v.strict.to_string()));
        }
    }
    Ok(match (unreadable, summary.iter().all(|(_, v)| v.findings.is_empty())) {
        (true, _) => exit_code::ERROR,
        (false, true) => exit_code::PASS,
        (false, false) => exit_code::FAIL,
    })
}

async fn run_matrix(args: MatrixArgs) -> anyhow::Result<i32> {
    let catalogue = load_catalogue(&args.input)?.catalogue;
    let entries = sgpc::matrix::load(&args.file, &catalogue)?;
    let [markdown, html, json] = Output::open_all(&args.out, ["matrix.md", "matrix.html", "matrix.json"])?;
    clean(false, &mut std::io::stderr().lock()).await?;
    let cases = outcome::select_cases(&catalogue, args.filter.as_ref());
    println!("Running {} cases on {} runtimes: {}", cases.len(), entries.len(), entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", "));
    let config = args.config();
    let progress = |column: &str, event: outcome::Event<'_>| drop(report::matrix::write_progress(&mut std::io::stdout().lock(), column, &event));
    let report = tokio::select! {
        report = sgpc::matrix::run_matrix_with_progress(&entries, &catalogue, &cases, &config, &progress) => report,
        signal = shutdown_signal() => anyhow::bail!("interrupted by {signal}; every runtime was stopped"),
    };
    report::matrix::write_summary(&mut std::io::stdout().lock(), &report)?;
    markdown.write(|out| report::matrix::write_markdown(out, &report))?;
    html.write(|out| report::matrix::write_html(out, &report))?;
    json.write(|out| report::matrix::write_json(out, &report))?;
    println!("Matrix [{:>8.3}s] reports in {}", report.duration.as_secs_f64(), args.out.display());
    Ok(report.exit_code())
}

async fn run_discover(args: DiscoverArgs) -> anyhow::Result<i32> {
    let catalogue = load_catalogue(&args.input)?.catalogue;
    let entries = sgpc::matrix::load(&args.matrix, &catalogue)?;
    let [markdown, json] = Output::open_all(&args.out, ["discovery.md", "discovery.json"])?;
    clean(false, &mut std::io::stderr().lock()).await?;
    println!("Discovering with seed {}: {} cases on {} runtimes: {}", args.seed, args.cases, entries.len(), entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", "));
    let config = args.config();
    let progress = |event: sgpc::discover::Progress<'_>| drop(report::discover::write_progress(&mut std::io::stdout().lock(), &event));
    let report = tokio::select! {
        report = sgpc::discover::discover(&entries, &config, &progress) => report,
        signal = shutdown_signal() => anyhow::bail!("interrupted by {signal}; every runtime sgpc started was stopped (`sgpc clean` removes what a --cri runtime still holds)"),
    };
    report::discover::write_summary(&mut std::io::stdout().lock(), &report)?;
    report::discover::write_class_files(&args.out, &report)?;
    markdown.write(|out| report::discover::write_markdown(out, &report))?;
    json.write(|out| report::discover::write_json(out, &report))?;
    println!("Discovery [{:>8.3}s] {} classes; reports in {}", report.duration.as_secs_f64(), report.classes.len(), args.out.display());
    Ok(report.exit_code())
}
