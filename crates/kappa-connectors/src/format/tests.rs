//! Avro round trips through the sink's encoder and the source's decoder, bad records with
//! their reason, and the Confluent framing against an in-process fake of the registry's
//! documented REST API (no real registry installs here).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use kappa_job::plan::formats::SchemaRegistry;

use super::avro::{AvroDecoder, AvroEncoder};
use super::registry::{RegistryClient, RegistryError};
use crate::ConnectorError;

const CLICK: &str = r#"{"type":"record","name":"Click","fields":[
  {"name":"user_id","type":"string"},
  {"name":"item_id","type":"string"},
  {"name":"timestamp","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"n","type":"long"}]}"#;

fn job_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("n", DataType::Int64, false),
    ]))
}

fn clicks(n: i64) -> RecordBatch {
    let users: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    let items: Vec<String> = (0..n).map(|i| format!("item_{}", i % 3)).collect();
    RecordBatch::try_new(
        job_schema(),
        vec![
            Arc::new(StringArray::from(users)),
            Arc::new(StringArray::from(items)),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                (0..n).map(|i| 1_732_500_000_000 + i),
            )),
            Arc::new(Int64Array::from_iter_values(0..n)),
        ],
    )
    .unwrap()
}

fn refs(records: &[Vec<u8>]) -> Vec<&[u8]> {
    records.iter().map(Vec::as_slice).collect()
}

#[test]
fn inline_schema_round_trip_gives_the_same_batch() {
    let batch = clicks(5);
    let records = AvroEncoder::new(CLICK, None)
        .unwrap()
        .encode(&batch)
        .unwrap();
    assert_eq!(records.len(), 5);
    let mut d = AvroDecoder::inline(job_schema(), CLICK).unwrap();
    let (back, bad) = d.decode(&refs(&records)).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(back, batch);
}

#[test]
fn truncated_and_trailing_records_are_bad_with_their_reason() {
    let mut records = AvroEncoder::new(CLICK, None)
        .unwrap()
        .encode(&clicks(4))
        .unwrap();
    let cut = records[1].len() - 3;
    records[1].truncate(cut);
    records[2].clear();
    records[3].push(0x02);
    let mut d = AvroDecoder::inline(job_schema(), CLICK).unwrap();
    let (back, bad) = d.decode(&refs(&records)).unwrap();
    assert_eq!(back.num_rows(), 1, "{bad:?}");
    let reasons: Vec<(usize, &str)> = bad.iter().map(|b| (b.index, b.error.as_str())).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].0 == 1 && reasons[0].1.contains("truncated"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].0 == 2 && reasons[1].1.contains("truncated"),
        "{reasons:?}"
    );
    assert_eq!(reasons[2].0, 3, "{reasons:?}");
}

#[test]
fn a_job_schema_that_does_not_match_is_refused() {
    let wrong = Arc::new(Schema::new(vec![Field::new("n", DataType::Utf8, false)]));
    let Err(ConnectorError::Format(why)) = AvroDecoder::inline(wrong, CLICK) else {
        panic!("accepted a string column for a long field");
    };
    assert!(why.contains("`n` is Int64 in the Avro schema"), "{why}");
}

/// The registry's documented REST API, in memory.
#[derive(Default)]
struct Registry {
    schemas: Vec<String>,
    /// subject → ids of its versions.
    subjects: HashMap<String, Vec<u32>>,
}

type Shared = Arc<Mutex<Registry>>;

async fn by_id(
    State(r): State<Shared>,
    Path(id): Path<u32>,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let r = r.lock().unwrap();
    let schema = r.schemas.get(id as usize).ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(serde_json::json!({ "schema": schema })))
}

async fn latest(
    State(r): State<Shared>,
    Path(subject): Path<String>,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let r = r.lock().unwrap();
    let ids = r.subjects.get(&subject).ok_or(StatusCode::NOT_FOUND)?;
    let (version, id) = (ids.len(), *ids.last().ok_or(StatusCode::NOT_FOUND)?);
    let schema = &r.schemas[id as usize];
    Ok(Json(
        serde_json::json!({ "subject": subject, "id": id, "version": version, "schema": schema }),
    ))
}

