//! Kafka connectors over librdkafka: partitions read with `assign()` at explicit offsets
//! (never consumer-group rebalancing), sinks keyed by a template (at-least-once or
//! transactional), dead-letter topics.

pub mod admin;
pub mod batch;
pub mod config;
pub mod history;
mod records;
pub mod sink;
pub mod source;
pub mod transactional;

/// A topic `t` of two partitions in librdkafka's in-process mock cluster, holding `n` records
/// (`payload(i)` to partition i % 2), for the unit tests of the Kafka reader.
#[cfg(test)]
pub(crate) fn mock_topic(
    n: i32,
    payload: impl Fn(i32) -> String,
) -> rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("t", 2, 1).unwrap();
    let p: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    for i in 0..n {
        let payload = payload(i);
        let rec = BaseRecord::<(), str>::to("t")
            .partition(i % 2)
            .payload(&payload);
        p.send(rec).unwrap();
    }
    p.flush(std::time::Duration::from_secs(10)).unwrap();
    cluster
}

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
