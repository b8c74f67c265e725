//! The sink side of `kappactl upgrade`: v2 first writes into a shadow of each live sink (table
//! `<table>__<upgrade>`, topic `<topic>.<upgrade>`, directory `<dir>.<upgrade>`); these
//! operations create the shadows, read live and shadow for the diff, and cut over so that a
//! reader sees all of v1's results or all of v2's, never a mix. They block; the jobmanager runs them on blocking threads. Each is
//! idempotent where a retry after a crash needs it to be.

pub mod files;
pub mod kafka;
pub mod postgres;

use std::path::PathBuf;
use std::time::Duration;

use kappa_job::secret::SecretError;
use kappa_runtime::TaskError;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Why a sink operation of an upgrade failed; [`UpgradeSinkError::retryable`] says whether
/// trying again may help. Messages name the server and the table or topic, never a password.
/// Large causes are boxed, so that results of these operations stay small.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeSinkError {
    /// The connector's own connection or producer code failed (connecting to PostgreSQL,
    /// opening or writing with a Kafka producer).
    #[error("{what}: {source}")]
    Task {
        what: String,
        #[source]
        source: Box<TaskError>,
    },
    /// A statement failed on the server.
    #[error("{what} in postgres at {target}: {}", crate::postgres::error_text(.source))]
    Postgres {
        what: String,
        /// `host:port/database`.
        target: String,
        #[source]
        source: ::postgres::Error,
    },
    /// A row the server returned as JSON could not be read as JSON.
    #[error("reading the rows of `{table}` in postgres at {target}: {source}")]
    RowJson {
        table: String,
        target: String,
        #[source]
        source: serde_json::Error,
    },
    /// A table the operation needs is not there.
    #[error("table `{table}` does not exist in postgres at {target}")]
    NoTable { table: String, target: String },
    /// Neither the shadow table nor the backup a finished swap leaves is there.
    #[error(
        "the shadow table `{shadow}` does not exist in postgres at {target}, nor the backup `{backup}` a swap leaves: there is nothing to swap into `{live}`"
    )]
    NoShadowTable {
        live: String,
        shadow: String,
        backup: String,
        target: String,
    },
    /// The backup table exists while the shadow does too: not a finished swap, and the backup
    /// would be overwritten.
    #[error(
        "the backup table `{backup}` already exists in postgres at {target} while the shadow `{shadow}` has not been swapped in: drop it or choose another backup name"
    )]
    BackupExists {
        shadow: String,
        backup: String,
        target: String,
    },
    /// A table name PostgreSQL would not take as it is (or would silently shorten).
    #[error("`{name}` is not a usable table name: {reason}")]
    BadName { name: String, reason: &'static str },
    /// A Kafka request failed.
    #[error("{what} at Kafka {servers}: {source}")]
    Kafka {
        what: String,
        servers: String,
        #[source]
        source: Box<KafkaError>,
    },
    /// The live topic is not there.
    #[error("topic `{topic}` does not exist at Kafka {servers}")]
    NoTopic { topic: String, servers: String },
    /// Reading a topic made no progress for `waited`; `last` is the last error librdkafka
    /// reported meanwhile, if any.
    #[error(
        "{what} at Kafka {servers}: no progress for {waited:?}{}",
        .last.as_ref().map_or(String::new(), |e| format!(" (last error: {e})"))
    )]
    Stalled {
        what: String,
        servers: String,
        waited: Duration,
        #[source]
        last: Option<Box<KafkaError>>,
    },
    /// A secret of the connection cannot be read on this process.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A file operation on a file sink's directories failed.
    #[error("{what} `{}`: {source}", .path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file sink's directory could not be listed.
    #[error(transparent)]
    List(Box<crate::ConnectorError>),
    /// A line of a file sink's output is not JSON.
    #[error("`{}` line {line} is not a JSON row: {source}", .path.display())]
    BadLine {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// A directory at the shadow's path that the upgrade did not create.
    #[error(
        "`{}` is not the upgrade's shadow directory (it has files and no marker): it is left alone",
        .path.display()
    )]
    NotShadow { path: PathBuf },
    /// Neither the shadow directory nor the backup a finished swap leaves is there.
    #[error(
        "the shadow directory `{}` does not exist, nor the backup a swap leaves: there is nothing to swap into `{}`",
        .shadow.display(), .live.display()
    )]
    NoShadowDir { live: PathBuf, shadow: PathBuf },
    /// The backup directory exists before the exchange: it would be overwritten.
    #[error("the backup directory `{}` exists already: move it away", .backup.display())]
    BackupDirExists { backup: PathBuf },
}

impl UpgradeSinkError {
    /// The error of connector code that failed while doing `what`.
    fn task(what: &str) -> impl Fn(TaskError) -> Self + use<> {
        let what = what.to_string();
        move |source| Self::Task {
            what: what.clone(),
            source: Box::new(source),
        }
    }

