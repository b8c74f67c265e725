//! The iceberg sink end to end: the reference job's hourly counts appended to an Iceberg table
//! whose catalog is a SQLite file and whose warehouse is on a real S3 server (SeaweedFS), with
//! checkpoints every second, a jobmanager and two taskmanagers, and one of them killed with
//! SIGKILL in the middle. pyiceberg reading the table (its SqlCatalog, data files from S3 by
//! pyarrow) gives exactly the independently computed counts, each window once; every snapshot
//! names the writer and checkpoint it committed, and no writer committed a checkpoint twice.
//! The table is partitioned by `bucket(4, item_id)`: every data file is in its bucket.
//! A second job, examples/iceberg-hourly-clicks.toml (SQL, partitioned by the windows' day),
//! keeps its catalog in PostgreSQL (the password given apart from the url) and its warehouse
//! in a directory; pyiceberg reads the table through that catalog.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::{Cluster, Process};
use kappa_integration_tests::postgres::{PASSWORD, Postgres};
use kappa_integration_tests::recovery::kill_a_taskmanager;
use kappa_integration_tests::reference::{
    START, clicks, hourly_counts, produce_closed, rest_and_closing, spread,
};
use kappa_integration_tests::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use kappa_integration_tests::{eventually, python_json, reference_job, repo_root};
use serde_json::Value;

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const WAREHOUSE: &str = "s3://lake/warehouse";
const TABLE: &str = "analytics.hourly";
/// The table of examples/iceberg-hourly-clicks.toml.
const EXAMPLE_TABLE: &str = "analytics.hourly_item_clicks";

/// What pyiceberg reads of the table.
struct Read {
    /// (item_id, window_end, click_count).
    rows: Vec<(String, i64, i64)>,
    /// The rows of a scan filtered on `click_count >= min_clicks` (pruned by file bounds).
    filtered: Vec<(String, i64, i64)>,
    /// Each snapshot's (writer, checkpoint), oldest first.
    snapshots: Vec<(String, String)>,
    files: Vec<String>,
    /// The partition fields as (name, transform).
    spec: Vec<(String, String)>,
}

/// (item_id, window_end, click_count) of each row of a JSON array.
fn rows_of(v: &Value) -> Vec<(String, i64, i64)> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r[0].as_str().unwrap_or_default().to_string(),
                r[1].as_i64().unwrap_or(-1),
                r[2].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// Reads the table from the catalog at `uri` (SQLAlchemy's form), its data files from the
