//! The checkpoint coordinator of a job: triggers checkpoint n at the source subtasks, collects
//! every subtask's acknowledgement, writes `{job}/chk-n/_metadata` (offsets per source uid,
//! keyed state per operator uid and key-group range, sink output per sink uid), keeps the last
//! K completed checkpoints (deleting what no retained one references), and keeps the history.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use kappa_job::plan::CheckpointPlan;
use kappa_proto::v1::CheckpointAck;
use kappa_runtime::io::{FilePosition, NexmarkPosition, SplitPosition};
use kappa_state::{Location, StateHandle, file_from_proto, nexmark_from_proto};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::job::now_ms;

/// Checkpoints of a job shown in its history.
const HISTORY: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckpointStatus {
    InProgress,
    Completed,
    Failed,
}

/// Where a source subtask was in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartitionOffset {
    pub partition: i32,
    /// None: nothing read yet from the beginning.
    pub next_offset: Option<i64>,
    /// The uid of the source (in the history; the metadata groups offsets by source).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// Where one source operator was in its splits: Kafka partitions, files and Nexmark splits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOffsets {
    pub uid: String,
    pub offsets: Vec<PartitionOffset>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FilePosition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nexmark: Vec<NexmarkPosition>,
}

impl SourceOffsets {
    /// The positions a restore starts this source's splits at.
    pub fn positions(&self) -> impl Iterator<Item = SplitPosition> + '_ {
        let partitions = self.offsets.iter().map(|o| SplitPosition::Partition {
            partition: o.partition,
            next_offset: o.next_offset,
        });
        let nexmark = self.nexmark.iter().copied().map(SplitPosition::Nexmark);
        partitions
            .chain(self.files.iter().cloned().map(SplitPosition::File))
            .chain(nexmark)
    }
}

/// One subtask's part of a checkpoint, in the history.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubtaskCheckpoint {
    pub vertex: u32,
    pub subtask: u32,
    pub sync_ms: u64,
    pub async_ms: u64,
    pub alignment_ms: u64,
    pub full_bytes: u64,
    pub incremental_bytes: u64,
}

/// A checkpoint as the REST API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointStats {
    pub id: u64,
    pub attempt: u32,
    pub status: CheckpointStatus,
    pub trigger_ms: i64,
    pub duration_ms: Option<u64>,
    pub acknowledged: usize,
    pub expected: usize,
    pub full_bytes: u64,
    pub incremental_bytes: u64,
    pub offsets: Vec<PartitionOffset>,
    pub subtasks: Vec<SubtaskCheckpoint>,
    pub failure: Option<String>,
    /// The metadata object of a completed checkpoint.
    pub path: Option<String>,
    /// Completed and still kept: a job can start from it (`checkpoint:<job id>:<id>`).
    #[serde(default)]
    pub retained: bool,
}

/// The keyed state of one operator's subtask in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorState {
    /// The operator's uid.
    pub uid: String,
    pub subtask: u32,
    /// The key groups this state holds (inclusive).
    pub key_groups: (u32, u32),
    pub state: StateHandle,
}

/// What a keyed operator's saved state means, to check a restore fits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorLayout {
    pub uid: String,
    /// Its aggregate functions, in order: the layout of the saved accumulators.
    pub aggregates: Vec<String>,
}

/// The window state of one subtask in a checkpoint written before operators had uids in
/// the metadata (read only).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LegacyWindowState {
    subtask: u32,
    key_groups: (u32, u32),
    state: StateHandle,
}

/// Output of a sink subtask closed at a checkpoint barrier and not known to be committed: a
/// restore commits it (once) before the sink writes anything new.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkCommitState {
    /// The uid of the sink operator.
    #[serde(default = "default_sink_uid")]
    pub uid: String,
    pub subtask: u32,
    /// The checkpoint whose barrier closed it.
    pub checkpoint_id: u64,
    /// The identity it is committed under.
    pub writer: String,
    /// The object holding it.
    pub object: String,
    pub bytes: u64,
}

