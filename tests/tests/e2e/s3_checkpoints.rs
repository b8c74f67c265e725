//! Checkpoints in S3 (a real SeaweedFS server): metadata and SSTs land in the bucket, later
//! checkpoints upload only new files, and while the server is down checkpoints are declined
//! or time out but the job keeps running, and a later checkpoint succeeds.

use std::time::{Duration, Instant};

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{START, clicks, spread};
use kappa_integration_tests::s3::S3Server;
use kappa_integration_tests::{SINK_PARTITIONS, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

fn checkpoints(cluster: &Cluster, id: &str) -> Vec<serde_json::Value> {
    let out = cluster.kappactl(&["checkpoints", id, "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn wait_completed_after(
    cluster: &Cluster,
    id: &str,
    after: u64,
    timeout: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(c) = checkpoints(cluster, id)
            .into_iter()
            .find(|c| c["status"] == "COMPLETED" && c["id"].as_u64().unwrap_or(0) > after)
        {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint completed after {after}\n{}",
            cluster.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn checkpoints_go_to_s3_incrementally_and_survive_an_outage() {
    let mut s3 = S3Server::start("checkpoints").expect("SeaweedFS");
    let broker = Broker::start().expect("broker");
    let data = clicks(10_000, 41, START, 6, 300);
    broker.create_topic("clicks", 4).expect("topic");
    broker
        .produce("clicks", &spread(&data, 4))
        .expect("produce");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let env = s3.env();
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
    let cluster = Cluster::local_with_env(4, &["--checkpoint-dir", "s3://checkpoints/kappa"], &env)
        .expect("kappa local");
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2)
        + "\n[checkpoints]\ninterval = \"500ms\"\ntimeout = \"3s\"\nretained = 2\n";
    let id = cluster.submit(&job, &[]).expect("submit");

    let first = wait_completed_after(&cluster, &id, 0, Duration::from_secs(60));
    assert!(
        first["path"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("s3://checkpoints/kappa/{id}/chk-")),
        "{first}"
    );
    let later = wait_completed_after(
        &cluster,
        &id,
        first["id"].as_u64().unwrap() + 1,
        Duration::from_secs(30),
    );
    assert!(
        later["incremental_bytes"].as_u64().unwrap() < later["full_bytes"].as_u64().unwrap(),
        "incremental: {later}"
    );

    // The server goes away: checkpoints fail, the job keeps running.
    s3.stop();
    let stopped_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if checkpoints(&cluster, &id)
            .iter()
            .any(|c| c["status"] == "FAILED")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint failed while S3 was down\n{}",
            cluster.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        cluster.job(&id).unwrap()["state"],
        "RUNNING",
        "the job keeps running without S3"
    );
    println!(
        "first failed checkpoint {:?} after S3 stopped",
        stopped_at.elapsed()
    );

    // It comes back: a later checkpoint succeeds.
    s3.resume().expect("SeaweedFS again");
    let newest = checkpoints(&cluster, &id)
        .first()
        .and_then(|c| c["id"].as_u64())
        .unwrap_or(0);
    let recovered = wait_completed_after(&cluster, &id, newest, Duration::from_secs(90));
    assert_eq!(recovered["status"], "COMPLETED");
    assert!(cluster.kappactl(&["cancel", &id]).status.success());
}
