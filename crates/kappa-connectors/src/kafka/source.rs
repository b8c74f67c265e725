//! The Kafka source reader of one subtask: reads its assigned partitions from explicit
//! offsets, takes partitions handed over while running, takes messages from librdkafka in
//! batches ([`super::batch`]), decodes each partition's records as a batch straight from
//! librdkafka's buffers ([`super::records`]), applies the bad-record policy, and publishes its
//! position and lag per partition. With a history archive ([`super::history`]), a partition
//! is read from the archive wherever the archive holds the offsets wanted, then from the topic
//! at the offset after the archive's last.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use crossbeam_channel::Receiver;
use kappa_job::plan::KafkaMetadata;
use kappa_runtime::TaskError;
use kappa_runtime::io::{SourceReader, SourceStatus, SplitBatch, SplitPosition};
use kappa_runtime::metrics::{PartitionProgress, SubtaskMetrics};
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use kappa_job::kafka::KafkaConnection;

use super::batch::BatchConsumer;
use super::history::phase::{self, Phase, Watermarks};
use super::history::replay::Extras;
use super::history::{History, Read};
use super::records::{Decoding, Polled};
use super::{PartitionStart, StartOffset, client_config};
use crate::bad_records::BadRecordPolicy;
use crate::format::RecordDecoder;

/// How long a lookup of a partition's watermarks may take.
const WATERMARKS_TIMEOUT: Duration = Duration::from_secs(30);

/// Records taken from librdkafka per poll at most.
const MAX_RECORDS_PER_POLL: usize = 8192;
/// The same while the job catches up with its sources (fewer, larger batches).
const MAX_RECORDS_PER_POLL_CATCHING_UP: usize = 65_536;

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

/// The settings of a source's consumer: offsets are explicit and never committed, and only
/// committed transactions are read; `group` only names the client.
pub fn consumer_config(
    connection: &KafkaConnection,
    group: &str,
) -> Result<ClientConfig, TaskError> {
    let mut config = client_config(connection)?;
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "1000");
    Ok(config)
}

/// Reads the partitions assigned to one source subtask.
pub struct KafkaReader {
    consumer: BatchConsumer<HighWatermarks>,
    high: HighWatermarks,
    topic: String,
    /// Partition id → split index, in the order the partitions were assigned.
    split_of: HashMap<i32, usize>,
    /// Per split: (partition, next offset to read if known).
    positions: Vec<(i32, Option<i64>)>,
    /// Partitions handed over while running.
    new_splits: Option<Receiver<Vec<PartitionStart>>>,
    catching_up: Arc<AtomicBool>,
    decoding: Decoding,
    metrics: Arc<SubtaskMetrics>,
    errors_logged: u64,
    /// The topic's archive (`history`) and the splits reading it.
    history: Option<History>,
}

/// Where the reader connects and what it reads.
pub struct KafkaReaderConfig<'a> {
    pub connection: &'a KafkaConnection,
    pub topic: &'a str,
    /// Only names the client: offsets are explicit, never committed.
    pub group: &'a str,
    pub partitions: &'a [PartitionStart],
    pub new_splits: Option<Receiver<Vec<PartitionStart>>>,
    /// Set while the job catches up with its sources.
    pub catching_up: Arc<AtomicBool>,
    /// The source's columns: the decoded ones, then the metadata fields `metadata`.
    pub schema: SchemaRef,
    pub metadata: &'a [KafkaMetadata],
    /// The topic's archive location (`history`).
    pub history: Option<&'a str>,
}

