//! A submitted job as the jobmanager keeps it: spec, plan, state, attempt history and the
//! running attempt; and how its JSON views (`job_view`) are made of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use kappa_connectors::splits::{SourceAssignment, SourceStarts};
use kappa_job::JobPlan;
use kappa_job::plan::CheckpointPlan;
use kappa_proto::v1::{CheckpointAck, SubtaskMetrics as ProtoMetrics, TaskStateReport};
use kappa_runtime::latency::LatencyHistogram;
use kappa_runtime::metrics::{PartitionProgress, SubtaskMetrics, VertexMetrics};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;

use crate::checkpoint::{CheckpointMetadata, Checkpoints};
use crate::job_view::stalled_watermark_warnings;
pub use crate::job_view::{
    JobDetail, JobSummary, PartitionView, StateView, SubtaskView, VertexView,
};
use crate::latency::LatencyView;
use crate::rates::RateTracker;

/// The lifecycle of a job, as in Flink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Created,
    Running,
    Restarting,
    Failing,
    Failed,
    Cancelling,
    Canceled,
    Finished,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Canceled | Self::Finished)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Running => "RUNNING",
            Self::Restarting => "RESTARTING",
            Self::Failing => "FAILING",
            Self::Failed => "FAILED",
            Self::Cancelling => "CANCELLING",
            Self::Canceled => "CANCELED",
            Self::Finished => "FINISHED",
        }
    }

    pub const ALL: [JobState; 8] = [
        Self::Created,
        Self::Running,
        Self::Restarting,
        Self::Failing,
        Self::Failed,
        Self::Cancelling,
        Self::Canceled,
        Self::Finished,
    ];
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One try at running the job.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptInfo {
    pub attempt: u32,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub error: Option<String>,
    /// The checkpoint it resumed from, if any.
    pub restored_from: Option<u64>,
}

/// A checkpoint or savepoint to restore from, and where its files are.
#[derive(Debug, Clone)]
pub struct RestoreSource {
    pub location: kappa_state::Location,
    pub meta: CheckpointMetadata,
}

/// Where a requested savepoint goes, and who waits for its path.
#[derive(Debug)]
pub struct SavepointTarget {
    pub location: kappa_state::Location,
    /// Fire every open window first (stop --drain).
    pub drain: bool,
    pub reply: tokio::sync::oneshot::Sender<Result<String, String>>,
}

/// What happens to a running attempt, as the driver hears it.
#[derive(Debug)]
pub enum AttemptEvent {
    /// A subtask reported a new state.
    Task(TaskStateReport),
    /// A taskmanager running some of its subtasks stopped sending heartbeats.
    TaskManagerLost {
        id: String,
        address: String,
        /// How it was found lost.
        reason: String,
    },
    /// A subtask acknowledged (or declined) its part of a checkpoint.
    Checkpoint(CheckpointAck),
    /// A user asked for a savepoint.
    Savepoint(SavepointTarget),
}

/// The latest attempt deployed; its counters stay readable after it ends.
pub struct AttemptRun {
    pub number: u32,
    /// Counters per vertex and subtask, updated from taskmanager heartbeats.
    pub metrics: Vec<VertexMetrics>,
    /// The taskmanager of each slot (slot i holds subtask i of every vertex).
    pub placement: Vec<String>,
    /// The splits of each source subtask, by vertex id.
    pub assignments: BTreeMap<u32, Vec<SourceAssignment>>,
    pub rates: RateTracker,
    /// Still running (rates are sampled, metrics exported).
    pub live: bool,
    pub events: UnboundedSender<AttemptEvent>,
}

