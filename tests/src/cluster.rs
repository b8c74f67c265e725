//! A `kappa local` process on a free port, driven through kappactl as a user would, with
//! helpers to wait for job states and sink contents.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::{bin, free_port};

/// A running local cluster; killed when dropped. Its log is kept in `log`.
pub struct Cluster {
    child: Child,
    pub url: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(slots: u32) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("kappa.log");
        let port = free_port();
        let child = Command::new(bin("kappa"))
            .args([
                "local",
                "--port",
                &port.to_string(),
                "--rpc-port",
                "0",
                "--slots",
                &slots.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting kappa local")?;
        let cluster = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if reqwest::blocking::get(format!("{}/api/v1/overview", cluster.url))
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                bail!(
                    "kappa local did not answer within 30 s; log:\n{}",
                    cluster.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs kappactl against this cluster.
    pub fn kappactl(&self, args: &[&str]) -> Output {
        Command::new(bin("kappactl"))
            .args(args)
            .env("KAPPA_JOBMANAGER", &self.url)
            .output()
            .expect("running kappactl")
    }

    /// Writes `job` to a file and submits it; returns the job id.
    pub fn submit(&self, job: &str, extra: &[&str]) -> anyhow::Result<String> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("job.toml");
        std::fs::write(&path, job)?;
        let mut args = vec!["submit", path.to_str().context("path")?];
        args.extend_from_slice(extra);
        let out = self.kappactl(&args);
        if !out.status.success() {
            bail!(
                "kappactl submit failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    /// The job as `kappactl status --json` shows it.
    pub fn job(&self, id: &str) -> anyhow::Result<Value> {
        let out = self.kappactl(&["status", id, "--json"]);
        if !out.status.success() {
            bail!(
                "kappactl status failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Waits until the job is in one of `states`; returns its detail.
    pub fn wait_state(
        &self,
        id: &str,
        states: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.job(id)?;
            if states.contains(&job["state"].as_str().unwrap_or_default()) {
                return Ok(job);
            }
            if Instant::now() > deadline {
                bail!(
                    "job {id} is {} after {timeout:?}, expected one of {states:?}: {job}\nlog:\n{}",
                    job["state"],
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn get(&self, path: &str) -> anyhow::Result<reqwest::blocking::Response> {
        Ok(reqwest::blocking::get(format!("{}{path}", self.url))?)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
