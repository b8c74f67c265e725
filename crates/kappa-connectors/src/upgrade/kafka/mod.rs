//! The Kafka side of an upgrade. The shadow topic gets the live topic's partitions (and
//! cleanup policy). The diff reads a topic's committed records to its end and keeps the latest
//! value per key. The cut-over writes the corrections (v2's value of each key that differs, a
//! tombstone for each key v2 no longer has) into the live topic in one transaction, each at
//! the partition v2's sink writes its key to, together with the commit markers of the shadow
//! job's writers on the live topic: a job restored from the shadow job's savepoint then does
//! not commit those epochs again there.

use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::Duration;

use kappa_job::kafka::KafkaConnection;
use kappa_runtime::TaskError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

mod read;

pub use read::{FirstRecord, Latest, first_records, latest_per_key};

use super::UpgradeSinkError;
use crate::kafka::client_config;
use crate::kafka::sink::TopicProducer;
use crate::kafka::transactional::{MARKER_PARTITION, committed, marker_group};

/// The topic settings the shadow topic takes over from the live one, when the broker says.
const COPIED_CONFIGS: &[&str] = &["cleanup.policy"];

/// The error of a Kafka request that failed while doing `what`.
fn failed(
    what: &str,
    connection: &KafkaConnection,
) -> impl Fn(KafkaError) -> UpgradeSinkError + use<> {
    let (what, servers) = (what.to_string(), connection.bootstrap_servers.clone());
    move |source| UpgradeSinkError::Kafka {
        what: what.clone(),
        servers: servers.clone(),
        source: Box::new(source),
    }
}

/// Wakes the thread that waits in [`block_on`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Waits on this thread for an admin request: librdkafka's admin client completes its futures
/// from a polling thread of its own, so no async runtime is needed.
fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut context) {
            return out;
        }
        std::thread::park();
    }
}

/// An admin client of the cluster (topic metadata, configurations, creation, deletion).
fn admin(
    connection: &KafkaConnection,
    what: &str,
) -> Result<AdminClient<DefaultClientContext>, UpgradeSinkError> {
    client_config(connection)?
        // An admin client is a producer to librdkafka, whose metadata requests would create
        // a missing live topic.
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(failed(what, connection))
}

/// Admin requests, and the operations they start on the brokers, wait up to `timeout`.
fn options(timeout: Duration) -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout))
}

/// A topic's partition ids and replication factor (0: the broker did not say).
struct Layout {
    partitions: Vec<i32>,
    replication: usize,
}

/// The layout of `topic`; [`UpgradeSinkError::NoTopic`] if the cluster does not have it.
fn layout<C: ClientContext>(
    client: &Client<C>,
    connection: &KafkaConnection,
    topic: &str,
    timeout: Duration,
) -> Result<Layout, UpgradeSinkError> {
    let what = format!("looking up topic `{topic}`");
    let fail = failed(&what, connection);
    let missing = || UpgradeSinkError::NoTopic {
        topic: topic.to_string(),
        servers: connection.bootstrap_servers.clone(),
    };
    let metadata = client.fetch_metadata(Some(topic), timeout).map_err(&fail)?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    let Some(found) = found else {
        return Err(missing());
    };
    match found.error().map(RDKafkaErrorCode::from) {
        None => {}
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            return Err(missing());
        }
        Some(code) => return Err(fail(KafkaError::MetadataFetch(code))),
    }
    let partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if partitions.is_empty() {
        return Err(missing());
    }
    let replication = found.partitions().first().map_or(0, |p| p.replicas().len());
    Ok(Layout {
        partitions,
        replication,
    })
}

/// The settings of [`COPIED_CONFIGS`] `topic` has; none when the broker does not describe
/// topic configurations.
fn copied_configs(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    options: &AdminOptions,
) -> Vec<(String, String)> {
    let described = block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], options));
    let resource = match described.map(|r| r.into_iter().next()) {
        Ok(Some(Ok(resource))) => resource,
        other => {
            let why = match other {
                Err(e) => e.to_string(),
                Ok(Some(Err(code))) => code.to_string(),
                Ok(_) => "no answer".to_string(),
            };
            tracing::warn!(topic, %why, "the broker did not describe the topic's configuration: the shadow topic gets the broker's defaults");
            return Vec::new();
        }
    };
    COPIED_CONFIGS
        .iter()
        .filter_map(|&name| {
            let value = resource.get(name)?.value.clone()?;
            Some((name.to_string(), value))
        })
        .collect()
}

