//! The Kappa dataflow engine inside a taskmanager: operators (sources, steps, windows, sinks)
//! chained in subtasks, one generic subtask loop, bounded channels with backpressure,
//! watermarks, barrier alignment, and keyed exchange by key group.

pub mod barrier;
pub mod budget;
pub mod chain;
pub mod channel;
pub mod element;
pub mod error;
pub mod io;
pub mod join;
pub mod keyed;
pub mod latency;
pub mod metrics;
pub mod operator;
pub mod operators;
pub mod prometheus;
pub mod rank;
pub mod state;
pub mod steps;
pub mod subtask;
pub mod watermark;
pub mod window;

pub use error::TaskError;
