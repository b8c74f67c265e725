//! A private Redis server for one test (Debian's redis-server) on a free loopback port, with
//! a password and no persistence; killed when dropped. The test reads it back with redis-cli,
//! the server's own client.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{eventually, free_port};

pub const PASSWORD: &str = "kappa-redis-pw";

/// A running redis-server; killed when dropped.
pub struct Redis {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
    /// `redis://127.0.0.1:PORT/0`, without the password.
    pub url: String,
}

impl Redis {
    /// Starts a server and waits until it answers.
    pub fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting redis-server: run scripts/setup.sh --test (apt package redis-server)",
            )?;
        let redis = Self {
            child,
            _dir: dir,
            port,
            url: format!("redis://127.0.0.1:{port}/0"),
        };
        eventually(
            "redis-server to answer",
            Duration::from_secs(20),
            || match redis.cli(&["PING"]) {
                Ok(pong) if pong.trim() == "PONG" => Ok(()),
                Ok(other) => Err(other),
                Err(e) => Err(e.to_string()),
            },
        )?;
        Ok(redis)
    }

    /// Runs redis-cli against the server; its standard output.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "-a",
                PASSWORD,
                "--no-auth-warning",
            ])
            .args(args)
            .output()
            .context("running redis-cli")?;
        if !out.status.success() {
            bail!(
                "redis-cli {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The keys matching `pattern`, sorted.
    pub fn keys(&self, pattern: &str) -> anyhow::Result<Vec<String>> {
        let mut keys: Vec<String> = self
            .cli(&["--scan", "--pattern", pattern])?
            .lines()
            .map(str::to_string)
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
