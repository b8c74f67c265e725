//! Kappa sources and sinks: Kafka (assigned partitions at explicit offsets, keyed JSON
//! output, at-least-once or transactional, dead-letter topics), JSON-lines files (part files
//! committed by rename for exactly-once), Parquet files in object storage, PostgreSQL and
//! Elasticsearch upserts by id, Redis writes by key, stdout and the blackhole, the Nexmark
//! event generator and its
//! source (`connector = "nexmark"`), split assignment, and the sink side of upgrades (shadow
//! tables and topics, the diff, the cut-over).

pub mod bad_records;
pub mod blackhole;
pub mod confine;
pub mod elasticsearch;
pub mod file;
pub mod format;
pub mod iceberg;
pub mod json;
pub mod kafka;
pub mod key;
pub mod nexmark;
pub mod parquet;
pub mod part_files;
pub mod postgres;
mod postgres_tls;
mod prepared;
pub mod redis;
pub mod service_hosts;
pub mod splits;
#[cfg(test)]
mod test_http;
pub mod time_text;
pub mod upgrade;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use kappa_job::plan::{SinkKind, SinkPlan, SourceKind, SourcePlan};
use kappa_job::spec::{Delivery, SinkPartitioner};
use kappa_runtime::TaskError;
use kappa_runtime::io::{Sink, SourceReader};
use kappa_runtime::metrics::SubtaskMetrics;

use crate::bad_records::BadRecordPolicy;
use crate::blackhole::BlackholeSink;
use crate::confine::Confinement;
use crate::file::{FileReader, LineSink};
use crate::format::{RecordDecoder, RecordEncoder};
use crate::json::JsonDecoder;
use crate::kafka::PartitionStart;
use crate::kafka::sink::{DeadLetterWriter, KafkaSink, TopicProducer};
use crate::kafka::source::{KafkaReader, KafkaReaderConfig};
use crate::kafka::transactional::{KafkaTarget, TransactionalKafkaSink};
use crate::nexmark::reader::NexmarkReader;
use crate::parquet::ParquetSink;
use crate::part_files::PartFileSink;
use crate::splits::SourceAssignment;
use crossbeam_channel::Receiver;

/// Errors of connectors outside a running task (metadata, files, formats).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectorError {
    #[error("{0}")]
    Kafka(String),
    #[error(transparent)]
    Unreachable(Box<kafka::admin::Unreachable>),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Format(String),
    /// A secret of the job cannot be read on this process.
    #[error(transparent)]
    Secret(#[from] kappa_job::secret::SecretError),
}

/// Opens the source reader of one subtask; Kafka partitions handed over later arrive on
/// `new_splits`. Its files must be ones `confinement` allows. It counts into `metrics` and
/// takes larger batches from Kafka while `catching_up` is set.
pub fn open_source(
    confinement: &Confinement,
    source: &SourcePlan,
    job_id: &str,
    assignment: &SourceAssignment,
    new_splits: Option<Receiver<Vec<PartitionStart>>>,
    (metrics, catching_up): (Arc<SubtaskMetrics>, Arc<AtomicBool>),
) -> Result<Box<dyn SourceReader>, TaskError> {
    let event_time = source.event_time.as_ref().map(|e| e.source_index);
    match (&source.kind, assignment) {
        (SourceKind::Kafka(k), SourceAssignment::Kafka(partitions)) => {
            let connection = &confinement
                .secrets
                .resolve_kafka(&k.connection, &source.uid)?;
            let dead_letter = match &k.dead_letter_topic {
                Some(t) => Some(DeadLetterWriter::new(TopicProducer::new(connection, t)?)),
                None => None,
            };
            let policy = BadRecordPolicy::new(source.on_error, dead_letter, Arc::clone(&metrics));
            let group = format!("kappa-{job_id}");
            let cfg = KafkaReaderConfig {
                connection,
                topic: &k.topic,
                group: &group,
                partitions,
                new_splits,
                catching_up,
                schema: Arc::clone(&source.schema),
                metadata: &k.metadata,
                history: k.history.as_deref(),
            };
            confinement.check_source(source, &[])?;
            let decoder = RecordDecoder::open(source, &confinement.secrets)?;
            let reader = KafkaReader::new(cfg, decoder, policy, metrics)?;
            Ok(Box::new(reader))
        }
        (SourceKind::Nexmark(n), SourceAssignment::Nexmark(splits)) => {
            let reader =
                NexmarkReader::new(n, splits).map_err(|e| TaskError::Data(e.to_string()))?;
            Ok(Box::new(reader))
        }
        (SourceKind::File { .. }, SourceAssignment::Files(files)) => {
            confinement.check_source(source, files)?;
            let policy = BadRecordPolicy::new(source.on_error, None, metrics);
            let decoder = JsonDecoder::new(Arc::clone(&source.schema)).with_event_time(event_time);
            Ok(Box::new(FileReader::new(files.clone(), decoder, policy)))
        }
        _ => Err(TaskError::Data(
            "the source assignment does not match the source connector".into(),
        )),
    }
}

/// The identity under which subtask `subtask` of sink `uid` of job `job_id` commits its
/// output (the single `[sink]`, uid `sink`, keeps the identity of earlier releases).
pub fn sink_writer_id(job_id: &str, uid: &str, subtask: u32) -> String {
    match uid {
        "sink" => format!("kappa-{job_id}-sink-{subtask}"),
        _ => format!("kappa-{job_id}-sink-{uid}-{subtask}"),
    }
}

