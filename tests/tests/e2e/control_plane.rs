//! The control plane under faults that processes rarely produce on their own: the jobmanager
//! dies between writing a checkpoint and recording it in the job's record (injected with a
//! failpoint), and a taskmanager that accepts connections but never answers.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{
    Click, START, clicks, closing, hourly_counts, json_lines, latest_per_key, spread,
};
use kappa_integration_tests::{SINK_PARTITIONS, eventually, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

/// The reference job with an exactly-once Kafka sink, checkpoints every 300 ms and quick
/// restarts.
fn exactly_once_job(bootstrap: &str) -> String {
    reference_job(bootstrap, "clicks", "out", FILTER, 2).replace(
        "[sink]",
        "[restart]\nstrategy = \"fixed-delay\"\ndelay = \"200ms\"\n\n[checkpoints]\ninterval = \"300ms\"\n\n[sink]\ndelivery = \"exactly-once\"",
    )
}

#[test]
fn a_jobmanager_dying_between_a_checkpoint_and_its_record_commits_nothing_twice() {
    let broker = Broker::start().expect("broker");
    let data = clicks(24_000, 83, START, 8, 100);
    broker.create_topic("clicks", 4).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let flags = ["--checkpoint-dir", root.to_str().expect("utf-8")];
    // The fifth checkpoint to complete kills the jobmanager after its metadata is written and
    // before the job's record points at it.
    let mut cluster = Cluster::jobmanager_with_env(
        &flags,
        &[(
            "FAILPOINTS",
            "checkpoint-before-record=4*off->return".into(),
        )],
    )
    .expect("jobmanager");
    let _tm = cluster.taskmanager(2).expect("taskmanager");
    let id = cluster
        .submit(&exactly_once_job(&broker.bootstrap), &[])
        .expect("submit");

    // Clicks arrive while checkpoints complete, so the checkpoints close windows.
    let chunks: Vec<&[Click]> = data.chunks(1_000).collect();
    let mut sent = 0;
    let died = eventually(
        "the failpoint to end the jobmanager",
        Duration::from_secs(60),
        || {
            if let Some(status) = cluster.process().exited() {
                return Ok(status);
            }
            if let Some(chunk) = chunks.get(sent) {
                broker
                    .produce("clicks", &spread(chunk, 4))
                    .map_err(|e| e.to_string())?;
                sent += 1;
            }
            Err(format!("{sent} chunks sent"))
        },
    )
    .unwrap();
    let log = cluster.process().log_text();
    assert!(!died.success(), "aborted: {died:?}");
    assert!(
        log.contains("failpoint: aborting before the job record points at the checkpoint"),
        "{log}"
    );

    // A new jobmanager resumes the job from the checkpoint its record names: the older one.
    cluster
        .restart_jobmanager(&flags)
        .expect("jobmanager again");
    let d = cluster
        .wait_state(&id, &["RUNNING"], Duration::from_secs(60))
        .expect("the job runs again");
    let restored = d["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|a| a["restored_from"].as_u64())
        .expect("restored from a checkpoint");
    assert!(
        root.join(&id)
            .join(format!("chk-{}", restored + 1))
            .join("_metadata")
            .exists(),
        "the checkpoint after the restored one had been written when the jobmanager died"
    );

    for chunk in &chunks[sent..] {
        broker
            .produce("clicks", &spread(chunk, 4))
            .expect("produce");
    }
    broker
        .produce("clicks", &closing(&data, 4))
        .expect("closing");
    let expected = hourly_counts(&data, |u| u > 50);
    let records = broker
        .read_results("out", &expected, Duration::from_secs(120))
        .expect("read");
    assert_eq!(latest_per_key(&records).expect("records"), expected);
    assert_eq!(
        records.len(),
        expected.len(),
        "each window committed once: the output of the unrecorded checkpoint was not committed before the crash"
    );
}

#[test]
fn a_hung_taskmanager_does_not_stall_a_cancel() {
    use kappa_proto::v1::job_manager_service_client::JobManagerServiceClient;
    use kappa_proto::v1::{ProtocolVersion, RegisterTaskManagerRequest};

    let broker = Broker::start().expect("broker");
    broker.create_topic("clicks", 2).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    broker
        .produce("clicks", &spread(&clicks(2_000, 5, START, 2, 20), 2))
        .expect("produce");
    // Heartbeats would not find the hung one lost for a minute.
    let cluster = Cluster::jobmanager(&["--heartbeat-timeout", "60s"]).expect("jobmanager");
    let _tm = cluster.taskmanager(2).expect("taskmanager");
    // It accepts connections and never answers.
    let hung = TcpListener::bind("127.0.0.1:0").expect("listener");
    let hung_address = hung.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hung.incoming().flatten() {
            held.push(s);
        }
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = rt
        .block_on(JobManagerServiceClient::connect(cluster.rpc.clone()))
        .expect("connect");
    rt.block_on(client.register_task_manager(RegisterTaskManagerRequest {
        protocol_version: ProtocolVersion::Current as u32,
        version: "hung".into(),
        taskmanager_id: "hung".into(),
        address: hung_address,
        slots: 1,
        metrics_address: String::new(),
    }))
    .expect("registered");

    // B is spread over both taskmanagers: its deployment to the hung one never answers.
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2);
    let b = cluster.submit(&job, &[]).expect("submit B");
    eventually("B placed", Duration::from_secs(10), || {
        let d = cluster.job(&b).map_err(|e| e.to_string())?;
        let placed = d["vertices"][0]["subtasks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["taskmanager"] == "hung");
        placed.then_some(()).ok_or_else(|| d.to_string())
    })
    .unwrap();
    // A takes the last free slot of the real taskmanager and runs.
    let a = cluster
        .submit(&job.replace("parallelism = 2", "parallelism = 1"), &[])
        .expect("submit A");
    cluster
        .wait_state(&a, &["RUNNING"], Duration::from_secs(30))
        .expect("A runs");

    let started = Instant::now();
    assert!(cluster.kappactl(&["cancel", &a]).status.success());
    cluster
        .wait_state(&a, &["CANCELED"], Duration::from_secs(10))
        .expect("A cancelled while B's deployment hangs");
    println!("cancel of A: {:?}", started.elapsed());

    let started = Instant::now();
    assert!(cluster.kappactl(&["cancel", &b]).status.success());
    let d = cluster
        .wait_state(&b, &["CANCELED"], Duration::from_secs(20))
        .expect("B cancelled although a taskmanager of it never answers");
    println!("cancel of B: {:?}", started.elapsed());
    assert!(
        !cluster.log_text().is_empty() && d["state"] == "CANCELED",
        "{d}"
    );
    let tms: serde_json::Value = cluster
        .get("/api/v1/taskmanagers")
        .expect("taskmanagers")
        .json()
        .expect("json");
    assert!(
        tms.as_array()
            .is_some_and(|t| t.iter().all(|t| t["id"] != "hung")),
        "the hung taskmanager is treated as lost: {tms}"
    );
}

#[test]
fn malformed_exchange_frames_are_refused_and_the_job_goes_on() {
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use kappa_proto::v1::data_exchange_service_client::DataExchangeServiceClient;
    use kappa_proto::v1::exchange_frame::Frame;
    use kappa_proto::v1::{ExchangeFrame, ExchangeHeader};
    use std::sync::Arc;

    let broker = Broker::start().expect("broker");
    let data = clicks(6_000, 17, START, 3, 50);
    broker.create_topic("clicks", 2).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    broker
        .produce("clicks", &spread(&data, 2))
        .expect("produce");
    let cluster = Cluster::start(2).expect("cluster");
    let id = cluster
        .submit(
            &reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2),
            &[],
        )
        .expect("submit");
    let d = cluster
        .wait_state(&id, &["RUNNING"], Duration::from_secs(30))
        .expect("runs");
    let attempt = d["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|a| a["attempt"].as_u64())
        .expect("attempt") as u32;
    let tms: serde_json::Value = cluster
        .get("/api/v1/taskmanagers")
        .expect("taskmanagers")
        .json()
        .expect("json");
    let address = tms[0]["address"].as_str().expect("address").to_string();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let header = |upstream: u32| ExchangeFrame {
        frame: Some(Frame::Header(ExchangeHeader {
            job_id: id.clone(),
            attempt,
            upstream,
            downstream: 0,
            edge: 0,
        })),
        origin_us: None,
    };
    let exchange = |frames: Vec<ExchangeFrame>| {
        rt.block_on(async {
            let mut client = DataExchangeServiceClient::connect(format!("http://{address}"))
                .await
                .map_err(|e| e.to_string())?;
            let mut credits = client
                .exchange(tokio_stream::iter(frames))
                .await
                .map_err(|s| (s.code(), s.message().to_string()))
                .map_err(|e| format!("{e:?}"))?
                .into_inner();
            // Credits until the receiver ends the stream, with its reason.
            loop {
                match credits.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return Ok(()),
                    Err(s) => return Err(format!("{:?} {}", s.code(), s.message())),
                }
            }
        })
    };
    let err = exchange(vec![header(7)]).expect_err("an upstream the edge does not have");
    assert!(
        err.contains("InvalidArgument") && err.contains("no stream from subtask 7"),
        "{err}"
    );
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(Int64Array::from(vec![1, 2]))],
    )
    .expect("batch");
    let mut bytes = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &schema).expect("ipc");
        w.write(&batch).expect("write");
        w.finish().expect("finish");
    }
    let err = exchange(vec![
        header(0),
        ExchangeFrame {
            frame: Some(Frame::Records(bytes)),
            origin_us: None,
        },
    ])
    .expect_err("a batch of other columns");
    assert!(
        err.contains("InvalidArgument") && err.contains("columns [n Int64]"),
        "{err}"
    );
    let err = exchange(vec![
        header(0),
        ExchangeFrame {
            frame: Some(Frame::Records(b"not arrow".to_vec())),
            origin_us: None,
        },
    ])
    .expect_err("bytes that are not Arrow");
    assert!(err.contains("malformed record frame"), "{err}");

    // The job never saw any of it.
    broker
        .produce("clicks", &closing(&data, 2))
        .expect("closing");
    let expected = hourly_counts(&data, |u| u > 50);
    let records = broker
        .read_results("out", &expected, Duration::from_secs(60))
        .expect("read");
    cluster.assert_results(&id, &latest_per_key(&records).expect("records"), &expected);
    assert_eq!(cluster.job(&id).expect("job")["state"], "RUNNING");
}

