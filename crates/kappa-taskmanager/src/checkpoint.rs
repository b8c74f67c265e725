//! A taskmanager's part of checkpoints, per subtask: sources acknowledge their offsets; each
//! keyed operator keeps its state in a local RocksDB of its own, checkpointed at the barrier
//! and uploaded (only new SSTs) while processing goes on; sinks upload their output waiting to
//! be committed. One acknowledgement per subtask carries every operator's part.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use kappa_job::graph::Vertex;
use kappa_proto::v1::{CheckpointAck, OperatorState, RestoreState, SinkCommit};
use kappa_runtime::TaskError;
use kappa_runtime::io::PendingCommit;
use kappa_runtime::operator::{Operator, OperatorSnapshot};
use kappa_runtime::state::KeyedState;
use kappa_runtime::subtask::CheckpointHook;
use kappa_state::{Location, RocksState, StateHandle, Uploader, download, positions_to_proto};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use tokio::sync::Mutex as AsyncMutex;

use crate::registration::ToJobManager;
use crate::state::Shared;

/// What the checkpointing subtasks of one attempt share.
pub struct CheckpointContext {
    pub shared: Arc<Shared>,
    pub location: Location,
    pub job_id: String,
    pub attempt: u32,
    /// Local working directory of the attempt's state (removed when the attempt ends).
    pub local: PathBuf,
}

impl CheckpointContext {
    /// Checks a savepoint location a restore reads from: the checkpoint root or a root of
    /// this taskmanager (it does not trust the jobmanager's check).
    fn check_location(&self, location: &str) -> Result<(), TaskError> {
        let paths = &self.shared.confinement.paths;
        paths
            .check_location(location, Some(&self.location.text))
            .map_err(|e| TaskError::Refused(e.into()))
    }

