//! Jobs that survive failures in the end-to-end tests: a jobmanager with two taskmanagers, a
//! checkpoint to wait for, a taskmanager killed with SIGKILL, and file-sink output read back.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, Process};
use crate::eventually;
use crate::reference::{Click, HOUR, START};

/// A job section: restart quickly and checkpoint every 500 ms.
pub const RECOVERY: &str = r#"[restart]
strategy = "fixed-delay"
delay = "200ms"

[checkpoints]
interval = "500ms"
"#;

/// A jobmanager that checkpoints to a temporary directory, with two taskmanagers of two slots;
/// jobs may use files under `dir`.
pub fn cluster(dir: &Path) -> (Cluster, Vec<Process>) {
    let cluster = checkpointing_jobmanager(dir);
    let tms = cluster.taskmanagers(2, 2, &["--allow-path", dir.to_str().expect("utf-8 path")]);
    (cluster, tms)
}

/// The jobmanager of [`cluster`] alone: it checkpoints to a temporary directory, and jobs
/// may use files under `dir`.
pub fn checkpointing_jobmanager(dir: &Path) -> Cluster {
    let cp = dir.join("checkpoints");
    // Default heartbeat timeout (10 s): a killed taskmanager is found lost by its broken
    // control stream at once.
    Cluster::jobmanager(&[
        "--checkpoint-dir",
        cp.to_str().expect("utf-8 path"),
        "--allow-path",
        dir.to_str().expect("utf-8 path"),
    ])
    .expect("jobmanager")
}

/// kill -9 of a taskmanager running subtasks of `id`; waits until the job runs again without
/// it and prints how long that took.
pub fn kill_a_taskmanager(cluster: &Cluster, tms: &mut [Process], id: &str) {
    let d = cluster.job(id).expect("status");
    let victim_id = d["vertices"][0]["subtasks"][0]["taskmanager"]
        .as_str()
        .expect("placed")
        .to_string();
    let victim = cluster
        .taskmanager_process(tms, &victim_id)
        .expect("victim process");
    let attempts = d["attempts"].as_array().map_or(0, Vec::len);
    let killed_at = Instant::now();
    tms[victim].kill();
    eventually(
        "the job to run again after the kill",
        Duration::from_secs(60),
        || {
            let d = cluster.job(id).map_err(|e| e.to_string())?;
            let again = d["attempts"].as_array().map_or(0, Vec::len) > attempts;
            match (d["state"].as_str(), again) {
                (Some("RUNNING"), true) => Ok(()),
                (state, _) => Err(format!("{state:?}, attempts {}", d["attempts"])),
            }
        },
    )
    .unwrap();
    println!(
        "kill -9 of a taskmanager to RUNNING again: {:?}",
        killed_at.elapsed()
    );
}

/// Waits until a checkpoint of the job completed, so a kill lands in the middle of the
/// stream with state to restore, not before the first checkpoint.
pub fn first_checkpoint(cluster: &Cluster, id: &str) {
    eventually("a completed checkpoint", Duration::from_secs(60), || {
        let h = cluster.checkpoints(id).map_err(|e| e.to_string())?;
        let done = h.iter().any(|c| c["status"] == "COMPLETED");
        done.then_some(()).ok_or_else(|| format!("{h:?}"))
    })
    .unwrap();
}

/// The lines of every (committed) part file of a file sink directory.
pub fn part_file_lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        // Hidden: an exactly-once part file not committed yet.
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    out
}

/// `n` clicks of item 7 in the first hour of the reference data, long closed when they are
/// sent: late for any window of it.
pub fn late_clicks(n: u32) -> Vec<Click> {
    (0..n)
        .map(|i| Click {
            user: 60 + i % 30,
            item: 7,
            timestamp: START + 1_000 * i64::from(i),
        })
        .collect()
}

/// Waits until the file sink at `dir` holds exactly the `n` [`late_clicks`], each with the
/// first-hour window it missed.
pub fn late_lines(dir: &Path, n: usize) {
    let lines = eventually(
        "the late events in their sink",
        Duration::from_secs(60),
        || {
            let lines = part_file_lines(dir);
            match lines.len() == n {
                true => Ok(lines),
                false => Err(format!("{} of {n} lines", lines.len())),
            }
        },
    )
    .unwrap();
    for l in &lines {
        assert_eq!(l["item_id"], "item_7", "{l}");
        assert_eq!(l["window_start"], START, "{l}");
        assert_eq!(l["window_end"], START + HOUR, "{l}");
        assert!(
            l["user_id"].as_str().is_some() && l["timestamp"].as_str().is_some(),
            "{l}"
        );
    }
}
