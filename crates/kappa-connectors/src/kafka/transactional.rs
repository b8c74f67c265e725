//! The exactly-once Kafka sink: output between two barriers is kept with the checkpoint and
//! written in one Kafka transaction when that checkpoint completes, with a commit marker.
//!
//! librdkafka cannot resume a transaction another process opened, so a transaction is not
//! left open across a checkpoint. Instead each checkpoint keeps the closed epoch's records
//! (what [`Sink::prepare`] returns). Completing checkpoint n commits, in one transaction under
//! the writer's transactional id: the records of every epoch up to n, and the offset n for
//! the writer's consumer group (`send_offsets_to_transaction`), which marks n as committed.
//! A restarted subtask first fences the writer's zombies (`init_transactions` aborts their open
//! transaction), reads the marker, and commits from the restored checkpoint only the epochs
//! above it. So an epoch is committed once whether the crash came before, during or after its
//! commit; consumers reading with `isolation.level=read_committed` see each result once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arrow::array::{BooleanArray, RecordBatch};
use kappa_job::template::KeyTemplate;
use kappa_runtime::TaskError;
use kappa_runtime::io::{PendingCommit, Sink};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use kappa_job::kafka::KafkaConnection;

use super::client_config;
use super::sink::{TRANSACTION_TIMEOUT, TopicProducer, for_each_record};
use crate::format::RecordEncoder;

/// How long reading a writer's commit marker may take.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long aborting a failed transaction may take.
const ABORT_TIMEOUT: Duration = Duration::from_secs(2);
/// The sink topic's partition the commit marker is recorded for.
pub(crate) const MARKER_PARTITION: i32 = 0;

/// Where the sink writes and how it connects.
#[derive(Debug, Clone)]
pub struct KafkaTarget {
    pub connection: KafkaConnection,
    pub topic: String,
}

/// Records of closed epochs in the byte layout kept in checkpoints: per record the partition
/// (-1: by key), the key and the value (length u32::MAX: none, a tombstone's value), lengths
/// little-endian.
#[derive(Debug, Default)]
struct Epoch(Vec<u8>);

impl Epoch {
    fn push(&mut self, partition: Option<i32>, key: Option<&[u8]>, value: Option<&[u8]>) {
        self.0
            .extend_from_slice(&partition.unwrap_or(-1).to_le_bytes());
        self.bytes(key);
        self.bytes(value);
    }

    /// Some bytes with their length first, or u32::MAX for none.
    fn bytes(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
                self.0.extend_from_slice(b);
            }
            None => self.0.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
}

/// One record read back from an epoch.
struct Record<'a> {
    partition: Option<i32>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

/// Bytes with their length first, as [`Epoch::bytes`] wrote them.
fn take_bytes<'a>(data: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    match take_u32(data)? {
        u32::MAX => Some(None),
        n => take(data, n as usize).map(Some),
    }
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = data.split_at_checked(n)?;
    *data = rest;
    Some(head)
}

fn take_u32(data: &mut &[u8]) -> Option<u32> {
    take(data, 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
}

/// Decodes an epoch; None if the bytes are not in the layout (a corrupt checkpoint).
fn records(mut data: &[u8]) -> Option<Vec<Record<'_>>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let partition = take_u32(&mut data)? as i32;
        let key = take_bytes(&mut data)?;
        let value = take_bytes(&mut data)?;
        out.push(Record {
            partition: (partition >= 0).then_some(partition),
            key,
            value,
        });
    }
    Some(out)
}

/// The consumer group of writer `id`, which holds its commit marker.
pub(crate) fn marker_group(
    connection: &KafkaConnection,
    id: &str,
) -> Result<BaseConsumer, TaskError> {
    client_config(connection)?
        .set("group.id", id)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| TaskError::Io(format!("opening the commit marker of `{id}`: {e}")))
}

/// The newest checkpoint whose output writer `id` committed to `topic` (0: none yet).
pub(crate) fn committed(group: &BaseConsumer, topic: &str, id: &str) -> Result<u64, TaskError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, MARKER_PARTITION);
    let got = group.committed_offsets(tpl, MARKER_TIMEOUT).map_err(|e| {
        TaskError::Io(format!(
            "reading the commit marker of `{id}` on topic `{topic}`: {e}"
        ))
    })?;
    let marker = got
        .find_partition(topic, MARKER_PARTITION)
        .map(|e| e.offset());
    Ok(match marker {
        Some(Offset::Offset(n)) if n > 0 => n as u64,
        _ => 0,
    })
}

