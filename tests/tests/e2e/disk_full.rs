//! A taskmanager whose `--state-dir` fills up (a small tmpfs): the job fails with an error
//! that names the device and the directory, restarts until there is room again, and then
//! delivers exact results; no process panics.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kappa_integration_tests::broker::Broker;
use kappa_integration_tests::cluster::Cluster;
use kappa_integration_tests::reference::{
    START, clicks, closing, hourly_counts, latest_per_key, spread,
};
use kappa_integration_tests::{SINK_PARTITIONS, eventually, reference_job};

const FILTER: &str = "CAST(split_part(user_id, '_', 2) AS INT) > 50";

/// A tmpfs of `size` at `dir`, unmounted when dropped.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()?
            .success();
        match ok {
            true => Ok(Self(dir)),
            false => Err(std::io::Error::other("mount -t tmpfs failed")),
        }
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

#[test]
fn a_full_state_disk_fails_the_job_by_name_and_it_recovers_exactly_when_there_is_room() {
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    // Mounting needs root, which this machine and its CI have.
    let _tmpfs = Tmpfs::mount(&state, "8m").expect("a tmpfs for the state directory");
    let broker = Broker::start().expect("broker");
    broker.create_topic("clicks", 2).expect("topic");
    broker.create_topic("out", SINK_PARTITIONS).expect("topic");
    let data = clicks(20_000, 71, START, 6, 2_000);
    let chk = dir.path().join("checkpoints");
    let cluster = Cluster::jobmanager(&["--checkpoint-dir", chk.to_str().expect("utf-8")])
        .expect("jobmanager");
    let tm = cluster
        .taskmanager_with(4, &["--state-dir", state.to_str().expect("utf-8")], &[])
        .expect("taskmanager");
    // Leave almost no room.
    let filler = state.join("filler");
    let free = |p: &Path| -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(p)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    };
    let room = free(&state);
    std::fs::write(&filler, vec![7u8; room.saturating_sub(64 * 1024) as usize]).expect("filler");
    let job = reference_job(&broker.bootstrap, "clicks", "out", FILTER, 2).replace(
        "[sink]",
        "[restart]\nstrategy = \"fixed-delay\"\ndelay = \"300ms\"\n\n[checkpoints]\ninterval = \"300ms\"\n\n[sink]",
    );
    let id = cluster.submit(&job, &[]).expect("submit");
    broker
        .produce("clicks", &spread(&data, 2))
        .expect("produce");
    let failure = eventually(
        "a failure naming the full disk",
        Duration::from_secs(60),
        || {
            let d = cluster.job(&id).map_err(|e| e.to_string())?;
            let errors: Vec<String> = d["attempts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["error"].as_str().map(str::to_string))
                .collect();
            errors
                .into_iter()
                .find(|e| e.contains("No space left on device"))
                .ok_or_else(|| {
                    format!(
                        "{} {}\nTM LOG:\n{}",
                        d["state"],
                        d["attempts"],
                        tm.log_text()
                    )
                })
        },
    )
    .unwrap();
    assert!(
        failure.contains(state.to_str().expect("utf-8")),
        "the error names the directory: {failure}"
    );
    // Room again: the job recovers and its results are exact.
    std::fs::remove_file(&filler).expect("free the disk");
    broker
        .produce("clicks", &closing(&data, 2))
        .expect("closing");
    let expected = hourly_counts(&data, |u| u > 50);
    let records = broker
        .read_results("out", &expected, Duration::from_secs(120))
        .expect("read");
    cluster.assert_results(&id, &latest_per_key(&records).expect("records"), &expected);
    assert!(!tm.log_text().contains("panicked"), "{}", tm.log_text());
}
