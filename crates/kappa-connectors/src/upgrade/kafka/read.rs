//! Reading topics for an upgrade: the latest committed value of every key (the diff, the
//! corrections), and the first committed record of each partition (how far back a topic
//! holds its history, how far back a sink's windows go).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kappa_job::kafka::KafkaConnection;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{failed, layout};
use crate::kafka::client_config;
use crate::upgrade::UpgradeSinkError;

/// How long one poll of the consumer waits.
const POLL: Duration = Duration::from_millis(200);

/// The context of a consumer reading to the ends of partitions: librdkafka also reports each
/// end as a global error, which is how the reading stops, not a failure to log.
struct EndsQuietly;

impl ClientContext for EndsQuietly {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end {
            DefaultClientContext.error(error, reason);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndsQuietly {}

/// The latest record of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    /// The partition it is in: a correction of the key goes there, so it supersedes it.
    pub partition: i32,
    pub value: Vec<u8>,
}

/// The first committed record of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstRecord {
    pub partition: i32,
    /// Its Kafka timestamp (create or log-append time), when it has one.
    pub timestamp: Option<i64>,
    pub value: Option<Vec<u8>>,
}

/// Whether a scan goes on reading a partition after a record of it.
enum Next {
    More,
    Enough,
}

/// Reads the committed records (`read_committed`) of every partition of `topic` from the
/// beginning, each to its end or until `each` had enough of it. Fails when no record or
/// partition end arrives for `timeout`.
fn scan(
    connection: &KafkaConnection,
    topic: &str,
    timeout: Duration,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> Next,
) -> Result<(), UpgradeSinkError> {
    let what = format!("reading topic `{topic}`");
    let fail = failed(&what, connection);
    // Partitions are assigned, so the group is never joined; nothing is committed to it.
    let consumer: BaseConsumer<EndsQuietly> = client_config(connection)?
        .set("group.id", "kappa-upgrade-diff")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create_with_context(EndsQuietly)
        .map_err(&fail)?;
    let layout = layout(consumer.client(), connection, topic, timeout)?;
    let mut assignment = TopicPartitionList::new();
    for &p in &layout.partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .map_err(&fail)?;
    }
    consumer.assign(&assignment).map_err(&fail)?;
    let mut done = BTreeSet::new();
    let (mut last_error, mut progress) = (None, Instant::now());
    while done.len() < layout.partitions.len() {
        match consumer.poll(POLL) {
            Some(Ok(m)) => {
                progress = Instant::now();
                if !done.contains(&m.partition()) && matches!(each(&m), Next::Enough) {
                    done.insert(m.partition());
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                progress = Instant::now();
                done.insert(p);
            }
            Some(Err(e)) => {
                tracing::warn!(topic, error = %e, "Kafka consumer error (librdkafka retries)");
                last_error = Some(e);
            }
            None => {}
        }
        if progress.elapsed() > timeout {
            return Err(UpgradeSinkError::Stalled {
                what,
                servers: connection.bootstrap_servers.clone(),
                waited: timeout,
                last: last_error.map(Box::new),
            });
        }
    }
    Ok(())
}

/// The latest record of each key of `topic`: every committed record from the beginning until
/// each partition reported its end, a tombstone removing its key. Records without a key are
/// left out (and counted in a warning).
pub fn latest_per_key(
    connection: &KafkaConnection,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<Vec<u8>, Latest>, UpgradeSinkError> {
    let mut latest = BTreeMap::new();
    let mut keyless = 0u64;
    scan(connection, topic, timeout, |m| {
        match (m.key(), m.payload()) {
            (None, _) => keyless += 1,
            (Some(key), Some(value)) => {
                let record = Latest {
                    partition: m.partition(),
                    value: value.to_vec(),
                };
                latest.insert(key.to_vec(), record);
            }
            (Some(key), None) => {
                latest.remove(key);
            }
        }
        Next::More
    })?;
    if keyless > 0 {
        tracing::warn!(
            topic,
            keyless,
            "records without a key are not part of the diff"
        );
    }
    Ok(latest)
}

/// The first committed record of each partition of `topic` that has one, by partition.
pub fn first_records(
    connection: &KafkaConnection,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<FirstRecord>, UpgradeSinkError> {
    let mut first = Vec::new();
    scan(connection, topic, timeout, |m| {
        first.push(FirstRecord {
            partition: m.partition(),
            timestamp: m.timestamp().to_millis(),
            value: m.payload().map(<[u8]>::to_vec),
        });
        Next::Enough
    })?;
    first.sort_by_key(|f| f.partition);
    Ok(first)
}
