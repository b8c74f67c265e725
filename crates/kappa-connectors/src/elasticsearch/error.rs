//! Why a request to Elasticsearch failed, keeping its cause, and what that means for the
//! task: whether trying the request again may help, and whether a restart may.

use std::time::Duration;

use kappa_runtime::TaskError;
use kappa_runtime::error::with_causes;

/// A failure of the elasticsearch sink.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    /// No answer: the connection failed, broke or timed out.
    #[error("{what} at {node}: no answer")]
    Unreachable {
        node: String,
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// A node's TLS certificate was refused (not signed by `ca_file` or the system's CAs,
    /// or for another name).
    #[error(
        "{what} at {node}: its TLS certificate is refused (not for this host, or signed by neither `ca_file` nor a CA of the system)"
    )]
    Certificate {
        node: String,
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status; `reason` is its error, or the start of
    /// its body.
    #[error("{what} at {node}: HTTP {status}: {reason}")]
    Status {
        node: String,
        what: &'static str,
        status: u16,
        reason: String,
    },
    /// An answer that is not what the API documents.
    #[error("{what} at {node}: the answer is not a {what} response")]
    Malformed {
        node: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A bulk response listing another number of items than the request held.
    #[error("bulk request at {node}: {answered} items answered for {sent} sent")]
    ItemCount {
        node: String,
        sent: usize,
        answered: usize,
    },
    /// Documents the server refused (the first one; `more` others in the same request).
    #[error(
        "elasticsearch refused document _id `{id}` in index `{index}` (status {status}): {reason}{}",
        match more { 0 => String::new(), n => format!(" (and {n} more documents of the same bulk request)") }
    )]
    Rejected {
        id: String,
        index: String,
        status: u16,
        reason: String,
        more: usize,
    },
    /// Documents answered 429 (too many requests), sent again.
    #[error("{count} documents were refused with 429 (too many requests)")]
    Throttled { count: usize },
    /// Retries went on until the deadline.
    #[error("gave up after {attempts} attempts in {}s", elapsed.as_secs())]
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        #[source]
        last: Box<EsError>,
    },
    /// A row has no index name.
    #[error("document _id `{id}`: {why}")]
    IndexName { id: String, why: String },
    /// A node of `url` that is not a URL (the plan checks them: a bug or another release).
    #[error("node `{node}` is not a URL")]
    Node {
        node: String,
        #[source]
        source: url::ParseError,
    },
    #[error("no nodes in `url`")]
    NoNodes,
    /// An API key that cannot be sent in a header.
    #[error("{field}: not a value an HTTP header can carry")]
    ApiKey {
        field: String,
        #[source]
        source: reqwest::header::InvalidHeaderValue,
    },
    #[error("reading ca_file {path}")]
    CaFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ca_file {path}: no PEM certificates")]
    CaPem {
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("setting up the HTTP client")]
    Client(#[source] reqwest::Error),
    /// A row could not be written as JSON.
    #[error("encoding rows as JSON")]
    Encode(#[source] crate::ConnectorError),
    #[error(transparent)]
    Secret(#[from] kappa_job::secret::SecretError),
}

impl EsError {
    /// Whether sending the same request again, a little later, may succeed: no answer,
    /// 429 (too many requests) or a server error.
    pub fn transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Throttled { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Whether restarting the task may cure it: what was transient, and documents a server
    /// refused with a server error (a shard unavailable), not bad data or settings.
    pub fn restart_may_help(&self) -> bool {
        match self {
            Self::GaveUp { .. } => true,
            Self::Rejected { status, .. } => *status >= 500,
            e => e.transient(),
        }
    }
}

impl From<EsError> for TaskError {
    fn from(e: EsError) -> Self {
        let text = format!("elasticsearch sink: {}", with_causes(&e));
        match e {
            EsError::Secret(s) => TaskError::Secret(s),
            e if e.restart_may_help() => TaskError::Io(text),
            _ => TaskError::Data(text),
        }
    }
}
