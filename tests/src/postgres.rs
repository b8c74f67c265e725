//! A private PostgreSQL server for one test: a fresh cluster (initdb) in a temporary directory,
//! on a free port, password authentication over TCP; stopped and removed when dropped. With
//! [`Postgres::start_tls`] it runs TLS (`ssl=on`) and takes TCP connections over TLS only
//! (pg_hba `hostssl`). The test's own connections go through the Unix socket.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::free_port;
use crate::pki::Issued;
use crate::reference::HOUR;

pub const USER: &str = "kappa";
pub const PASSWORD: &str = "kappa-test-pw";
pub const DATABASE: &str = "kappa_test";

/// A running PostgreSQL server with the database [`DATABASE`]; stopped when dropped.
pub struct Postgres {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    /// `postgres://kappa:…@127.0.0.1:PORT/kappa_test`.
    pub url: String,
}

/// The directory of `initdb` and `postgres`: `$PG_BIN`, else Debian's PostgreSQL 15, else the
/// newest version installed under /usr/lib/postgresql.
fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(dir.into());
    }
    let v15 = PathBuf::from("/usr/lib/postgresql/15/bin");
    if v15.join("postgres").exists() {
        return Ok(v15);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, p)| p).context(
        "PostgreSQL is not installed: run scripts/setup.sh --test (apt package postgresql)",
    )
}

/// uid and gid of the `postgres` user, when this process runs as root (initdb refuses root).
fn server_user() -> anyhow::Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .context("running id")?;
        if !out.status.success() {
            bail!(
                "running as root, PostgreSQL must run as user `postgres`, which does not exist: run scripts/setup.sh --test"
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().parse()?)
    };
    Ok(Some((id("-u")?, id("-g")?)))
}

