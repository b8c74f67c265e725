//! `kappa bench kafka-consume`: the calibration of the Kafka path without the engine. It fills
//! a topic with N click events, then reads them all back with each way of taking messages
//! from librdkafka — `BaseConsumer::poll` per message, and batch consumption
//! (`rd_kafka_consume_batch_queue`, what the Kafka source uses) — each with each decoding:
//! serde_json per record plus a hash-map count per item, or the source's Arrow decoder over
//! batches. It prints events/s and events per CPU-second of this process (librdkafka's threads
//! included; an embedded cluster's too, so give --bootstrap-servers to leave the broker out).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kappa_connectors::json::JsonDecoder;
use kappa_connectors::kafka::batch::BatchConsumer;
use kappa_connectors::kafka::source::consumer_config;
use kappa_job::kafka::KafkaConnection;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{BenchArgs, TOPIC, cpu_time, fill_topic, report};
use crate::demo::REFERENCE_JOB;
use crate::generator::ClickGenerator;

/// Records taken and decoded together, as the Kafka source does.
const BATCH: usize = 8192;

/// A read gives up when no record arrived for this long.
const SILENCE: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// Rounds over the four ways (each round reads the whole topic four times).
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Take {
    /// `BaseConsumer::poll`, one message per call.
    Poll,
    /// `rd_kafka_consume_batch_queue`, up to [`BATCH`] messages per call.
    Batch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decode {
    /// serde_json per record into borrowed fields, and a count per item in a hash map.
    Serde,
    /// The Kafka source's decoder: a batch of records into an Arrow record batch.
    Arrow,
}

/// What a read does with the records it takes.
struct Sink {
    decode: Decode,
    arrow: JsonDecoder,
    /// Serde: clicks per item of users above 50 (the reference job's filter and key).
    counts: HashMap<String, u64>,
    /// Serde: the largest event time seen.
    max_time: i64,
    rows: u64,
}

#[derive(serde::Deserialize)]
struct Click<'a> {
    #[serde(borrow)]
    item_id: &'a str,
    #[serde(borrow)]
    user_id: &'a str,
    timestamp: i64,
}

impl Sink {
    fn records(&mut self, payloads: &[&[u8]]) -> anyhow::Result<()> {
        match self.decode {
            Decode::Serde => {
                for p in payloads {
                    let click: Click<'_> = serde_json::from_slice(p)?;
                    self.rows += 1;
                    self.max_time = self.max_time.max(click.timestamp);
                    let user = click.user_id.strip_prefix("user_").map(str::parse::<u32>);
                    if !matches!(user, Some(Ok(u)) if u > 50) {
                        continue;
                    }
                    match self.counts.get_mut(click.item_id) {
                        Some(n) => *n += 1,
                        None => {
                            self.counts.insert(click.item_id.to_string(), 1);
                        }
                    }
                }
            }
            Decode::Arrow => {
                let (batch, bad) = self.arrow.decode(payloads)?;
                if !bad.is_empty() {
                    bail!("{} bad records, e.g. {:?}", bad.len(), bad[0]);
                }
                self.rows += batch.num_rows() as u64;
            }
        }
        Ok(())
    }
}

pub async fn run(args: &BenchArgs, c: &ConsumeArgs) -> anyhow::Result<()> {
    if args.bootstrap_servers.is_none() {
        println!(
            "(embedded cluster: its CPU counts in the figures; give --bootstrap-servers to leave it out)"
        );
    }
    let mut clicks = ClickGenerator::new(7, 5_000).with_items(args.items);
    let (bootstrap, partitions, _cluster) = fill_topic(args, &mut clicks).await?;
    let plan = kappa_job::plan_job(
        "bench.toml",
        REFERENCE_JOB,
        &kappa_job::Overrides::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let source = plan
        .sources
        .first()
        .context("the reference job has no source")?;
    let time = source.event_time.as_ref().map(|e| e.source_index);
    let connection = KafkaConnection::plaintext(&bootstrap);
    let mut run = 0;
    for _ in 0..c.rounds {
        for take in [Take::Poll, Take::Batch] {
            for decode in [Decode::Serde, Decode::Arrow] {
                run += 1;
                let mut sink = Sink {
                    decode,
                    arrow: JsonDecoder::new(source.schema.clone()).with_event_time(time),
                    counts: HashMap::new(),
                    max_time: i64::MIN,
                    rows: 0,
                };
                let group = format!("kappa-bench-consume-{run}");
                let consumer: BaseConsumer<DefaultConsumerContext> =
                    consumer_config(&connection, &group)?.create()?;
                let cpu0 = cpu_time();
                let t0 = Instant::now();
                match take {
                    Take::Poll => read_polling(&consumer, partitions, args.events, &mut sink)?,
                    Take::Batch => {
                        let consumer = BatchConsumer::new(consumer)?;
                        read_batches(&consumer, partitions, args.events, &mut sink)?;
                    }
                }
                let (wall, cpu) = (t0.elapsed(), cpu_time().saturating_sub(cpu0));
                report(
                    &format!("{take:?} + {decode:?}, {partitions} partitions"),
                    sink.rows,
                    wall,
                    cpu,
                );
            }
        }
    }
    Ok(())
}

/// Every partition of the topic from its beginning.
fn all_partitions(partitions: i32) -> anyhow::Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    Ok(tpl)
}

fn read_polling(
    consumer: &BaseConsumer<DefaultConsumerContext>,
    partitions: i32,
    events: u64,
    sink: &mut Sink,
) -> anyhow::Result<()> {
    consumer.assign(&all_partitions(partitions)?)?;
    let mut last = Instant::now();
    while sink.rows < events {
        let mut msgs = Vec::with_capacity(BATCH);
        while msgs.len() < BATCH {
            let wait = match msgs.is_empty() {
                true => Duration::from_millis(100),
                false => Duration::ZERO,
            };
            match consumer.poll(wait) {
                Some(m) => msgs.push(m?),
                None => break,
            }
        }
        let payloads: Vec<&[u8]> = msgs
            .iter()
            .map(|m| m.payload().unwrap_or_default())
            .collect();
        sink.records(&payloads)?;
        check_progress(&mut last, !msgs.is_empty(), sink.rows, events)?;
    }
    Ok(())
}

fn read_batches(
    consumer: &BatchConsumer<DefaultConsumerContext>,
    partitions: i32,
    events: u64,
    sink: &mut Sink,
) -> anyhow::Result<()> {
    for p in 0..partitions {
        consumer.attach(TOPIC, p)?;
    }
    consumer.consumer().assign(&all_partitions(partitions)?)?;
    let mut last = Instant::now();
    while sink.rows < events {
        // Events (errors, statistics) stay on the consumer's own queue.
        if let Some(Err(e)) = consumer.consumer().poll(Duration::ZERO) {
            return Err(e.into());
        }
        let msgs = consumer.consume(Duration::from_millis(100), BATCH)?;
        let mut payloads = Vec::with_capacity(msgs.len());
        for m in msgs.iter() {
            if let Some(e) = m.error() {
                bail!("partition {}: {e}", m.partition());
            }
            payloads.push(m.payload());
        }
        sink.records(&payloads)?;
        check_progress(&mut last, !msgs.is_empty(), sink.rows, events)?;
    }
    Ok(())
}

/// Fails when nothing arrived for [`SILENCE`] before all `events` were read.
fn check_progress(last: &mut Instant, got: bool, rows: u64, events: u64) -> anyhow::Result<()> {
    if got {
        *last = Instant::now();
    } else if last.elapsed() > SILENCE {
        bail!("only {rows} of {events} events arrived");
    }
    Ok(())
}
