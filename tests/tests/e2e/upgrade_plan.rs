//! `kappactl upgrade --dry-run` against a running reference job and a real broker: the plan
//! names the changed filter, replays exactly the records the topic holds into a shadow topic,
//! knows how far back the topic and the sink's windows go, and refuses a new version that
//! writes elsewhere; the REST API answers for unknown jobs and
//! invalid files with their reasons.

use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{HOUR, START, clicks, spread};
use kappa_integration_tests::{eventually, reference_job};
use serde_json::{Value, json};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

fn plan(cluster: &Cluster, id: &str, job: &str) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/jobs/{id}/upgrade-plan", cluster.url))
        .json(&json!({ "job": job, "file_name": "v2.toml" }))
        .send()
        .expect("request");
    (resp.status().as_u16(), resp.json().expect("json"))
}

#[test]
fn a_dry_run_plans_the_replay_of_what_the_topic_holds_and_refuses_what_cannot_cut_over() {
    let broker = Broker::start().expect("broker");
    broker.create_topic("clicks", 4).expect("topic");
    broker.create_topic("hourly", 2).expect("topic");
    let data = clicks(3_000, 81, START, 3, 20);
    broker
        .produce("clicks", &spread(&data, 4))
        .expect("produce");
    let cluster = Cluster::start(2).expect("cluster");
    let v1 = reference_job(&broker.bootstrap, "clicks", "hourly", FILTER, 2);
    let id = cluster.submit(&v1, &[]).expect("submit");
    cluster
        .wait_state(&id, &["RUNNING"], Duration::from_secs(60))
        .expect("running");
    // The broker's ListOffsets answer may be stale (Tansu): the plan takes the ends of the
    // partitions from what the running job saw in its fetch responses.
    eventually(
        "the job to know the ends of its partitions",
        Duration::from_secs(60),
        || {
            let d = cluster.job(&id).map_err(|e| e.to_string())?;
            let known = d["vertices"][0]["subtasks"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["partitions"].as_array().cloned().unwrap_or_default())
                .filter(|p| p["high_watermark"].is_i64())
                .count();
            (known == 4)
                .then_some(())
                .ok_or_else(|| d["vertices"][0].to_string())
        },
    )
    .unwrap();

    let v2 = v1.replace("> 50", "> 70");
    let dir = tempfile::tempdir().expect("tmp");
    let v2_file = dir.path().join("v2.toml");
    std::fs::write(&v2_file, &v2).expect("write");
    let out = cluster.kappactl(&["upgrade", &id, v2_file.to_str().unwrap(), "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert!(text.contains("logic    steps[0].filter"), "{text}");
    assert!(
        text.contains("start: replay from the earliest retained offsets"),
        "{text}"
    );
    assert!(
        text.contains("backlog: 3000 events in topic `clicks`"),
        "{text}"
    );
    assert!(text.contains("can be cut over"), "{text}");

    // How far back history goes: every partition holds its records from the latest of their
    // first records' event times on; the sink's windows from the first hour's (once it
    // fired).
    let held_from = (0..4)
        .filter_map(|p| data.iter().skip(p).step_by(4).next())
        .map(|c| c.timestamp)
        .max();
    let first_window = data.iter().map(|c| c.timestamp).min().map(|t| t - t % HOUR);
    let p = eventually(
        "the first window in the sink",
        Duration::from_secs(60),
        || {
            let (status, p) = plan(&cluster, &id, &v2);
            match (
                status,
                p["oldest_windows"][0]["oldest_window_start_ms"].as_i64(),
            ) {
                (200, Some(_)) => Ok(p),
                _ => Err(p.to_string()),
            }
        },
    )
    .unwrap();
    assert_eq!(
        p["backlog"][0]["oldest_event_ms"].as_i64(),
        held_from,
        "{p}"
    );
    assert_eq!(
        p["oldest_windows"],
        json!([{ "sink": "sink", "oldest_window_start_ms": first_window }])
    );
    assert_eq!(p["history_complete"], true, "nothing was deleted: {p}");
    assert_eq!(p["warnings"], json!([]), "{p}");
    assert_eq!(p["backlog_events"], 3_000, "the topic's content: {p}");
    assert_eq!(p["refusals"], json!([]), "{p}");
    let shadow = &p["shadows"][0];
    assert_eq!(
        (&shadow["live"], &shadow["connector"]),
        (&json!("hourly"), &json!("kafka"))
    );
    let shadow_topic = shadow["shadow"].as_str().expect("shadow");
    assert!(shadow_topic.starts_with("hourly.u"), "{p}");
    // The same file plans the same upgrade id (the shadows' names).
    assert_eq!(
        plan(&cluster, &id, &v2).1["shadows"][0]["shadow"],
        shadow_topic
    );

    // Another output topic cannot be cut over.
    let (status, moved) = plan(
        &cluster,
        &id,
        &v2.replace("topic = \"hourly\"", "topic = \"daily\""),
    );
    assert_eq!(status, 200);
    let refusals = moved["refusals"].to_string();
    assert!(
        refusals.contains("v1 writes kafka `hourly`, v2 kafka `daily`"),
        "{moved}"
    );

    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/jobs/{id}/upgrade-plan", cluster.url))
        .json(&json!({ "job": v2, "start": "latest" }))
        .send()
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    let refused: Value = resp.json().expect("json");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("`start` does not apply"),
        "{refused}"
    );
    let (status, missing) = plan(&cluster, "no-such-job", &v2);
    assert_eq!(
        (status, missing["error"].as_str()),
        (404, Some("no job no-such-job"))
    );
    let (status, invalid) = plan(
        &cluster,
        &id,
        &v2.replace("size = \"1h\"", "size = \"soon\""),
    );
    assert_eq!(status, 400, "{invalid}");
    assert!(
        invalid["error"]
            .as_str()
            .unwrap_or_default()
            .contains("v2.toml"),
        "{invalid}"
    );
}
