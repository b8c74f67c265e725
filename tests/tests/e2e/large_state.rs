//! State many times the memory it may take: the hourly windows of the reference job over
//! far more items than fit in the taskmanagers' `--state-memory` evict to RocksDB on local
//! disk and are read back, and the results stay exact across a kill -9 of a taskmanager
//! (checkpoints of the spilled state restored on the other); a subtask restarted on its own
//! taskmanager restores from the local copy of its checkpoint; the heap backend with the same
//! limit fails with the reason.

use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::recovery::{RECOVERY, first_checkpoint, kill_a_taskmanager};
use kappa_integration_tests::reference::{
    START, checkpointed_file_job, clicks, closing, failing_after_first_checkpoint, finish_restored,
    hourly_counts, json_lines, latest_per_key, part_file_counts, produce_first_half, spread,
};
use kappa_integration_tests::{eventually, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

/// What each taskmanager may keep in memory: about a tenth of one hour's windows.
const STATE_MEMORY: &str = "512KiB";

#[test]
fn windows_beyond_memory_spill_to_disk_and_stay_exact_across_a_kill() {
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Broker::start().expect("broker");
    // 4 hours of 160 000 clicks over a million items: about 20 000 windows of the users the
    // filter keeps per hour, some 4 MiB of window state per hour against 1 MiB in all.
    let data = clicks(160_000, 73, START, 4, 1_000_000);
    let half = produce_first_half(&broker, &data).expect("produce");

    let cp = dir.path().join("checkpoints");
    let cluster =
        Cluster::jobmanager(&["--checkpoint-dir", cp.to_str().expect("utf-8")]).expect("jm");
    let mut tms: Vec<_> = cluster.taskmanagers(2, 2, &["--state-memory", STATE_MEMORY]);
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2) + RECOVERY;
    let id = cluster.submit(&job, &[]).expect("submit");
    first_checkpoint(&cluster, &id);
    kill_a_taskmanager(&cluster, &mut tms, &id);

    broker
        .produce("clicks", &spread(&data[half..], 4))
        .expect("produce");
    broker
        .produce("clicks", &closing(&data, 4))
        .expect("closing");
    let expected = hourly_counts(&data, |u| u > 50);
    let got = broker
        .read("out", 4, Duration::from_secs(240), |r| {
            latest_per_key(r).is_ok_and(|m| m == expected)
        })
        .expect("read");
    cluster.assert_results(&id, &latest_per_key(&got).expect("records"), &expected);
    // The job's detail tells what its windows hold in memory and spilled to RocksDB.
    eventually(
        "the window's state figures",
        Duration::from_secs(30),
        || {
            let d = cluster.job(&id).map_err(|e| e.to_string())?;
            let states: Vec<&serde_json::Value> = d["vertices"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| &v["state"])
                .filter(|s| !s.is_null())
                .collect();
            let [s] = states[..] else {
                return Err(format!("one vertex with state: {states:?}"));
            };
            let n = |f: &str| s[f].as_u64().unwrap_or(0);
            let rate = s["cache_hit_rate"].as_f64().unwrap_or(-1.0);
            (n("bytes_spilled") > 0
                && n("evictions") > 0
                && n("cache_loads") > 0
                && (0.0..1.0).contains(&rate))
            .then_some(())
            .ok_or_else(|| s.to_string())
        },
    )
    .unwrap();
    let spilled = tms
        .iter()
        .filter(|tm| tm.log_text().contains("window state beyond its memory"))
        .count();
    assert!(spilled > 0, "no taskmanager evicted window state to disk");
}

#[test]
fn a_subtask_restarted_on_its_taskmanager_restores_from_the_local_copy_of_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("clicks.jsonl");
    let data = clicks(120_000, 75, START, 4, 1_000_000);
    std::fs::write(&input, json_lines(&data)).expect("input");
    let (cluster, tm) = failing_after_first_checkpoint(dir.path());
    let output = dir.path().join("results");
    let job = checkpointed_file_job(&input, &output, r#"{ click_count = "count(*)" }"#)
        + &format!("\n[limits]\nstate_memory = \"{STATE_MEMORY}\"\n");
    let id = finish_restored(&cluster, &job);
    let (rows, got) = part_file_counts(&output);
    let expected = hourly_counts(&data, |_| true);
    assert_eq!(rows, expected.len(), "every window written once");
    cluster.assert_results(&id, &got, &expected);
    let log = tm.log_text();
    assert!(
        log.contains("from the local copy of its checkpoint"),
        "the restore downloaded its state: {log}"
    );
    assert!(
        log.contains("window state beyond its memory"),
        "nothing was evicted"
    );
}

#[test]
fn the_heap_backend_fails_at_the_same_limit_with_the_reason() {
    let broker = Broker::start().expect("broker");
    let data = clicks(40_000, 74, START, 1, 1_000_000);
    broker.create_topic("clicks", 2).expect("topic");
    broker.create_topic("out", 2).expect("topic");
    broker
        .produce("clicks", &spread(&data, 2))
        .expect("produce");
    let cluster = Cluster::start(2).expect("cluster");
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2).replace(
        "parallelism = 2\n",
        &format!(
            "parallelism = 2\nstate_backend = \"heap\"\n\n[limits]\nstate_memory = \"{STATE_MEMORY}\"\n"
        ),
    );
    let id = cluster
        .submit(&(job + "\n[restart]\nstrategy = \"none\"\n"), &[])
        .expect("submit");
    let (_, error) = cluster
        .failed_once(&id, Duration::from_secs(60))
        .expect("the job fails");
    assert!(
        error.contains("beyond its limit of 512.0 KiB") && error.contains("window `"),
        "{error}"
    );
}
