//! kappactl: submit, list, inspect and cancel Kappa jobs over the jobmanager's REST API, and
//! validate job files locally without touching a cluster.

mod client;
mod render;
mod render_upgrade;

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
    /// Replace a running job with a new version of its file: `upgrade JOB FILE` recomputes
    /// history with the new version into shadow sinks beside the running job and prints the
    /// upgrade's id; `--dry-run` only prints the plan (what changed, the backlog and the time
    /// it should take, the shadows, what refuses a cut-over). Then `upgrade status`, `diff`,
    /// `cutover`, `abort`.
    Upgrade(UpgradeArgs),
    /// Recompute a running job's own logic from its sources into shadow sinks and list every
    /// row its sinks hold that the recomputation does not give (duplicates, losses,
    /// tampering); prints the audit's id, or with --wait the report, and drops the shadows.
    Audit {
        id: String,
        /// Wait for the recomputation to catch up, print the differences, and end the audit.
        #[arg(long)]
        wait: bool,
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

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct UpgradeArgs {
    #[command(subcommand)]
    action: Option<UpgradeAction>,
    /// The running job (v1).
    #[arg(required = true)]
    id: Option<String>,
    /// The new version of its file (v2).
    #[arg(required = true)]
    file: Option<PathBuf>,
    /// Print the plan; start nothing.
    #[arg(long)]
    dry_run: bool,
    /// Cut over as soon as the new version has caught up.
    #[arg(long, conflicts_with = "dry_run")]
    auto_cutover: bool,
}

#[derive(Subcommand)]
enum UpgradeAction {
    /// List upgrades and audits.
    List,
    /// Show an upgrade: phase, progress of the new version, the latest diff, history.
    Status { upgrade: String },
    /// Print every row the new version changes, as JSON lines.
    Diff { upgrade: String },
    /// Cut over: the live sinks take the new version's results at one instant and it
    /// continues into them.
    Cutover { upgrade: String },
    /// Abort: the running job stays (or is restarted from its savepoint), the shadows are
    /// dropped.
    Abort { upgrade: String },
}

/// How long `audit --wait` waits for the recomputation.
const AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

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
        Command::Upgrade(a) => upgrade(&client, cli.json, a).await?,
        Command::Audit { id, wait } => audit(&client, cli.json, &id, wait).await?,
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

async fn upgrade(client: &Client, json: bool, a: UpgradeArgs) -> anyhow::Result<()> {
    let show = |v: &serde_json::Value| -> anyhow::Result<()> {
        match json {
            true => println!("{}", serde_json::to_string_pretty(v)?),
            false => print!("{}", render_upgrade::upgrade(v)),
        }
        Ok(())
    };
    let path = |id: &str, what: &str| format!("/api/v1/upgrades/{id}{what}");
    match (a.action, a.id, a.file) {
        (Some(UpgradeAction::List), ..) => {
            let all = client.get("/api/v1/upgrades").await?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&all)?),
                false => print!("{}", render_upgrade::upgrade_list(&all)),
            }
        }
        (Some(UpgradeAction::Status { upgrade }), ..) => {
            show(&client.get(&path(&upgrade, "")).await?)?
        }
        (Some(UpgradeAction::Diff { upgrade }), ..) => {
            let lines = client.get(&path(&upgrade, "/diff")).await?;
            print!("{}", lines.as_str().unwrap_or_default());
        }
        (Some(UpgradeAction::Cutover { upgrade }), ..) => {
            show(&client.post(&path(&upgrade, "/cutover"), &json!({})).await?)?
        }
        (Some(UpgradeAction::Abort { upgrade }), ..) => {
            show(&client.post(&path(&upgrade, "/abort"), &json!({})).await?)?
        }
        (None, Some(id), Some(file)) => {
            let (name, text) = read_job(&file)?;
            let body = json!({ "job": text, "file_name": name });
            if a.dry_run {
                let plan = client
                    .post(&format!("/api/v1/jobs/{id}/upgrade-plan"), &body)
                    .await?;
                match json {
                    true => println!("{}", serde_json::to_string_pretty(&plan)?),
                    false => print!("{}", render_upgrade::upgrade_plan(&id, &plan)),
                }
                return Ok(());
            }
            let query = if a.auto_cutover {
                "?auto_cutover=true"
            } else {
                ""
            };
            let started = client
                .post(&format!("/api/v1/jobs/{id}/upgrades{query}"), &body)
                .await?;
            match json {
                true => println!("{started}"),
                false => println!("{}", started["id"].as_str().unwrap_or_default()),
            }
        }
        _ => anyhow::bail!(
            "give the job and the new file, or one of list, status, diff, cutover, abort"
        ),
    }
    Ok(())
}

async fn audit(client: &Client, json: bool, id: &str, wait: bool) -> anyhow::Result<()> {
    let started = client
        .post(&format!("/api/v1/jobs/{id}/audits"), &json!({}))
        .await?;
    let audit = started["id"].as_str().unwrap_or_default().to_string();
    if !wait {
        match json {
            true => println!("{started}"),
            false => println!("{audit}"),
        }
        return Ok(());
    }
    let path = format!("/api/v1/upgrades/{audit}");
    let deadline = std::time::Instant::now() + AUDIT_WAIT;
    let report = loop {
        let view = client.get(&path).await?;
        match view["phase"].as_str().unwrap_or_default() {
            // The diff follows once the recomputation's output is committed.
            "CAUGHT_UP" if view["diff"].is_object() => {
                if let Some(e) = view["diff"]["error"].as_str() {
                    anyhow::bail!("audit {audit}: comparing the sinks failed: {e}");
                }
                break view;
            }
            "ABORTING" | "ABORTED" => anyhow::bail!(
                "audit {audit} ended: {}",
                view["reason"].as_str().unwrap_or("no reason given")
            ),
            _ if std::time::Instant::now() > deadline => {
                anyhow::bail!("audit {audit} did not catch up within {AUDIT_WAIT:?}")
            }
            _ => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    };
    let lines = client.get(&format!("{path}/diff")).await?;
    let lines = lines.as_str().unwrap_or_default();
    match json {
        true => print!("{lines}"),
        false => print!("{}", render_upgrade::audit(&report, lines)),
    }
    // Ended: the shadows are dropped before the next audit or upgrade of the job may start.
    client.post(&format!("{path}/abort"), &json!({})).await?;
    loop {
        let view = client.get(&path).await?;
        if view["phase"] == "ABORTED" {
            break;
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("audit {audit} did not end within {AUDIT_WAIT:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    if !lines.is_empty() {
        anyhow::bail!("the sinks of job {id} differ from what its logic gives");
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
