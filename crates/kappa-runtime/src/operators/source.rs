//! A source as the head of a chain: reads its splits, counts what it read, tracks the
//! watermark per split (idle splits left out after their timeout) and records positions at
//! checkpoints. What it reads enters the engine when the poll returns (its origin).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::max;
use kappa_job::plan::EventTimePlan;

use crate::error::TaskError;
use crate::io::{SourceReader, SourceStatus, SplitBatch};
use crate::latency::Origin;
use crate::metrics::SubtaskMetrics;
use crate::operator::{Operator, OperatorSnapshot, Output, Polled, Progress};
use crate::state::KeyedState;
use crate::watermark::{SplitWatermarks, WatermarkStatus};
use crate::window::event_times;

/// A split silent this long while others read is reported stalled (see
/// [`SplitWatermarks::stalled`]).
pub const STALLED_AFTER: Duration = Duration::from_secs(30);

pub struct SourceOperator {
    reader: Box<dyn SourceReader>,
    event_time: Option<EventTimePlan>,
    watermarks: Option<SplitWatermarks>,
    metrics: Arc<SubtaskMetrics>,
    buf: Vec<SplitBatch>,
    finished: Vec<usize>,
}

impl SourceOperator {
    pub fn new(
        reader: Box<dyn SourceReader>,
        event_time: Option<EventTimePlan>,
        metrics: Arc<SubtaskMetrics>,
    ) -> Self {
        let watermarks = event_time.as_ref().map(|et| {
            SplitWatermarks::new(
                reader.splits(),
                et.max_out_of_orderness,
                et.idle_timeout,
                Instant::now(),
            )
        });
        Self {
            reader,
            event_time,
            watermarks,
            metrics,
            buf: Vec::new(),
            finished: Vec::new(),
        }
    }
}

impl Operator for SourceOperator {
    fn process_batch(&mut self, _: usize, _: RecordBatch, _: &mut Output) -> Result<(), TaskError> {
        Err(TaskError::Data("a source has no inputs".into()))
    }

    fn poll(&mut self, out: &mut Output, timeout: Duration) -> Result<Polled, TaskError> {
        let status = self
            .reader
            .poll(&mut self.buf, &mut self.finished, timeout)?;
        let now = Instant::now();
        // What was read (and the watermark it advances) entered the engine now.
        self.metrics.set_origin(Origin::now());
        if let Some(w) = self.watermarks.as_mut() {
            // Splits handed over while running (new Kafka partitions) join the watermark.
            while w.len() < self.reader.splits() {
                w.add_split(now);
            }
        }
        for SplitBatch { split, batch } in self.buf.drain(..) {
            SubtaskMetrics::add(&self.metrics.records_in, batch.num_rows());
            if let (Some(w), Some(et)) = (self.watermarks.as_mut(), self.event_time.as_ref())
                && let Some(m) = max(&event_times(batch.column(et.source_index))?)
            {
                w.observe(split, m, now);
            }
            out.emit(0, batch);
        }
        let finished = status == SourceStatus::Finished;
        let progress = match self.watermarks.as_mut() {
            Some(w) => {
                for s in self.finished.drain(..) {
                    w.finish(s);
                }
                let stalled = w.stalled(now, STALLED_AFTER) as u64;
                self.metrics
                    .stalled_splits
                    .store(stalled, Ordering::Relaxed);
                match w.advance(now) {
                    Some(wm) => Some(Progress::Watermark(wm)),
                    None if !finished && w.status(now) == WatermarkStatus::Idle => {
                        Some(Progress::Idle)
                    }
                    None => None,
                }
            }
            None => None,
        };
        Ok(Polled { progress, finished })
    }

    fn snapshot(
        &mut self,
        _: u64,
        _: Option<&mut dyn KeyedState>,
    ) -> Result<OperatorSnapshot, TaskError> {
        Ok(OperatorSnapshot {
            positions: self.reader.positions(),
            sink: None,
        })
    }
}
