//! The last hour of each running job's metrics as time series, kept by the jobmanager in
//! memory (no external database) for the charts of the web UI and `GET
//! /api/v1/jobs/{id}/series`. Every [`SAMPLE_INTERVAL`] the sampler reads each running job's
//! detail (rates, Kafka lag, watermarks), its newest completed checkpoint and the latency of
//! the rows its sinks wrote since the previous sample, and appends a point to every line of
//! the series of [`series::SERIES`].
//!
//! Memory is bounded by [`BOUNDS`]: at most 32 jobs × (64 lines + their times) × 720 points
//! (an hour every 5 s) × 8 bytes ≈ 12 MiB, plus one latency histogram (about 16 KiB) per job.

mod series;
mod store;

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use kappa_runtime::latency::LatencyHistogram;
use serde::{Deserialize, Serialize};

use crate::Inner;
use crate::checkpoint::CheckpointStatus;
use crate::job::{JobEntry, now_ms};
use crate::latency::LatencyView;
use series::{Lines, Reading, SERIES};
use store::{Bounds, LineKey, Store};

/// How often a point is taken.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// What the store keeps: an hour of points every [`SAMPLE_INTERVAL`].
pub const BOUNDS: Bounds = Bounds {
    retention: Duration::from_secs(3600),
    points: 720,
    jobs: 32,
    lines: 64,
};

/// The time series of every job, and what the next sample needs of the previous one.
#[derive(Debug)]
pub struct TimeSeries {
    store: Store,
    /// Per job, its attempt and the latency histogram of its previous sample (cumulative).
    latency: HashMap<String, (u32, LatencyHistogram)>,
}

impl Default for TimeSeries {
    fn default() -> Self {
        Self::new(BOUNDS)
    }
}

impl TimeSeries {
    pub fn new(bounds: Bounds) -> Self {
        Self {
            store: Store::new(bounds),
            latency: HashMap::new(),
        }
    }

    /// Takes a sample of `job` at `now` (epoch ms) if an attempt of it runs.
    pub fn sample(&mut self, job: &JobEntry, now: i64) {
        let (attempt, total) = {
            let s = job.status.lock();
            let Some(run) = s.attempt.as_ref().filter(|r| r.live) else {
                return;
            };
            (run.number, crate::latency::merged(&run.metrics))
        };
        let recent = since_previous(self.latency.get(&job.id), attempt, &total);
        self.latency.insert(job.id.clone(), (attempt, total));
        let detail = job.detail();
        let history = job.checkpoint_history();
        let reading = Reading {
            now_ms: now,
            detail: &detail,
            latency: LatencyView::of(&recent),
            checkpoint: history
                .iter()
                .find(|c| c.status == CheckpointStatus::Completed),
        };
        self.store.push(&job.id, now, read(&reading));
    }

    /// Forgets jobs not sampled within the retention.
    pub fn forget_old(&mut self, now: i64) {
        self.store.forget_older_than_retention(now);
        let store = &self.store;
        self.latency.retain(|id, _| store.job(id).is_some());
    }