fn own(path: &Path, user: Option<(u32, u32)>) -> anyhow::Result<()> {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

fn command(program: PathBuf, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

impl Postgres {
    /// initdb, start, wait until it accepts connections, create [`DATABASE`].
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(None)
    }

    /// Like [`Postgres::start`], with TLS on under the certificate `server` and TCP
    /// connections taken over TLS only.
    pub fn start_tls(server: &Issued) -> anyhow::Result<Self> {
        Self::start_with(Some(server))
    }

    fn start_with(tls: Option<&Issued>) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let user = server_user()?;
        let dir = tempfile::tempdir()?;
        // The server user must reach the directories inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let (data, sockets) = (dir.path().join("data"), dir.path().join("sockets"));
        let pwfile = dir.path().join("pwfile");
        std::fs::create_dir(&data)?;
        std::fs::create_dir(&sockets)?;
        std::fs::write(&pwfile, PASSWORD)?;
        for p in [&data, &sockets, &pwfile] {
            own(p, user)?;
        }
        let out = command(bin.join("initdb"), user)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["--encoding=UTF8", "--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(dir.path())
            .output()
            .with_context(|| format!("running {}", bin.join("initdb").display()))?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut settings = vec!["listen_addresses=127.0.0.1".to_string(), "fsync=off".into()];
        if let Some(server) = tls {
            // The server reads its key only when its own user owns it, unreadable to others.
            let (cert, key) = (
                dir.path().join("server.pem"),
                dir.path().join("server-key.pem"),
            );
            std::fs::copy(&server.cert, &cert)?;
            std::fs::copy(&server.key, &key)?;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
            for p in [&cert, &key] {
                own(p, user)?;
            }
            settings.extend([
                "ssl=on".to_string(),
                // Each connection logged with its TLS protocol: what the tests check.
                "log_connections=on".into(),
                format!("ssl_cert_file={}", cert.display()),
                format!("ssl_key_file={}", key.display()),
            ]);
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n";
            std::fs::write(data.join("pg_hba.conf"), hba)?;
        }
        let port = free_port();
        let log = dir.path().join("postgres.log");
        let child = command(bin.join("postgres"), user)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .arg("-k")
            .arg(&sockets)
            .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.join("postgres").display()))?;
        let mut server = Self {
            child: Some(child),
            dir,
            port,
            url: format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut admin = loop {
            match postgres::Client::connect(&server.socket_url("postgres"), postgres::NoTls) {
                Ok(c) => break c,
                Err(e) => {
                    let exited = server
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    if exited.is_some() || Instant::now() > deadline {
                        bail!(
                            "PostgreSQL did not accept connections ({e}); log:\n{}",
                            server.log_text()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        admin.batch_execute(&format!("CREATE DATABASE {DATABASE}"))?;
        Ok(server)
    }

    /// Database `db` through the server's Unix socket (trusted: no password, no TLS).
    fn socket_url(&self, db: &str) -> String {
        let sockets = self.dir.path().join("sockets");
        format!(
            "host={} port={} user={USER} dbname={db}",
            sockets.display(),
            self.port
        )
    }

    /// How many TCP sessions of [`USER`] run over TLS and how many do not (`pg_stat_ssl`).
    pub fn tcp_sessions_by_tls(&self) -> anyhow::Result<(i64, i64)> {
        let row = self.client()?.query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.usename = $1 AND a.client_addr IS NOT NULL",
            &[&USER],
        )?;
        Ok((row.get(0), row.get(1)))
    }

    /// The server's log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// A new connection to [`DATABASE`] (through the Unix socket).
    pub fn client(&self) -> anyhow::Result<postgres::Client> {
        Ok(postgres::Client::connect(
            &self.socket_url(DATABASE),
            postgres::NoTls,
        )?)
    }

    /// Runs SQL statements (separated by `;`).
    pub fn execute(&self, sql: &str) -> anyhow::Result<()> {
        self.client()?
            .batch_execute(sql)
            .with_context(|| format!("executing {sql}"))
    }

    /// Every row of `table` as id → the row as a JSON object (`row_to_json`, all columns).
    pub fn rows(&self, table: &str) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
        let mut out = BTreeMap::new();
        for row in self.client()?.query(
            &format!("SELECT id::text, row_to_json(t)::text FROM {table} t"),
            &[],
        )? {
            let (id, json): (String, String) = (row.get(0), row.get(1));
            out.insert(id, serde_json::from_str(&json)?);
        }
        Ok(out)
    }

    /// Stops the server (immediate shutdown: SIGQUIT, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: signals the child this handle started and has not reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGQUIT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The hourly counts table, window_end as a timestamp (the sink converts epoch ms), and a view
/// showing it as epoch ms again for the comparison.
pub const HOURLY_TABLE: &str = "CREATE TABLE hourly_clicks (
    id text PRIMARY KEY,
    item_id text NOT NULL,
    window_start bigint NOT NULL,
    window_end timestamptz NOT NULL,
    click_count bigint NOT NULL
);
CREATE VIEW hourly_clicks_ms AS SELECT id, item_id, window_start,
    (extract(epoch FROM window_end) * 1000)::bigint AS window_end, click_count FROM hourly_clicks;";

/// The table as (item_id, window_end) → click_count, checking each row's id and window.
pub fn hourly_rows(pg: &Postgres) -> BTreeMap<(String, i64), i64> {
    let mut out = BTreeMap::new();
    for (id, row) in pg.rows("hourly_clicks_ms").expect("read hourly_clicks") {
        let item = row["item_id"].as_str().unwrap_or_default().to_string();
        let (start, end) = (
            row["window_start"].as_i64().unwrap_or_default(),
            row["window_end"].as_i64().unwrap_or_default(),
        );
        assert_eq!(id, format!("{item}-{end}"), "row id of {row}");
        assert_eq!(end - start, HOUR, "window of {row}");
        out.insert((item, end), row["click_count"].as_i64().unwrap_or_default());
    }
    out
}

/// Polls the table until it equals `expected` or `timeout` passes; returns the last read.
pub fn wait_rows(
    pg: &Postgres,
    expected: &BTreeMap<(String, i64), i64>,
    timeout: Duration,
) -> BTreeMap<(String, i64), i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = hourly_rows(pg);
        if &got == expected || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `job` with its [sink] table replaced by a postgres sink into `table`, keyed by item and
/// window end.
pub fn with_postgres_sink(job: &str, url: &str, table: &str) -> String {
    let at = job.find("[sink]").expect("a [sink] table");
    format!(
        "{}[sink]\nconnector = \"postgres\"\nurl = \"{url}\"\ntable = \"{table}\"\nkey = \"{{item_id}}-{{window_end}}\"\n",
        &job[..at]
    )
}
