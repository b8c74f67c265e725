//! Upgrades: a new version of a running job recomputes history beside it and replaces its
//! results (issue 15). So far: the plan (`--dry-run`).

pub mod dry_run;
pub mod plan;
#[cfg(test)]
mod plan_tests;
