//! A taskmanager's part of checkpoints: source subtasks acknowledge their offsets; window
//! subtasks keep their state in a local RocksDB, checkpoint it at the barrier and upload it
//! (only new SSTs) while processing goes on, then acknowledge the state handle. The subtask
//! holding the sink also uploads its output waiting to be committed, and commits it when told
//! the checkpoint completed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use kappa_proto::v1::{CheckpointAck, PartitionOffset, RestoreState, SinkCommit};
use kappa_runtime::TaskError;
use kappa_runtime::io::{PendingCommit, SplitPosition};
use kappa_runtime::state::KeyedState;
use kappa_runtime::task::{SnapshotHook, SourceAck};
use kappa_runtime::window::WindowOperator;
use kappa_state::{Location, RocksState, StateHandle, Uploader, download};
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

/// The sink output of a subtask that waits for its checkpoint to complete.
pub struct SinkLog {
    writer: String,
    /// Checkpoint completions, from the jobmanager.
    completions: Receiver<u64>,
    epochs: Arc<Mutex<BTreeMap<u64, Epoch>>>,
}

impl SinkLog {
    pub fn new(writer: String, completions: Receiver<u64>) -> Self {
        Self {
            writer,
            completions,
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

    /// The newest checkpoint completed since the last call; its epochs are forgotten.
    fn completed(&mut self) -> Option<u64> {
        let n = self.completions.try_iter().max()?;
        let mut epochs = self.epochs.lock();
        *epochs = epochs.split_off(&(n + 1));
        Some(n)
    }

    /// Uploads the epochs up to `n` not uploaded yet; returns every epoch up to `n`.
    fn upload(
        &self,
        ctx: &CheckpointContext,
        subtask: u32,
        n: u64,
    ) -> impl std::future::Future<Output = Result<Vec<SinkCommit>, String>> + Send + 'static {
        let (epochs, writer, location) = (
            Arc::clone(&self.epochs),
            self.writer.clone(),
            ctx.location.clone(),
        );
        let prefix = format!("{}-{subtask}", ctx.attempt);
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
                    })
                })
                .collect();
            Ok(commits)
        }
    }
}

/// A source subtask's acknowledgements: its offsets, and the output of a chained sink.
pub struct SourceAcks {
    pub ctx: Arc<CheckpointContext>,
    pub subtask: u32,
    pub sink: Option<SinkLog>,
}

impl SourceAck for SourceAcks {
    fn acknowledge(
        &mut self,
        n: u64,
        positions: Vec<SplitPosition>,
        sink: Option<Vec<u8>>,
    ) -> Result<(), TaskError> {
        let mut ack = self.ctx.base_ack(n, 0, self.subtask);
        ack.offsets = positions
            .into_iter()
            .map(|p| PartitionOffset {
                partition: p.partition,
                next_offset: p.next_offset,
            })
            .collect();
        let Some(log) = self.sink.as_ref() else {
            self.ctx.ack(ack);
            return Ok(());
        };
        log.add(n, sink);
        let upload = log.upload(&self.ctx, self.subtask, n);
        let ctx = Arc::clone(&self.ctx);
        self.ctx.shared.handle.spawn(async move {
            let started = Instant::now();
            match upload.await {
                Ok(commits) => ack.sink_commits = commits,
                Err(e) => ack.decline = e,
            }
            ack.async_ms = started.elapsed().as_millis() as u64;
            ctx.ack(ack);
        });
        Ok(())
    }

