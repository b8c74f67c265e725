//! The redis sink against a private redis-server (Debian's): the reference job writes its
//! hourly counts as JSON under `clicks:{item_id}:{window_end}`, checkpointing, with the
//! password by reference; a taskmanager killed with SIGKILL in the middle of the stream makes
//! the job replay from its checkpoint, and the keys read back with redis-cli are exactly the
//! reference's. A hash per window with a TTL, and a wrong password failing the job with the
//! server's reason.

use std::collections::BTreeMap;
use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::recovery::{RECOVERY, first_checkpoint, kill_a_taskmanager};
use kappa_integration_tests::redis::{PASSWORD, Redis};
use kappa_integration_tests::reference::{
    HOUR, START, clicks, closing, first_half_produced, hourly_counts, produce_closed, spread,
};
use kappa_integration_tests::{eventually, reference_job};
use serde_json::Value;

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const ENV: &str = "REDIS_PASSWORD";

/// `job` with its [sink] table replaced by a redis sink with `settings`.
fn with_redis_sink(job: &str, url: &str, settings: &str) -> String {
    let at = job.find("[sink]").expect("a [sink] table");
    format!(
        "{}[sink]\nconnector = \"redis\"\nurl = \"{url}\"\nkey = \"clicks:{{item_id}}:{{window_end}}\"\n{settings}\n",
        &job[..at]
    )
}

/// The hourly counts under `clicks:*` (SET: the row as JSON).
fn counts(redis: &Redis) -> BTreeMap<(String, i64), i64> {
    let mut out = BTreeMap::new();
    for key in redis.keys("clicks:*").expect("keys") {
        let json = redis.cli(&["GET", &key]).expect("GET");
        let row: Value = serde_json::from_str(json.trim()).expect("a JSON row");
        let (item, end) = (
            row["item_id"].as_str().unwrap_or_default().to_string(),
            row["window_end"].as_i64().unwrap_or_default(),
        );
        assert_eq!(key, format!("clicks:{item}:{end}"), "{row}");
        assert_eq!(row["window_start"].as_i64(), Some(end - HOUR), "{row}");
        out.insert((item, end), row["click_count"].as_i64().unwrap_or(-1));
    }
    out
}

/// A jobmanager checkpointing to `dir` and two taskmanagers that may read `REDIS_PASSWORD`.
fn cluster(dir: &std::path::Path) -> (Cluster, Vec<kappa_integration_tests::cluster::Process>) {
    let cp = dir.join("checkpoints");
    let allow = ["--allow-secret-env", ENV];
    let mut flags = vec!["--checkpoint-dir", cp.to_str().expect("utf-8")];
    flags.extend(allow);
    let cluster = Cluster::jobmanager(&flags).expect("jobmanager");
    let env = [(ENV, PASSWORD.to_string())];
    let tms = (0..2)
        .map(|_| {
            cluster
                .taskmanager_with(2, &allow, &env)
                .expect("taskmanager")
        })
        .collect();
    (cluster, tms)
}

#[test]
fn hourly_counts_land_under_their_keys_exactly_once_across_a_kill_9() {
    let broker = Broker::start().expect("broker");
    let redis = Redis::start().expect("redis");
    let dir = tempfile::tempdir().expect("tmp");
    let (cluster, mut tms) = cluster(dir.path());
    let (data, half) = first_half_produced(&broker, 16_000, 61).expect("data");
    let job = with_redis_sink(
        &reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2),
        &redis.url,
        &format!("password = \"${{env:{ENV}}}\"\n\n{RECOVERY}"),
    );
    let id = cluster
        .submit(&job, &["--start", "earliest"])
        .expect("submit");
    first_checkpoint(&cluster, &id);
    kill_a_taskmanager(&cluster, &mut tms, &id);
    let mut tail = spread(&data[half..], 4);
    tail.extend(closing(&data, 4));
    broker.produce("clicks", &tail).expect("the second half");

    let expected = hourly_counts(&data, |u| u > 50);
    let got = eventually("redis to hold the counts", Duration::from_secs(120), || {
        let got = counts(&redis);
        match got == expected {
            true => Ok(got),
            false => Err(format!("{} of {} keys", got.len(), expected.len())),
        }
    })
    .unwrap();
    cluster.assert_results(&id, &got, &expected);
    let d = cluster.job(&id).expect("status");
    assert!(
        d["attempts"].as_array().map_or(0, Vec::len) > 1,
        "the kill restarted the job: {}",
        d["attempts"]
    );
}

#[test]
fn a_window_is_a_hash_with_a_ttl_and_a_wrong_password_fails_the_job_saying_so() {
    let broker = Broker::start().expect("broker");
    let redis = Redis::start().expect("redis");
    let cluster = Cluster::start(4).expect("cluster");
    let data = clicks(3_000, 62, START, 3, 20);
    produce_closed(&broker, "clicks", 4, &data).expect("produce");
    let base = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 1);
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", redis.port);
    let job = with_redis_sink(&base, &url, "command = \"hset\"\nttl = \"1h\"");
    let id = cluster
        .submit(&job, &["--start", "earliest"])
        .expect("submit");
    let expected = hourly_counts(&data, |u| u > 50);
    let ((item, end), count) = expected.iter().next().expect("a window");
    let key = format!("clicks:{item}:{end}");
    let hash = eventually("the first window's hash", Duration::from_secs(60), || {
        let h = redis.cli(&["HGETALL", &key]).map_err(|e| e.to_string())?;
        match h.lines().count() {
            8 => Ok(h),
            _ => Err(h),
        }
    })
    .unwrap();
    let fields: BTreeMap<&str, &str> = hash
        .lines()
        .collect::<Vec<_>>()
        .chunks(2)
        .map(|kv| (kv[0], kv[1]))
        .collect();
    assert_eq!(fields["click_count"], count.to_string(), "{hash}");
    assert_eq!(fields["window_end"], end.to_string(), "{hash}");
    assert_eq!(fields["item_id"], item, "{hash}");
    let ttl: i64 = redis
        .cli(&["PTTL", &key])
        .expect("PTTL")
        .trim()
        .parse()
        .expect("ms");
    assert!(ttl > 0 && ttl <= HOUR, "{ttl}");
    assert!(cluster.kappactl(&["cancel", &id]).status.success());

    let wrong = with_redis_sink(
        &base,
        &format!("redis://:nope@127.0.0.1:{}/0", redis.port),
        "",
    );
    let id = cluster
        .submit(&wrong, &["--start", "earliest"])
        .expect("submit");
    let (_, why) = cluster
        .failed_once(&id, Duration::from_secs(60))
        .expect("the job fails");
    assert!(
        why.contains("redis") && why.contains("127.0.0.1") && !why.contains("nope"),
        "{why}"
    );
}
