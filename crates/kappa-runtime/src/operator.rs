//! The operator trait: what every step of a dataflow does, whether it reads a source, computes,
//! keeps keyed state or writes a sink. A subtask runs a chain of them (see [`crate::chain`]);
//! a new operator is one file implementing this trait.

use std::ops::RangeInclusive;
use std::time::Duration;

use arrow::array::RecordBatch;

use crate::error::TaskError;
use crate::io::SplitPosition;
use crate::state::KeyedState;

/// Where an operator puts what it emits: batches on its output ports (0 is the main output).
#[derive(Default)]
pub struct Output {
    batches: Vec<(usize, RecordBatch)>,
}

impl Output {
    /// Emits a batch on output `port`; empty batches are dropped.
    pub fn emit(&mut self, port: usize, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.batches.push((port, batch));
        }
    }

    pub(crate) fn take(&mut self) -> Vec<(usize, RecordBatch)> {
        std::mem::take(&mut self.batches)
    }
}

/// An operator's part of a checkpoint.
#[derive(Debug, Default)]
pub struct OperatorSnapshot {
    /// A source's positions in its splits.
    pub positions: Vec<SplitPosition>,
    /// A sink's output since the previous barrier, waiting to be committed (see
    /// [`crate::io::Sink::prepare`]).
    pub sink: Option<Vec<u8>>,
}

/// What a source's poll found besides records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Its watermark advanced to this.
    Watermark(i64),
    /// Every split is idle: downstream watermarks should not wait for it.
    Idle,
}

/// The result of polling a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Polled {
    pub progress: Option<Progress>,
    /// Bounded input exhausted.
    pub finished: bool,
}

/// One operator of a chain. Everything has a default but `process_batch`, so an operator
/// implements only what it does.
pub trait Operator: Send {
    /// Records arrived on input `input`.
    fn process_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), TaskError>;

    /// The event-time watermark of the operator's inputs advanced to `watermark` (it is
    /// forwarded downstream after this returns).
    fn process_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), TaskError> {
        let _ = (watermark, out);
        Ok(())
    }

    /// After [`Operator::process_watermark`], [`Operator::catching_up`] or
    /// [`Operator::flush`]: emits the next part of what they let out and returns whether more
    /// is left. The chain calls it until it returns false, handing each part on before the
    /// next, so that a watermark firing millions of windows never holds all their rows.
    fn more_output(&mut self, out: &mut Output) -> Result<bool, TaskError> {
        let _ = out;
        Ok(false)
    }

    /// Sources only: reads what arrived within `timeout` and emits it.
    fn poll(&mut self, out: &mut Output, timeout: Duration) -> Result<Polled, TaskError> {
        let _ = (out, timeout);
        Err(TaskError::Data("this operator is not a source".into()))
    }

    /// The barrier of checkpoint `n` passed: writes the operator's keyed state (into `state`,
    /// which keyed operators get) and returns its other parts.
    fn snapshot(
        &mut self,
        n: u64,
        state: Option<&mut dyn KeyedState>,
    ) -> Result<OperatorSnapshot, TaskError> {
        let _ = (n, state);
        Ok(OperatorSnapshot::default())
    }

    /// Loads the key groups `groups` of a restored snapshot; returns how many entries.
    fn restore(
        &mut self,
        state: &dyn KeyedState,
        groups: RangeInclusive<u32>,
    ) -> Result<usize, TaskError> {
        let _ = (state, groups);
        Err(TaskError::Data(
            "this operator keeps no state to restore".into(),
        ))
    }

    /// Checkpoint `n` completed (transactional sinks commit).
    fn notify_checkpoint_complete(&mut self, n: u64) -> Result<(), TaskError> {
        let _ = n;
        Ok(())
    }

    /// Every input ended (after the final watermark): emit and make durable what is left.
    fn finish(&mut self, out: &mut Output) -> Result<(), TaskError> {
        let _ = out;
        Ok(())
    }

    /// The job started (`true`) or finished (`false`) catching up with its sources: while it
    /// catches up an operator may hold back early results (updates a later record would
    /// replace); when it stops, it emits what it held back.
    fn catching_up(&mut self, on: bool, out: &mut Output) -> Result<(), TaskError> {
        let _ = (on, out);
        Ok(())
    }

    /// A checkpoint barrier is about to pass: emit what was held back, so that the
    /// checkpoint covers it.
    fn flush(&mut self, out: &mut Output) -> Result<(), TaskError> {
        let _ = out;
        Ok(())
    }

    /// Called while the subtask waits for input: surfaces failures of asynchronous work.
    fn check(&mut self) -> Result<(), TaskError> {
        Ok(())
    }
}
