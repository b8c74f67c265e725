//! The distributed cluster: a `kappa jobmanager` and `kappa taskmanager` processes on loopback
//! with a real broker — results across taskmanagers, spread scheduling, a taskmanager killed
//! with -9, late taskmanagers, slot waits, refused peers. (Partitions added while running are
//! not tested here: neither Tansu 0.6 nor librdkafka's mock cluster supports CreatePartitions.)

use std::time::{Duration, Instant};

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{
    START, clicks, hourly_counts, latest_per_key, produce_closed, rest_and_closing, spread,
};
use kappa_integration_tests::{SINK_PARTITIONS, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    kappa_integration_tests::eventually(what, timeout, || f().ok_or_else(|| "not yet".into()))
        .unwrap()
}

#[test]
fn three_taskmanagers_compute_what_kappa_local_and_the_reference_compute() {
    let broker = Broker::start().expect("broker");
    let data = clicks(20_000, 5, START, 6, 300);
    produce_closed(&broker, "clicks", 8, &data).expect("produce");
    let expected = hourly_counts(&data, |u| u > 50);

    let cluster = Cluster::jobmanager(&[]).expect("jobmanager");
    let _tms: Vec<_> = (0..3)
        .map(|_| cluster.taskmanager(2).expect("taskmanager"))
        .collect();
    broker
        .create_topic("hourly-distributed", SINK_PARTITIONS)
        .expect("topic");
    let id = cluster
        .submit(
            &reference_job(&broker.bootstrap, "clicks", "hourly-distributed", FILTER, 4),
            &[],
        )
        .expect("submit");
    let records = broker
        .read(
            "hourly-distributed",
            SINK_PARTITIONS,
            Duration::from_secs(120),
            |r| r.len() >= expected.len(),
        )
        .expect("read");
    assert_eq!(records.len(), expected.len());
    cluster.assert_results(&id, &latest_per_key(&records).expect("records"), &expected);

    // Subtasks are spread over the taskmanagers; every partition has exactly one reader.
    let detail = cluster.job(&id).expect("status");
    let mut tms: Vec<&str> = detail["vertices"][0]["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["taskmanager"].as_str())
        .collect();
    tms.sort();
    tms.dedup();
    assert_eq!(
        tms.len(),
        3,
        "4 slots over 3 taskmanagers use all of them: {detail}"
    );
    let mut partitions: Vec<i64> = Vec::new();
    wait_for("partition progress", Duration::from_secs(10), || {
        let d = cluster.job(&id).ok()?;
        partitions = d["vertices"][0]["subtasks"]
            .as_array()?
            .iter()
            .flat_map(|s| s["partitions"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["partition"].as_i64())
            .collect();
        (partitions.len() == 8).then_some(())
    });
    partitions.sort();
    assert_eq!(partitions, (0..8).collect::<Vec<_>>());

    // Every taskmanager serves /metrics; the REST API lists them with their slots.
    let tms: serde_json::Value = cluster
        .get("/api/v1/taskmanagers")
        .expect("taskmanagers")
        .json()
        .expect("json");
    assert_eq!(tms.as_array().map(Vec::len), Some(3));
    for tm in tms.as_array().unwrap() {
        assert_eq!(tm["slots_total"], 2);
        assert!(
            tm["memory_bytes"].as_u64().unwrap_or(0) > 0
                || tm["last_heartbeat_ms_ago"].as_u64().is_some()
        );
        let text = reqwest::blocking::get(format!(
            "http://{}/metrics",
            tm["address"].as_str().unwrap()
        ))
        .expect("tm metrics")
        .text()
        .expect("text");
        assert!(text.contains("kappa_taskmanager_slots"), "{text}");
    }
    let status = cluster.kappactl(&["status", &id]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("on tm-"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    // kappa local computes the same.
    let local = Cluster::start(4).expect("kappa local");
    broker
        .create_topic("hourly-local", SINK_PARTITIONS)
        .expect("topic");
    let local_id = local
        .submit(
            &reference_job(&broker.bootstrap, "clicks", "hourly-local", FILTER, 4),
            &[],
        )
        .expect("submit");
    let local_records = broker
        .read(
            "hourly-local",
            SINK_PARTITIONS,
            Duration::from_secs(120),
            |r| r.len() >= expected.len(),
        )
        .expect("read");
    local.assert_results(
        &local_id,
        &latest_per_key(&local_records).expect("records"),
        &expected,
    );
}

#[test]
fn a_killed_taskmanager_restarts_the_job_on_the_remaining_slots() {
    let broker = Broker::start().expect("broker");
    let data = clicks(30_000, 9, START, 8, 200);
    let (first, rest) = data.split_at(15_000);
    broker.create_topic("clicks", 4).expect("topic");
    broker
        .produce("clicks", &spread(first, 4))
        .expect("produce");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");

    let cluster = Cluster::jobmanager(&["--heartbeat-timeout", "3s"]).expect("jobmanager");
    let mut tms: Vec<_> = (0..3)
        .map(|_| cluster.taskmanager(2).expect("taskmanager"))
        .collect();
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2).replace(
        "[sink]",
        "[restart]\nstrategy = \"fixed-delay\"\ndelay = \"500ms\"\n\n[sink]",
    );
    let id = cluster.submit(&job, &[]).expect("submit");
    broker
        .read("out", SINK_PARTITIONS, Duration::from_secs(60), |r| {
            r.len() > 100
        })
        .expect("first results");

    // kill -9 a taskmanager that runs subtasks of the job.
    let d = cluster.job(&id).expect("status");
    let victim_id = d["vertices"][0]["subtasks"][0]["taskmanager"]
        .as_str()
        .expect("placed")
        .to_string();
    let victim = cluster
        .taskmanager_process(&tms, &victim_id)
        .expect("victim process");
    let killed_at = Instant::now();
    tms[victim].kill();
    let mut saw_restart = false;
    wait_for(
        "the job to run again without the killed taskmanager",
        Duration::from_secs(60),
        || {
            let d = cluster.job(&id).ok()?;
            saw_restart |= matches!(d["state"].as_str(), Some("RESTARTING" | "FAILING"));
            let placed_elsewhere =
                d["vertices"][0]["subtasks"][0]["taskmanager"].as_str() != Some(&victim_id);
            (d["state"] == "RUNNING" && d["attempts"].as_array()?.len() >= 2 && placed_elsewhere)
                .then_some(())
        },
    );
    println!("kill -9 to RUNNING again: {:?}", killed_at.elapsed());
    assert!(
        saw_restart
            || cluster.job(&id).unwrap()["attempts"]
                .as_array()
                .unwrap()
                .len()
                >= 2
    );
    let d = cluster.job(&id).expect("status");
    assert!(
        d["error"].as_str().unwrap_or_default().contains("lost"),
        "root cause names the lost taskmanager: {}",
        d["error"]
    );

    // The rest of the data arrives; the restarted job (replaying from the start) completes it.
    let records = rest_and_closing(rest, &data, 4);
    broker.produce("clicks", &records).expect("produce rest");
    let expected = hourly_counts(&data, |u| u > 50);
    let all = broker
        .read("out", SINK_PARTITIONS, Duration::from_secs(120), |r| {
            latest_per_key(r).map(|m| m == expected).unwrap_or(false)
        })
        .expect("read");
    assert_eq!(
        latest_per_key(&all).expect("records"),
        expected,
        "every window, exactly as the reference, after the restart"
    );
}

#[test]
fn a_job_waits_for_slots_and_a_late_taskmanager_gets_it() {
    let broker = Broker::start().expect("broker");
    let data = clicks(5_000, 8, START, 3, 50);
    produce_closed(&broker, "clicks", 2, &data).expect("produce");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let cluster = Cluster::jobmanager(&[]).expect("jobmanager");
    let id = cluster
        .submit(
            &reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2),
            &[],
        )
        .expect("submit");
    let waiting = cluster
        .wait_state(&id, &["CREATED"], Duration::from_secs(10))
        .expect("created");
    let reason = waiting["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("waiting for 2 free slots (0 of 0 free)"),
        "{reason}"
    );
    let _tm = cluster.taskmanager(2).expect("late taskmanager");
    cluster
        .wait_state(&id, &["RUNNING"], Duration::from_secs(30))
        .expect("running");
    let expected = hourly_counts(&data, |u| u > 50);
    let out = broker
        .read("out", SINK_PARTITIONS, Duration::from_secs(60), |r| {
            r.len() >= expected.len()
        })
        .expect("read");
    cluster.assert_results(&id, &latest_per_key(&out).expect("records"), &expected);
}

#[test]
fn a_job_that_never_gets_its_slots_fails_after_the_slot_timeout() {
    let cluster = Cluster::jobmanager(&["--slot-timeout", "2s"]).expect("jobmanager");
    let _tm = cluster.taskmanager(2).expect("taskmanager");
    let id = cluster
        .submit(&reference_job("127.0.0.1:9", "in", "out", FILTER, 3), &[])
        .expect("submit");
    let waiting = cluster
        .wait_state(&id, &["CREATED"], Duration::from_secs(10))
        .expect("created");
    assert!(
        waiting["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("waiting for 3 free slots (2 of 2 free)"),
        "{waiting}"
    );
    let failed = cluster
        .wait_state(&id, &["FAILED"], Duration::from_secs(20))
        .expect("failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no 3 free slots within 2s"),
        "{failed}"
    );
}

#[test]
fn incompatible_and_malformed_taskmanagers_are_refused_with_a_clear_log_line() {
    use kappa_proto::v1::job_manager_service_client::JobManagerServiceClient;
    use kappa_proto::v1::{HeartbeatRequest, ProtocolVersion, RegisterTaskManagerRequest};
    let cluster = Cluster::jobmanager(&[]).expect("jobmanager");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = rt
        .block_on(JobManagerServiceClient::connect(cluster.rpc.clone()))
        .expect("connect");
    let req = |protocol: u32, id: &str| RegisterTaskManagerRequest {
        protocol_version: protocol,
        version: "9.9.9".into(),
        taskmanager_id: id.into(),
        address: "127.0.0.1:1".into(),
        slots: 2,
        metrics_address: String::new(),
    };
    let old = rt
        .block_on(
            client.register_task_manager(req(ProtocolVersion::Current as u32 + 1, "future-tm")),
        )
        .unwrap_err();
    assert_eq!(old.code(), tonic::Code::FailedPrecondition);
    assert!(
        old.message().contains("protocol version"),
        "{}",
        old.message()
    );
    let bad = rt
        .block_on(client.register_task_manager(req(ProtocolVersion::Current as u32, "")))
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let unknown = rt
        .block_on(client.heartbeat(HeartbeatRequest {
            taskmanager_id: "nobody".into(),
            memory_bytes: 0,
            subtasks: vec![],
        }))
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let log = cluster.log_text();
    assert!(
        log.contains("refusing a taskmanager with an incompatible protocol version"),
        "{log}"
    );
    assert!(log.contains("refusing a malformed registration"), "{log}");
    assert_eq!(cluster.overview().unwrap()["taskmanagers"], 0);

    // A data-exchange stream that does not start with its header is refused by a taskmanager.
    use kappa_proto::v1::ExchangeFrame;
    use kappa_proto::v1::data_exchange_service_client::DataExchangeServiceClient;
    use kappa_proto::v1::exchange_frame::Frame;
    let tm = cluster.taskmanager(1).expect("taskmanager");
    let tms: serde_json::Value = cluster.get("/api/v1/taskmanagers").unwrap().json().unwrap();
    let address = tms[0]["address"].as_str().unwrap().to_string();
    let frames = tokio_stream_of(vec![ExchangeFrame {
        frame: Some(Frame::Watermark(5)),
        origin_us: None,
    }]);
    let refused = rt.block_on(async {
        let mut c = DataExchangeServiceClient::connect(format!("http://{address}"))
            .await
            .expect("connect");
        c.exchange(frames).await
    });
    assert_eq!(refused.unwrap_err().code(), tonic::Code::InvalidArgument);
    drop(tm);
}

fn tokio_stream_of<T: Send + 'static>(
    items: Vec<T>,
) -> impl tonic::IntoStreamingRequest<Message = T> {
    let (tx, rx) = tokio::sync::mpsc::channel(items.len().max(1));
    for i in items {
        let _ = tx.try_send(i);
    }
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
