//! The interfaces connectors implement: a source reader yields decoded batches per split
//! (Kafka partition, file), a sink writes result batches.

use std::path::PathBuf;
use std::time::Duration;

use arrow::array::{BooleanArray, RecordBatch};

use crate::error::TaskError;

/// A batch of decoded records from one split.
#[derive(Debug)]
pub struct SplitBatch {
    pub split: usize,
    pub batch: RecordBatch,
}

/// Whether a source has more to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// More may come (unbounded sources always say this).
    Running,
    /// Bounded input exhausted: the final watermark fires every open window.
    Finished,
}

/// Where a source subtask is in one split, recorded at a checkpoint barrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitPosition {
    /// A Kafka partition: the next offset it will read, or None when it reads from the
    /// beginning and has read nothing yet.
    Partition {
        partition: i32,
        next_offset: Option<i64>,
    },
    File(FilePosition),
    Nexmark(NexmarkPosition),
}

/// Where a reader is in one file: what it consumed, in bytes and in lines. A restored reader
/// goes on from there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilePosition {
    pub path: PathBuf,
    pub offset: u64,
    pub line: u64,
}

impl FilePosition {
    /// The start of `path`.
    pub fn start(path: PathBuf) -> Self {
        Self {
            path,
            offset: 0,
            line: 0,
        }
    }
}

/// Where a Nexmark source is in one split: split `split` of `splits` reads event numbers
/// `split, split + splits, …`; `next_event` is the next one it emits (at or past the end of a
/// bounded sequence: the split is finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NexmarkPosition {
    pub split: u32,
    pub splits: u32,
    pub next_event: u64,
}

/// Reads the splits assigned to one source subtask.
pub trait SourceReader: Send {
    /// Where it is in each split, recorded at a checkpoint barrier.
    fn positions(&self) -> Vec<SplitPosition>;

    /// Number of splits this reader owns (watermarks are tracked per split).
    fn splits(&self) -> usize;

    /// Appends what arrived within `timeout` to `out`; splits that ended are in `finished`.
    fn poll(
        &mut self,
        out: &mut Vec<SplitBatch>,
        finished: &mut Vec<usize>,
        timeout: Duration,
    ) -> Result<SourceStatus, TaskError>;
}

/// Output a restarted sink subtask must commit before it writes anything new: what an earlier
/// run of `writer` closed at the barrier of `checkpoint`, as [`Sink::prepare`] returned it.
#[derive(Debug, Clone)]
pub struct PendingCommit {
    pub writer: String,
    pub checkpoint: u64,
    pub data: Vec<u8>,
}

/// Writes result batches of one subtask.
pub trait Sink: Send {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), TaskError>;

    /// The rows of a change stream, in order: each deletes its key where `deletes` is true,
    /// and is written (an upsert by its key) where it is false. A sink that cannot delete
    /// keeps this default, which refuses deletes; the planner sends change streams only to
    /// sinks that can.
    fn write_changes(
        &mut self,
        batch: &RecordBatch,
        deletes: &BooleanArray,
    ) -> Result<(), TaskError> {
        match deletes.true_count() {
            0 => self.write(batch),
            n => Err(TaskError::Data(format!(
                "this sink cannot delete rows, and {n} of {} rows are deletes",
                deletes.len()
            ))),
        }
    }

    /// The barrier of checkpoint `n` passed: what was written since the previous barrier
    /// belongs to checkpoint n. At-least-once sinks make it durable here. Transactional sinks
    /// close it and return what committing it needs; the checkpoint keeps that, so a restarted
    /// job can still commit it ([`Sink::recover`]).
    fn prepare(&mut self, n: u64) -> Result<Option<Vec<u8>>, TaskError> {
        let _ = n;
        self.flush()?;
        Ok(None)
    }

    /// Checkpoint `n` completed: make everything prepared up to it visible.
    fn commit(&mut self, n: u64) -> Result<(), TaskError> {
        let _ = n;
        Ok(())
    }

    /// Before the first write of a restarted subtask: commit, exactly once, what the restored
    /// checkpoint holds but an earlier run may not have committed.
    fn recover(&mut self, pending: Vec<PendingCommit>) -> Result<(), TaskError> {
        match pending.is_empty() {
            true => Ok(()),
            false => Err(TaskError::Data(
                "this sink cannot commit output of an earlier run".into(),
            )),
        }
    }

    /// The identity commits are made under (see [`PendingCommit::writer`]).
    fn writer(&self) -> String {
        String::new()
    }

    /// The input ended: make everything written durable and visible.
    fn flush(&mut self) -> Result<(), TaskError>;

    /// Surfaces failures of earlier asynchronous writes; called while the task waits for input.
    fn check(&mut self) -> Result<(), TaskError> {
        Ok(())
    }
}
