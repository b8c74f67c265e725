//! Kafka producers of a subtask: the result sink (JSON value, key from the template) and the
//! dead-letter writer (raw record, error and origin in headers). Delivery failures fail the task.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{BooleanArray, RecordBatch};
use kappa_job::template::KeyTemplate;
use kappa_runtime::TaskError;
use parking_lot::Mutex;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

use kappa_job::kafka::KafkaConnection;

use super::client_config;
use crate::format::RecordEncoder;
use crate::key::render_keys;

/// How long `flush` waits for outstanding deliveries.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a topic lookup may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a transaction step (init, commit) may take.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Remembers the first failed delivery so the task can fail on it.
#[derive(Clone, Default)]
pub struct DeliveryErrors(Arc<Mutex<Option<KafkaError>>>);

impl ClientContext for DeliveryErrors {}

impl ProducerContext for DeliveryErrors {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut first = self.0.lock();
            if first.is_none() {
                *first = Some(e.clone());
            }
        }
    }
}

/// A producer to one topic that waits for room when librdkafka's queue is full.
pub struct TopicProducer {
    producer: BaseProducer<DeliveryErrors>,
    errors: DeliveryErrors,
    topic: String,
}

impl TopicProducer {
    pub fn new(connection: &KafkaConnection, topic: &str) -> Result<Self, TaskError> {
        Self::with_config(
            client_config(connection)?,
            &connection.bootstrap_servers,
            topic,
        )
    }

    /// A producer whose writes are transactions under `transactional_id`; opening it fences
    /// older producers with that id and aborts their open transaction.
    pub fn transactional(
        connection: &KafkaConnection,
        topic: &str,
        transactional_id: &str,
    ) -> Result<Self, TaskError> {
        let bootstrap_servers = &connection.bootstrap_servers;
        let mut config = client_config(connection)?;
        config.set("transactional.id", transactional_id);
        let p = Self::with_config(config, bootstrap_servers, topic)?;
        p.producer
            .init_transactions(TRANSACTION_TIMEOUT)
            .map_err(|e| {
                TaskError::Io(format!(
                    "starting transactions as `{transactional_id}` on {bootstrap_servers}: {e}"
                ))
            })?;
        Ok(p)
    }

    fn with_config(
        mut config: ClientConfig,
        bootstrap_servers: &str,
        topic: &str,
    ) -> Result<Self, TaskError> {
        let errors = DeliveryErrors::default();
        // A short linger unless the job's properties set one.
        if config.get("linger.ms").is_none() && config.get("queue.buffering.max.ms").is_none() {
            config.set("linger.ms", "5");
        }
        let producer = config.create_with_context(errors.clone()).map_err(|e| {
            TaskError::Io(format!(
                "creating a Kafka producer for {bootstrap_servers}: {e}"
            ))
        })?;
        Ok(Self {
            producer,
            errors,
            topic: topic.to_string(),
        })
    }

    fn check(&self) -> Result<(), TaskError> {
        match self.errors.0.lock().take() {
            Some(e) => Err(self.write_error(&e, None)),
            None => Ok(()),
        }
    }

    /// The task error of a failed write of a record of `size` bytes (when known): a record
    /// too large for the producer or the topic fails the same way after any restart.
    fn write_error(&self, e: &KafkaError, size: Option<usize>) -> TaskError {
        let code = e.rdkafka_error_code();
        if matches!(
            code,
            Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge)
        ) {
            let size = size.map_or_else(String::new, |n| format!(" of {n} bytes"));
            return TaskError::Data(format!(
                "a record{size} is too large for topic `{}` ({e}): raise `message.max.bytes` in the connector's properties (librdkafka's default is 1000000) and the topic's `max.message.bytes` on the broker, or write smaller records",
                self.topic
            ));
        }
        TaskError::Io(format!("writing to topic `{}`: {e}", self.topic))
    }

    /// Number of partitions of the topic.
    pub fn partitions(&self) -> Result<u32, TaskError> {
        let md = self
            .producer
            .client()
            .fetch_metadata(Some(&self.topic), METADATA_TIMEOUT)
            .map_err(|e| TaskError::Io(format!("looking up topic `{}`: {e}", self.topic)))?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .map_or(0, |t| t.partitions().len());
        if n == 0 {
            return Err(TaskError::Io(format!(
                "topic `{}` has no partitions (does it exist?)",
                self.topic
            )));
        }
        Ok(n as u32)
    }

    /// Queues one record, to `partition` if given (else by the key's hash).
    pub fn send(
        &self,
        key: Option<&[u8]>,
        value: &[u8],
        headers: Option<OwnedHeaders>,
        partition: Option<i32>,
    ) -> Result<(), TaskError> {
        self.send_payload(key, Some(value), headers, partition)
    }

    /// Like [`TopicProducer::send`]; a record without a value is a tombstone (it deletes its
    /// key from a compacted topic).
    pub fn send_payload(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        partition: Option<i32>,
    ) -> Result<(), TaskError> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic);
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(50));
                    self.check()?;
                }
                Err((e, _)) => {
                    let size = value.map_or(0, <[u8]>::len) + key.map_or(0, <[u8]>::len);
                    return Err(self.write_error(&e, Some(size)));
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        self.check()
    }

    /// Serves delivery reports and fails on the first failed delivery.
    pub fn poll(&self) -> Result<(), TaskError> {
        self.producer.poll(Duration::ZERO);
        self.check()
    }

    /// The librdkafka producer, for transactions.
    pub fn producer(&self) -> &BaseProducer<DeliveryErrors> {
        &self.producer
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Waits until every queued record is acknowledged.
    pub fn flush(&self) -> Result<(), TaskError> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|e| TaskError::Io(format!("flushing topic `{}`: {e}", self.topic)))?;
        self.check()
    }
}

