//! The built-in Nexmark source end to end: bids of a bounded sequence at parallelism 2,
//! counted per auction in 10 s tumbling windows into an exactly-once file sink, while the
//! taskmanager running the job is killed with SIGKILL after a checkpoint; the counts must
//! equal those computed from the generator library's events, each window once.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kappa_connectors::nexmark::{Event, NexmarkConfig, NexmarkGenerator};
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::eventually;

const EVENTS: u64 = 200_000;
const SEED: u64 = 11;
const WINDOW_MS: i64 = 10_000;

fn job(output: &Path) -> String {
    format!(
        r#"name = "nexmark-bids-per-auction"
parallelism = 2

[sources.bid]
connector = "nexmark"
table = "bid"
events = {EVENTS}
seed = {SEED}
max_rate = 25000
event_time = {{ column = "date_time", max_out_of_orderness = "0s" }}

[window]
kind = "tumbling"
size = "10s"
key_by = ["auction"]

[window.aggregates]
bids = "count(*)"

[sinks.out]
connector = "file"
path = "{}"
delivery = "exactly-once"

[restart]
strategy = "fixed-delay"
delay = "100ms"

[checkpoints]
interval = "200ms"
"#,
        output.display()
    )
}

/// Bids per (auction, window start), from the generator library event by event.
fn expected() -> BTreeMap<(i64, i64), i64> {
    let g = NexmarkGenerator::new(NexmarkConfig {
        events: Some(EVENTS),
        seed: SEED,
        ..NexmarkConfig::default()
    })
    .expect("generator");
    let mut counts = BTreeMap::new();
    for n in 0..EVENTS {
        if let Event::Bid(b) = g.event(n) {
            let start = b.date_time - b.date_time.rem_euclid(WINDOW_MS);
            *counts.entry((b.auction, start)).or_insert(0) += 1;
        }
    }
    counts
}

/// The rows of the committed part files: their number and the count per key.
fn results(dir: &Path) -> (usize, BTreeMap<(i64, i64), i64>) {
    let mut rows = 0;
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("sink directory") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("part file").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("json line");
            rows += 1;
            let key = (
                v["auction"].as_i64().expect("auction"),
                v["window_start"].as_i64().expect("window_start"),
            );
            out.insert(key, v["bids"].as_i64().expect("bids"));
        }
    }
    (rows, out)
}

#[test]
fn nexmark_bids_per_auction_are_exact_across_a_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chk = dir.path().join("checkpoints");
    let allowed = dir.path().to_str().expect("utf-8 path");
    let cluster = Cluster::jobmanager(&[
        "--checkpoint-dir",
        chk.to_str().expect("utf-8 path"),
        "--allow-path",
        allowed,
    ])
    .expect("jobmanager");
    let mut first = cluster
        .taskmanager_with(2, &["--allow-path", allowed], &[])
        .expect("taskmanager");
    let output = dir.path().join("results");
    std::fs::create_dir(&output).expect("output directory");
    let id = cluster.submit(&job(&output), &[]).expect("submit");
    cluster
        .wait_state(&id, &["RUNNING"], Duration::from_secs(60))
        .expect("running");
    // The spare taskmanager the job moves to.
    let _second = cluster
        .taskmanager_with(2, &["--allow-path", allowed], &[])
        .expect("taskmanager");
    eventually("a completed checkpoint", Duration::from_secs(60), || {
        let out = cluster.kappactl(&["checkpoints", &id, "--json"]);
        let list: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let done = list
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["status"] == "COMPLETED"));
        done.then_some(()).ok_or_else(|| list.to_string())
    })
    .expect("checkpoint");
    let state = cluster.job(&id).expect("job")["state"].clone();
    assert_eq!(
        state, "RUNNING",
        "paced at 25000 events/s the job runs ~8 s"
    );
    first.kill();
    let done = cluster
        .wait_state(&id, &["FINISHED"], Duration::from_secs(180))
        .expect("the job to finish");
    let attempts = done["attempts"].as_array().expect("attempts");
    assert!(
        attempts.len() >= 2 && attempts[1]["restored_from"].is_u64(),
        "the kill restarted the job from a checkpoint: {attempts:?}"
    );
    let expected = expected();
    let (rows, counts) = results(&output);
    cluster.assert_results(&id, &counts, &expected);
    assert_eq!(rows, expected.len(), "each window once");
}
