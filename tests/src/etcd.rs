//! A private etcd server (Debian's etcd 3.4) on free ports with its data in a temporary
//! directory; it can be stopped and started again on the same data, and is killed when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::free_port;

/// A running (or stopped) etcd member.
pub struct Etcd {
    child: Option<Child>,
    pub endpoint: String,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    started_once: bool,
}

impl Etcd {
    pub fn start() -> anyhow::Result<Self> {
        let mut e = Self {
            child: None,
            endpoint: String::new(),
            client_port: free_port(),
            peer_port: free_port(),
            dir: tempfile::tempdir()?,
            started_once: false,
        };
        e.endpoint = format!("http://127.0.0.1:{}", e.client_port);
        e.resume()?;
        Ok(e)
    }

    /// Starts the server (again, on the same data) and waits until it answers.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let state = if self.started_once { "existing" } else { "new" };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))?;
        let child = Command::new("etcd")
            .args([
                "--name",
                "s1",
                "--data-dir",
                &self.dir.path().join("data").display().to_string(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &format!("s1={peer}"),
                "--initial-cluster-state",
                state,
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context(
                "starting etcd (apt package etcd-server; scripts/setup.sh --test installs it)",
            )?;
        self.child = Some(child);
        self.started_once = true;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.client_port)).is_err() {
            if Instant::now() > deadline {
                bail!("etcd did not listen within 20 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// kill -9.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
