//! Batch consumption from librdkafka, which rdkafka 0.39 does not wrap. The fetch queues of
//! the assigned partitions are forwarded to a queue of the reader's own, emptied many messages
//! at a time with `rd_kafka_consume_batch_queue`: one call per batch instead of an event, an
//! `Arc` and a poll loop per message (`BaseConsumer::poll`). The consumer's own queue keeps
//! everything else (statistics, errors, logs), still served by `BaseConsumer::poll`.
//!
//! Payloads are borrowed straight from librdkafka's fetch buffers; [`Messages`] borrows the
//! [`BatchConsumer`], so no message outlives the client, and the reader's queue is destroyed
//! before the client is.

use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;

/// Why batch consumption could not be set up or go on.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("librdkafka could not create a message queue")]
    NoQueue,
    #[error("librdkafka has no fetch queue for partition {partition} of `{topic}`")]
    NoPartitionQueue { topic: String, partition: i32 },
    #[error("topic name `{0}` holds a NUL byte")]
    TopicName(String, #[source] std::ffi::NulError),
    #[error("librdkafka failed to consume a batch of messages")]
    Consume(#[source] std::io::Error),
}

/// The reader's own queue, which the assigned partitions' fetch queues forward to.
struct MessageQueue(NonNull<rdsys::rd_kafka_queue_t>);

// SAFETY: librdkafka's queues are thread-safe (every operation takes the queue's lock); the
// handle is only used through `&self` methods that call librdkafka.
unsafe impl Send for MessageQueue {}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        // SAFETY: the pointer came from rd_kafka_queue_new and is destroyed once, here, while
        // the client that owns the queue is still alive (see BatchConsumer's field order).
        unsafe { rdsys::rd_kafka_queue_destroy(self.0.as_ptr()) }
    }
}

/// A consumer whose partitions' messages are taken in batches.
pub struct BatchConsumer<C: ConsumerContext + 'static> {
    // Declared first: dropped (destroyed) before the client it belongs to.
    queue: MessageQueue,
    consumer: BaseConsumer<C>,
}

impl<C: ConsumerContext + 'static> BatchConsumer<C> {
    pub fn new(consumer: BaseConsumer<C>) -> Result<Self, BatchError> {
        // SAFETY: native_ptr is the live client handle of `consumer`.
        let ptr = unsafe { rdsys::rd_kafka_queue_new(consumer.client().native_ptr()) };
        let queue = MessageQueue(NonNull::new(ptr).ok_or(BatchError::NoQueue)?);
        Ok(Self { queue, consumer })
    }

    /// The consumer, to assign partitions and serve its events with `poll`.
    pub fn consumer(&self) -> &BaseConsumer<C> {
        &self.consumer
    }

    /// Sends the messages of `partition` of `topic` to the batch queue. Call it before the
    /// partition is assigned, so no message of it reaches the consumer's own queue.
    pub fn attach(&self, topic: &str, partition: i32) -> Result<(), BatchError> {
        let name = CString::new(topic).map_err(|e| BatchError::TopicName(topic.into(), e))?;
        // SAFETY: the client handle is alive and `name` a NUL-terminated string that outlives
        // the call; librdkafka creates the partition's state if it does not exist yet.
        let pq = unsafe {
            rdsys::rd_kafka_queue_get_partition(
                self.consumer.client().native_ptr(),
                name.as_ptr(),
                partition,
            )
        };
        if pq.is_null() {
            return Err(BatchError::NoPartitionQueue {
                topic: topic.into(),
                partition,
            });
        }
        // SAFETY: both queues are live handles of this client. Forwarding marked as the
        // application's survives the assignment (librdkafka forwards a fetch queue to the
        // consumer's queue only when the application has not). Destroying the partition's
        // handle drops only this reference; the forwarding stays.
        unsafe {
            rdsys::rd_kafka_queue_forward(pq, self.queue.0.as_ptr());
            rdsys::rd_kafka_queue_destroy(pq);
        }
        Ok(())
    }

    /// Takes up to `max` messages: what is queued now, else what arrives within `timeout`
    /// (returning as soon as anything does).
    pub fn consume(&self, timeout: Duration, max: usize) -> Result<Messages<'_>, BatchError> {
        let mut messages = Messages {
            ptrs: Vec::with_capacity(max),
            _consumer: PhantomData,
        };
        self.take(&mut messages, 0, max)?;
        if messages.ptrs.is_empty() && !timeout.is_zero() && max > 0 {
            // librdkafka waits until the batch is full or the timeout passed: wait for one
            // message only, then take whatever came with it.
            let ms = i32::try_from(timeout.as_millis())
                .unwrap_or(i32::MAX)
                .max(1);
            if self.take(&mut messages, ms, 1)? == 1 {
                self.take(&mut messages, 0, max - 1)?;
            }
        }
        Ok(messages)
    }

    /// Appends up to `max` messages to `into`, waiting at most `timeout_ms` for them.
    fn take(
        &self,
        into: &mut Messages<'_>,
        timeout_ms: i32,
        max: usize,
    ) -> Result<usize, BatchError> {
        into.ptrs.reserve(max);
        let start = into.ptrs.len();
        // SAFETY: the queue is a live handle; the array has room for `max` pointers after
        // `start` (reserved above), which librdkafka fills with messages it hands over: each
        // is destroyed by `Messages`' Drop.
        let n = unsafe {
            rdsys::rd_kafka_consume_batch_queue(
                self.queue.0.as_ptr(),
                timeout_ms,
                into.ptrs.as_mut_ptr().add(start),
                max,
            )
        };
        let n =
            usize::try_from(n).map_err(|_| BatchError::Consume(std::io::Error::last_os_error()))?;
        // SAFETY: librdkafka wrote `n` ≤ `max` message pointers into the reserved room.
        unsafe { into.ptrs.set_len(start + n) };
        Ok(n)
    }
}

