//! `kappactl upgrade` end to end against a real broker and a real PostgreSQL: v1 (the
//! reference job, users above 50) writes hourly counts to a table, a topic and a directory;
//! v2 (users above 70) recomputes history into shadows beside them; the diff lists exactly
//! the windows an independent reference says changed; the cut-over swaps every sink while a
//! reader polling the table and the directory never sees a mix; v2 continues live into them.
//! An abort leaves v1 exact and removes the shadows; an audit finds nothing in a correct sink
//! and exactly the rows tampered with (or written twice) in another.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::postgres::hourly_rows;
use kappa_integration_tests::reference::HOUR;
use kappa_integration_tests::upgrades::{
    Counts, FILTER_50, World, cut_over, file_counts, kappactl_ok, wait_diff, wait_phase,
};
use kappa_integration_tests::{SINK_PARTITIONS, eventually};
use serde_json::Value;

/// Every row key whose count differs between `a` and `b`, keyed as the sinks key rows.
fn changed_keys(a: &Counts, b: &Counts) -> BTreeSet<String> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|(item, end)| format!("{item}-{end}"))
        .collect()
}

/// v1 running over closed windows on a `kappa local`, its table and topic exact.
fn v1_running() -> (World, Cluster, String) {
    let w = World::start();
    let flags = w.jobmanager_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::local(8, &flags).expect("cluster");
    let v1 = w.run_v1(&cluster);
    (w, cluster, v1)
}

