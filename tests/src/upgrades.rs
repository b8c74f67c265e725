//! Upgrades in the end-to-end tests: the reference job writing its hourly counts to a
//! PostgreSQL table, a Kafka topic and a directory of files (v1: users above 50), its upgrade
//! to users above 70 started with kappactl, and the sinks read back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::broker::{Broker, Record};
use crate::cluster::Cluster;
use crate::postgres::{HOURLY_TABLE, Postgres, hourly_rows, wait_rows};
use crate::reference::{
    Click, HOUR, START, clicks, closing, hourly_counts, produce_closed, spread,
};
use crate::{SINK_PARTITIONS, eventually, reference_job};

/// v1's filter; v2 keeps users above 70.
pub const FILTER_50: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

/// Hourly counts by (item, window end).
pub type Counts = BTreeMap<(String, i64), i64>;

/// A broker with the clicks (closed windows) and the empty sink topic, a PostgreSQL server
/// with the empty sink table, and a directory for the cluster's checkpoints and files.
pub struct World {
    pub broker: Broker,
    pub pg: Postgres,
    pub data: Vec<Click>,
    pub dir: tempfile::TempDir,
}

impl World {
    pub fn start() -> Self {
        let broker = Broker::start().expect("broker");
        let pg = Postgres::start().expect("postgres");
        pg.execute(HOURLY_TABLE).expect("table");
        broker
            .create_topic("hourly", SINK_PARTITIONS)
            .expect("topic");
        let data = clicks(12_000, 17, START, 4, 60);
        produce_closed(&broker, "clicks", 4, &data).expect("produce");
        Self {
            broker,
            pg,
            data,
            dir: tempfile::tempdir().expect("tmp"),
        }
    }

    /// The jobmanager's flags: a checkpoint directory, a secret key that keeps the jobs'
    /// literal passwords (the PostgreSQL url's) across a restart, and the world's directory
    /// for the file sink.
    pub fn jobmanager_flags(&self) -> Vec<String> {
        let key = self.dir.path().join("secret.key");
        std::fs::write(&key, "5e".repeat(32)).expect("key");
        let mut flags: Vec<String> = [
            "--checkpoint-dir".to_string(),
            self.dir.path().join("checkpoints").display().to_string(),
            "--secret-key-file".to_string(),
            key.display().to_string(),
        ]
        .into();
        flags.extend(self.taskmanager_flags());
        flags
    }

    /// A taskmanager's flags: the file sink's directory (and its shadow beside it) allowed.
    pub fn taskmanager_flags(&self) -> Vec<String> {
        vec![
            "--allow-path".to_string(),
            self.dir.path().display().to_string(),
        ]
    }

    /// The directory the file sink writes.
    pub fn files(&self) -> PathBuf {
        self.dir.path().join("hourly")
    }

