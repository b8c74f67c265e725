//! Records of 10 MB: valid ones are counted, crossing between taskmanagers in one exchange
//! frame far above gRPC's 4 MiB default; an invalid one is skipped and counted; one too large
//! for the sink's producer fails the job with the record's size and the setting to raise,
//! instead of restarting forever.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{Click, START, clicks, closing, hourly_counts};
use kappa_integration_tests::{SINK_PARTITIONS, eventually, reference_job};
use kappa_job::{Overrides, plan_job};
use kappa_runtime::keyed::KeyPartitioner;

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const BIG: usize = 10 << 20;

/// A valid click of about 10 MB: its user id carries the padding (and still passes FILTER).
fn big_click(item: u32, timestamp: i64) -> String {
    format!(
        r#"{{"user_id":"user_77_{}","item_id":"item_{item}","timestamp":{timestamp}}}"#,
        "x".repeat(BIG)
    )
}

/// The window subtask (of 2) each of `items` is sent to, as the job's keyed exchange does it.
fn window_subtask(job: &str, items: &[u32]) -> Vec<usize> {
    let plan = plan_job("job.toml", job, &Overrides::default()).expect("plan");
    let partitioner =
        KeyPartitioner::new(&plan.windows[0].keys, plan.max_parallelism, 2).expect("partitioner");
    let json: String = items
        .iter()
        .map(|&item| {
            Click {
                user: 77,
                item,
                timestamp: START,
            }
            .json()
                + "\n"
        })
        .collect();
    let batch = arrow::json::ReaderBuilder::new(Arc::clone(&plan.stages[0].schema))
        .build(Cursor::new(json))
        .expect("reader")
        .next()
        .expect("a batch")
        .expect("decoded");
    let mut target = vec![0; items.len()];
    for (subtask, part) in partitioner.split(&batch).expect("split") {
        let column = part
            .column_by_name("item_id")
            .expect("item_id")
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("strings");
        for name in column.iter().flatten() {
            let item: u32 = name["item_".len()..].parse().expect("item number");
            target[items.iter().position(|&i| i == item).expect("an item")] = subtask;
        }
    }
    target
}

#[test]
fn ten_megabyte_records_are_counted_across_taskmanagers_or_skipped_when_invalid() {
    let broker = Broker::start().expect("broker");
    broker.create_topic("big", 2).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let cluster = Cluster::jobmanager(&[]).expect("jobmanager");
    let _tms: Vec<_> = (0..2)
        .map(|_| cluster.taskmanager(1).expect("taskmanager"))
        .collect();
    let job = reference_job(&broker.bootstrap, "big", "out", FILTER, 2).replace(
        "start = \"earliest\"",
        "start = \"earliest\"\non_error = \"skip\"",
    );
    // One big click per partition for each window subtask: whichever taskmanager reads a
    // partition, one of its big clicks goes to the other taskmanager.
    let items: Vec<u32> = (1..=20).collect();
    let targets = window_subtask(&job, &items);
    let big_items: Vec<u32> = (0..2)
        .map(|s| {
            items[targets
                .iter()
                .position(|&t| t == s)
                .expect("an item per subtask")]
        })
        .collect();
    let mut data = clicks(2_000, 23, START, 2, 20);
    let mut records: Vec<(i32, String)> = data
        .iter()
        .enumerate()
        .map(|(i, c)| ((i % 2) as i32, c.json()))
        .collect();
    // After every other click, so that the watermark has not passed their windows.
    let last = data.iter().map(|c| c.timestamp).max().unwrap_or(START);
    for partition in 0..2 {
        for &item in &big_items {
            let t = last + i64::from(item);
            records.push((partition, big_click(item, t)));
            data.push(Click {
                user: 77,
                item,
                timestamp: t,
            });
        }
    }
    // Invalid JSON of 10 MB: skipped, and the job goes on.
    records.push((1, format!("{{\"user_id\": \"{}", "y".repeat(BIG))));
    broker.produce("big", &records).expect("produce");
    broker
        .produce("big", &closing(&data, 2))
        .expect("produce closing");
    let id = cluster.submit(&job, &[]).expect("submit");

    let expected = hourly_counts(&data, |u| u > 50);
    let out = broker
        .read_results("out", &expected, Duration::from_secs(120))
        .expect("read");
    let got = kappa_integration_tests::reference::latest_per_key(&out).expect("records");
    cluster.assert_results(&id, &got, &expected);
    let d = eventually("the bad record counted", Duration::from_secs(30), || {
        let d = cluster.job(&id).map_err(|e| e.to_string())?;
        (d["vertices"][0]["bad_records_skipped"] == 1)
            .then_some(d.clone())
            .ok_or_else(|| format!("{}", d["vertices"][0]))
    })
    .unwrap();
    assert_eq!(d["state"], "RUNNING", "{d}");
    assert_eq!(
        d["attempts"].as_array().map(Vec::len),
        Some(1),
        "no restart: {d}"
    );
}

#[test]
fn a_result_too_large_for_the_sink_fails_the_job_once_with_the_setting_to_raise() {
    let broker = Broker::start().expect("broker");
    broker.create_topic("big", 1).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let cluster = Cluster::start(2).expect("kappa local");
    // An item id of 10 MB becomes a window row, and a sink record, of twice that.
    let item = format!("item_{}", "z".repeat(BIG));
    let click = |t: i64| format!(r#"{{"user_id":"user_77","item_id":"{item}","timestamp":{t}}}"#);
    broker
        .produce("big", &[(0, click(START)), (0, click(START + 7_200_000))])
        .expect("produce");
    let id = cluster
        .submit(
            &reference_job(&broker.bootstrap, "big", "out", FILTER, 1),
            &[],
        )
        .expect("submit");
    // A record too large is not retried.
    let (_, error) = cluster
        .failed_once(&id, Duration::from_secs(60))
        .expect("failed");
    assert!(
        error.contains("bytes is too large for topic `out`")
            && error.contains("raise `message.max.bytes`"),
        "{}",
        &error[..error.len().min(2_000)]
    );
    assert!(error.len() < 4_000, "the error does not echo the record");
}
