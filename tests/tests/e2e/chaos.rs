//! Chaos: the reference job runs twice over 200 k click events arriving over time — into an
//! exactly-once Kafka sink and into the PostgreSQL upsert sink — while taskmanagers are killed
//! with SIGKILL three times at random moments (one while a checkpoint is being uploaded).
//! Both sinks end up with exactly the reference hourly counts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::{Cluster, Process};
use kappa_integration_tests::postgres::{HOURLY_TABLE, Postgres, hourly_rows, wait_rows};
use kappa_integration_tests::reference::{
    START, assert_final_counts, clicks, closing, hourly_counts, latest_per_key,
};
use kappa_integration_tests::{SINK_PARTITIONS, reference_job};
use rand::{Rng, SeedableRng};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";
const EVENTS: usize = 200_000;
const CHUNKS: usize = 40;

/// Restarts quickly and checkpoints every 500 ms.
fn with_checkpoints(job: &str) -> String {
    job.replace(
        "[sink]",
        "[restart]\nstrategy = \"fixed-delay\"\ndelay = \"500ms\"\n\n[sink]",
    ) + "\n[checkpoints]\ninterval = \"500ms\"\n"
}

/// Records of the sink commits a taskmanager started but did not finish, from its log.
fn interrupted_commits(log: &str) -> usize {
    let field = |line: &str, name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_string)
    };
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for line in log.lines() {
        let Some(writer) = field(line, "writer=") else {
            continue;
        };
        if line.contains("committing sink output") {
            let n = field(line, "records=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            open.insert(writer, n);
        } else if line.contains("committed sink output") {
            open.remove(&writer);
        }
    }
    open.values().sum()
}

