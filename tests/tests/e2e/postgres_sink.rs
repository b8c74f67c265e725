//! The PostgreSQL upsert sink against a private PostgreSQL 15 server: the reference job's hourly
//! counts land one row per window id and a replay with new logic overwrites them; a bounded job
//! has every row durable when it finishes; type conversions, dedupe and chunked transactions of
//! the sink itself; a missing table or column, or a wrong password, fail the job saying so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use kappa_connectors::postgres::PostgresSink;
use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::postgres::{
    HOURLY_TABLE, PASSWORD, Postgres, hourly_rows, wait_rows, with_postgres_sink,
};
use kappa_integration_tests::reference::{START, clicks, hourly_counts, produce_closed};
use kappa_integration_tests::{eventually, reference_job};
use kappa_job::template::KeyTemplate;
use kappa_runtime::TaskError;
use kappa_runtime::io::Sink;

const FILTER_50: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const FILTER_80: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 80";

#[test]
fn reference_job_upserts_hourly_counts_and_a_replay_overwrites_them() {
    let broker = Broker::start().expect("broker");
    let pg = Postgres::start().expect("postgres");
    pg.execute(HOURLY_TABLE).expect("create table");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let cluster =
        Cluster::local(4, &["--checkpoint-dir", root.to_str().unwrap()]).expect("kappa local");
    let data = clicks(20_000, 31, START, 6, 200);
    produce_closed(&broker, "user-behavior", 4, &data).expect("produce");
    let v1 = hourly_counts(&data, |u| u > 50);
    let v2 = hourly_counts(&data, |u| u > 80);

    // v1 without checkpoints: the sink writes what it buffered at least every second.
    let job_v1 = with_postgres_sink(
        &reference_job(&broker.bootstrap, "user-behavior", "-", FILTER_50, 2),
        &pg.url,
        "hourly_clicks",
    );
    let id1 = cluster
        .submit(&job_v1, &["--start", "earliest"])
        .expect("submit v1");
    let got = wait_rows(&pg, &v1, Duration::from_secs(120));
    cluster.assert_results(&id1, &got, &v1);
    assert!(cluster.kappactl(&["cancel", &id1]).status.success());
    cluster
        .wait_state(&id1, &["CANCELED"], Duration::from_secs(30))
        .expect("v1 cancelled");

    // The logic changes (users above 80) and the whole history is recomputed, now with
    // checkpoints (the sink commits at every barrier): every window of v2 overwrites its row;
    // a window without clicks under the new logic keeps its v1 row (nothing to overwrite it).
    let job_v2 = with_postgres_sink(
        &reference_job(&broker.bootstrap, "user-behavior", "-", FILTER_80, 2),
        &pg.url,
        "public.hourly_clicks",
    ) + "\n[checkpoints]\ninterval = \"300ms\"\n";
    let id2 = cluster
        .submit(&job_v2, &["--start", "earliest"])
        .expect("submit v2");
    let mut expected = v1.clone();
    expected.extend(v2.clone());
    assert!(
        v2.iter().any(|(k, c)| v1.get(k) != Some(c)),
        "v2 changes counts"
    );
    let got = wait_rows(&pg, &expected, Duration::from_secs(120));
    cluster.assert_results(&id2, &got, &expected);
    let detail = cluster.job(&id2).expect("status").to_string();
    assert!(!detail.contains(PASSWORD), "password shown: {detail}");
    assert!(
        !cluster.log_text().contains(PASSWORD),
        "password in the log:\n{}",
        cluster.log_text()
    );
    assert!(cluster.kappactl(&["cancel", &id2]).status.success());
}

/// A bounded job: clicks from a JSON-lines file, hourly counts into `table`.
fn file_job(input: &std::path::Path, url: &str, table: &str) -> String {
    let job = format!(
        r#"name = "pg-file"
parallelism = 2

[source]
connector = "file"
path = "{}"

[source.schema]
user_id = "string"
item_id = "string"
timestamp = "timestamp_ms"

[event_time]
column = "timestamp"
max_out_of_orderness = "10s"

[[steps]]
filter = "{FILTER_50}"

[window]
kind = "tumbling"
size = "1h"
key_by = ["item_id"]

[window.aggregates]
click_count = "count(*)"

[restart]
strategy = "none"

[sink]
"#,
        input.display()
    );
    with_postgres_sink(&job, url, table)
}

#[test]
fn a_bounded_job_has_every_row_committed_when_it_finishes() {
    let pg = Postgres::start().expect("postgres");
    pg.execute(HOURLY_TABLE).expect("create table");
    let cluster = Cluster::start(4).expect("kappa local");
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("clicks.jsonl");
    let data = clicks(15_000, 7, START, 5, 150);
    let lines: Vec<String> = data.iter().map(|c| c.json()).collect();
    std::fs::write(&input, lines.join("\n") + "\n").expect("write clicks");
    let id = cluster
        .submit(&file_job(&input, &pg.url, "hourly_clicks"), &[])
        .expect("submit");
    cluster
        .wait_state(&id, &["FINISHED"], Duration::from_secs(120))
        .expect("finished");
    // No polling: the final flush committed everything before the subtasks finished.
    let expected = hourly_counts(&data, |u| u > 50);
    cluster.assert_results(&id, &hourly_rows(&pg), &expected);
}

