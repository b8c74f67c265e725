//! Bad input end to end: invalid job files are refused with their line and field and nothing
//! runs; bad records fail the job naming topic, partition and offset, or are skipped or
//! dead-lettered and counted; an unreachable Kafka shows in the job status and is retried.

use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::Click;
use kappa_integration_tests::reference_job;

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

fn write_job(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("job.toml");
    std::fs::write(&path, text).expect("write job");
    path.display().to_string()
}

#[test]
fn invalid_job_files_are_refused_with_line_and_field_and_nothing_runs() {
    let cluster = Cluster::start(2).expect("kappa local");
    let dir = tempfile::tempdir().expect("tmp");
    let good = reference_job("127.0.0.1:9", "in", "out", FILTER, 2);
    let line_of = |text: &str, needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .expect("needle")
            + 1
    };
    let cases = [
        (
            good.replace("format = \"json\"\nstart", "formt = \"json\"\nstart"),
            "formt",
            "source",
        ),
        (
            good.replace("parallelism = 2", "parallelism = \"two\""),
            "parallelism",
            "parallelism",
        ),
        (
            good.replace(
                "max_out_of_orderness = \"10s\"",
                "max_out_of_orderness = \"10 sec0nds\"",
            ),
            "max_out_of_orderness",
            "event_time.max_out_of_orderness",
        ),
        (
            good.replace(FILTER, "CAST(split_part(user_id, '_', 2) AS INT) >"),
            "filter =",
            "steps[0].filter",
        ),
        (
            good.replace("key_by = [\"item_id\"]", "key_by = [\"product\"]"),
            "key_by",
            "window.key_by[0]",
        ),
    ];
    for (text, needle, field) in cases {
        let path = write_job(&dir, &text);
        let line = line_of(&text, needle);
        for cmd in ["validate", "submit"] {
            let out = cluster.kappactl(&[cmd, &path]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd} accepted a bad job ({field})");
            assert!(
                err.contains(&format!("job.toml:{line}:")),
                "{cmd}: line {line} not named: {err}"
            );
            assert!(err.contains(field), "{cmd}: field {field} not named: {err}");
            assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
        }
    }
    let list = cluster.kappactl(&["list", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout).trim(),
        "[]",
        "nothing runs"
    );
    // The REST API answers the same with a JSON body naming line and field.
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/jobs", cluster.url))
        .json(&serde_json::json!({"job": good.replace("size = \"1h\"", "size = \"1 hour-ish\"")}))
        .send()
        .expect("post");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().expect("json body");
    assert_eq!(body["details"][0]["field"], "window.size");
    assert_eq!(body["details"][0]["line"], line_of(&good, "size = \"1h\""));
}

fn bad_data(broker: &Broker, topic: &str) {
    broker.create_topic(topic, 2).expect("topic");
    let good = |ts: i64| {
        Click {
            user: 60,
            item: 7,
            timestamp: 1_732_500_000_000 + ts,
        }
        .json()
    };
    broker
        .produce(
            topic,
            &[
                (0, good(0)),
                (0, good(1)),
                (0, "{\"user_id\": oops".into()),
                (0, good(2)),
                (1, good(3)),
                (1, r#"{"user_id":"user_99","item_id":"item_1"}"#.into()),
            ],
        )
        .expect("produce");
}

#[test]
fn a_bad_record_fails_the_job_naming_topic_partition_and_offset() {
    let broker = Broker::start().expect("broker");
    let cluster = Cluster::start(2).expect("kappa local");
    bad_data(&broker, "dirty");
    broker.create_topic("out", 1).expect("topic");
    let id = cluster
        .submit(
            &reference_job(&broker.bootstrap, "dirty", "out", FILTER, 1),
            &[],
        )
        .expect("submit");
    // A data error is not retried.
    let (_, error) = cluster
        .failed_once(&id, Duration::from_secs(60))
        .expect("failed");
    // Partitions are read in parallel: either bad record may be met first.
    assert!(
        error.contains("topic `dirty` partition 0 offset 2: ")
            || error
                .contains("topic `dirty` partition 1 offset 1: missing or null field `timestamp`"),
        "{error}"
    );
}

#[test]
fn bad_records_are_skipped_or_dead_lettered_and_counted() {
    let broker = Broker::start().expect("broker");
    let cluster = Cluster::start(4).expect("kappa local");
    bad_data(&broker, "dirty");
    broker.create_topic("dlq", 1).expect("topic");
    broker.create_topic("out", 1).expect("topic");
    let base = reference_job(&broker.bootstrap, "dirty", "out", FILTER, 1);
    let skip = base.replace(
        "start = \"earliest\"",
        "start = \"earliest\"\non_error = \"skip\"",
    );
    let dead = base.replace(
        "start = \"earliest\"",
        "start = \"earliest\"\non_error = \"dead-letter\"\ndead_letter_topic = \"dlq\"",
    );
    let id_skip = cluster.submit(&skip, &[]).expect("submit skip");
    let id_dead = cluster.submit(&dead, &[]).expect("submit dead-letter");
    let mut letters = broker
        .read("dlq", 1, Duration::from_secs(60), |r| r.len() >= 2)
        .expect("read dlq");
    letters.sort_by(|a, b| {
        a.headers
            .get("kappa.source")
            .cmp(&b.headers.get("kappa.source"))
    });
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].value, "{\"user_id\": oops");
    assert!(
        letters[0].headers["kappa.source"].contains("topic `dirty` partition 0 offset 2"),
        "{:?}",
        letters[0].headers
    );
    assert!(
        letters[1].headers["kappa.error"].contains("timestamp"),
        "{:?}",
        letters[1].headers
    );
    for (id, field) in [
        (id_skip, "bad_records_skipped"),
        (id_dead, "bad_records_dead_lettered"),
    ] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let job = cluster.job(&id).expect("status");
            assert_eq!(job["state"], "RUNNING", "{job}");
            if job["vertices"][0][field] == 2 && job["vertices"][0]["records_in"] == 4 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{field} not counted: {job}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let metrics = cluster
        .get("/metrics")
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains("kappa_bad_records_skipped_total"),
        "{metrics}"
    );
}

#[test]
fn unreachable_kafka_shows_in_the_status_and_is_retried_with_backoff() {
    let cluster = Cluster::start(2).expect("kappa local");
    let job = reference_job("127.0.0.1:9", "in", "out", FILTER, 1).replace(
        "[source.schema]",
        "properties = { \"socket.connection.setup.timeout.ms\" = \"1000\" }\n\n[source.schema]",
    );
    let job = job.replace("[sink]", "[restart]\nstrategy = \"exponential-backoff\"\ndelay = \"200ms\"\nmax_delay = \"1s\"\n\n[sink]");
    let id = cluster.submit(&job, &[]).expect("submit");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let detail = loop {
        let d = cluster.job(&id).expect("status");
        if d["attempts"].as_array().map_or(0, Vec::len) >= 2 {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "not retried: {d}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        matches!(
            detail["state"].as_str(),
            Some("RESTARTING" | "CREATED" | "RUNNING")
        ),
        "{detail}"
    );
    let error = detail["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot reach Kafka at 127.0.0.1:9"),
        "{error}"
    );
    assert!(cluster.kappactl(&["cancel", &id]).status.success());
    cluster
        .wait_state(&id, &["CANCELED"], Duration::from_secs(30))
        .expect("cancelled");
}
