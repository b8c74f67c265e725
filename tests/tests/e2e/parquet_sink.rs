//! The parquet sink end to end: the reference job's hourly counts go to Parquet files on a real
//! S3 server (SeaweedFS) under `dt=` partition directories, exactly-once, with checkpoints every
//! second, a jobmanager and two taskmanagers, and one of them killed with SIGKILL in the middle.
//! The files read back with pyarrow (from S3) and DuckDB (a local copy of every object) hold
//! exactly the independently computed counts: each window once, none missing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::DateTime;
use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::{Cluster, Process};
use kappa_integration_tests::recovery::kill_a_taskmanager;
use kappa_integration_tests::reference::{START, clicks, hourly_counts, rest_and_closing, spread};
use kappa_integration_tests::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use kappa_integration_tests::{eventually, python_json, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const PREFIX: &str = "lake/hourly";

/// What the readers see under the sink's prefix.
struct Read {
    keys: Vec<String>,
    /// (item_id, window_end, click_count, dt) as pyarrow and as DuckDB read them.
    pyarrow: Vec<(String, i64, i64, String)>,
    duckdb: Vec<(String, i64, i64, String)>,
}

/// The directories of the parquet files among `keys`.
fn parquet_dirs(keys: &[String]) -> BTreeSet<String> {
    keys.iter()
        .filter(|k| k.ends_with(".parquet"))
        .filter_map(|k| k.split_once('/').map(|(d, _)| d.to_string()))
        .collect()
}

fn read(s3: &S3Server) -> Result<Read, String> {
    let v = python_json(
        "read_parquet.py",
        &[s3.endpoint.as_str(), PREFIX, ACCESS_KEY, SECRET_KEY],
    )?;
    let rows = |reader: &str| -> Vec<(String, i64, i64, String)> {
        v[reader]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r[0].as_str().unwrap_or_default().to_string(),
                    r[1].as_i64().unwrap_or(-1),
                    r[2].as_i64().unwrap_or(-1),
                    r[3].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let keys = v["keys"].as_array().into_iter().flatten();
    Ok(Read {
        keys: keys
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        pyarrow: rows("pyarrow"),
        duckdb: rows("duckdb"),
    })
}

/// (item_id, window_end) → click_count of rows.
fn counts(rows: &[(String, i64, i64, String)]) -> BTreeMap<(String, i64), i64> {
    rows.iter()
        .map(|(item, end, n, _)| ((item.clone(), *end), *n))
        .collect()
}

/// The `dt=` directory of a window ending at `end`: the UTC date of its start.
fn dt(end: i64) -> String {
    let start = end - 3_600_000;
    DateTime::from_timestamp_millis(start)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The reference job writing its hourly counts to the parquet sink, checkpointing every second.
fn job(bootstrap: &str) -> String {
    let reference = reference_job(bootstrap, "clicks", "-", FILTER, 2);
    let at = reference.find("[sink]").expect("a [sink] table");
    format!(
        r#"{}[sink]
connector = "parquet"
path = "s3://{PREFIX}"
partition_by = "dt={{window_start:%Y-%m-%d}}"
row_group_size = "64KiB"

[restart]
strategy = "fixed-delay"
delay = "200ms"

[checkpoints]
interval = "1s"
"#,
        &reference[..at]
    )
}

#[test]
fn hourly_counts_land_in_parquet_on_s3_exactly_once_across_a_taskmanager_kill() {
    let dir = tempfile::tempdir().expect("tmp");
    let s3 = S3Server::start("lake").expect("SeaweedFS");
    let broker = Broker::start().expect("broker");
    // 30 hours from START: windows on two dates at least.
    let data = clicks(20_000, 61, START, 30, 100);
    let expected = hourly_counts(&data, |u| u > 50);
    let (first, rest) = data.split_at(data.len() / 2);
    broker.create_topic("clicks", 4).expect("topic");
    broker
        .produce("clicks", &spread(first, 4))
        .expect("produce");

    let checkpoints = dir.path().join("checkpoints");
    let cluster = Cluster::jobmanager(&[
        "--checkpoint-dir",
        checkpoints.to_str().expect("utf-8 path"),
        "--allow-path",
        "s3://lake",
    ])
    .expect("jobmanager");
    let env = s3.env();
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
    let mut tms: Vec<Process> = (0..2)
        .map(|_| {
            cluster
                .taskmanager_with(2, &["--allow-path", "s3://lake"], &env)
                .expect("taskmanager")
        })
        .collect();
    let id = cluster
        .submit(&job(&broker.bootstrap), &[])
        .expect("submit");

    let logs = |tms: &[Process]| -> String {
        let tms: Vec<String> = tms.iter().map(Process::log_text).collect();
        format!("{}\n{}", cluster.log_text(), tms.join("\n"))
    };
    // Some output is committed (a checkpoint completed) before the kill: the restarted
    // writers find files of theirs.
    eventually("committed parquet files", Duration::from_secs(60), || {
        let r = read(&s3)?;
        match r.pyarrow.is_empty() {
            true => Err(format!("{:?}", r.keys)),
            false => Ok(()),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&tms)));
    kill_a_taskmanager(&cluster, &mut tms, &id);
    broker
        .produce("clicks", &rest_and_closing(rest, &data, 4))
        .expect("produce the rest");

    let expected_dirs: BTreeSet<String> = expected
        .keys()
        .map(|(_, end)| format!("dt={}", dt(*end)))
        .collect();
    // The listing, pyarrow's and DuckDB's reads are taken one after the other: wait until
    // all three saw the last commit.
    let got = eventually(
        "every hourly count in parquet",
        Duration::from_secs(180),
        || {
            let r = read(&s3)?;
            let by_pyarrow = counts(&r.pyarrow);
            let seen = by_pyarrow == expected
                && counts(&r.duckdb) == expected
                && parquet_dirs(&r.keys) == expected_dirs;
            match seen {
                true => Ok(r),
                false => Err(format!(
                    "{} of {} windows, {} rows",
                    by_pyarrow.len(),
                    expected.len(),
                    r.pyarrow.len()
                )),
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&tms)));

    // Exactly once: as many rows as windows, in both readers; each in its window's date.
    cluster.assert_results(&id, &counts(&got.pyarrow), &expected);
    assert_eq!(
        got.pyarrow.len(),
        expected.len(),
        "no window twice (pyarrow)"
    );
    assert_eq!(
        counts(&got.duckdb),
        expected,
        "DuckDB reads the same counts"
    );
    assert_eq!(got.duckdb.len(), expected.len(), "no window twice (DuckDB)");
    for (item, end, _, dir) in got.pyarrow.iter().chain(&got.duckdb) {
        assert_eq!(*dir, dt(*end), "{item} ending {end} is in dt={dir}");
    }
    assert!(expected_dirs.len() >= 2, "{expected_dirs:?}");
    assert_eq!(parquet_dirs(&got.keys), expected_dirs, "{:?}", got.keys);
    assert!(
        got.keys
            .iter()
            .filter(|k| k.ends_with(".parquet"))
            .all(|k| k.contains("/part-")),
        "{:?}",
        got.keys
    );
    assert!(cluster.kappactl(&["cancel", &id]).status.success());
}
