//! Rankings in SQL end to end, on a jobmanager with two taskmanagers and a real broker, across
//! a taskmanager killed with SIGKILL: the top 3 items of every hour by their clicks (a Top-N
//! over a windowed count), the two latest clicks of every hour (a Top-N of TUMBLE's rows) and
//! the first click of every user (a keep-first deduplication), each compared exactly with what
//! plain Rust maps compute from the same clicks. The kill lands
//! after a checkpoint of the first half, so the restored rankings' state decides the rest.

use std::collections::BTreeMap;
use std::time::Duration;

use kappa_integration_tests::broker::{Broker, Record};
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::recovery::{RECOVERY, cluster, kill_a_taskmanager};
use kappa_integration_tests::reference::{Click, HOUR, START, clicks, closing_after, spread};
use kappa_integration_tests::{checkpoint_covers, eventually};

/// window_end → its top 3 (item_id, clicks): most clicks first, ties by item_id (the ranking
/// breaks ties by the other columns, item_id first).
fn top3_per_hour(data: &[Click]) -> BTreeMap<(i64, u64), (String, i64)> {
    let mut counts: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    for c in data {
        let end = c.timestamp - c.timestamp.rem_euclid(HOUR) + HOUR;
        *counts
            .entry(end)
            .or_default()
            .entry(format!("item_{}", c.item))
            .or_insert(0) += 1;
    }
    let mut out = BTreeMap::new();
    for (end, items) in counts {
        let mut ranked: Vec<(String, i64)> = items.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (n, (item, clicks)) in ranked.into_iter().take(3).enumerate() {
            out.insert((end, n as u64 + 1), (item, clicks));
        }
    }
    out
}

/// (window_end, rank) → (user_id, timestamp) of the two latest clicks of every hour (ties by
/// user_id, then item_id, as the ranking breaks them: by the other columns, ascending).
fn latest2_per_hour(data: &[Click]) -> BTreeMap<(i64, u64), (String, i64)> {
    let mut hours: BTreeMap<i64, Vec<(i64, String, String)>> = BTreeMap::new();
    for c in data {
        let end = c.timestamp - c.timestamp.rem_euclid(HOUR) + HOUR;
        let row = (
            c.timestamp,
            format!("user_{}", c.user),
            format!("item_{}", c.item),
        );
        hours.entry(end).or_default().push(row);
    }
    let mut out = BTreeMap::new();
    for (end, mut rows) in hours {
        rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| (&a.1, &a.2).cmp(&(&b.1, &b.2))));
        for (n, (t, user, _)) in rows.into_iter().take(2).enumerate() {
            out.insert((end, n as u64 + 1), (user, t));
        }
    }
    out
}

/// user_id → (item_id, timestamp) of the user's earliest click (ties by item_id).
fn first_clicks(data: &[Click]) -> BTreeMap<String, (String, i64)> {
    let mut out: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for c in data {
        let click = (format!("item_{}", c.item), c.timestamp);
        let e = out
            .entry(format!("user_{}", c.user))
            .or_insert_with(|| click.clone());
        if (click.1, &click.0) < (e.1, &e.0) {
            *e = click;
        }
    }
    out
}

/// The sink's records by `key` of their JSON; None when a key got two different values (a
/// replay after the kill must repeat exactly what was emitted).
fn by_key<K: Ord, V: PartialEq>(
    records: &[Record],
    key: impl Fn(&serde_json::Value) -> Option<(K, V)>,
) -> Option<BTreeMap<K, V>> {
    let mut out = BTreeMap::new();
    for r in records {
        let v: serde_json::Value = serde_json::from_str(&r.value).ok()?;
        let (k, value) = key(&v)?;
        match out.get(&k) {
            Some(old) if *old != value => return None,
            Some(_) => {}
            None => {
                out.insert(k, value);
            }
        }
    }
    Some(out)
}

/// A sink topic of the job to compare exactly with what it should hold.
struct Exact<'a> {
    broker: &'a Broker,
    cluster: &'a Cluster,
    id: &'a str,
    topic: String,
    timeout: Duration,
}

impl Exact<'_> {
    /// Reads the topic until its records, by the key and value `row` takes from each, are
    /// `expected` (or the timeout passes), and asserts that they are.
    fn assert<K, V>(
        &self,
        expected: &BTreeMap<K, V>,
        row: impl Fn(&serde_json::Value) -> Option<(K, V)>,
    ) where
        K: Ord + std::fmt::Debug,
        V: PartialEq + std::fmt::Debug,
    {
        let got = self
            .broker
            .read(&self.topic, 2, self.timeout, |r| {
                by_key(r, &row).is_some_and(|m| m == *expected)
            })
            .expect("read");
        let got = by_key(&got, &row).expect("a key emitted twice with different values");
        self.cluster.assert_results(self.id, &got, expected);
    }
}

