//! `connector = "blackhole"`: a sink that discards every row, as Flink's, so a benchmark
//! measures the query and not the output. The sink operator counts the rows it is given
//! (`records_out`) before they reach it.

use arrow::array::BooleanArray;
use arrow::record_batch::RecordBatch;
use kappa_runtime::TaskError;
use kappa_runtime::io::Sink;

/// Discards what it is given; nothing to make durable, so any delivery holds.
#[derive(Debug, Default)]
pub struct BlackholeSink;

impl Sink for BlackholeSink {
    fn write(&mut self, _batch: &RecordBatch) -> Result<(), TaskError> {
        Ok(())
    }

    /// A change stream's deletes are discarded like its rows.
    fn write_changes(&mut self, _: &RecordBatch, _: &BooleanArray) -> Result<(), TaskError> {
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        Ok(())
    }
}