    /// Runs `body` while a reader polls the sink table: every read must be all of `v1` or all
    /// of `v2`, never a mix. Returns what `body` did and how often the reader saw each.
    pub fn never_mixed<T>(
        &self,
        v1: &Counts,
        v2: &Counts,
        body: impl FnOnce() -> T,
    ) -> (T, (usize, usize)) {
        /// Stops the reader however `body` ends (a failed assertion too).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let (mut saw_v1, mut saw_v2) = (0, 0);
                let mut files = [0usize; 3];
                while !stop.load(Ordering::Relaxed) {
                    match hourly_rows(&self.pg) {
                        r if &r == v1 => saw_v1 += 1,
                        r if &r == v2 => saw_v2 += 1,
                        r => panic!("a mix of v1 and v2: {} rows", r.len()),
                    }
                    // The directory: a file listed before the swap may be gone when opened.
                    match file_counts(&self.files()) {
                        Ok(r) if &r == v1 => files[0] += 1,
                        Ok(r) if &r == v2 => files[1] += 1,
                        Ok(r) => panic!("a mix of v1 and v2 in the files: {} rows", r.len()),
                        Err(_) => files[2] += 1,
                    }
                }
                println!(
                    "the directory: {} reads of v1, {} of v2, {} met a file the swap had moved",
                    files[0], files[1], files[2]
                );
                (saw_v1, saw_v2)
            });
            let done = {
                let _stop = Stop(&stop);
                body()
            };
            (done, reader.join().expect("the reader saw no mix"))
        })
    }

    /// The reference job with `filter`, writing to the topic `hourly` (exactly once) and the
    /// table `hourly_clicks`, checkpointing every second.
    pub fn job(&self, filter: &str) -> String {
        let text = reference_job(&self.broker.bootstrap, "clicks", "hourly", filter, 2);
        let at = text.find("[sink]").expect("a [sink] table");
        format!(
            r#"{}[sinks.kafka]
connector = "kafka"
bootstrap_servers = "{}"
topic = "hourly"
format = "json"
key = "{{item_id}}-{{window_end}}"
partitioner = "fixed"
delivery = "exactly-once"

[sinks.files]
connector = "file"
path = "{}"
key = "{{item_id}}-{{window_end}}"
delivery = "exactly-once"

[sinks.pg]
connector = "postgres"
url = "{}"
table = "hourly_clicks"
key = "{{item_id}}-{{window_end}}"

[checkpoints]
interval = "1s"
"#,
            &text[..at],
            self.broker.bootstrap,
            self.files().display(),
            self.pg.url
        )
    }

    /// The counts a filter of users above `above` gives.
    pub fn counts(&self, above: u32) -> Counts {
        hourly_counts(&self.data, |u| u > above)
    }

    /// Submits v1 from the earliest offsets and waits until the sinks hold its counts.
    pub fn run_v1(&self, cluster: &Cluster) -> String {
        let id = cluster
            .submit(&self.job(FILTER_50), &["--start", "earliest"])
            .expect("submit v1");
        let v1 = self.counts(50);
        assert_eq!(wait_rows(&self.pg, &v1, Duration::from_secs(120)), v1);
        assert_eq!(self.topic("hourly", &v1), v1);
        assert_eq!(self.wait_files(&v1), v1);
        id
    }

    /// The counts the file sink's committed files hold, once they are `expected` or 60 s
    /// passed.
    pub fn wait_files(&self, expected: &Counts) -> Counts {
        let dir = self.files();
        eventually(
            "the files to hold the counts",
            Duration::from_secs(60),
            || match file_counts(&dir) {
                Ok(c) if &c == expected => Ok(()),
                Ok(c) => Err(format!("{} rows", c.len())),
                Err(e) => Err(e.to_string()),
            },
        )
        .ok();
        file_counts(&dir).expect("the files")
    }

    /// Starts upgrading `v1` to users above 70 with kappactl; the upgrade's id.
    pub fn upgrade_to_70(&self, cluster: &Cluster, v1: &str) -> String {
        self.upgrade_to(cluster, v1, &self.job(FILTER_50).replace("> 50", "> 70"))
    }

    /// Starts upgrading `v1` to the file `v2` with kappactl; the upgrade's id.
    pub fn upgrade_to(&self, cluster: &Cluster, v1: &str, v2: &str) -> String {
        let v2_file = self.dir.path().join("v2.toml");
        std::fs::write(&v2_file, v2).expect("write");
        kappactl_ok(cluster, &["upgrade", v1, v2_file.to_str().expect("utf-8")])
    }

    /// Produces a new hour of clicks (generated with `seed`) and the records that close its
    /// windows, and waits until the sinks hold the counts of users above `above` over all the
    /// clicks.
    pub fn new_hour_lands(&self, seed: u64, above: u32) {
        let later = clicks(2_000, seed, START + 6 * HOUR, 1, 60);
        let mut records = spread(&later, 4);
        records.extend(closing(&later, 4));
        self.broker.produce("clicks", &records).expect("produce");
        let all: Vec<Click> = self.data.iter().cloned().chain(later).collect();
        let expected = hourly_counts(&all, |u| u > above);
        assert_eq!(
            wait_rows(&self.pg, &expected, Duration::from_secs(120)),
            expected
        );
        assert_eq!(self.topic("hourly", &expected), expected);
        assert_eq!(self.wait_files(&expected), expected);
    }

    /// The latest count per key of `topic`, read until it is `expected` or 90 s passed.
    pub fn topic(&self, topic: &str, expected: &Counts) -> Counts {
        let records = self
            .broker
            .read(topic, SINK_PARTITIONS, Duration::from_secs(90), |r| {
                &topic_counts(r) == expected
            })
            .expect("read");
        topic_counts(&records)
    }
}

