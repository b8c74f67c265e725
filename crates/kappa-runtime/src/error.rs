//! Errors a task can fail with, split into those a restart may cure (I/O, unreachable
//! brokers) and those it cannot (bad records under on_error = "fail", expression errors).

/// Why a task stopped with an error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TaskError {
    /// Bad data or a bad expression: restarting would fail the same way.
    #[error("{0}")]
    Data(String),
    /// Connectivity or I/O: a restart with backoff may succeed.
    #[error("{0}")]
    Io(String),
    /// The job asks for a path, host or name this process does not allow (confined jobs).
    #[error(transparent)]
    Refused(#[from] kappa_job::confine::Refused),
    /// A secret of the job cannot be read on this process (not allowed, not set, unreadable).
    #[error(transparent)]
    Secret(#[from] kappa_job::secret::SecretError),
}

impl TaskError {
    /// Whether the restart strategy should try again.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Io(_))
    }
}

/// An Arrow or DataFusion failure while evaluating `what`.
pub fn eval_error(what: &str, e: impl std::fmt::Display) -> TaskError {
    TaskError::Data(format!("{what}: {e}"))
}

/// An error and its causes, `: `-separated. A cause whose text its error already shows (as
/// tokio-postgres's errors show theirs) is left out.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.ends_with(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}
