//! Jobs written in SQL, end to end on a jobmanager with two taskmanagers and a real broker:
//! the article's reference job in SQL gives exactly the results of its table form, across a
//! taskmanager killed with SIGKILL; views cascade windows (hourly counts, then the busiest
//! hour of each day), HAVING filters the hours, and late events reach the sink the query names.

use std::collections::BTreeMap;
use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::recovery::{
    RECOVERY, cluster, first_checkpoint, kill_a_taskmanager, late_clicks, late_lines,
    part_file_lines,
};
use kappa_integration_tests::reference::{
    Click, HOUR, START, clicks, clicks_source, closing_after, hourly_counts, latest_per_key, spread,
};
use kappa_integration_tests::{eventually, reference_job, reference_sql_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const DAY: i64 = 24 * HOUR;

#[test]
fn the_reference_job_in_sql_gives_the_results_of_the_table_form_across_a_kill() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Broker::start().expect("broker");
    let data = clicks(16_000, 53, START, 6, 100);
    let half = data.len() / 2;
    broker.create_topic("clicks", 4).expect("topic");
    for t in ["out-sql", "out-toml"] {
        broker.create_topic(t, 4).expect("topic");
    }
    broker
        .produce("clicks", &spread(&data[..half], 4))
        .expect("produce");
    let (cluster, mut tms) = cluster(dir.path());
    let sql = reference_sql_job(&broker.bootstrap, "clicks", "out-sql", FILTER, 2) + RECOVERY;
    let toml = reference_job(&broker.bootstrap, "clicks", "out-toml", FILTER, 2) + RECOVERY;
    let sql_id = cluster.submit(&sql, &[]).expect("submit sql");
    let toml_id = cluster.submit(&toml, &[]).expect("submit toml");
    let d = cluster.job(&sql_id).expect("detail");
    assert_eq!(
        d["vertices"].as_array().map(Vec::len),
        Some(2),
        "source + filter, window + sink: {d}"
    );
    // Room for both jobs after the kill.
    let allowed = dir.path().to_str().expect("utf-8 path");
    tms.push(
        cluster
            .taskmanager_with(2, &["--allow-path", allowed], &[])
            .expect("third taskmanager"),
    );
    first_checkpoint(&cluster, &sql_id);
    kill_a_taskmanager(&cluster, &mut tms, &sql_id);
    broker
        .produce("clicks", &spread(&data[half..], 4))
        .expect("produce");
    broker
        .produce("clicks", &closing_after(&data, 4, 2 * HOUR))
        .expect("closing");
    let expected = hourly_counts(&data, |u| u > 50);
    for (topic, id) in [("out-sql", &sql_id), ("out-toml", &toml_id)] {
        let got = broker
            .read(topic, 4, Duration::from_secs(120), |r| {
                latest_per_key(r).is_ok_and(|m| m == expected)
            })
            .expect("read");
        cluster.assert_results(id, &latest_per_key(&got).expect("records"), &expected);
    }
}

/// (item_id, day end) → the largest count of an hour above `min` of the item that day.
fn busiest_hours(hourly: &BTreeMap<(String, i64), i64>, min: i64) -> BTreeMap<(String, i64), i64> {
    let mut out: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for ((item, end), n) in hourly.iter().filter(|(_, n)| **n > min) {
        let start = end - HOUR;
        let day_end = start - start.rem_euclid(DAY) + DAY;
        let e = out.entry((item.clone(), day_end)).or_insert(0);
        *e = (*e).max(*n);
    }
    out
}

