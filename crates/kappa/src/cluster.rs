//! The cluster processes: `kappa jobmanager`, `kappa taskmanager` and `kappa local` (the same
//! jobmanager and taskmanager in one process, talking gRPC over loopback).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use kappa_job::plan::RestartPlan;
use kappa_job::spec::RestartStrategyKind;
use kappa_jobmanager::{JobManager, JobManagerConfig};
use kappa_taskmanager::{TaskManagerConfig, TaskManagerHandle};

use crate::confine_args::ConfineArgs;
use crate::etcd_args::EtcdArgs;

use crate::cluster_tls::ClusterTlsArgs;
use kappa_proto::tls::{ClusterTls, Role};

fn restart_strategy(s: &str) -> Result<RestartStrategyKind, String> {
    match s {
        "none" => Ok(RestartStrategyKind::None),
        "fixed-delay" => Ok(RestartStrategyKind::FixedDelay),
        "exponential-backoff" => Ok(RestartStrategyKind::ExponentialBackoff),
        _ => Err(format!(
            "`{s}`: use none, fixed-delay or exponential-backoff"
        )),
    }
}

/// A duration, or none with `off`.
#[derive(Debug, Clone, Copy)]
pub struct DurationOrOff(pub Option<Duration>);

fn duration_or_off(s: &str) -> Result<DurationOrOff, String> {
    match s {
        "off" => Ok(DurationOrOff(None)),
        s => duration(s).map(|d| DurationOrOff(Some(d))),
    }
}

/// A size in bytes, or `off`, as a flag value.
#[derive(Clone, Copy, Debug)]
pub struct SizeOrOff(pub Option<u64>);

fn size_or_off(s: &str) -> Result<SizeOrOff, String> {
    match s {
        "off" => Ok(SizeOrOff(None)),
        s => match s.parse::<bytesize::ByteSize>() {
            Ok(b) if b.as_u64() > 0 => Ok(SizeOrOff(Some(b.as_u64()))),
            Ok(_) => Err("must be more than 0 bytes (or `off`)".into()),
            Err(e) => Err(format!("`{s}`: {e} (e.g. 512MiB, 4GiB, off)")),
        },
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e} (e.g. 10s, 500ms, 5m)"))
}

