//! The sink against an in-process fake of the two endpoints it calls, `_bulk` and
//! `_index_template/<name>`, answering as the Elasticsearch documentation shows (no server
//! of the API can be installed here): retries, refused documents, credentials, flushes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{head, post};
use kappa_job::elasticsearch::{IndexName, IndexTemplate};
use kappa_job::secret::Secret;
use serde_json::{Value, json};

use super::*;

/// What the fake answers to the next bulk request instead of indexing it.
enum Script {
    /// The whole request fails with this status.
    Status(u16),
    /// The documents of these ids are answered 429, the others indexed.
    Throttle(Vec<&'static str>),
}

#[derive(Default)]
struct Cluster {
    script: VecDeque<Script>,
    /// Index templates by name (their bodies).
    templates: BTreeMap<String, Value>,
    /// Documents by (index, `_id`).
    docs: BTreeMap<(String, String), Value>,
    /// Every bulk request: its `Authorization` header and the `_id`s it held.
    bulks: Vec<(Option<String>, Vec<String>)>,
}

type Shared = Arc<Mutex<Cluster>>;

fn lock(c: &Shared) -> std::sync::MutexGuard<'_, Cluster> {
    c.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The fields the templates map as `long`.
fn long_fields(c: &Cluster) -> Vec<String> {
    c.templates
        .values()
        .filter_map(|t| t["template"]["mappings"]["properties"].as_object())
        .flat_map(|p| p.iter())
        .filter(|(_, m)| m["type"] == "long")
        .map(|(f, _)| f.clone())
        .collect()
}

async fn bulk(State(c): State<Shared>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let mut c = lock(&c);
    let text = String::from_utf8_lossy(&body).into_owned();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    let ids = lines
        .chunks(2)
        .map(|p| p[0]["index"]["_id"].as_str().unwrap().to_string())
        .collect();
    c.bulks.push((auth, ids));
    let throttled = match c.script.pop_front() {
        Some(Script::Status(status)) => {
            let body =
                json!({"error": {"type": "unavailable", "reason": "scripted"}, "status": status});
            return (StatusCode::from_u16(status).unwrap(), body.to_string());
        }
        Some(Script::Throttle(ids)) => ids,
        None => Vec::new(),
    };
    let longs = long_fields(&c);
    let mut items = Vec::new();
    for pair in lines.chunks(2) {
        let (index, id) = (&pair[0]["index"]["_index"], &pair[0]["index"]["_id"]);
        let (index, id) = (index.as_str().unwrap(), id.as_str().unwrap());
        let source = &pair[1];
        let bad = longs
            .iter()
            .find(|f| source.get(f.as_str()).is_some_and(|v| !v.is_i64()));
        let item = match bad {
            _ if throttled.contains(&id) => json!({"_index": index, "_id": id, "status": 429,
                "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"}}),
            Some(field) => json!({"_index": index, "_id": id, "status": 400, "error": {
                "type": "mapper_parsing_exception",
                "reason": format!("failed to parse field [{field}] of type [long] in document with id '{id}'. Preview of field's value: '{}'", source[field.as_str()]),
                "caused_by": {"type": "illegal_argument_exception", "reason": "For input string"}}}),
            None => {
                c.docs.insert((index.into(), id.into()), source.clone());
                json!({"_index": index, "_id": id, "_version": 1, "result": "created", "status": 201})
            }
        };
        items.push(json!({ "index": item }));
    }
    let errors = items.iter().any(|i| i["index"]["status"] != 201);
    let answer = json!({"took": 1, "errors": errors, "items": items});
    (StatusCode::OK, answer.to_string())
}

async fn template_exists(State(c): State<Shared>, Path(name): Path<String>) -> StatusCode {
    match lock(&c).templates.contains_key(&name) {
        true => StatusCode::OK,
        false => StatusCode::NOT_FOUND,
    }
}

async fn put_template(State(c): State<Shared>, Path(name): Path<String>, body: Bytes) -> String {
    let body: Value = serde_json::from_slice(&body).unwrap();
    lock(&c).templates.insert(name, body);
    json!({"acknowledged": true}).to_string()
}

/// The fake on a loopback port, served by its own runtime.
struct Fake {
    served: crate::test_http::Served,
    cluster: Shared,
}

impl Fake {
    fn start() -> Self {
        let cluster = Shared::default();
        let app = Router::new()
            .route("/_bulk", post(bulk))
            .route(
                "/_index_template/{name}",
                head(template_exists).put(put_template),
            )
            .with_state(Arc::clone(&cluster));
        Self {
            served: crate::test_http::serve(app),
            cluster,
        }
    }

