//! Dataflow graphs beyond one source, one window and one sink, on a jobmanager with two
//! taskmanagers, a real broker and a real PostgreSQL: two Kafka sources unioned into one
//! window whose result fans out to a Kafka sink and a PostgreSQL sink while its late events
//! reach a file sink; and a two-stage aggregation (hourly counts, then the busiest hour per
//! day). A taskmanager is killed with SIGKILL in the middle of each; checkpoints are on; the
//! results are exactly the independently computed ones.

use std::collections::BTreeMap;
use std::time::Duration;

use kappa_integration_tests::broker::{Broker, Record};
use kappa_integration_tests::eventually;
use kappa_integration_tests::postgres::{HOURLY_TABLE, Postgres, wait_rows};
use kappa_integration_tests::recovery::{
    RECOVERY, cluster, first_checkpoint, kill_a_taskmanager, late_clicks, late_lines,
};
use kappa_integration_tests::reference::{
    Click, HOUR, START, clicks, clicks_source, closing_after, hourly_counts, latest_per_key, spread,
};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const DAY: i64 = 24 * HOUR;

/// The first window of both jobs: clicks per item and hour.
const HOURLY: &str = r#"[[windows]]
uid = "hourly"
kind = "tumbling"
size = "1h"
key_by = ["item_id"]
aggregates = { click_count = "count(*)" }
"#;

#[test]
fn two_sources_fan_out_to_kafka_and_postgres_and_late_events_reach_their_sink() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Broker::start().expect("broker");
    let mut pg = Postgres::start().expect("postgres");
    pg.execute(HOURLY_TABLE).expect("table");
    let data = clicks(16_000, 41, START, 6, 100);
    let share = |web: bool| -> Vec<Click> {
        data.iter()
            .enumerate()
            .filter(|(i, _)| (i % 3 != 0) == web)
            .map(|(_, c)| c.clone())
            .collect()
    };
    let (web, app) = (share(true), share(false));
    for topic in ["clicks-web", "clicks-app"] {
        broker.create_topic(topic, 2).expect("topic");
    }
    broker.create_topic("out", 4).expect("topic");
    let (web_half, app_half) = (web.len() / 2, app.len() / 2);
    broker
        .produce("clicks-web", &spread(&web[..web_half], 2))
        .expect("produce");
    broker
        .produce("clicks-app", &spread(&app[..app_half], 2))
        .expect("produce");

    let (cluster, mut tms) = cluster(dir.path());
    let late_dir = dir.path().join("late");
    let job = format!(
        r#"name = "web-and-app"
parallelism = 2
{web}{app}
[[steps]]
filter = "{FILTER}"

{hourly}late_output = "late"

[sinks.kafka]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "out"
key = "{{item_id}}-{{window_end}}"
partitioner = "fixed"

[sinks.pg]
connector = "postgres"
url = "{url}"
table = "hourly_clicks"
key = "{{item_id}}-{{window_end}}"

[sinks.late]
connector = "file"
path = "{late}"

{recovery}"#,
        recovery = RECOVERY,
        hourly = HOURLY,
        web = clicks_source("web", &broker.bootstrap, "clicks-web"),
        app = clicks_source("app", &broker.bootstrap, "clicks-app"),
        bootstrap = broker.bootstrap,
        url = pg.url,
        late = late_dir.display(),
    );
    let id = cluster.submit(&job, &[]).expect("submit");
    let d = cluster.job(&id).expect("detail");
    let names: Vec<&str> = d["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, ["app", "web", "hourly"], "{d}");

    first_checkpoint(&cluster, &id);
    kill_a_taskmanager(&cluster, &mut tms, &id);

    broker
        .produce("clicks-web", &spread(&web[web_half..], 2))
        .expect("produce");
    broker
        .produce("clicks-app", &spread(&app[app_half..], 2))
        .expect("produce");
    for topic in ["clicks-web", "clicks-app"] {
        broker
            .produce(topic, &closing_after(&data, 2, 2 * HOUR))
            .expect("closing");
    }
    let expected = hourly_counts(&data, |u| u > 50);
    let got = broker
        .read("out", 4, Duration::from_secs(120), |r| {
            latest_per_key(r).is_ok_and(|m| m == expected)
        })
        .expect("read");
    cluster.assert_results(&id, &latest_per_key(&got).expect("records"), &expected);
    let rows = wait_rows(&pg, &expected, Duration::from_secs(60));
    cluster.assert_results(&id, &rows, &expected);

    // Events of the first hour, long closed, reach the late sink with the window they missed
    // and are counted.
    broker
        .produce("clicks-app", &spread(&late_clicks(37), 2))
        .expect("late");
    late_lines(&late_dir, 37);
    eventually("the late counter", Duration::from_secs(10), || {
        let d = cluster.job(&id).map_err(|e| e.to_string())?;
        let late = d["vertices"][2]["late_records_dropped"].clone();
        (late == 37).then_some(()).ok_or_else(|| late.to_string())
    })
    .unwrap();
    assert_eq!(
        latest_per_key(
            &broker
                .read("out", 4, Duration::from_secs(5), |_| false)
                .expect("read")
        )
        .expect("records"),
        expected,
        "late events change no result"
    );
    pg.stop();
}

