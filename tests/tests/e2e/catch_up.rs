//! Catching up, end to end on a jobmanager with two taskmanagers and a real broker: a job
//! started far behind its topic (its pass-through sink is a FIFO a test thread drains
//! slowly, so it reads slowly) shows "catching up" with its lag and an ETA, takes no
//! periodic checkpoint meanwhile, goes live once the sink is drained fast, checkpoints again,
//! and its updating aggregate (which held its updates back while catching up) ends exact.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::eventually;
use kappa_integration_tests::recovery::checkpointing_jobmanager;
use kappa_integration_tests::reference::{START, clicks, clicks_source, spread};
use kappa_integration_tests::slow_sink::slow_fifo;
use serde_json::Value;

const EVENTS: usize = 60_000;
const SLOW: Duration = Duration::from_secs(90);

#[test]
fn a_job_far_behind_catches_up_without_checkpoints_then_goes_live_with_exact_results() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Broker::start().expect("broker");
    broker.create_topic("clicks", 4).expect("topic");
    broker.create_topic("totals", 2).expect("topic");
    let data = clicks(EVENTS, 71, START, 6, 40);
    broker
        .produce("clicks", &spread(&data, 4))
        .expect("produce");
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).expect("dir");
    let allowed = dir.path().to_str().expect("utf-8 path");
    let cluster = checkpointing_jobmanager(dir.path());
    let job = format!(
        r#"name = "catching-up"
parallelism = 2

{clicks}
[sinks.raw]
connector = "file"
path = "{raw}"
delivery = "at-least-once"

[sinks.totals]
connector = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "totals"
key = "{{item_id}}"
partitioner = "fixed"

[[queries]]
sql = """
INSERT INTO raw SELECT * FROM clicks;
INSERT INTO totals SELECT item_id, count(*) AS clicks FROM clicks GROUP BY item_id
"""

[checkpoints]
interval = "500ms"
interval_during_catch_up = "1h"

[catch_up]
threshold = "2s"
"#,
        clicks = clicks_source("clicks", &broker.bootstrap, "clicks"),
        raw = raw.display(),
        bootstrap = broker.bootstrap,
    );
    let id = cluster.submit(&job, &[]).expect("submit");
    // The raw sink's part files are FIFOs before the taskmanagers start and open them.
    let hurry = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let fifo = raw.join(format!("part-{id}-sinks.raw-{i}.jsonl"));
            slow_fifo(fifo, Arc::clone(&hurry))
        })
        .collect();
    let _tms: Vec<_> = cluster.taskmanagers(2, 1, &["--allow-path", allowed]);
    cluster
        .wait_state(&id, &["RUNNING"], SLOW)
        .expect("running");

    // Far behind at the rate the slow sink allows: catching up, with its lag and an ETA.
    let status = eventually("the job to catch up", SLOW, || {
        let d = cluster.job(&id).map_err(|e| e.to_string())?;
        let c = &d["catch_up"];
        match (c["catching_up"].as_bool(), c["eta_ms"].as_u64()) {
            (Some(true), Some(_)) => Ok(c.clone()),
            _ => Err(c.to_string()),
        }
    })
    .unwrap();
    println!("catching up: {status}");
    assert!(status["lag"].as_u64().unwrap_or(0) > 0, "{status}");
    assert!(
        status["read_per_second"].as_f64().unwrap_or(0.0) > 0.0,
        "{status}"
    );
    let started = status["episode"]["started_ms"].as_i64().expect("started");
    let metrics = cluster
        .get("/metrics")
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("kappa_job_catching_up{") && l.ends_with(" 1")),
        "{metrics}"
    );
    let shown = cluster.kappactl(&["status", &id]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("catching up: ETA"), "{shown}");

    // Drained fast, the job reads everything and goes live.
    hurry.store(true, Ordering::Relaxed);
    let episode = eventually("the job to go live", SLOW, || {
        let d = cluster.job(&id).map_err(|e| e.to_string())?;
        let c = &d["catch_up"];
        match (
            c["catching_up"].as_bool(),
            c["episode"]["ended_ms"].as_i64(),
        ) {
            (Some(false), Some(_)) => Ok(c["episode"].clone()),
            _ => Err(c.to_string()),
        }
    })
    .unwrap();
    let ended = episode["ended_ms"].as_i64().expect("ended");
    assert_eq!(episode["started_ms"].as_i64(), Some(started), "{episode}");
    // No periodic checkpoint started while it caught up; they start again once live.
    eventually("a checkpoint after going live", SLOW, || {
        let h = cluster.checkpoints(&id).map_err(|e| e.to_string())?;
        let during: Vec<_> = h
            .iter()
            .filter(|c| {
                let t = c["trigger_ms"].as_i64().unwrap_or(0);
                t > started + 500 && t < ended
            })
            .collect();
        assert!(
            during.is_empty(),
            "checkpoints while catching up: {during:?}"
        );
        h.iter()
            .any(|c| c["status"] == "COMPLETED" && c["trigger_ms"].as_i64() > Some(ended))
            .then_some(())
            .ok_or_else(|| format!("{h:?}"))
    })
    .unwrap();

    // The updating aggregate's latest row per item is the item's count.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for c in &data {
        *expected.entry(format!("item_{}", c.item)).or_default() += 1;
    }
    let latest = |r: &[kappa_integration_tests::broker::Record]| -> BTreeMap<String, i64> {
        r.iter()
            .filter_map(|rec| {
                let v: Value = serde_json::from_str(&rec.value).ok()?;
                Some((rec.key.clone()?, v["clicks"].as_i64()?))
            })
            .collect()
    };
    let got = broker
        .read("totals", 2, SLOW, |r| latest(r) == expected)
        .expect("read totals");
    assert_eq!(latest(&got), expected);
    println!(
        "{} update rows for {} items from {EVENTS} events",
        got.len(),
        expected.len()
    );
    assert!(cluster.kappactl(&["cancel", &id]).status.success());
    cluster
        .wait_state(&id, &["CANCELED"], SLOW)
        .expect("cancelled");
    for r in readers {
        let _ = r.join();
    }
}
