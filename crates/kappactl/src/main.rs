//! kappactl: submit, list, inspect and cancel Kappa jobs over the jobmanager's REST API, and
//! validate job files locally without touching a cluster.

mod client;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kappa_job::{Overrides, Start, plan_job};
use serde_json::json;

use crate::client::Client;

#[derive(Parser)]
#[command(
    name = "kappactl",
    version,
    about = "Command-line client of a Kappa cluster"
)]
struct Cli {
    /// REST address of the jobmanager.
    #[arg(
        long,
        global = true,
        env = "KAPPA_JOBMANAGER",
        default_value = "http://127.0.0.1:8081"
    )]
    jobmanager: String,
    /// Bearer token of a cluster started with an auth token.
    #[arg(long, global = true, env = "KAPPA_AUTH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// With an https:// jobmanager: trust only the CA certificates in this PEM file (a
    /// private CA, e.g. `kappa certs`) instead of the system's roots.
    #[arg(long, global = true, env = "KAPPA_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct JobFileArgs {
    /// The job file (job.toml).
    file: PathBuf,
    /// Where sources start: earliest, latest, timestamp:<epoch-ms> (overrides source.start),
    /// savepoint:<directory or URI> to resume from a savepoint's offsets and state, or
    /// checkpoint:<job id>:<checkpoint id> to resume from a retained checkpoint of a job.
    #[arg(long)]
    start: Option<Start>,
    /// With --start savepoint:…, start even if the savepoint holds state no operator of the
    /// job takes (it is dropped).
    #[arg(long)]
    allow_non_restored_state: bool,
    /// Parallelism of every operator (overrides the job file).
    #[arg(long)]
    parallelism: Option<u32>,
}

#[derive(Subcommand)]
enum Command {
    /// Submit a job; prints its id.
    Submit(JobFileArgs),
    /// Check a job file and print its plan; contacts nothing.
    Validate(JobFileArgs),
    /// List the jobs of the cluster.
    List,
    /// Check that the jobmanager answers; prints `leader` or `standby` (needs no token: a
    /// container health check).
    Ping,
    /// Show a job: state, attempts, operators, records, watermarks.
    Status { id: String },
    /// Cancel a job.
    Cancel { id: String },
    /// Show a job's checkpoints: status, duration, sizes, offsets.
    Checkpoints { id: String },
    /// Plan replacing a running job with a new version of its file: what changed, whether the
    /// new version replays history (the backlog, the time it should take) or starts from a
    /// savepoint, the shadow sinks it would write, and what refuses a cut-over.
    Upgrade {
        /// The running job (v1).
        id: String,
        /// The new version of its file (v2).
        file: PathBuf,
        /// Print the plan; start nothing (required: running an upgrade is not built yet).
        #[arg(long, required = true)]
        dry_run: bool,
    },
    /// Take a savepoint of a running job; prints its directory.
    Savepoint {
        id: String,
        /// Where to write it (default: the cluster's checkpoint directory/savepoints).
        #[arg(long)]
        dir: Option<String>,
    },
    /// Stop a job: take a savepoint, then cancel it; prints the savepoint's directory.
    Stop {
        id: String,
        /// Take a savepoint first (required: without one, use cancel).
        #[arg(long, required = true)]
        savepoint: bool,
        /// Where to write it (default: the cluster's checkpoint directory/savepoints).
        #[arg(long)]
        dir: Option<String>,
        /// First fire every open window (a final watermark) so the output is complete: for a
        /// job that is not going to be resumed.
        #[arg(long)]
        drain: bool,
    },
}

fn read_job(path: &Path) -> anyhow::Result<(String, String)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({e})", path.display()))?;
    let name = path.display().to_string();
    Ok((name, text))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(&cli.jobmanager, cli.token.clone(), cli.ca_cert.as_deref())?;
    match cli.command {
        Command::Validate(a) => {
            let (name, text) = read_job(&a.file)?;
            let start = match a.start {
                Some(Start::Position(p)) => Some(p),
                // The savepoint or checkpoint supplies the offsets: plan as if from the file.
                Some(Start::Savepoint(_) | Start::Checkpoint { .. }) | None => None,
            };
            let overrides = Overrides {
                start,
                parallelism: a.parallelism,
                ..Overrides::default()
            };
            let plan = plan_job(&name, &text, &overrides).map_err(|e| anyhow::anyhow!("{e}"))?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&plan.graph())?);
            } else {
                println!(
                    "{}: job `{}` is valid (parallelism {}, max_parallelism {})",
                    name, plan.name, plan.parallelism, plan.max_parallelism
                );
                print!("{}", plan.graph());
            }
        }
        Command::Submit(a) => {
            let (name, text) = read_job(&a.file)?;
            let body = json!({
                "job": text,
                "file_name": name,
                "start": a.start.map(|s| s.to_string()),
                "parallelism": a.parallelism,
                "allow_non_restored_state": a.allow_non_restored_state,
            });
            let resp = client.post("/api/v1/jobs", &body).await?;
            if cli.json {
                println!("{resp}");
            } else {
                println!("{}", resp["id"].as_str().unwrap_or_default());
                for w in resp["warnings"].as_array().into_iter().flatten() {
                    eprintln!("kappactl: warning: {}", w.as_str().unwrap_or_default());
                }
            }
        }
        Command::Upgrade { id, file, .. } => {
            let (name, text) = read_job(&file)?;
            let plan = client
                .post(
                    &format!("/api/v1/jobs/{id}/upgrade-plan"),
                    &json!({ "job": text, "file_name": name }),
                )
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print!("{}", render::upgrade_plan(&id, &plan));
            }
        }
        Command::Ping => println!("{}", client.role().await?),
        Command::List => {
            let jobs = client.get("/api/v1/jobs").await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                print!("{}", render::job_list(&jobs));
            }
        }
        Command::Status { id } => {
            let job = client.get(&format!("/api/v1/jobs/{id}")).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                print!("{}", render::job_detail(&job));
            }
        }
        Command::Savepoint { id, dir } => {
            let resp = client
                .post(
                    &format!("/api/v1/jobs/{id}/savepoints"),
                    &json!({ "dir": dir }),
                )
                .await?;
            if cli.json {
                println!("{resp}");
            } else {
                println!("{}", resp["path"].as_str().unwrap_or_default());
            }
        }
        Command::Stop { id, dir, drain, .. } => {
            let resp = client
                .post(
                    &format!("/api/v1/jobs/{id}/stop"),
                    &json!({ "dir": dir, "drain": drain }),
                )
                .await?;
            if cli.json {
                println!("{resp}");
            } else {
                println!("{}", resp["path"].as_str().unwrap_or_default());
            }
        }
        Command::Checkpoints { id } => {
            let list = client
                .get(&format!("/api/v1/jobs/{id}/checkpoints"))
                .await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", render::checkpoints(&list));
            }
        }
        Command::Cancel { id } => {
            let job = client
                .post(&format!("/api/v1/jobs/{id}/cancel"), &json!({}))
                .await?;
            if cli.json {
                println!("{job}");
            } else {
                println!(
                    "cancelling job {id} ({})",
                    job["name"].as_str().unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kappactl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kappactl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
