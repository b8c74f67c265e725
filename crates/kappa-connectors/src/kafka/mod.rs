//! Kafka connectors over librdkafka: partitions read with `assign()` at explicit offsets
//! (never consumer-group rebalancing), sinks keyed by a template (at-least-once or
//! transactional), dead-letter topics.

pub mod admin;
pub mod batch;
pub mod config;
pub mod sink;
pub mod source;
pub mod transactional;

pub use config::client_config;
use serde::{Deserialize, Serialize};

/// Where a source subtask starts on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartOffset {
    /// The first offset still in the log.
    Beginning,
    /// An explicit offset (latest and timestamps are resolved to one when the job starts).
    Offset(i64),
}

/// A partition assigned to a source subtask, with its start offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStart {
    pub partition: i32,
    pub offset: StartOffset,
}