/// Waits until `p` exited after a SIGTERM; returns how long that took.
fn stopped_by_sigterm(p: &mut kappa_integration_tests::cluster::Process, what: &str) -> Duration {
    let sent = Instant::now();
    p.terminate().expect("SIGTERM");
    eventually(what, Duration::from_secs(10), || {
        p.exited()
            .map(|_| ())
            .ok_or_else(|| "still running".to_string())
    })
    .unwrap();
    sent.elapsed()
}

#[test]
fn sigterm_stops_a_jobmanager_and_a_taskmanager_with_a_running_job_within_ten_seconds() {
    let broker = Broker::start().expect("broker");
    let data = clicks(4_000, 91, START, 2, 50);
    broker.create_topic("clicks", 2).expect("topic");
    broker
        .produce("clicks", &spread(&data, 2))
        .expect("produce");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    // No checkpoint directory: the stopping jobmanager cancels its jobs (with one, it leaves
    // them to the next jobmanager and exits at once).
    let mut cluster = Cluster::jobmanager(&[]).expect("jobmanager");
    let mut tm = cluster.taskmanager(2).expect("taskmanager");
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2);
    let id = cluster.submit(&job, &[]).expect("submit");
    eventually("the job to read", Duration::from_secs(30), || {
        let d = cluster.job(&id).map_err(|e| e.to_string())?;
        let read = d["vertices"][0]["records_in"].as_u64().unwrap_or(0);
        (d["state"] == "RUNNING" && read > 0)
            .then_some(())
            .ok_or_else(|| format!("{} read {read}", d["state"]))
    })
    .unwrap();
    let jm = stopped_by_sigterm(cluster.process(), "the jobmanager to exit after SIGTERM");
    let tm_took = stopped_by_sigterm(&mut tm, "the taskmanager to exit after SIGTERM");
    println!("SIGTERM to exit: jobmanager {jm:?}, taskmanager {tm_took:?}");
}

