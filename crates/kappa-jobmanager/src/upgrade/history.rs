//! How far back history goes, for the retention check of an upgrade's plan: the oldest event
//! a Kafka source's topic, or its history archive, still holds for certain (the latest of its
//! partitions' first records' event times: before it, some partition lost records), what the
//! archive holds, and the oldest window each
//! live sink holds (its least `window_start`). Blocking: the plan's shell runs these on
//! blocking threads.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kappa_connectors::confine::Confinement;
use kappa_connectors::json::JsonDecoder;
use kappa_connectors::upgrade::{UpgradeSinkError, files, kafka, postgres};
use kappa_job::plan::{SinkKind, SinkPlan, SourceKind, SourcePlan};
use serde_json::Value;

use super::plan::target;
use super::sinks::{SinkOpsError, kafka_connection, postgres_password};

/// The column of a window's start (ms) in a window's output.
pub const WINDOW_START: &str = "window_start";

/// Why how far back a source or sink goes is not known.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reading topic `{topic}` of source `{source_name}`")]
    Source {
        source_name: String,
        topic: String,
        #[source]
        source: Box<UpgradeSinkError>,
    },
    #[error("a secret of source `{source_name}` cannot be read here")]
    SourceSecret {
        source_name: String,
        #[source]
        source: Box<kappa_job::secret::SecretError>,
    },
    #[error(transparent)]
    Sink(#[from] SinkOpsError),
}

/// The event time from which on every partition of `source`'s topic holds its records: the
/// latest of the partitions' first records' event times (a first record that does not decode
/// counts as unknown). None: not a Kafka source with an event time, or no records.
pub fn oldest_event(
    source: &SourcePlan,
    confinement: &Confinement,
    timeout: Duration,
    archived_first: &BTreeMap<i32, Vec<u8>>,
) -> Result<Option<i64>, HistoryError> {
    let (SourceKind::Kafka(k), Some(et)) = (&source.kind, &source.event_time) else {
        return Ok(None);
    };
    let connection = confinement
        .secrets
        .resolve_kafka(&k.connection, &source.uid)
        .map_err(|e| HistoryError::SourceSecret {
            source_name: source.name.clone(),
            source: Box::new(e),
        })?;
    let first =
        kafka::first_records(&connection, &k.topic, timeout).map_err(|e| HistoryError::Source {
            source_name: source.name.clone(),
            topic: k.topic.clone(),
            source: Box::new(e),
        })?;
    let decoder = JsonDecoder::new(source.payload_schema());
    // A partition's first record: the archive's where a replay reads the archive first.
    let mut values: BTreeMap<i32, &[u8]> = first
        .iter()
        .filter_map(|r| Some((r.partition, r.value.as_deref()?)))
        .collect();
    values.extend(archived_first.iter().map(|(p, v)| (*p, v.as_slice())));
    Ok(values
        .values()
        .filter_map(|v| decoder.event_time_ms(et.source_index, v))
        .max())
}

/// The least `window_start` (ms) `sink` holds. None: its rows have no integer `window_start`,
/// it holds no rows, or it is not a table, topic or directory. A Kafka sink's windows are
/// written in the order they close: the least of its partitions' first records is taken.
pub fn oldest_window(
    sink: &SinkPlan,
    confinement: &Confinement,
    timeout: Duration,
) -> Result<Option<i64>, HistoryError> {
    let integer = sink
        .schema
        .field_with_name(WINDOW_START)
        .is_ok_and(|f| f.data_type().is_integer());
    let Some((_, live)) = target(&sink.kind).filter(|_| integer) else {
        return Ok(None);
    };
    let failed = |e: UpgradeSinkError| {
        HistoryError::Sink(SinkOpsError::Sink {
            sink: sink.name.clone(),
            source: Box::new(e),
        })
    };
    let start = |v: &Value| v.get(WINDOW_START).and_then(Value::as_i64);
    match &sink.kind {
        SinkKind::Postgres { url, .. } => {
            let password = postgres_password(sink, confinement)?;
            postgres::min_of(url, password.as_ref(), &live, WINDOW_START).map_err(failed)
        }
        SinkKind::Kafka { .. } => {
            let connection = kafka_connection(sink, confinement)?;
            let first = kafka::first_records(&connection, &live, timeout).map_err(failed)?;
            Ok(first
                .iter()
                .filter_map(|r| serde_json::from_slice::<Value>(r.value.as_deref()?).ok())
                .filter_map(|v| start(&v))
                .min())
        }
        SinkKind::File { .. } => {
            let rows = files::rows(Path::new(&live), None, &sink.schema).map_err(failed)?;
            Ok(rows
                .values()
                .flat_map(|v| match v {
                    Value::Array(rows) => rows.iter().filter_map(start).collect(),
                    v => start(v).into_iter().collect::<Vec<_>>(),
                })
                .min())
        }
        SinkKind::Redis(_)
        | SinkKind::Elasticsearch(_)
        | SinkKind::Parquet(_)
        | SinkKind::Iceberg(_)
        | SinkKind::Stdout
        | SinkKind::Blackhole => Ok(None),
    }
}
