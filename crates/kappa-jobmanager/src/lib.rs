//! The Kappa jobmanager: keeps the registry of taskmanagers, accepts jobs, places their
//! subtasks in slots, restarts failed attempts, and serves the REST API, /metrics and gRPC.

mod attempt_machine;
mod attempt_tasks;
mod calls;
pub mod checkpoint;
#[cfg(test)]
mod coordinator_tests;
mod deployment;
mod driver;
pub mod ha;
pub mod job;
mod lifecycle;
mod prom;
mod rates;
pub mod registry;
pub mod rest;
mod retention;
mod rpc;
mod savepoint_queue;
pub mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_job::plan::RestartPlan;
use kappa_job::{Overrides, SpecErrors, plan_job};
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
    /// When set, the REST API and /metrics need `Authorization: Bearer <this>`.
    pub auth_token: Option<String>,
    /// Largest request body the REST API accepts (job files are sent in it).
    pub max_request_bytes: usize,
    /// Leader election and job records in etcd; without it, job records are kept under the
    /// checkpoint directory (when there is one).
    pub ha: Option<ha::HaConfig>,
    /// Host name other processes reach this jobmanager at (published to standbys in HA);
    /// default: the address it listens on.
    pub advertised_host: Option<String>,
}

impl Default for JobManagerConfig {
    fn default() -> Self {
        Self {
            rest: SocketAddr::from(([127, 0, 0, 1], 8081)),
            rpc: SocketAddr::from(([127, 0, 0, 1], 6123)),
            checkpoint_dir: None,
            default_checkpoint_interval: Some(Duration::from_secs(10)),
            job_retention: Duration::from_secs(3600),
            kafka_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(10),
            slot_timeout: Duration::from_secs(300),
            auth_token: None,
            max_request_bytes: 4 << 20,
            ha: None,
            advertised_host: None,
            partition_discovery_interval: Duration::from_secs(10),
            restart: RestartPlan::default(),
        }
    }
}

/// A savepoint to start a job from.
#[derive(Debug, Clone)]
pub struct SavepointStart {
    /// What to restore.
    pub from: RestoreFrom,
    /// Start even if the savepoint holds state the job has no operator for (it is dropped).
    pub allow_non_restored_state: bool,
}

/// A savepoint directory, or a retained checkpoint of a job of this cluster.
#[derive(Debug, Clone)]
pub enum RestoreFrom {
    Savepoint(String),
    Checkpoint { job: String, id: u64 },
}

impl std::fmt::Display for RestoreFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Savepoint(uri) => write!(f, "savepoint {uri}"),
            Self::Checkpoint { job, id } => write!(f, "checkpoint {id} of job {job}"),
        }
    }
}