#[test]
fn a_new_jobmanager_resumes_each_kept_job_on_its_own() {
    let broker = Broker::start().expect("broker");
    let data = clicks(6_000, 97, START, 4, 60);
    broker.create_topic("clicks", 2).expect("topic");
    for t in ["out-a", "out-b"] {
        broker.create_topic(t, SINK_PARTITIONS).expect("topic");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let flags = ["--checkpoint-dir", root.to_str().expect("utf-8")];
    let mut cluster = Cluster::jobmanager(&flags).expect("jobmanager");
    let _tm = cluster.taskmanager(4).expect("taskmanager");
    let job = |out: &str| {
        reference_job(&broker.bootstrap, "clicks", out, FILTER, 1)
            + "\n[checkpoints]\ninterval = \"200ms\"\nretained = 3\n"
    };
    let a = cluster.submit(&job("out-a"), &[]).expect("submit a");
    let b = cluster.submit(&job("out-b"), &[]).expect("submit b");
    let (first, rest) = data.split_at(data.len() / 2);
    broker
        .produce("clicks", &spread(first, 2))
        .expect("produce");
    let record = |id: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(root.join("_jobs").join(format!("{id}.json")))
            .unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_default()
    };
    for id in [&a, &b] {
        eventually(
            "three recorded checkpoints",
            Duration::from_secs(60),
            || {
                let n = record(id)["latest_checkpoint"].as_u64().unwrap_or(0);
                (n >= 3).then_some(()).ok_or(format!("latest {n}"))
            },
        )
        .unwrap();
    }
    cluster.process().kill();
    // Job a lost its latest checkpoint's metadata, job b every one; a third record is garbage.
    let latest_a = record(&a)["latest_checkpoint"]
        .as_u64()
        .expect("latest of a");
    std::fs::remove_file(
        root.join(&a)
            .join(format!("chk-{latest_a}"))
            .join("_metadata"),
    )
    .expect("remove the latest metadata of a");
    for entry in std::fs::read_dir(root.join(&b)).expect("checkpoints of b") {
        let _ = std::fs::remove_file(entry.expect("entry").path().join("_metadata"));
    }
    std::fs::write(root.join("_jobs").join("garbage.json"), b"{\"id\": 4").expect("garbage");

    cluster
        .restart_jobmanager(&flags)
        .expect("jobmanager again");
    let d = cluster
        .wait_state(&a, &["RUNNING"], Duration::from_secs(60))
        .expect("job a runs again");
    let restored = d["attempts"]
        .as_array()
        .and_then(|x| x.last())
        .and_then(|x| x["restored_from"].as_u64())
        .expect("restored from a checkpoint");
    assert!(
        restored < latest_a,
        "an older checkpoint than {latest_a}: {restored}"
    );
    let failed = cluster
        .wait_state(&b, &["FAILED"], Duration::from_secs(30))
        .expect("job b failed");
    let reason = failed["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("could not resume") && reason.contains("_metadata"),
        "{failed}"
    );
    assert!(
        cluster.process().log_text().contains("garbage.json"),
        "the unreadable record is named in the log"
    );

    broker.produce("clicks", &spread(rest, 2)).expect("produce");
    broker
        .produce("clicks", &closing(&data, 2))
        .expect("closing");
    let expected = hourly_counts(&data, |u| u > 50);
    let records = broker
        .read_results("out-a", &expected, Duration::from_secs(120))
        .expect("read");
    cluster.assert_results(&a, &latest_per_key(&records).expect("records"), &expected);
}