    /// Whether trying again may succeed: lost connections, timeouts and busy servers yes;
    /// missing tables or topics, bad names, refused credentials and bad SQL no.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Task { source, .. } => source.is_retriable(),
            Self::Postgres { source, .. } => crate::postgres::retriable(source),
            Self::Kafka { source, .. } => kafka_retryable(source),
            Self::Stalled { last, .. } => last.as_deref().is_none_or(kafka_retryable),
            Self::RowJson { .. }
            | Self::NoTable { .. }
            | Self::NoShadowTable { .. }
            | Self::BackupExists { .. }
            | Self::BadName { .. }
            | Self::NoTopic { .. }
            | Self::Secret(_)
            | Self::BadLine { .. }
            | Self::List(_)
            | Self::NotShadow { .. }
            | Self::NoShadowDir { .. }
            | Self::BackupDirExists { .. } => false,
            // A full disk or a busy file system may be cured; a missing permission is not.
            Self::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::Unsupported
            ),
        }
    }
}

/// Kafka errors no retry cures: missing or invalid topics, refused authentication or
/// authorization, requests the broker does not support or take.
const PERMANENT: &[RDKafkaErrorCode] = &[
    RDKafkaErrorCode::UnknownTopic,
    RDKafkaErrorCode::UnknownTopicOrPartition,
    RDKafkaErrorCode::InvalidTopic,
    RDKafkaErrorCode::InvalidArgument,
    RDKafkaErrorCode::Authentication,
    RDKafkaErrorCode::SaslAuthenticationFailed,
    RDKafkaErrorCode::UnsupportedSASLMechanism,
    RDKafkaErrorCode::TopicAuthorizationFailed,
    RDKafkaErrorCode::GroupAuthorizationFailed,
    RDKafkaErrorCode::ClusterAuthorizationFailed,
    RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
    RDKafkaErrorCode::UnsupportedFeature,
    RDKafkaErrorCode::UnsupportedVersion,
    RDKafkaErrorCode::InvalidRequest,
    RDKafkaErrorCode::InvalidConfig,
    RDKafkaErrorCode::InvalidPartitions,
    RDKafkaErrorCode::InvalidReplicationFactor,
    RDKafkaErrorCode::PolicyViolation,
    RDKafkaErrorCode::InvalidGroupId,
    RDKafkaErrorCode::InvalidMessageSize,
    RDKafkaErrorCode::MessageSizeTooLarge,
    RDKafkaErrorCode::MessageBatchTooLarge,
    RDKafkaErrorCode::Fatal,
];

/// Whether a Kafka request that failed with `e` may succeed when tried again. An error
/// without a code is the client's own (its configuration): no.
fn kafka_retryable(e: &KafkaError) -> bool {
    let code = match e {
        KafkaError::AdminOp(code) => Some(*code),
        e => e.rdkafka_error_code(),
    };
    code.is_some_and(|c| !PERMANENT.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(source: KafkaError) -> UpgradeSinkError {
        UpgradeSinkError::Kafka {
            what: "creating topic `t.u1`".into(),
            servers: "b:9092".into(),
            source: Box::new(source),
        }
    }

    #[test]
    fn connectivity_is_retried_and_missing_or_refused_things_are_not() {
        let transport = KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure);
        assert!(kafka(transport.clone()).retryable());
        assert!(kafka(KafkaError::AdminOp(RDKafkaErrorCode::RequestTimedOut)).retryable());
        assert!(!kafka(KafkaError::AdminOp(RDKafkaErrorCode::PolicyViolation)).retryable());
        assert!(
            !kafka(KafkaError::MetadataFetch(
                RDKafkaErrorCode::TopicAuthorizationFailed
            ))
            .retryable()
        );
        assert!(!kafka(KafkaError::ClientCreation("bad config".into())).retryable());
        let stalled = |last: Option<KafkaError>| UpgradeSinkError::Stalled {
            what: "reading topic `t`".into(),
            servers: "b:9092".into(),
            waited: Duration::from_secs(30),
            last: last.map(Box::new),
        };
        assert!(stalled(None).retryable());
        assert!(stalled(Some(transport)).retryable());
        assert!(
            !stalled(Some(KafkaError::MessageConsumption(
                RDKafkaErrorCode::TopicAuthorizationFailed
            )))
            .retryable()
        );
        let task = UpgradeSinkError::task("connecting");
        assert!(task(TaskError::Io("unreachable".into())).retryable());
        assert!(!task(TaskError::Data("bad url".into())).retryable());
        let missing = UpgradeSinkError::NoTable {
            table: "clicks".into(),
            target: "db:5432/analytics".into(),
        };
        assert!(!missing.retryable());
    }

    #[test]
    fn errors_cross_threads() {
        // The jobmanager runs the operations on blocking threads and awaits their results.
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<UpgradeSinkError>();
    }

    #[test]
    fn messages_say_what_and_where() {
        let e = kafka(KafkaError::AdminOp(RDKafkaErrorCode::PolicyViolation));
        assert_eq!(
            e.to_string(),
            "creating topic `t.u1` at Kafka b:9092: Admin operation error: PolicyViolation (Broker: Policy violation)"
        );
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
    }
}
