//! The Kafka broker dies (SIGKILL) mid-stream and comes back on the same storage: the
//! reference job, checkpointed into an exactly-once Kafka sink, reads on from where it was
//! and every window ends up with exactly its count.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kappa_integration_tests::broker::{Broker, BrokerOptions};
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{
    Click, START, assert_final_counts, clicks, closing, hourly_counts, latest_per_key,
};
use kappa_integration_tests::s3::S3Server;
use kappa_integration_tests::{SINK_PARTITIONS, eventually, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const PARTITIONS: i32 = 2;

fn produce(broker: &Broker, chunk: &[kappa_integration_tests::reference::Click]) {
    let records: Vec<(i32, String)> = chunk
        .iter()
        .enumerate()
        .map(|(i, c)| ((i as i32) % PARTITIONS, c.json()))
        .collect();
    broker.produce("clicks", &records).expect("produce");
}

/// A click read back from the input topic.
fn parse_click(json: &str) -> Option<Click> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let number = |field: &str, prefix: &str| -> Option<u32> {
        v[field].as_str()?.strip_prefix(prefix)?.parse().ok()
    };
    Some(Click {
        user: number("user_id", "user_")?,
        item: number("item_id", "item_")?,
        timestamp: v["timestamp"].as_i64()?,
    })
}

/// The number of records the job's source has read.
fn records_in(cluster: &Cluster, id: &str) -> u64 {
    cluster
        .job(id)
        .ok()
        .and_then(|d| d["vertices"][0]["records_in"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_broker_killed_mid_stream_and_restarted_leaves_results_exact() {
    // Tansu keeps its log in S3 so that a restarted broker has every record it acknowledged.
    let s3 = S3Server::start("tansu").expect("s3");
    let env: Vec<(String, String)> = s3
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let broker = Broker::start_with(BrokerOptions {
        storage: "s3://tansu/".into(),
        env,
        ..BrokerOptions::default()
    })
    .expect("broker");
    broker.create_topic("clicks", PARTITIONS).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let cluster = Cluster::local(
        2,
        &[
            "--checkpoint-dir",
            root.to_str().expect("utf-8 path"),
            "--restart-strategy",
            "fixed-delay",
            "--restart-delay",
            "500ms",
        ],
    )
    .expect("kappa local");
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2)
        .replace("[sink]", "[sink]\ndelivery = \"exactly-once\"")
        + "\n[checkpoints]\ninterval = \"1s\"\n";
    let id = cluster.submit(&job, &[]).expect("submit");
    cluster
        .wait_state(&id, &["RUNNING"], Duration::from_secs(60))
        .expect("running");

    let data = clicks(6_000, 17, START, 4, 50);
    let mut seen = 0;
    let back = std::thread::scope(|s| {
        // Clicks arrive over time; the producer waits out the outage (librdkafka retries).
        s.spawn(|| {
            for chunk in data.chunks(300) {
                produce(&broker, chunk);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        eventually(
            "a third of the clicks read",
            Duration::from_secs(60),
            || {
                let n = records_in(&cluster, &id);
                (n >= data.len() as u64 / 3)
                    .then_some(())
                    .ok_or(format!("read {n}"))
            },
        )
        .unwrap();
        seen = cluster.log_text().len();
        broker.kill();
        let killed = Instant::now();
        let killed_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // While the broker is gone the job can neither read, write nor commit; it waits or
        // fails and is restarted, as it likes, but nothing acknowledged may be lost. The
        // broker stays away for 3 s at least, and until a checkpoint has been started
        // without it.
        let noticed = eventually(
            "the job to notice the broker is gone and start a checkpoint",
            Duration::from_secs(30),
            || {
                let log = cluster.log_text().split_off(seen);
                let refused =
                    log.contains("Connection refused") || log.contains("Broker transport failure");
                let history = cluster.checkpoints(&id).map_err(|e| e.to_string())?;
                let tried = history
                    .iter()
                    .any(|c| c["trigger_ms"].as_i64().is_some_and(|t| t > killed_ms));
                (refused && tried && killed.elapsed() >= Duration::from_secs(3))
                    .then_some(killed.elapsed())
                    .ok_or_else(|| format!("refused {refused}, checkpoint tried {tried}"))
            },
        )
        .unwrap();
        eprintln!("broker restart: down for {:.1} s", noticed.as_secs_f64());
        broker.resume().expect("broker back");
        Instant::now()
    });
    broker
        .produce("clicks", &closing(&data, PARTITIONS))
        .expect("produce closing");

    // The producer retries across the outage without idempotence: a batch the broker stored
    // just before it died can be stored twice. Exactly-once is about what the topic holds, so
    // the expected counts come from reading it back, once the job has read it all.
    let produced = data.len() + closing(&data, PARTITIONS).len();
    let held = eventually(
        "the job to read every record of the topic",
        Duration::from_secs(180),
        || {
            let d = cluster.job(&id).map_err(|e| e.to_string())?;
            let parts: Vec<(i64, i64)> = d["vertices"][0]["subtasks"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["partitions"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| Some((p["position"].as_i64()?, p["high_watermark"].as_i64()?)))
                .collect();
            let held: i64 = parts.iter().map(|p| p.1).sum();
            let all_read = parts.len() == PARTITIONS as usize
                && parts.iter().all(|(pos, high)| pos == high)
                && held >= produced as i64;
            all_read
                .then_some(held as usize)
                .ok_or_else(|| format!("{parts:?} of {produced} produced"))
        },
    )
    .unwrap();
    let input = broker
        .read("clicks", PARTITIONS, Duration::from_secs(60), |r| {
            r.len() >= held
        })
        .expect("read the input");
    let clicks_held: Vec<Click> = input.iter().filter_map(|r| parse_click(&r.value)).collect();
    assert_eq!(
        clicks_held.len(),
        input.len(),
        "every record of the topic is a click"
    );
    // The producer's retries across the broker's death may store a batch twice, and Tansu
    // has been seen to count offsets in its high watermark that no consumer then reads: the
    // job must count what the topic gives a consumer.
    if input.len() != produced || held != input.len() {
        eprintln!(
            "broker restart: the topic gives {} records for {produced} produced, its high watermarks say {held}",
            input.len()
        );
    }
    let expected = hourly_counts(&clicks_held, |u| u > 50);
    let out = broker
        .read_results("out", &expected, Duration::from_secs(180))
        .expect("read");
    let got: BTreeMap<(String, i64), i64> = latest_per_key(&out).expect("records");
    eprintln!(
        "broker restart: every result committed {:.1} s after the broker came back; {} records for {} windows",
        back.elapsed().as_secs_f64(),
        out.len(),
        expected.len()
    );
    cluster.assert_results(&id, &got, &expected);
    // Every record the sink committed carries its window's final count: none was counted
    // twice or missed before it was emitted.
    assert_final_counts(&out, &expected);
    let d = cluster.job(&id).expect("job");
    assert_eq!(d["state"], "RUNNING", "{d}");
    eprintln!(
        "broker restart: {} attempts; the cluster log after the kill:\n{}",
        d["attempts"].as_array().map_or(0, Vec::len),
        cluster.log_text().split_off(seen)
    );
}