/// warehouse `warehouse` on `s3` or in a directory; with `min_clicks`, also a filtered scan.
fn read(
    (uri, warehouse, table): (&str, &str, &str),
    min_clicks: Option<i64>,
    s3: Option<&S3Server>,
) -> Result<Read, String> {
    let min = min_clicks.map(|m| m.to_string()).unwrap_or_default();
    let mut args = vec![uri, warehouse, table, min.as_str()];
    if let Some(s) = s3 {
        args.extend([s.endpoint.as_str(), ACCESS_KEY, SECRET_KEY]);
    }
    let v = python_json("read_iceberg.py", &args)?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Ok(Read {
        rows: rows_of(&v["rows"]),
        filtered: rows_of(&v["filtered"]),
        snapshots: v["snapshots"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (text(&s["kappa.writer"]), text(&s["kappa.checkpoint"])))
            .collect(),
        files: v["files"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect(),
        spec: v["spec"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| (text(&f[0]), text(&f[1])))
            .collect(),
    })
}

/// (item_id, window_end) → click_count of rows.
fn counts(rows: &[(String, i64, i64)]) -> BTreeMap<(String, i64), i64> {
    rows.iter()
        .map(|(item, end, n)| ((item.clone(), *end), *n))
        .collect()
}

/// The reference job appending its hourly counts to the iceberg table, checkpointing every
/// second.
fn job(bootstrap: &str, settings: &str) -> String {
    let reference = reference_job(bootstrap, "clicks", "-", FILTER, 2);
    let at = reference.find("[sink]").expect("a [sink] table");
    format!(
        r#"{}[sink]
connector = "iceberg"
table = "{TABLE}"
{settings}

[restart]
strategy = "fixed-delay"
delay = "200ms"

[checkpoints]
interval = "1s"
"#,
        &reference[..at],
    )
}

#[test]
fn hourly_counts_append_to_an_iceberg_table_exactly_once_across_a_taskmanager_kill() {
    let dir = tempfile::tempdir().expect("tmp");
    let catalog = dir.path().join("catalog").join("iceberg.db");
    let s3 = S3Server::start("lake").expect("SeaweedFS");
    let broker = Broker::start().expect("broker");
    let data = clicks(20_000, 61, START, 30, 100);
    let expected = hourly_counts(&data, |u| u > 50);
    let (first, rest) = data.split_at(data.len() / 2);
    broker.create_topic("clicks", 4).expect("topic");
    broker
        .produce("clicks", &spread(first, 4))
        .expect("produce");

    let checkpoints = dir.path().join("checkpoints");
    let catalog_dir = dir.path().join("catalog");
    let allowed = [
        "--allow-path",
        "s3://lake",
        "--allow-path",
        catalog_dir.to_str().expect("utf-8 path"),
    ];
    std::fs::create_dir_all(&catalog_dir).expect("the catalog's directory");
    let sqlite = format!("sqlite:///{}", catalog.display());
    let cluster = Cluster::jobmanager(
        &[
            &[
                "--checkpoint-dir",
                checkpoints.to_str().expect("utf-8 path"),
            ][..],
            &allowed[..],
        ]
        .concat(),
    )
    .expect("jobmanager");
    let env = s3.env();
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.clone())).collect();
    let mut tms: Vec<Process> = (0..2)
        .map(|_| {
            cluster
                .taskmanager_with(2, &allowed, &env)
                .expect("taskmanager")
        })
        .collect();
    let id = cluster
        .submit(
            &job(
                &broker.bootstrap,
                &format!(
                    "url = \"sqlite://{}\"\npath = \"{WAREHOUSE}\"\npartition_by = \"bucket(4, item_id)\"\nrow_group_size = \"64KiB\"",
                    catalog.display()
                ),
            ),
            &[],
        )
        .expect("submit");

    let logs = |tms: &[Process]| -> String {
        let tms: Vec<String> = tms.iter().map(Process::log_text).collect();
        format!("{}\n{}", cluster.log_text(), tms.join("\n"))
    };
    // Some output is committed (a snapshot) before the kill: the restarted writers restore
    // checkpoints with data files of theirs.
    eventually("a committed snapshot", Duration::from_secs(60), || {
        let r = read((&sqlite, WAREHOUSE, TABLE), None, Some(&s3))?;
        match r.rows.is_empty() {
            true => Err(format!("{} snapshots", r.snapshots.len())),
            false => Ok(()),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&tms)));
    kill_a_taskmanager(&cluster, &mut tms, &id);
    broker
        .produce("clicks", &rest_and_closing(rest, &data, 4))
        .expect("produce the rest");

    // A filter pyiceberg prunes data files for by their bounds: the median count.
    let mut all: Vec<i64> = expected.values().copied().collect();
    all.sort_unstable();
    let min_clicks = all[all.len() / 2];
    let got = eventually(
        "every hourly count in the table",
        Duration::from_secs(180),
        || {
            let r = read((&sqlite, WAREHOUSE, TABLE), Some(min_clicks), Some(&s3))?;
            match counts(&r.rows) == expected {
                true => Ok(r),
                false => Err(format!(
                    "{} of {} windows, {} rows",
                    counts(&r.rows).len(),
                    expected.len(),
                    r.rows.len()
                )),
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&tms)));

    // Exactly once: as many rows as windows.
    cluster.assert_results(&id, &counts(&got.rows), &expected);
    assert_eq!(got.rows.len(), expected.len(), "no window twice");
    // The data files' bounds are right: the filtered scan loses no row it should keep.
    let wanted: BTreeMap<(String, i64), i64> = expected
        .iter()
        .filter(|(_, n)| **n >= min_clicks)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    assert!(
        !wanted.is_empty() && wanted.len() < expected.len(),
        "{min_clicks}"
    );
    assert!(
        counts(&got.filtered) == wanted && got.filtered.len() == wanted.len(),
        "click_count >= {min_clicks}: pyiceberg read {} rows, {} wanted",
        got.filtered.len(),
        wanted.len()
    );
    // Every snapshot is one writer's checkpoint, none twice; both writers (the sink's two
    // subtasks) committed.
    let distinct: BTreeSet<&(String, String)> = got.snapshots.iter().collect();
    assert_eq!(distinct.len(), got.snapshots.len(), "{:?}", got.snapshots);
    assert!(
        got.snapshots
            .iter()
            .all(|(w, n)| w.starts_with(&format!("kappa-{id}-sink-")) && n.parse::<u64>().is_ok()),
        "{:?}",
        got.snapshots
    );
    let writers: BTreeSet<&String> = got.snapshots.iter().map(|(w, _)| w).collect();
    assert!(writers.len() >= 2, "{writers:?}");
    assert!(got.files.len() >= got.snapshots.len(), "{:?}", got.files);
    // Partitioned by a bucket of the item: each file in its bucket's directory.
    assert_eq!(
        got.spec,
        [("item_id_bucket".to_string(), "bucket[4]".to_string())]
    );
    let buckets: BTreeSet<&str> = got
        .files
        .iter()
        .filter_map(|f| f.split("/item_id_bucket=").nth(1)?.split('/').next())
        .collect();
    assert!(
        got.files
            .iter()
            .all(|f| f.contains("/data/item_id_bucket="))
            && buckets.len() > 1,
        "{:?}",
        got.files
    );
    assert!(cluster.kappactl(&["cancel", &id]).status.success());
}

