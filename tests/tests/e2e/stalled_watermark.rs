//! A Kafka partition that stays empty holds the watermark back when the job has no
//! `idle_timeout`: windows never fire and state grows. The job page and /metrics say so, and
//! a job whose state outgrows its limit fails with the reason while the others run on.

use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{START, clicks};
use kappa_integration_tests::{SINK_PARTITIONS, eventually, reference_job};

#[test]
fn an_empty_partition_without_an_idle_timeout_is_reported_as_a_stalled_watermark() {
    let broker = Broker::start().expect("broker");
    broker.create_topic("clicks", 2).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let cluster = Cluster::local(2, &[]).expect("kappa local");
    let job = reference_job(&broker.bootstrap, "clicks", "out", "true", 1)
        .replace("idle_timeout = \"30s\"\n", "");
    assert!(!job.contains("idle_timeout"), "{job}");
    let id = cluster.submit(&job, &[]).expect("submit");
    // Only partition 0 receives clicks, a batch a second, for the whole test.
    let data = clicks(2_000, 3, START, 2, 20);
    let mut batches = data.chunks(20);
    let d = eventually(
        "a stalled-watermark warning",
        Duration::from_secs(90),
        || {
            if let Some(b) = batches.next() {
                let records: Vec<(i32, String)> = b.iter().map(|c| (0, c.json())).collect();
                broker
                    .produce("clicks", &records)
                    .map_err(|e| e.to_string())?;
            }
            let d = cluster.job(&id).map_err(|e| e.to_string())?;
            let warned = d["warnings"].as_array().is_some_and(|w| !w.is_empty());
            warned
                .then_some(d.clone())
                .ok_or_else(|| format!("read {}, no warning yet", d["vertices"][0]["records_in"]))
        },
    )
    .unwrap();
    let warning = d["warnings"][0].as_str().unwrap_or_default().to_string();
    assert!(
        warning.contains("hold the watermark back") && warning.contains("idle_timeout"),
        "{warning}"
    );
    assert_eq!(d["vertices"][0]["subtasks"][0]["stalled_splits"], 1, "{d}");
    let metrics = cluster
        .get("/metrics")
        .and_then(|r| Ok(r.text()?))
        .expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("kappa_stalled_splits{") && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[test]
fn a_job_beyond_its_state_limit_fails_with_the_reason_and_the_others_run_on() {
    let broker = Broker::start().expect("broker");
    broker.create_topic("clicks", 2).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let cluster = Cluster::local(2, &[]).expect("kappa local");
    let stalled = reference_job(&broker.bootstrap, "clicks", "out", "true", 1)
        .replace("idle_timeout = \"30s\"\n", "");
    // Its state in memory (the heap backend: the RocksDB one would spill it to disk).
    let limited = format!(
        "{}\n[limits]\nstate_memory = \"256KiB\"\n",
        stalled.replacen(
            "parallelism = 1\n",
            "parallelism = 1\nstate_backend = \"heap\"\n",
            1
        )
    );
    assert!(limited.contains("state_backend"), "{limited}");
    let small = cluster.submit(&limited, &[]).expect("submit");
    let other = cluster.submit(&stalled, &[]).expect("submit");
    // 5,000 items over two hours in partition 0 only: about 10,000 windows that never fire.
    let data = clicks(20_000, 5, START, 2, 5_000);
    let records: Vec<(i32, String)> = data.iter().map(|c| (0, c.json())).collect();
    broker.produce("clicks", &records).expect("produce");
    // Not restarted into the same wall.
    let (_, error) = cluster
        .failed_once(&small, Duration::from_secs(90))
        .expect("the limited job fails");
    assert!(
        error.contains("beyond its limit of 256.0 KiB")
            && error.contains("window `window` holds")
            && error.contains("[limits] state_memory"),
        "{error}"
    );
    let d = eventually(
        "the other job reads everything",
        Duration::from_secs(60),
        || {
            let d = cluster.job(&other).map_err(|e| e.to_string())?;
            (d["state"] == "RUNNING" && d["vertices"][0]["records_in"] == data.len())
                .then_some(d.clone())
                .ok_or_else(|| format!("{} {}", d["state"], d["vertices"][0]["records_in"]))
        },
    )
    .unwrap();
    assert!(d["error"].is_null(), "{d}");
}