    /// Keeps the local checkpoint `dir` of operator instance `name` for local recovery once
    /// it is `uploaded`; removes it otherwise (or when it cannot be kept).
    fn keep_locally(&self, name: &str, n: u64, dir: &std::path::Path, uploaded: bool) {
        if uploaded {
            let recovery = &self.shared.local_recovery;
            match recovery.keep(&self.job_id, name, n, dir) {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(job = %self.job_id, checkpoint = n, error = %e, "not keeping a local copy of a checkpoint")
                }
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Fills `dir` with the snapshot `handle` of `location`: from a local copy kept here if
    /// there is one, else downloaded.
    fn fetch(
        &self,
        location: &Location,
        handle: &StateHandle,
        dir: &std::path::Path,
        what: &str,
    ) -> Result<(), TaskError> {
        match self
            .shared
            .local_recovery
            .restore(&self.job_id, handle, dir)
        {
            Ok(Some(copy)) => {
                tracing::info!(job = %self.job_id, copy = %copy.display(), "{what}: from the local copy of its checkpoint");
                return Ok(());
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(job = %self.job_id, error = %e, "{what}: the local copy of its checkpoint cannot be used; downloading it");
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        self.shared
            .handle
            .block_on(download(location, handle, dir))
            .map_err(|e| TaskError::Io(format!("{what}: {e}")))
    }

    fn ack(&self, a: CheckpointAck) {
        let _ = self.shared.reports.send(ToJobManager::Ack(a));
    }

    fn base_ack(&self, n: u64, vertex: u32, subtask: u32) -> CheckpointAck {
        CheckpointAck {
            taskmanager_id: self.shared.id.clone(),
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            checkpoint_id: n,
            vertex,
            subtask,
            ..CheckpointAck::default()
        }
    }
}

/// One closed epoch of sink output: its bytes until uploaded, then its object.
struct Epoch {
    data: Option<Arc<Vec<u8>>>,
    bytes: u64,
    object: Option<String>,
}

/// The output of one sink operator that waits for its checkpoint to complete.
pub struct SinkLog {
    uid: String,
    writer: String,
    epochs: Arc<Mutex<BTreeMap<u64, Epoch>>>,
}

impl SinkLog {
    pub fn new(uid: String, writer: String) -> Self {
        Self {
            uid,
            writer,
            epochs: Arc::default(),
        }
    }

    fn add(&self, n: u64, data: Option<Vec<u8>>) {
        if let Some(d) = data {
            self.epochs.lock().insert(
                n,
                Epoch {
                    bytes: d.len() as u64,
                    data: Some(Arc::new(d)),
                    object: None,
                },
            );
        }
    }

    /// Checkpoint `n` completed: its epochs and older ones are committed.
    fn forget_through(&self, n: u64) {
        let mut epochs = self.epochs.lock();
        *epochs = epochs.split_off(&(n + 1));
    }

    /// Uploads the epochs up to `n` not uploaded yet; returns every epoch up to `n`.
    fn upload(
        &self,
        ctx: &CheckpointContext,
        subtask: u32,
        n: u64,
    ) -> impl std::future::Future<Output = Result<Vec<SinkCommit>, String>> + Send + 'static {
        let (epochs, writer, uid, location) = (
            Arc::clone(&self.epochs),
            self.writer.clone(),
            self.uid.clone(),
            ctx.location.clone(),
        );
        let prefix = format!("{}-{uid}-{subtask}", ctx.attempt);
        let job = ctx.job_id.clone();
        async move {
            let todo: Vec<(u64, Arc<Vec<u8>>)> = epochs
                .lock()
                .range(..=n)
                .filter_map(|(id, e)| Some((*id, Arc::clone(e.data.as_ref()?))))
                .collect();
            for (id, data) in todo {
                let path = location.child(&[&job, "shared", &format!("sink-{prefix}-{id}")]);
                location
                    .store
                    .put(&path, PutPayload::from(data.as_ref().clone()))
                    .await
                    .map_err(|e| format!("writing {}: {e}", location.show(&path)))?;
                if let Some(e) = epochs.lock().get_mut(&id) {
                    e.object = Some(path.to_string());
                    e.data = None;
                }
            }
            let commits = epochs
                .lock()
                .range(..=n)
                .filter_map(|(id, e)| {
                    Some(SinkCommit {
                        checkpoint_id: *id,
                        writer: writer.clone(),
                        object: e.object.clone()?,
                        bytes: e.bytes,
                        location: String::new(),
                        operator_uid: uid.clone(),
                    })
                })
                .collect();
            Ok(commits)
        }
    }
}

/// The local database of one keyed operator instance.
pub struct LocalState {
    /// `{vertex}-{position}-{subtask}`: unique among the attempt's operator instances.
    name: String,
    /// Its local folder (the database and the checkpoints taken of it).
    dir: PathBuf,
    pub db: RocksState,
}

impl LocalState {
    /// Opens the local database of operator `position` of the chain of (`vertex`, `subtask`)
    /// in the attempt's directory `local`.
    pub fn open(
        local: &std::path::Path,
        vertex: u32,
        position: usize,
        subtask: u32,
    ) -> Result<Self, TaskError> {
        let name = format!("{vertex}-{position}-{subtask}");
        let dir = local.join(format!("op-{name}"));
        let db = RocksState::open(&dir.join("db")).map_err(|e| TaskError::Io(e.to_string()))?;
        Ok(Self { name, dir, db })
    }
}

/// The local state of one keyed operator and its uploads.
pub struct KeyedOperatorState {
    uid: String,
    local: LocalState,
    uploader: Arc<AsyncMutex<Uploader>>,
}

impl KeyedOperatorState {
    /// The checkpoints of operator `uid`, taken of `local`.
    fn new(ctx: &CheckpointContext, uid: &str, local: LocalState) -> Self {
        // SST names are unique within one database only: each has its own folder.
        let shared = ctx.location.child(&[
            &ctx.job_id,
            "shared",
            &format!("{}-{}", ctx.attempt, local.name),
        ]);
        Self {
            uid: uid.to_string(),
            local,
            uploader: Arc::new(AsyncMutex::new(Uploader::new(ctx.location.clone(), shared))),
        }
    }
}

/// What one operator of the chain contributes to a checkpoint.
pub enum OperatorPart {
    Source { uid: String },
    Keyed(Box<KeyedOperatorState>),
    Sink(SinkLog),
    Stateless,
}

/// A subtask's checkpoints: every operator's part, acknowledged together.
pub struct SubtaskCheckpoints {
    pub ctx: Arc<CheckpointContext>,
    pub vertex: u32,
    pub subtask: u32,
    /// Per chain position.
    pub parts: Vec<OperatorPart>,
    /// Checkpoint completions, from the jobmanager.
    pub completions: Receiver<u64>,
}

type Upload<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + Send>>;

impl CheckpointHook for SubtaskCheckpoints {
    fn state(&mut self, op: usize) -> Option<&mut dyn KeyedState> {
        match self.parts.get_mut(op)? {
            OperatorPart::Keyed(k) => Some(&mut k.local.db),
            _ => None,
        }
    }

    fn completed(&mut self) -> Option<u64> {
        let n = self.completions.try_iter().max()?;
        for p in &self.parts {
            if let OperatorPart::Sink(log) = p {
                log.forget_through(n);
            }
        }
        Some(n)
    }

    fn acknowledge(
        &mut self,
        n: u64,
        parts: Vec<OperatorSnapshot>,
        alignment: std::time::Duration,
    ) -> Result<(), TaskError> {
        let mut ack = self.ctx.base_ack(n, self.vertex, self.subtask);
        ack.alignment_ms = alignment.as_millis() as u64;
        let started = Instant::now();
        let mut states: Vec<Upload<OperatorState>> = Vec::new();
        let mut sinks: Vec<Upload<Vec<SinkCommit>>> = Vec::new();
        for (part, snap) in self.parts.iter().zip(parts) {
            match part {
                OperatorPart::Source { uid } => {
                    ack.sources.push(positions_to_proto(uid, &snap.positions))
                }
                OperatorPart::Sink(log) => {
                    log.add(n, snap.sink);
                    sinks.push(Box::pin(log.upload(&self.ctx, self.subtask, n)));
                }
                OperatorPart::Keyed(k) => {
                    let dir = k.local.dir.join(format!("chk-{n}"));
                    let files = k
                        .local
                        .db
                        .checkpoint(&dir)
                        .map_err(|e| TaskError::Io(format!("checkpoint {n}: {e}")))?;
                    let private = self.ctx.location.child(&[
                        &self.ctx.job_id,
                        &format!("chk-{n}"),
                        &format!("op-{}", k.local.name),
                    ]);
                    let (uploader, uid) = (Arc::clone(&k.uploader), k.uid.clone());
                    let (ctx, name) = (Arc::clone(&self.ctx), k.local.name.clone());
                    states.push(Box::pin(async move {
                        let result = uploader.lock().await.upload(&dir, &files, &private).await;
                        ctx.keep_locally(&name, n, &dir, result.is_ok());
                        let uploaded = result.map_err(|e| e.to_string())?;
                        Ok(OperatorState {
                            uid,
                            handle: Some((&uploaded.handle).into()),
                            full_bytes: uploaded.handle.size(),
                            incremental_bytes: uploaded.bytes,
                        })
                    }));
                }
                OperatorPart::Stateless => {}
            }
        }
        ack.sync_ms = started.elapsed().as_millis() as u64;
        let ctx = Arc::clone(&self.ctx);
        if states.is_empty() && sinks.is_empty() {
            ctx.ack(ack);
            return Ok(());
        }
        ctx.shared.handle.clone().spawn(async move {
            let upload_started = Instant::now();
            let mut decline = None;
            for s in states {
                match s.await {
                    Ok(st) => {
                        ack.full_bytes += st.full_bytes;
                        ack.incremental_bytes += st.incremental_bytes;
                        ack.operator_states.push(st);
                    }
                    Err(e) => decline = decline.or(Some(e)),
                }
            }
            // Sink output is uploaded once the state is: a declined checkpoint keeps it for the next.
            if decline.is_none() {
                for s in sinks {
                    match s.await {
                        Ok(c) => ack.sink_commits.extend(c),
                        Err(e) => decline = decline.or(Some(e)),
                    }
                }
            }
            ack.async_ms = upload_started.elapsed().as_millis() as u64;
            if let Some(e) = decline {
                tracing::warn!(job = %ctx.job_id, checkpoint = n, vertex = ack.vertex, subtask = ack.subtask, error = %e, "declining checkpoint");
                ack.decline = e;
                ack.operator_states.clear();
                ack.sink_commits.clear();
            }
            ctx.ack(ack);
        });
        Ok(())
    }
}

/// Reads the sink output a restored checkpoint holds for this subtask.
pub fn pending_commits(
    ctx: &CheckpointContext,
    commits: &[SinkCommit],
) -> Result<Vec<PendingCommit>, TaskError> {
    commits
        .iter()
        .map(|c| {
            let location = match c.location.is_empty() {
                true => ctx.location.clone(),
                false => {
                    ctx.check_location(&c.location)?;
                    Location::parse(&c.location).map_err(|e| TaskError::Io(e.to_string()))?
                }
            };
            let path = ObjectPath::parse(&c.object)
                .map_err(|e| TaskError::Data(format!("sink output `{}`: {e}", c.object)))?;
            let shown = location.show(&path);
            let data = ctx
                .shared
                .handle
                .block_on(async { location.store.get(&path).await?.bytes().await })
                .map_err(|e| TaskError::Io(format!("reading sink output {shown}: {e}")))?;
            Ok(PendingCommit {
                writer: c.writer.clone(),
                checkpoint: c.checkpoint_id,
                data: data.to_vec(),
            })
        })
        .collect()
}

/// The checkpoint part of keyed operator `op` (operator `position` of `vertex`'s chain,
/// subtask `subtask`): with checkpoints, the key groups `range` of the snapshots in
/// `restores` that belong to it loaded into it, and its local `state` checkpointed; without,
/// nothing.
pub fn keyed_part(
    ctx: Option<&CheckpointContext>,
    (vertex, position, subtask): (&Vertex, usize, u32),
    restores: &[RestoreState],
    op: &mut dyn Operator,
    range: std::ops::RangeInclusive<u32>,
    state: Option<LocalState>,
) -> Result<OperatorPart, TaskError> {
    let (Some(ctx), Some(local)) = (ctx, state) else {
        return Ok(OperatorPart::Stateless);
    };
    let Some(me) = vertex.chain.get(position).filter(|me| me.kind.is_keyed()) else {
        return Err(TaskError::Data(format!(
            "operator {position} of vertex {} keeps no keyed state",
            vertex.id
        )));
    };
    let what = format!("restoring `{}` subtask {subtask}", me.uid);
    let mut restored = 0;
    for (k, r) in restores
        .iter()
        .filter(|r| r.operator_uid == me.uid)
        .enumerate()
    {
        let from = (*range.start()).max(r.key_group_start);
        let to = (*range.end()).min(r.key_group_end);
        if from > to {
            continue;
        }
        let Some(handle) = r.handle.clone() else {
            return Err(TaskError::Data(format!(
                "{what}: a checkpoint sent no state handle"
            )));
        };
        let handle: StateHandle = handle.into();
        // Its names become paths under the restore directory: refused before any download.
        handle
            .check_names()
            .map_err(|e| TaskError::Refused(e.into()))?;
        // A savepoint's files live in its own directory; a checkpoint's in the checkpoint directory.
        let location = if r.location.is_empty() {
            ctx.location.clone()
        } else {
            ctx.check_location(&r.location)?;
            Location::parse(&r.location).map_err(|e| TaskError::Io(format!("{what}: {e}")))?
        };
        let dir = ctx
            .local
            .join(format!("restore-{}-{position}-{subtask}-{k}", vertex.id));
        ctx.fetch(&location, &handle, &dir, &what)?;
        let state = RocksState::open(&dir).map_err(|e| TaskError::Io(format!("{what}: {e}")))?;
        restored += op.restore(&state, from..=to)?;
        drop(state);
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !restores.is_empty() {
        tracing::info!(vertex = vertex.id, uid = %me.uid, subtask, entries = restored, "operator state restored");
    }
    Ok(OperatorPart::Keyed(Box::new(KeyedOperatorState::new(
        ctx, &me.uid, local,
    ))))
}