/// The name part of the files subtask `subtask` of file sink `uid` of job `job_id` writes.
fn file_writer_id(job_id: &str, uid: &str, subtask: u32) -> String {
    match uid {
        "sink" => format!("{job_id}-{subtask}"),
        uid => format!("{job_id}-{uid}-{subtask}"),
    }
}

/// Opens subtask `subtask` of sink `sink` of job `job_id` in its attempt `attempt`; its
/// directory or host must be one `confinement` allows.
pub fn open_sink(
    confinement: &Confinement,
    sink: &SinkPlan,
    job_id: &str,
    attempt: u32,
    subtask: u32,
) -> Result<Box<dyn Sink>, TaskError> {
    let delivery = sink.delivery;
    let dir = confinement.check_sink(sink)?;
    Ok(match &sink.kind {
        SinkKind::Kafka {
            connection,
            topic,
            partitioner,
        } => {
            let connection = &confinement.secrets.resolve_kafka(connection, &sink.uid)?;
            let producer = TopicProducer::new(connection, topic)?;
            let partition = match partitioner {
                SinkPartitioner::Key => None,
                SinkPartitioner::Fixed => Some((subtask % producer.partitions()?) as i32),
            };
            let key = sink.key.clone();
            let encoder = RecordEncoder::open(sink, &confinement.secrets)?;
            match delivery {
                Delivery::ExactlyOnce => {
                    drop(producer);
                    let target = KafkaTarget {
                        connection: connection.clone(),
                        topic: topic.clone(),
                    };
                    let writer = sink_writer_id(job_id, &sink.uid, subtask);
                    Box::new(
                        TransactionalKafkaSink::open(target, &writer, key, partition)?
                            .with_encoder(encoder),
                    )
                }
                Delivery::AtLeastOnce | Delivery::None => Box::new(
                    KafkaSink::new(producer, key, partition, delivery == Delivery::AtLeastOnce)
                        .with_encoder(encoder),
                ),
            }
        }
        SinkKind::File { path } => {
            let path = dir.as_deref().unwrap_or(path);
            let writer = file_writer_id(job_id, &sink.uid, subtask);
            confine::check_writer(&writer)?;
            match delivery {
                Delivery::ExactlyOnce => Box::new(PartFileSink::open(path, &writer, attempt)?),
                Delivery::AtLeastOnce | Delivery::None => Box::new(
                    LineSink::part_file(path, &writer).map_err(|e| TaskError::Io(e.to_string()))?,
                ),
            }
        }
        SinkKind::Parquet(p) => {
            let writer = file_writer_id(job_id, &sink.uid, subtask);
            confine::check_writer(&writer)?;
            let exactly_once = delivery == Delivery::ExactlyOnce;
            let schema = Arc::clone(&sink.schema);
            Box::new(ParquetSink::open(
                p,
                schema,
                (&writer, attempt),
                exactly_once,
            )?)
        }
        SinkKind::Iceberg(plan) => {
            // The checkpoint's name of this writer (its pending commits carry it), which the
            // snapshots it commits are labelled with.
            let writer = sink_writer_id(job_id, &sink.uid, subtask);
            let password = resolved_password(sink, plan.password.as_ref(), confinement)?;
            let opened = iceberg::IcebergSink::open(
                plan,
                password.as_ref(),
                &sink.schema,
                (&writer, attempt),
            )?;
            // An existing table may live outside the warehouse: its data files go there.
            confinement
                .paths
                .check_store(opened.location())
                .map_err(kappa_job::confine::Refused::from)?;
            Box::new(opened)
        }
        SinkKind::Stdout => Box::new(LineSink::stdout()),
        SinkKind::Blackhole => Box::new(BlackholeSink),
        SinkKind::Postgres {
            url,
            password,
            table,
        } => {
            let key = sink.key.clone().ok_or_else(|| {
                TaskError::Data("the postgres sink needs `key`, the row id".into())
            })?;
            let password = resolved_password(sink, password.as_ref(), confinement)?;
            Box::new(postgres::PostgresSink::open(
                url,
                password.as_ref(),
                table,
                key,
                &sink.schema,
            )?)
        }
        SinkKind::Redis(plan) => {
            let key = sink.key.clone().ok_or_else(|| {
                TaskError::Data("the redis sink needs `key`, what each row is written under".into())
            })?;
            let password = resolved_password(sink, plan.password.as_ref(), confinement)?;
            Box::new(redis::RedisSink::open(plan, password.as_ref(), key)?)
        }
        SinkKind::Elasticsearch(target) => {
            let key = sink.key.clone().ok_or_else(|| {
                TaskError::Data("the elasticsearch sink needs `key`, the document _id".into())
            })?;
            Box::new(elasticsearch::ElasticsearchSink::open(
                target,
                &confinement.secrets,
                &sink.uid,
                key,
                elasticsearch::RetryPolicy::default(),
            )?)
        }
    })
}

/// A sink's `password` (a secret reference, usually) read on this process.
fn resolved_password(
    sink: &SinkPlan,
    password: Option<&kappa_job::secret::Secret>,
    confinement: &Confinement,
) -> Result<Option<kappa_job::secret::Secret>, TaskError> {
    let field = format!("{}.password", sink.uid);
    Ok(password
        .map(|p| confinement.secrets.resolve(p, &field))
        .transpose()?)
}