/// The `_metadata` format this release writes.
pub const METADATA_VERSION: u32 = 2;

/// `chk-n/_metadata`: everything a restore needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// 2: offsets, state and sink output by operator uid; absent (1): one source and one
    /// window, read into the same shape.
    #[serde(default = "legacy_version")]
    pub version: u32,
    pub job_id: String,
    pub checkpoint_id: u64,
    pub attempt: u32,
    pub completed_at_ms: i64,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// Offsets per source uid.
    #[serde(default)]
    pub sources: Vec<SourceOffsets>,
    /// Keyed state per operator uid, subtask and key-group range.
    #[serde(default)]
    pub operators: Vec<OperatorState>,
    /// What each keyed operator's state holds.
    #[serde(default)]
    pub layouts: Vec<OperatorLayout>,
    /// Sink output this checkpoint holds that may not be committed yet.
    #[serde(default)]
    pub sink_commits: Vec<SinkCommitState>,
    // Version 1 fields, read into the ones above by `upgrade`, never written.
    #[serde(default, skip_serializing)]
    offsets: Vec<PartitionOffset>,
    #[serde(default, skip_serializing)]
    windows: Vec<LegacyWindowState>,
    #[serde(default = "default_window_uid", skip_serializing)]
    window_uid: String,
    #[serde(default, skip_serializing)]
    aggregates: Vec<String>,
}

fn legacy_version() -> u32 {
    1
}

fn default_window_uid() -> String {
    "window".into()
}

fn default_sink_uid() -> String {
    "sink".into()
}

impl CheckpointMetadata {
    /// Every object this checkpoint refers to (besides its `_metadata`).
    fn objects(&self) -> impl Iterator<Item = &str> {
        let state = self
            .operators
            .iter()
            .flat_map(|w| w.state.files.iter().map(|f| f.object.as_str()));
        state.chain(self.sink_commits.iter().map(|c| c.object.as_str()))
    }

    /// Reads a version 1 document (the single source `source`, the window `window_uid`)
    /// into the shape of version 2.
    fn upgrade(mut self) -> Self {
        if self.version >= METADATA_VERSION {
            return self;
        }
        if self.sources.is_empty() && !self.offsets.is_empty() {
            self.sources.push(SourceOffsets {
                uid: "source".into(),
                offsets: std::mem::take(&mut self.offsets),
                files: Vec::new(),
                nexmark: Vec::new(),
            });
        }
        let uid = self.window_uid.clone();
        if !self.windows.is_empty() && self.layouts.is_empty() {
            self.layouts.push(OperatorLayout {
                uid: uid.clone(),
                aggregates: std::mem::take(&mut self.aggregates),
            });
        }
        self.operators
            .extend(self.windows.drain(..).map(|w| OperatorState {
                uid: uid.clone(),
                subtask: w.subtask,
                key_groups: w.key_groups,
                state: w.state,
            }));
        self.version = METADATA_VERSION;
        self
    }

    /// The offsets saved for source `uid`.
    pub fn offsets_of(&self, uid: &str) -> impl Iterator<Item = &PartitionOffset> {
        self.sources
            .iter()
            .filter(move |s| s.uid == uid)
            .flat_map(|s| s.offsets.iter())
    }

    /// The uids of the operators whose state or output this checkpoint holds.
    pub fn state_uids(&self) -> BTreeSet<&str> {
        self.operators
            .iter()
            .map(|o| o.uid.as_str())
            .chain(self.sink_commits.iter().map(|c| c.uid.as_str()))
            .collect()
    }
}

struct Pending {
    stats: CheckpointStats,
    started: Instant,
    expected: HashSet<(u32, u32)>,
    acks: HashMap<(u32, u32), CheckpointAck>,
}

