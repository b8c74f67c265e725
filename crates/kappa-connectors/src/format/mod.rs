//! The record formats of Kafka sources and sinks: json (crate::json), string and raw
//! ([`value`]), avro bare or in the Confluent wire format ([`avro`], [`registry`]), Debezium
//! change events ([`debezium`]); the decoder and encoder of a planned source or sink.

pub mod avro;
pub mod debezium;
pub mod registry;
pub mod value;

use arrow::array::{BooleanArray, RecordBatch};
use kappa_job::plan::formats::{RecordFormat, SchemaRegistry};
use kappa_job::plan::{SinkPlan, SourcePlan};
use kappa_job::secret::SecretSources;
use kappa_runtime::TaskError;

use crate::ConnectorError;
use crate::json::{BadRecord, JsonDecoder, encode_rows};
use avro::{AvroDecoder, AvroEncoder};
use debezium::DebeziumDecoder;
use registry::RegistryClient;
use value::ValueDecoder;

/// Decodes a source's records in its format.
pub enum RecordDecoder {
    Json(JsonDecoder),
    Value(ValueDecoder),
    Avro(Box<AvroDecoder>),
    Debezium(DebeziumDecoder),
}

/// Records decoded: the rows of the good ones, the bad ones apart.
pub struct Decoded {
    /// The rows, in record order.
    pub batch: RecordBatch,
    pub bad: Vec<BadRecord>,
    /// A change format's rows: which are deleted, and the record each came from (a record
    /// may give none, one or two rows). None: one row per good record, all inserted.
    pub changes: Option<(BooleanArray, Vec<usize>)>,
}

impl From<(RecordBatch, Vec<BadRecord>)> for Decoded {
    fn from((batch, bad): (RecordBatch, Vec<BadRecord>)) -> Self {
        Self {
            batch,
            bad,
            changes: None,
        }
    }
}

impl From<JsonDecoder> for RecordDecoder {
    fn from(d: JsonDecoder) -> Self {
        Self::Json(d)
    }
}

/// A connector error as the task reports it: the registry's I/O can be retried.
pub fn task_error(e: ConnectorError) -> TaskError {
    match e {
        ConnectorError::Io(m) => TaskError::Io(m),
        e => TaskError::Data(e.to_string()),
    }
}

/// The registry client of `registry`, its password read here (field `{uid}.schema_registry`).
fn registry_client(
    registry: &SchemaRegistry,
    secrets: &SecretSources,
    uid: &str,
) -> Result<RegistryClient, TaskError> {
    let field = format!("{uid}.schema_registry.password");
    let password = match &registry.password {
        Some(p) => Some(secrets.resolve(p, &field)?.value(&field)?.to_string()),
        None => None,
    };
    RegistryClient::new(registry, password)
        .map_err(|e| TaskError::Data(kappa_runtime::error::with_causes(&e)))
}

impl RecordDecoder {
    /// The decoder of `source` (an Avro source with a registry asks it for its schema).
    pub fn open(source: &SourcePlan, secrets: &SecretSources) -> Result<Self, TaskError> {
        let schema = source.payload_schema();
        let event_time = source.payload_event_time();
        Ok(match &source.format {
            RecordFormat::Json => Self::Json(JsonDecoder::new(schema).with_event_time(event_time)),
            RecordFormat::String => Self::Value(ValueDecoder::string(schema)),
            RecordFormat::Raw => Self::Value(ValueDecoder::raw(schema)),
            RecordFormat::DebeziumJson => Self::Debezium(DebeziumDecoder::new(schema, event_time)),
            RecordFormat::Avro(a) => {
                let decoder = match (&a.registry, &a.schema) {
                    (Some(r), _) => {
                        AvroDecoder::registry(schema, registry_client(r, secrets, &source.uid)?)
                    }
                    (None, Some(json)) => AvroDecoder::inline(schema, json),
                    (None, None) => Err(ConnectorError::Format(
                        "format = \"avro\" without a schema".into(),
                    )),
                };
                Self::Avro(Box::new(
                    decoder.map_err(task_error)?.with_event_time(event_time),
                ))
            }
        })
    }

    /// Decodes `records`; the batch holds the good ones in order, bad ones are listed apart.
    pub fn decode(&mut self, records: &[&[u8]]) -> Result<Decoded, ConnectorError> {
        Ok(match self {
            Self::Json(d) => d.decode(records)?.into(),
            Self::Value(d) => d.decode(records)?.into(),
            Self::Avro(d) => d.decode(records)?.into(),
            Self::Debezium(d) => {
                let c = d.decode(records)?;
                Decoded {
                    batch: c.batch,
                    bad: c.bad,
                    changes: Some((c.deletes, c.records)),
                }
            }
        })
    }
}

/// Encodes a sink's rows as record values in its format.
pub enum RecordEncoder {
    Json,
    Value,
    Avro(Box<AvroEncoder>),
}

impl RecordEncoder {
    /// The encoder of `sink` (an Avro sink with a registry registers its schema).
    pub fn open(sink: &SinkPlan, secrets: &SecretSources) -> Result<Self, TaskError> {
        Ok(match &sink.format {
            RecordFormat::Json => Self::Json,
            RecordFormat::String | RecordFormat::Raw => Self::Value,
            RecordFormat::DebeziumJson => {
                return Err(TaskError::Data(
                    "debezium-json is a source format: a sink writes json".into(),
                ));
            }
            RecordFormat::Avro(a) => {
                let json = a
                    .schema
                    .as_deref()
                    .ok_or_else(|| TaskError::Data("format = \"avro\" without a schema".into()))?;
                let encoder = match &a.registry {
                    Some(r) => {
                        AvroEncoder::registered(json, &registry_client(r, secrets, &sink.uid)?)
                    }
                    None => AvroEncoder::new(json, None),
                };
                Self::Avro(Box::new(encoder.map_err(task_error)?))
            }
        })
    }

    /// One record value per row of `batch`.
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, ConnectorError> {
        match self {
            Self::Json => encode_rows(batch),
            Self::Value => value::encode_values(batch),
            Self::Avro(e) => e.encode(batch),
        }
    }
}

#[cfg(test)]
mod tests;
