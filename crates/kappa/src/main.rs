//! The `kappa` binary: `kappa local` (jobmanager + taskmanager in one process), `kappa demo`
//! (the reference job on an embedded Kafka) and `kappa bench` (events/s of the reference job).

mod bench;
mod demo;
mod generator;
mod local;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kappa",
    version,
    about = "Kappa: one streaming job over a replayable log computes every result"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Settings of a local cluster.
#[derive(clap::Args, Clone, Debug)]
pub struct LocalArgs {
    /// Address the REST API and web UI listen on.
    #[arg(long, env = "KAPPA_REST_ADDRESS", default_value = "127.0.0.1")]
    pub address: String,
    /// Port of the REST API and /metrics.
    #[arg(long, env = "KAPPA_REST_PORT", default_value_t = 8081)]
    pub port: u16,
    /// Task slots of the embedded taskmanager.
    #[arg(long, env = "KAPPA_SLOTS", default_value_t = 4)]
    pub slots: u32,
    /// Directory (or URI) for checkpoints; accepted and reported now, written once checkpoints land.
    #[arg(long, env = "KAPPA_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a jobmanager and a taskmanager in this process (REST API on :8081).
    Local(LocalArgs),
    /// Run the reference job on an embedded Kafka with a click generator, showing hourly counts.
    Demo(demo::DemoArgs),
    /// Measure the reference job's throughput (events/s and events per CPU-second).
    Bench(bench::BenchArgs),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAPPA_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,librdkafka=warn,rdkafka=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Command::Local(args) => rt.block_on(local::run(args)),
        Command::Demo(args) => rt.block_on(demo::run(args)),
        Command::Bench(args) => rt.block_on(bench::run(args)),
    }
}