/// Checkpoints of one job, across its attempts.
pub struct Checkpoints {
    pub location: Location,
    pub plan: CheckpointPlan,
    /// The keyed operators' layouts, recorded in each checkpoint.
    layouts: Vec<OperatorLayout>,
    next_id: u64,
    pending: Option<Pending>,
    last_finished: Option<Instant>,
    /// When the latest checkpoint started.
    last_started: Option<Instant>,
    /// The job is catching up with its sources: periodic checkpoints are
    /// [`CheckpointPlan::interval_during_catch_up`] apart.
    catching_up: bool,
    history: VecDeque<CheckpointStats>,
    /// Completed checkpoints kept, oldest first.
    retained: VecDeque<CheckpointMetadata>,
    consecutive_failures: u32,
    /// The latest checkpoint that failed, and why (savepoints waiting on it report this).
    pub last_failure: Option<(u64, String)>,
}

/// What the driver should do after an event.
pub enum Step {
    Nothing,
    /// Trigger checkpoint n at the source subtasks.
    Trigger(u64),
    /// Persist this completed checkpoint (then call [`Checkpoints::completed`]).
    Complete(Box<CheckpointMetadata>),
    /// Too many checkpoints failed in a row.
    FailJob(String),
}

impl Checkpoints {
    pub fn new(location: Location, plan: CheckpointPlan, layouts: Vec<OperatorLayout>) -> Self {
        Self {
            location,
            plan,
            layouts,
            next_id: 1,
            pending: None,
            last_finished: None,
            last_started: None,
            catching_up: false,
            history: VecDeque::new(),
            retained: VecDeque::new(),
            consecutive_failures: 0,
            last_failure: None,
        }
    }

    /// The plan of a job without periodic checkpoints: savepoints only (an interval of
    /// `Duration::MAX`, which [`Checkpoints::periodic`] recognises).
    pub fn on_request() -> CheckpointPlan {
        CheckpointPlan {
            interval: Duration::MAX,
            interval_during_catch_up: Duration::MAX,
            timeout: Duration::from_secs(600),
            min_pause: Duration::ZERO,
            retained: 1,
            tolerable_failures: None,
        }
    }

    /// Whether checkpoints are taken periodically (not only for savepoints).
    pub fn periodic(&self) -> Option<CheckpointPlan> {
        (self.plan.interval != Duration::MAX).then_some(self.plan)
    }

    /// Whether a checkpoint is under way.
    pub fn in_progress(&self) -> bool {
        self.pending.is_some()
    }

    /// Starts checkpoint n now, for a savepoint (unless one is under way).
    pub fn trigger_now(&mut self, attempt: u32, expected: HashSet<(u32, u32)>) -> Step {
        if self.pending.is_some() {
            return Step::Nothing;
        }
        self.start(attempt, expected)
    }

    /// Whether the job is catching up with its sources (periodic checkpoints then come
    /// [`CheckpointPlan::interval_during_catch_up`] apart).
    pub fn set_catching_up(&mut self, on: bool) {
        self.catching_up = on;
    }

    pub fn history(&self) -> Vec<CheckpointStats> {
        let mut h: Vec<_> = self.history.iter().cloned().collect();
        h.extend(self.pending.as_ref().map(|p| p.stats.clone()));
        h.reverse();
        for c in &mut h {
            c.retained = c.status == CheckpointStatus::Completed && self.is_retained(c.id);
        }
        h
    }

    /// The latest completed checkpoint, to restore from.
    pub fn latest(&self) -> Option<&CheckpointMetadata> {
        self.retained.back()
    }

    fn record(&mut self, stats: CheckpointStats) {
        self.history.push_back(stats);
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
    }

    fn fail_pending(&mut self, why: String) -> Step {
        let Some(p) = self.pending.take() else {
            return Step::Nothing;
        };
        tracing::warn!(checkpoint = p.stats.id, reason = %why, "checkpoint failed");
        let mut stats = p.stats;
        stats.status = CheckpointStatus::Failed;
        stats.duration_ms = Some(p.started.elapsed().as_millis() as u64);
        stats.failure = Some(why.clone());
        let id = stats.id;
        self.record(stats);
        self.last_finished = Some(Instant::now());
        self.count_failure(id, why)
    }