/// Checks that the state of `meta` fits the job, operator by operator (uid), or drops what
/// no operator takes when allowed.
fn check_restored_state(
    sp: &SavepointStart,
    meta: &mut checkpoint::CheckpointMetadata,
    plan: &kappa_job::JobPlan,
    layouts: &[checkpoint::OperatorLayout],
) -> Result<(), SubmitError> {
    use kappa_job::graph::OperatorKind;
    let bad = |m: String| SubmitError::BadRequest(format!("{}: {m}", sp.from));
    let graph = plan.graph();
    let kind_of = |uid: &str| graph.operators().find(|o| o.uid == uid).map(|o| o.kind);
    let mut unmapped: Vec<String> = Vec::new();
    for o in &meta.operators {
        if !kind_of(&o.uid).is_some_and(OperatorKind::is_keyed) && !unmapped.contains(&o.uid) {
            unmapped.push(o.uid.clone());
        }
    }
    for c in &meta.sink_commits {
        if !matches!(kind_of(&c.uid), Some(OperatorKind::Sink(_))) && !unmapped.contains(&c.uid) {
            unmapped.push(c.uid.clone());
        }
    }
    for s in &meta.sources {
        if !matches!(kind_of(&s.uid), Some(OperatorKind::Source(_))) && !unmapped.contains(&s.uid) {
            unmapped.push(s.uid.clone());
        }
    }
    if !unmapped.is_empty() {
        let ours: Vec<String> = graph.operators().map(|o| format!("`{}`", o.uid)).collect();
        let theirs: Vec<String> = unmapped.iter().map(|u| format!("`{u}`")).collect();
        if !sp.allow_non_restored_state {
            return Err(bad(format!(
                "it holds state of the operators {} that no operator of the job takes (the job's operators: {}); start with --allow-non-restored-state to drop it",
                theirs.join(", "),
                ours.join(", ")
            )));
        }
        tracing::warn!(from = %sp.from, operators = ?unmapped, "dropping state no operator takes");
        meta.operators.retain(|o| !unmapped.contains(&o.uid));
        meta.sink_commits.retain(|c| !unmapped.contains(&c.uid));
        meta.sources.retain(|s| !unmapped.contains(&s.uid));
        meta.layouts.retain(|l| !unmapped.contains(&l.uid));
    }
    if !meta.operators.is_empty() && meta.max_parallelism != plan.max_parallelism {
        return Err(bad(format!(
            "its keyed state is split into {} key groups (max_parallelism) but the job has {}: set max_parallelism = {} in the job to restore it",
            meta.max_parallelism, plan.max_parallelism, meta.max_parallelism
        )));
    }
    for saved in &meta.layouts {
        let Some(ours) = layouts.iter().find(|l| l.uid == saved.uid) else {
            continue;
        };
        if !saved.aggregates.is_empty() && saved.aggregates != ours.aggregates {
            return Err(bad(format!(
                "the state of `{}` has the aggregates [{}] but the job computes [{}]: the state cannot be restored into them",
                saved.uid,
                saved.aggregates.join(", "),
                ours.aggregates.join(", ")
            )));
        }
    }
    Ok(())
}

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
}

impl SavepointError {
    /// The HTTP status the REST API answers with.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::NotRunning(_) => StatusCode::CONFLICT,
            Self::NoDirectory => StatusCode::BAD_REQUEST,
            Self::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Invalid(SpecErrors),
    #[error("{0}")]
    BadRequest(String),
    /// The job store (etcd, the checkpoint directory) cannot record it now.
    #[error("{0}")]
    Unavailable(String),
}

