//! Checkpoints of a running job on local storage: they complete, their `_metadata` records
//! every partition's offset and the window state, SSTs are uploaded once (later checkpoints are
//! incremental), and only the retained checkpoints stay on disk.

use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{START, clicks, spread};
use kappa_integration_tests::{SINK_PARTITIONS, eventually, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

#[test]
fn checkpoints_record_offsets_and_state_incrementally_and_are_pruned() {
    let broker = Broker::start().expect("broker");
    let data = clicks(12_000, 17, START, 6, 300);
    // No closing events: the last hour's windows stay open, so the state is not empty.
    broker.create_topic("clicks", 4).expect("topic");
    broker
        .produce("clicks", &spread(&data, 4))
        .expect("produce");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let cluster =
        Cluster::local(4, &["--checkpoint-dir", root.to_str().unwrap()]).expect("kappa local");
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2)
        + "\n[checkpoints]\ninterval = \"300ms\"\nretained = 2\n";
    let id = cluster.submit(&job, &[]).expect("submit");

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let history = loop {
        let out = cluster.kappactl(&["checkpoints", &id, "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let completed: Vec<serde_json::Value> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "COMPLETED")
            .cloned()
            .collect();
        // Enough checkpoints after every record was read.
        let done = completed
            .iter()
            .filter(|c| {
                c["offsets"].as_array().is_some_and(|o| {
                    o.iter()
                        .map(|p| p["next_offset"].as_i64().unwrap_or(0))
                        .sum::<i64>()
                        == data.len() as i64
                })
            })
            .count();
        if done >= 3 {
            break completed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "checkpoints did not complete; newest: {}\n{}",
            list[0],
            cluster.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let newest = &history[0];
    assert_eq!(
        newest["offsets"].as_array().unwrap().len(),
        4,
        "every partition's offset: {newest}"
    );
    assert!(newest["full_bytes"].as_u64().unwrap() > 0);
    assert!(
        newest["incremental_bytes"].as_u64().unwrap() < newest["full_bytes"].as_u64().unwrap(),
        "a checkpoint without new state uploads only what changed: {newest}"
    );

    // On disk: the metadata of the retained checkpoints only, and the SSTs they reference.
    // Obsolete checkpoints are deleted after the newest completed, on their own time.
    let job_dir = root.join(&id);
    let chk = eventually(
        "the checkpoints beyond the two retained to be deleted",
        Duration::from_secs(30),
        || {
            let mut chk: Vec<u64> = std::fs::read_dir(&job_dir)
                .map_err(|e| e.to_string())?
                .filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_prefix("chk-")?
                        .parse()
                        .ok()
                })
                .filter(|n| job_dir.join(format!("chk-{n}/_metadata")).exists())
                .collect();
            chk.sort();
            match chk.len() {
                2 => Ok(chk),
                _ => Err(format!("retained = 2: {chk:?}")),
            }
        },
    )
    .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(job_dir.join(format!("chk-{}/_metadata", chk[1]))).unwrap(),
    )
    .unwrap();
    // State is listed per operator uid and subtask (the window's, uid "window").
    assert_eq!(meta["version"], 2, "{meta}");
    assert_eq!(meta["operators"].as_array().unwrap().len(), 2);
    assert!(
        meta["operators"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["uid"] == "window"),
        "{meta}"
    );
    assert!(
        meta["operators"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["state"]["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["name"].as_str().unwrap().ends_with(".sst"))),
        "the open windows are in SST files: {meta}"
    );
    for w in meta["operators"].as_array().unwrap() {
        for f in w["state"]["files"].as_array().unwrap() {
            assert!(
                root.join(f["object"].as_str().unwrap()).exists(),
                "referenced file is there: {f}"
            );
        }
    }
    assert!(cluster.kappactl(&["cancel", &id]).status.success());
}

#[test]
fn a_restarted_job_resumes_from_its_latest_checkpoint() {
    use kappa_integration_tests::reference::{hourly_counts, latest_per_key, rest_and_closing};
    let broker = Broker::start().expect("broker");
    let data = clicks(16_000, 29, START, 6, 200);
    let (first, rest) = data.split_at(8_000);
    broker.create_topic("clicks", 4).expect("topic");
    broker
        .produce("clicks", &spread(first, 4))
        .expect("produce");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let cluster = Cluster::jobmanager(&[
        "--checkpoint-dir",
        root.to_str().unwrap(),
        "--heartbeat-timeout",
        "3s",
    ])
    .expect("jobmanager");
    let mut tms: Vec<_> = (0..2)
        .map(|_| cluster.taskmanager(2).expect("taskmanager"))
        .collect();
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2).replace(
        "[sink]",
        "[restart]\nstrategy = \"fixed-delay\"\ndelay = \"500ms\"\n\n[sink]",
    ) + "\n[checkpoints]\ninterval = \"300ms\"\n";
    let id = cluster.submit(&job, &[]).expect("submit");

    // Wait for a checkpoint that holds every record of the first half.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out = cluster.kappactl(&["checkpoints", &id, "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let covered = kappa_integration_tests::checkpoint_covers(&list, first.len() as i64);
        if covered {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint covers the first half\n{}",
            cluster.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // kill -9 a taskmanager; the job restarts from the checkpoint.
    let victim = cluster.job(&id).unwrap()["vertices"][1]["subtasks"][0]["taskmanager"]
        .as_str()
        .unwrap()
        .to_string();
    let idx = cluster.taskmanager_process(&tms, &victim).expect("victim");
    tms[idx].kill();
    let _spare = cluster.taskmanager(2).expect("replacement taskmanager");
    let restored = loop {
        let d = cluster.job(&id).unwrap();
        let attempts = d["attempts"].as_array().cloned().unwrap_or_default();
        if d["state"] == "RUNNING" && attempts.len() >= 2 {
            break attempts.last().unwrap()["restored_from"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(60),
            "did not restart: {d}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        restored.as_u64().is_some(),
        "the new attempt resumes from a checkpoint: {restored}"
    );

    // The rest of the data: the results are exactly the reference, each window once.
    let tail = rest_and_closing(rest, &data, 4);
    broker.produce("clicks", &tail).expect("produce rest");
    let expected = hourly_counts(&data, |u| u > 50);
    let out = broker
        .read("out", SINK_PARTITIONS, Duration::from_secs(90), |r| {
            r.len() >= expected.len()
        })
        .expect("read");
    cluster.assert_results(&id, &latest_per_key(&out).expect("records"), &expected);
    assert_eq!(out.len(), expected.len(), "no window emitted twice");
    // The restarted sources did not read the first half again. Their counts arrive with the
    // taskmanagers' heartbeats, after the output: wait until the whole tail is counted, then
    // it must be no more than the tail.
    let want = tail.len() as u64;
    let read = eventually("the tail counted", Duration::from_secs(30), || {
        let d = cluster.job(&id).map_err(|e| e.to_string())?;
        match d["vertices"][0]["records_in"].as_u64() {
            Some(read) if read >= want => Ok(read),
            other => Err(format!("records_in {other:?} of {want}")),
        }
    })
    .expect("counted");
    assert_eq!(read, want, "records read after the restore");
}

#[test]
fn jobs_without_a_checkpoints_table_take_the_cluster_default_interval() {
    let broker = Broker::start().expect("broker");
    let data = clicks(2_000, 23, START, 2, 50);
    broker.create_topic("clicks", 2).expect("topic");
    broker
        .produce("clicks", &spread(&data, 2))
        .expect("produce");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let cluster = Cluster::local(
        4,
        &[
            "--checkpoint-dir",
            root.to_str().unwrap(),
            "--checkpoint-interval",
            "300ms",
        ],
    )
    .expect("kappa local");
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 1);
    let default = cluster.submit(&job, &[]).expect("submit");
    let off = cluster
        .submit(&(job.clone() + "\n[checkpoints]\nenabled = false\n"), &[])
        .expect("submit");
    let completed = |id: &str| -> usize {
        let out = cluster.kappactl(&["checkpoints", id, "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        list.as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["status"] == "COMPLETED")
            .count()
    };
    eventually(
        "checkpoints of the job without a [checkpoints] table",
        Duration::from_secs(60),
        || match completed(&default) {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} completed")),
        },
    )
    .unwrap();
    let interval = |id: &str| cluster.job(id).expect("status")["checkpoint_interval_ms"].clone();
    assert_eq!(interval(&default), 300);
    assert!(interval(&off).is_null(), "{}", interval(&off));
    assert_eq!(
        completed(&off),
        0,
        "a job that turned checkpoints off takes none"
    );

    // Exactly-once output on a cluster that cannot checkpoint is refused at submission.
    let bare = Cluster::local(2, &[]).expect("kappa local");
    let exactly_once = job.replace("[sink]", "[sink]\ndelivery = \"exactly-once\"");
    let refused = bare
        .submit(&exactly_once, &[])
        .expect_err("exactly-once without checkpoints");
    assert!(
        refused.to_string().contains("no checkpoint directory"),
        "{refused:#}"
    );
}
