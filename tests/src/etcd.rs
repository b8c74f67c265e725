//! A private etcd server (Debian's etcd 3.4) on free ports with its data in a temporary
//! directory; it can be stopped and started again on the same data, and is killed when dropped.
//! [`Etcd::start_secure`] serves clients over TLS only, asks them for a certificate of the
//! test CA, and has authentication on: a `root` user and a user [`USER`] who may read and
//! write under [`PREFIX`].

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::free_port;
use crate::pki::{Issued, Pki};

/// The user of a secure etcd that jobmanagers log in as, its password, and its key prefix.
pub const USER: &str = "kappa";
pub const PASSWORD: &str = "etcd-test-pw";
pub const PREFIX: &str = "/kappa";

/// TLS of a secure etcd: its server certificate, the CA, and a client certificate of `root`
/// for etcdctl.
struct Secure {
    ca: PathBuf,
    server: Issued,
    root_client: Issued,
    auth_token_ttl: u32,
}

/// A running (or stopped) etcd member.
pub struct Etcd {
    child: Option<Child>,
    pub endpoint: String,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    started_once: bool,
    secure: Option<Secure>,
}

impl Etcd {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(None)
    }

    /// etcd on https with client certificates of `pki` and authentication on; simple auth
    /// tokens expire after `auth_token_ttl` seconds unused (and when etcd restarts).
    pub fn start_secure(pki: &Pki, auth_token_ttl: u32) -> anyhow::Result<Self> {
        let secure = Secure {
            ca: pki.ca.clone(),
            server: pki.issue("etcd-server", &["localhost", "127.0.0.1"])?,
            root_client: pki.issue("root", &[])?,
            auth_token_ttl,
        };
        let e = Self::start_with(Some(secure))?;
        crate::eventually("etcd answers etcdctl", Duration::from_secs(20), || {
            e.etcdctl(&["endpoint", "health"])
                .map_err(|x| format!("{x:#}"))
        })?;
        let role = format!("{USER}-rw");
        for args in [
            vec!["user", "add", "root:etcd-root-pw"],
            vec!["user", "add", &format!("{USER}:{PASSWORD}")],
            vec!["role", "add", &role],
            vec![
                "role",
                "grant-permission",
                &role,
                "--prefix=true",
                "readwrite",
                PREFIX,
            ],
            vec!["user", "grant-role", USER, &role],
            vec!["auth", "enable"],
        ] {
            e.etcdctl(&args)?;
        }
        Ok(e)
    }

    fn start_with(secure: Option<Secure>) -> anyhow::Result<Self> {
        let mut e = Self {
            child: None,
            endpoint: String::new(),
            client_port: free_port(),
            peer_port: free_port(),
            dir: tempfile::tempdir()?,
            started_once: false,
            secure,
        };
        let scheme = if e.secure.is_some() { "https" } else { "http" };
        e.endpoint = format!("{scheme}://127.0.0.1:{}", e.client_port);
        e.resume()?;
        Ok(e)
    }

    /// Runs etcdctl as `root` (by its client certificate) against a secure etcd.
    pub fn etcdctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let s = self
            .secure
            .as_ref()
            .context("etcdctl is for a secure etcd")?;
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .arg(format!("--cacert={}", s.ca.display()))
            .arg(format!("--cert={}", s.root_client.cert.display()))
            .arg(format!("--key={}", s.root_client.key.display()))
            .args(args)
            .output()
            .context("running etcdctl (apt package etcd-client)")?;
        if !out.status.success() {
            bail!(
                "etcdctl {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts the server (again, on the same data) and waits until it answers.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        let client = self.endpoint.clone();
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
            .args(self.secure.iter().flat_map(|s| {
                [
                    format!("--cert-file={}", s.server.cert.display()),
                    format!("--key-file={}", s.server.key.display()),
                    format!("--trusted-ca-file={}", s.ca.display()),
                    "--client-cert-auth".to_string(),
                    format!("--auth-token-ttl={}", s.auth_token_ttl),
                ]
            }))
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