/// Plans a job on a blocking thread: planning a large job must not hold up an async worker
/// (heartbeats, the REST API).
pub(crate) async fn plan_blocking(
    file: &str,
    spec: &str,
    overrides: &Overrides,
) -> Result<kappa_job::JobPlan, SubmitError> {
    let (file, spec, overrides) = (file.to_string(), spec.to_string(), overrides.clone());
    tokio::task::spawn_blocking(move || plan_job(&file, &spec, &overrides))
        .await
        .map_err(|e| SubmitError::Unavailable(format!("planning the job stopped: {e}")))?
        .map_err(SubmitError::Invalid)
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {0}")]
    Bind(String),
    #[error("checkpoint directory: {0}")]
    Checkpoints(String),
    #[error("high availability: {0}")]
    Ha(String),
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

    /// Becomes the leader: resumes the jobs kept in the store.
    pub async fn lead(self: &Arc<Self>, _me: ha::LeaderInfo) {
        *self.role.write() = ha::Role::Leader;
        self.resume_jobs().await;
    }

    /// Stops acting at once: every job driver stops; the jobs are forgotten here (the next
    /// leader resumes them from their latest checkpoints).
    pub fn step_down(&self) {
        *self.role.write() = ha::Role::Standby(None);
        for h in self.drivers.lock().drain(..) {
            h.abort();
        }
        self.jobs.write().clear();
        self.registry.clear();
    }

    /// Plans a job and builds its entry: checkpoints, and the savepoint or checkpoint it
    /// starts from (read only when `restore_initial`).
    async fn prepare(
        &self,
        id: &str,
        file_name: &str,
        spec: &str,
        submitted: &store::Submitted,
        restore_initial: bool,
    ) -> Result<JobEntry, SubmitError> {
        let start = submitted
            .start
            .as_deref()
            .map(str::parse::<kappa_job::Start>)
            .transpose()
            .map_err(|e| SubmitError::BadRequest(format!("start: {e}")))?;
        let (position, from) = match start {
            Some(kappa_job::Start::Position(p)) => (Some(p), None),
            Some(kappa_job::Start::Savepoint(uri)) => (None, Some(RestoreFrom::Savepoint(uri))),
            Some(kappa_job::Start::Checkpoint { job, id }) => {
                (None, Some(RestoreFrom::Checkpoint { job, id }))
            }
            None => (None, None),
        };
        let overrides = &Overrides {
            start: position,
            parallelism: submitted.parallelism,
        };
        let savepoint = from.filter(|_| restore_initial).map(|from| SavepointStart {
            from,
            allow_non_restored_state: submitted.allow_non_restored_state,
        });
        let plan = plan_blocking(file_name, spec, overrides).await?;
        let layouts: Vec<checkpoint::OperatorLayout> = plan
            .windows
            .iter()
            .map(|w| checkpoint::OperatorLayout {
                uid: w.uid.clone(),
                aggregates: w.aggregate_names(),
            })
            .collect();
        // The cluster's default interval applies where checkpoints can be written.
        let default_interval = self
            .checkpoint_location
            .as_ref()
            .and(self.config.default_checkpoint_interval);
        let periodic = plan.checkpoints.resolve(default_interval);
        let checkpoints = match (periodic, &self.checkpoint_location) {
            (Some(cp), Some(location)) => Some(checkpoint::Checkpoints::new(
                location.clone(),
                cp,
                layouts.clone(),
            )),
            (Some(_), None) => {
                return Err(SubmitError::BadRequest(
                    "the job asks for checkpoints but the cluster has no checkpoint directory (start the jobmanager with --checkpoint-dir)".into(),
                ));
            }
            // Without periodic checkpoints a job still takes savepoints on request.
            (None, Some(location)) => Some(checkpoint::Checkpoints::new(
                location.clone(),
                checkpoint::Checkpoints::on_request(),
                layouts.clone(),
            )),
            (None, None) => None,
        };
        if periodic.is_none()
            && let Some(sink) = plan
                .sinks
                .iter()
                .find(|s| s.delivery == kappa_job::spec::Delivery::ExactlyOnce)
        {
            let why = match plan.checkpoints {
                kappa_job::plan::Checkpointing::Job { .. } => {
                    "the job's [checkpoints] table has no interval and the cluster has no default (--checkpoint-interval off)"
                }
                _ if self.checkpoint_location.is_none() => {
                    "the cluster has no checkpoint directory (start the jobmanager with --checkpoint-dir)"
                }
                _ => {
                    "the cluster takes no checkpoints by default (--checkpoint-interval off): add a [checkpoints] table with an interval"
                }
            };
            return Err(SubmitError::BadRequest(format!(
                "sink `{}` is exactly-once, which commits output when checkpoints complete, but {why}",
                sink.name
            )));
        }
        let initial = match savepoint {
            Some(_) if checkpoints.is_none() => {
                return Err(SubmitError::BadRequest(
                    "starting from a savepoint needs the jobmanager's --checkpoint-dir (window state is restored through it)".into(),
                ));
            }
            Some(sp) => Some(self.restore_source(&sp, &plan, &layouts).await?),
            None => None,
        };
        let mut job = JobEntry::new(
            id.to_string(),
            file_name.to_string(),
            spec.to_string(),
            plan,
            checkpoints,
            initial,
        );
        job.submitted = submitted.clone();
        Ok(job)
    }

    /// Reads the savepoint or retained checkpoint to start from and checks it fits the job.
    async fn restore_source(
        &self,
        sp: &SavepointStart,
        plan: &kappa_job::JobPlan,
        layouts: &[checkpoint::OperatorLayout],
    ) -> Result<job::RestoreSource, SubmitError> {
        let (location, mut meta) = match &sp.from {
            RestoreFrom::Savepoint(uri) => {
                let location = kappa_state::Location::parse(uri)
                    .map_err(|e| SubmitError::BadRequest(format!("savepoint {uri}: {e}")))?;
                let meta = checkpoint::read_metadata(&location)
                    .await
                    .map_err(SubmitError::BadRequest)?;
                (location, meta)
            }
            RestoreFrom::Checkpoint { job, id } => {
                let entry = self.job(job).ok_or_else(|| {
                    SubmitError::BadRequest(format!("checkpoint {id} of job {job}: no such job"))
                })?;
                let found = entry.checkpoints.lock().as_ref().and_then(|c| {
                    c.is_retained(*id)
                        .then(|| (c.location.clone(), c.metadata_path(job, *id)))
                });
                let Some((location, path)) = found else {
                    return Err(SubmitError::BadRequest(format!(
                        "checkpoint {id} of job {job} is not a retained completed checkpoint"
                    )));
                };
                let meta = checkpoint::read_metadata_at(&location, &path)
                    .await
                    .map_err(SubmitError::BadRequest)?;
                (location, meta)
            }
        };
        check_restored_state(sp, &mut meta, plan, layouts)?;
        Ok(job::RestoreSource { location, meta })
    }

    /// Resumes the jobs of the store that had not ended, each from its latest checkpoint.
    async fn resume_jobs(self: &Arc<Self>) {
        let records = match self.store.load().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the kept jobs: none resumed");
                return;
            }
        };
        for r in records {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "a kept job's record cannot be read: that job is not resumed");
                    continue;
                }
            };
            if self.jobs.read().contains_key(&r.id) {
                continue;
            }
            let state = job::JobState::ALL.iter().find(|s| s.name() == r.state);
            if let Some(&ended) = state.filter(|s| s.is_terminal()) {
                self.keep_ended(&r, ended, None).await;
                continue;
            }
            if state.is_none() {
                tracing::error!(job = %r.id, state = %r.state, "a kept job's record names an unknown state: that job is not resumed");
                continue;
            }
            match self.rebuild(&r).await {
                Ok(job) => {
                    tracing::info!(job = %r.id, checkpoint = ?r.latest_checkpoint, "resuming a kept job");
                    let job = Arc::new(job);
                    self.jobs.write().insert(r.id.clone(), Arc::clone(&job));
                    self.spawn_driver(job);
                }
                Err(e) => {
                    tracing::error!(job = %r.id, error = %e, "cannot resume a kept job");
                    let reason = format!("could not resume after a jobmanager change: {e}");
                    self.keep_ended(&r, job::JobState::Failed, Some(reason))
                        .await;
                }
            }
        }
    }

    /// A kept job that ended, or that cannot resume (FAILED with `failure`), is listed with
    /// its history until its retention passes (when its file still plans); past it, its
    /// record is deleted.
    async fn keep_ended(
        self: &Arc<Self>,
        r: &store::JobRecord,
        state: job::JobState,
        failure: Option<String>,
    ) {
        let now = job::now_ms();
        if failure.is_none() && retention::expired(r.ended_at_ms, now, self.config.job_retention) {
            if let Err(e) = self.store.delete(&r.id).await {
                tracing::warn!(job = %r.id, error = %e, "could not delete an ended job's record");
            }
            return;
        }
        let submitted = store::Submitted {
            start: r.start.clone(),
            parallelism: r.parallelism,
            allow_non_restored_state: r.allow_non_restored_state,
        };
        let Ok(mut job) = self
            .prepare(&r.id, &r.file_name, &r.spec, &submitted, false)
            .await
        else {
            return;
        };
        job.submitted_at_ms = r.submitted_at_ms;
        job.attempt_offset = r.last_attempt;
        job.set_state(state, failure.clone());
        let s = job.status.get_mut();
        s.ended_at_ms = Some(r.ended_at_ms.unwrap_or(now).min(now));
        if failure.is_some() {
            s.error = failure;
        }
        let job = Arc::new(job);
        self.jobs.write().insert(r.id.clone(), Arc::clone(&job));
        if state == job::JobState::Failed {
            let _ = self.persist(&job).await;
        }
    }

    /// The newest completed checkpoint of job `id` that can be read, from `latest` down
    /// through the older ones still kept; the error of `latest` when none can.
    async fn newest_readable_checkpoint(
        location: &kappa_state::Location,
        id: &str,
        latest: u64,
    ) -> Result<checkpoint::CheckpointMetadata, SubmitError> {
        let path = location.child(&[id, &format!("chk-{latest}"), "_metadata"]);
        let first = match checkpoint::read_metadata_at(location, &path).await {
            Ok(meta) => return Ok(meta),
            Err(e) => e,
        };
        for n in checkpoint::kept_checkpoint_ids(location, id).await {
            if n >= latest {
                continue;
            }
            let path = location.child(&[id, &format!("chk-{n}"), "_metadata"]);
            match checkpoint::read_metadata_at(location, &path).await {
                Ok(meta) => {
                    tracing::warn!(job = %id, latest, error = %first, fallback = n, "the latest checkpoint cannot be read: resuming from an older one");
                    return Ok(meta);
                }
                Err(e) => {
                    tracing::warn!(job = %id, checkpoint = n, error = %e, "an older checkpoint cannot be read either")
                }
            }
        }
        Err(SubmitError::BadRequest(format!(
            "{first}; no older checkpoint of the job can be read"
        )))
    }

    /// The entry of a kept job, restoring from its latest completed checkpoint.
    async fn rebuild(&self, r: &store::JobRecord) -> Result<JobEntry, SubmitError> {
        let submitted = store::Submitted {
            start: r.start.clone(),
            parallelism: r.parallelism,
            allow_non_restored_state: r.allow_non_restored_state,
        };
        let latest = match (r.latest_checkpoint, &self.checkpoint_location) {
            (Some(n), Some(location)) => {
                Some(Self::newest_readable_checkpoint(location, &r.id, n).await?)
            }
            _ => None,
        };
        let mut job = self
            .prepare(&r.id, &r.file_name, &r.spec, &submitted, latest.is_none())
            .await?;
        job.submitted_at_ms = r.submitted_at_ms;
        job.attempt_offset = r.last_attempt;
        if let Some(c) = job.checkpoints.get_mut().as_mut() {
            if let Some(meta) = latest {
                c.resume_from(meta);
            }
            // Checkpoint ids are never reused, also after a fall back to an older one: sinks
            // name committed output by them.
            if let Some(n) = r.latest_checkpoint {
                c.number_after(n);
            }
        }
        Ok(job)
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
        let rpc = rpc_listener
            .local_addr()
            .map_err(|e| StartError::Bind(e.to_string()))?;
        let host = config
            .advertised_host
            .clone()
            .unwrap_or_else(|| rest.ip().to_string());
        let me = ha::LeaderInfo {
            id: String::new(),
            rest: format!("http://{host}:{}", rest.port()),
            rpc: format!("http://{host}:{}", rpc.port()),
        };
        let jm = match config.ha.clone() {
            None => {
                let jm = Self::new(config)?;
                // A restarted jobmanager resumes the jobs kept under the checkpoint root.
                let inner = Arc::clone(&jm.inner);
                tokio::spawn(async move { inner.resume_jobs().await });
                jm
            }
            Some(ha_config) => {
                let location = checkpoint_location(&config)?;
                if location.is_none() {
                    return Err(StartError::Ha(
                        "HA needs --checkpoint-dir: a new leader restores jobs from their checkpoints".into(),
                    ));
                }
                let client = ha::connect(&ha_config)
                    .await
                    .map_err(|e| StartError::Ha(e.to_string()))?;
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
        let app = rest::router(jm.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(rest_listener, app).await {
                tracing::error!(error = %e, "REST server stopped");
            }
        });
        let service = JobManagerServiceServer::new(rpc::JobManagerRpc {
            inner: Arc::clone(&jm.inner),
        })
        .max_decoding_message_size(kappa_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(kappa_proto::MAX_MESSAGE_BYTES);
        tokio::spawn(async move {
            let incoming = tokio_stream_incoming(rpc_listener);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        });
        tracing::info!(%rest, %rpc, "jobmanager ready: REST API at http://{rest}/api/v1, taskmanagers register at http://{rpc}");
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
            config,
            registry: Registry::default(),
            jobs: RwLock::new(BTreeMap::new()),
            started: Instant::now(),
            store,
            role: RwLock::new(role),
            drivers: parking_lot::Mutex::new(Vec::new()),
        });
        tokio::spawn(sample_rates(Arc::downgrade(&inner)));
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
        let job = Arc::new(
            self.inner
                .prepare(&id, file_name, spec, submitted, true)
                .await?,
        );
        tracing::info!(job = %id, name = %job.plan.name, start = %job.plan.start(), parallelism = job.plan.parallelism, "job submitted");
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
            Some(d) => d.trim_end_matches('/').to_string(),
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
