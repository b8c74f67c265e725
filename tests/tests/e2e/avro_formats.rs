//! Record formats against a real broker: the reference job reading its clicks as bare Avro
//! (an inline schema; the records encoded by the connector's own encoder) gives exactly the
//! reference's hourly counts, a record that is not Avro skipped by `on_error`; a `string`
//! source copied to a `string` sink keeps every line as it was, a value that is not UTF-8
//! skipped.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use kappa_connectors::format::avro::AvroEncoder;
use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{
    Click, HOUR, START, clicks, hourly_counts, latest_per_key,
};
use kappa_integration_tests::{SINK_PARTITIONS, eventually, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

const CLICK_AVRO: &str = r#"{"type":"record","name":"click","fields":[{"name":"user_id","type":"string"},{"name":"item_id","type":"string"},{"name":"timestamp","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;

/// The clicks as bare Avro records, one per click, in order.
fn avro_records(data: &[Click]) -> Vec<Vec<u8>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                data.iter().map(|c| format!("user_{}", c.user)),
            )),
            Arc::new(StringArray::from_iter_values(
                data.iter().map(|c| format!("item_{}", c.item)),
            )),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                data.iter().map(|c| c.timestamp),
            )),
        ],
    )
    .expect("a batch");
    let mut encoder = AvroEncoder::new(CLICK_AVRO, None).expect("the schema");
    encoder.encode(&batch).expect("Avro records")
}

#[test]
fn the_reference_job_reads_avro_clicks_exactly_and_skips_a_record_that_is_not_avro() {
    let broker = Broker::start().expect("broker");
    broker.create_topic("clicks-avro", 4).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let data = clicks(8_000, 71, START, 3, 50);
    // Records that close the last windows, one per partition.
    let last = data.iter().map(|c| c.timestamp).max().unwrap_or(START);
    let closing: Vec<Click> = (0..4)
        .map(|_| Click {
            user: 1,
            item: 1,
            timestamp: last + 2 * HOUR,
        })
        .collect();
    let encoded = avro_records(&data);
    let closers = avro_records(&closing);
    let mut records: Vec<(i32, &[u8])> = vec![(0, b"not avro at all".as_slice())];
    records.extend(
        encoded
            .iter()
            .enumerate()
            .map(|(i, r)| (i as i32 % 4, r.as_slice())),
    );
    records.extend(
        closers
            .iter()
            .enumerate()
            .map(|(p, r)| (p as i32, r.as_slice())),
    );
    broker
        .produce_bytes("clicks-avro", &records)
        .expect("produce");

    let job = reference_job(&broker.bootstrap, "clicks-avro", "out", FILTER, 2).replacen(
        "format = \"json\"",
        &format!("format = \"avro\"\navro_schema = '{CLICK_AVRO}'\non_error = \"skip\""),
        1,
    );
    let cluster = Cluster::start(4).expect("cluster");
    let id = cluster
        .submit(&job, &["--start", "earliest"])
        .expect("submit");
    let expected = hourly_counts(&data, |u| u > 50);
    let got = broker
        .read_results("out", &expected, Duration::from_secs(120))
        .expect("read");
    let got = latest_per_key(&got).expect("results");
    cluster.assert_results(&id, &got, &expected);
}

#[test]
fn a_string_source_copied_to_a_string_sink_keeps_every_line_and_skips_one_that_is_not_utf8() {
    let broker = Broker::start().expect("broker");
    broker.create_topic("lines", 1).expect("topic");
    broker.create_topic("copy", 1).expect("topic");
    let lines: Vec<String> = (0..200)
        .map(|i| format!("line {i}: {{not json}}, \"quoted\""))
        .collect();
    let mut records: Vec<(i32, &[u8])> = lines.iter().map(|l| (0, l.as_bytes())).collect();
    records.insert(100, (0, b"\xff\xfe not utf-8".as_slice()));
    broker.produce_bytes("lines", &records).expect("produce");
    let job = format!(
        r#"name = "copy-lines"
parallelism = 1

[source]
connector = "kafka"
bootstrap_servers = "{b}"
topic = "lines"
format = "string"
on_error = "skip"

[sink]
connector = "kafka"
bootstrap_servers = "{b}"
topic = "copy"
format = "string"
"#,
        b = broker.bootstrap
    );
    let cluster = Cluster::start(2).expect("cluster");
    cluster
        .submit(&job, &["--start", "earliest"])
        .expect("submit");
    let copied = eventually("the copy", Duration::from_secs(60), || {
        let read = broker
            .read("copy", 1, Duration::from_secs(5), |r| {
                r.len() >= lines.len()
            })
            .map_err(|e| e.to_string())?;
        let values: Vec<String> = read.into_iter().map(|r| r.value).collect();
        match values.len() >= lines.len() {
            true => Ok(values),
            false => Err(format!("{} of {} lines", values.len(), lines.len())),
        }
    })
    .unwrap();
    assert_eq!(
        copied, lines,
        "every line as it was, in order, the bad one skipped"
    );
}