/// A transactional producer of one writer and the consumer group holding its commit marker.
struct Writer {
    id: String,
    producer: TopicProducer,
    group: BaseConsumer,
}

impl Writer {
    /// Opens the writer, fencing its earlier incarnations.
    fn open(target: &KafkaTarget, id: &str, group: BaseConsumer) -> Result<Self, TaskError> {
        let producer = TopicProducer::transactional(&target.connection, &target.topic, id)?;
        Ok(Self {
            id: id.to_string(),
            producer,
            group,
        })
    }

    fn io(&self, what: &str, e: impl std::fmt::Display) -> TaskError {
        TaskError::Io(format!(
            "{what} of `{}` on topic `{}`: {e}",
            self.id,
            self.producer.topic()
        ))
    }

    /// Writes `epochs` in one transaction that also moves the commit marker to `marker`.
    fn commit<'a>(
        &self,
        epochs: impl IntoIterator<Item = &'a [u8]>,
        marker: u64,
    ) -> Result<(), TaskError> {
        let mut all = Vec::new();
        for data in epochs {
            let Some(records) = records(data) else {
                return Err(TaskError::Data(format!(
                    "output of `{}` kept in the checkpoint is corrupt",
                    self.id
                )));
            };
            all.extend(records);
        }
        tracing::debug!(writer = %self.id, marker, records = all.len(), "committing sink output");
        let p = self.producer.producer();
        p.begin_transaction()
            .map_err(|e| self.io("beginning a transaction", e))?;
        match self.write_and_mark(&all, marker) {
            Ok(()) => {
                p.commit_transaction(TRANSACTION_TIMEOUT)
                    .map_err(|e| self.io("committing a transaction", e))?;
                tracing::debug!(writer = %self.id, marker, "committed sink output");
                Ok(())
            }
            Err(e) => {
                // A fenced producer cannot abort: do not wait long for it.
                let _ = p.abort_transaction(ABORT_TIMEOUT);
                Err(e)
            }
        }
    }

    fn write_and_mark(&self, records: &[Record<'_>], marker: u64) -> Result<(), TaskError> {
        for r in records {
            self.producer
                .send_payload(r.key, r.value, None, r.partition)?;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            self.producer.topic(),
            MARKER_PARTITION,
            Offset::Offset(marker as i64),
        )
        .map_err(|e| self.io("recording the commit marker", e))?;
        let Some(meta) = self.group.group_metadata() else {
            return Err(self.io("recording the commit marker", "no group metadata"));
        };
        self.producer
            .producer()
            .send_offsets_to_transaction(&tpl, &meta, TRANSACTION_TIMEOUT)
            .map_err(|e| self.io("recording the commit marker", e))
    }
}

/// Writes result batches as described in the module documentation.
pub struct TransactionalKafkaSink {
    target: KafkaTarget,
    writer: Writer,
    key: Option<KeyTemplate>,
    partition: Option<i32>,
    encoder: RecordEncoder,
    /// Output since the last barrier.
    open: Epoch,
    /// Closed epochs by checkpoint id, waiting for their checkpoint to complete.
    prepared: BTreeMap<u64, Vec<u8>>,
    /// The newest checkpoint committed.
    committed: u64,
}

impl TransactionalKafkaSink {
    /// Opens writer `writer_id` (fencing its earlier incarnations).
    pub fn open(
        target: KafkaTarget,
        writer_id: &str,
        key: Option<KeyTemplate>,
        partition: Option<i32>,
    ) -> Result<Self, TaskError> {
        let writer = Writer::open(
            &target,
            writer_id,
            marker_group(&target.connection, writer_id)?,
        )?;
        Ok(Self {
            target,
            writer,
            key,
            partition,
            encoder: RecordEncoder::Json,
            open: Epoch::default(),
            prepared: BTreeMap::new(),
            committed: 0,
        })
    }

    /// Writes values in the sink's format (JSON unless set).
    pub fn with_encoder(mut self, encoder: RecordEncoder) -> Self {
        self.encoder = encoder;
        self
    }