/// Writes result batches: one record per row, JSON value, key rendered from the template.
pub struct KafkaSink {
    producer: TopicProducer,
    key: Option<KeyTemplate>,
    /// Fixed partition of this subtask, or None to partition by key.
    partition: Option<i32>,
    /// At-least-once: wait for every record at a checkpoint barrier.
    flush_at_barrier: bool,
    encoder: RecordEncoder,
}

impl KafkaSink {
    pub fn new(
        producer: TopicProducer,
        key: Option<KeyTemplate>,
        partition: Option<i32>,
        flush_at_barrier: bool,
    ) -> Self {
        Self {
            producer,
            key,
            partition,
            flush_at_barrier,
            encoder: RecordEncoder::Json,
        }
    }

    /// Writes values in the sink's format (JSON unless set).
    pub fn with_encoder(mut self, encoder: RecordEncoder) -> Self {
        self.encoder = encoder;
        self
    }
}

/// Calls `f(key, value)` for each row of `batch`: its value from `encoder` (none, a
/// tombstone, where `deletes` marks the row deleted) and the key rendered from `template`.
pub fn for_each_record(
    encoder: &mut RecordEncoder,
    batch: &RecordBatch,
    deletes: Option<&BooleanArray>,
    template: Option<&KeyTemplate>,
    mut f: impl FnMut(Option<&[u8]>, Option<&[u8]>) -> Result<(), TaskError>,
) -> Result<(), TaskError> {
    let values = encoder
        .encode(batch)
        .map_err(|e| TaskError::Data(e.to_string()))?;
    let keys = match template {
        Some(t) => Some(render_keys(t, batch).map_err(|e| TaskError::Data(e.to_string()))?),
        None => None,
    };
    for (i, v) in values.iter().enumerate() {
        let deleted = deletes.is_some_and(|d| d.value(i));
        let value = (!deleted).then_some(v.as_slice());
        f(keys.as_ref().map(|k| k[i].as_bytes()), value)?;
    }
    Ok(())
}

impl kappa_runtime::io::Sink for KafkaSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        let (producer, partition) = (&self.producer, self.partition);
        for_each_record(
            &mut self.encoder,
            batch,
            None,
            self.key.as_ref(),
            |key, value| producer.send_payload(key, value, None, partition),
        )
    }

    fn write_changes(
        &mut self,
        batch: &RecordBatch,
        deletes: &BooleanArray,
    ) -> Result<(), TaskError> {
        let (producer, partition) = (&self.producer, self.partition);
        let key = self.key.as_ref();
        for_each_record(
            &mut self.encoder,
            batch,
            Some(deletes),
            key,
            |key, value| producer.send_payload(key, value, None, partition),
        )
    }

    fn prepare(&mut self, _: u64) -> Result<Option<Vec<u8>>, TaskError> {
        if self.flush_at_barrier {
            self.producer.flush()?;
        }
        Ok(None)
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        self.producer.flush()
    }

    fn check(&mut self) -> Result<(), TaskError> {
        self.producer.poll()
    }
}

/// Writes records that could not be decoded, with the error and where they came from.
pub struct DeadLetterWriter {
    producer: TopicProducer,
}

impl DeadLetterWriter {
    pub fn new(producer: TopicProducer) -> Self {
        Self { producer }
    }

    pub fn write(&mut self, location: &str, raw: &[u8], error: &str) -> Result<(), TaskError> {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "kappa.error",
                value: Some(error),
            })
            .insert(Header {
                key: "kappa.source",
                value: Some(location),
            });
        self.producer.send(None, raw, Some(headers), None)?;
        // A dead letter must not be lost if the job fails right after: wait for it.
        self.producer.flush()
    }
}
