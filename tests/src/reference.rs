//! Click events for the tests and the hourly counts they must yield, computed here with plain
//! Rust maps, independently of Kappa's engine.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const HOUR: i64 = 3_600_000;

#[derive(Debug, Clone)]
pub struct Click {
    pub user: u32,
    pub item: u32,
    pub timestamp: i64,
}

impl Click {
    pub fn json(&self) -> String {
        format!(
            r#"{{"user_id":"user_{}","item_id":"item_{}","timestamp":{}}}"#,
            self.user, self.item, self.timestamp
        )
    }
}

/// `n` clicks over `hours` hours from `start`, up to 5 s out of order, 100 users, `items` items.
pub fn clicks(n: usize, seed: u64, start: i64, hours: i64, items: u32) -> Vec<Click> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| Click {
            user: rng.random_range(1..=100),
            item: rng.random_range(1..=items),
            timestamp: start + (i as i64) * hours * HOUR / n as i64 - rng.random_range(0..5_000),
        })
        .collect()
}

/// (item_id, window_end) → clicks of users passing `keep`, in 1-hour tumbling windows.
pub fn hourly_counts(clicks: &[Click], keep: impl Fn(u32) -> bool) -> BTreeMap<(String, i64), i64> {
    let mut out = BTreeMap::new();
    for c in clicks.iter().filter(|c| keep(c.user)) {
        let end = c.timestamp - c.timestamp.rem_euclid(HOUR) + HOUR;
        *out.entry((format!("item_{}", c.item), end)).or_insert(0) += 1;
    }
    out
}

/// Panics naming the record unless every sink record carries its window's final count:
/// a window emitted before all its clicks were counted, or counted twice, shows here.
pub fn assert_final_counts(
    records: &[crate::broker::Record],
    expected: &BTreeMap<(String, i64), i64>,
) {
    for r in records {
        let v: serde_json::Value = serde_json::from_str(&r.value).expect("a JSON record");
        let key = (
            v["item_id"].as_str().unwrap_or_default().to_string(),
            v["window_end"].as_i64().unwrap_or_default(),
        );
        assert_eq!(
            Some(&v["click_count"].as_i64().unwrap_or(-1)),
            expected.get(&key),
            "{r:?}"
        );
    }
}

/// Sink records as (item_id, window_end) → click_count; the latest record of a key wins.
pub fn latest_per_key(
    records: &[crate::broker::Record],
) -> anyhow::Result<BTreeMap<(String, i64), i64>> {
    let mut out = BTreeMap::new();
    for r in records {
        let v: serde_json::Value = serde_json::from_str(&r.value)?;
        let item = v["item_id"].as_str().unwrap_or_default().to_string();
        let end = v["window_end"].as_i64().unwrap_or_default();
        let start = v["window_start"].as_i64().unwrap_or_default();
        anyhow::ensure!(
            end - start == HOUR,
            "window of {} is not one hour: {}",
            item,
            r.value
        );
        let key = format!("{item}-{end}");
        anyhow::ensure!(
            r.key.as_deref() == Some(key.as_str()),
            "record key {:?} should be {key}",
            r.key
        );
        out.insert((item, end), v["click_count"].as_i64().unwrap_or_default());
    }
    Ok(out)
}

/// The clicks as a JSON-lines file's text, for file sources.
pub fn json_lines(data: &[Click]) -> String {
    data.iter().map(|c| c.json() + "\n").collect()
}

/// The clicks as records spread round-robin over `partitions` partitions.
pub fn spread(data: &[Click], partitions: i32) -> Vec<(i32, String)> {
    data.iter()
        .enumerate()
        .map(|(i, c)| (i as i32 % partitions, c.json()))
        .collect()
}

/// One click of user_1 (filtered out by every job of the tests) per partition, two hours after
/// the last of `data`, so every window of the data closes.
pub fn closing(data: &[Click], partitions: i32) -> Vec<(i32, String)> {
    closing_after(data, partitions, 2 * HOUR)
}

/// Like [`closing`], `after` past the last click (longer windows need longer).
pub fn closing_after(data: &[Click], partitions: i32, after: i64) -> Vec<(i32, String)> {
    let last = data.iter().map(|c| c.timestamp).max().unwrap_or(0);
    (0..partitions)
        .map(|p| {
            let c = Click {
                user: 1,
                item: 1,
                timestamp: last + after,
            };
            (p, c.json())
        })
        .collect()
}

/// `rest` spread over `partitions`, followed by the records closing every window of `data`.
pub fn rest_and_closing(rest: &[Click], data: &[Click], partitions: i32) -> Vec<(i32, String)> {
    let mut records = spread(rest, partitions);
    records.extend(closing(data, partitions));
    records
}

/// Produces the clicks round-robin over `partitions` partitions of a new topic, then the
/// records that close every window.
pub fn produce_closed(
    broker: &crate::broker::Broker,
    topic: &str,
    partitions: i32,
    data: &[Click],
) -> anyhow::Result<()> {
    broker.create_topic(topic, partitions)?;
    broker.produce(topic, &rest_and_closing(data, data, partitions))
}

/// The start of the tests' event time: a whole hour.
pub const START: i64 = 1_732_500_000_000 - 1_732_500_000_000 % HOUR;

