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
