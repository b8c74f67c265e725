//! The taskmanager processes of a benchmark: `kappa taskmanager` started from this binary,
//! each with its id and command line kept so that one can be killed with SIGKILL and started
//! again as a supervisor would (same id, same flags, same state directory); their CPU time
//! read from /proc and their resident memory sampled once a second ([`RssSampler`]). All are
//! killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use super::rss::RssSampler;

/// How to start one taskmanager: its id and the arguments of `kappa`.
pub struct TaskManagerSpec {
    pub id: String,
    pub args: Vec<String>,
}

/// Taskmanager processes of a benchmark; killed when dropped.
pub struct TaskManagerProcesses {
    exe: PathBuf,
    specs: Vec<TaskManagerSpec>,
    /// The running process of each spec (None: killed, not started again).
    children: Vec<Option<Child>>,
    /// CPU time of the processes killed so far.
    retired_cpu: Duration,
    rss: RssSampler,
}

/// CPU time (user + system) process `pid` used so far, from /proc.
fn process_cpu(pid: u32) -> Option<Duration> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let secs = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks;
    Some(Duration::from_secs_f64(secs))
}

impl TaskManagerProcesses {
    /// No processes: the benchmark's taskmanager runs in this process.
    pub fn none() -> anyhow::Result<Self> {
        Self::start(Vec::new())
    }

    /// Starts a process per spec.
    pub fn start(specs: Vec<TaskManagerSpec>) -> anyhow::Result<Self> {
        let mut tms = Self {
            exe: std::env::current_exe()?,
            children: specs.iter().map(|_| None).collect(),
            specs,
            retired_cpu: Duration::ZERO,
            rss: RssSampler::new(),
        };
        for i in 0..tms.specs.len() {
            tms.spawn(i)?;
        }
        Ok(tms)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<u32> {
        let spec = &self.specs[i];
        let child = Command::new(&self.exe)
            .args(&spec.args)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting taskmanager process {}", spec.id))?;
        let pid = child.id();
        self.rss.track(&spec.id, pid);
        self.children[i] = Some(child);
        Ok(pid)
    }

    fn index(&self, id: &str) -> anyhow::Result<usize> {
        match self.specs.iter().position(|s| s.id == id) {
            Some(i) => Ok(i),
            None => bail!("taskmanager {id} is not one of this benchmark's processes"),
        }
    }

    /// CPU time (user + system) the processes used so far, killed ones included.
    pub fn cpu_time(&self) -> Duration {
        self.retired_cpu
            + self
                .children
                .iter()
                .flatten()
                .filter_map(|c| process_cpu(c.id()))
                .sum::<Duration>()
    }

    /// kill -9 of taskmanager `id`; returns its pid.
    pub fn kill(&mut self, id: &str) -> anyhow::Result<u32> {
        let i = self.index(id)?;
        let Some(mut child) = self.children[i].take() else {
            bail!("taskmanager {id} is not running");
        };
        let pid = child.id();
        self.retired_cpu += process_cpu(pid).unwrap_or_default();
        self.rss.untrack(pid);
        // Child::kill sends SIGKILL.
        child.kill()?;
        child.wait()?;
        Ok(pid)
    }

    /// Starts taskmanager `id` again with its id and flags; returns the new pid.
    pub fn restart(&mut self, id: &str) -> anyhow::Result<u32> {
        let i = self.index(id)?;
        if self.children[i].is_some() {
            bail!("taskmanager {id} is still running");
        }
        self.spawn(i)
    }

    /// Prints the processes' resident memory (see [`RssSampler::report`]).
    pub fn report_rss(&self, budget: Option<&str>) {
        self.rss.report(budget);
    }
}

impl Drop for TaskManagerProcesses {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
