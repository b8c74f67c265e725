//! The bounded store of the time series: per job, the times of its samples and one column of
//! values per line, all of the same length, the oldest dropped past the retention.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

/// How much the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Points older than this (before the job's newest) are dropped.
    pub retention: Duration,
    /// The most points a line keeps.
    pub points: usize,
    /// The most jobs kept; past it the job sampled least recently goes.
    pub jobs: usize,
    /// The most lines a job keeps; values of further lines are left out.
    pub lines: usize,
}

impl Bounds {
    /// The most bytes the values and times can take: 8 bytes per point.
    pub fn max_bytes(&self) -> usize {
        self.jobs * (self.lines + 1) * self.points * 8
    }
}

/// A line: the series it belongs to (its index in the series table) and its label.
pub type LineKey = (usize, String);

/// The points of one job.
#[derive(Debug, Default)]
pub struct JobPoints {
    /// Sample times in epoch ms, oldest first.
    pub times: VecDeque<i64>,
    /// Per line, one value per time (NaN where the line had none).
    pub lines: BTreeMap<LineKey, VecDeque<f64>>,
}

impl JobPoints {
    /// Appends a sample taken at `t`; lines absent from it get NaN.
    fn push(&mut self, t: i64, values: Vec<(LineKey, f64)>, max_lines: usize) {
        self.times.push_back(t);
        let len = self.times.len();
        for col in self.lines.values_mut() {
            col.push_back(f64::NAN);
        }
        for (key, v) in values {
            if let Some(col) = self.lines.get_mut(&key) {
                if let Some(last) = col.back_mut() {
                    *last = v;
                }
            } else if self.lines.len() < max_lines {
                let mut col: VecDeque<f64> = std::iter::repeat_n(f64::NAN, len - 1).collect();
                col.push_back(v);
                self.lines.insert(key, col);
            }
        }
    }

    /// Drops the points past the bounds, and the lines left without a value.
    fn evict(&mut self, bounds: &Bounds) {
        let newest = self.times.back().copied().unwrap_or(i64::MIN);
        let oldest_kept = newest.saturating_sub(bounds.retention.as_millis() as i64);
        while self
            .times
            .front()
            .is_some_and(|&t| t < oldest_kept || self.times.len() > bounds.points)
        {
            self.times.pop_front();
            for col in self.lines.values_mut() {
                col.pop_front();
            }
        }
        self.lines.retain(|_, col| col.iter().any(|v| !v.is_nan()));
    }
}

/// Every job's points.
#[derive(Debug)]
pub struct Store {
    bounds: Bounds,
    jobs: HashMap<String, JobPoints>,
}

impl Store {
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            jobs: HashMap::new(),
        }
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Records the values of `job`'s lines at `t` (epoch ms, not before its previous sample).
    pub fn push(&mut self, job: &str, t: i64, values: Vec<(LineKey, f64)>) {
        if !self.jobs.contains_key(job) && self.jobs.len() >= self.bounds.jobs {
            let stalest = self
                .jobs
                .iter()
                .min_by_key(|(_, p)| p.times.back().copied().unwrap_or(i64::MIN))
                .map(|(id, _)| id.clone());
            if let Some(id) = stalest {
                self.jobs.remove(&id);
            }
        }
        let points = self.jobs.entry(job.to_string()).or_default();
        if points.times.back().is_some_and(|&last| t < last) {
            return;
        }
        points.push(t, values, self.bounds.lines);
        points.evict(&self.bounds);
    }

    /// Drops the jobs whose newest point is older than the retention before `now`.
    pub fn forget_older_than_retention(&mut self, now: i64) {
        let oldest_kept = now.saturating_sub(self.bounds.retention.as_millis() as i64);
        self.jobs
            .retain(|_, p| p.times.back().is_some_and(|&t| t >= oldest_kept));
    }

    pub fn job(&self, job: &str) -> Option<&JobPoints> {
        self.jobs.get(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            retention: Duration::from_secs(60),
            points: 5,
            jobs: 2,
            lines: 3,
        }
    }

    fn line(series: usize, label: &str) -> LineKey {
        (series, label.to_string())
    }

    fn values(p: &JobPoints, key: &LineKey) -> Vec<Option<f64>> {
        p.lines[key]
            .iter()
            .map(|v| (!v.is_nan()).then_some(*v))
            .collect()
    }

    #[test]
    fn lines_stay_aligned_with_the_times_when_they_come_and_go() {
        let mut s = Store::new(bounds());
        s.push("j", 1_000, vec![(line(0, "a"), 1.0)]);
        s.push("j", 2_000, vec![(line(0, "a"), 2.0), (line(1, "b"), 20.0)]);
        s.push("j", 3_000, vec![(line(1, "b"), 30.0)]);
        let p = s.job("j").unwrap();
        assert_eq!(p.times, [1_000, 2_000, 3_000]);
        assert_eq!(values(p, &line(0, "a")), [Some(1.0), Some(2.0), None]);
        assert_eq!(values(p, &line(1, "b")), [None, Some(20.0), Some(30.0)]);
        // A sample from before the newest one is ignored.
        s.push("j", 2_500, vec![(line(0, "a"), 9.0)]);
        assert_eq!(s.job("j").unwrap().times.len(), 3);
    }

    #[test]
    fn a_line_keeps_at_most_its_points_and_nothing_older_than_the_retention() {
        let mut s = Store::new(bounds());
        for i in 0..8 {
            s.push("j", i * 1_000, vec![(line(0, "a"), i as f64)]);
        }
        let p = s.job("j").unwrap();
        assert_eq!(p.times, [3_000, 4_000, 5_000, 6_000, 7_000], "the newest 5");
        assert_eq!(values(p, &line(0, "a"))[0], Some(3.0));
        // A sample long after: everything before the retention goes, and a line whose
        // values all went with it too.
        s.push("j", 100_000, vec![(line(1, "b"), 1.0)]);
        let p = s.job("j").unwrap();
        assert_eq!(p.times, [100_000]);
        assert!(!p.lines.contains_key(&line(0, "a")));
        assert_eq!(values(p, &line(1, "b")), [Some(1.0)]);
    }

    #[test]
    fn jobs_and_lines_are_bounded() {
        let mut s = Store::new(bounds());
        let many: Vec<_> = (0..10).map(|i| (line(0, &i.to_string()), 1.0)).collect();
        s.push("a", 1_000, many);
        assert_eq!(s.job("a").unwrap().lines.len(), 3, "the first 3 lines");
        s.push("b", 2_000, vec![(line(0, "x"), 1.0)]);
        s.push("a", 3_000, vec![(line(0, "0"), 1.0)]);
        // A third job pushes out the one sampled least recently (b).
        s.push("c", 4_000, vec![(line(0, "x"), 1.0)]);
        assert!(s.job("b").is_none());
        assert!(s.job("a").is_some() && s.job("c").is_some());
        // Jobs not sampled within the retention are forgotten.
        s.forget_older_than_retention(3_000 + 60_001);
        assert!(s.job("a").is_none());
        assert!(s.job("c").is_some());
        assert_eq!(bounds().max_bytes(), 2 * 4 * 5 * 8);
    }
}