    /// Checkpoint `id` failed: the job fails when too many did in a row.
    fn count_failure(&mut self, id: u64, why: String) -> Step {
        self.last_failure = Some((id, why.clone()));
        self.consecutive_failures += 1;
        match self.plan.tolerable_failures {
            Some(n) if self.consecutive_failures > n => Step::FailJob(format!(
                "{} checkpoints failed in a row; the last: {why}",
                self.consecutive_failures
            )),
            _ => Step::Nothing,
        }
    }

    /// The periodic tick: time out a pending checkpoint or start the next one.
    pub fn tick(&mut self, attempt: u32, expected: HashSet<(u32, u32)>) -> Step {
        if let Some(p) = &self.pending {
            if p.started.elapsed() > self.plan.timeout {
                let why = format!(
                    "timed out after {:?} ({} of {} acknowledged)",
                    self.plan.timeout,
                    p.acks.len(),
                    p.expected.len()
                );
                return self.fail_pending(why);
            }
            return Step::Nothing;
        }
        if self
            .last_finished
            .is_some_and(|t| t.elapsed() < self.plan.min_pause)
        {
            return Step::Nothing;
        }
        if self.catching_up
            && self
                .last_started
                .is_some_and(|t| t.elapsed() < self.plan.interval_during_catch_up)
        {
            return Step::Nothing;
        }
        self.start(attempt, expected)
    }

    /// Starts the next checkpoint.
    fn start(&mut self, attempt: u32, expected: HashSet<(u32, u32)>) -> Step {
        let id = self.next_id;
        self.next_id += 1;
        let stats = CheckpointStats {
            id,
            attempt,
            status: CheckpointStatus::InProgress,
            retained: false,
            trigger_ms: now_ms(),
            duration_ms: None,
            acknowledged: 0,
            expected: expected.len(),
            full_bytes: 0,
            incremental_bytes: 0,
            offsets: Vec::new(),
            subtasks: Vec::new(),
            failure: None,
            path: None,
        };
        self.last_started = Some(Instant::now());
        self.pending = Some(Pending {
            stats,
            started: Instant::now(),
            expected,
            acks: HashMap::new(),
        });
        Step::Trigger(id)
    }

    /// The attempt ended: a pending checkpoint can no longer complete.
    pub fn abort_pending(&mut self, why: &str) {
        let _ = self.fail_pending(why.to_string());
    }