    fn completed(&mut self) -> Option<u64> {
        self.sink.as_mut()?.completed()
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
                false => Location::parse(&c.location).map_err(|e| TaskError::Io(e.to_string()))?,
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

/// A window subtask's state and its snapshots.
pub struct WindowSnapshots {
    ctx: Arc<CheckpointContext>,
    subtask: u32,
    state: RocksState,
    uploader: Arc<AsyncMutex<Uploader>>,
    sink: SinkLog,
}

impl WindowSnapshots {
    /// Opens the subtask's local state database.
    pub fn open(
        ctx: Arc<CheckpointContext>,
        subtask: u32,
        sink: SinkLog,
    ) -> Result<Self, TaskError> {
        let dir = ctx.local.join(format!("window-{subtask}"));
        let state = RocksState::open(&dir.join("db")).map_err(|e| TaskError::Io(e.to_string()))?;
        // SST names are unique within one database only: each attempt's subtask has its own folder.
        let shared =
            ctx.location
                .child(&[&ctx.job_id, "shared", &format!("{}-{subtask}", ctx.attempt)]);
        let uploader = Uploader::new(ctx.location.clone(), shared);
        Ok(Self {
            ctx,
            subtask,
            state,
            uploader: Arc::new(AsyncMutex::new(uploader)),
            sink,
        })
    }
}

impl SnapshotHook for WindowSnapshots {
    fn state(&mut self) -> &mut dyn KeyedState {
        &mut self.state
    }

    fn completed(&mut self) -> Option<u64> {
        self.sink.completed()
    }

    fn snapshot(
        &mut self,
        n: u64,
        sink: Option<Vec<u8>>,
        alignment: std::time::Duration,
    ) -> Result<(), TaskError> {
        self.sink.add(n, sink);
        let sink_upload = self.sink.upload(&self.ctx, self.subtask, n);
        let started = Instant::now();
        let dir = self
            .ctx
            .local
            .join(format!("window-{}", self.subtask))
            .join(format!("chk-{n}"));
        let files = self
            .state
            .checkpoint(&dir)
            .map_err(|e| TaskError::Io(format!("checkpoint {n}: {e}")))?;
        let sync_ms = started.elapsed().as_millis() as u64;
        let (ctx, uploader, subtask) = (
            Arc::clone(&self.ctx),
            Arc::clone(&self.uploader),
            self.subtask,
        );
        let private = ctx.location.child(&[
            &ctx.job_id,
            &format!("chk-{n}"),
            &format!("window-{subtask}"),
        ]);
        ctx.shared.handle.clone().spawn(async move {
            let upload_started = Instant::now();
            let result = uploader.lock().await.upload(&dir, &files, &private).await;
            let _ = tokio::fs::remove_dir_all(&dir).await;
            let sink = match &result {
                Ok(_) => sink_upload.await,
                Err(_) => Ok(Vec::new()),
            };
            let mut ack = ctx.base_ack(n, 1, subtask);
            ack.sync_ms = sync_ms;
            ack.alignment_ms = alignment.as_millis() as u64;
            ack.async_ms = upload_started.elapsed().as_millis() as u64;
            match (result, sink) {
                (Ok(_), Err(e)) => {
                    tracing::warn!(job = %ctx.job_id, checkpoint = n, subtask, error = %e, "declining checkpoint");
                    ack.decline = e;
                }
                (Ok(uploaded), Ok(commits)) => {
                    ack.sink_commits = commits;
                    ack.full_bytes = uploaded.handle.size();
                    ack.incremental_bytes = uploaded.bytes;
                    // A handle that does not serialise arrives empty: the jobmanager declines it.
                    ack.state_handle = serde_json::to_string(&uploaded.handle).unwrap_or_default();
                }
                (Err(e), _) => {
                    tracing::warn!(job = %ctx.job_id, checkpoint = n, subtask, error = %e, "declining checkpoint");
                    ack.decline = e.to_string();
                }
            }
            ctx.ack(ack);
        });
        Ok(())
    }
}

/// Loads the key groups `range` of a window subtask from the snapshots of a checkpoint;
/// returns how many windows were restored.
pub fn restore_window(
    ctx: &CheckpointContext,
    subtask: u32,
    restores: &[RestoreState],
    window: &mut WindowOperator,
    range: std::ops::RangeInclusive<u32>,
) -> Result<usize, TaskError> {
    let mut restored = 0;
    for (k, r) in restores.iter().enumerate() {
        let from = (*range.start()).max(r.key_group_start);
        let to = (*range.end()).min(r.key_group_end);
        if from > to {
            continue;
        }
        let handle: StateHandle = serde_json::from_str(&r.state_handle).map_err(|e| {
            TaskError::Data(format!("a checkpoint's state handle does not parse: {e}"))
        })?;
        // A savepoint's files live in its own directory; a checkpoint's in the checkpoint directory.
        let location = if r.location.is_empty() {
            ctx.location.clone()
        } else {
            Location::parse(&r.location)
                .map_err(|e| TaskError::Io(format!("restoring window subtask {subtask}: {e}")))?
        };
        let dir = ctx
            .local
            .join(format!("window-{subtask}"))
            .join(format!("restore-{k}"));
        ctx.shared
            .handle
            .block_on(download(&location, &handle, &dir))
            .map_err(|e| TaskError::Io(format!("restoring window subtask {subtask}: {e}")))?;
        let state = RocksState::open(&dir)
            .map_err(|e| TaskError::Io(format!("restoring window subtask {subtask}: {e}")))?;
        restored += window
            .restore(&state, from..=to)
            .map_err(|e| TaskError::Data(format!("restoring window subtask {subtask}: {e}")))?;
        drop(state);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(restored)
}
