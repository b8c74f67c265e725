//! `kappactl upgrade` end to end against a real broker and a real PostgreSQL: v1 (the
//! reference job, users above 50) writes hourly counts to a table and a topic; v2 (users
//! above 70) recomputes history into shadows beside it; the diff lists exactly the windows an
//! independent reference says changed; the cut-over swaps both sinks while a reader polling
//! the table never sees a mix; v2 continues live into them. An abort leaves v1 exact and
//! removes the shadows; an audit finds nothing in a correct sink and exactly the rows
//! tampered with in another.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kappa_integration_tests::broker::{Broker, Record};
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::postgres::{HOURLY_TABLE, Postgres, hourly_rows, wait_rows};
use kappa_integration_tests::reference::{
    Click, START, clicks, closing, hourly_counts, produce_closed, spread,
};
use kappa_integration_tests::{SINK_PARTITIONS, eventually, reference_job};
use serde_json::Value;

const FILTER_50: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const HOUR: i64 = 3_600_000;

type Counts = BTreeMap<(String, i64), i64>;

/// The reference job writing to the topic `hourly` and the table `hourly_clicks`.
fn job(broker: &Broker, pg: &Postgres, filter: &str) -> String {
    let text = reference_job(&broker.bootstrap, "clicks", "hourly", filter, 2);
    let at = text.find("[sink]").expect("a [sink] table");
    format!(
        r#"{}[sinks.kafka]
connector = "kafka"
bootstrap_servers = "{}"
topic = "hourly"
format = "json"
key = "{{item_id}}-{{window_end}}"
partitioner = "fixed"

[sinks.pg]
connector = "postgres"
url = "{}"
table = "hourly_clicks"
key = "{{item_id}}-{{window_end}}"

[checkpoints]
interval = "1s"
"#,
        &text[..at],
        broker.bootstrap,
        pg.url
    )
}

/// The topic's latest count per (item, window end); a tombstone removes its key.
fn topic_counts(records: &[Record]) -> Counts {
    let mut out = BTreeMap::new();
    for r in records {
        let Some((item, end)) = r.key.as_deref().and_then(|k| k.rsplit_once('-')) else {
            continue;
        };
        let key = (item.to_string(), end.parse().unwrap_or_default());
        match serde_json::from_str::<Value>(&r.value) {
            Ok(v) => out.insert(key, v["click_count"].as_i64().unwrap_or(-1)),
            Err(_) => out.remove(&key),
        };
    }
    out
}

fn read_topic(broker: &Broker, topic: &str, expected: &Counts) -> Counts {
    let records = broker
        .read(topic, SINK_PARTITIONS, Duration::from_secs(90), |r| {
            &topic_counts(r) == expected
        })
        .expect("read");
    topic_counts(&records)
}

fn upgrade(cluster: &Cluster, id: &str) -> Value {
    let resp =
        reqwest::blocking::get(format!("{}/api/v1/upgrades/{id}", cluster.url)).expect("request");
    resp.json().expect("json")
}

fn wait_phase(cluster: &Cluster, id: &str, phases: &[&str], timeout: Duration) -> Value {
    eventually(&format!("upgrade {id} in {phases:?}"), timeout, || {
        let u = upgrade(cluster, id);
        match phases.contains(&u["phase"].as_str().unwrap_or_default()) {
            true => Ok(u),
            false => Err(u.to_string()),
        }
    })
    .unwrap()
}

/// Every row key whose count differs between `a` and `b`, keyed as the sinks key rows.
fn changed_keys(a: &Counts, b: &Counts) -> BTreeSet<String> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|(item, end)| format!("{item}-{end}"))
        .collect()
}

struct Setup {
    broker: Broker,
    pg: Postgres,
    cluster: Cluster,
    data: Vec<Click>,
    v1_id: String,
    _dir: tempfile::TempDir,
}

