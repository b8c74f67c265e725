//! `format = "avro"` with arrow-avro: bare Avro binary records of an inline schema, or the
//! Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro binary) whose
//! writer schemas come from a registry, fetched once per id and resolved to the reader
//! schema (the subject's latest). Records that do not decode are named with their reason.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{Schema, SchemaRef};
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{
    AvroSchema, Fingerprint, FingerprintAlgorithm, FingerprintStrategy, SCHEMA_METADATA_KEY,
    SchemaStore,
};
use arrow_avro::writer::WriterBuilder;
use arrow_avro::writer::format::{AvroBinaryFormat, AvroSoeFormat};
use kappa_job::plan::formats::{avro_arrow_schema, avro_columns};

use super::registry::{RegistryClient, RegistryError};
use crate::ConnectorError;
use crate::json::{BadRecord, drop_impossible_times};

/// The Confluent wire format's first byte.
const MAGIC: u8 = 0;
/// Magic byte and schema id.
const HEADER: usize = 5;
/// The id a bare record is framed with to go through arrow-avro's framed decoder.
const INLINE_ID: u32 = 0;

/// Where the writer schemas come from.
enum Writers {
    /// One schema; records are bare Avro.
    Inline,
    /// By id from a registry (None: the registry does not know the id).
    Registry {
        client: Box<RegistryClient>,
        known: HashMap<u32, Option<AvroSchema>>,
    },
}

/// Decodes Avro records into batches of the job's schema.
pub struct AvroDecoder {
    schema: SchemaRef,
    event_time: Option<usize>,
    /// The schema rows are resolved to (registry) or written in (inline).
    reader: AvroSchema,
    /// The column of the decoded rows that gives each column of `schema`.
    columns: Vec<usize>,
    writers: Writers,
}

fn format_error(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Format(e.to_string())
}

impl AvroDecoder {
    /// Records of the Avro schema `json`, bare.
    pub fn inline(schema: SchemaRef, json: &str) -> Result<Self, ConnectorError> {
        Self::new(schema, AvroSchema::new(json.to_string()), Writers::Inline)
    }

    /// Records in the Confluent wire format; the reader schema is the subject's latest.
    pub fn registry(schema: SchemaRef, client: RegistryClient) -> Result<Self, ConnectorError> {
        let (id, json) = client.latest().map_err(registry_error)?;
        let reader = AvroSchema::new(json);
        let known = HashMap::from([(id, Some(reader.clone()))]);
        let client = Box::new(client);
        Self::new(schema, reader, Writers::Registry { client, known })
    }

    fn new(
        schema: SchemaRef,
        reader: AvroSchema,
        writers: Writers,
    ) -> Result<Self, ConnectorError> {
        let decoded = avro_arrow_schema(&reader.json_string).map_err(ConnectorError::Format)?;
        let columns = avro_columns(&schema, &decoded).map_err(|why| {
            ConnectorError::Format(format!(
                "the source's schema does not match the Avro schema: {why}"
            ))
        })?;
        Ok(Self {
            schema,
            event_time: None,
            reader,
            columns,
            writers,
        })
    }

    pub fn with_event_time(mut self, index: Option<usize>) -> Self {
        self.event_time = index;
        self
    }

    /// A decoder for every writer schema known now.
    fn decoder(&self, rows: usize) -> Result<Decoder, ConnectorError> {
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        let builder = ReaderBuilder::new().with_batch_size(rows.max(1));
        let builder = match &self.writers {
            Writers::Inline => {
                store
                    .set(Fingerprint::Id(INLINE_ID), self.reader.clone())
                    .map_err(format_error)?;
                builder
            }
            Writers::Registry { known, .. } => {
                for (id, s) in known {
                    if let Some(s) = s {
                        store
                            .set(Fingerprint::Id(*id), s.clone())
                            .map_err(format_error)?;
                    }
                }
                builder.with_reader_schema(self.reader.clone())
            }
        };
        builder
            .with_writer_schema_store(store)
            .build_decoder()
            .map_err(format_error)
    }

