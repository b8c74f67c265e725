//! The Kappa jobmanager: keeps the registry of taskmanagers, accepts jobs, places their
//! subtasks in slots, restarts failed attempts, and serves the REST API, /metrics and gRPC.

mod attempt_machine;
mod attempt_tasks;
mod calls;
pub mod catch_up;
pub mod checkpoint;
#[cfg(test)]
mod coordinator_tests;
mod deployment;
mod driver;
pub mod ha;
pub mod job;
mod job_text;
mod job_view;
pub mod latency;
mod lifecycle;
mod metadata_check;
mod prom;
mod rates;
pub mod registry;
pub mod rest;
mod resume;
mod retention;
mod rpc;
mod savepoint_queue;
pub mod sealing;
pub mod store;
mod submission;
pub mod timeseries;
pub mod upgrade;

pub use submission::{RestoreFrom, SavepointStart, SubmitError};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_job::Overrides;
use kappa_job::plan::RestartPlan;
use kappa_proto::v1::job_manager_service_server::JobManagerServiceServer;
use parking_lot::RwLock;

use crate::job::{AttemptEvent, JobEntry};
use crate::registry::Registry;

/// Settings of a jobmanager.
#[derive(Debug, Clone)]
pub struct JobManagerConfig {
    /// REST API, web UI and /metrics.
    pub rest: SocketAddr,
    /// gRPC for taskmanagers.
    pub rpc: SocketAddr,
    /// Where checkpoints are written: a path, file:// or s3:// URI.
    pub checkpoint_dir: Option<String>,
    /// How often jobs without their own interval are checkpointed when there is a checkpoint
    /// directory; None: only jobs that ask for checkpoints are.
    pub default_checkpoint_interval: Option<Duration>,
    /// The most window state, in bytes, a job without its own `[limits] state_memory` may
    /// hold in one taskmanager; None: no limit.
    pub job_state_limit: Option<u64>,
    /// How long ended jobs stay listed (and their records kept) before they are forgotten.
    pub job_retention: Duration,
    /// How long to wait for Kafka metadata before an attempt fails (and is retried).
    pub kafka_timeout: Duration,
    /// How often taskmanagers send heartbeats.
    pub heartbeat_interval: Duration,
    /// A taskmanager silent this long is lost; its subtasks' attempts fail.
    pub heartbeat_timeout: Duration,
    /// A job waiting this long for free slots fails.
    pub slot_timeout: Duration,
    /// How often running Kafka sources look for new partitions.
    pub partition_discovery_interval: Duration,
    /// How jobs without their own `[restart]` table are restarted.
    pub restart: RestartPlan,
    /// When set, the REST API and /metrics need `Authorization: Bearer <this>`. Required
    /// when `rest` is not a loopback address.
    pub auth_token: Option<String>,
    /// HTTPS for the REST API and web UI; None: plain HTTP.
    pub rest_tls: Option<rest::RestTls>,
    /// The host names requests may be addressed to; by default loopback names when `rest` is
    /// a loopback address (DNS rebinding), any otherwise (the token protects the API).
    pub allowed_hosts: Option<Vec<String>>,
    /// Largest request body the REST API accepts (job files are sent in it).
    pub max_request_bytes: usize,
    /// Leader election and job records in etcd; without it, job records are kept under the
    /// checkpoint directory (when there is one).
    pub ha: Option<ha::HaConfig>,
    /// Host name other processes reach this jobmanager at (published to standbys in HA);
    /// default: the address it listens on.
    pub advertised_host: Option<String>,
    /// What jobs may touch: the file paths of file connectors and savepoints (besides the
    /// checkpoint root), the PostgreSQL hosts of sinks. Checked at submission; every
    /// taskmanager checks again with its own.
    pub confinement: kappa_connectors::confine::Confinement,
    /// Mutual TLS with the taskmanagers; None: plaintext gRPC (`--insecure`, `kappa local`).
    pub cluster_tls: Option<kappa_proto::tls::ClusterTls>,
    /// Seals the literal secrets of job records (`--secret-key-file`); None: records keep
    /// them redacted, and such a job cannot resume.
    pub secret_key: Option<Arc<sealing::SecretKey>>,
}

impl JobManagerConfig {
    /// Who calls the gRPC services (nobody is checked without cluster TLS).
    pub fn authenticator(&self) -> kappa_proto::tls::Authenticator {
        kappa_proto::tls::Authenticator::new(self.cluster_tls.is_some())
    }
}

