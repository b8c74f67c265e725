//! Keyed event-time windows (tumbling, sliding, session) with incremental aggregates,
//! fired when the watermark passes their end.

mod accumulator;
pub(crate) mod assign;
mod distinct;
mod hll;
mod numeric;
mod operator;
mod pick;
pub(crate) mod saved;
pub(crate) mod values;

pub use accumulator::Accumulator;

/// The largest event time, in milliseconds from 1970 either way (about 73 million years), a
/// source accepts: beyond it a record is bad (its source's `on_error` applies), so window
/// arithmetic with durations of up to 100 years stays far from the ends of i64.
pub const MAX_EVENT_TIME_MS: i64 = i64::MAX / 4;
pub use operator::{SpillStats, WindowOperator, event_times};

#[cfg(test)]
mod aggregate_tests;
#[cfg(test)]
mod retract_tests;
#[cfg(test)]
mod spill_tests;
#[cfg(test)]
pub(crate) mod tests;