/// Creates topic `shadow` with the partition count, replication factor and cleanup policy of
/// topic `live`; a `shadow` that exists already is left as it is.
pub fn create_shadow_topic(
    connection: &KafkaConnection,
    live: &str,
    shadow: &str,
    timeout: Duration,
) -> Result<(), UpgradeSinkError> {
    let what = format!("creating the shadow topic `{shadow}` like `{live}`");
    let admin = admin(connection, &what)?;
    let layout = layout(admin.inner(), connection, live, timeout)?;
    let options = options(timeout);
    let configs = copied_configs(&admin, live, &options);
    // -1: the broker's default.
    let replication = i32::try_from(layout.replication)
        .ok()
        .filter(|&r| r > 0)
        .unwrap_or(-1);
    let partitions = i32::try_from(layout.partitions.len()).unwrap_or(i32::MAX);
    let mut topic = NewTopic::new(shadow, partitions, TopicReplication::Fixed(replication));
    for (name, value) in &configs {
        topic = topic.set(name, value);
    }
    let fail = failed(&what, connection);
    for result in block_on(admin.create_topics([&topic], &options)).map_err(&fail)? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(fail(KafkaError::AdminOp(code))),
        }
    }
    tracing::info!(servers = %connection.bootstrap_servers, live, shadow, partitions, ?configs, "shadow topic ready");
    Ok(())
}

/// A record of the corrections: `value` None is a tombstone; `partition` None lets the
/// sink's partitioner choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub partition: Option<i32>,
}

/// The commit markers of `writers` (exactly-once sink writer ids) on `topic`: (writer's
/// group, the newest checkpoint it committed there), for the writers that committed any.
pub fn committed_markers(
    connection: &KafkaConnection,
    topic: &str,
    writers: &[String],
) -> Result<Vec<(String, i64)>, UpgradeSinkError> {
    let what = format!("reading the commit markers of topic `{topic}`");
    let task = UpgradeSinkError::task(&what);
    let mut out = Vec::new();
    for id in writers {
        let group = marker_group(connection, id).map_err(&task)?;
        let n = committed(&group, topic, id).map_err(&task)?;
        if n > 0 {
            out.push((id.clone(), i64::try_from(n).unwrap_or(i64::MAX)));
        }
    }
    Ok(out)
}

/// Writes `records` to `topic` in one transaction under `transactional_id`, each to its
/// partition or else the one the sink's partitioner gives its key, together
/// with, for each (consumer group, offset) of `markers`, that offset committed for partition 0
/// of `topic` in that group (a writer's commit marker). On any failure the transaction is
/// aborted: a `read_committed` reader sees all of it or nothing.
pub fn write_corrections(
    connection: &KafkaConnection,
    topic: &str,
    transactional_id: &str,
    records: &[Correction],
    markers: &[(String, i64)],
    timeout: Duration,
) -> Result<(), UpgradeSinkError> {
    let what = format!(
        "writing {} corrections to topic `{topic}` as `{transactional_id}`",
        records.len()
    );
    let task = UpgradeSinkError::task(&what);
    let fail = failed(&what, connection);
    let groups = markers
        .iter()
        .map(|(group, offset)| {
            Ok((
                group,
                marker_group(connection, group).map_err(&task)?,
                *offset,
            ))
        })
        .collect::<Result<Vec<_>, UpgradeSinkError>>()?;
    let producer =
        TopicProducer::transactional(connection, topic, transactional_id).map_err(&task)?;
    let p = producer.producer();
    p.begin_transaction().map_err(&fail)?;
    let written = records
        .iter()
        .try_for_each(|c| {
            producer
                .send_payload(Some(&c.key), c.value.as_deref(), None, c.partition)
                .map_err(&task)
        })
        .and_then(|()| {
            groups.iter().try_for_each(|(group, consumer, offset)| {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, MARKER_PARTITION, Offset::Offset(*offset))
                    .map_err(&fail)?;
                let metadata = consumer.group_metadata().ok_or_else(|| {
                    task(TaskError::Io(format!(
                        "consumer group `{group}` has no group metadata"
                    )))
                })?;
                p.send_offsets_to_transaction(&tpl, &metadata, timeout)
                    .map_err(&fail)
            })
        })
        .and_then(|()| p.commit_transaction(timeout).map_err(&fail));
    if let Err(e) = &written {
        if let Err(abort) = p.abort_transaction(timeout) {
            tracing::warn!(topic, transactional_id, error = %abort, "aborting the corrections failed");
        }
        tracing::warn!(topic, transactional_id, error = %e, "the corrections were not written");
    } else {
        tracing::info!(
            topic,
            transactional_id,
            records = records.len(),
            markers = markers.len(),
            "corrections written"
        );
    }
    written
}

/// Deletes `topic`; a topic that is not there is no error.
pub fn delete_topic(
    connection: &KafkaConnection,
    topic: &str,
    timeout: Duration,
) -> Result<(), UpgradeSinkError> {
    let what = format!("deleting topic `{topic}`");
    let admin = admin(connection, &what)?;
    let fail = failed(&what, connection);
    for result in block_on(admin.delete_topics(&[topic], &options(timeout))).map_err(&fail)? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((_, code)) => return Err(fail(KafkaError::AdminOp(code))),
        }
    }
    Ok(())
}
