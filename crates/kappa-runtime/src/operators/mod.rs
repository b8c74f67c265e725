//! The operators of a job, one file each: sources, the stateless steps, keyed windows, keyed
//! rankings, sinks.

mod rank;
mod sink;
mod source;
mod steps;
mod window;

pub use rank::Ranking;
pub use sink::SinkOperator;
pub use source::{STALLED_AFTER, SourceOperator};
pub use steps::StepsOperator;
pub use window::WindowedAggregate;

use crate::error::TaskError;
use crate::operator::OperatorSnapshot;
use crate::state::StateFailure;

/// A keyed operator's part of checkpoint `n`, once it `written` its state (None: it got no
/// state to write, the job does not checkpoint).
pub(crate) fn keyed_snapshot(
    what: &str,
    n: u64,
    written: Option<Result<(), StateFailure>>,
) -> Result<OperatorSnapshot, TaskError> {
    if let Some(Err(e)) = written {
        return Err(TaskError::Io(format!(
            "writing {what} state for checkpoint {n}: {e}"
        )));
    }
    Ok(OperatorSnapshot::default())
}

/// What a keyed operator's restore of key groups gave: how many entries, or why it failed.
pub(crate) fn keyed_restore(
    what: &str,
    restored: Result<usize, StateFailure>,
) -> Result<usize, TaskError> {
    restored.map_err(|e| TaskError::Data(format!("restoring {what} state: {e}")))
}
