//! A sink as the end of a chain: writes what it receives, prepares its output at each
//! barrier, commits it when the checkpoint completes, flushes at the end of input; counts the
//! latency of every row it wrote (see [`crate::latency`]).

use std::sync::Arc;

use arrow::array::RecordBatch;

use crate::error::TaskError;
use crate::io::Sink;
use crate::metrics::SubtaskMetrics;
use crate::operator::{Operator, OperatorSnapshot, Output};
use crate::state::KeyedState;

pub struct SinkOperator {
    sink: Box<dyn Sink>,
    metrics: Arc<SubtaskMetrics>,
}

impl SinkOperator {
    pub fn new(sink: Box<dyn Sink>, metrics: Arc<SubtaskMetrics>) -> Self {
        Self { sink, metrics }
    }
}

impl Operator for SinkOperator {
    fn process_batch(
        &mut self,
        _: usize,
        batch: RecordBatch,
        _: &mut Output,
    ) -> Result<(), TaskError> {
        self.sink.write(&batch)?;
        SubtaskMetrics::add(&self.metrics.records_out, batch.num_rows());
        self.metrics
            .latency
            .lock()
            .record_since(self.metrics.origin(), batch.num_rows());
        Ok(())
    }

    fn snapshot(
        &mut self,
        n: u64,
        _: Option<&mut dyn KeyedState>,
    ) -> Result<OperatorSnapshot, TaskError> {
        Ok(OperatorSnapshot {
            positions: Vec::new(),
            sink: self.sink.prepare(n)?,
        })
    }

    fn notify_checkpoint_complete(&mut self, n: u64) -> Result<(), TaskError> {
        self.sink.commit(n)
    }

    fn finish(&mut self, _: &mut Output) -> Result<(), TaskError> {
        self.sink.flush()
    }

    fn check(&mut self) -> Result<(), TaskError> {
        self.sink.check()
    }
}
