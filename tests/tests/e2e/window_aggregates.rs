//! The aggregates that keep values, end to end: a file-to-file job with count(DISTINCT x),
//! approx_count_distinct(x), first_value(x), last_value(x) and min(x) of strings in hourly
//! windows, restarted
//! from a checkpoint in the middle of its input, gives per window what plain Rust maps
//! compute from the same clicks.

use std::collections::{BTreeMap, BTreeSet};

use kappa_integration_tests::reference::{
    HOUR, START, checkpointed_file_job, clicks, failing_after_first_checkpoint, finish_restored,
    json_lines, part_file_lines,
};

/// The window's exact results: clicks, distinct users, first, last and least user.
type Exact = (i64, i64, String, String, String);

const AGGREGATES: &str = r#"{ clicks = "count(*)", users = "count(DISTINCT user_id)", approx_users = "approx_count_distinct(user_id)", first_user = "first_value(user_id)", last_user = "last_value(user_id)", min_user = "min(user_id)" }"#;

#[test]
fn distinct_counts_and_first_and_last_values_are_exact_across_a_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One file: one source subtask reads it in order, so ties of event time go to the line
    // that comes first (first_value) or last (last_value).
    let input = dir.path().join("clicks.jsonl");
    let data = clicks(200_000, 71, START, 4, 40);
    std::fs::write(&input, json_lines(&data)).expect("input file");

    // (item_id, window_end) → the exact results, and the distinct users for the estimate.
    let mut users: BTreeMap<(String, i64), BTreeSet<u32>> = BTreeMap::new();
    let mut first: BTreeMap<(String, i64), (i64, usize, u32)> = BTreeMap::new();
    let mut last: BTreeMap<(String, i64), (i64, usize, u32)> = BTreeMap::new();
    let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (line, c) in data.iter().enumerate() {
        let key = (
            format!("item_{}", c.item),
            c.timestamp - c.timestamp.rem_euclid(HOUR) + HOUR,
        );
        users.entry(key.clone()).or_default().insert(c.user);
        *counts.entry(key.clone()).or_default() += 1;
        let here = (c.timestamp, line, c.user);
        first
            .entry(key.clone())
            .and_modify(|f| *f = (*f).min(here))
            .or_insert(here);
        last.entry(key)
            .and_modify(|l| *l = (*l).max(here))
            .or_insert(here);
    }
    let expected: BTreeMap<(String, i64), Exact> = counts
        .iter()
        .map(|(k, &n)| {
            let exact = (
                n,
                users[k].len() as i64,
                format!("user_{}", first[k].2),
                format!("user_{}", last[k].2),
                // The least by code point: user_10 comes before user_9.
                users[k]
                    .iter()
                    .map(|u| format!("user_{u}"))
                    .min()
                    .unwrap_or_default(),
            );
            (k.clone(), exact)
        })
        .collect();

    // Every subtask fails once, right after the first checkpoint it sees completed: the
    // windows' sets, sketches and picks are restored from it in the middle of the file.
    let (cluster, _tm) = failing_after_first_checkpoint(dir.path());
    let output = dir.path().join("results");
    let id = finish_restored(
        &cluster,
        &checkpointed_file_job(&input, &output, AGGREGATES),
    );

    let lines = part_file_lines(&output);
    let mut got: BTreeMap<(String, i64), Exact> = BTreeMap::new();
    for v in &lines {
        let key = (
            v["item_id"].as_str().expect("item_id").to_string(),
            v["window_end"].as_i64().expect("window_end"),
        );
        let approx = v["approx_users"].as_i64().expect("approx_users");
        let exact = users.get(&key).map_or(0, |u| u.len() as i64);
        let slack = (exact as f64 * 0.02).max(1.0);
        assert!(
            (approx - exact).abs() as f64 <= slack,
            "{key:?}: approx_count_distinct {approx}, {exact} distinct users"
        );
        let text = |name: &str| v[name].as_str().unwrap_or("(null)").to_string();
        let results = (
            v["clicks"].as_i64().unwrap_or(-1),
            v["users"].as_i64().unwrap_or(-1),
            text("first_user"),
            text("last_user"),
            text("min_user"),
        );
        got.insert(key, results);
    }
    cluster.assert_results(&id, &got, &expected);
    assert_eq!(lines.len(), expected.len(), "each window once");
}
