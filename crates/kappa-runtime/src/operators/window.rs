//! Keyed event-time windows as an operator: output port 0 carries the windows' rows (and
//! their updates within allowed lateness); events beyond allowed lateness are counted in the
//! subtask's metrics and, with a late output, emitted on port 1 with the window they missed.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;

use kappa_job::graph::LATE_PORT;

use super::{keyed_restore, keyed_snapshot};
use crate::error::TaskError;
use crate::metrics::{StateFigures, SubtaskMetrics};
use crate::operator::{Operator, OperatorSnapshot, Output};
use crate::state::KeyedState;
use crate::window::WindowOperator;

pub struct WindowedAggregate {
    window: WindowOperator,
    metrics: Arc<SubtaskMetrics>,
    /// What it last reported of its state, and when.
    reported: (StateFigures, Option<Instant>),
}

/// How often a window reports the size of its state at most.
const REPORT_EVERY: Duration = Duration::from_millis(200);

impl WindowedAggregate {
    pub fn new(window: WindowOperator, metrics: Arc<SubtaskMetrics>) -> Self {
        Self {
            window,
            metrics,
            reported: (StateFigures::default(), None),
        }
    }

    /// Reports the size of its state, unless it did less than [`REPORT_EVERY`] ago.
    fn report(&mut self) {
        let (before, at) = &mut self.reported;
        if at.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        let now = self.window.state_figures();
        self.metrics.state.report(before, &now);
        *before = now;
        *at = Some(Instant::now());
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
        self.report();
        Ok(())
    }

    fn process_watermark(&mut self, watermark: i64, _: &mut Output) -> Result<(), TaskError> {
        self.window.set_watermark(watermark);
        Ok(())
    }

    fn more_output(&mut self, out: &mut Output) -> Result<bool, TaskError> {
        match self.window.fire_next()? {
            Some(b) => {
                out.emit(0, b);
                Ok(true)
            }
            None => {
                self.report();
                Ok(false)
            }
        }
    }

    fn catching_up(&mut self, on: bool, out: &mut Output) -> Result<(), TaskError> {
        self.window.hold_updates(on);
        match on {
            true => Ok(()),
            false => self.flush(out),
        }
    }

    fn flush(&mut self, _: &mut Output) -> Result<(), TaskError> {
        self.window.release_held();
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