impl AttemptRun {
    pub(crate) fn parts(&mut self) -> crate::AttemptRunParts<'_> {
        crate::AttemptRunParts {
            metrics: &self.metrics,
            rates: &mut self.rates,
        }
    }

    /// Where the attempt's Kafka sources stand, when every partition's high watermark is
    /// known.
    pub fn kafka_sample(&self, at_ms: i64) -> Option<crate::catch_up::SourceSample> {
        let mut sample = crate::catch_up::SourceSample {
            at_ms,
            read: 0,
            lag: 0,
            partitions: 0,
        };
        for s in self.metrics.iter().flat_map(|v| &v.subtasks) {
            for p in s.partitions.lock().iter() {
                sample.read += p.position.max(0) as u64;
                sample.lag += p.lag()? as u64;
                sample.partitions += 1;
            }
        }
        (sample.partitions > 0).then_some(sample)
    }

    /// Stores the counters a heartbeat carries for one of this attempt's subtasks.
    pub fn update(&self, m: &ProtoMetrics) {
        let Some(s) = self
            .metrics
            .get(m.vertex as usize)
            .and_then(|v| v.subtasks.get(m.subtask as usize))
        else {
            return;
        };
        // Counters only grow: a heartbeat overtaken by the final report must not set them back.
        let grow = |a: &AtomicU64, v: u64| a.fetch_max(v, Ordering::Relaxed);
        grow(&s.records_in, m.records_in);
        grow(&s.records_out, m.records_out);
        grow(&s.backpressured_ns, m.backpressured_ns);
        grow(&s.late_dropped, m.late_dropped);
        grow(&s.skipped, m.skipped);
        grow(&s.dead_lettered, m.dead_lettered);
        s.queued.store(m.queued, Ordering::Relaxed);
        s.stalled_splits.store(m.stalled_splits, Ordering::Relaxed);
        s.watermark
            .fetch_max(m.watermark.unwrap_or(i64::MIN), Ordering::Relaxed);
        *s.partitions.lock() = m
            .partitions
            .iter()
            .map(|p| PartitionProgress {
                partition: p.partition,
                position: p.position,
                high_watermark: p.high_watermark,
            })
            .collect();
        if let Some(state) = &m.state {
            s.state.set(&kappa_state::figures_from_proto(state));
        }
        // Only sinks count rows; a histogram overtaken by a later one is older.
        if !m.latency.is_empty() {
            let latency =
                LatencyHistogram::from_buckets(m.latency.iter().map(|b| (b.micros, b.rows)));
            let mut kept = s.latency.lock();
            if latency.rows() >= kept.rows() {
                *kept = latency;
            }
        }
    }
}

/// Mutable part of a job.
pub struct JobStatus {
    pub state: JobState,
    /// Why the job is in its state (e.g. waiting for slots), if there is something to say.
    pub reason: Option<String>,
    pub error: Option<String>,
    pub attempts: Vec<AttemptInfo>,
    pub attempt: Option<AttemptRun>,
    pub ended_at_ms: Option<i64>,
}

/// A submitted job.
pub struct JobEntry {
    pub id: String,
    pub file_name: String,
    /// Its file: deployed whole, shown and recorded with literal secrets redacted.
    pub text: crate::job_text::JobText,
    pub plan: Arc<JobPlan>,
    pub submitted_at_ms: i64,
    /// How it was submitted (kept with the job's record).
    pub submitted: crate::store::Submitted,
    /// Attempts an earlier jobmanager made (a job taken over continues the numbering, so
    /// taskmanagers never see two attempts with one number).
    pub attempt_offset: u32,
    pub status: Mutex<JobStatus>,
    /// Kafka start offsets fixed by the first attempt, per source uid.
    pub pinned_starts: Mutex<BTreeMap<String, SourceStarts>>,
    /// Checkpoints, when the cluster has a checkpoint directory.
    pub checkpoints: Mutex<Option<Checkpoints>>,
    /// What the first attempt restores from (a savepoint), if anything.
    pub initial_restore: Option<RestoreSource>,
    /// Whether it is catching up with its Kafka sources (None: it has none, or its file
    /// turns catching up off).
    pub catch_up: Mutex<Option<crate::catch_up::CatchUp>>,
    cancel_requested: AtomicBool,
    pub cancel_notify: Notify,
}