    /// A subtask acknowledged (or declined) its part.
    pub fn acknowledge(
        &mut self,
        ack: CheckpointAck,
        parallelism: u32,
        max_parallelism: u32,
        job_id: &str,
    ) -> Step {
        let Some(p) = self
            .pending
            .as_mut()
            .filter(|p| p.stats.id == ack.checkpoint_id && p.stats.attempt == ack.attempt)
        else {
            return Step::Nothing;
        };
        if !ack.decline.is_empty() {
            let why = format!(
                "subtask {} of vertex {} declined: {}",
                ack.subtask, ack.vertex, ack.decline
            );
            return self.fail_pending(why);
        }
        let who = (ack.vertex, ack.subtask);
        if !p.expected.contains(&who) {
            return Step::Nothing;
        }
        p.stats.subtasks.push(SubtaskCheckpoint {
            vertex: ack.vertex,
            subtask: ack.subtask,
            sync_ms: ack.sync_ms,
            async_ms: ack.async_ms,
            alignment_ms: ack.alignment_ms,
            full_bytes: ack.full_bytes,
            incremental_bytes: ack.incremental_bytes,
        });
        p.stats.full_bytes += ack.full_bytes;
        p.stats.incremental_bytes += ack.incremental_bytes;
        for s in &ack.sources {
            p.stats
                .offsets
                .extend(s.offsets.iter().map(|o| PartitionOffset {
                    partition: o.partition,
                    next_offset: o.next_offset,
                    source: s.uid.clone(),
                }));
        }
        p.acks.insert(who, ack);
        p.stats.acknowledged = p.acks.len();
        if p.acks.len() < p.expected.len() {
            return Step::Nothing;
        }
        let mut operators = Vec::new();
        let mut sources: Vec<SourceOffsets> = Vec::new();
        for ((_, subtask), a) in &p.acks {
            let r = kappa_job::keygroup::key_group_range(*subtask, max_parallelism, parallelism);
            for st in &a.operator_states {
                let Some(handle) = st.handle.clone() else {
                    let why = format!("subtask {subtask} of `{}` sent no state handle", st.uid);
                    return self.fail_pending(why);
                };
                operators.push(OperatorState {
                    uid: st.uid.clone(),
                    subtask: *subtask,
                    key_groups: (*r.start(), *r.end()),
                    state: handle.into(),
                });
            }
            for so in &a.sources {
                let offsets = so.offsets.iter().map(|o| PartitionOffset {
                    partition: o.partition,
                    next_offset: o.next_offset,
                    source: String::new(),
                });
                let files = so.files.iter().map(file_from_proto);
                let nexmark = so.nexmark.iter().map(nexmark_from_proto);
                match sources.iter_mut().find(|s| s.uid == so.uid) {
                    Some(s) => {
                        s.offsets.extend(offsets);
                        s.files.extend(files);
                        s.nexmark.extend(nexmark);
                    }
                    None => sources.push(SourceOffsets {
                        uid: so.uid.clone(),
                        offsets: offsets.collect(),
                        files: files.collect(),
                        nexmark: nexmark.collect(),
                    }),
                }
            }
        }
        operators.sort_by(|a, b| (&a.uid, a.subtask).cmp(&(&b.uid, b.subtask)));
        sources.sort_by(|a, b| a.uid.cmp(&b.uid));
        for s in &mut sources {
            s.offsets.sort_by_key(|o| o.partition);
            s.files.sort_by(|a, b| a.path.cmp(&b.path));
            s.nexmark.sort_by_key(|n| n.split);
        }
        let mut sink_commits: Vec<SinkCommitState> = p
            .acks
            .values()
            .flat_map(|a| {
                a.sink_commits.iter().map(|c| SinkCommitState {
                    uid: c.operator_uid.clone(),
                    subtask: a.subtask,
                    checkpoint_id: c.checkpoint_id,
                    writer: c.writer.clone(),
                    object: c.object.clone(),
                    bytes: c.bytes,
                })
            })
            .collect();
        sink_commits.sort_by(|a, b| {
            (&a.uid, a.subtask, a.checkpoint_id).cmp(&(&b.uid, b.subtask, b.checkpoint_id))
        });
        Step::Complete(Box::new(CheckpointMetadata {
            version: METADATA_VERSION,
            job_id: job_id.to_string(),
            checkpoint_id: p.stats.id,
            attempt: p.stats.attempt,
            completed_at_ms: now_ms(),
            parallelism,
            max_parallelism,
            sources,
            operators,
            layouts: self.layouts.clone(),
            sink_commits,
            offsets: Vec::new(),
            windows: Vec::new(),
            window_uid: default_window_uid(),
            aggregates: Vec::new(),
        }))
    }

    /// The metadata of checkpoint `meta` was written (`Ok` with its path) or not. Written,
    /// it is the latest retained checkpoint, to be recorded in the job's record; only once
    /// that record is written may sinks commit ([`Checkpoints::prune`]) — or, if it cannot
    /// be, the checkpoint is taken back ([`Checkpoints::revoke`]).
    pub fn completed(&mut self, meta: CheckpointMetadata, written: Result<String, String>) -> Step {
        let path = match written {
            Ok(p) => p,
            Err(e) => return self.fail_pending(format!("writing its metadata: {e}")),
        };
        let Some(p) = self.pending.take() else {
            return Step::Nothing;
        };
        let mut stats = p.stats;
        stats.status = CheckpointStatus::Completed;
        stats.duration_ms = Some(p.started.elapsed().as_millis() as u64);
        stats.path = Some(path);
        tracing::info!(
            checkpoint = stats.id,
            ms = stats.duration_ms,
            full = stats.full_bytes,
            incremental = stats.incremental_bytes,
            "checkpoint completed"
        );
        self.record(stats);
        self.last_finished = Some(Instant::now());
        self.consecutive_failures = 0;
        self.retained.push_back(meta);
        Step::Nothing
    }