impl Default for JobManagerConfig {
    fn default() -> Self {
        Self {
            rest: SocketAddr::from(([127, 0, 0, 1], 8081)),
            rpc: SocketAddr::from(([127, 0, 0, 1], 6123)),
            checkpoint_dir: None,
            default_checkpoint_interval: Some(Duration::from_secs(10)),
            job_state_limit: Some(DEFAULT_JOB_STATE_LIMIT),
            job_retention: Duration::from_secs(3600),
            kafka_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(10),
            slot_timeout: Duration::from_secs(300),
            auth_token: None,
            rest_tls: None,
            allowed_hosts: None,
            max_request_bytes: 4 << 20,
            ha: None,
            advertised_host: None,
            confinement: kappa_connectors::confine::Confinement::no_files("jobmanager"),
            cluster_tls: None,
            secret_key: None,
            partition_discovery_interval: Duration::from_secs(10),
            restart: RestartPlan::default(),
        }
    }
}

/// The default of [`JobManagerConfig::job_state_limit`]: 4 GiB per job and taskmanager.
pub const DEFAULT_JOB_STATE_LIMIT: u64 = 4 << 30;

/// How long a savepoint request waits.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a savepoint was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SavepointError {
    #[error("no job with id `{0}`")]
    NotFound(String),
    #[error("the job is not running ({0})")]
    NotRunning(String),
    #[error("no savepoint directory: give one, or start the jobmanager with --checkpoint-dir")]
    NoDirectory,
    #[error("the savepoint failed: {0}")]
    Failed(String),
    #[error("savepoint directory: {0}")]
    Refused(#[source] kappa_job::confine::PathRefused),
}

impl SavepointError {
    /// The HTTP status the REST API answers with.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::NotRunning(_) => StatusCode::CONFLICT,
            Self::NoDirectory | Self::Refused(_) => StatusCode::BAD_REQUEST,
            Self::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {0}")]
    Bind(String),
    #[error("checkpoint directory: {0}")]
    Checkpoints(String),
    #[error("high availability: {0}")]
    Ha(String),
    #[error("high availability on etcd")]
    Etcd(#[from] ha::EtcdError),
    #[error("cluster TLS: {0}")]
    Tls(#[source] tonic::transport::Error),
    #[error(
        "the REST API would listen on {0}, which is not a loopback address, without a token: give --auth-token-file (or KAPPA_AUTH_TOKEN), e.g. a file holding the output of `openssl rand -hex 32`"
    )]
    Unprotected(SocketAddr),
    #[error("serving the REST API on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) struct Inner {
    pub id: String,
    /// Where checkpoints go, when the cluster has a checkpoint directory.
    pub checkpoint_location: Option<kappa_state::Location>,
    pub config: JobManagerConfig,
    pub registry: Registry,
    pub jobs: RwLock<BTreeMap<String, Arc<JobEntry>>>,
    pub started: Instant,
    /// Where job records outlive this process.
    pub store: store::JobStore,
    /// Leader, or standby in HA.
    pub role: RwLock<ha::Role>,
    /// The running job drivers, stopped when this jobmanager steps down.
    pub drivers: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The last hour of every running job's metrics.
    pub series: parking_lot::Mutex<timeseries::TimeSeries>,
    /// Upgrades and audits, by id.
    pub upgrades: RwLock<BTreeMap<String, Arc<upgrade::driver::UpgradeHandle>>>,
}

impl Inner {
    pub fn job(&self, id: &str) -> Option<Arc<JobEntry>> {
        self.jobs.read().get(id).cloned()
    }

    /// Runs the driver of `job`.
    fn spawn_driver(self: &Arc<Self>, job: Arc<JobEntry>) {
        let handle = tokio::spawn(driver::drive(Arc::clone(self), job));
        let mut drivers = self.drivers.lock();
        drivers.retain(|h| !h.is_finished());
        drivers.push(handle);
    }

    /// Records `job` as it is now in the store; failures are logged and returned.
    pub async fn persist(&self, job: &JobEntry) -> Result<(), store::StoreError> {
        let r = self.store.put(&store::JobRecord::of(job)).await;
        if let Err(e) = &r {
            tracing::warn!(job = %job.id, error = %e, "could not record the job's state");
        }
        r
    }

    /// Becomes the leader: resumes the jobs and upgrades kept in the store.
    pub async fn lead(self: &Arc<Self>, _me: ha::LeaderInfo) {
        *self.role.write() = ha::Role::Leader;
        self.resume_jobs().await;
        self.resume_upgrades().await;
    }

