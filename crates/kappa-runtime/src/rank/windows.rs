//! A Top-N of a window table function's rows assigns their windows itself: each row with the
//! `window_start` and `window_end` of every window its event time falls into appended (a
//! sliding window repeats the row), as the rows the ranking holds.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use kappa_job::plan::WindowAssigner;

use crate::error::{TaskError, eval_error};
use crate::window::assign::{Described, Windows};
use crate::window::event_times;

/// Input rows with their windows.
pub(super) struct Windowed {
    /// The rows, each with its window's start and end (`schema` of [`windowed`]).
    pub batch: RecordBatch,
    /// Which input row each row is.
    pub origin: Vec<u32>,
    /// Input rows without an event time (counted as late).
    pub untimed: usize,
}

/// The rows of `batch` in their windows by `assigner`, their event time in column `time`;
/// `schema` is the input's columns, window_start and window_end.
pub(super) fn windowed(
    batch: &RecordBatch,
    assigner: WindowAssigner,
    time: usize,
    schema: &SchemaRef,
) -> Result<Windowed, TaskError> {
    let column = batch.columns().get(time).ok_or_else(|| {
        TaskError::Data(format!(
            "the event time is column {time} of a batch of {}",
            batch.num_columns()
        ))
    })?;
    let times = event_times(column)?;
    let (mut origin, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    let mut untimed = 0;
    for i in 0..batch.num_rows() {
        if !times.is_valid(i) {
            untimed += 1;
            continue;
        }
        let t = times.value(i);
        let windows = Windows::of(assigner, 0, t).ok_or_else(|| {
            TaskError::Data(format!(
                "event time {t} is out of range for a {}: its window would start or end beyond the 64-bit millisecond range; filter such records out before the ranking",
                Described(assigner)
            ))
        })?;
        for (start, end) in windows.iter() {
            origin.push(i as u32);
            starts.push(start);
            ends.push(end);
        }
    }
    let taken = take_record_batch(batch, &UInt32Array::from(origin.clone()))
        .map_err(|e| eval_error("assigning windows", e))?;
    let mut columns: Vec<ArrayRef> = taken.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(starts)));
    columns.push(Arc::new(Int64Array::from(ends)));
    let batch = RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| eval_error("assigning windows", e))?;
    Ok(Windowed {
        batch,
        origin,
        untimed,
    })
}