    /// The series of `job`: every series, with the lines it has points for.
    pub fn view(&self, job: &str) -> JobSeries {
        let bounds = self.store.bounds();
        let points = self.store.job(job);
        JobSeries {
            interval_ms: SAMPLE_INTERVAL.as_millis() as u64,
            retention_ms: bounds.retention.as_millis() as u64,
            times_ms: points
                .map(|p| p.times.iter().copied().collect())
                .unwrap_or_default(),
            series: SERIES
                .iter()
                .enumerate()
                .map(|(i, s)| SeriesView {
                    name: s.name.to_string(),
                    title: s.title.to_string(),
                    unit: s.unit.to_string(),
                    lines: points
                        .into_iter()
                        .flat_map(|p| p.lines.range((i, String::new())..(i + 1, String::new())))
                        .map(|((_, label), values)| LineView {
                            label: label.clone(),
                            values: values.iter().map(|v| (!v.is_nan()).then_some(*v)).collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// The latency of the rows written since the previous sample, from the cumulative histogram
/// of `attempt` now and the one of the previous sample (all of it for a new attempt).
fn since_previous(
    previous: Option<&(u32, LatencyHistogram)>,
    attempt: u32,
    total: &LatencyHistogram,
) -> LatencyHistogram {
    match previous {
        Some((a, before)) if *a == attempt => total.since(before),
        _ => total.clone(),
    }
}

/// The value of every line of every series in `r` (finite values only).
fn read(r: &Reading<'_>) -> Vec<(LineKey, f64)> {
    let mut out = Vec::new();
    let names = &r.detail.vertices;
    for (i, s) in SERIES.iter().enumerate() {
        match s.lines {
            Lines::PerVertex(f) => {
                for v in names {
                    // Vertices of the same name are told apart by their id.
                    let label = if names.iter().filter(|o| o.name == v.name).count() > 1 {
                        format!("{} ({})", v.name, v.id)
                    } else {
                        v.name.clone()
                    };
                    out.extend(f(v, r).map(|x| ((i, label), x)));
                }
            }
            Lines::Job(f) => {
                out.extend(f(r).into_iter().map(|(l, x)| ((i, l.to_string()), x)));
            }
        }
    }
    out.retain(|(_, x)| x.is_finite());
    out
}

/// Samples every running job each [`SAMPLE_INTERVAL`] while the jobmanager lives.
pub(crate) async fn sample_jobs(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let jobs: Vec<_> = inner.jobs.read().values().cloned().collect();
        let now = now_ms();
        let mut series = inner.series.lock();
        for j in &jobs {
            series.sample(j, now);
        }
        series.forget_old(now);
    }
}

/// A job's time series (`GET /api/v1/jobs/{id}/series`): one point per line every
/// `interval_ms`, for the last `retention_ms`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobSeries {
    pub interval_ms: u64,
    pub retention_ms: u64,
    /// When each point was taken (epoch ms), oldest first.
    pub times_ms: Vec<i64>,
    /// Every series (in chart order), also those without lines yet.
    pub series: Vec<SeriesView>,
}

/// One chart: lines of one unit.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SeriesView {
    /// records_in, records_out, kafka_lag, watermark_delay, latency, checkpoint_duration,
    /// checkpoint_size, …
    pub name: String,
    pub title: String,
    /// records/s, records, ms or bytes.
    pub unit: String,
    pub lines: Vec<LineView>,
}

/// One line: a vertex's, or a named figure of the job (p50, p99, max, full, …).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LineView {
    pub label: String,
    /// One value per time of `times_ms`; null where the line had none.
    pub values: Vec<Option<f64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(values: &[(u64, u64)]) -> LatencyHistogram {
        LatencyHistogram::from_buckets(values.iter().copied())
    }

    #[test]
    fn a_point_s_latency_covers_the_rows_written_since_the_previous_point() {
        let first = of(&[(2_000, 10)]);
        assert_eq!(
            since_previous(None, 1, &first),
            first,
            "the first point: all"
        );
        let second = of(&[(2_000, 10), (40_000, 5)]);
        let recent = since_previous(Some(&(1, first.clone())), 1, &second);
        assert_eq!(recent.rows(), 5);
        assert!(
            recent.quantile(0.5).unwrap() >= 39_000,
            "only the new, slower rows"
        );
        // A new attempt counts from zero again: its whole histogram.
        let restarted = of(&[(1_000, 3)]);
        assert_eq!(since_previous(Some(&(1, second)), 2, &restarted), restarted);
        assert!(since_previous(Some(&(2, restarted.clone())), 2, &restarted).is_empty());
    }

    fn vertex(
        id: u32,
        name: &str,
        rate: f64,
        watermark: i64,
        lag: Option<i64>,
    ) -> serde_json::Value {
        let partitions: Vec<_> = lag
            .map(|l| serde_json::json!({"partition": 0, "position": 5, "high_watermark": 5 + l, "lag": l}))
            .into_iter()
            .collect();
        serde_json::json!({
            "id": id, "name": name, "operators": [], "parallelism": 1,
            "records_in": 0, "records_out": 0, "records_in_per_second": rate,
            "records_out_per_second": rate, "backpressure_ratio": 0.0,
            "late_records_dropped": 0, "bad_records_skipped": 0, "bad_records_dead_lettered": 0,
            "watermark": watermark,
            "subtasks": [{
                "index": 0, "records_in": 0, "records_out": 0, "late_records_dropped": 0,
                "bad_records_skipped": 0, "bad_records_dead_lettered": 0, "queued": 0,
                "stalled_splits": 0, "watermark": watermark, "records_in_per_second": rate,
                "records_out_per_second": rate, "backpressure_ratio": 0.0, "splits": null,
                "taskmanager": null, "partitions": partitions
            }]
        })
    }

    #[test]
    fn a_sample_reads_a_line_per_vertex_and_the_job_s_lines() {
        let detail: crate::job::JobDetail = serde_json::from_value(serde_json::json!({
            "id": "j", "name": "n", "state": "RUNNING", "start": "earliest", "parallelism": 1,
            "submitted_at_ms": 0, "ended_at_ms": null, "error": null, "file_name": "job.toml",
            "reason": null, "max_parallelism": 128, "checkpoint_interval_ms": 1000,
            "attempts": [], "latency": null, "edges": [], "warnings": [],
            "vertices": [
                vertex(0, "source", 100.0, 9_000, Some(7)),
                vertex(1, "window", 50.0, i64::MAX, None),
                vertex(2, "window", 25.0, 8_000, None),
            ],
        }))
        .unwrap();
        let reading = Reading {
            now_ms: 10_000,
            detail: &detail,
            latency: Some(LatencyView {
                rows: 3,
                p50_ms: 1.0,
                p99_ms: 2.0,
                max_ms: 3.0,
            }),
            checkpoint: None,
        };
        let values: std::collections::BTreeMap<(&str, String), f64> = read(&reading)
            .into_iter()
            .map(|((i, label), v)| ((SERIES[i].name, label), v))
            .collect();
        let at = |series: &str, label: &str| values.get(&(series, label.to_string())).copied();
        assert_eq!(at("records_in", "source"), Some(100.0));
        assert_eq!(
            at("records_in", "window (1)"),
            Some(50.0),
            "same names told apart"
        );
        assert_eq!(at("records_in", "window (2)"), Some(25.0));
        assert_eq!(at("kafka_lag", "source"), Some(7.0));
        assert_eq!(
            at("kafka_lag", "window (1)"),
            None,
            "only where partitions are read"
        );
        assert_eq!(at("watermark_delay", "source"), Some(1_000.0));
        assert_eq!(
            at("watermark_delay", "window (1)"),
            None,
            "at the end of input"
        );
        assert_eq!(at("latency", "p99"), Some(2.0));
        assert_eq!(
            at("checkpoint_duration", "duration"),
            None,
            "no checkpoint yet"
        );
    }
}
