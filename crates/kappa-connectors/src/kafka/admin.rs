//! Topic metadata for the jobmanager: the partitions of a source topic and the offsets a
//! start position (earliest, latest, timestamp) means on each.

use std::sync::Arc;
use std::time::Duration;

use kappa_job::StartPosition;
use kappa_job::kafka::KafkaConnection;
use parking_lot::Mutex;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{PartitionStart, StartOffset, client_config};
use crate::ConnectorError;

/// The last error librdkafka logged about the connection (a refused TLS handshake, a failed
/// SASL authentication): a failed request itself only says "broker transport failure".
#[derive(Clone, Default)]
struct LastError(Arc<Mutex<Option<String>>>);

impl ClientContext for LastError {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        DefaultClientContext.log(level, fac, log_message);
        let error = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
        );
        if error {
            // "[thrd:ssl://host:9093/bootstrap]: ssl://host:9093/bootstrap: SSL handshake failed: …"
            let message = log_message
                .strip_prefix("[thrd:")
                .and_then(|m| m.split_once("]: "))
                .map_or(log_message, |(_, m)| m);
            *self.0.lock() = Some(message.to_string());
        }
    }
}

impl ConsumerContext for LastError {}

/// A metadata request to a cluster failed; `reason` is what librdkafka logged about the
/// connection (a TLS handshake or SASL authentication it refused), when it did.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "cannot reach Kafka at {servers} (topic `{topic}`): {source}{}",
    .reason.as_ref().map_or(String::new(), |r| format!(": {r}"))
)]
pub struct Unreachable {
    pub servers: String,
    pub topic: String,
    #[source]
    pub source: KafkaError,
    pub reason: Option<String>,
}

/// A metadata-only client of one cluster.
pub struct TopicAdmin {
    consumer: BaseConsumer<LastError>,
    last_error: LastError,
    bootstrap_servers: String,
    timeout: Duration,
}

impl TopicAdmin {
    pub fn new(connection: &KafkaConnection, timeout: Duration) -> Result<Self, ConnectorError> {
        let bootstrap_servers = &connection.bootstrap_servers;
        let last_error = LastError::default();
        let consumer = client_config(connection)?
            .set("group.id", "kappa-metadata")
            .set("enable.auto.commit", "false")
            .create_with_context(last_error.clone())
            .map_err(|e| {
                ConnectorError::Kafka(format!("creating a client for {bootstrap_servers}: {e}"))
            })?;
        Ok(Self {
            consumer,
            last_error,
            bootstrap_servers: bootstrap_servers.clone(),
            timeout,
        })
    }

    /// A failed request for `topic`, with what librdkafka last said about the connection.
    fn unreachable(&self, topic: &str, source: KafkaError) -> ConnectorError {
        // librdkafka's logs wait in the client's queue until it is polled (no records come:
        // nothing is assigned).
        for _ in 0..1_000 {
            if self.consumer.poll(Duration::ZERO).is_none() {
                break;
            }
        }
        ConnectorError::Unreachable(Box::new(Unreachable {
            servers: self.bootstrap_servers.clone(),
            topic: topic.to_string(),
            source,
            reason: self.last_error.0.lock().take(),
        }))
    }

    /// The partition ids of `topic`, sorted; an error if the cluster or the topic is not there.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, ConnectorError> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|e| self.unreachable(topic, e))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| {
                ConnectorError::Kafka(format!(
                    "topic `{topic}` not found at {}",
                    self.bootstrap_servers
                ))
            })?;
        if let Some(err) = t.error() {
            return Err(ConnectorError::Kafka(format!(
                "topic `{topic}` at {}: {err:?}",
                self.bootstrap_servers
            )));
        }
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        if ids.is_empty() {
            return Err(ConnectorError::Kafka(format!(
                "topic `{topic}` has no partitions at {}",
                self.bootstrap_servers
            )));
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The start offset of each partition for a start position; `latest` and timestamps are
    /// resolved to explicit offsets now, so a restart starts where the first attempt did.
    pub fn start_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        start: StartPosition,
    ) -> Result<Vec<PartitionStart>, ConnectorError> {
        match start {
            StartPosition::Earliest => Ok(partitions
                .iter()
                .map(|&partition| PartitionStart {
                    partition,
                    offset: StartOffset::Beginning,
                })
                .collect()),
            StartPosition::Latest => partitions
                .iter()
                .map(|&partition| {
                    Ok(PartitionStart {
                        partition,
                        offset: self.high_watermark(topic, partition)?,
                    })
                })
                .collect(),
            StartPosition::Timestamp(ms) => {
                let mut tpl = TopicPartitionList::new();
                for &p in partitions {
                    tpl.add_partition_offset(topic, p, Offset::Offset(ms))
                        .map_err(|e| ConnectorError::Kafka(e.to_string()))?;
                }
                let found = self
                    .consumer
                    .offsets_for_times(tpl, self.timeout)
                    .map_err(|e| {
                        ConnectorError::Kafka(format!(
                            "looking up offsets for timestamp {ms} in `{topic}`: {e}"
                        ))
                    })?;
                partitions
                    .iter()
                    .map(|&partition| {
                        let offset = match found.find_partition(topic, partition).map(|e| e.offset()) {
                            Some(Offset::Offset(o)) => StartOffset::Offset(o),
                            Some(Offset::End) | None => self.high_watermark(topic, partition)?,
                            Some(Offset::Beginning) => StartOffset::Beginning,
                            Some(other) => {
                                return Err(ConnectorError::Kafka(format!(
                                    "partition {partition} of `{topic}` has no offset for timestamp {ms} ({other:?})"
                                )));
                            }
                        };
                        Ok(PartitionStart { partition, offset })
                    })
                    .collect()
            }
        }
    }

    /// The offset the next record of a partition will get.
    fn high_watermark(&self, topic: &str, partition: i32) -> Result<StartOffset, ConnectorError> {
        let (_, high) = self.watermarks(topic, partition)?;
        Ok(StartOffset::Offset(high))
    }

    /// The earliest offset still in a partition, and the offset its next record will get.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), ConnectorError> {
        self.consumer
            .fetch_watermarks(topic, partition, self.timeout)
            .map_err(|e| {
                ConnectorError::Kafka(format!(
                    "looking up the offsets of partition {partition} of `{topic}`: {e}"
                ))
            })
    }
}
