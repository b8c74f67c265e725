//! The Kafka source reader of one subtask: reads its assigned partitions from explicit
//! offsets, takes partitions handed over while running, decodes each partition's records as a
//! batch, applies the bad-record policy, and publishes its position and lag per partition.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use kappa_runtime::TaskError;
use kappa_runtime::io::{SourceReader, SourceStatus, SplitBatch, SplitPosition};
use kappa_runtime::metrics::{PartitionProgress, SubtaskMetrics};
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use kappa_job::kafka::KafkaConnection;

use super::{PartitionStart, StartOffset, client_config};
use crate::bad_records::BadRecordPolicy;
use crate::json::JsonDecoder;

/// Records taken from librdkafka per poll at most.
const MAX_RECORDS_PER_POLL: usize = 8192;

/// Keeps the high watermarks librdkafka reports in its statistics (taken from fetch responses).
#[derive(Clone, Default)]
struct HighWatermarks {
    topic: String,
    by_partition: Arc<Mutex<HashMap<i32, i64>>>,
}

impl ClientContext for HighWatermarks {
    fn stats(&self, statistics: Statistics) {
        if let Some(t) = statistics.topics.get(&self.topic) {
            let mut map = self.by_partition.lock();
            for (id, p) in &t.partitions {
                if *id >= 0 && p.hi_offset >= 0 {
                    map.insert(*id, p.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for HighWatermarks {}

/// Reads the partitions assigned to one source subtask.
pub struct KafkaReader {
    consumer: BaseConsumer<HighWatermarks>,
    high: HighWatermarks,
    topic: String,
    /// Partition id → split index, in the order the partitions were assigned.
    split_of: HashMap<i32, usize>,
    /// Per split: (partition, next offset to read if known).
    positions: Vec<(i32, Option<i64>)>,
    /// Partitions handed over while running.
    new_splits: Option<Receiver<Vec<PartitionStart>>>,
    decoder: JsonDecoder,
    policy: BadRecordPolicy,
    metrics: Arc<SubtaskMetrics>,
    errors_logged: u64,
}

/// Where the reader connects and what it reads.
pub struct KafkaReaderConfig<'a> {
    pub connection: &'a KafkaConnection,
    pub topic: &'a str,
    /// Only names the client: offsets are explicit, never committed.
    pub group: &'a str,
    pub partitions: &'a [PartitionStart],
    pub new_splits: Option<Receiver<Vec<PartitionStart>>>,
}

impl KafkaReader {
    /// Connects and assigns the partitions (split i = partitions[i]).
    pub fn new(
        cfg: KafkaReaderConfig<'_>,
        decoder: JsonDecoder,
        policy: BadRecordPolicy,
        metrics: Arc<SubtaskMetrics>,
    ) -> Result<Self, TaskError> {
        let high = HighWatermarks {
            topic: cfg.topic.to_string(),
            by_partition: Arc::default(),
        };
        let consumer: BaseConsumer<HighWatermarks> = client_config(cfg.connection)?
            .set("group.id", cfg.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "1000")
            .create_with_context(high.clone())
            .map_err(|e| {
                TaskError::Io(format!(
                    "creating a Kafka consumer for {}: {e}",
                    cfg.connection.bootstrap_servers
                ))
            })?;
        let mut reader = Self {
            consumer,
            high,
            topic: cfg.topic.to_string(),
            split_of: HashMap::new(),
            positions: Vec::new(),
            new_splits: cfg.new_splits,
            decoder,
            policy,
            metrics,
            errors_logged: 0,
        };
        reader.assign(cfg.partitions, false)?;
        Ok(reader)
    }

    /// Starts reading `partitions` too (incrementally when already reading others).
    fn assign(
        &mut self,
        partitions: &[PartitionStart],
        incremental: bool,
    ) -> Result<(), TaskError> {
        let topic = self.topic.clone();
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            if self.split_of.contains_key(&p.partition) {
                continue;
            }
            let (offset, position) = match p.offset {
                StartOffset::Beginning => (Offset::Beginning, None),
                StartOffset::Offset(o) => (Offset::Offset(o), Some(o)),
            };
            tpl.add_partition_offset(&topic, p.partition, offset)
                .map_err(|e| {
                    TaskError::Io(format!(
                        "assigning partition {} of `{topic}`: {e}",
                        p.partition
                    ))
                })?;
            self.split_of.insert(p.partition, self.positions.len());
            self.positions.push((p.partition, position));
        }
        let r = if incremental {
            self.consumer.incremental_assign(&tpl)
        } else {
            self.consumer.assign(&tpl)
        };
        r.map_err(|e| TaskError::Io(format!("assigning partitions of `{topic}`: {e}")))?;
        if incremental && tpl.count() > 0 {
            tracing::info!(topic = %topic, partitions = tpl.count(), "reading newly assigned partitions");
        }
        self.publish_progress();
        Ok(())
    }

    fn publish_progress(&self) {
        let high = self.high.by_partition.lock();
        let progress = self
            .positions
            .iter()
            .map(|&(partition, position)| {
                let high_watermark = high.get(&partition).copied();
                // Before the first record from the beginning, the position is the log start: 0
                // unless retention removed records (then the lag is overstated until one arrives).
                PartitionProgress {
                    partition,
                    position: position.unwrap_or(0),
                    high_watermark,
                }
            })
            .collect();
        *self.metrics.partitions.lock() = progress;
    }
}

impl SourceReader for KafkaReader {
    fn positions(&self) -> Vec<SplitPosition> {
        self.positions
            .iter()
            .map(|&(partition, next_offset)| SplitPosition::Partition {
                partition,
                next_offset,
            })
            .collect()
    }

    fn splits(&self) -> usize {
        self.positions.len()
    }

    fn poll(
        &mut self,
        out: &mut Vec<SplitBatch>,
        _finished: &mut Vec<usize>,
        timeout: Duration,
    ) -> Result<SourceStatus, TaskError> {
        if let Some(rx) = &self.new_splits {
            let added: Vec<PartitionStart> = rx.try_iter().flatten().collect();
            if !added.is_empty() {
                self.assign(&added, true)?;
            }
        }
        let deadline = Instant::now() + timeout;
        let mut by_split: Vec<Vec<BorrowedMessage<'_>>> =
            (0..self.positions.len()).map(|_| Vec::new()).collect();
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
            let Some(last) = msgs.last() else { continue };
            self.positions[split].1 = Some(last.offset() + 1);
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
        drop(by_split);
        self.publish_progress();
        Ok(SourceStatus::Running)
    }
}