    fn url(&self) -> String {
        self.served.url.clone()
    }

    fn cluster(&self) -> std::sync::MutexGuard<'_, Cluster> {
        lock(&self.cluster)
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("window_start", DataType::Int64, false),
        Field::new("click_count", DataType::Int64, false),
    ]))
}

/// Rows of item ids, all in the window of 2024-01-01T00:00Z.
fn rows(items: &[&str], count: i64) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(items.to_vec())),
            Arc::new(Int64Array::from(vec![1_704_067_200_000; items.len()])),
            Arc::new(Int64Array::from(vec![count; items.len()])),
        ],
    )
    .unwrap()
}

fn target(nodes: Vec<String>) -> ElasticsearchTarget {
    ElasticsearchTarget {
        nodes,
        index: IndexName::parse("hourly-{window_start:%Y-%m}", &schema()).unwrap(),
        auth: Auth::None,
        ca_file: None,
        template: None,
        bulk_size: 5 << 20,
    }
}

const QUICK: RetryPolicy = RetryPolicy {
    first: Duration::from_millis(5),
    max: Duration::from_millis(20),
    deadline: Duration::from_secs(5),
};

fn open(t: &ElasticsearchTarget, retry: RetryPolicy) -> Result<ElasticsearchSink, EsError> {
    let key = KeyTemplate::parse("{item_id}", &schema()).unwrap();
    ElasticsearchSink::open(t, &SecretSources::any("test"), "sink", key, retry)
}

fn ids(bulk: &(Option<String>, Vec<String>)) -> Vec<&str> {
    bulk.1.iter().map(String::as_str).collect()
}

#[test]
fn documents_are_sent_at_the_barrier_under_their_id_and_index() {
    let fake = Fake::start();
    let mut sink = open(&target(vec![fake.url()]), QUICK).unwrap();
    sink.write(&rows(&["a", "b"], 1)).unwrap();
    sink.write(&rows(&["a"], 7)).unwrap();
    assert!(
        fake.cluster().bulks.is_empty(),
        "buffered until the barrier"
    );
    assert_eq!(sink.prepare(1).unwrap(), None);
    let c = fake.cluster();
    assert_eq!(c.bulks.len(), 1);
    assert_eq!(
        ids(&c.bulks[0]),
        ["a", "b"],
        "one document per id, the last row's"
    );
    let docs: Vec<_> = c
        .docs
        .iter()
        .map(|((i, id), v)| (i.as_str(), id.as_str(), v["click_count"].clone()))
        .collect();
    assert_eq!(
        docs,
        [
            ("hourly-2024-01", "a", json!(7)),
            ("hourly-2024-01", "b", json!(1))
        ]
    );
    assert_eq!(
        c.docs[&("hourly-2024-01".into(), "a".into())]["item_id"],
        "a"
    );
}

#[test]
fn a_full_buffer_is_sent_before_the_barrier() {
    let fake = Fake::start();
    let mut t = target(vec![fake.url()]);
    t.bulk_size = 200;
    let mut sink = open(&t, QUICK).unwrap();
    sink.write(&rows(&["a"], 1)).unwrap();
    assert!(fake.cluster().bulks.is_empty());
    sink.write(&rows(&["b", "c"], 1)).unwrap();
    assert_eq!(
        fake.cluster().bulks.len(),
        1,
        "three documents pass 200 bytes"
    );
    assert_eq!(fake.cluster().docs.len(), 3);
}

#[test]
fn requests_answered_503_or_429_are_retried_then_pass() {
    let fake = Fake::start();
    fake.cluster()
        .script
        .extend([Script::Status(503), Script::Status(429)]);
    let mut sink = open(&target(vec![fake.url()]), QUICK).unwrap();
    sink.write(&rows(&["a", "b"], 1)).unwrap();
    sink.flush().unwrap();
    let c = fake.cluster();
    assert_eq!(c.bulks.len(), 3);
    assert_eq!(c.docs.len(), 2);
}

#[test]
fn documents_answered_429_are_sent_again_alone() {
    let fake = Fake::start();
    fake.cluster()
        .script
        .push_back(Script::Throttle(vec!["b", "d"]));
    let mut sink = open(&target(vec![fake.url()]), QUICK).unwrap();
    sink.write(&rows(&["a", "b", "c", "d"], 1)).unwrap();
    sink.flush().unwrap();
    let c = fake.cluster();
    let sent: Vec<Vec<&str>> = c.bulks.iter().map(ids).collect();
    assert_eq!(sent, [vec!["a", "b", "c", "d"], vec!["b", "d"]]);
    assert_eq!(c.docs.len(), 4);
}

