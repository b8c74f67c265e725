//! A keyed ranking as an operator: Top-N per window or keep-first deduplication (see
//! [`crate::rank`]); late rows are counted in the subtask's metrics.

use std::ops::RangeInclusive;
use std::sync::Arc;

use arrow::array::RecordBatch;

use super::{keyed_restore, keyed_snapshot};
use crate::error::TaskError;
use crate::metrics::SubtaskMetrics;
use crate::operator::{Operator, OperatorSnapshot, Output};
use crate::rank::RankOperator;
use crate::state::KeyedState;

pub struct Ranking {
    rank: RankOperator,
    metrics: Arc<SubtaskMetrics>,
}

impl Ranking {
    pub fn new(rank: RankOperator, metrics: Arc<SubtaskMetrics>) -> Self {
        Self { rank, metrics }
    }
}

impl Operator for Ranking {
    fn process_batch(
        &mut self,
        _: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), TaskError> {
        let emitted = self.rank.process(&batch)?;
        SubtaskMetrics::add(&self.metrics.late_dropped, self.rank.take_late());
        if let Some(b) = emitted {
            out.emit(0, b);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), TaskError> {
        if let Some(b) = self.rank.advance(watermark)? {
            out.emit(0, b);
        }
        Ok(())
    }

    fn snapshot(
        &mut self,
        n: u64,
        state: Option<&mut dyn KeyedState>,
    ) -> Result<OperatorSnapshot, TaskError> {
        let written = state.map(|state| self.rank.snapshot(state));
        keyed_snapshot("ranking", n, written)
    }

    fn restore(
        &mut self,
        state: &dyn KeyedState,
        groups: RangeInclusive<u32>,
    ) -> Result<usize, TaskError> {
        keyed_restore("ranking", self.rank.restore(state, groups))
    }
}