#[test]
fn ended_jobs_stay_listed_for_their_retention_across_a_jobmanager_restart_then_go() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("clicks.jsonl");
    std::fs::write(&input, json_lines(&clicks(500, 5, START, 2, 10))).expect("input");
    let root = dir.path().join("checkpoints");
    let allowed = dir.path().to_str().expect("utf-8");
    let flags = [
        "--checkpoint-dir",
        root.to_str().expect("utf-8"),
        "--job-retention",
        "4s",
        "--allow-path",
        allowed,
    ];
    let mut cluster = Cluster::jobmanager(&flags).expect("jobmanager");
    let _tm = cluster
        .taskmanager_with(1, &["--allow-path", allowed], &[])
        .expect("taskmanager");
    let job = format!(
        "name = \"short\"\nparallelism = 1\n\n[source]\nconnector = \"file\"\npath = \"{}\"\nformat = \"json\"\nschema = {{ user_id = \"string\", item_id = \"string\", timestamp = \"timestamp_ms\" }}\n\n[sink]\nconnector = \"file\"\npath = \"{}\"\nformat = \"json\"\n",
        input.display(),
        dir.path().join("out").display()
    );
    let id = cluster.submit(&job, &[]).expect("submit");
    let ended = Instant::now();
    cluster
        .wait_state(&id, &["FINISHED"], Duration::from_secs(30))
        .expect("finished");
    let record = root.join("_jobs").join(format!("{id}.json"));
    assert!(record.exists(), "the ended job's record is kept");

    // A new jobmanager lists the ended job: its history stays readable.
    cluster
        .restart_jobmanager(&flags)
        .expect("jobmanager again");
    let d = cluster
        .job(&id)
        .expect("the ended job is listed after the restart");
    assert_eq!(d["state"], "FINISHED", "{d}");
    assert!(
        ended.elapsed() < Duration::from_secs(4),
        "checked within the retention"
    );

    eventually(
        "the ended job to be forgotten",
        Duration::from_secs(20),
        || {
            let listed = cluster.job(&id).is_ok();
            match (listed, record.exists()) {
                (false, false) => Ok(()),
                state => Err(format!("listed, record kept: {state:?}")),
            }
        },
    )
    .unwrap();
}
