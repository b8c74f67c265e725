//! Keyed event-time windows as an operator: output port 0 carries the windows' rows (and
//! their updates within allowed lateness); events beyond allowed lateness are counted in the
//! subtask's metrics and, with a late output, emitted on port 1 with the window they missed.

use std::ops::RangeInclusive;
use std::sync::Arc;

use arrow::array::RecordBatch;

use kappa_job::graph::LATE_PORT;

use super::{keyed_restore, keyed_snapshot};
use crate::error::TaskError;
use crate::metrics::SubtaskMetrics;
use crate::operator::{Operator, OperatorSnapshot, Output};
use crate::state::KeyedState;
use crate::window::WindowOperator;

pub struct WindowedAggregate {
    window: WindowOperator,
    metrics: Arc<SubtaskMetrics>,
}

impl WindowedAggregate {
    pub fn new(window: WindowOperator, metrics: Arc<SubtaskMetrics>) -> Self {
        Self { window, metrics }
    }
}

impl Operator for WindowedAggregate {
    fn process_batch(
        &mut self,
        _: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), TaskError> {
        let updates = self.window.process(&batch)?;
        SubtaskMetrics::add(&self.metrics.late_dropped, self.window.take_late());
        if let Some(b) = updates {
            out.emit(0, b);
        }
        if let Some(late) = self.window.take_late_rows() {
            out.emit(LATE_PORT, late);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), TaskError> {
        if let Some(b) = self.window.advance(watermark)? {
            out.emit(0, b);
        }
        Ok(())
    }

    fn snapshot(
        &mut self,
        n: u64,
        state: Option<&mut dyn KeyedState>,
    ) -> Result<OperatorSnapshot, TaskError> {
        let written = state.map(|state| self.window.snapshot(state));
        keyed_snapshot("window", n, written)
    }

    fn restore(
        &mut self,
        state: &dyn KeyedState,
        groups: RangeInclusive<u32>,
    ) -> Result<usize, TaskError> {
        keyed_restore("window", self.window.restore(state, groups))
    }
}
