//! Kappa jobs: the job.toml spec, its validation with located error messages, and planning
//! into the physical graph (operator chains, parallelism, key groups) the runtime executes.

pub mod changes;
pub mod confine;
pub mod elasticsearch;
pub mod error;
pub mod graph;
#[cfg(test)]
mod graph_tests;
pub mod kafka;
pub mod keygroup;
mod ordered_map;
pub mod parse;
pub mod path_template;
pub mod plan;
pub mod postgres_tls;
mod query;
pub mod retarget;
pub mod secret;
pub mod spec;
pub mod sql;
pub mod start;
pub mod template;
pub mod time_format;
mod to_char;

pub use error::{SpecError, SpecErrors};
pub use graph::PhysicalGraph;
pub use plan::{JobPlan, Overrides, plan_job};
pub use start::{Start, StartPosition};