/// Creates the topics `clicks` (4 partitions) and `out` (the sink's) and produces the first
/// half of `events` generated clicks (6 hours, 200 items); returns every click and where the
/// second half starts.
pub fn first_half_produced(
    broker: &crate::broker::Broker,
    events: usize,
    seed: u64,
) -> anyhow::Result<(Vec<Click>, usize)> {
    let data = clicks(events, seed, START, 6, 200);
    let half = produce_first_half(broker, &data)?;
    Ok((data, half))
}

/// Creates the topics `clicks` (4 partitions) and `out` (the sink's) and produces the first
/// half of `data`; returns where the second half starts.
pub fn produce_first_half(broker: &crate::broker::Broker, data: &[Click]) -> anyhow::Result<usize> {
    let half = data.len() / 2;
    broker.create_topic("clicks", 4)?;
    broker.produce("clicks", &spread(&data[..half], 4))?;
    broker.create_topic("out", crate::SINK_PARTITIONS)?;
    Ok(half)
}

/// The JSON lines of the committed (visible) part files of a file sink directory.
pub fn part_file_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("sink directory") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("part file").lines() {
            lines.push(serde_json::from_str(line).expect("json line"));
        }
    }
    lines
}

/// The rows and the hourly counts in the committed (visible) part files of a file sink
/// directory; a window written twice counts once in the map and twice in the rows.
pub fn part_file_counts(dir: &std::path::Path) -> (usize, BTreeMap<(String, i64), i64>) {
    let lines = part_file_lines(dir);
    let out = lines
        .iter()
        .map(|v| {
            let key = (
                v["item_id"].as_str().unwrap().to_string(),
                v["window_end"].as_i64().unwrap(),
            );
            (key, v["click_count"].as_i64().unwrap())
        })
        .collect();
    (lines.len(), out)
}

/// The reference job (no filter) over JSON-lines files in `input` (a file or a directory) into a
/// file sink in `output` with `delivery`, at parallelism 2; append tables to it as needed.
pub fn file_job(input: &std::path::Path, output: &std::path::Path, delivery: &str) -> String {
    file_job_with(input, output, delivery, r#"{ click_count = "count(*)" }"#)
}

/// [`file_job`] with other hourly aggregates of the clicks by item (a TOML inline table).
pub fn file_job_with(
    input: &std::path::Path,
    output: &std::path::Path,
    delivery: &str,
    aggregates: &str,
) -> String {
    format!(
        r#"name = "hourly-item-clicks-from-files"
parallelism = 2

[source]
connector = "file"
path = "{}"
format = "json"
schema = {{ user_id = "string", item_id = "string", timestamp = "timestamp_ms" }}

[event_time]
column = "timestamp"
max_out_of_orderness = "10s"

[window]
kind = "tumbling"
size = "1h"
key_by = ["item_id"]
aggregates = {aggregates}

[sink]
connector = "file"
path = "{}"
format = "json"
delivery = "{delivery}"
"#,
        input.display(),
        output.display()
    )
}

/// [`file_job_with`] into an exactly-once file sink, checkpointing every 100 ms and restarted
/// 100 ms after a failure.
pub fn checkpointed_file_job(
    input: &std::path::Path,
    output: &std::path::Path,
    aggregates: &str,
) -> String {
    file_job_with(input, output, "exactly-once", aggregates)
        + r#"
[restart]
strategy = "fixed-delay"
delay = "100ms"

[checkpoints]
interval = "100ms"
"#
}

/// A jobmanager checkpointing under `dir`, whose jobs may read and write under `dir` only,
/// with a taskmanager of 4 slots where every subtask fails once, right after the first
/// checkpoint it sees completed: a job restarts from that checkpoint in the middle of its
/// input.
pub fn failing_after_first_checkpoint(
    dir: &std::path::Path,
) -> (crate::cluster::Cluster, crate::cluster::Process) {
    let chk = dir.join("checkpoints");
    let allowed = dir.to_str().expect("utf-8 path");
    let cluster = crate::cluster::Cluster::jobmanager(&[
        "--checkpoint-dir",
        chk.to_str().expect("utf-8 path"),
        "--allow-path",
        allowed,
    ])
    .expect("jobmanager");
    let failpoint = (
        "FAILPOINTS",
        "subtask-checkpoint-completed=1*return".to_string(),
    );
    let tm = cluster
        .taskmanager_with(4, &["--allow-path", allowed], &[failpoint])
        .expect("taskmanager");
    (cluster, tm)
}

/// Submits `job` to a [`failing_after_first_checkpoint`] cluster and waits until it finishes,
/// restarted from a checkpoint; its id.
pub fn finish_restored(cluster: &crate::cluster::Cluster, job: &str) -> String {
    let id = cluster.submit(job, &[]).expect("submit");
    let done = cluster
        .wait_state(&id, &["FINISHED"], std::time::Duration::from_secs(180))
        .expect("the job to finish");
    let attempts = done["attempts"].as_array().expect("attempts");
    assert!(
        attempts.len() >= 2 && attempts[1]["restored_from"].is_u64(),
        "the failure after the first checkpoint restarted the job from it: {attempts:?}"
    );
    id
}

/// A named Kafka source of the reference clicks (event time with 10 s of disorder, idle after
/// 2 s), as a job file table.
pub fn clicks_source(name: &str, bootstrap: &str, topic: &str) -> String {
    format!(
        r#"
[sources.{name}]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
schema = {{ user_id = "string", item_id = "string", timestamp = "timestamp_ms" }}
event_time = {{ column = "timestamp", max_out_of_orderness = "10s", idle_timeout = "2s" }}
"#
    )
}