    /// Commits what `writer` left of `pending` above its marker. Another job's writer (a
    /// savepoint's) is opened, fencing that job, only when something is left to commit.
    fn recover_writer(&mut self, id: &str, pending: &[PendingCommit]) -> Result<(), TaskError> {
        let own = id == self.writer.id;
        let topic = &self.target.topic;
        let marker = match own {
            true => committed(&self.writer.group, topic, id)?,
            false => committed(&marker_group(&self.target.connection, id)?, topic, id)?,
        };
        let todo: Vec<&PendingCommit> = pending
            .iter()
            .filter(|p| p.writer == id && p.checkpoint > marker)
            .collect();
        if let Some(last) = todo.iter().map(|p| p.checkpoint).max() {
            let other;
            let writer = if own {
                &self.writer
            } else {
                other = Writer::open(&self.target, id, marker_group(&self.target.connection, id)?)?;
                &other
            };
            tracing::info!(
                writer = id,
                marker,
                up_to = last,
                epochs = todo.len(),
                "committing output kept in the restored checkpoint"
            );
            writer.commit(todo.iter().map(|p| p.data.as_slice()), last)?;
        }
        if own {
            self.committed = self
                .committed
                .max(marker)
                .max(todo.iter().map(|p| p.checkpoint).max().unwrap_or(0));
        }
        Ok(())
    }
}

impl Sink for TransactionalKafkaSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        let (open, partition) = (&mut self.open, self.partition);
        for_each_record(
            &mut self.encoder,
            batch,
            None,
            self.key.as_ref(),
            |key, value| {
                open.push(partition, key, value);
                Ok(())
            },
        )
    }

    fn write_changes(
        &mut self,
        batch: &RecordBatch,
        deletes: &BooleanArray,
    ) -> Result<(), TaskError> {
        let (open, partition) = (&mut self.open, self.partition);
        let key = self.key.as_ref();
        for_each_record(
            &mut self.encoder,
            batch,
            Some(deletes),
            key,
            |key, value| {
                open.push(partition, key, value);
                Ok(())
            },
        )
    }

    fn prepare(&mut self, n: u64) -> Result<Option<Vec<u8>>, TaskError> {
        let data = std::mem::take(&mut self.open).0;
        if data.is_empty() {
            return Ok(None);
        }
        self.prepared.insert(n, data.clone());
        Ok(Some(data))
    }

    fn commit(&mut self, n: u64) -> Result<(), TaskError> {
        if n <= self.committed {
            return Ok(());
        }
        let later = self.prepared.split_off(&(n + 1));
        let due = std::mem::replace(&mut self.prepared, later);
        self.writer.commit(due.values().map(Vec::as_slice), n)?;
        self.committed = n;
        Ok(())
    }

    fn recover(&mut self, pending: Vec<PendingCommit>) -> Result<(), TaskError> {
        let writers: BTreeSet<String> = pending.iter().map(|p| p.writer.clone()).collect();
        for id in writers {
            self.recover_writer(&id, &pending)?;
        }
        Ok(())
    }

    fn writer(&self) -> String {
        self.writer.id.clone()
    }

    /// The input ended: commit everything, including output after the last barrier.
    fn flush(&mut self) -> Result<(), TaskError> {
        let open = std::mem::take(&mut self.open).0;
        let prepared = std::mem::take(&mut self.prepared);
        if open.is_empty() && prepared.is_empty() {
            return Ok(());
        }
        let marker = prepared.keys().max().copied().unwrap_or(self.committed);
        self.writer.commit(
            prepared
                .values()
                .map(Vec::as_slice)
                .chain(std::iter::once(open.as_slice())),
            marker,
        )?;
        self.committed = marker;
        Ok(())
    }

    fn check(&mut self) -> Result<(), TaskError> {
        self.writer.producer.poll()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_read_back_what_was_written() {
        let mut e = Epoch::default();
        e.push(Some(3), Some(b"k1"), Some(b"{\"a\":1}"));
        e.push(None, None, Some(b""));
        e.push(None, Some(b""), Some(b"v"));
        e.push(Some(1), Some(b"gone"), None);
        let r = records(&e.0).expect("well-formed");
        assert_eq!(r.len(), 4);
        assert_eq!(
            (r[0].partition, r[0].key, r[0].value),
            (Some(3), Some(&b"k1"[..]), Some(&b"{\"a\":1}"[..]))
        );
        assert_eq!(
            (r[1].partition, r[1].key, r[1].value),
            (None, None, Some(&b""[..]))
        );
        assert_eq!((r[2].key, r[2].value), (Some(&b""[..]), Some(&b"v"[..])));
        assert_eq!(
            (r[3].partition, r[3].key, r[3].value),
            (Some(1), Some(&b"gone"[..]), None),
            "a tombstone has no value"
        );
        assert!(
            records(&e.0[..e.0.len() - 1]).is_none(),
            "a truncated epoch is refused"
        );
    }
}
