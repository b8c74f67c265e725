//! The reference job of the article end to end: a real broker, `kappa local`, kappactl, and the
//! sink compared with hourly counts computed independently; then the Kappa replay scenario.

use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{
    Click, START, clicks, hourly_counts, latest_per_key, produce_closed,
};
use kappa_integration_tests::{SINK_PARTITIONS, reference_job};

const PARTITIONS: i32 = 4;

fn produce(broker: &Broker, topic: &str, data: &[Click]) {
    produce_closed(broker, topic, PARTITIONS, data).expect("produce");
}

#[test]
fn reference_job_matches_independent_counts_at_parallelism_2_and_4() {
    let broker = Broker::start().expect("broker");
    let cluster = Cluster::start(4).expect("kappa local");
    let data = clicks(20_000, 11, START, 6, 200);
    produce(&broker, "user-behavior", &data);
    let expected = hourly_counts(&data, |u| u > 50);
    for parallelism in [2, 4] {
        let sink = format!("hourly-clicks-p{parallelism}");
        broker
            .create_topic(&sink, SINK_PARTITIONS)
            .expect("sink topic");
        let job = reference_job(
            &broker.bootstrap,
            "user-behavior",
            &sink,
            "CAST(split_part(user_id, '_', 2) AS INT) > 50",
            parallelism,
        );
        let id = cluster
            .submit(&job, &["--start", "earliest"])
            .expect("submit");
        cluster
            .wait_state(&id, &["RUNNING"], Duration::from_secs(60))
            .expect("running");
        let records = broker
            .read(&sink, SINK_PARTITIONS, Duration::from_secs(120), |r| {
                r.len() >= expected.len()
            })
            .expect("read sink");
        let got = latest_per_key(&records).expect("sink records");
        let missing: Vec<_> = expected
            .keys()
            .filter(|k| !got.contains_key(*k))
            .take(10)
            .collect();
        assert_eq!(
            records.len(),
            expected.len(),
            "one record per window at parallelism {parallelism}; missing e.g. {missing:?}; job: {}\nlog:\n{}",
            cluster.job(&id).map(|j| j.to_string()).unwrap_or_default(),
            cluster.log_text()
        );
        assert_eq!(got, expected, "hourly counts at parallelism {parallelism}");
        // Counters reach the jobmanager with the taskmanagers' heartbeats (every second).
        let read = (data.len() + PARTITIONS as usize) as u64;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let detail = loop {
            let d = cluster.job(&id).expect("status");
            if d["vertices"][0]["records_in"] == read
                && d["vertices"][1]["watermark"].as_i64().is_some()
            {
                break d;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "counters not reported: {d}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(detail["parallelism"], parallelism);
        let out = cluster.kappactl(&["cancel", &id]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
            .wait_state(&id, &["CANCELED"], Duration::from_secs(30))
            .expect("cancelled");
    }
}

#[test]
fn kappa_replay_overwrites_history_with_the_new_logic() {
    let broker = Broker::start().expect("broker");
    let cluster = Cluster::start(4).expect("kappa local");
    let data = clicks(12_000, 23, START, 4, 100);
    produce(&broker, "clicks", &data);
    broker
        .create_topic("results", SINK_PARTITIONS)
        .expect("sink topic");
    let v1 = hourly_counts(&data, |u| u > 50);
    let v2 = hourly_counts(&data, |u| u > 80);

    let job_v1 = reference_job(
        &broker.bootstrap,
        "clicks",
        "results",
        "CAST(split_part(user_id, '_', 2) AS INT) > 50",
        2,
    );
    let id1 = cluster
        .submit(&job_v1, &["--start", "earliest"])
        .expect("submit v1");
    let first = broker
        .read("results", SINK_PARTITIONS, Duration::from_secs(120), |r| {
            r.len() >= v1.len()
        })
        .expect("read v1");
    assert_eq!(latest_per_key(&first).expect("v1 records"), v1);
    assert!(cluster.kappactl(&["cancel", &id1]).status.success());
    cluster
        .wait_state(&id1, &["CANCELED"], Duration::from_secs(30))
        .expect("v1 cancelled");

    // The business logic changes: count only users above 80, recomputing all history.
    let job_v2 = reference_job(
        &broker.bootstrap,
        "clicks",
        "results",
        "CAST(split_part(user_id, '_', 2) AS INT) > 80",
        2,
    );
    let id2 = cluster
        .submit(&job_v2, &["--start", "earliest"])
        .expect("submit v2");
    let all = broker
        .read("results", SINK_PARTITIONS, Duration::from_secs(120), |r| {
            r.len() >= v1.len() + v2.len()
        })
        .expect("read v2");
    assert_eq!(
        all.len(),
        v1.len() + v2.len(),
        "job: {}\nlog:\n{}",
        cluster.job(&id2).map(|j| j.to_string()).unwrap_or_default(),
        cluster.log_text()
    );
    let latest = latest_per_key(&all).expect("records");
    for (key, count) in &v2 {
        assert_eq!(latest.get(key), Some(count), "recomputed value of {key:?}");
    }
    // A window that has no click left under the new logic keeps its old record: an upsert
    // sink has nothing to overwrite it with (as in Flink); every such key is a v1-only key.
    for (key, count) in latest.iter().filter(|(k, _)| !v2.contains_key(*k)) {
        assert_eq!(
            v1.get(key),
            Some(count),
            "{key:?} is neither recomputed nor from v1"
        );
    }
    assert!(cluster.kappactl(&["cancel", &id2]).status.success());
}