#[test]
fn a_missing_table_column_or_wrong_password_fails_the_job_saying_so() {
    let pg = Postgres::start().expect("postgres");
    pg.execute(
        "CREATE TABLE no_count (id text PRIMARY KEY, item_id text, window_start bigint, window_end bigint);
         CREATE TABLE no_key (id text, item_id text, window_start bigint, window_end bigint, click_count bigint);",
    )
    .expect("create tables");
    let cluster = Cluster::start(4).expect("kappa local");
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("clicks.jsonl");
    let lines: Vec<String> = clicks(100, 3, START, 1, 10)
        .iter()
        .map(|c| c.json())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").expect("write clicks");
    let host = format!("127.0.0.1:{}/kappa_test", pg.port);
    let wrong_password = pg.url.replace(PASSWORD, "not-the-password");
    let cases = [
        (
            pg.url.clone(),
            "hourly_clicks",
            vec![
                "table `hourly_clicks` does not exist".to_string(),
                format!("postgres at {host}"),
                "create it with `id` as its primary key, e.g. CREATE TABLE hourly_clicks (id text PRIMARY KEY, item_id text, window_start bigint, window_end bigint, click_count bigint)".into(),
            ],
            1,
        ),
        (
            pg.url.clone(),
            "no_count",
            vec![
                "table `no_count` has no column `click_count` (bigint)".to_string(),
                "; the table has id, item_id, window_start, window_end (postgres at".into(),
            ],
            1,
        ),
        (
            pg.url.clone(),
            "no_key",
            vec!["table `no_key` needs a primary key (or unique constraint) on `id`".to_string()],
            1,
        ),
        (
            wrong_password,
            "hourly_clicks",
            vec![
                format!("cannot connect to postgres at {host}: "),
                "password authentication failed for user \"kappa\"".into(),
            ],
            2,
        ),
    ];
    for (url, table, messages, attempts) in cases {
        let mut job = file_job(&input, &url, table);
        if attempts > 1 {
            // A connection failure is retried by the restart strategy.
            job = job.replace(
                "strategy = \"none\"",
                "strategy = \"fixed-delay\"\ndelay = \"100ms\"\nmax_attempts = 1",
            );
        }
        let id = cluster.submit(&job, &[]).expect("submit");
        let detail = cluster
            .wait_state(&id, &["FAILED"], Duration::from_secs(60))
            .expect("failed");
        let error = detail["error"].as_str().unwrap_or_default();
        eprintln!("{table}: {error}");
        for m in &messages {
            assert!(error.contains(m.as_str()), "`{m}` not in: {error}");
        }
        assert!(!detail.to_string().contains(PASSWORD), "{detail}");
        assert!(!error.contains("not-the-password"), "{error}");
        assert_eq!(
            detail["attempts"].as_array().map(Vec::len),
            Some(attempts),
            "{table}: {detail}"
        );
    }
}

fn typed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("n", DataType::Int64, true),
        Field::new("big", DataType::Int64, true),
        Field::new("f", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("tsl", DataType::Int64, true),
        Field::new("ms", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("label", DataType::Int64, true),
    ]))
}

/// Rows with keys `keys` and every value derived from `v` (n null when v is odd).
fn typed_batch(keys: &[&str], v: i64) -> RecordBatch {
    let n = keys.len();
    RecordBatch::try_new(
        typed_schema(),
        vec![
            Arc::new(StringArray::from(keys.to_vec())),
            Arc::new(Int64Array::from(vec![(v % 2 == 0).then_some(v); n])),
            Arc::new(Int64Array::from(vec![Some(v * 1_000_000_007); n])),
            Arc::new(Float64Array::from(vec![Some(v as f64 + 0.25); n])),
            Arc::new(StringArray::from(vec![Some(format!("v{v}")); n])),
            Arc::new(BooleanArray::from(vec![Some(v % 2 == 0); n])),
            Arc::new(TimestampMillisecondArray::from(vec![Some(START + v); n])),
            Arc::new(Int64Array::from(vec![Some(START + 2 * v); n])),
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(START + 3 * v);
                n
            ])),
            Arc::new(Int64Array::from(vec![Some(v); n])),
        ],
    )
    .expect("batch")
}