/// v1 running over closed windows, its table and topic exact.
fn v1_running() -> Setup {
    let broker = Broker::start().expect("broker");
    let pg = Postgres::start().expect("postgres");
    pg.execute(HOURLY_TABLE).expect("table");
    broker
        .create_topic("hourly", SINK_PARTITIONS)
        .expect("topic");
    let data = clicks(12_000, 17, START, 4, 60);
    produce_closed(&broker, "clicks", 4, &data).expect("produce");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let cluster =
        Cluster::local(8, &["--checkpoint-dir", root.to_str().unwrap()]).expect("cluster");
    let v1_id = cluster
        .submit(&job(&broker, &pg, FILTER_50), &["--start", "earliest"])
        .expect("submit v1");
    let v1 = hourly_counts(&data, |u| u > 50);
    assert_eq!(wait_rows(&pg, &v1, Duration::from_secs(120)), v1);
    assert_eq!(read_topic(&broker, "hourly", &v1), v1);
    Setup {
        broker,
        pg,
        cluster,
        data,
        v1_id,
        _dir: dir,
    }
}

/// Starts upgrading v1 to users above 70 with kappactl; the upgrade's id.
fn upgrade_to_filter_70(s: &Setup) -> String {
    let v2_file = s._dir.path().join("v2.toml");
    std::fs::write(
        &v2_file,
        job(&s.broker, &s.pg, FILTER_50).replace("> 50", "> 70"),
    )
    .expect("write");
    let out = s
        .cluster
        .kappactl(&["upgrade", &s.v1_id, v2_file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn an_upgrade_recomputes_history_beside_v1_and_cuts_both_sinks_over_at_one_instant() {
    let s = v1_running();
    let (v1, v2) = (
        hourly_counts(&s.data, |u| u > 50),
        hourly_counts(&s.data, |u| u > 70),
    );
    let changed = changed_keys(&v1, &v2);
    assert!(
        v1.keys().any(|k| !v2.contains_key(k)),
        "some windows vanish"
    );

    let id = upgrade_to_filter_70(&s);
    assert!(id.starts_with('u'), "{id}");

    let caught_up = wait_phase(&s.cluster, &id, &["CAUGHT_UP"], Duration::from_secs(180));
    // v1 untouched while v2 ran beside it.
    assert_eq!(hourly_rows(&s.pg), v1);
    let shadow_table = format!("hourly_clicks__{id}");
    let shadow_rows = s.pg.rows(&shadow_table).expect("shadow table");
    assert_eq!(shadow_rows.len(), v2.len(), "the shadow holds v2's windows");

    // The diff lists exactly the windows the reference says changed, in both sinks.
    let diff = reqwest::blocking::get(format!("{}/api/v1/upgrades/{id}/diff", s.cluster.url))
        .expect("diff")
        .text()
        .expect("text");
    for sink in ["pg", "kafka"] {
        let listed: BTreeSet<String> = diff
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
            .filter(|c| c["sink"] == sink)
            .map(|c| c["key"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(listed, changed, "sink {sink}");
    }
    let status = s.cluster.kappactl(&["upgrade", "status", &id]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(": CAUGHT_UP"), "{text}");
    assert!(text.contains("sink `pg`"), "{text}: {caught_up}");

    // A reader polls the table through the cut-over: all v1, then all v2, never a mix.
    let stop = AtomicBool::new(false);
    let (done, (saw_v1, saw_v2)) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let (mut saw_v1, mut saw_v2) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                match hourly_rows(&s.pg) {
                    r if r == v1 => saw_v1 += 1,
                    r if r == v2 => saw_v2 += 1,
                    r => panic!("a mix of v1 and v2: {} rows", r.len()),
                }
            }
            (saw_v1, saw_v2)
        });
        let out = s.cluster.kappactl(&["upgrade", "cutover", &id]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let done = wait_phase(&s.cluster, &id, &["DONE"], Duration::from_secs(180));
        eventually("the reader to see v2", Duration::from_secs(30), || {
            (hourly_rows(&s.pg) == v2)
                .then_some(())
                .ok_or_else(|| "v1".to_string())
        })
        .unwrap();
        stop.store(true, Ordering::Relaxed);
        (done, reader.join().expect("the reader saw no mix"))
    });
    println!("reader: {saw_v1} reads of v1, {saw_v2} of v2; {done}");
    assert!(saw_v1 > 0 && saw_v2 > 0);

    assert_eq!(read_topic(&s.broker, "hourly", &v2), v2, "latest per key");
    let live = done["live_job"].as_str().expect("v2 live").to_string();
    s.cluster
        .wait_state(&live, &["RUNNING"], Duration::from_secs(60))
        .expect("v2 live running");
    s.cluster
        .wait_state(&s.v1_id, &["CANCELED"], Duration::from_secs(10))
        .expect("v1 stopped");
    assert!(
        s.pg.rows(&shadow_table).is_err(),
        "the shadow table is gone"
    );
    assert_eq!(
        s.pg.rows(&format!("hourly_clicks__{id}_v1"))
            .expect("v1's rows kept")
            .len(),
        v1.len()
    );

    // v2 goes on live: a new hour lands in both sinks, with no gap.
    let later = clicks(2_000, 18, START + 6 * HOUR, 1, 60);
    let mut records = spread(&later, 4);
    records.extend(closing(&later, 4));
    s.broker.produce("clicks", &records).expect("produce");
    let mut all = s.data.clone();
    all.extend(later);
    let expected = hourly_counts(&all, |u| u > 70);
    assert_eq!(
        wait_rows(&s.pg, &expected, Duration::from_secs(120)),
        expected
    );
    assert_eq!(read_topic(&s.broker, "hourly", &expected), expected);
}

#[test]
fn an_abort_leaves_v1_exact_and_removes_the_shadows() {
    let s = v1_running();
    let v1 = hourly_counts(&s.data, |u| u > 50);
    let id = upgrade_to_filter_70(&s);
    let u = wait_phase(&s.cluster, &id, &["CAUGHT_UP"], Duration::from_secs(180));
    let shadow_job = u["shadow_job"].as_str().expect("shadow job").to_string();
    let out = s.cluster.kappactl(&["upgrade", "abort", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let aborted = wait_phase(&s.cluster, &id, &["ABORTED"], Duration::from_secs(120));
    assert_eq!(aborted["reason"], "aborted on request");
    s.cluster
        .wait_state(&shadow_job, &["CANCELED"], Duration::from_secs(10))
        .expect("v2 cancelled");
    assert_eq!(s.cluster.job(&s.v1_id).expect("v1")["state"], "RUNNING");
    assert!(s.pg.rows(&format!("hourly_clicks__{id}")).is_err());
    assert_eq!(hourly_rows(&s.pg), v1);
    let topics = s.broker.topics().expect("topics");
    assert!(!topics.contains(&format!("hourly.{id}")), "{topics:?}");
    // An ended upgrade can be neither cut over nor aborted again.
    let again = s.cluster.kappactl(&["upgrade", "cutover", &id]);
    assert!(!again.status.success());
}

#[test]
fn an_audit_finds_nothing_in_a_correct_sink_and_exactly_the_rows_tampered_with() {
    let s = v1_running();
    let out = s.cluster.kappactl(&["audit", &s.v1_id, "--wait"]);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert!(text.contains("no differences"), "{text}");

    // Two rows tampered with, one deleted (the Kafka sink stays as the job wrote it).
    let v1 = hourly_counts(&s.data, |u| u > 50);
    let mut keys = v1.keys().map(|(item, end)| format!("{item}-{end}"));
    let (a, b, c) = (
        keys.next().unwrap(),
        keys.next().unwrap(),
        keys.next().unwrap(),
    );
    s.pg
        .execute(&format!(
            "UPDATE hourly_clicks SET click_count = click_count + 1 WHERE id IN ('{a}', '{b}'); DELETE FROM hourly_clicks WHERE id = '{c}'"
        ))
        .expect("tamper");
    let out = s.cluster.kappactl(&["--json", "audit", &s.v1_id, "--wait"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("differ from what its logic gives"),
        "differences fail the audit: {stderr}"
    );
    let listed: BTreeSet<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .map(|c| {
            (
                c["sink"].as_str().unwrap_or_default().to_string(),
                c["key"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let pg = |k: &str| ("pg".to_string(), k.to_string());
    assert_eq!(listed, BTreeSet::from([pg(&a), pg(&b), pg(&c)]));
}