/// Settings of a jobmanager.
#[derive(clap::Args, Clone, Debug)]
pub struct JobManagerArgs {
    #[command(flatten)]
    pub tls: ClusterTlsArgs,
    /// Address the REST API, web UI and /metrics listen on.
    #[arg(long, env = "KAPPA_REST_ADDRESS", default_value = "127.0.0.1")]
    pub address: String,
    /// Port of the REST API and /metrics (0: any free port).
    #[arg(long, env = "KAPPA_REST_PORT", default_value_t = 8081)]
    pub port: u16,
    /// Address gRPC for taskmanagers listens on.
    #[arg(long, env = "KAPPA_RPC_ADDRESS", default_value = "127.0.0.1")]
    pub rpc_address: String,
    /// Port of gRPC for taskmanagers (0: any free port).
    #[arg(long, env = "KAPPA_RPC_PORT", default_value_t = 6123)]
    pub rpc_port: u16,
    /// Where checkpoints go: a directory, file:///path or s3://bucket/prefix (S3 credentials and
    /// endpoint from AWS_* variables).
    #[arg(long, env = "KAPPA_CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<String>,
    /// How often jobs are checkpointed when their file sets no interval (with a checkpoint
    /// directory); `off`: only jobs with a [checkpoints] interval are.
    #[arg(long, env = "KAPPA_CHECKPOINT_INTERVAL", default_value = "10s", value_parser = duration_or_off)]
    pub checkpoint_interval: DurationOrOff,
    /// The most window state one job may hold in the memory of one taskmanager, unless its
    /// file sets `[limits] state_memory`; a job beyond it fails with the reason instead of the
    /// taskmanager running out of memory. `off`: no limit.
    #[arg(long, env = "KAPPA_JOB_STATE_LIMIT", default_value = "4GiB", value_parser = size_or_off)]
    pub job_state_limit: SizeOrOff,
    /// How long FINISHED, CANCELED and FAILED jobs stay listed, with their records, before
    /// they are forgotten.
    #[arg(long, env = "KAPPA_JOB_RETENTION", default_value = "1h", value_parser = duration)]
    pub job_retention: Duration,
    /// How often taskmanagers send heartbeats.
    #[arg(long, env = "KAPPA_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = duration)]
    pub heartbeat_interval: Duration,
    /// A taskmanager without a heartbeat for this long is lost and its jobs restart elsewhere.
    #[arg(long, env = "KAPPA_HEARTBEAT_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub heartbeat_timeout: Duration,
    /// A job that finds no free slots for this long fails.
    #[arg(long, env = "KAPPA_SLOT_TIMEOUT", default_value = "5m", value_parser = duration)]
    pub slot_timeout: Duration,
    /// Restart strategy of jobs without a [restart] table: none, fixed-delay or exponential-backoff.
    #[arg(long, env = "KAPPA_RESTART_STRATEGY", default_value = "exponential-backoff", value_parser = restart_strategy)]
    pub restart_strategy: RestartStrategyKind,
    /// fixed-delay: the delay; exponential-backoff: the first delay.
    #[arg(long, env = "KAPPA_RESTART_DELAY", default_value = "1s", value_parser = duration)]
    pub restart_delay: Duration,
    /// exponential-backoff: the largest delay.
    #[arg(long, env = "KAPPA_RESTART_MAX_DELAY", default_value = "60s", value_parser = duration)]
    pub restart_max_delay: Duration,
    /// Give up after this many restarts in a row (default: never).
    #[arg(long, env = "KAPPA_RESTART_MAX_ATTEMPTS")]
    pub restart_max_attempts: Option<u32>,
    /// An attempt that ran this long without failing starts the restart delays and the
    /// count of restarts in a row over (Flink's reset-backoff-threshold).
    #[arg(long, env = "KAPPA_RESTART_RESET_AFTER", default_value = "1h", value_parser = duration)]
    pub restart_reset_after: Duration,
    /// How often running Kafka sources are checked for new partitions.
    #[arg(long, env = "KAPPA_PARTITION_DISCOVERY_INTERVAL", default_value = "10s", value_parser = duration)]
    pub partition_discovery_interval: Duration,
    /// Require `Authorization: Bearer <token>` on the REST API and /metrics (the web UI asks
    /// for it once). Prefer the variable or the config file to keep it out of `ps`.
    /// Required when the REST API listens on an address other than loopback.
    #[arg(long, env = "KAPPA_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// The token, read from this file (its first line), e.g. a mounted Kubernetes Secret.
    #[arg(long, env = "KAPPA_AUTH_TOKEN_FILE", conflicts_with = "auth_token")]
    pub auth_token_file: Option<PathBuf>,
    /// HTTPS for the REST API and web UI: the server's certificate chain (PEM).
    #[arg(long, env = "KAPPA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "KAPPA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Host names the REST API answers to (repeat, or comma-separated); others are refused
    /// (DNS rebinding). Default: loopback names when it listens on loopback, any otherwise.
    #[arg(
        long = "allowed-host",
        env = "KAPPA_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Largest REST request body accepted, in bytes (job files are uploaded in it).
    #[arg(long, env = "KAPPA_MAX_REQUEST_BYTES", default_value_t = 4 << 20)]
    pub max_request_bytes: usize,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Host name other jobmanagers and clients reach this one at (published for redirects
    /// in HA; default: the REST address).
    #[arg(long, env = "KAPPA_JOBMANAGER_ADVERTISED_HOST")]
    pub advertised_address: Option<String>,
    /// A file holding a 32-byte key (raw, 64 hex digits or base64; `openssl rand -hex 32`)
    /// with which the literal secrets of jobs are sealed in their records, so a restarted
    /// jobmanager or a new HA leader resumes them; every jobmanager of a cluster needs the
    /// same one. Without it such jobs run but cannot resume.
    #[arg(long, env = "KAPPA_SECRET_KEY_FILE", value_name = "PATH")]
    pub secret_key_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub confine: ConfineArgs,
}

impl JobManagerArgs {
    /// The REST token: given, or the first line of --auth-token-file; an empty one is none.
    fn auth_token(&self) -> anyhow::Result<Option<String>> {
        let token = match &self.auth_token_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading --auth-token-file {}", path.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            None => self.auth_token.clone().unwrap_or_default(),
        };
        Ok(Some(token).filter(|t| !t.is_empty()))
    }

