//! Harness of the end-to-end tests: a real Tansu broker process, a `kappa local` process,
//! kappactl, Kafka helpers, private PostgreSQL and S3 servers, and the reference results
//! computed independently of Kappa.

pub mod broker;
pub mod browser;
pub mod click_stream;
pub mod cluster;
pub mod cluster_certs;
pub mod etcd;
pub mod kafka_tls;
pub mod netns;
pub mod pki;
pub mod postgres;
pub mod recovery;
pub mod redis;
pub mod reference;
pub mod s3;
pub mod slow_sink;
pub mod upgrades;

use std::net::TcpListener;
use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `tests/scripts/<script>` with python3 and `args`, and parses the JSON it prints; an
/// error says what failed (python3 missing: run `scripts/setup.sh --test`; the script's stderr).
pub fn python_json(script: &str, args: &[&str]) -> Result<serde_json::Value, String> {
    let path = repo_root().join("tests/scripts").join(script);
    let out = std::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .map_err(|e| {
            format!(
                "python3 {}: {e} (run scripts/setup.sh --test)",
                path.display()
            )
        })?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{script} printed no JSON: {e}"))
}

/// A built binary of this workspace (`cargo build --bins` first), next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        path.display()
    );
    path
}

/// Polls `check` until it gives a value or `timeout` passes; the error names `what` and the
/// last state `check` described. The one way the tests wait for a condition.
pub fn eventually<T>(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> anyhow::Result<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return Ok(v),
            Err(last) if std::time::Instant::now() > deadline => {
                anyhow::bail!("{what}: not within {timeout:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Partitions of the sink topics of the tests: at least the largest parallelism, so each sink
/// subtask has a partition of its own (see [`reference_job`]).
pub const SINK_PARTITIONS: i32 = 4;

/// The reference job of the article with its addresses, topics and filter replaced. Its sink
/// uses `partitioner = "fixed"`: Tansu 0.6 (the test broker) loses records when producers on
/// different connections append to the same partition at the same time (reproduced without
/// Kappa: 4 producers, 2 partitions, 2 of 30 rounds short by ~150 records; none with a
/// partition per producer), so each sink subtask writes to its own partition.
pub fn reference_job(
    bootstrap: &str,
    source_topic: &str,
    sink_topic: &str,
    filter: &str,
    parallelism: u32,
) -> String {
    example_job(
        "examples/hourly-item-clicks.toml",
        bootstrap,
        source_topic,
        sink_topic,
        filter,
        parallelism,
    )
}

/// The reference job in its SQL form (`examples/hourly-item-clicks-sql.toml`), replaced as
/// [`reference_job`].
pub fn reference_sql_job(
    bootstrap: &str,
    source_topic: &str,
    sink_topic: &str,
    filter: &str,
    parallelism: u32,
) -> String {
    example_job(
        "examples/hourly-item-clicks-sql.toml",
        bootstrap,
        source_topic,
        sink_topic,
        filter,
        parallelism,
    )
}

fn example_job(
    example: &str,
    bootstrap: &str,
    source_topic: &str,
    sink_topic: &str,
    filter: &str,
    parallelism: u32,
) -> String {
    let text = std::fs::read_to_string(repo_root().join(example)).expect(example);
    text.replace("127.0.0.1:9092", bootstrap)
        .replace(
            "topic = \"user-behavior\"",
            &format!("topic = \"{source_topic}\""),
        )
        .replace(
            "topic = \"hourly-clicks\"",
            &format!("topic = \"{sink_topic}\""),
        )
        .replace("CAST(split_part(user_id, '_', 2) AS INT) > 50", filter)
        .replace("parallelism = 2", &format!("parallelism = {parallelism}"))
        .replace(
            "key = \"{item_id}-{window_end}\"",
            "key = \"{item_id}-{window_end}\"\npartitioner = \"fixed\"",
        )
}

/// The SQL of examples/nexmark/{query}.toml, writing into the sink `query` instead of `out`.
pub fn example_sql(query: &str) -> String {
    let path = repo_root().join(format!("examples/nexmark/{query}.toml"));
    let text = std::fs::read_to_string(&path).expect("example");
    let sql = text
        .split_once("sql = \"\"\"")
        .and_then(|(_, rest)| rest.split_once("\"\"\""))
        .map(|(sql, _)| sql)
        .expect("a sql = \"\"\" … \"\"\" in the example");
    assert!(sql.contains("INSERT INTO out\n"), "{query}: {sql}");
    sql.replace("INSERT INTO out\n", &format!("INSERT INTO {query}\n"))
}

/// Whether a checkpoint history (`GET /jobs/{id}/checkpoints`) holds a completed checkpoint
/// whose source offsets add up to `records`.
pub fn checkpoint_covers(history: &serde_json::Value, records: i64) -> bool {
    history.as_array().into_iter().flatten().any(|c| {
        c["status"] == "COMPLETED"
            && c["offsets"].as_array().is_some_and(|o| {
                o.iter()
                    .map(|p| p["next_offset"].as_i64().unwrap_or(0))
                    .sum::<i64>()
                    == records
            })
    })
}
