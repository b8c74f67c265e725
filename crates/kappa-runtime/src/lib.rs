//! The Kappa dataflow engine inside a taskmanager: bounded channels with backpressure,
//! watermarks, steps, keyed exchange by key group, event-time windows and the task loops.

pub mod barrier;
pub mod channel;
pub mod element;
pub mod error;
pub mod io;
pub mod keyed;
pub mod metrics;
pub mod prometheus;
pub mod state;
pub mod steps;
pub mod task;
pub mod watermark;
pub mod window;

pub use error::TaskError;
