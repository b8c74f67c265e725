//! Upgrades: a new version of a running job recomputes history beside it into shadow sinks,
//! is compared with it, and replaces its results at one instant (issue 15). An audit runs a
//! job's own file the same way and only compares.

pub mod control;
pub mod diff;
pub mod driver;
pub mod dry_run;
mod history;
pub mod machine;
#[cfg(test)]
mod machine_tests;
pub mod plan;
#[cfg(test)]
mod plan_tests;
pub mod protocol;
pub mod record;
mod retention;
pub mod sinks;
mod steps;