#[test]
fn top_n_per_hour_and_first_click_per_user_are_exact_across_a_kill() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Broker::start().expect("broker");
    // 6 hours over 60 items: about 45 clicks per item and hour, so counts tie often.
    let data = clicks(16_000, 67, START, 6, 60);
    let half = data.len() / 2;
    broker.create_topic("clicks", 4).expect("topic");
    for t in ["top", "firsts", "latest"] {
        broker.create_topic(t, 2).expect("topic");
    }
    broker
        .produce("clicks", &spread(&data[..half], 4))
        .expect("produce");
    let (cluster, mut tms) = cluster(dir.path());
    let job = format!(
        r#"name = "rankings"
parallelism = 2

[sources.clicks]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "clicks"
schema = {{ user_id = "string", item_id = "string", timestamp = "timestamp_ms" }}
event_time = {{ column = "timestamp", max_out_of_orderness = "10s", idle_timeout = "2s" }}

[sinks.top]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "top"
key = "{{window_end}}-{{rownum}}"

[sinks.firsts]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "firsts"
key = "{{user_id}}"

[[queries]]
sql = """
CREATE VIEW hourly AS
SELECT item_id, window_start, window_end, count(*) AS clicks
FROM TUMBLE(clicks, timestamp, INTERVAL '1' HOUR)
GROUP BY item_id, window_start, window_end;

INSERT INTO top
SELECT item_id, window_end, clicks, rownum FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY clicks DESC) AS rownum
  FROM hourly
) WHERE rownum <= 3
"""

[sinks.latest]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "latest"
key = "{{window_end}}-{{rownum}}"

[[queries]]
sql = """
INSERT INTO latest
SELECT user_id, CAST(timestamp AS BIGINT) AS ts, window_end, rownum FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY timestamp DESC) AS rownum
  FROM TUMBLE(clicks, timestamp, INTERVAL '1' HOUR)
) WHERE rownum <= 2
"""

[[queries]]
sql = """
INSERT INTO firsts
SELECT user_id, item_id, CAST(timestamp AS BIGINT) AS ts FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY timestamp ASC) AS rn FROM clicks
) WHERE rn = 1
"""

{RECOVERY}"#,
        bootstrap = broker.bootstrap,
    );
    let id = cluster.submit(&job, &[]).expect("submit");
    // The kill lands after a checkpoint of the whole first half: every user's first click was
    // emitted before it (the first clicks are early), so the restored state must remember
    // them, or the second half would emit other "first" clicks.
    eventually(
        "a checkpoint covering the first half",
        Duration::from_secs(60),
        || {
            let h: serde_json::Value = cluster
                .get(&format!("/api/v1/jobs/{id}/checkpoints"))
                .and_then(|r| Ok(r.json()?))
                .map_err(|e| e.to_string())?;
            checkpoint_covers(&h, half as i64)
                .then_some(())
                .ok_or_else(|| h.to_string())
        },
    )
    .unwrap();
    kill_a_taskmanager(&cluster, &mut tms, &id);
    broker
        .produce("clicks", &spread(&data[half..], 4))
        .expect("produce");
    broker
        .produce("clicks", &closing_after(&data, 4, 2 * HOUR))
        .expect("closing");

    let expected = top3_per_hour(&data);
    assert!(expected.len() >= 18, "{expected:?}");
    let exact = |topic: &str, timeout: u64| Exact {
        broker: &broker,
        cluster: &cluster,
        id: &id,
        topic: topic.to_string(),
        timeout: Duration::from_secs(timeout),
    };
    exact("top", 120).assert(&expected, |v| {
        Some((
            (v["window_end"].as_i64()?, v["rownum"].as_u64()?),
            (v["item_id"].as_str()?.to_string(), v["clicks"].as_i64()?),
        ))
    });

    let expected = first_clicks(&data);
    assert_eq!(expected.len(), 100, "every user clicked");
    exact("firsts", 60).assert(&expected, |v| {
        Some((
            v["user_id"].as_str()?.to_string(),
            (v["item_id"].as_str()?.to_string(), v["ts"].as_i64()?),
        ))
    });

    // The closing clicks (user_1, two hours after the rest) are in a window still open.
    let expected = latest2_per_hour(&data);
    exact("latest", 60).assert(&expected, |v| {
        Some((
            (v["window_end"].as_i64()?, v["rownum"].as_u64()?),
            (v["user_id"].as_str()?.to_string(), v["ts"].as_i64()?),
        ))
    });
}