    pub fn config(&self) -> anyhow::Result<JobManagerConfig> {
        let addr = |host: &str, port: u16| -> anyhow::Result<SocketAddr> {
            format!("{host}:{port}")
                .parse()
                .map_err(|e| anyhow!("`{host}:{port}` is not an IP address and port: {e}"))
        };
        let secret_key = match &self.secret_key_file {
            Some(path) => {
                let key = kappa_jobmanager::sealing::SecretKey::read(path)?;
                tracing::info!(key = %key.fingerprint(), "literal secrets of jobs are sealed in their records (--secret-key-file)");
                Some(std::sync::Arc::new(key))
            }
            None => None,
        };
        Ok(JobManagerConfig {
            ha: self.etcd.config()?,
            secret_key,
            advertised_host: self.advertised_address.clone(),
            confinement: self.confine.confinement("jobmanager")?,
            rest: addr(&self.address, self.port)?,
            rpc: addr(&self.rpc_address, self.rpc_port)?,
            checkpoint_dir: self.checkpoint_dir.clone(),
            default_checkpoint_interval: self.checkpoint_interval.0,
            job_state_limit: self.job_state_limit.0,
            job_retention: self.job_retention,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_timeout: self.heartbeat_timeout,
            slot_timeout: self.slot_timeout,
            partition_discovery_interval: self.partition_discovery_interval,
            auth_token: self.auth_token()?,
            rest_tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(kappa_jobmanager::rest::RestTls::load(cert, key)?),
                _ => None,
            },
            allowed_hosts: (!self.allowed_hosts.is_empty()).then(|| self.allowed_hosts.clone()),
            max_request_bytes: self.max_request_bytes,
            restart: RestartPlan {
                strategy: self.restart_strategy,
                delay: self.restart_delay,
                max_delay: self.restart_max_delay.max(self.restart_delay),
                max_attempts: self.restart_max_attempts,
                reset_after: self.restart_reset_after,
            },
            ..JobManagerConfig::default()
        })
    }
}

/// Settings of a taskmanager.
#[derive(clap::Args, Clone, Debug)]
pub struct TaskManagerArgs {
    #[command(flatten)]
    pub tls: ClusterTlsArgs,
    /// gRPC URL of the jobmanager.
    #[arg(
        long,
        env = "KAPPA_JOBMANAGER_RPC",
        default_value = "http://127.0.0.1:6123"
    )]
    pub jobmanager: String,
    /// With cluster TLS: the host name every jobmanager's certificate must carry, instead of
    /// the host dialed (e.g. the jobmanagers' Service name, when in HA a standby names the
    /// leader by its pod IP).
    #[arg(long, env = "KAPPA_JOBMANAGER_TLS_NAME")]
    pub jobmanager_tls_name: Option<String>,
    /// Task slots offered (a job of parallelism p takes p slots).
    #[arg(long, env = "KAPPA_SLOTS", default_value_t = 4)]
    pub slots: u32,
    /// Address gRPC and /metrics listen on.
    #[arg(long = "bind", env = "KAPPA_BIND_ADDRESS", default_value = "127.0.0.1")]
    pub bind: String,
    /// Port of gRPC and /metrics (0: any free port).
    #[arg(long = "port", env = "KAPPA_TASKMANAGER_PORT", default_value_t = 6121)]
    pub tm_port: u16,
    /// Host name or address other processes reach this taskmanager at (default: the bind address).
    #[arg(long, env = "KAPPA_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// Taskmanager id (default: generated).
    #[arg(long, env = "KAPPA_TASKMANAGER_ID")]
    pub id: Option<String>,
    /// Directory for subtasks' local state (default: a directory of this process under the
    /// system's temporary directory); emptied at start.
    #[arg(long, env = "KAPPA_STATE_DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Memory for the cached keyed state of every job here with the RocksDB state backend
    /// (windows beyond it spill to the state directory); `off`: no limit.
    #[arg(long, env = "KAPPA_STATE_MEMORY", default_value = DEFAULT_STATE_MEMORY, value_parser = size_or_off)]
    pub state_memory: SizeOrOff,
    #[command(flatten)]
    pub confine: ConfineArgs,
}

/// The default of `--state-memory`.
pub const DEFAULT_STATE_MEMORY: &str = "512MiB";

impl TaskManagerArgs {
    /// The taskmanager's settings, with mutual TLS when `tls` is given (its id is then the
    /// one its certificate names).
    fn config(&self, tls: Option<ClusterTls>) -> anyhow::Result<TaskManagerConfig> {
        if self.slots == 0 {
            return Err(anyhow!("--slots must be at least 1"));
        }
        let bind: SocketAddr = format!("{}:{}", self.bind, self.tm_port)
            .parse()
            .map_err(|e| {
                anyhow!(
                    "`{}:{}` is not an IP address and port: {e}",
                    self.bind,
                    self.tm_port
                )
            })?;
        let id = match (&tls, &self.id) {
            (Some(t), Some(id)) if *id != t.me().name => {
                return Err(anyhow!(
                    "--id {id} is not the identity of --cluster-cert ({}): with mutual TLS a taskmanager's id is the one its certificate names",
                    t.me()
                ));
            }
            (Some(t), _) if t.me().role != Role::TaskManager => {
                return Err(anyhow!(
                    "--cluster-cert names {}, not a taskmanager (taskmanager/<id>)",
                    t.me()
                ));
            }
            (Some(t), _) => t.me().name.clone(),
            (None, Some(id)) => id.clone(),
            (None, None) => format!("tm-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        };
        Ok(TaskManagerConfig {
            id,
            cluster_tls: tls,
            jobmanager_tls_name: self.jobmanager_tls_name.clone(),
            slots: self.slots,
            bind,
            advertised_host: self.advertised_host.clone(),
            jobmanager: self.jobmanager.clone(),
            confinement: self.confine.confinement("taskmanager")?,
            state_dir: self.state_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("kappa-state-{}", std::process::id()))
            }),
            state_memory: self.state_memory.0,
        })
    }
}