#[test]
fn an_upgrade_recomputes_history_beside_v1_and_cuts_every_sink_over_at_one_instant() {
    let (s, cluster, v1_id) = v1_running();
    let (v1, v2) = (s.counts(50), s.counts(70));
    let changed = changed_keys(&v1, &v2);
    assert!(
        v1.keys().any(|k| !v2.contains_key(k)),
        "some windows vanish"
    );

    // The plan knows how far back each sink's windows go.
    let plan: Value = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/jobs/{v1_id}/upgrade-plan", cluster.url))
        .json(&serde_json::json!({ "job": s.job(FILTER_50).replace("> 50", "> 70") }))
        .send()
        .and_then(|r| r.json())
        .expect("plan");
    let first = v1.keys().map(|(_, end)| end - HOUR).min();
    let oldest: BTreeMap<String, Option<i64>> = plan["oldest_windows"]
        .as_array()
        .expect("oldest windows")
        .iter()
        .map(|w| {
            let sink = w["sink"].as_str().unwrap_or_default().to_string();
            (sink, w["oldest_window_start_ms"].as_i64())
        })
        .collect();
    let expected = ["files", "kafka", "pg"].map(|k| (k.to_string(), first));
    assert_eq!(oldest, BTreeMap::from(expected), "{plan}");
    assert_eq!(plan["warnings"], serde_json::json!([]), "{plan}");

    let id = s.upgrade_to_70(&cluster, &v1_id);
    assert!(id.starts_with('u'), "{id}");

    let caught_up = wait_diff(&cluster, &id, Duration::from_secs(180));
    // v1 untouched while v2 ran beside it.
    assert_eq!(hourly_rows(&s.pg), v1);
    let shadow_table = format!("hourly_clicks__{id}");
    let shadow_rows = s.pg.rows(&shadow_table).expect("shadow table");
    assert_eq!(shadow_rows.len(), v2.len(), "the shadow holds v2's windows");

    // The diff lists exactly the windows the reference says changed, in both sinks.
    let diff = reqwest::blocking::get(format!("{}/api/v1/upgrades/{id}/diff", cluster.url))
        .expect("diff")
        .text()
        .expect("text");
    for sink in ["pg", "kafka", "files"] {
        let listed: BTreeSet<String> = diff
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
            .filter(|c| c["sink"] == sink)
            .map(|c| c["key"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(listed, changed, "sink {sink}");
    }
    let status = cluster.kappactl(&["upgrade", "status", &id]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(": CAUGHT_UP"), "{text}");
    assert!(text.contains("sink `pg`"), "{text}: {caught_up}");

    // A reader polls the table through the cut-over: all v1, then all v2, never a mix.
    let (done, (saw_v1, saw_v2)) = s.never_mixed(&v1, &v2, || {
        let (done, _) = cut_over(&cluster, &id, Duration::from_secs(180));
        eventually("the reader to see v2", Duration::from_secs(30), || {
            (hourly_rows(&s.pg) == v2)
                .then_some(())
                .ok_or_else(|| "v1".to_string())
        })
        .unwrap();
        done
    });
    println!("reader: {saw_v1} reads of v1, {saw_v2} of v2; {done}");
    assert!(saw_v1 > 0 && saw_v2 > 0);

    assert_eq!(s.topic("hourly", &v2), v2, "latest per key");
    assert_eq!(s.wait_files(&v2), v2, "the files");
    let backup = PathBuf::from(format!("{}.{id}_v1", s.files().display()));
    assert_eq!(file_counts(&backup).expect("v1's files kept"), v1);
    assert!(!PathBuf::from(format!("{}.{id}", s.files().display())).exists());
    cluster
        .wait_state(&v1_id, &["CANCELED"], Duration::from_secs(10))
        .expect("v1 stopped");
    assert!(
        s.pg.rows(&shadow_table).is_err(),
        "the shadow table is gone"
    );
    assert_eq!(
        s.pg.rows(&format!("hourly_clicks__{id}_v1"))
            .expect("v1's rows kept")
            .len(),
        v1.len()
    );

    // v2 goes on live: a new hour lands in both sinks, with no gap.
    s.new_hour_lands(18, 70);
}

#[test]
fn output_v2_kept_for_its_savepoint_reaches_the_live_topic_once() {
    let (s, cluster, v1_id) = v1_running();
    let (v1, v2) = (s.counts(50), s.counts(70));
    // v2 checkpoints once an hour: what its exactly-once Kafka sink writes is committed only
    // when the cut-over's savepoint completes, and the live v2 restored from that savepoint
    // finds it among the savepoint's pending output. The swap marks it committed on the live
    // topic too (without that, every row of v2 would reach it twice).
    let v2_file = s
        .job(FILTER_50)
        .replace("> 50", "> 70")
        .replace("interval = \"1s\"", "interval = \"1h\"");
    let id = s.upgrade_to(&cluster, &v1_id, &v2_file);
    wait_phase(&cluster, &id, &["CAUGHT_UP"], Duration::from_secs(180));
    cut_over(&cluster, &id, Duration::from_secs(180));
    assert_eq!(s.topic("hourly", &v2), v2, "latest per key");
    // Every key once from v1, and once more only if the cut-over corrected it: nothing of
    // v2 twice.
    let records = s
        .broker
        .read("hourly", SINK_PARTITIONS, Duration::from_secs(10), |_| {
            false
        })
        .expect("read");
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        *per_key
            .entry(r.key.clone().unwrap_or_default())
            .or_default() += 1;
    }
    for (key, n) in &per_key {
        let (item, end) = key.rsplit_once('-').expect("item-end");
        let k = (item.to_string(), end.parse::<i64>().expect("end"));
        let corrected = v1.get(&k) != v2.get(&k);
        assert_eq!(*n, 1 + usize::from(corrected), "records of {key}");
    }
}

#[test]
fn a_version_that_computes_the_same_starts_from_a_savepoint_of_v1_without_a_replay() {
    let (s, cluster, v1_id) = v1_running();
    // Only a setting changes: nothing to recompute, so no shadows.
    let v2 = s
        .job(FILTER_50)
        .replace("interval = \"1s\"", "interval = \"2s\"");
    let id = s.upgrade_to(&cluster, &v1_id, &v2);
    let u = wait_phase(&cluster, &id, &["CAUGHT_UP"], Duration::from_secs(60));
    assert_eq!(u["shadows"], serde_json::json!([]), "{u}");
    assert!(u["shadow_job"].is_null(), "{u}");
    assert!(s.pg.rows(&format!("hourly_clicks__{id}")).is_err());
    let (_, live) = cut_over(&cluster, &id, Duration::from_secs(120));
    // v2 goes on where v1 stopped: a new hour lands in both sinks, nothing lost or doubled.
    s.new_hour_lands(19, 50);
    // From v1's offsets: v2 read the new hour, not the history again.
    let read = cluster.job(&live).expect("v2")["vertices"][0]["records_in"]
        .as_u64()
        .unwrap_or(u64::MAX);
    assert!(read < s.data.len() as u64, "v2 read {read} records");
}

#[test]
fn an_abort_leaves_v1_exact_and_removes_the_shadows() {
    let (s, cluster, v1_id) = v1_running();
    let v1 = s.counts(50);
    let id = s.upgrade_to_70(&cluster, &v1_id);
    let u = wait_phase(&cluster, &id, &["CAUGHT_UP"], Duration::from_secs(180));
    let shadow_job = u["shadow_job"].as_str().expect("shadow job").to_string();
    kappactl_ok(&cluster, &["upgrade", "abort", &id]);
    let aborted = wait_phase(&cluster, &id, &["ABORTED"], Duration::from_secs(120));
    assert_eq!(aborted["reason"], "aborted on request");
    cluster
        .wait_state(&shadow_job, &["CANCELED"], Duration::from_secs(10))
        .expect("v2 cancelled");
    assert_eq!(cluster.job(&v1_id).expect("v1")["state"], "RUNNING");
    assert!(s.pg.rows(&format!("hourly_clicks__{id}")).is_err());
    assert_eq!(hourly_rows(&s.pg), v1);
    let topics = s.broker.topics().expect("topics");
    assert!(!topics.contains(&format!("hourly.{id}")), "{topics:?}");
    assert!(!PathBuf::from(format!("{}.{id}", s.files().display())).exists());
    assert_eq!(s.wait_files(&v1), v1);
    // An ended upgrade can be neither cut over nor aborted again.
    let again = cluster.kappactl(&["upgrade", "cutover", &id]);
    assert!(!again.status.success());
}

#[test]
fn an_audit_finds_nothing_in_a_correct_sink_and_exactly_the_rows_tampered_with() {
    let (s, cluster, v1_id) = v1_running();
    let out = cluster.kappactl(&["audit", &v1_id, "--wait"]);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    assert!(text.contains("no differences"), "{text}");

    // Two rows tampered with, one deleted, and a window written twice to the files (the
    // Kafka sink stays as the job wrote it).
    let v1 = s.counts(50);
    let mut keys = v1.keys().map(|(item, end)| format!("{item}-{end}"));
    let (a, b, c) = (
        keys.next().unwrap(),
        keys.next().unwrap(),
        keys.next().unwrap(),
    );
    let ((item, end), count) = v1.iter().last().expect("a window");
    std::fs::write(
        s.files().join("part-duplicate.jsonl"),
        format!("{{\"item_id\":\"{item}\",\"window_end\":{end},\"click_count\":{count}}}\n"),
    )
    .expect("a duplicate");
    s.pg
        .execute(&format!(
            "UPDATE hourly_clicks SET click_count = click_count + 1 WHERE id IN ('{a}', '{b}'); DELETE FROM hourly_clicks WHERE id = '{c}'"
        ))
        .expect("tamper");
    let out = cluster.kappactl(&["--json", "audit", &v1_id, "--wait"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("differ from what its logic gives"),
        "differences fail the audit: {stderr}"
    );
    let listed: BTreeSet<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .map(|c| {
            (
                c["sink"].as_str().unwrap_or_default().to_string(),
                c["key"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let pg = |k: &str| ("pg".to_string(), k.to_string());
    let duplicate = ("files".to_string(), format!("{item}-{end}"));
    assert_eq!(listed, BTreeSet::from([pg(&a), pg(&b), pg(&c), duplicate]));
}
