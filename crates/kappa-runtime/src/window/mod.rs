//! Keyed event-time windows (tumbling, sliding, session) with incremental aggregates,
//! fired when the watermark passes their end.

mod accumulator;
mod assign;
mod operator;

pub use accumulator::Accumulator;
pub use operator::{WindowOperator, event_times};

#[cfg(test)]
mod tests;