/// The counts in the committed JSON-lines files of `dir` (hidden in-progress files skipped);
/// a window written twice counts -1, so that it matches no reference.
pub fn file_counts(dir: &Path) -> std::io::Result<Counts> {
    let mut out = Counts::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        for line in std::fs::read_to_string(entry.path())?.lines() {
            let v: Value = serde_json::from_str(line).expect("a JSON row");
            let key = (
                v["item_id"].as_str().unwrap_or_default().to_string(),
                v["window_end"].as_i64().unwrap_or_default(),
            );
            let count = v["click_count"].as_i64().unwrap_or(-1);
            if out.insert(key.clone(), count).is_some() {
                out.insert(key, -1);
            }
        }
    }
    Ok(out)
}

/// The topic's latest count per (item, window end); a tombstone removes its key.
pub fn topic_counts(records: &[Record]) -> Counts {
    let mut out = BTreeMap::new();
    for r in records {
        let Some((item, end)) = r.key.as_deref().and_then(|k| k.rsplit_once('-')) else {
            continue;
        };
        let key = (item.to_string(), end.parse().unwrap_or_default());
        match serde_json::from_str::<Value>(&r.value) {
            Ok(v) => out.insert(key, v["click_count"].as_i64().unwrap_or(-1)),
            Err(_) => out.remove(&key),
        };
    }
    out
}

/// The upgrade `id` as the REST API shows it (an error body while the jobmanager is away).
pub fn upgrade(cluster: &Cluster, id: &str) -> Value {
    reqwest::blocking::get(format!("{}/api/v1/upgrades/{id}", cluster.url))
        .and_then(|r| r.json())
        .unwrap_or_else(|e| Value::String(e.to_string()))
}

/// Waits until upgrade `id` caught up and compared the sinks (once v2's output is
/// committed); its view then.
pub fn wait_diff(cluster: &Cluster, id: &str, timeout: Duration) -> Value {
    wait_upgrade(cluster, id, "with its diff", timeout, |u| {
        u["diff"]["computed_at_ms"].is_i64()
    })
}

/// Waits until upgrade `id` is in one of `phases`; its view then.
pub fn wait_phase(cluster: &Cluster, id: &str, phases: &[&str], timeout: Duration) -> Value {
    wait_upgrade(cluster, id, &format!("in {phases:?}"), timeout, |u| {
        phases.contains(&u["phase"].as_str().unwrap_or_default())
    })
}

/// Waits until the view of upgrade `id` is `what` `done` says; the view then.
fn wait_upgrade(
    cluster: &Cluster,
    id: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(&format!("upgrade {id} {what}"), timeout, || {
        let u = upgrade(cluster, id);
        match done(&u) {
            true => Ok(u),
            false => Err(u.to_string()),
        }
    })
    .unwrap()
}

/// Runs kappactl against `cluster`; it must succeed. Its standard output, trimmed.
pub fn kappactl_ok(cluster: &Cluster, args: &[&str]) -> String {
    let out = cluster.kappactl(args);
    assert!(
        out.status.success(),
        "kappactl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Cuts upgrade `id` over with kappactl and waits until it is DONE and v2 runs live; the
/// upgrade's view then and the live job's id.
pub fn cut_over(cluster: &Cluster, id: &str, timeout: Duration) -> (Value, String) {
    kappactl_ok(cluster, &["upgrade", "cutover", id]);
    let done = wait_phase(cluster, id, &["DONE"], timeout);
    let live = done["live_job"].as_str().expect("v2 live").to_string();
    cluster
        .wait_state(&live, &["RUNNING"], Duration::from_secs(60))
        .expect("v2 live running");
    (done, live)
}