impl KafkaReader {
    /// Connects and assigns the partitions (split i = partitions[i]).
    pub fn new(
        cfg: KafkaReaderConfig<'_>,
        decoder: RecordDecoder,
        policy: BadRecordPolicy,
        metrics: Arc<SubtaskMetrics>,
    ) -> Result<Self, TaskError> {
        let high = HighWatermarks {
            topic: cfg.topic.to_string(),
            by_partition: Arc::default(),
        };
        let creating = |e: &dyn std::fmt::Display| {
            TaskError::Io(format!(
                "creating a Kafka consumer for {}: {e}",
                cfg.connection.bootstrap_servers
            ))
        };
        let consumer: BaseConsumer<HighWatermarks> = consumer_config(cfg.connection, cfg.group)?
            .create_with_context(high.clone())
            .map_err(|e| creating(&e))?;
        let consumer = BatchConsumer::new(consumer).map_err(|e| creating(&e))?;
        let metadata = cfg.metadata.to_vec();
        let history = match cfg.history {
            None => None,
            Some(location) => {
                let extras = Extras {
                    timestamps: metadata.contains(&KafkaMetadata::Timestamp),
                    keys: metadata.contains(&KafkaMetadata::Key),
                };
                Some(History::open(location, extras)?)
            }
        };
        let mut reader = Self {
            consumer,
            high,
            topic: cfg.topic.to_string(),
            split_of: HashMap::new(),
            positions: Vec::new(),
            new_splits: cfg.new_splits,
            catching_up: cfg.catching_up,
            decoding: Decoding {
                decoder,
                policy,
                schema: cfg.schema,
                metadata,
                topic: cfg.topic.to_string(),
            },
            metrics,
            errors_logged: 0,
            history,
        };
        reader.assign(cfg.partitions, false)?;
        Ok(reader)
    }

    /// Starts reading `partitions` too (incrementally when already reading others): from the
    /// archive where it holds their offsets ([`phase::start`]), else from the topic.
    fn assign(
        &mut self,
        partitions: &[PartitionStart],
        incremental: bool,
    ) -> Result<(), TaskError> {
        let mut from_topic = Vec::new();
        for p in partitions {
            if self.split_of.contains_key(&p.partition) {
                continue;
            }
            let next = match p.offset {
                StartOffset::Beginning => None,
                StartOffset::Offset(o) => Some(o),
            };
            let split = self.positions.len();
            self.split_of.insert(p.partition, split);
            self.positions.push((p.partition, next));
            let start = match &self.history {
                None => Phase::Topic(next),
                Some(h) => {
                    let held = h.held(p.partition);
                    let topic = self.watermarks(p.partition)?;
                    phase::start(p.partition, next, held, topic).map_err(|g| self.gap(&g))?
                }
            };
            match (start, &mut self.history) {
                (Phase::Archive { from }, Some(h)) => {
                    tracing::info!(topic = %self.topic, partition = p.partition, from = ?from, "reading the partition's history from the archive");
                    h.begin(split, p.partition, from);
                }
                (Phase::Topic(at), _) | (Phase::Archive { from: at }, None) => {
                    from_topic.push((p.partition, at));
                }
            }
        }
        self.read_topic(&from_topic, incremental)
    }

    /// A gap between the archive and the topic, as the task reports it (a restart cannot
    /// fill it).
    fn gap(&self, gap: &phase::Gap) -> TaskError {
        TaskError::Data(format!("reading `{}` with its history: {gap}", self.topic))
    }

    /// The topic's watermarks of `partition`, asked of the broker; the high one also counts
    /// as the lag's end until the fetch statistics report one.
    fn watermarks(&self, partition: i32) -> Result<Watermarks, TaskError> {
        let (low, high) = self
            .consumer
            .consumer()
            .fetch_watermarks(&self.topic, partition, WATERMARKS_TIMEOUT)
            .map_err(|e| {
                TaskError::Io(format!(
                    "looking up the offsets of partition {partition} of `{}`: {e}",
                    self.topic
                ))
            })?;
        self.high
            .by_partition
            .lock()
            .entry(partition)
            .or_insert(high);
        Ok(Watermarks { low, high })
    }