#[test]
fn a_postgres_catalog_keeps_the_table_with_its_password_given_apart() {
    let dir = tempfile::tempdir().expect("tmp");
    let pg = Postgres::start().expect("postgres");
    let broker = Broker::start().expect("broker");
    let data = clicks(5_000, 31, START, 6, 200);
    produce_closed(&broker, "clicks", 2, &data).expect("produce");
    let expected = hourly_counts(&data, |u| u > 50);
    let checkpoints = dir.path().join("checkpoints");
    let warehouse = dir.path().join("warehouse");
    let cluster = Cluster::local(
        4,
        &[
            "--checkpoint-dir",
            checkpoints.to_str().expect("utf-8 path"),
        ],
    )
    .expect("kappa local");
    // The url without its password; the password as the sink's `password`.
    let url = pg.url.replace(&format!(":{PASSWORD}@"), "@");
    assert_ne!(url, pg.url);
    // The example job (SQL, its windows as TIMESTAMPs, partitioned by their day).
    let example = std::fs::read_to_string(repo_root().join("examples/iceberg-hourly-clicks.toml"))
        .expect("the example");
    let job = example
        .replace("127.0.0.1:9092", &broker.bootstrap)
        .replace("topic = \"user-behavior\"", "topic = \"clicks\"")
        .replace(
            "url = \"sqlite:///var/lib/kappa/iceberg.db\"",
            &format!("url = \"{url}\"\npassword = \"{PASSWORD}\""),
        )
        .replace(
            "path = \"s3://lake/warehouse\"",
            &format!("path = \"{}\"", warehouse.display()),
        )
        .replace("interval = \"10s\"", "interval = \"1s\"");
    assert!(
        job.contains(PASSWORD) && job.contains("interval = \"1s\""),
        "{job}"
    );
    let id = cluster
        .submit(&job, &["--start", "earliest"])
        .expect("submit");
    let uri = pg.url.replace("postgres://", "postgresql+psycopg2://");
    let warehouse = format!("file://{}", warehouse.display());
    let got = eventually(
        "the hourly counts in the table",
        Duration::from_secs(120),
        || {
            let r = read((&uri, &warehouse, EXAMPLE_TABLE), None, None)?;
            match counts(&r.rows) == expected {
                true => Ok(r),
                false => Err(format!("{} of {} windows", r.rows.len(), expected.len())),
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_text()));
    assert_eq!(got.rows.len(), expected.len(), "no window twice");
    assert_eq!(
        got.spec,
        [("window_start_day".to_string(), "day".to_string())]
    );
    assert!(
        got.files
            .iter()
            .all(|f| f.contains("/data/window_start_day=")),
        "{:?}",
        got.files
    );
    // The catalog is PostgreSQL's: its table names the iceberg table.
    let mut client = pg.client().expect("a client");
    let tables: Vec<(String, String)> = client
        .query(
            "SELECT table_namespace, table_name FROM iceberg_tables WHERE catalog_name = 'kappa'",
            &[],
        )
        .expect("iceberg_tables")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        tables,
        [("analytics".to_string(), "hourly_item_clicks".to_string())]
    );
    assert!(cluster.kappactl(&["cancel", &id]).status.success());
}
