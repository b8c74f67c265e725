//! Savepoints: stop a job with a savepoint and resume it at another parallelism with exact
//! results; start a changed job from an old one's savepoint; refuse savepoints that do not
//! exist, are corrupt, or hold state the job cannot take; stop with --drain fires every window
//! and commits it once to exactly-once Kafka and file sinks.

use std::time::{Duration, Instant};

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{
    HOUR, START, clicks, closing, first_half_produced, hourly_counts, latest_per_key,
    part_file_counts, spread,
};
use kappa_integration_tests::{SINK_PARTITIONS, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

fn wait_read(cluster: &Cluster, id: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.job(id).unwrap()["vertices"][0]["records_in"]
        .as_u64()
        .unwrap_or(0)
        < n as u64
    {
        assert!(
            Instant::now() < deadline,
            "the job did not read {n} records\n{}",
            cluster.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn write_job(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn stop_with_savepoint_and_resume_at_another_parallelism() {
    let broker = Broker::start().expect("broker");
    let (data, half) = first_half_produced(&broker, 16_000, 51).expect("data");
    let (first, rest) = data.split_at(half);
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::local(
        6,
        &["--checkpoint-dir", dir.path().join("chk").to_str().unwrap()],
    )
    .expect("kappa local");
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2);
    let id = cluster.submit(&job, &[]).expect("submit");
    wait_read(&cluster, &id, first.len());

    let out = cluster.kappactl(&["stop", &id, "--savepoint"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let savepoint = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        std::path::Path::new(&savepoint).join("_metadata").exists(),
        "{savepoint}"
    );
    cluster
        .wait_state(&id, &["CANCELED"], Duration::from_secs(30))
        .expect("stopped");

    let mut tail = spread(rest, 4);
    tail.extend(closing(&data, 4));
    broker.produce("clicks", &tail).expect("produce rest");
    let path = write_job(&dir, "job.toml", &job);
    let out = cluster.kappactl(&[
        "submit",
        &path,
        "--parallelism",
        "4",
        "--start",
        &format!("savepoint:{savepoint}"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id2 = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let expected = hourly_counts(&data, |u| u > 50);
    let got = broker
        .read("out", SINK_PARTITIONS, Duration::from_secs(90), |r| {
            r.len() >= expected.len()
        })
        .expect("read");
    cluster.assert_results(&id2, &latest_per_key(&got).unwrap(), &expected);
    assert_eq!(
        got.len(),
        expected.len(),
        "each window once across the stop"
    );
    assert_eq!(cluster.job(&id2).unwrap()["parallelism"], 4);
    // The counters arrive with the taskmanagers' heartbeats.
    kappa_integration_tests::eventually(
        "resumed at the savepoint's offsets",
        Duration::from_secs(10),
        || {
            let read =
                cluster.job(&id2).map_err(|e| e.to_string())?["vertices"][0]["records_in"].clone();
            match read.as_u64() == Some(tail.len() as u64) {
                true => Ok(()),
                false => Err(format!(
                    "records_in {read}, {} produced after the savepoint",
                    tail.len()
                )),
            }
        },
    )
    .unwrap();
}

#[test]
fn a_changed_job_starts_from_the_old_jobs_savepoint() {
    let broker = Broker::start().expect("broker");
    let data = clicks(12_000, 52, START, 6, 100);
    let (first, rest) = data.split_at(6_000);
    broker.create_topic("clicks", 4).expect("topic");
    broker
        .produce("clicks", &spread(first, 4))
        .expect("produce");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::local(
        4,
        &["--checkpoint-dir", dir.path().join("chk").to_str().unwrap()],
    )
    .expect("kappa local");
    let v1 = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2);
    let id1 = cluster.submit(&v1, &[]).expect("submit v1");
    wait_read(&cluster, &id1, first.len());
    let out = cluster.kappactl(&["savepoint", &id1]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let savepoint = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(cluster.kappactl(&["cancel", &id1]).status.success());
    cluster
        .wait_state(&id1, &["CANCELED"], Duration::from_secs(30))
        .expect("cancelled");

    // v2 counts only users above 80 from here on; the windows it took over keep v1's counts.
    let mut tail = spread(rest, 4);
    tail.extend(closing(&data, 4));
    broker.produce("clicks", &tail).expect("produce rest");
    let v2 = reference_job(
        &broker.bootstrap,
        "clicks",
        "out",
        "CAST(split_part(user_id, '_', 2) AS INT) > 80",
        2,
    );
    let id2 = cluster
        .submit(&v2, &["--start", &format!("savepoint:{savepoint}")])
        .expect("submit v2");
    wait_read(&cluster, &id2, tail.len());
    // A second in which a re-read of v1's input would show (nothing to wait for: it must not come).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        cluster.job(&id2).unwrap()["vertices"][0]["records_in"],
        tail.len() as u64,
        "v2 starts at v1's offsets"
    );

    // Windows that begin after the savepoint's data are exactly v2's counts.
    let boundary = first.iter().map(|c| c.timestamp).max().unwrap() / HOUR * HOUR + 2 * HOUR;
    let v2_later: std::collections::BTreeMap<_, _> = hourly_counts(rest, |u| u > 80)
        .into_iter()
        .filter(|((_, end), _)| *end - HOUR >= boundary)
        .collect();
    let got = broker
        .read("out", SINK_PARTITIONS, Duration::from_secs(60), |r| {
            let m = latest_per_key(r).unwrap_or_default();
            v2_later.iter().all(|(k, v)| m.get(k) == Some(v))
        })
        .expect("read");
    let latest = latest_per_key(&got).unwrap();
    for (k, v) in &v2_later {
        assert_eq!(latest.get(k), Some(v), "{k:?}");
    }
}

#[test]
fn bad_savepoints_are_refused_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::local(
        2,
        &["--checkpoint-dir", dir.path().join("chk").to_str().unwrap()],
    )
    .expect("kappa local");
    let job = reference_job("127.0.0.1:9", "in", "out", FILTER, 1);
    let path = write_job(&dir, "job.toml", &job);
    let submit = |sp: &str, extra: &[&str]| {
        let start = format!("savepoint:{sp}");
        let mut args = vec!["submit", path.as_str(), "--start", start.as_str()];
        args.extend_from_slice(extra);
        cluster.kappactl(&args)
    };
    let missing = dir.path().join("no-such-savepoint");
    let out = submit(missing.to_str().unwrap(), &[]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && err.contains("_metadata") && err.contains("does not exist"),
        "{err}"
    );

    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("_metadata"), b"{ not json").unwrap();
    let out = submit(corrupt.to_str().unwrap(), &[]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success()
            && err.contains("corrupt/_metadata")
            && err.contains("not a Kappa savepoint"),
        "{err}"
    );

    // State of another job: window state with other aggregates; a job without a window.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let meta = serde_json::json!({
        "job_id": "x", "checkpoint_id": 1, "attempt": 1, "completed_at_ms": 0, "parallelism": 1, "max_parallelism": 128,
        "offsets": [], "windows": [{"subtask": 0, "key_groups": [0, 127], "state": {"files": []}}],
        "window_uid": "window", "aggregates": ["clicks=sum"]
    });
    std::fs::write(other.join("_metadata"), meta.to_string()).unwrap();
    let out = submit(other.to_str().unwrap(), &[]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && err.contains("clicks=sum") && err.contains("click_count=count"),
        "{err}"
    );
    let no_window = job
        .replace("[window]", "[unused]")
        .replace("[window.aggregates]\nclick_count = \"count(*)\"", "")
        .replace(
            "[unused]\nkind = \"tumbling\"\nsize = \"1h\"\nkey_by = [\"item_id\"]\n",
            "",
        )
        .replace(
            "key = \"{item_id}-{window_end}\"\npartitioner = \"fixed\"\n",
            "",
        );
    let path2 = write_job(&dir, "nowindow.toml", &no_window);
    let start = format!("savepoint:{}", other.display());
    let out = cluster.kappactl(&["submit", &path2, "--start", &start]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && err.contains("allow-non-restored-state"),
        "{err}"
    );
    assert_eq!(
        String::from_utf8_lossy(&cluster.kappactl(&["list", "--json"]).stdout).trim(),
        "[]",
        "nothing started"
    );
    let out = cluster.kappactl(&[
        "submit",
        &path2,
        "--start",
        &start,
        "--allow-non-restored-state",
    ]);
    assert!(
        out.status.success(),
        "dropping unmapped state on request: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn stop_with_drain_commits_every_window_exactly_once_to_transactional_sinks() {
    let broker = Broker::start().expect("broker");
    let data = clicks(8_000, 53, START, 4, 100);
    broker.create_topic("clicks", 4).expect("topic");
    broker
        .produce("clicks", &spread(&data, 4))
        .expect("produce");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::local(
        6,
        &["--checkpoint-dir", dir.path().join("chk").to_str().unwrap()],
    )
    .expect("kappa local");
    // Checkpoints rarely: the output of the drained windows is committed by the stop.
    let checkpoints = "\n[checkpoints]\ninterval = \"1h\"\n";
    let base = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2);
    let kafka_job = base.replace("[sink]", "[sink]\ndelivery = \"exactly-once\"") + checkpoints;
    let files = dir.path().join("results");
    let at = base.find("[sink]").unwrap();
    let file_job = format!(
        "{}[sink]\nconnector = \"file\"\npath = \"{}\"\nformat = \"json\"\ndelivery = \"exactly-once\"\n{checkpoints}",
        &base[..at],
        files.display()
    );
    let ids = [
        cluster.submit(&kafka_job, &[]).expect("submit kafka job"),
        cluster.submit(&file_job, &[]).expect("submit file job"),
    ];
    for id in &ids {
        wait_read(&cluster, id, data.len());
    }
    // Nothing is visible before a checkpoint completes; the windows are still open anyway.
    assert_eq!(part_file_counts(&files).0, 0);
    for id in &ids {
        let out = cluster.kappactl(&["stop", id, "--savepoint", "--drain"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
            .wait_state(id, &["CANCELED"], Duration::from_secs(30))
            .expect("stopped");
    }
    // Every window fired by the drain, committed once.
    let expected = hourly_counts(&data, |u| u > 50);
    let got = broker
        .read("out", SINK_PARTITIONS, Duration::from_secs(30), |r| {
            r.len() >= expected.len()
        })
        .expect("read");
    cluster.assert_results(&ids[0], &latest_per_key(&got).unwrap(), &expected);
    assert_eq!(got.len(), expected.len(), "each window once");
    let (rows, counts) = part_file_counts(&files);
    cluster.assert_results(&ids[1], &counts, &expected);
    assert_eq!(rows, expected.len(), "each window once in the part files");
    let hidden: Vec<_> = std::fs::read_dir(&files)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "no uncommitted part files: {hidden:?}");
}