/// The typed table as id → its values, timestamps as epoch ms.
fn typed_rows(pg: &Postgres) -> BTreeMap<String, String> {
    let mut client = pg.client().expect("client");
    client
        .query(
            "SELECT id, concat_ws('|', coalesce(n::text, 'null'), big::text, f::text, s, b::text,
                (extract(epoch FROM ts) * 1000)::bigint::text,
                (extract(epoch FROM tsl) * 1000)::bigint::text, ms::text, label, extra)
             FROM app.typed",
            &[],
        )
        .expect("query")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn expected_typed(v: i64) -> String {
    let n = if v % 2 == 0 {
        v.to_string()
    } else {
        "null".into()
    };
    format!(
        "{n}|{}|{}|v{v}|{}|{}|{}|{}|{v}|untouched",
        v * 1_000_000_007,
        v as f64 + 0.25,
        v % 2 == 0,
        START + v,
        START + 2 * v,
        START + 3 * v
    )
}

#[test]
fn the_sink_converts_types_keeps_the_last_value_per_id_and_commits_per_flush() {
    let pg = Postgres::start().expect("postgres");
    pg.execute(
        "CREATE SCHEMA app;
         CREATE TABLE app.typed (
            id varchar(40) PRIMARY KEY, k text, n integer, big numeric(30), f double precision,
            s varchar(20), b boolean, ts timestamptz, tsl timestamp, ms bigint, label text,
            extra text NOT NULL DEFAULT 'untouched');",
    )
    .expect("create table");
    // The server's session time zone must not shift a timestamp column.
    pg.execute("ALTER DATABASE kappa_test SET timezone = 'UTC'")
        .expect("timezone");
    let schema = typed_schema();
    let key = KeyTemplate::parse("row-{k}", &schema).expect("key");
    let mut sink = PostgresSink::open(&pg.url, None, "app.typed", key, &schema).expect("open");

    // Within a flush the last row of an id wins (a single upsert may not touch a row twice).
    sink.write(&typed_batch(&["a", "b"], 1)).expect("write");
    sink.write(&typed_batch(&["a"], 2)).expect("write");
    assert!(
        typed_rows(&pg).is_empty(),
        "nothing is visible before a flush"
    );
    sink.flush().expect("flush");
    let rows = typed_rows(&pg);
    assert_eq!(rows["row-a"], expected_typed(2));
    assert_eq!(rows["row-b"], expected_typed(1));

    // A later flush updates the written columns of existing ids and leaves other columns.
    sink.write(&typed_batch(&["b", "c"], 4)).expect("write");
    sink.flush().expect("flush");
    let rows = typed_rows(&pg);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows["row-a"], expected_typed(2));
    assert_eq!(rows["row-b"], expected_typed(4));
    assert_eq!(rows["row-c"], expected_typed(4));

    // Rows buffered longer than the flush interval are written when the task is idle: not at
    // once, but by a later check.
    sink.write(&typed_batch(&["d"], 5)).expect("write");
    sink.check().expect("check");
    assert!(
        !typed_rows(&pg).contains_key("row-d"),
        "written before the interval"
    );
    let written = eventually(
        "row-d flushed by an idle check",
        Duration::from_secs(10),
        || {
            sink.check().map_err(|e| e.to_string())?;
            typed_rows(&pg)
                .get("row-d")
                .cloned()
                .ok_or_else(|| "not yet".to_string())
        },
    )
    .expect("flushed");
    assert_eq!(written, expected_typed(5));

    // Many rows: several statements (and an early flush) in transactions.
    let keys: Vec<String> = (0..12_345).map(|i| format!("many-{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    for chunk in refs.chunks(1_000) {
        sink.write(&typed_batch(chunk, 6)).expect("write");
    }
    sink.flush().expect("flush");
    let rows = typed_rows(&pg);
    assert_eq!(rows.len(), 4 + keys.len());
    assert!(
        keys.iter()
            .all(|k| rows[&format!("row-{k}")] == expected_typed(6))
    );

    // A value the column cannot hold fails the flush as a data error naming the table, and
    // the failed transaction leaves nothing behind.
    sink.write(&typed_batch(&["e"], 7)).expect("write");
    sink.write(&typed_batch(&["f"], 3_000_000_000))
        .expect("write");
    let err = sink.flush().expect_err("integer out of range");
    let TaskError::Data(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("into `app.typed`"), "{msg}");
    assert!(msg.contains("out of range"), "{msg}");
    assert!(!typed_rows(&pg).contains_key("row-e"));
}

#[test]
fn the_sink_refuses_a_column_of_an_incompatible_type() {
    let pg = Postgres::start().expect("postgres");
    pg.execute("CREATE TABLE t (id text PRIMARY KEY, k text, n boolean, big bigint, f real, s text, b boolean, ts timestamptz, tsl timestamp, ms bigint, label text)")
        .expect("create table");
    let schema = typed_schema();
    let key = KeyTemplate::parse("{k}", &schema).expect("key");
    let err = PostgresSink::open(&pg.url, None, "t", key, &schema)
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .starts_with("table `t`: column `n` is boolean but the output column is Int64"),
        "{err}"
    );
    assert!(matches!(err, TaskError::Data(_)));
    assert!(!err.to_string().contains(PASSWORD));
}
