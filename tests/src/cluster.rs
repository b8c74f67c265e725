//! Kappa processes on free ports — `kappa local`, or a jobmanager with taskmanagers — driven
//! through kappactl as a user would, with helpers to wait for job states.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::{bin, free_port};

/// A kappa process started by a test; killed (SIGKILL) when dropped. Its stderr is its log.
pub struct Process {
    child: Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    pub fn spawn(args: &[&str]) -> anyhow::Result<Self> {
        Self::spawn_with_env(args, &[])
    }

    /// Like [`Process::spawn`], with extra environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, String)]) -> anyhow::Result<Self> {
        Self::spawn_in(None, args, env)
    }

    /// Like [`Process::spawn_with_env`], inside network namespace `netns` when given (through
    /// `ip netns exec`, which execs kappa: the child is the kappa process).
    pub fn spawn_in(
        netns: Option<&str>,
        args: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("kappa.log");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("kappa"));
                c
            }
            None => Command::new(bin("kappa")),
        };
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if matches!(args.first(), Some(&"local" | &"taskmanager")) && !args.contains(&"--state-dir")
        {
            // Local state inside the test's temporary directory, removed with it.
            cmd.arg("--state-dir").arg(dir.path().join("state"));
        }
        if matches!(args.first(), Some(&"jobmanager" | &"taskmanager"))
            && !args
                .iter()
                .any(|a| *a == "--insecure" || *a == "--cluster-cert")
        {
            // Cluster processes need mutual TLS or an explicit --insecure: tests of TLS pass
            // --cluster-cert, the others run plaintext on loopback.
            cmd.arg("--insecure");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting kappa {args:?}"))?;
        Ok(Self {
            child,
            log,
            _dir: dir,
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as a process manager stops a process.
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.signal("TERM")
    }

    /// Sends signal `name` (TERM, STOP, CONT, …) to the process.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(sent.success(), "kill -{name} {} failed", self.child.id());
        Ok(())
    }

    /// The exit status, if it ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster the tests talk to: `kappa local`, or a `kappa jobmanager` with taskmanager processes.
pub struct Cluster {
    process: Process,
    pub url: String,
    /// gRPC URL of the jobmanager, for taskmanagers.
    pub rpc: String,
    /// The REST API's bearer token, when the cluster has one.
    pub token: Option<String>,
}

impl Cluster {
    /// `kappa local` with `slots` slots.
    pub fn start(slots: u32) -> anyhow::Result<Self> {
        Self::local(slots, &[])
    }

    /// `kappa local` with `slots` slots and extra flags.
    pub fn local(slots: u32, extra: &[&str]) -> anyhow::Result<Self> {
        Self::local_with_env(slots, extra, &[])
    }

    /// `kappa local` with extra flags and environment variables.
    pub fn local_with_env(
        slots: u32,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let (port, rpc) = (free_port(), free_port());
        let mut args: Vec<String> = [
            "local",
            "--port",
            &port.to_string(),
            "--rpc-port",
            &rpc.to_string(),
            "--slots",
            &slots.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = Process::spawn_with_env(&args, env)?;
        // A cluster started with an auth token is called with it.
        let token = env
            .iter()
            .find(|(k, _)| *k == "KAPPA_AUTH_TOKEN")
            .map(|(_, v)| v.clone());
        Self::ready(process, port, rpc, token)
    }

    /// `kappa jobmanager` alone, with extra flags; add taskmanagers with [`Cluster::taskmanager`].
    pub fn jobmanager(extra: &[&str]) -> anyhow::Result<Self> {
        Self::jobmanager_with_env(extra, &[])
    }

    /// `kappa jobmanager` alone, with extra flags and environment variables.
    pub fn jobmanager_with_env(extra: &[&str], env: &[(&str, String)]) -> anyhow::Result<Self> {
        let (port, rpc) = (free_port(), free_port());
        let args = Self::jobmanager_args(port, rpc, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = Process::spawn_with_env(&args, env)?;
        Self::ready(process, port, rpc, None)
    }

    fn jobmanager_args(port: u16, rpc: u16, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["jobmanager", "--port", &port.to_string(), "--rpc-port"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(rpc.to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Starts `kappa jobmanager` again on the same ports (the old process is killed if it
    /// still runs), with extra flags; waits until it answers.
    pub fn restart_jobmanager(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        let port_of = |url: &str| url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
        let (Some(port), Some(rpc)) = (port_of(&self.url), port_of(&self.rpc)) else {
            bail!("no ports in {} and {}", self.url, self.rpc);
        };
        self.process.kill();
        let args = Self::jobmanager_args(port, rpc, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let restarted = Self::ready(Process::spawn(&args)?, port, rpc, self.token.clone())?;
        *self = restarted;
        Ok(())
    }

    /// The jobmanager (or `kappa local`) process.
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    fn ready(process: Process, port: u16, rpc: u16, token: Option<String>) -> anyhow::Result<Self> {
        let cluster = Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            rpc: format!("http://127.0.0.1:{rpc}"),
            token,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if cluster
                .get("/api/v1/overview")
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                bail!(
                    "kappa did not answer within 30 s; log:\n{}",
                    cluster.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Which of `processes` run subtasks of the jobs `ids`, in order.
    pub fn hosting(&self, processes: &[Process], ids: &[&str]) -> Vec<usize> {
        let mut found: Vec<usize> = Vec::new();
        for id in ids {
            let detail = self.job(id).unwrap_or_default();
            let placed = detail["vertices"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|v| v["subtasks"].as_array().into_iter().flatten())
                .filter_map(|s| s["taskmanager"].as_str());
            found.extend(placed.filter_map(|tm| self.taskmanager_process(processes, tm)));
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Which of `processes` is the taskmanager registered as `id` (by the id it logs when it
    /// starts; other taskmanagers' logs may name its address).
    pub fn taskmanager_process(&self, processes: &[Process], id: &str) -> Option<usize> {
        processes
            .iter()
            .position(|p| taskmanager_id(&p.log_text()).as_deref() == Some(id))
    }

    /// kill -9 of the jobmanager (or `kappa local`) process.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts a taskmanager process on a free port and waits until its slots are registered.
    pub fn taskmanager(&self, slots: u32) -> anyhow::Result<Process> {
        self.taskmanager_with_env(slots, &[])
    }

    /// Like [`Cluster::taskmanager`], with extra environment variables.
    pub fn taskmanager_with_env(
        &self,
        slots: u32,
        env: &[(&str, String)],
    ) -> anyhow::Result<Process> {
        self.taskmanager_with(slots, &[], env)
    }

    /// Like [`Cluster::taskmanager`], with extra flags and environment variables.
    pub fn taskmanager_with(
        &self,
        slots: u32,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Process> {
        self.taskmanager_in(None, slots, extra, env)
    }

    /// `count` taskmanagers of `slots` slots each, with extra flags.
    pub fn taskmanagers(&self, count: usize, slots: u32, extra: &[&str]) -> Vec<Process> {
        (0..count)
            .map(|_| {
                self.taskmanager_with(slots, extra, &[])
                    .expect("taskmanager")
            })
            .collect()
    }

    /// The job's checkpoint history as the REST API lists it, newest first.
    pub fn checkpoints(&self, id: &str) -> anyhow::Result<Vec<Value>> {
        let history: Value = self
            .get(&format!("/api/v1/jobs/{id}/checkpoints"))?
            .json()?;
        Ok(history.as_array().cloned().unwrap_or_default())
    }

    /// Like [`Cluster::taskmanager_with`], inside network namespace `netns` when given: it
    /// listens on the namespace's address and reaches the jobmanager (whose `--rpc-address`
    /// must take it, e.g. 0.0.0.0) at the host's.
    pub fn taskmanager_in(
        &self,
        netns: Option<&crate::netns::Namespace>,
        slots: u32,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Process> {
        let slots_arg = slots.to_string();
        let jobmanager = match netns {
            Some(ns) => self.rpc.replace("127.0.0.1", &ns.host_ip),
            None => self.rpc.clone(),
        };
        let mut args = vec![
            "taskmanager",
            "--jobmanager",
            &jobmanager,
            "--port",
            "0",
            "--slots",
            &slots_arg,
        ];
        if let Some(ns) = netns {
            args.extend(["--bind", &ns.ip, "--advertised-host", &ns.ip]);
        }
        args.extend_from_slice(extra);
        let tm = Process::spawn_in(netns.map(|n| n.name.as_str()), &args, env)?;
        // Registered when the jobmanager lists its id (counting slots would race with another
        // taskmanager being declared lost meanwhile).
        let listed = || -> anyhow::Result<bool> {
            let Some(id) = taskmanager_id(&tm.log_text()) else {
                return Ok(false);
            };
            let tms: Value = self.get("/api/v1/taskmanagers")?.json()?;
            Ok(tms
                .as_array()
                .is_some_and(|l| l.iter().any(|t| t["id"] == id.as_str())))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !listed()? {
            if Instant::now() > deadline {
                bail!(
                    "the taskmanager did not register within 30 s; log:\n{}",
                    tm.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(tm)
    }

    pub fn overview(&self) -> anyhow::Result<Value> {
        Ok(self.get("/api/v1/overview")?.json()?)
    }

    pub fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// Runs kappactl against this cluster.
    pub fn kappactl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("kappactl"));
        cmd.args(args).env("KAPPA_JOBMANAGER", &self.url);
        if let Some(t) = &self.token {
            cmd.env("KAPPA_AUTH_TOKEN", t);
        }
        cmd.output().expect("running kappactl")
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

    /// Waits until job `id` has FAILED without a restart (its error is one no restart can
    /// cure); its detail and error.
    pub fn failed_once(&self, id: &str, timeout: Duration) -> anyhow::Result<(Value, String)> {
        let job = self.wait_state(id, &["FAILED"], timeout)?;
        let attempts = job["attempts"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            attempts == 1,
            "job {id} was restarted ({attempts} attempts) for an error no restart cures: {job}"
        );
        let error = job["error"].as_str().unwrap_or_default().to_string();
        Ok((job, error))
    }

    /// Panics with the job's detail, the missing keys and the cluster log when `got` differs
    /// from `expected`.
    pub fn assert_results<K: std::fmt::Debug + Ord, V: std::fmt::Debug + PartialEq>(
        &self,
        id: &str,
        got: &std::collections::BTreeMap<K, V>,
        expected: &std::collections::BTreeMap<K, V>,
    ) {
        if got == expected {
            return;
        }
        let missing: Vec<_> = expected
            .keys()
            .filter(|k| !got.contains_key(*k))
            .take(8)
            .collect();
        let wrong: Vec<_> = expected
            .iter()
            .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
            .take(8)
            .collect();
        panic!(
            "{} results, {} expected; missing e.g. {missing:?}; wrong e.g. {wrong:?}\njob: {}\nlog:\n{}",
            got.len(),
            expected.len(),
            self.job(id).map(|j| j.to_string()).unwrap_or_default(),
            self.log_text()
        );
    }

    /// GET on the REST API, with the cluster's token if it has one.
    pub fn get(&self, path: &str) -> anyhow::Result<reqwest::blocking::Response> {
        let mut req = reqwest::blocking::Client::new().get(format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        Ok(req.send()?)
    }
}

/// The id a taskmanager logs when it starts serving.
fn taskmanager_id(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("taskmanager serving"))?;
    let at = line.find("tm-")?;
    Some(
        line[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect(),
    )
}
