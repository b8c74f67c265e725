//! Whether a job is catching up with its Kafka sources (a replay from far behind, Flink's
//! "processing backlog") or live, and when it will have caught up. Pure decisions on samples
//! of the sources' read positions and lag; the driver samples, tells the subtasks and
//! stretches the checkpoint interval.
//!
//! A job starts catching up when its lag, at the rate it reads, would take longer than the
//! job's threshold to read, and stops when it would take less than a tenth of it (or the lag
//! is gone), so that a rate wobbling around the threshold does not switch back and forth.

use std::collections::VecDeque;
use std::time::Duration;

/// Samples older than this (ms) leave the rate estimates.
const WINDOW_MS: i64 = 10_000;
/// The span of samples (ms) a decision to start catching up needs.
const MIN_SPAN_MS: i64 = 2_000;
/// Stop when the lag is worth less than the threshold divided by this.
const LEAVE_DIVISOR: u32 = 10;

/// One look at the job's Kafka sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceSample {
    /// When (epoch ms).
    pub at_ms: i64,
    /// Sum over the partitions of the next offset to read.
    pub read: u64,
    /// Records not read yet, over all partitions.
    pub lag: u64,
    /// Number of partitions read (a change restarts the estimates).
    pub partitions: usize,
}

/// What the driver should do after a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Tell the subtasks the job is catching up; stretch the checkpoint interval.
    Started,
    /// Tell the subtasks the job is live again; the normal checkpoint interval.
    Finished,
}

/// A catch-up, under way or over.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Episode {
    /// When it started (epoch ms).
    pub started_ms: i64,
    /// When it ended (epoch ms), if it did.
    pub ended_ms: Option<i64>,
    /// Records behind when it started.
    pub lag_at_start: u64,
    /// Once it ended: the records it read per second on average (none when a restart ended
    /// it).
    pub read_per_second: Option<f64>,
}

/// Where a job stands against its sources.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CatchUpStatus {
    pub catching_up: bool,
    /// Records not read yet.
    pub lag: u64,
    /// Records read per second over the last seconds.
    pub read_per_second: f64,
    /// How fast the lag shrinks (records/s; negative when it grows).
    pub lag_drain_per_second: f64,
    /// While catching up: the expected time until the lag is gone, when it shrinks.
    pub eta_ms: Option<u64>,
    /// The catch-up under way, or the latest one.
    pub episode: Option<Episode>,
}

/// The decisions of one job.
#[derive(Debug, Clone)]
pub struct CatchUp {
    threshold: Duration,
    samples: VecDeque<SourceSample>,
    episode: Option<Episode>,
    /// Where the sources were when the episode started.
    read_at_start: u64,
}

impl CatchUp {
    /// A job that catches up while its lag is worth more than `threshold` of reading.
    pub fn new(threshold: Duration) -> Self {
        Self {
            threshold,
            samples: VecDeque::new(),
            episode: None,
            read_at_start: 0,
        }
    }

    /// Whether a catch-up is under way.
    pub fn catching_up(&self) -> bool {
        self.episode.is_some_and(|e| e.ended_ms.is_none())
    }

    /// A new attempt starts: its subtasks start live and read from restored positions, so the
    /// estimates start over and a catch-up under way ends (a new one starts if still behind).
    pub fn restart(&mut self, at_ms: i64) -> Option<Change> {
        self.samples.clear();
        self.end(at_ms, None)
    }

    /// Ends the episode under way, the sources at `read` (unknown after a restart).
    fn end(&mut self, at_ms: i64, read: Option<u64>) -> Option<Change> {
        match &mut self.episode {
            Some(e) if e.ended_ms.is_none() => {
                e.ended_ms = Some(at_ms);
                let secs = (at_ms - e.started_ms) as f64 / 1000.0;
                e.read_per_second = read
                    .filter(|_| secs > 0.0)
                    .map(|r| r.saturating_sub(self.read_at_start) as f64 / secs);
                Some(Change::Finished)
            }
            _ => None,
        }
    }

    /// Takes a sample; what changed, if anything.
    pub fn observe(&mut self, s: SourceSample) -> Option<Change> {
        let restart = self.samples.back().is_some_and(|last| {
            last.partitions != s.partitions || s.read < last.read || s.at_ms <= last.at_ms
        });
        if restart {
            self.samples.clear();
        }
        self.samples.push_back(s);
        while self
            .samples
            .front()
            .is_some_and(|f| s.at_ms - f.at_ms > WINDOW_MS)
        {
            self.samples.pop_front();
        }
        if s.lag == 0 {
            return self.end(s.at_ms, Some(s.read));
        }
        let status = self.status();
        let worth_ms = match status.read_per_second {
            r if r > 0.0 => s.lag as f64 / r * 1000.0,
            _ => return None,
        };
        let threshold_ms = self.threshold.as_millis() as f64;
        let span = s.at_ms - self.samples.front().map_or(s.at_ms, |f| f.at_ms);
        if self.catching_up() {
            if worth_ms < threshold_ms / f64::from(LEAVE_DIVISOR) {
                return self.end(s.at_ms, Some(s.read));
            }
            None
        } else if span >= MIN_SPAN_MS && worth_ms > threshold_ms {
            self.episode = Some(Episode {
                started_ms: s.at_ms,
                ended_ms: None,
                lag_at_start: s.lag,
                read_per_second: None,
            });
            self.read_at_start = s.read;
            Some(Change::Started)
        } else {
            None
        }
    }

