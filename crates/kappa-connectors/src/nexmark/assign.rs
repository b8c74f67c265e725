//! Which splits a nexmark source's subtasks read. A first attempt reads the plan's number of
//! splits (the job's `max_parallelism`) from their first event numbers; a restore reads the
//! splits of the checkpoint, each from its recorded next event number, whatever the new
//! parallelism: the splits, not the subtasks, are the unit of assignment, so every event
//! number is emitted by exactly one split, once. A split missing from a checkpoint that has
//! the source's other splits was finished: its subtask had ended (a bounded sequence), and
//! ended subtasks take no part in later checkpoints.

use kappa_job::plan::nexmark::NexmarkSourcePlan;
use kappa_runtime::io::NexmarkPosition;

use super::{NexmarkConfig, NexmarkError, Split, SplitSet};

/// The splits of the next attempt, by split index: `restored` (checked to be splits of one
/// count, each once, each position in its split) or, when it is empty, every split of the
/// plan at its start.
pub fn splits_to_read(
    plan: &NexmarkSourcePlan,
    restored: &[NexmarkPosition],
) -> Result<Vec<NexmarkPosition>, NexmarkError> {
    if restored.is_empty() {
        return (0..plan.splits)
            .map(|i| {
                let split = Split::new(i, plan.splits)?;
                Ok(NexmarkPosition {
                    split: i,
                    splits: plan.splits,
                    next_event: split.first_position(),
                })
            })
            .collect();
    }
    let config = NexmarkConfig::from_plan(plan);
    let checked = restored
        .iter()
        .map(|p| Split::new(p.split, p.splits).map(|s| (s, p.next_event)))
        .collect::<Result<Vec<_>, _>>()?;
    let set = SplitSet::new(&config, checked)?;
    Ok(set
        .positions()
        .into_iter()
        .map(|(s, next_event)| NexmarkPosition {
            split: s.index(),
            splits: s.count(),
            next_event,
        })
        .collect())
}

#[cfg(test)]
mod tests;