/// Messages taken in one batch, in queue order (per partition: offset order); destroyed
/// (their fetch buffers released) when dropped.
pub struct Messages<'a> {
    ptrs: Vec<*mut rdsys::rd_kafka_message_t>,
    _consumer: PhantomData<&'a ()>,
}

impl Messages<'_> {
    pub fn len(&self) -> usize {
        self.ptrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ptrs.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Fetched<'_>> {
        // SAFETY: every pointer is a message librdkafka handed over and not yet destroyed
        // (that happens only in Drop, which the borrow of `self` rules out meanwhile).
        self.ptrs.iter().map(|&p| Fetched(unsafe { &*p }))
    }
}

impl Drop for Messages<'_> {
    fn drop(&mut self) {
        for &p in &self.ptrs {
            // SAFETY: each message is destroyed once, here; none is borrowed any more.
            unsafe { rdsys::rd_kafka_message_destroy(p) }
        }
    }
}

/// One message of a batch: a record, or an error librdkafka reports for its partition.
pub struct Fetched<'a>(&'a rdsys::rd_kafka_message_t);

impl<'a> Fetched<'a> {
    pub fn partition(&self) -> i32 {
        self.0.partition
    }

    pub fn offset(&self) -> i64 {
        self.0.offset
    }

    /// The error librdkafka reports instead of a record, if it does.
    pub fn error(&self) -> Option<RDKafkaErrorCode> {
        match self.0.err {
            rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => None,
            e => Some(e.into()),
        }
    }

    /// The value, borrowed from librdkafka's fetch buffer (empty for a null value).
    pub fn payload(&self) -> &'a [u8] {
        if self.0.payload.is_null() || self.0.len == 0 {
            return &[];
        }
        // SAFETY: librdkafka guarantees `len` readable bytes at `payload` for the message's
        // life, which outlasts 'a (the borrow of the Messages that destroys it).
        unsafe { std::slice::from_raw_parts(self.0.payload.cast::<u8>(), self.0.len) }
    }

    /// The key, borrowed from librdkafka's fetch buffer (none for a null key).
    pub fn key(&self) -> Option<&'a [u8]> {
        if self.0.key.is_null() {
            return None;
        }
        // SAFETY: as for the payload: `key_len` readable bytes at `key` for the message's life.
        Some(unsafe { std::slice::from_raw_parts(self.0.key.cast::<u8>(), self.0.key_len) })
    }

    /// The record's timestamp in milliseconds since the epoch, if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is valid for the borrow; librdkafka only reads it and writes
        // the timestamp's kind.
        let ms = unsafe { rdsys::rd_kafka_message_timestamp(self.0, &mut kind) };
        (kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ms >= 0)
            .then_some(ms)
    }
}

#[cfg(test)]
mod tests {
    //! Against librdkafka's in-process mock cluster.
    use super::*;
    use rdkafka::consumer::DefaultConsumerContext;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    #[test]
    fn batches_hold_every_record_in_offset_order_per_partition() {
        let cluster = super::super::mock_topic(100, |n| format!("r{n}"));
        let b = cluster.bootstrap_servers();
        let consumer: BaseConsumer<DefaultConsumerContext> = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("group.id", "g")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let consumer = BatchConsumer::new(consumer).unwrap();
        let mut tpl = TopicPartitionList::new();
        for partition in 0..2 {
            consumer.attach("t", partition).unwrap();
            tpl.add_partition_offset("t", partition, Offset::Beginning)
                .unwrap();
        }
        consumer.consumer().assign(&tpl).unwrap();
        let mut seen: [Vec<(i64, String)>; 2] = Default::default();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while seen.iter().map(Vec::len).sum::<usize>() < 100 {
            assert!(std::time::Instant::now() < deadline, "{seen:?}");
            assert!(consumer.consumer().poll(Duration::ZERO).is_none());
            let msgs = consumer.consume(Duration::from_millis(200), 30).unwrap();
            assert!(msgs.len() <= 30);
            for m in msgs.iter() {
                assert_eq!(m.error(), None);
                let text = String::from_utf8(m.payload().to_vec()).unwrap();
                seen[m.partition() as usize].push((m.offset(), text));
            }
        }
        for (partition, records) in seen.iter().enumerate() {
            let expected: Vec<(i64, String)> = (0..50)
                .map(|i| (i as i64, format!("r{}", 2 * i + partition)))
                .collect();
            assert_eq!(records, &expected);
        }
        let t0 = std::time::Instant::now();
        let none = consumer.consume(Duration::from_millis(100), 30).unwrap();
        assert!(none.is_empty());
        assert!(
            t0.elapsed() >= Duration::from_millis(90),
            "waited for the timeout"
        );
    }
}
