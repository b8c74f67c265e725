//! The `kappa` binary: `kappa jobmanager`, `kappa taskmanager`, `kappa local` (both in one
//! process), `kappa demo` (the reference job on an embedded Kafka) and `kappa bench`.

mod bench;
mod certs;
mod cluster;
mod cluster_tls;
mod config_file;
mod confine_args;
mod demo;
mod etcd_args;
mod generator;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kappa",
    version,
    about = "Kappa: one streaming job over a replayable log computes every result",
    args_override_self = true
)]
struct Cli {
    /// A TOML file of settings: top-level keys and a table per command (e.g. [taskmanager]),
    /// named like the flags; flags and KAPPA_* variables win over it.
    #[arg(long, global = true, env = "KAPPA_CONFIG")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a jobmanager: REST API and /metrics on :8081, gRPC for taskmanagers on :6123.
    Jobmanager(cluster::JobManagerArgs),
    /// Run a taskmanager that registers its slots with a jobmanager (gRPC and /metrics on :6121).
    Taskmanager(cluster::TaskManagerArgs),
    /// Run a jobmanager and a taskmanager in this process.
    Local(cluster::LocalArgs),
    /// Run the reference job on an embedded Kafka with a click generator, showing hourly counts.
    Demo(demo::DemoArgs),
    /// Measure the throughput (events/s and events per CPU-second) of the reference job, or
    /// with `nexmark --query qN` of a Nexmark query.
    Bench(bench::BenchArgs),
    /// Create a cluster CA and the certificates of its processes (mutual TLS between them).
    #[command(subcommand)]
    Certs(certs::CertsCommand),
}

/// The command-line definition, for reading the config file against it.
pub fn cli_command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAPPA_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,librdkafka=warn,rdkafka=warn")
    });
    // Colours only on a terminal: a log file, a container's log or a pipe gets plain text
    // (escape codes broke `field=value` searches in them).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn main() -> anyhow::Result<()> {
    let args = config_file::merged_args(&cli_command(), std::env::args_os().collect())?;
    let cli = Cli::parse_from(args);
    init_logging();
    // Fault injection for the tests (FAILPOINTS="name=action;…"); nothing happens unless set.
    let _failpoints = std::env::var_os("FAILPOINTS").map(|_| {
        tracing::warn!("fault injection is on (FAILPOINTS)");
        fail::FailScenario::setup()
    });
    if let Command::Certs(c) = cli.command {
        return certs::run(c);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = match cli.command {
        Command::Jobmanager(a) => rt.block_on(cluster::run_jobmanager(a)),
        Command::Taskmanager(a) => rt.block_on(cluster::run_taskmanager(a)),
        Command::Local(a) => rt.block_on(cluster::run_local(a)),
        Command::Demo(a) => rt.block_on(demo::run(a)),
        Command::Bench(a) => rt.block_on(bench::run(a)),
        Command::Certs(_) => unreachable!("handled before the runtime starts"),
    };
    // Blocking calls still under way (a Kafka metadata lookup, an upload) get this long; the
    // runtime would otherwise wait for each to return.
    rt.shutdown_timeout(SHUTDOWN_GRACE);
    result
}

/// How long a stopping process waits for blocking work it no longer needs.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
