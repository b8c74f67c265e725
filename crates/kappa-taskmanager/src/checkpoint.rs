//! A taskmanager's part of checkpoints: source subtasks acknowledge their offsets; window
//! subtasks keep their state in a local RocksDB, checkpoint it at the barrier and upload it
//! (only new SSTs) while processing goes on, then acknowledge the state handle.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kappa_proto::v1::{CheckpointAck, PartitionOffset, RestoreState};
use kappa_runtime::TaskError;
use kappa_runtime::io::SplitPosition;
use kappa_runtime::state::KeyedState;
use kappa_runtime::task::{SnapshotHook, SourceAck};
use kappa_runtime::window::WindowOperator;
use kappa_state::{Location, RocksState, StateHandle, Uploader, download};
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

/// A source subtask's acknowledgements: its offsets.
pub struct SourceAcks {
    pub ctx: Arc<CheckpointContext>,
    pub subtask: u32,
}

impl SourceAck for SourceAcks {
    fn acknowledge(&mut self, n: u64, positions: Vec<SplitPosition>) -> Result<(), TaskError> {
        let mut ack = self.ctx.base_ack(n, 0, self.subtask);
        ack.offsets = positions
            .into_iter()
            .map(|p| PartitionOffset {
                partition: p.partition,
                next_offset: p.next_offset,
            })
            .collect();
        self.ctx.ack(ack);
        Ok(())
    }
}

/// A window subtask's state and its snapshots.
pub struct WindowSnapshots {
    ctx: Arc<CheckpointContext>,
    subtask: u32,
    state: RocksState,
    uploader: Arc<AsyncMutex<Uploader>>,
}

impl WindowSnapshots {
    /// Opens the subtask's local state database.
    pub fn open(ctx: Arc<CheckpointContext>, subtask: u32) -> Result<Self, TaskError> {
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
        })
    }
}

impl SnapshotHook for WindowSnapshots {
    fn state(&mut self) -> &mut dyn KeyedState {
        &mut self.state
    }

    fn snapshot(&mut self, n: u64) -> Result<(), TaskError> {
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
            let mut ack = ctx.base_ack(n, 1, subtask);
            ack.sync_ms = sync_ms;
            ack.async_ms = upload_started.elapsed().as_millis() as u64;
            match result {
                Ok(uploaded) => {
                    ack.full_bytes = uploaded.handle.size();
                    ack.incremental_bytes = uploaded.bytes;
                    // A handle that does not serialise arrives empty: the jobmanager declines it.
                    ack.state_handle = serde_json::to_string(&uploaded.handle).unwrap_or_default();
                }
                Err(e) => {
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