    /// Each record framed for the decoder, or why it is bad; the registry is asked for the
    /// schema ids not seen before.
    fn frame<'a>(
        &mut self,
        record: &'a [u8],
    ) -> Result<Result<std::borrow::Cow<'a, [u8]>, String>, ConnectorError> {
        let Writers::Registry { client, known } = &mut self.writers else {
            let mut framed = Vec::with_capacity(HEADER + record.len());
            framed.push(MAGIC);
            framed.extend_from_slice(&INLINE_ID.to_be_bytes());
            framed.extend_from_slice(record);
            return Ok(Ok(framed.into()));
        };
        let Some((&magic, rest)) = record.split_first() else {
            return Ok(Err(
                "empty record: expected the Confluent wire format".into()
            ));
        };
        if magic != MAGIC {
            return Ok(Err(format!(
                "first byte {magic:#04x}, not the Confluent wire format's magic byte 0"
            )));
        }
        let Some(id) = rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
            return Ok(Err(format!(
                "{} bytes: shorter than the Confluent header (5 bytes)",
                record.len()
            )));
        };
        let id = u32::from_be_bytes(id);
        let schema = match known.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(match client.schema(id) {
                Ok(json) => Some(AvroSchema::new(json)),
                Err(RegistryError::UnknownId(_)) => None,
                Err(e) => return Err(registry_error(e)),
            }),
        };
        Ok(match schema {
            Some(_) => Ok(record.into()),
            None => Err(format!("schema id {id} is unknown to the schema registry")),
        })
    }

    /// Decodes `records`; the batch holds the good ones in order, bad ones are listed apart.
    pub fn decode(
        &mut self,
        records: &[&[u8]],
    ) -> Result<(RecordBatch, Vec<BadRecord>), ConnectorError> {
        let mut bad = Vec::new();
        let mut framed = Vec::with_capacity(records.len());
        for (index, r) in records.iter().enumerate() {
            match self.frame(r)? {
                Ok(f) => framed.push((index, f)),
                Err(error) => bad.push(BadRecord { index, error }),
            }
        }
        let mut d = self.decoder(framed.len())?;
        let fast = framed
            .iter()
            .try_fold(Vec::new(), |mut out, (_, f)| {
                feed(&mut d, f, &mut out).map(|_| out)
            })
            .and_then(|mut out| {
                out.extend(d.flush().map_err(|e| e.to_string())?);
                Ok(out)
            });
        let (batches, indices) = match fast {
            Ok(batches) => (batches, framed.iter().map(|(i, _)| *i).collect::<Vec<_>>()),
            // Slow path, only when something is wrong: one record at a time, to name the bad.
            Err(_) => {
                let mut batches = Vec::new();
                let mut indices = Vec::new();
                for (index, f) in &framed {
                    let mut d = self.decoder(1)?;
                    let mut out = Vec::new();
                    match feed(&mut d, f, &mut out)
                        .and_then(|_| d.flush().map_err(|e| e.to_string()))
                    {
                        Ok(last) => {
                            batches.extend(out.into_iter().chain(last));
                            indices.push(*index);
                        }
                        Err(error) => bad.push(BadRecord {
                            index: *index,
                            error,
                        }),
                    }
                }
                (batches, indices)
            }
        };
        let batch = self.to_job_schema(&batches)?;
        let batch = match self.event_time {
            Some(c) => drop_impossible_times(&self.schema, batch, c, &indices, &mut bad)?,
            None => batch,
        };
        bad.sort_by_key(|b| b.index);
        Ok((batch, bad))
    }

    /// The decoded rows as the job's columns (timestamps cast to the job's time zone).
    fn to_job_schema(&self, batches: &[RecordBatch]) -> Result<RecordBatch, ConnectorError> {
        let Some(first) = batches.first() else {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        };
        let all = concat_batches(&first.schema(), batches).map_err(format_error)?;
        let columns = self
            .columns
            .iter()
            .zip(self.schema.fields())
            .map(|(&i, f)| cast(all.column(i), f.data_type()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(format_error)?;
        RecordBatch::try_new(Arc::clone(&self.schema), columns).map_err(format_error)
    }
}

/// Feeds one framed record, which must hold exactly one Avro value; full batches go to `out`.
fn feed(d: &mut Decoder, framed: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), String> {
    let rows = |d: &Decoder, out: &[RecordBatch]| {
        out.iter().map(RecordBatch::num_rows).sum::<usize>() + d.batch_size() - d.capacity()
    };
    let before = rows(d, out);
    let mut at = 0;
    while at < framed.len() {
        let n = d
            .decode(&framed[at..])
            .map_err(|e| match rows(d, out) > before {
                true => "bytes left after the Avro value".to_string(),
                false => format!("not valid Avro (truncated or corrupt): {e}"),
            })?;
        if n == 0 {
            match d.flush().map_err(|e| format!("not valid Avro: {e}"))? {
                Some(b) => out.push(b),
                None => break,
            }
        }
        at += n;
    }
    let got = rows(d, out) - before;
    match (at == framed.len(), got) {
        (true, 1) => Ok(()),
        (_, 0) | (false, _) => Err(format!(
            "truncated Avro record ({} bytes do not hold a whole value)",
            framed.len().saturating_sub(HEADER)
        )),
        (true, n) => Err(format!("expected one Avro value per record, found {n}")),
    }
}

fn registry_error(e: RegistryError) -> ConnectorError {
    match e.retriable() {
        true => ConnectorError::Io(e.to_string()),
        false => ConnectorError::Format(e.to_string()),
    }
}

/// Encodes rows as Avro records: bare, or in the Confluent wire format with a schema id.
pub struct AvroEncoder {
    encoder: arrow_avro::writer::Encoder,
}

impl AvroEncoder {
    /// Rows written with Avro schema `json`; `id`: the registry's id of it (Confluent framing).
    pub fn new(json: &str, id: Option<u32>) -> Result<Self, ConnectorError> {
        let arrow = avro_arrow_schema(json).map_err(ConnectorError::Format)?;
        let metadata = HashMap::from([(SCHEMA_METADATA_KEY.to_string(), json.to_string())]);
        let schema = Schema::new_with_metadata(arrow.fields().clone(), metadata);
        let builder = WriterBuilder::new(schema);
        let encoder = match id {
            Some(id) => builder
                .with_fingerprint_strategy(FingerprintStrategy::Id(id))
                .build_encoder::<AvroSoeFormat>(),
            None => builder.build_encoder::<AvroBinaryFormat>(),
        };
        Ok(Self {
            encoder: encoder.map_err(format_error)?,
        })
    }

    /// Registers `json` under the registry's subject and writes the Confluent framing.
    pub fn registered(json: &str, client: &RegistryClient) -> Result<Self, ConnectorError> {
        let id = client.register(json).map_err(registry_error)?;
        Self::new(json, Some(id))
    }

    /// One record per row of `batch`, whose columns are those of the Avro schema in order.
    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, ConnectorError> {
        let schema = self.encoder.schema();
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| cast(c, f.data_type()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(format_error)?;
        let batch = RecordBatch::try_new(schema, columns).map_err(format_error)?;
        self.encoder.encode(&batch).map_err(format_error)?;
        Ok(self.encoder.flush().iter().map(|r| r.to_vec()).collect())
    }
}
