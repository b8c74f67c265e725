//! The Kappa worker: runs the subtasks of a job attempt on its slots — source threads, window
//! threads and the channels between them — and reports how the attempt ended.

mod attempt;

pub use attempt::{AttemptHandle, AttemptOutcome, Deployment, deploy};