/// (item_id, day end) → the largest hourly count of the item that day.
fn daily_max(hourly: &BTreeMap<(String, i64), i64>) -> BTreeMap<(String, i64), i64> {
    let mut out: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for ((item, end), n) in hourly {
        let start = end - HOUR;
        let day_end = start - start.rem_euclid(DAY) + DAY;
        let e = out.entry((item.clone(), day_end)).or_insert(0);
        *e = (*e).max(*n);
    }
    out
}

/// Sink records of the daily stage: (item_id, window_end) → max_hourly, latest record wins.
fn daily_records(records: &[Record]) -> BTreeMap<(String, i64), i64> {
    let mut out = BTreeMap::new();
    for r in records {
        let v: serde_json::Value = serde_json::from_str(&r.value).expect("json");
        let (start, end) = (
            v["window_start"].as_i64().unwrap_or_default(),
            v["window_end"].as_i64().unwrap_or_default(),
        );
        assert_eq!(end - start, DAY, "a day window: {}", r.value);
        let item = v["item_id"].as_str().unwrap_or_default().to_string();
        assert_eq!(r.key.as_deref(), Some(format!("{item}-{end}").as_str()));
        out.insert((item, end), v["max_hourly"].as_i64().unwrap_or(-1));
    }
    out
}

#[test]
fn a_two_stage_aggregation_is_exact_across_a_taskmanager_kill() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Broker::start().expect("broker");
    // Three days of clicks over 40 items.
    let data = clicks(24_000, 43, START, 72, 40);
    let half = data.len() / 2;
    broker.create_topic("clicks", 4).expect("topic");
    broker.create_topic("out", 4).expect("topic");
    broker
        .produce("clicks", &spread(&data[..half], 4))
        .expect("produce");
    let (cluster, mut tms) = cluster(dir.path());
    let job = format!(
        r#"name = "busiest-hour"
parallelism = 2

[source]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "clicks"

[source.schema]
user_id = "string"
item_id = "string"
timestamp = "timestamp_ms"

[event_time]
column = "timestamp"
max_out_of_orderness = "10s"
idle_timeout = "2s"

[[steps]]
filter = "{FILTER}"

{hourly}
[[windows]]
uid = "daily-max"
kind = "tumbling"
size = "1d"
key_by = ["item_id"]
aggregates = {{ max_hourly = "max(click_count)" }}

[sink]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "out"
key = "{{item_id}}-{{window_end}}"
partitioner = "fixed"

{recovery}"#,
        recovery = RECOVERY,
        hourly = HOURLY,
        bootstrap = broker.bootstrap,
    );
    let id = cluster.submit(&job, &[]).expect("submit");
    let d = cluster.job(&id).expect("detail");
    assert_eq!(
        d["vertices"].as_array().map(Vec::len),
        Some(3),
        "source, hourly window, daily window: {d}"
    );
    first_checkpoint(&cluster, &id);
    kill_a_taskmanager(&cluster, &mut tms, &id);

    broker
        .produce("clicks", &spread(&data[half..], 4))
        .expect("produce");
    broker
        .produce("clicks", &closing_after(&data, 4, 2 * DAY))
        .expect("closing");
    let expected = daily_max(&hourly_counts(&data, |u| u > 50));
    assert!(expected.len() > 100, "{} daily results", expected.len());
    let got = broker
        .read("out", 4, Duration::from_secs(120), |r| {
            let mut m = BTreeMap::new();
            for rec in r {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&rec.value) else {
                    return false;
                };
                m.insert(
                    (
                        v["item_id"].as_str().unwrap_or_default().to_string(),
                        v["window_end"].as_i64().unwrap_or_default(),
                    ),
                    v["max_hourly"].as_i64().unwrap_or(-1),
                );
            }
            m == expected
        })
        .expect("read");
    cluster.assert_results(&id, &daily_records(&got), &expected);
}
