//! Backpressure across taskmanagers: a sink that cannot keep up (its part files are FIFOs a
//! test thread drains slowly) slows the window subtasks, whose full inputs stop granting
//! credit, which blocks the sources: queues stay bounded and memory does not grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{clicks, spread};
use kappa_integration_tests::slow_sink::slow_fifo;

const EVENTS: usize = 600_000;

fn job(bootstrap: &str, out: &str) -> String {
    format!(
        r#"name = "flood"
parallelism = 2

[source]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "flood"

[source.schema]
user_id = "string"
item_id = "string"
timestamp = "timestamp_ms"

[event_time]
column = "timestamp"
max_out_of_orderness = "1s"

[window]
kind = "tumbling"
size = "1ms"
key_by = ["item_id", "user_id"]

[window.aggregates]
clicks = "count(*)"

[sink]
connector = "file"
path = "{out}"
"#
    )
}

#[test]
fn a_slow_sink_slows_the_sources_and_memory_stays_bounded() {
    let broker = Broker::start().expect("broker");
    broker.create_topic("flood", 4).expect("topic");
    let data = clicks(EVENTS, 21, 1_732_500_000_000, 2, 1000);
    broker.produce("flood", &spread(&data, 4)).expect("produce");

    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("dir");
    let hurry = Arc::new(AtomicBool::new(false));
    // The job waits for slots until the taskmanagers start: its part files (named by the job)
    // are made FIFOs before a sink opens them.
    // Jobs may write under the test's directory only (--allow-path).
    let allowed = dir.path().to_str().expect("utf-8 path");
    let cluster = Cluster::jobmanager(&["--allow-path", allowed]).expect("jobmanager");
    let id = cluster
        .submit(&job(&broker.bootstrap, &out.display().to_string()), &[])
        .expect("submit");
    let mut readers = Vec::new();
    for i in 0..2 {
        let fifo = out.join(format!("part-{id}-{i}.jsonl"));
        readers.push(slow_fifo(fifo, Arc::clone(&hurry)));
    }
    let _tms: Vec<_> = cluster.taskmanagers(2, 1, &["--allow-path", allowed]);
    cluster
        .wait_state(&id, &["RUNNING"], Duration::from_secs(30))
        .expect("running");

    let memory = || -> u64 {
        let tms: serde_json::Value = cluster.get("/api/v1/taskmanagers").unwrap().json().unwrap();
        tms.as_array()
            .unwrap()
            .iter()
            .map(|t| t["memory_bytes"].as_u64().unwrap_or(0))
            .max()
            .unwrap_or(0)
    };
    let mut max_ratio: f64 = 0.0;
    let mut first_memory = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(500));
        let d = cluster.job(&id).expect("status");
        // The source subtask held back the most (one may have read all its partitions).
        for st in d["vertices"][0]["subtasks"].as_array().unwrap() {
            max_ratio = max_ratio.max(st["backpressure_ratio"].as_f64().unwrap_or(0.0));
        }
        for st in d["vertices"][1]["subtasks"].as_array().unwrap() {
            assert!(
                st["queued"].as_u64().unwrap_or(0) <= 8,
                "window input bounded: {st}"
            );
        }
        if first_memory == 0 && started.elapsed() > Duration::from_secs(3) {
            first_memory = memory();
        }
    }
    let d = cluster.job(&id).expect("status");
    let read = d["vertices"][0]["records_in"].as_u64().unwrap_or(0);
    let last_memory = memory();
    println!(
        "backpressure ratio up to {max_ratio:.2}; {read} of {EVENTS} read; taskmanager memory {first_memory} -> {last_memory} bytes"
    );
    assert!(max_ratio > 0.5, "sources were not slowed down: {d}");
    assert!(
        read < EVENTS as u64,
        "the slow sink should hold the sources back: {d}"
    );
    assert!(
        last_memory < 512 << 20,
        "taskmanager memory {last_memory} bytes"
    );
    assert!(
        last_memory < first_memory + (64 << 20),
        "memory grew from {first_memory} to {last_memory}"
    );

    // Let it drain: everything read arrives, nothing lost.
    hurry.store(true, Ordering::Relaxed);
    let d = loop {
        let d = cluster.job(&id).expect("status");
        if d["vertices"][0]["records_in"] == EVENTS as u64 {
            break d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "did not drain: {d}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(d["vertices"][1]["records_in"].as_u64().unwrap_or(0) > 0);
    assert!(cluster.kappactl(&["cancel", &id]).status.success());
    cluster
        .wait_state(&id, &["CANCELED"], Duration::from_secs(30))
        .expect("cancelled");
    let bytes: usize = readers.into_iter().map(|r| r.join().unwrap_or(0)).sum();
    assert!(bytes > 0);
}