async fn register(
    State(r): State<Shared>,
    Path(subject): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let schema = body["schema"]
        .as_str()
        .ok_or(StatusCode::UNPROCESSABLE_ENTITY)?
        .to_string();
    let mut r = r.lock().unwrap();
    let id = match r.schemas.iter().position(|s| *s == schema) {
        Some(id) => id as u32,
        None => {
            r.schemas.push(schema);
            r.schemas.len() as u32 - 1
        }
    };
    let versions = r.subjects.entry(subject).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    Ok(Json(serde_json::json!({ "id": id })))
}

struct Fake {
    served: crate::test_http::Served,
}

impl Fake {
    fn start() -> Self {
        // Id 0 is taken by an unrelated schema, so a clicks id of 0 would prove nothing.
        let shared = Shared::default();
        shared.lock().unwrap().schemas.push(r#""string""#.into());
        let app = Router::new()
            .route("/schemas/ids/{id}", get(by_id))
            .route("/subjects/{subject}/versions/latest", get(latest))
            .route("/subjects/{subject}/versions", post(register))
            .with_state(shared);
        Self {
            served: crate::test_http::serve(app),
        }
    }

    fn client(&self) -> RegistryClient {
        let registry = SchemaRegistry {
            url: self.served.url.clone(),
            subject: "clicks-value".into(),
            username: None,
            password: None,
        };
        RegistryClient::new(&registry, None).unwrap()
    }
}

#[test]
fn confluent_framing_round_trips_through_the_registry() {
    let fake = Fake::start();
    let batch = clicks(3);
    let records = AvroEncoder::registered(CLICK, &fake.client())
        .unwrap()
        .encode(&batch)
        .unwrap();
    for r in &records {
        assert_eq!(
            r[..5],
            [0, 0, 0, 0, 1],
            "magic byte 0 and schema id 1, big-endian"
        );
    }
    let mut d = AvroDecoder::registry(job_schema(), fake.client()).unwrap();
    let mut with_bad = records.clone();
    with_bad.push([&[1u8][..], &records[0][1..]].concat());
    with_bad.push([&[0u8, 0, 0, 0, 9][..], &records[0][5..]].concat());
    with_bad.push(vec![0, 0]);
    let (back, bad) = d.decode(&refs(&with_bad)).unwrap();
    assert_eq!(back, batch);
    let reasons: Vec<&str> = bad.iter().map(|b| b.error.as_str()).collect();
    assert!(reasons[0].contains("magic byte"), "{reasons:?}");
    assert!(reasons[1].contains("schema id 9 is unknown"), "{reasons:?}");
    assert!(
        reasons[2].contains("shorter than the Confluent header"),
        "{reasons:?}"
    );
}

#[test]
fn a_registry_that_does_not_answer_is_a_retriable_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let registry = SchemaRegistry {
        url,
        subject: "s".into(),
        username: None,
        password: None,
    };
    let client = RegistryClient::new(&registry, None).unwrap();
    let e = client.schema(1).unwrap_err();
    assert!(
        matches!(e, RegistryError::Unreachable { .. }) && e.retriable(),
        "{e}"
    );
    let Err(e) = AvroDecoder::registry(job_schema(), client) else {
        panic!("opened without a registry");
    };
    assert!(matches!(e, ConnectorError::Io(_)), "{e}");
}

#[test]
fn records_of_an_older_writer_schema_are_resolved_to_the_subjects_latest() {
    // Version 1 had no `n`; version 2 (the latest) added it with a default.
    let v1 = CLICK.replace(",\n  {\"name\":\"n\",\"type\":\"long\"}", "");
    let v2 = CLICK.replace(
        "{\"name\":\"n\",\"type\":\"long\"}",
        "{\"name\":\"n\",\"type\":\"long\",\"default\":7}",
    );
    assert_ne!(v1, CLICK, "the field was removed");
    let fake = Fake::start();
    let full = clicks(3);
    let old = full.project(&[0, 1, 2]).unwrap();
    let records = AvroEncoder::registered(&v1, &fake.client())
        .unwrap()
        .encode(&old)
        .unwrap();
    assert_eq!(records[0][..5], [0, 0, 0, 0, 1], "written with version 1");
    AvroEncoder::registered(&v2, &fake.client()).unwrap();
    let mut d = AvroDecoder::registry(job_schema(), fake.client()).unwrap();
    let (back, bad) = d.decode(&refs(&records)).unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(back.project(&[0, 1, 2]).unwrap(), old);
    let n = back
        .column(3)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(n.values().to_vec(), [7, 7, 7], "the reader's default");
}