impl JobEntry {
    pub fn new(
        id: String,
        file_name: String,
        text: crate::job_text::JobText,
        plan: JobPlan,
        checkpoints: Option<Checkpoints>,
        initial_restore: Option<RestoreSource>,
    ) -> Self {
        let reads_kafka = plan
            .sources
            .iter()
            .any(|s| matches!(s.kind, kappa_job::plan::SourceKind::Kafka(_)));
        let catch_up = plan
            .catch_up
            .filter(|_| reads_kafka)
            .map(crate::catch_up::CatchUp::new);
        Self {
            id,
            file_name,
            text,
            plan: Arc::new(plan),
            submitted_at_ms: now_ms(),
            submitted: crate::store::Submitted::default(),
            attempt_offset: 0,
            status: Mutex::new(JobStatus {
                state: JobState::Created,
                reason: None,
                error: None,
                attempts: Vec::new(),
                attempt: None,
                ended_at_ms: None,
            }),
            pinned_starts: Mutex::new(BTreeMap::new()),
            checkpoints: Mutex::new(checkpoints),
            initial_restore,
            catch_up: Mutex::new(catch_up),
            cancel_requested: AtomicBool::new(false),
            cancel_notify: Notify::new(),
        }
    }

    pub fn state(&self) -> JobState {
        self.status.lock().state
    }

    /// Its checkpoints, newest first (none without a checkpoint directory).
    pub fn checkpoint_history(&self) -> Vec<crate::checkpoint::CheckpointStats> {
        self.checkpoints
            .lock()
            .as_ref()
            .map(|c| c.history())
            .unwrap_or_default()
    }

    /// The job's periodic checkpoints, if it takes any (not only savepoints).
    pub fn periodic_checkpoints(&self) -> Option<CheckpointPlan> {
        self.checkpoints.lock().as_ref().and_then(|c| c.periodic())
    }

    pub fn set_state(&self, state: JobState, reason: Option<String>) {
        let mut s = self.status.lock();
        if s.state != state {
            tracing::info!(job = %self.id, name = %self.plan.name, from = s.state.name(), to = state.name(), "job state");
        }
        s.state = state;
        s.reason = reason;
        if state.is_terminal() {
            s.ended_at_ms = Some(now_ms());
        }
    }

    /// Asks the job to stop; false if it already ended.
    pub fn request_cancel(&self) -> bool {
        let mut s = self.status.lock();
        if s.state.is_terminal() {
            return false;
        }
        self.cancel_requested.store(true, Ordering::SeqCst);
        if s.attempt.as_ref().is_some_and(|r| r.live) {
            s.state = JobState::Cancelling;
        }
        drop(s);
        self.cancel_notify.notify_waiters();
        true
    }

