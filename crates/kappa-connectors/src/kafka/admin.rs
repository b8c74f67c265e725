//! Topic metadata for the jobmanager: the partitions of a source topic and the offsets a
//! start position (earliest, latest, timestamp) means on each.

use std::collections::BTreeMap;
use std::time::Duration;

use kappa_job::StartPosition;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{PartitionStart, StartOffset, client_config};
use crate::ConnectorError;

/// A metadata-only client of one cluster.
pub struct TopicAdmin {
    consumer: BaseConsumer,
    bootstrap_servers: String,
    timeout: Duration,
}

impl TopicAdmin {
    pub fn new(
        bootstrap_servers: &str,
        properties: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<Self, ConnectorError> {
        let consumer = client_config(bootstrap_servers, properties)
            .set("group.id", "kappa-metadata")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| {
                ConnectorError::Kafka(format!("creating a client for {bootstrap_servers}: {e}"))
            })?;
        Ok(Self {
            consumer,
            bootstrap_servers: bootstrap_servers.to_string(),
            timeout,
        })
    }

    /// The partition ids of `topic`, sorted; an error if the cluster or the topic is not there.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, ConnectorError> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|e| {
                ConnectorError::Kafka(format!(
                    "cannot reach Kafka at {} (topic `{topic}`): {e}",
                    self.bootstrap_servers
                ))
            })?;
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
        let (_, high) = self
            .consumer
            .fetch_watermarks(topic, partition, self.timeout)
            .map_err(|e| {
                ConnectorError::Kafka(format!(
                    "looking up the end of partition {partition} of `{topic}`: {e}"
                ))
            })?;
        Ok(StartOffset::Offset(high))
    }
}