/// Settings of `kappa local`.
#[derive(clap::Parser, Clone, Debug)]
pub struct LocalArgs {
    #[command(flatten)]
    pub jobmanager: JobManagerArgs,
    /// Task slots of the embedded taskmanager.
    #[arg(long, env = "KAPPA_SLOTS", default_value_t = 4)]
    pub slots: u32,
    /// Directory for subtasks' local state (default: under the system's temporary directory).
    #[arg(long, env = "KAPPA_STATE_DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Memory for the cached keyed state of jobs with the RocksDB state backend (see
    /// `kappa taskmanager --state-memory`).
    #[arg(long, env = "KAPPA_STATE_MEMORY", default_value = DEFAULT_STATE_MEMORY, value_parser = size_or_off)]
    pub state_memory: SizeOrOff,
}

/// A jobmanager and a taskmanager in this process.
pub struct LocalCluster {
    pub jobmanager: JobManager,
    pub rest: SocketAddr,
    pub taskmanager: TaskManagerHandle,
}

pub async fn start_local(args: &LocalArgs) -> anyhow::Result<LocalCluster> {
    if args.jobmanager.tls.given() {
        return Err(anyhow!(
            "kappa local runs its taskmanager in this process, over loopback: the --cluster-* flags are for kappa jobmanager and kappa taskmanager"
        ));
    }
    // One user's own process: without roots its jobs may use any path.
    let mut jobmanager = args.jobmanager.clone();
    jobmanager.confine = jobmanager.confine.for_local();
    let started = JobManager::start(jobmanager.config()?).await?;
    let tm = TaskManagerArgs {
        tls: ClusterTlsArgs::default(),
        jobmanager_tls_name: None,
        jobmanager: format!("http://{}", started.rpc),
        slots: args.slots,
        bind: started.rpc.ip().to_string(),
        tm_port: 0,
        advertised_host: None,
        id: Some("local".into()),
        state_dir: args.state_dir.clone(),
        state_memory: args.state_memory,
        confine: jobmanager.confine.clone(),
    };
    let taskmanager = kappa_taskmanager::start(tm.config(None)?).await?;
    // The cluster is ready once the taskmanager's slots are registered.
    for _ in 0..200 {
        if started.jobmanager.registry().slots().0 >= args.slots {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(LocalCluster {
        jobmanager: started.jobmanager,
        rest: started.rest,
        taskmanager,
    })
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = ctrl_c.await;
        return;
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

async fn cancel_all(jm: &JobManager) {
    tracing::info!("shutting down: cancelling running jobs");
    for j in jm.jobs() {
        j.request_cancel();
    }
    for _ in 0..100 {
        if jm.jobs().iter().all(|j| j.state().is_terminal()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn run_jobmanager(args: JobManagerArgs) -> anyhow::Result<()> {
    let mut config = args.config()?;
    config.cluster_tls = args.tls.load("jobmanager")?;
    // With job records (HA, or a checkpoint directory) a stopped jobmanager leaves its jobs
    // to the next one (a restart, a rolling update, the next HA leader), which resumes them
    // from their checkpoints; without, nothing could resume them, so they are cancelled.
    let keeps_jobs = config.ha.is_some() || config.checkpoint_dir.is_some();
    let started = JobManager::start(config).await?;
    shutdown_signal().await;
    if keeps_jobs {
        tracing::info!(
            "shutting down: running jobs are kept and resume when a jobmanager takes over (kappactl cancel ends a job)"
        );
    } else {
        cancel_all(&started.jobmanager).await;
    }
    Ok(())
}

pub async fn run_taskmanager(args: TaskManagerArgs) -> anyhow::Result<()> {
    let tls = args.tls.load("taskmanager")?;
    let tm = kappa_taskmanager::start(args.config(tls)?).await?;
    tokio::select! {
        r = tm.registration => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(anyhow!("the registration task stopped: {e}")),
        },
        _ = shutdown_signal() => Ok(()),
    }
}

pub async fn run_local(args: LocalArgs) -> anyhow::Result<()> {
    let LocalCluster {
        jobmanager,
        taskmanager,
        ..
    } = start_local(&args).await?;
    let result = tokio::select! {
        r = taskmanager.registration => Err(anyhow!("the embedded taskmanager stopped: {r:?}")),
        _ = shutdown_signal() => Ok(()),
    };
    cancel_all(&jobmanager).await;
    result
}
