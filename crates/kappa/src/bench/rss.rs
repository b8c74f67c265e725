//! The resident memory of a benchmark's taskmanager processes over time: a thread reads
//! `VmRSS` of `/proc/PID/status` of every tracked process once a second, and at the end the
//! benchmark prints each process's maximum and a timeline (a value every 5 s), beside the
//! `--state-memory` budget when one was given.

use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How often the resident memory is read.
const EVERY: Duration = Duration::from_secs(1);

/// Samples between two values of a printed timeline.
const TIMELINE_STEP: usize = 5;

/// One process's samples.
struct Series {
    label: String,
    pid: u32,
    /// Seconds since the sampler started when the process was tracked.
    from: u64,
    /// Seconds since the sampler started when it stopped being tracked (killed).
    until: Option<u64>,
    /// (seconds since the sampler started, VmRSS in bytes), one a second.
    rss: Vec<(u64, u64)>,
}

/// Samples the resident memory of the processes it tracks until dropped.
pub struct RssSampler {
    series: Arc<Mutex<Vec<Series>>>,
    started: Instant,
    /// Dropped to stop the thread.
    stop: Option<Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// VmRSS of process `pid` in bytes; None once it is gone.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl RssSampler {
    pub fn new() -> Self {
        let series: Arc<Mutex<Vec<Series>>> = Arc::default();
        let (stop, stopped) = channel::<()>();
        let started = Instant::now();
        let thread = {
            let series = Arc::clone(&series);
            std::thread::Builder::new()
                .name("bench-rss".into())
                .spawn(move || {
                    let mut next = Instant::now();
                    loop {
                        let at = started.elapsed().as_secs();
                        for s in lock(&series).iter_mut().filter(|s| s.until.is_none()) {
                            if let Some(b) = resident_bytes(s.pid) {
                                s.rss.push((at, b));
                            }
                        }
                        next += EVERY;
                        let wait = next.saturating_duration_since(Instant::now());
                        if stopped.recv_timeout(wait) != Err(RecvTimeoutError::Timeout) {
                            return;
                        }
                    }
                })
                .ok()
        };
        if thread.is_none() {
            tracing::warn!("could not start the thread that samples the taskmanagers' RSS");
        }
        Self {
            series,
            started,
            stop: Some(stop),
            thread,
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Samples process `pid` from now on, printed as `label`.
    pub fn track(&self, label: &str, pid: u32) {
        lock(&self.series).push(Series {
            label: label.to_string(),
            pid,
            from: self.now(),
            until: None,
            rss: Vec::new(),
        });
    }

    /// Stops sampling process `pid` (about to be killed: its pid may be reused).
    pub fn untrack(&self, pid: u32) {
        let now = self.now();
        for s in lock(&self.series)
            .iter_mut()
            .filter(|s| s.pid == pid && s.until.is_none())
        {
            s.until = Some(now);
        }
    }

    /// Prints each process's largest RSS and its timeline, and how far above `budget` (the
    /// --state-memory given to each, None: the default) the largest is.
    pub fn report(&self, budget: Option<&str>) {
        let series = lock(&self.series);
        if series.is_empty() {
            return;
        }
        let (budget, given) = match budget {
            Some(b) => (b, "--state-memory"),
            None => (
                crate::cluster::DEFAULT_STATE_MEMORY,
                "default --state-memory",
            ),
        };
        // `off`: no budget to compare with.
        let budget_bytes = budget.parse::<bytesize::ByteSize>().ok();
        println!(
            "  taskmanager RSS (VmRSS every {} s; state budget {given} {budget} each):",
            EVERY.as_secs()
        );
        for s in series.iter() {
            let span = match s.until {
                Some(u) => format!("{}–{u} s, killed", s.from),
                None => format!("from {} s", s.from),
            };
            let Some(&(at, max)) = s.rss.iter().max_by_key(|(_, b)| *b) else {
                println!("    {} (pid {}, {span}): no sample", s.label, s.pid);
                continue;
            };
            let over = budget_bytes
                .map(|b| {
                    let over = mib(max) - mib(b.as_u64());
                    let sign = if over < 0.0 { '−' } else { '+' };
                    format!(" = budget {sign} {:.0} MiB", over.abs())
                })
                .unwrap_or_default();
            let timeline: Vec<String> = s
                .rss
                .iter()
                .step_by(TIMELINE_STEP)
                .map(|(_, b)| format!("{:.0}", mib(*b)))
                .collect();
            println!(
                "    {} (pid {}, {span}): max {:.0} MiB at {} s{over}; every {TIMELINE_STEP} s: {} MiB",
                s.label,
                s.pid,
                mib(max),
                at,
                timeline.join(" ")
            );
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_nothing_of_a_missing_one() {
        let own = resident_bytes(std::process::id()).expect("VmRSS of this process");
        assert!(own > 1024 * 1024, "{own} bytes");
        assert_eq!(resident_bytes(u32::MAX), None);
    }
}