#[test]
fn a_view_cascades_windows_with_having_and_late_events_reach_their_sink() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Broker::start().expect("broker");
    // Three days of clicks over 40 items.
    let data = clicks(24_000, 59, START, 72, 40);
    broker.create_topic("clicks", 4).expect("topic");
    broker.create_topic("out", 4).expect("topic");
    broker
        .produce("clicks", &spread(&data, 4))
        .expect("produce");
    broker
        .produce("clicks", &closing_after(&data, 4, 2 * DAY))
        .expect("closing");
    let (cluster, _tms) = cluster(dir.path());
    let late_dir = dir.path().join("late");
    let dau_dir = dir.path().join("dau");
    let job = format!(
        r#"name = "busiest-hour-sql"
parallelism = 2

{clicks}
[sinks.out]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "out"
key = "{{item_id}}-{{window_end}}"
partitioner = "fixed"

[sinks.late]
connector = "file"
path = "{late}"

[sinks.dau]
connector = "file"
path = "{dau}"

[[queries]]
name = "dau"
sql = """
INSERT INTO dau
SELECT window_start, count(DISTINCT user_id) AS users, approx_distinct(user_id) AS approx
FROM TUMBLE(clicks, timestamp, INTERVAL '1' DAY)
GROUP BY window_start, window_end
"""

[[queries]]
name = "hourly"
late_output = "late"
sql = """
CREATE VIEW hourly AS
SELECT item_id, window_start AS hour_start, count(*) AS clicks
FROM TUMBLE(clicks, timestamp, INTERVAL '1' HOUR)
WHERE {FILTER}
GROUP BY item_id, window_start, window_end
HAVING count(*) > 3
"""

[[queries]]
name = "daily"
sql = """
INSERT INTO out
SELECT item_id, window_start, window_end, max(clicks) AS busiest
FROM TUMBLE(hourly, hour_start, INTERVAL '1' DAY)
GROUP BY item_id, window_start, window_end
"""

{RECOVERY}"#,
        bootstrap = broker.bootstrap,
        late = late_dir.display(),
        dau = dau_dir.display(),
        clicks = clicks_source("clicks", &broker.bootstrap, "clicks"),
    );
    let id = cluster.submit(&job, &[]).expect("submit");
    let expected = busiest_hours(&hourly_counts(&data, |u| u > 50), 3);
    assert!(expected.len() > 50, "{} daily results", expected.len());
    let parse = |r: &[kappa_integration_tests::broker::Record]| -> BTreeMap<(String, i64), i64> {
        r.iter()
            .filter_map(|rec| serde_json::from_str::<serde_json::Value>(&rec.value).ok())
            .map(|v| {
                (
                    (
                        v["item_id"].as_str().unwrap_or_default().to_string(),
                        v["window_end"].as_i64().unwrap_or_default(),
                    ),
                    v["busiest"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    let got = broker
        .read("out", 4, Duration::from_secs(120), |r| parse(r) == expected)
        .expect("read");
    cluster.assert_results(&id, &parse(&got), &expected);

    // Daily active users: exact with count(DISTINCT), within 2% with approx_distinct.
    let mut users: BTreeMap<i64, std::collections::BTreeSet<u32>> = BTreeMap::new();
    for c in &data {
        users
            .entry(c.timestamp - c.timestamp.rem_euclid(DAY))
            .or_default()
            .insert(c.user);
    }
    let expected: BTreeMap<i64, i64> = users.iter().map(|(d, u)| (*d, u.len() as i64)).collect();
    let rows = eventually("a row per day", Duration::from_secs(60), || {
        let lines = part_file_lines(&dau_dir);
        match lines.len() == expected.len() {
            true => Ok(lines),
            false => Err(format!(
                "{} of {} days; job: {}",
                lines.len(),
                expected.len(),
                cluster.job(&id).map(|j| j.to_string()).unwrap_or_default()
            )),
        }
    })
    .unwrap();
    let got: BTreeMap<i64, i64> = rows
        .iter()
        .map(|l| {
            (
                l["window_start"].as_i64().unwrap_or(-1),
                l["users"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    cluster.assert_results(&id, &got, &expected);
    for l in &rows {
        let (exact, approx) = (
            l["users"].as_f64().unwrap_or(0.0),
            l["approx"].as_f64().unwrap_or(0.0),
        );
        assert!((approx - exact).abs() <= 0.02 * exact, "{l}");
    }

    // Clicks of the first hour, long closed, reach the late sink with the window they missed.
    broker
        .produce("clicks", &spread(&late_clicks(11), 4))
        .expect("late");
    late_lines(&late_dir, 11);
}

/// item → (clicks, sum of user numbers) of the clicks the filter keeps.
fn item_totals(data: &[Click]) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for c in data.iter().filter(|c| c.user > 50) {
        let e = out.entry(format!("item_{}", c.item)).or_insert((0, 0));
        e.0 += 1;
        e.1 += i64::from(c.user);
    }
    out
}

#[test]
fn an_updating_aggregate_upserts_postgres_and_keyed_kafka_across_a_kill() {
    use kappa_integration_tests::postgres::Postgres;
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Broker::start().expect("broker");
    let mut pg = Postgres::start().expect("postgres");
    pg.execute(
        "CREATE TABLE item_totals (id text PRIMARY KEY, item_id text NOT NULL, clicks bigint NOT NULL, user_sum bigint)",
    )
    .expect("table");
    let data = clicks(12_000, 61, START, 6, 50);
    let half = data.len() / 2;
    broker.create_topic("clicks", 4).expect("topic");
    broker.create_topic("totals", 2).expect("topic");
    broker
        .produce("clicks", &spread(&data[..half], 4))
        .expect("produce");
    let (cluster, mut tms) = cluster(dir.path());
    let job = format!(
        r#"name = "item-totals"
parallelism = 2

{clicks}
[sinks.pg]
connector = "postgres"
url = "{url}"
table = "item_totals"
key = "{{item_id}}"

[sinks.kafka]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "totals"
key = "{{item_id}}"
partitioner = "fixed"

[[queries]]
sql = """
CREATE VIEW totals AS
SELECT item_id, count(*) AS clicks, sum(CAST(split_part(user_id, '_', 2) AS BIGINT)) AS user_sum
FROM clicks
WHERE {FILTER}
GROUP BY item_id;
INSERT INTO pg SELECT * FROM totals;
INSERT INTO kafka SELECT * FROM totals
"""

{RECOVERY}"#,
        bootstrap = broker.bootstrap,
        url = pg.url,
        clicks = clicks_source("clicks", &broker.bootstrap, "clicks"),
    );
    let id = cluster.submit(&job, &[]).expect("submit");
    first_checkpoint(&cluster, &id);
    kill_a_taskmanager(&cluster, &mut tms, &id);
    broker
        .produce("clicks", &spread(&data[half..], 4))
        .expect("produce");
    let expected = item_totals(&data);
    let rows = eventually(
        "the table to hold every total",
        Duration::from_secs(90),
        || {
            let rows: BTreeMap<String, (i64, i64)> = pg
                .rows("item_totals")
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(id, r)| {
                    assert_eq!(r["item_id"].as_str(), Some(id.as_str()), "{r}");
                    (
                        id,
                        (
                            r["clicks"].as_i64().unwrap_or(-1),
                            r["user_sum"].as_i64().unwrap_or(-1),
                        ),
                    )
                })
                .collect();
            match rows == expected {
                true => Ok(rows),
                false => Err(format!(
                    "{} of {} rows, e.g. {:?}",
                    rows.len(),
                    expected.len(),
                    rows.iter().next()
                )),
            }
        },
    );
    cluster.assert_results(&id, &rows.unwrap_or_default(), &expected);
    let latest = |r: &[kappa_integration_tests::broker::Record]| -> BTreeMap<String, (i64, i64)> {
        r.iter()
            .filter_map(|rec| {
                let v: serde_json::Value = serde_json::from_str(&rec.value).ok()?;
                Some((
                    rec.key.clone()?,
                    (v["clicks"].as_i64()?, v["user_sum"].as_i64()?),
                ))
            })
            .collect()
    };
    let got = broker
        .read("totals", 2, Duration::from_secs(60), |r| {
            latest(r) == expected
        })
        .expect("read");
    cluster.assert_results(&id, &latest(&got), &expected);
    pg.stop();
}
