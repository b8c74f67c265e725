//! The reader of `connector = "nexmark"`: generates one table of the Nexmark sequence from
//! the splits assigned to its subtask, merged in event-number order (so its event times
//! never go back and one watermark is exact), in batches, paced by the job's `max_rate` when
//! it has one, and records each split's next event number at checkpoints.

use std::time::{Duration, Instant};

use kappa_job::plan::nexmark::NexmarkSourcePlan;
use kappa_runtime::TaskError;
use kappa_runtime::io::{NexmarkPosition, SourceReader, SourceStatus, SplitBatch, SplitPosition};

use super::{NexmarkConfig, NexmarkError, NexmarkGenerator, PROPORTION_TOTAL, Split, SplitSet};
use super::{Pacer, Table};

/// Rows generated per poll at most.
pub const BATCH_ROWS: usize = 4096;

/// Generates the rows of one subtask of a nexmark source.
pub struct NexmarkReader {
    generator: NexmarkGenerator,
    table: Table,
    splits: SplitSet,
    /// The subtask's share of `max_rate`; None: as fast as it can.
    pacer: Option<Pacer>,
    ended: bool,
}

impl NexmarkReader {
    /// Reads `splits` from their positions.
    pub fn new(plan: &NexmarkSourcePlan, splits: &[NexmarkPosition]) -> Result<Self, NexmarkError> {
        let generator = NexmarkGenerator::new(NexmarkConfig::from_plan(plan))?;
        let positions = splits
            .iter()
            .map(|p| Split::new(p.split, p.splits).map(|s| (s, p.next_event)))
            .collect::<Result<Vec<_>, _>>()?;
        let splits = SplitSet::new(generator.config(), positions)?;
        // Its share of the job's rate: the fraction of all splits it reads.
        let pacer = match (plan.max_rate, splits.count()) {
            (Some(rate), Some(count)) => {
                let share = rate as f64 * splits.len() as f64 / f64::from(count);
                Some(Pacer::new(share, Instant::now()))
            }
            _ => None,
        };
        Ok(NexmarkReader {
            generator,
            table: plan.table.into(),
            splits,
            pacer,
            ended: false,
        })
    }

    /// How many event numbers this poll may go past: a batch's worth, or what the pacer
    /// allows after waiting (at most `timeout`) for a batch's worth.
    fn budget(&mut self, timeout: Duration) -> u64 {
        let batch = BATCH_ROWS as u64 * PROPORTION_TOTAL;
        let Some(pacer) = self.pacer.as_mut() else {
            return batch;
        };
        let wait = pacer.wait_for(BATCH_ROWS as u64, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait.min(timeout));
        }
        pacer.available(Instant::now()).min(batch)
    }
}

impl SourceReader for NexmarkReader {
    fn positions(&self) -> Vec<SplitPosition> {
        self.splits
            .positions()
            .into_iter()
            .map(|(split, next_event)| {
                SplitPosition::Nexmark(NexmarkPosition {
                    split: split.index(),
                    splits: split.count(),
                    next_event,
                })
            })
            .collect()
    }

    /// One watermark for all its splits: they are read in event-number order.
    fn splits(&self) -> usize {
        usize::from(!self.splits.is_empty())
    }

    fn poll(
        &mut self,
        out: &mut Vec<SplitBatch>,
        finished: &mut Vec<usize>,
        timeout: Duration,
    ) -> Result<SourceStatus, TaskError> {
        if self.splits.peek().is_none() {
            // Bounded and done; an unbounded reader without splits has nothing, ever.
            if self.generator.config().events.is_none() {
                std::thread::sleep(timeout);
                return Ok(SourceStatus::Running);
            }
            if !self.ended && !self.splits.is_empty() {
                finished.push(0);
            }
            self.ended = true;
            return Ok(SourceStatus::Finished);
        }
        let budget = self.budget(timeout);
        if budget == 0 {
            return Ok(SourceStatus::Running);
        }
        let filled = self
            .generator
            .fill_set(&mut self.splits, BATCH_ROWS, budget, &[self.table])
            .map_err(|e| TaskError::Data(e.to_string()))?;
        if let Some(p) = self.pacer.as_mut() {
            p.take(filled.events);
        }
        if let Some(batch) = filled.batch(self.table).filter(|b| b.num_rows() > 0) {
            out.push(SplitBatch {
                split: 0,
                batch: batch.clone(),
            });
        }
        Ok(SourceStatus::Running)
    }
}