    /// The job's record could not be made to point at completed checkpoint `id`: a restart
    /// would not restore it, so nothing of it may be committed. It counts as failed.
    pub fn revoke(&mut self, id: u64, why: String) -> Step {
        let Some(at) = self.retained.iter().position(|m| m.checkpoint_id == id) else {
            return Step::Nothing;
        };
        self.retained.remove(at);
        tracing::warn!(checkpoint = id, reason = %why, "checkpoint taken back");
        if let Some(stats) = self.history.iter_mut().rev().find(|s| s.id == id) {
            stats.status = CheckpointStatus::Failed;
            stats.failure = Some(why.clone());
            stats.path = None;
        }
        self.count_failure(id, why)
    }

    /// The job's record points at the latest checkpoint: those beyond the retention go.
    /// Returns the objects no retained checkpoint needs any more.
    pub fn prune(&mut self) -> Vec<ObjectPath> {
        let mut obsolete = Vec::new();
        while self.retained.len() > self.plan.retained as usize {
            if let Some(old) = self.retained.pop_front() {
                obsolete.push(old);
            }
        }
        let keep: BTreeSet<&str> = self
            .retained
            .iter()
            .flat_map(CheckpointMetadata::objects)
            .collect();
        let mut delete = Vec::new();
        for old in &obsolete {
            for object in old.objects() {
                if !keep.contains(object)
                    && let Ok(p) = ObjectPath::parse(object)
                {
                    delete.push(p);
                }
            }
            delete.push(self.metadata_path(&old.job_id, old.checkpoint_id));
        }
        delete
    }

    /// Continues from completed checkpoint `meta` (a job resumed by another jobmanager
    /// process): it is the latest, and new checkpoints get higher ids.
    pub fn resume_from(&mut self, meta: CheckpointMetadata) {
        self.next_id = self.next_id.max(meta.checkpoint_id + 1);
        self.retained.push_back(meta);
    }

    /// Numbers the next checkpoints after `n`.
    pub fn number_after(&mut self, n: u64) {
        self.next_id = self.next_id.max(n.saturating_add(1));
    }

    /// Whether completed checkpoint `id` is still kept.
    pub fn is_retained(&self, id: u64) -> bool {
        self.retained.iter().any(|m| m.checkpoint_id == id)
    }

    pub fn metadata_path(&self, job_id: &str, id: u64) -> ObjectPath {
        self.location
            .child(&[job_id, &format!("chk-{id}"), "_metadata"])
    }
}

/// Writes a checkpoint's metadata; returns its path.
pub async fn write_metadata(
    location: &Location,
    path: &ObjectPath,
    meta: &CheckpointMetadata,
) -> Result<String, String> {
    let json = serde_json::to_vec_pretty(meta).map_err(|e| e.to_string())?;
    location
        .store
        .put(path, PutPayload::from(json))
        .await
        .map_err(|e| e.to_string())?;
    Ok(location.show(path))
}

/// Deletes objects no retained checkpoint references (failures are logged, not fatal).
pub async fn delete_objects(location: &Location, paths: Vec<ObjectPath>) {
    for p in paths {
        if let Err(e) = location.store.delete(&p).await {
            tracing::warn!(object = %p, error = %e, "could not delete an obsolete checkpoint file");
        }
    }
}

/// Reads the `_metadata` of a savepoint or checkpoint directory, with errors naming the file.
pub async fn read_metadata(location: &Location) -> Result<CheckpointMetadata, String> {
    read_metadata_at(location, &location.child(&["_metadata"])).await
}

