//! Job files for the planner's tests: the reference job, that job with its `[sink]` table
//! replaced, and the located errors a file plans into.

use super::{Overrides, plan_job};
use crate::SpecError;

/// The reference job (`examples/hourly-item-clicks.toml`).
pub const REFERENCE: &str = include_str!("../../../../examples/hourly-item-clicks.toml");

/// The reference job with its `[sink]` table replaced by `sink`.
pub fn with_sink(sink: &str) -> String {
    let at = REFERENCE.find("[sink]").unwrap_or(REFERENCE.len());
    format!("{}[sink]\n{sink}\n", &REFERENCE[..at])
}

/// The errors of a file that does not plan.
pub fn errors(text: &str) -> Vec<SpecError> {
    plan_job("job.toml", text, &Overrides::default())
        .unwrap_err()
        .0
}

/// The line (from 1) of `text` that begins with `start`.
pub fn line_of(text: &str, start: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.starts_with(start))
        .map(|i| i + 1)
}

/// Each error's field and line.
pub fn located(errors: &[SpecError]) -> Vec<(&str, Option<usize>)> {
    errors.iter().map(|e| (e.field.as_str(), e.line)).collect()
}
