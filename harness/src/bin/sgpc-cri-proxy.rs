//! `sgpc-cri-proxy`: forwards CRI calls to a real runtime and injects the faults asked for.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sgpc::proxy::{self, Fault, ProxyConfig};

/// A fault-injecting CRI proxy, to prove that sgpc catches lying and failing runtimes.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Unix socket to listen on.
    #[arg(long)]
    listen: PathBuf,
    /// The runtime's unix socket.
    #[arg(long)]
    upstream: PathBuf,
    /// A fault to inject; repeat for several.
    #[arg(long = "fault", value_enum)]
    faults: Vec<Fault>,
    /// Pod-scoped faults apply to sandboxes whose name (`<scenario>-<policy>`) matches.
    #[arg(long)]
    pods: Option<regex::Regex>,
    /// How long the `slow` fault holds a call, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    delay_ms: u64,
    /// The runtime's pid, for the `kill-runtime` fault.
    #[arg(long)]
    runtime_pid: Option<u32>,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_env("SGPC_LOG")).with_writer(std::io::stderr).init();
    let args = Args::parse();
    let listen = args.listen.clone();
    let config = ProxyConfig {
        listen: args.listen,
        upstream: args.upstream,
        faults: args.faults,
        pods: args.pods,
        delay: Duration::from_millis(args.delay_ms),
        runtime_pid: args.runtime_pid,
        adopt: None,
    };
    let outcome = tokio::select! {
        result = proxy::serve(config) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminated() => Ok(()),
    };
    let _ = std::fs::remove_file(&listen);
    if let Err(e) = outcome {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
