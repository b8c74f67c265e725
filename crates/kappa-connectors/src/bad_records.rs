//! What a source does with a record it cannot decode: fail the job naming where the record
//! is, skip it, or write it with its error to a dead-letter topic; skips are counted.

use std::sync::Arc;

use kappa_job::spec::OnError;
use kappa_runtime::TaskError;
use kappa_runtime::metrics::SubtaskMetrics;

use crate::kafka::sink::DeadLetterWriter;

/// Applies the job's `on_error` policy.
pub struct BadRecordPolicy {
    on_error: OnError,
    dead_letter: Option<DeadLetterWriter>,
    metrics: Arc<SubtaskMetrics>,
    logged: u64,
}

/// How many skipped records are logged one by one before only the counter goes up.
const LOG_LIMIT: u64 = 20;

impl BadRecordPolicy {
    pub fn new(
        on_error: OnError,
        dead_letter: Option<DeadLetterWriter>,
        metrics: Arc<SubtaskMetrics>,
    ) -> Self {
        Self {
            on_error,
            dead_letter,
            metrics,
            logged: 0,
        }
    }

    /// Handles one bad record found at `location` (e.g. `topic t partition 3 offset 17`).
    pub fn handle(&mut self, location: &str, raw: &[u8], error: &str) -> Result<(), TaskError> {
        match self.on_error {
            OnError::Fail => Err(TaskError::Data(format!(
                "bad record at {location}: {error} (set on_error = \"skip\" or \"dead-letter\" in [source] to go past it)"
            ))),
            OnError::Skip => {
                SubtaskMetrics::add(&self.metrics.skipped, 1);
                if self.logged < LOG_LIMIT {
                    self.logged += 1;
                    tracing::warn!(%location, %error, "skipped a bad record");
                }
                Ok(())
            }
            OnError::DeadLetter => {
                let dl = self.dead_letter.as_mut().ok_or_else(|| {
                    TaskError::Data("on_error = \"dead-letter\" without a dead-letter topic".into())
                })?;
                dl.write(location, raw, error)?;
                SubtaskMetrics::add(&self.metrics.dead_lettered, 1);
                Ok(())
            }
        }
    }
}
