//! The Kafka source reader of one subtask: reads its assigned partitions from explicit
//! offsets, decodes each partition's records as a batch, applies the bad-record policy.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kappa_runtime::TaskError;
use kappa_runtime::io::{SourceReader, SourceStatus, SplitBatch};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{PartitionStart, StartOffset, client_config};
use crate::bad_records::BadRecordPolicy;
use crate::json::JsonDecoder;

/// Records taken from librdkafka per poll at most.
const MAX_RECORDS_PER_POLL: usize = 16384;

/// Reads the partitions assigned to one source subtask.
pub struct KafkaReader {
    consumer: BaseConsumer,
    topic: String,
    split_of: HashMap<i32, usize>,
    decoder: JsonDecoder,
    policy: BadRecordPolicy,
    errors_logged: u64,
}

impl KafkaReader {
    /// Connects and assigns `partitions` (split i = partitions[i]); `group` only names the client.
    pub fn new(
        bootstrap_servers: &str,
        properties: &BTreeMap<String, String>,
        topic: &str,
        group: &str,
        partitions: &[PartitionStart],
        decoder: JsonDecoder,
        policy: BadRecordPolicy,
    ) -> Result<Self, TaskError> {
        let consumer: BaseConsumer = client_config(bootstrap_servers, properties)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| {
                TaskError::Io(format!(
                    "creating a Kafka consumer for {bootstrap_servers}: {e}"
                ))
            })?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let offset = match p.offset {
                StartOffset::Beginning => Offset::Beginning,
                StartOffset::Offset(o) => Offset::Offset(o),
            };
            tpl.add_partition_offset(topic, p.partition, offset)
                .map_err(|e| {
                    TaskError::Io(format!(
                        "assigning partition {} of `{topic}`: {e}",
                        p.partition
                    ))
                })?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| TaskError::Io(format!("assigning partitions of `{topic}`: {e}")))?;
        Ok(Self {
            consumer,
            topic: topic.to_string(),
            split_of: partitions
                .iter()
                .enumerate()
                .map(|(i, p)| (p.partition, i))
                .collect(),
            decoder,
            policy,
            errors_logged: 0,
        })
    }
}

impl SourceReader for KafkaReader {
    fn splits(&self) -> usize {
        self.split_of.len()
    }

    fn poll(
        &mut self,
        out: &mut Vec<SplitBatch>,
        _finished: &mut Vec<usize>,
        timeout: Duration,
    ) -> Result<SourceStatus, TaskError> {
        let deadline = Instant::now() + timeout;
        let mut by_split: Vec<Vec<BorrowedMessage<'_>>> =
            (0..self.split_of.len()).map(|_| Vec::new()).collect();
        let mut taken = 0;
        while taken < MAX_RECORDS_PER_POLL {
            let wait = if taken == 0 {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => {
                    if let Some(&split) = self.split_of.get(&m.partition()) {
                        by_split[split].push(m);
                        taken += 1;
                    }
                }
                Some(Err(e)) => {
                    if self.errors_logged < 20 {
                        self.errors_logged += 1;
                        tracing::warn!(topic = %self.topic, error = %e, "Kafka consumer error (librdkafka retries)");
                    }
                    if taken == 0 && Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        for (split, msgs) in by_split.iter().enumerate() {
            if msgs.is_empty() {
                continue;
            }
            let payloads: Vec<&[u8]> = msgs
                .iter()
                .map(|m| m.payload().unwrap_or_default())
                .collect();
            let (batch, bad) = self
                .decoder
                .decode(&payloads)
                .map_err(|e| TaskError::Data(e.to_string()))?;
            for b in bad {
                let m = &msgs[b.index];
                let location = format!(
                    "topic `{}` partition {} offset {}",
                    self.topic,
                    m.partition(),
                    m.offset()
                );
                self.policy.handle(&location, payloads[b.index], &b.error)?;
            }
            if batch.num_rows() > 0 {
                out.push(SplitBatch { split, batch });
            }
        }
        Ok(SourceStatus::Running)
    }
}