    /// Where the job stands, from the samples so far.
    pub fn status(&self) -> CatchUpStatus {
        let (read_per_second, lag_drain_per_second) =
            match (self.samples.front(), self.samples.back()) {
                (Some(a), Some(b)) if b.at_ms > a.at_ms => {
                    let secs = (b.at_ms - a.at_ms) as f64 / 1000.0;
                    (
                        (b.read - a.read) as f64 / secs,
                        (a.lag as f64 - b.lag as f64) / secs,
                    )
                }
                _ => (0.0, 0.0),
            };
        let lag = self.samples.back().map_or(0, |s| s.lag);
        let catching_up = self.catching_up();
        CatchUpStatus {
            catching_up,
            lag,
            read_per_second,
            lag_drain_per_second,
            eta_ms: (catching_up && lag_drain_per_second > 0.0)
                .then(|| (lag as f64 / lag_drain_per_second * 1000.0) as u64),
            episode: self.episode,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: i64, read: u64, lag: u64) -> SourceSample {
        SourceSample {
            at_ms: at_s * 1000,
            read,
            lag,
            partitions: 2,
        }
    }

    /// A job 30 s threshold reading 1000 records/s from `lag` behind, the topic growing by
    /// `grow` per second: the changes at each second.
    fn replay(lag: u64, grow: u64, secs: i64) -> Vec<(i64, Change)> {
        let mut c = CatchUp::new(Duration::from_secs(30));
        let mut changes = Vec::new();
        for t in 0..secs {
            let read = 1000 * t as u64;
            let lag = (lag + grow * t as u64).saturating_sub(read);
            if let Some(ch) = c.observe(sample(t, read, lag)) {
                changes.push((t, ch));
            }
        }
        changes
    }

    #[test]
    fn a_job_far_behind_catches_up_then_goes_live() {
        // 100 s of records behind, none arriving: starts once two seconds of samples show
        // the rate, ends under 3 s (a tenth of the threshold) left.
        assert_eq!(
            replay(100_000, 0, 120),
            [(2, Change::Started), (98, Change::Finished)]
        );
    }

    #[test]
    fn a_job_a_little_behind_stays_live() {
        assert_eq!(replay(20_000, 0, 60), []);
    }

    #[test]
    fn the_eta_counts_the_records_arriving_meanwhile() {
        let mut c = CatchUp::new(Duration::from_secs(30));
        for t in 0..=10 {
            // Reads 1000/s, 500/s arrive: the lag shrinks by 500/s.
            c.observe(sample(t, 1000 * t as u64, 100_000 - 500 * t as u64));
        }
        let s = c.status();
        assert!(s.catching_up);
        assert_eq!((s.read_per_second, s.lag_drain_per_second), (1000.0, 500.0));
        assert_eq!(s.eta_ms, Some(190_000), "95 000 left at 500/s");
        assert_eq!(s.episode.map(|e| e.lag_at_start), Some(99_000));
    }

    #[test]
    fn a_growing_lag_has_no_eta_and_a_stalled_source_changes_nothing() {
        let mut c = CatchUp::new(Duration::from_secs(30));
        for t in 0..=5 {
            c.observe(sample(t, 1000 * t as u64, 100_000 + 1000 * t as u64));
        }
        let s = c.status();
        assert!(s.catching_up);
        assert_eq!(s.eta_ms, None, "the lag grows");
        // Nothing read for longer than the window: still catching up, not finished.
        for t in 6..30 {
            assert_eq!(c.observe(sample(t, 5000, 200_000)), None);
        }
        assert!(c.catching_up());
        // Before anything is read, a lag alone starts nothing.
        let mut fresh = CatchUp::new(Duration::from_secs(1));
        for t in 0..10 {
            assert_eq!(fresh.observe(sample(t, 0, 1_000_000)), None);
        }
    }

    #[test]
    fn a_lag_gone_ends_at_once_and_a_restart_ends_and_starts_over() {
        let mut c = CatchUp::new(Duration::from_secs(30));
        for t in 0..3 {
            c.observe(sample(t, 1000 * t as u64, 100_000));
        }
        assert!(c.catching_up());
        assert_eq!(c.observe(sample(3, 3000, 0)), Some(Change::Finished));
        assert_eq!(c.observe(sample(4, 3000, 0)), None, "finished once");
        let ended = c.status().episode.map(|e| (e.ended_ms, e.read_per_second));
        assert_eq!(
            ended,
            Some((Some(3000), Some(1000.0))),
            "2000 → 3000 in a second"
        );

        for t in 5..8 {
            c.observe(sample(t, 1000 * t as u64, 100_000));
        }
        assert!(c.catching_up(), "a second catch-up");
        assert_eq!(c.restart(8000), Some(Change::Finished));
        let e = c.status().episode.unwrap();
        assert_eq!((e.ended_ms, e.read_per_second), (Some(8000), None));
        assert_eq!(c.restart(8000), None);
        // The new attempt reads from a checkpoint's positions (lower): new estimates, and
        // the first sample alone starts nothing.
        assert_eq!(c.observe(sample(9, 2000, 100_000)), None);
        assert_eq!(
            c.observe(sample(10, 3000, 99_000)),
            None,
            "one second of span"
        );
        assert_eq!(c.observe(sample(11, 4000, 98_000)), Some(Change::Started));
    }

    #[test]
    fn new_partitions_restart_the_estimates() {
        let mut c = CatchUp::new(Duration::from_secs(30));
        c.observe(sample(0, 0, 10_000));
        c.observe(sample(1, 1000, 9_000));
        // A partition added with a million records: its position would look like a read.
        let mut s = sample(2, 1_002_000, 1_008_000);
        s.partitions = 3;
        assert_eq!(c.observe(s), None);
        assert_eq!(c.status().read_per_second, 0.0);
    }
}