#[test]
fn retries_stop_at_the_deadline_with_a_retriable_error() {
    let fake = Fake::start();
    fake.cluster()
        .script
        .extend((0..100).map(|_| Script::Status(503)));
    let retry = RetryPolicy {
        deadline: Duration::from_millis(50),
        ..QUICK
    };
    let mut sink = open(&target(vec![fake.url()]), retry).unwrap();
    sink.write(&rows(&["a"], 1)).unwrap();
    let e = sink.flush().unwrap_err();
    assert!(e.is_retriable(), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("gave up after") && text.contains("HTTP 503: unavailable: scripted"),
        "{text}"
    );
}

#[test]
fn a_mapping_conflict_fails_the_task_naming_the_document_and_field() {
    let fake = Fake::start();
    let mut t = target(vec![fake.url()]);
    t.template = Some(IndexTemplate {
        name: "kappa-hourly".into(),
        patterns: vec![t.index.pattern()],
        mappings: json!({"properties": {"item_id": {"type": "long"}}}),
    });
    let mut sink = open(&t, QUICK).unwrap();
    sink.write(&rows(&["item_1"], 1)).unwrap();
    let e = sink.flush().unwrap_err();
    assert!(!e.is_retriable(), "{e}");
    assert_eq!(
        e.to_string(),
        "elasticsearch sink: elasticsearch refused document _id `item_1` in index `hourly-2024-01` (status 400): \
         mapper_parsing_exception: failed to parse field [item_id] of type [long] in document with id 'item_1'. \
         Preview of field's value: '\"item_1\"'; caused by illegal_argument_exception: For input string"
    );
}

#[test]
fn the_index_template_is_created_when_missing_and_kept_when_present() {
    let fake = Fake::start();
    let mut t = target(vec![fake.url()]);
    let mappings = json!({"properties": {"click_count": {"type": "long"}}});
    t.template = Some(IndexTemplate {
        name: "kappa-hourly".into(),
        patterns: vec!["hourly-*".into()],
        mappings: mappings.clone(),
    });
    open(&t, QUICK).unwrap();
    let created = json!({"index_patterns": ["hourly-*"], "template": {"mappings": mappings}});
    assert_eq!(fake.cluster().templates["kappa-hourly"], created);
    // An existing template of that name (an operator's) is left as it is.
    fake.cluster()
        .templates
        .insert("kappa-hourly".into(), json!({"theirs": true}));
    open(&t, QUICK).unwrap();
    assert_eq!(
        fake.cluster().templates["kappa-hourly"],
        json!({"theirs": true})
    );
}

#[test]
fn basic_and_api_key_credentials_are_sent() {
    let fake = Fake::start();
    let mut t = target(vec![fake.url()]);
    t.auth = Auth::Basic {
        username: "kappa".into(),
        password: Secret::new("s3cret"),
    };
    let mut sink = open(&t, QUICK).unwrap();
    sink.write(&rows(&["a"], 1)).unwrap();
    sink.flush().unwrap();
    t.auth = Auth::ApiKey(Secret::new(
        "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==",
    ));
    let mut sink = open(&t, QUICK).unwrap();
    sink.write(&rows(&["a"], 1)).unwrap();
    sink.flush().unwrap();
    let auth: Vec<Option<String>> = fake.cluster().bulks.iter().map(|b| b.0.clone()).collect();
    assert_eq!(
        auth,
        [
            Some("Basic a2FwcGE6czNjcmV0".to_string()),
            Some("ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==".to_string())
        ]
    );
}

#[test]
fn a_node_that_does_not_answer_is_passed_over() {
    let fake = Fake::start();
    // A port nothing listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut sink = open(&target(vec![format!("http://{closed}"), fake.url()]), QUICK).unwrap();
    sink.write(&rows(&["a"], 1)).unwrap();
    sink.flush().unwrap();
    assert_eq!(fake.cluster().docs.len(), 1);
    // Unreachable everywhere: a retriable failure naming the node.
    let mut sink = open(
        &target(vec![format!("http://{closed}")]),
        RetryPolicy {
            deadline: Duration::ZERO,
            ..QUICK
        },
    )
    .unwrap();
    sink.write(&rows(&["a"], 1)).unwrap();
    let e = sink.flush().unwrap_err();
    assert!(e.is_retriable(), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("bulk request at http://{closed}/: no answer")),
        "{e}"
    );
}