    pub fn cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::SeqCst)
    }

    /// Resolves once cancellation is requested (immediately if it already was).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.cancel_notify.notified();
            if self.cancel_requested() {
                return;
            }
            notified.await;
        }
    }

    pub fn summary(&self) -> JobSummary {
        let s = self.status.lock();
        JobSummary {
            id: self.id.clone(),
            name: self.plan.name.clone(),
            state: s.state,
            start: self.plan.start(),
            parallelism: self.plan.parallelism,
            submitted_at_ms: self.submitted_at_ms,
            ended_at_ms: s.ended_at_ms,
            error: s.error.clone(),
        }
    }

    /// The detailed view with the graph and the metrics of the latest attempt.
    pub fn detail(&self) -> JobDetail {
        let summary = self.summary();
        let s = self.status.lock();
        let graph = self.plan.graph();
        let vertices: Vec<VertexView> = graph
            .vertices
            .iter()
            .enumerate()
            .map(|(vi, v)| {
                let running = s.attempt.as_ref();
                let metrics = running.and_then(|r| r.metrics.get(vi));
                let keyed = v.chain.iter().any(|op| op.kind.is_keyed());
                let subtasks = (0..v.parallelism as usize)
                    .map(|i| {
                        let m = metrics.and_then(|m| m.subtasks.get(i));
                        let rates = running
                            .filter(|r| r.live)
                            .map(|r| r.rates.get(vi, i))
                            .unwrap_or_default();
                        let get = |f: fn(&SubtaskMetrics) -> &AtomicU64| {
                            m.map_or(0, |m| SubtaskMetrics::get(f(m)))
                        };
                        SubtaskView {
                            index: i as u32,
                            records_in: get(|m| &m.records_in),
                            records_out: get(|m| &m.records_out),
                            late_records_dropped: get(|m| &m.late_dropped),
                            state: keyed.then(|| {
                                StateView::of(m.map(|m| m.state.figures()).unwrap_or_default())
                            }),
                            bad_records_skipped: get(|m| &m.skipped),
                            bad_records_dead_lettered: get(|m| &m.dead_lettered),
                            queued: get(|m| &m.queued),
                            stalled_splits: get(|m| &m.stalled_splits),
                            watermark: m.and_then(|m| m.watermark()),
                            rates,
                            taskmanager: running.and_then(|r| r.placement.get(i)).cloned(),
                            partitions: m
                                .map(|m| {
                                    m.partitions
                                        .lock()
                                        .iter()
                                        .map(|p| PartitionView {
                                            partition: p.partition,
                                            position: p.position,
                                            high_watermark: p.high_watermark,
                                            lag: p.lag(),
                                        })
                                        .collect()
                                })
                                .unwrap_or_default(),
                            splits: running
                                .and_then(|r| r.assignments.get(&v.id))
                                .and_then(|a| a.get(i))
                                .map(|a| a.describe()),
                        }
                    })
                    .collect::<Vec<_>>();
                let sum = |f: fn(&SubtaskView) -> u64| subtasks.iter().map(f).sum();
                let sumf = |f: fn(&SubtaskView) -> f64| subtasks.iter().map(f).sum::<f64>();
                VertexView {
                    id: v.id,
                    name: v.name.clone(),
                    operators: v.operators.clone(),
                    parallelism: v.parallelism,
                    records_in: sum(|s| s.records_in),
                    records_out: sum(|s| s.records_out),
                    records_in_per_second: sumf(|s| s.rates.records_in_per_second),
                    records_out_per_second: sumf(|s| s.rates.records_out_per_second),
                    backpressure_ratio: sumf(|s| s.rates.backpressure_ratio)
                        / subtasks.len().max(1) as f64,
                    late_records_dropped: sum(|s| s.late_records_dropped),
                    state: keyed
                        .then(|| StateView::sum(subtasks.iter().filter_map(|s| s.state.as_ref()))),
                    bad_records_skipped: sum(|s| s.bad_records_skipped),
                    bad_records_dead_lettered: sum(|s| s.bad_records_dead_lettered),
                    watermark: metrics.and_then(|m| m.watermark()),
                    subtasks,
                }
            })
            .collect();
        JobDetail {
            summary,
            file_name: self.file_name.clone(),
            reason: s.reason.clone(),
            max_parallelism: self.plan.max_parallelism,
            checkpoint_interval_ms: self
                .periodic_checkpoints()
                .map(|p| u64::try_from(p.interval.as_millis()).unwrap_or(u64::MAX)),
            attempts: s.attempts.clone(),
            warnings: self
                .text
                .warning()
                .into_iter()
                .chain(stalled_watermark_warnings(&vertices))
                .collect(),
            latency: s
                .attempt
                .as_ref()
                .and_then(|r| LatencyView::of(&crate::latency::merged(&r.metrics))),
            catch_up: self.catch_up.lock().as_ref().map(|c| c.status()),
            vertices,
            edges: graph.edges,
        }
    }
}
