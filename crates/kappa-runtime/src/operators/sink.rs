//! A sink as the end of a chain: writes what it receives, prepares its output at each
//! barrier, commits it when the checkpoint completes, flushes at the end of input; counts the
//! latency of every row it wrote (see [`crate::latency`]).

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};

use crate::error::TaskError;
use crate::io::Sink;
use crate::metrics::SubtaskMetrics;
use crate::operator::{Operator, OperatorSnapshot, Output};
use crate::state::KeyedState;

pub struct SinkOperator {
    sink: Box<dyn Sink>,
    metrics: Arc<SubtaskMetrics>,
    /// Its records are changes: their last column says which rows delete their key.
    changes: bool,
}

impl SinkOperator {
    pub fn new(sink: Box<dyn Sink>, metrics: Arc<SubtaskMetrics>) -> Self {
        Self {
            sink,
            metrics,
            changes: false,
        }
    }

    /// A sink of a change stream (see [`kappa_job::plan::SinkPlan::changes`]).
    pub fn with_changes(mut self, changes: bool) -> Self {
        self.changes = changes;
        self
    }

    /// Writes a change stream's batch: its rows without the change column, and the column.
    fn write_changes(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        let last = batch.num_columns().checked_sub(1);
        let deletes = last
            .filter(|&i| batch.schema().field(i).name() == kappa_job::plan::CHANGE_COLUMN)
            .and_then(|i| batch.column(i).as_boolean_opt().cloned().map(|d| (i, d)));
        let Some((i, deletes)) = deletes else {
            return Err(TaskError::Data(format!(
                "a change stream's rows reached the sink without their change column `{}` (columns {:?})",
                kappa_job::plan::CHANGE_COLUMN,
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
            )));
        };
        let mut rows = batch.clone();
        rows.remove_column(i);
        self.sink.write_changes(&rows, &deletes)
    }
}

impl Operator for SinkOperator {
    fn process_batch(
        &mut self,
        _: usize,
        batch: RecordBatch,
        _: &mut Output,
    ) -> Result<(), TaskError> {
        match self.changes {
            true => self.write_changes(&batch)?,
            false => self.sink.write(&batch)?,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;
    use crate::channel::Inputs;
    use crate::element::Element;
    use crate::latency::{Origin, now_micros};
    use crate::subtask::{Head, Subtask, TaskEnd};
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::atomic::AtomicBool;

    struct Discard;

    impl Sink for Discard {
        fn write(&mut self, _: &RecordBatch) -> Result<(), TaskError> {
            Ok(())
        }

        fn flush(&mut self) -> Result<(), TaskError> {
            Ok(())
        }
    }

    fn rows(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]).unwrap()
    }

    #[test]
    fn a_sink_counts_each_row_from_when_its_records_entered_the_engine() {
        let cancel = Arc::new(AtomicBool::new(false));
        let metrics: Arc<SubtaskMetrics> = Arc::default();
        let (inputs, tx) = Inputs::new(1, 8, Arc::clone(&cancel), Arc::default());
        let sink = SinkOperator::new(Box::new(Discard), Arc::clone(&metrics));
        let chain = Chain::new(
            vec![Box::new(sink)],
            vec![vec![vec![]]],
            Vec::new(),
            Arc::clone(&metrics),
        )
        .unwrap();
        let task = Subtask {
            head: Head::Channels {
                channels: inputs,
                inputs: vec![0],
            },
            chain,
            metrics: Arc::clone(&metrics),
            cancel,
            catching_up: Arc::default(),
            checkpoints: None,
        };
        let read_at = Origin(now_micros() - 250_000);
        for e in [
            Element::Records(rows(3), read_at),
            // From a peer that does not say: not counted.
            Element::Records(rows(5), Origin::UNKNOWN),
            Element::End,
        ] {
            tx.send((0, e)).unwrap();
        }
        assert_eq!(task.run().unwrap(), TaskEnd::Finished);
        let h = metrics.latency.lock();
        assert_eq!(h.rows(), 3);
        let (low, high) = (h.quantile(0.0).unwrap(), h.max().unwrap());
        assert!(
            low >= 247_500,
            "at least the 250 ms since they were read: {low} µs"
        );
        assert!(high < 60_000_000, "{high} µs");
    }
}