    /// Stops acting at once: every job driver stops; the jobs are forgotten here (the next
    /// leader resumes them from their latest checkpoints).
    pub fn step_down(&self) {
        *self.role.write() = ha::Role::Standby(None);
        for h in self.drivers.lock().drain(..) {
            h.abort();
        }
        self.jobs.write().clear();
        self.upgrades.write().clear();
        self.registry.clear();
    }
}

/// The checkpoint directory of `config`, parsed.
fn checkpoint_location(
    config: &JobManagerConfig,
) -> Result<Option<kappa_state::Location>, StartError> {
    config
        .checkpoint_dir
        .as_deref()
        .map(kappa_state::Location::parse)
        .transpose()
        .map_err(|e| StartError::Checkpoints(e.to_string()))
}

/// Handle to the jobmanager; cheap to clone.
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
}

/// A started jobmanager and where it listens.
pub struct Started {
    pub jobmanager: JobManager,
    pub rest: SocketAddr,
    pub rpc: SocketAddr,
}

impl JobManager {
    /// Binds the REST and gRPC ports and starts serving, sampling rates and watching heartbeats.
    pub async fn start(config: JobManagerConfig) -> Result<Started, StartError> {
        let rest_listener = tokio::net::TcpListener::bind(config.rest)
            .await
            .map_err(|e| StartError::Bind(format!("{} (REST): {e}", config.rest)))?;
        let rpc_listener = tokio::net::TcpListener::bind(config.rpc)
            .await
            .map_err(|e| StartError::Bind(format!("{} (gRPC): {e}", config.rpc)))?;
        let rest = rest_listener
            .local_addr()
            .map_err(|e| StartError::Bind(e.to_string()))?;
        if !rest.ip().is_loopback() && config.auth_token.is_none() {
            return Err(StartError::Unprotected(rest));
        }
        let rpc = rpc_listener
            .local_addr()
            .map_err(|e| StartError::Bind(e.to_string()))?;
        let host = config
            .advertised_host
            .clone()
            .unwrap_or_else(|| rest.ip().to_string());
        let grpc = config.authenticator().scheme();
        let web = if config.rest_tls.is_some() {
            "https"
        } else {
            "http"
        };
        let me = ha::LeaderInfo {
            id: String::new(),
            rest: format!("{web}://{host}:{}", rest.port()),
            rpc: format!("{grpc}://{host}:{}", rpc.port()),
        };
        let jm = match config.ha.clone() {
            None => {
                let jm = Self::new(config)?;
                // A restarted jobmanager resumes the jobs kept under the checkpoint root
                // before it answers: a job it keeps is never "not found" (their drivers
                // start in the background). Then the upgrades, which act on those jobs.
                jm.inner.resume_jobs().await;
                let inner = Arc::clone(&jm.inner);
                tokio::spawn(async move { inner.resume_upgrades().await });
                jm
            }
            Some(ha_config) => {
                let location = checkpoint_location(&config)?;
                if location.is_none() {
                    return Err(StartError::Ha(
                        "HA needs --checkpoint-dir: a new leader restores jobs from their checkpoints".into(),
                    ));
                }
                let client = ha::connect(&ha_config).await?;
                let jobs = ha::job_store(client.clone(), &ha_config.prefix);
                let jm = Self::with_store(
                    config,
                    location,
                    store::JobStore::Etcd(Arc::clone(&jobs)),
                    ha::Role::Standby(None),
                )?;
                let me = ha::LeaderInfo {
                    id: jm.inner.id.clone(),
                    ..me
                };
                tracing::info!(endpoints = ?ha_config.endpoints, prefix = %ha_config.prefix, "HA on etcd: campaigning for leadership");
                tokio::spawn(ha::run(Arc::clone(&jm.inner), jobs, client, me));
                jm
            }
        };
        rest::serve(rest_listener, jm.clone())
            .map_err(|source| StartError::Serve { addr: rest, source })?;
        let service = JobManagerServiceServer::new(rpc::JobManagerRpc {
            inner: Arc::clone(&jm.inner),
        })
        .max_decoding_message_size(kappa_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(kappa_proto::MAX_MESSAGE_BYTES);
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = &jm.inner.config.cluster_tls {
            server = server.tls_config(tls.server()).map_err(StartError::Tls)?;
        }
        tokio::spawn(async move {
            let incoming = tokio_stream_incoming(rpc_listener);
            if let Err(e) = server
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        });
        match &jm.inner.config.cluster_tls {
            Some(tls) => {
                tracing::info!(%rest, %rpc, identity = %tls.me(), "jobmanager ready: REST API at {web}://{rest}/api/v1, taskmanagers register at https://{rpc} (mutual TLS)")
            }
            None => {
                tracing::info!(%rest, %rpc, "jobmanager ready: REST API at {web}://{rest}/api/v1, taskmanagers register at http://{rpc}")
            }
        }
        Ok(Started {
            jobmanager: jm,
            rest,
            rpc,
        })
    }

    /// A jobmanager without listeners (tests); must be called inside a tokio runtime.
    pub fn new(config: JobManagerConfig) -> Result<Self, StartError> {
        let checkpoint_location = checkpoint_location(&config)?;
        let store = match &checkpoint_location {
            Some(location) => store::JobStore::Objects(location.clone()),
            None => store::JobStore::None,
        };
        Self::with_store(config, checkpoint_location, store, ha::Role::Leader)
    }

    /// A jobmanager keeping its jobs in `store`, starting as `role`.
    fn with_store(
        config: JobManagerConfig,
        checkpoint_location: Option<kappa_state::Location>,
        store: store::JobStore,
        role: ha::Role,
    ) -> Result<Self, StartError> {
        let inner = Arc::new(Inner {
            id: uuid::Uuid::new_v4().simple().to_string(),
            checkpoint_location,
            registry: Registry::new(config.cluster_tls.clone()),
            config,
            jobs: RwLock::new(BTreeMap::new()),
            started: Instant::now(),
            store,
            role: RwLock::new(role),
            drivers: parking_lot::Mutex::new(Vec::new()),
            series: parking_lot::Mutex::default(),
            upgrades: RwLock::default(),
        });
        tokio::spawn(sample_rates(Arc::downgrade(&inner)));
        tokio::spawn(timeseries::sample_jobs(Arc::downgrade(&inner)));
        tokio::spawn(watch_heartbeats(Arc::downgrade(&inner)));
        tokio::spawn(retention::prune_ended_jobs(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    pub fn config(&self) -> &JobManagerConfig {
        &self.inner.config
    }

    /// Leader or standby (HA); always the leader without HA.
    pub fn role(&self) -> ha::Role {
        self.inner.role.read().clone()
    }

    /// Validates and starts a job; returns its id.
    pub async fn submit(
        &self,
        file_name: &str,
        spec: &str,
        overrides: &Overrides,
    ) -> Result<String, SubmitError> {
        let submitted = store::Submitted {
            start: overrides.start.map(|p| p.to_string()),
            parallelism: overrides.parallelism,
            allow_non_restored_state: false,
        };
        self.submit_from(file_name, spec, &submitted).await
    }

    /// Validates and starts a job (from a savepoint or retained checkpoint when its start
    /// says so) and records it; returns its id.
    pub async fn submit_from(
        &self,
        file_name: &str,
        spec: &str,
        submitted: &store::Submitted,
    ) -> Result<String, SubmitError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let key = self.inner.config.secret_key.as_deref();
        let text = job_text::JobText::submitted(&id, file_name, spec, key)?;
        let job = Arc::new(
            self.inner
                .prepare(&id, file_name, text, submitted, true)
                .await?,
        );
        self.inner.confine(file_name, spec, &job.plan)?;
        tracing::info!(job = %id, name = %job.plan.name, start = %job.plan.start(), parallelism = job.plan.parallelism, "job submitted");
        if let Some(warning) = job.text.warning() {
            tracing::warn!(job = %id, "{warning}");
        }
        self.inner.jobs.write().insert(id.clone(), Arc::clone(&job));
        if let Err(e) = self.inner.store.put(&store::JobRecord::of(&job)).await {
            self.inner.jobs.write().remove(&id);
            return Err(SubmitError::Unavailable(format!(
                "the job could not be recorded, so it was not started: {e}"
            )));
        }
        self.inner.spawn_driver(job);
        Ok(id)
    }

    pub fn job(&self, id: &str) -> Option<Arc<JobEntry>> {
        self.inner.job(id)
    }

    /// Refuses a planned job whose files or PostgreSQL hosts this jobmanager does not let
    /// jobs use, as a submission does; each refusal is located in the job file.
    pub fn confine(
        &self,
        file: &str,
        spec: &str,
        plan: &kappa_job::JobPlan,
    ) -> Result<(), SubmitError> {
        self.inner.confine(file, spec, plan)
    }

    /// Takes a savepoint of a running job into `dir` (default `{checkpoint dir}/savepoints`);
    /// returns its directory once written. With `drain`, every open window fires first and
    /// the sources read nothing more: only for a stop.
    pub async fn savepoint(
        &self,
        id: &str,
        dir: Option<&str>,
        drain: bool,
    ) -> Result<String, SavepointError> {
        let job = self
            .job(id)
            .ok_or_else(|| SavepointError::NotFound(id.to_string()))?;
        if job.checkpoints.lock().is_none() {
            return Err(SavepointError::NoDirectory);
        }
        let base = match dir {
            Some(d) => {
                let c = &self.inner.config;
                c.confinement
                    .paths
                    .check_location(d, c.checkpoint_dir.as_deref())
                    .map_err(SavepointError::Refused)?;
                d.trim_end_matches('/').to_string()
            }
            None => {
                let root = self
                    .inner
                    .config
                    .checkpoint_dir
                    .as_deref()
                    .ok_or(SavepointError::NoDirectory)?;
                format!("{}/savepoints", root.trim_end_matches('/'))
            }
        };
        let target = format!(
            "{base}/savepoint-{}-{}",
            &id[..id.len().min(8)],
            job::now_ms()
        );
        let location = kappa_state::Location::parse(&target)
            .map_err(|e| SavepointError::Failed(e.to_string()))?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        {
            let s = job.status.lock();
            let run = s
                .attempt
                .as_ref()
                .filter(|r| r.live && s.state == job::JobState::Running)
                .ok_or_else(|| SavepointError::NotRunning(s.state.name().to_string()))?;
            run.events
                .send(job::AttemptEvent::Savepoint(job::SavepointTarget {
                    location,
                    drain,
                    reply,
                }))
                .map_err(|_| SavepointError::NotRunning("ending".into()))?;
        }
        match tokio::time::timeout(SAVEPOINT_TIMEOUT, rx).await {
            Ok(Ok(Ok(path))) => Ok(path),
            Ok(Ok(Err(e))) => Err(SavepointError::Failed(e)),
            Ok(Err(_)) => Err(SavepointError::Failed("the job attempt ended".into())),
            Err(_) => Err(SavepointError::Failed(format!(
                "not complete within {SAVEPOINT_TIMEOUT:?}"
            ))),
        }
    }

    /// All jobs, oldest first.
    pub fn jobs(&self) -> Vec<Arc<JobEntry>> {
        let mut jobs: Vec<_> = self.inner.jobs.read().values().cloned().collect();
        jobs.sort_by_key(|j| j.submitted_at_ms);
        jobs
    }

    /// The last hour of a job's metrics (empty series for a job not sampled yet).
    pub fn series(&self, id: &str) -> timeseries::JobSeries {
        self.inner.series.lock().view(id)
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }
}

fn tokio_stream_incoming(
    listener: tokio::net::TcpListener,
) -> tokio_stream::wrappers::TcpListenerStream {
    tokio_stream::wrappers::TcpListenerStream::new(listener)
}

/// Samples the counters of running attempts once a second for the per-second rates.
async fn sample_rates(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let jobs: Vec<_> = inner.jobs.read().values().cloned().collect();
        let now = Instant::now();
        for j in jobs {
            let mut s = j.status.lock();
            if let Some(r) = s.attempt.as_mut().filter(|r| r.live) {
                let AttemptRunParts { metrics, rates } = r.parts();
                rates.sample(metrics, now);
            }
        }
    }
}

/// Removes taskmanagers that stopped sending heartbeats and fails the attempts they ran.
async fn watch_heartbeats(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        for tm in inner.registry.reap(inner.config.heartbeat_timeout) {
            let why = format!("no heartbeat within {:?}", inner.config.heartbeat_timeout);
            taskmanager_lost(&inner, &tm, &why);
        }
    }
}

/// A taskmanager is gone: the attempts it ran fail (and restart elsewhere).
pub(crate) fn taskmanager_lost(inner: &Inner, tm: &registry::TaskManagerEntry, why: &str) {
    tracing::warn!(id = %tm.id, address = %tm.address, reason = %why, "taskmanager lost");
    let jobs: Vec<_> = inner.jobs.read().values().cloned().collect();
    for j in jobs {
        let s = j.status.lock();
        if let Some(run) = s
            .attempt
            .as_ref()
            .filter(|r| r.live && r.placement.contains(&tm.id))
        {
            let _ = run.events.send(AttemptEvent::TaskManagerLost {
                id: tm.id.clone(),
                address: tm.address.clone(),
                reason: why.to_string(),
            });
        }
    }
    inner.registry.changed.notify_waiters();
}

/// Split borrows of an attempt for the sampler.
pub(crate) struct AttemptRunParts<'a> {
    pub metrics: &'a [kappa_runtime::metrics::VertexMetrics],
    pub rates: &'a mut rates::RateTracker,
}