/// Waits (up to 10 s) until a checkpoint of `job` is in progress.
fn checkpoint_in_progress(cluster: &Cluster, job: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = cluster.kappactl(&["checkpoints", job, "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if list
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["status"] == "IN_PROGRESS")
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn three_random_kill_9s_leave_kafka_and_postgres_results_exact() {
    let broker = Broker::start().expect("broker");
    let pg = Postgres::start().expect("postgres");
    pg.execute(HOURLY_TABLE).expect("table");
    broker.create_topic("clicks", 4).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let data = clicks(EVENTS, 41, START, 8, 300);
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("checkpoints");
    let cluster = Cluster::jobmanager(&[
        "--checkpoint-dir",
        root.to_str().expect("utf-8 path"),
        "--heartbeat-timeout",
        "3s",
    ])
    .expect("jobmanager");
    let start_tm = || {
        // The sink's commits are logged at debug level: the test accounts for interrupted ones.
        let log = "info,librdkafka=warn,rdkafka=warn,kappa_connectors=debug".to_string();
        cluster
            .taskmanager_with_env(2, &[("KAPPA_LOG", log)])
            .expect("taskmanager")
    };
    let mut tms: Vec<Process> = (0..3).map(|_| start_tm()).collect();
    let mut killed: Vec<Process> = Vec::new();

    let kafka_job = with_checkpoints(
        &reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2)
            .replace("[sink]", "[sink]\ndelivery = \"exactly-once\""),
    );
    let base = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2);
    let at = base.find("[sink]").expect("a [sink] table");
    let pg_job = with_checkpoints(&format!(
        "{}[sink]\nconnector = \"postgres\"\nurl = \"{}\"\ntable = \"hourly_clicks\"\nkey = \"{{item_id}}-{{window_end}}\"\n",
        &base[..at],
        pg.url
    ));
    let kafka_id = cluster.submit(&kafka_job, &[]).expect("submit kafka job");
    let pg_id = cluster.submit(&pg_job, &[]).expect("submit postgres job");
    let jobs = [kafka_id.as_str(), pg_id.as_str()];
    for id in jobs {
        cluster
            .wait_state(id, &["RUNNING"], Duration::from_secs(60))
            .expect("running");
    }

    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("chaos: seed {seed} (CHAOS_SEED={seed} replays the kill times)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut last_kill = Instant::now();
    std::thread::scope(|s| {
        let producer = s.spawn(|| {
            let per = EVENTS / CHUNKS;
            for (k, chunk) in data.chunks(per).enumerate() {
                let records: Vec<(i32, String)> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (((k * per + i) % 4) as i32, c.json()))
                    .collect();
                broker.produce("clicks", &records).expect("produce");
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        for kill in 0..3 {
            std::thread::sleep(Duration::from_millis(rng.random_range(1_500..4_500)));
            for id in jobs {
                cluster
                    .wait_state(id, &["RUNNING"], Duration::from_secs(90))
                    .expect("running again");
            }
            if kill == 1 {
                assert!(
                    checkpoint_in_progress(&cluster, &kafka_id),
                    "no checkpoint started"
                );
            }
            let candidates = cluster.hosting(&tms, &jobs);
            assert!(!candidates.is_empty(), "no taskmanager runs the jobs");
            let victim = candidates[rng.random_range(0..candidates.len())];
            eprintln!("chaos: kill -9 taskmanager {victim} (kill {})", kill + 1);
            let attempts = |id: &str| {
                cluster
                    .job(id)
                    .ok()
                    .map_or(0, |d| d["attempts"].as_array().map_or(0, Vec::len))
            };
            let before: Vec<usize> = jobs.iter().map(|id| attempts(id)).collect();
            let mut dead = tms.remove(victim);
            let killed_at = Instant::now();
            last_kill = killed_at;
            dead.kill();
            killed.push(dead);
            tms.push(start_tm());
            // Time until every job runs again and one of them restarted.
            loop {
                let now: Vec<usize> = jobs.iter().map(|id| attempts(id)).collect();
                let running = jobs
                    .iter()
                    .all(|id| cluster.job(id).is_ok_and(|d| d["state"] == "RUNNING"));
                if running && now.iter().zip(&before).any(|(n, b)| n > b) {
                    break;
                }
                assert!(
                    killed_at.elapsed() < Duration::from_secs(90),
                    "the jobs did not restart\n{}",
                    cluster.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!(
                "chaos: kill -9 -> RUNNING again in {:.1} s",
                killed_at.elapsed().as_secs_f64()
            );
        }
        producer.join().expect("producer");
    });
    // Records past the last window on every partition close all windows.
    broker
        .produce("clicks", &closing(&data, 4))
        .expect("produce closing");
    let input_end = Instant::now();

    let expected = hourly_counts(&data, |u| u > 50);
    let out = broker
        .read_results("out", &expected, Duration::from_secs(240))
        .expect("read");
    let got: BTreeMap<(String, i64), i64> = latest_per_key(&out).expect("records");
    eprintln!(
        "chaos: every result committed {:.1} s after the last kill, {:.1} s after the input ended",
        last_kill.elapsed().as_secs_f64(),
        input_end.elapsed().as_secs_f64()
    );
    cluster.assert_results(&kafka_id, &got, &expected);
    // Each window was emitted with its final count only (no partial or double counts).
    assert_final_counts(&out, &expected);
    // Tansu shows records of aborted transactions to read_committed consumers (Kafka hides
    // them): a transaction a kill interrupted is visible, and committed again on recovery.
    // Anything beyond those records would be a double commit.
    assert!(
        tms.iter()
            .chain(&killed)
            .any(|p| p.log_text().contains("committed sink output")),
        "the taskmanagers log their commits"
    );
    let interrupted: usize = killed
        .iter()
        .map(|p| interrupted_commits(&p.log_text()))
        .sum();
    eprintln!(
        "chaos: {} windows; {} records in the Kafka sink topic; {interrupted} in commits a kill interrupted",
        expected.len(),
        out.len()
    );
    assert!(
        out.len() <= expected.len() + interrupted,
        "{} records beyond the windows and the interrupted commits",
        out.len() - expected.len() - interrupted
    );
    let rows = wait_rows(&pg, &expected, Duration::from_secs(120));
    cluster.assert_results(&pg_id, &rows, &expected);
    assert_eq!(hourly_rows(&pg), expected);
    let restarts: usize = jobs
        .iter()
        .map(|id| {
            let d = cluster.job(id).expect("job");
            d["attempts"].as_array().map_or(1, Vec::len) - 1
        })
        .sum();
    assert!(
        restarts >= 3,
        "each kill restarted a job ({restarts} restarts)"
    );
}