/// The ids of the checkpoints of job `job` with a `_metadata` object under `location`, newest
/// first (nothing when they cannot be listed).
pub async fn kept_checkpoint_ids(location: &Location, job: &str) -> Vec<u64> {
    use tokio_stream::StreamExt;
    let dir = location.child(&[job]);
    let mut ids: Vec<u64> = Vec::new();
    let mut listing = location.store.list(Some(&dir));
    while let Some(Ok(m)) = listing.next().await {
        let names: Vec<String> = m.location.parts().map(|p| p.as_ref().to_string()).collect();
        if let [.., chk, meta] = names.as_slice()
            && meta == "_metadata"
            && let Some(n) = chk.strip_prefix("chk-").and_then(|n| n.parse().ok())
        {
            ids.push(n);
        }
    }
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids
}

/// Reads a checkpoint's `_metadata` object at `path`, with errors naming the file.
pub async fn read_metadata_at(
    location: &Location,
    path: &ObjectPath,
) -> Result<CheckpointMetadata, String> {
    let shown = location.show(path);
    let bytes = match location.store.get(path).await {
        Ok(r) => r
            .bytes()
            .await
            .map_err(|e| format!("reading {shown}: {e}"))?,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(format!(
                "{shown} does not exist: is `{}` a savepoint directory?",
                location.text
            ));
        }
        Err(e) => return Err(format!("reading {shown}: {e}")),
    };
    let meta = serde_json::from_slice::<CheckpointMetadata>(&bytes)
        .map(CheckpointMetadata::upgrade)
        .map_err(|e| format!("{shown} is not a Kappa savepoint or checkpoint: {e}"))?;
    // Read back from storage: its names and objects are checked before anything uses them.
    crate::metadata_check::check(&meta, location)
        .map_err(|e| format!("{shown} is refused: {e}"))?;
    Ok(meta)
}

/// Copies a completed checkpoint into `dst` as a self-contained savepoint (its files and a
/// `_metadata` whose state handles point into `dst`); returns where it is.
pub async fn write_savepoint(
    src: &Location,
    dst: &Location,
    meta: &CheckpointMetadata,
) -> Result<String, String> {
    let mut copy = meta.clone();
    for (k, w) in copy.operators.iter_mut().enumerate() {
        for f in &mut w.state.files {
            let to = dst.child(&[&format!("state-{k}"), &f.name]);
            f.object = copy_object(src, &f.object, dst, to).await?;
        }
    }
    for (k, c) in copy.sink_commits.iter_mut().enumerate() {
        let to = dst.child(&["sink", &format!("{k}-{}-{}", c.subtask, c.checkpoint_id)]);
        c.object = copy_object(src, &c.object, dst, to).await?;
    }
    let path = dst.child(&["_metadata"]);
    write_metadata(dst, &path, &copy).await?;
    Ok(dst.text.clone())
}

/// Copies object `from` of `src` to `to` in `dst`; returns the new object path.
async fn copy_object(
    src: &Location,
    from: &str,
    dst: &Location,
    to: ObjectPath,
) -> Result<String, String> {
    let from = ObjectPath::parse(from).map_err(|e| e.to_string())?;
    let bytes = src
        .store
        .get(&from)
        .await
        .map_err(|e| format!("reading {}: {e}", src.show(&from)))?
        .bytes()
        .await
        .map_err(|e| format!("reading {}: {e}", src.show(&from)))?;
    dst.store
        .put(&to, PutPayload::from(bytes))
        .await
        .map_err(|e| format!("writing {}: {e}", dst.show(&to)))?;
    Ok(to.to_string())
}

/// Checkpoint ticks: the interval, but never faster than the sources can take them.
pub fn tick_interval(plan: &CheckpointPlan) -> Duration {
    plan.interval
        .clamp(Duration::from_millis(100), Duration::from_secs(3600))
}