    /// Reads `partitions` from the topic at their offsets (none: the beginning).
    fn read_topic(
        &mut self,
        partitions: &[(i32, Option<i64>)],
        incremental: bool,
    ) -> Result<(), TaskError> {
        let topic = self.topic.clone();
        let mut tpl = TopicPartitionList::new();
        for &(partition, at) in partitions {
            let offset = at.map_or(Offset::Beginning, Offset::Offset);
            let assigning = |e: &dyn std::fmt::Display| {
                TaskError::Io(format!("assigning partition {partition} of `{topic}`: {e}"))
            };
            tpl.add_partition_offset(&topic, partition, offset)
                .map_err(|e| assigning(&e))?;
            // Before the assignment, so its messages never reach the consumer's own queue.
            self.consumer
                .attach(&topic, partition)
                .map_err(|e| assigning(&e))?;
        }
        if incremental && tpl.count() == 0 {
            self.publish_progress();
            return Ok(());
        }
        let consumer = self.consumer.consumer();
        let r = if incremental {
            consumer.incremental_assign(&tpl)
        } else {
            consumer.assign(&tpl)
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

    /// Serves the consumer's own queue: statistics (high watermarks), errors and logs. No
    /// message arrives there: every partition's go to the batch queue.
    fn serve_events(&mut self) -> Result<(), TaskError> {
        loop {
            match self.consumer.consumer().poll(Duration::ZERO) {
                None => return Ok(()),
                Some(Err(e)) => log_error(&mut self.errors_logged, &self.topic, &e),
                Some(Ok(m)) => {
                    return Err(TaskError::Io(format!(
                        "a message of partition {} of `{}` (offset {}) bypassed the batch queue",
                        m.partition(),
                        self.topic,
                        m.offset()
                    )));
                }
            }
        }
    }
}

impl KafkaReader {
    /// Reads the next records of the partitions still in the archive; those whose archive
    /// ended go on in the topic at the offset after their last archived record.
    fn poll_archive(&mut self, out: &mut Vec<SplitBatch>, most: usize) -> Result<(), TaskError> {
        let Some(history) = &mut self.history else {
            return Ok(());
        };
        let Read { records, ended } = history.read(most)?;
        for (split, partition, archived) in records {
            let records = Polled {
                values: archived
                    .values
                    .iter()
                    .map(Option::unwrap_or_default)
                    .collect(),
                offsets: archived.offsets.values().to_vec(),
                timestamps: archived.timestamps.unwrap_or_default(),
                keys: archived
                    .keys
                    .as_ref()
                    .map_or_else(Vec::new, |k| k.iter().collect()),
            };
            if let Some(&last) = records.offsets.last() {
                self.positions[split].1 = Some(last + 1);
            }
            if let Some(batch) = self.decoding.decode(partition, &records, true)? {
                out.push(SplitBatch { split, batch });
            }
        }
        let mut from_topic = Vec::new();
        for (_, partition, next) in ended {
            let at = match next {
                None => None,
                Some(next) => {
                    let held = self.history.as_ref().and_then(|h| h.held(partition));
                    let topic = self.watermarks(partition)?;
                    Some(phase::switch(partition, next, held, topic).map_err(|g| self.gap(&g))?)
                }
            };
            tracing::info!(topic = %self.topic, partition, offset = ?at, "the partition's archive ends: reading on in the topic");
            from_topic.push((partition, at));
        }
        self.read_topic(&from_topic, true)
    }
}

/// Logs the first errors librdkafka reports (it retries by itself); `logged` counts them.
fn log_error(logged: &mut u64, topic: &str, error: &dyn std::fmt::Display) {
    if *logged < 20 {
        *logged += 1;
        tracing::warn!(%topic, %error, "Kafka consumer error (librdkafka retries)");
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
        self.serve_events()?;
        let most = match self.catching_up.load(Ordering::Relaxed) {
            true => MAX_RECORDS_PER_POLL_CATCHING_UP,
            false => MAX_RECORDS_PER_POLL,
        };
        let mut timeout = timeout;
        if self.history.as_ref().is_some_and(History::reading) {
            self.poll_archive(out, most)?;
            // The partitions in the topic are polled without waiting meanwhile.
            timeout = Duration::ZERO;
        }
        let msgs = self
            .consumer
            .consume(timeout, most)
            .map_err(|e| TaskError::Io(format!("reading `{}`: {e}", self.topic)))?;
        // Per split: the records, borrowed from librdkafka's buffers.
        let mut by_split: Vec<Polled<'_>> = (0..self.positions.len())
            .map(|_| Polled::default())
            .collect();
        let timestamps = self.decoding.wants(KafkaMetadata::Timestamp);
        let keys = self.decoding.wants(KafkaMetadata::Key);
        for m in msgs.iter() {
            if let Some(e) = m.error() {
                let e = format!("partition {}: {e}", m.partition());
                log_error(&mut self.errors_logged, &self.topic, &e);
                continue;
            }
            if let Some(&split) = self.split_of.get(&m.partition()) {
                let records = &mut by_split[split];
                records.values.push(m.payload());
                records.offsets.push(m.offset());
                if timestamps {
                    records.timestamps.push(m.timestamp());
                }
                if keys {
                    records.keys.push(m.key());
                }
            }
        }
        for (split, records) in by_split.iter().enumerate() {
            let Some(&last) = records.offsets.last() else {
                continue;
            };
            let partition = self.positions[split].0;
            self.positions[split].1 = Some(last + 1);
            if let Some(batch) = self.decoding.decode(partition, records, false)? {
                out.push(SplitBatch { split, batch });
            }
        }
        drop(by_split);
        drop(msgs);
        self.publish_progress();
        Ok(SourceStatus::Running)
    }
}

#[cfg(test)]
mod tests {
    //! Against librdkafka's in-process mock cluster.
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use kappa_job::spec::OnError;
    use kappa_runtime::metrics::PartitionProgress;
    use std::time::Instant;

    #[test]
    fn batches_split_by_partition_keep_positions_and_the_lag_from_statistics() {
        let cluster = super::super::mock_topic(30, |n| format!("{{\"n\":{n}}}"));
        let b = cluster.bootstrap_servers();
        let metrics: Arc<SubtaskMetrics> = Arc::default();
        let connection = KafkaConnection::plaintext(&b);
        let partitions = [1, 0].map(|partition| PartitionStart {
            partition,
            offset: StartOffset::Offset(5),
        });
        let cfg = KafkaReaderConfig {
            connection: &connection,
            topic: "t",
            group: "g",
            partitions: &partitions,
            new_splits: None,
            catching_up: Arc::default(),
            schema: Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)])),
            metadata: &[],
            history: None,
        };
        let schema = Arc::clone(&cfg.schema);
        let policy = BadRecordPolicy::new(OnError::Fail, None, Arc::clone(&metrics));
        let mut reader = KafkaReader::new(
            cfg,
            crate::json::JsonDecoder::new(schema).into(),
            policy,
            Arc::clone(&metrics),
        )
        .unwrap();
        let mut read: [Vec<i64>; 2] = Default::default();
        let done = |metrics: &SubtaskMetrics, read: &[Vec<i64>; 2]| {
            let lag_known = metrics
                .partitions
                .lock()
                .iter()
                .all(|p| p.high_watermark.is_some());
            read.iter().map(Vec::len).sum::<usize>() == 20 && lag_known
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&metrics, &read) {
            assert!(
                Instant::now() < deadline,
                "{read:?} {:?}",
                metrics.partitions.lock()
            );
            let (mut out, mut fin) = (Vec::new(), Vec::new());
            reader
                .poll(&mut out, &mut fin, Duration::from_millis(200))
                .unwrap();
            for batch in out {
                let n = batch.batch.column(0).as_any();
                let n = n.downcast_ref::<arrow::array::Int64Array>().unwrap();
                read[batch.split].extend(n.values());
            }
        }
        // Split 0 is partition 1 (odd numbers), split 1 partition 0, each from offset 5.
        let odd: Vec<i64> = (5..15).map(|i| 2 * i + 1).collect();
        let even: Vec<i64> = (5..15).map(|i| 2 * i).collect();
        assert_eq!(read, [odd, even]);
        let at = |partition| SplitPosition::Partition {
            partition,
            next_offset: Some(15),
        };
        assert_eq!(reader.positions(), vec![at(1), at(0)]);
        let progress = metrics.partitions.lock().clone();
        let expected = [1, 0].map(|partition| PartitionProgress {
            partition,
            position: 15,
            high_watermark: Some(15),
        });
        assert_eq!(progress, expected);
    }
}
