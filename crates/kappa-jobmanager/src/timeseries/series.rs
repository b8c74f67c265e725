//! The series the charts show, and how each is read from a sample of a job. Adding a series is
//! one line in [`SERIES`]: a value per vertex ([`Series::vertex`], read from the job detail's
//! vertex view) or named lines of the whole job ([`Series::job`]).

use crate::checkpoint::CheckpointStats;
use crate::job::{JobDetail, VertexView};
use crate::latency::LatencyView;

/// What one sample of a job reads.
pub struct Reading<'a> {
    /// When the sample is taken (epoch ms).
    pub now_ms: i64,
    pub detail: &'a JobDetail,
    /// Latency of the rows the job's sinks wrote since the previous sample.
    pub latency: Option<LatencyView>,
    /// The job's newest completed checkpoint.
    pub checkpoint: Option<&'a CheckpointStats>,
}

/// How the lines of a series are read.
pub enum Lines {
    /// A line per vertex, labelled with its name; a vertex without a value has no point.
    PerVertex(fn(&VertexView, &Reading<'_>) -> Option<f64>),
    /// Lines of the whole job, by label.
    Job(fn(&Reading<'_>) -> Vec<(&'static str, f64)>),
}

/// One chart: its lines share a unit.
pub struct Series {
    /// A stable identifier (REST, tests).
    pub name: &'static str,
    pub title: &'static str,
    pub unit: &'static str,
    pub lines: Lines,
}

impl Series {
    const fn vertex(
        name: &'static str,
        title: &'static str,
        unit: &'static str,
        read: fn(&VertexView, &Reading<'_>) -> Option<f64>,
    ) -> Self {
        Self {
            name,
            title,
            unit,
            lines: Lines::PerVertex(read),
        }
    }

    const fn job(
        name: &'static str,
        title: &'static str,
        unit: &'static str,
        read: fn(&Reading<'_>) -> Vec<(&'static str, f64)>,
    ) -> Self {
        Self {
            name,
            title,
            unit,
            lines: Lines::Job(read),
        }
    }
}

/// Every series, in the order the charts show them.
pub const SERIES: &[Series] = &[
    Series::vertex("records_in", "Records in", "records/s", |v, _| {
        Some(v.records_in_per_second)
    }),
    Series::vertex("records_out", "Records out", "records/s", |v, _| {
        Some(v.records_out_per_second)
    }),
    Series::vertex("kafka_lag", "Kafka lag", "records", kafka_lag),
    Series::vertex("watermark_delay", "Watermark delay", "ms", watermark_delay),
    Series::job("latency", "Event-to-sink latency", "ms", latency),
    Series::job(
        "checkpoint_duration",
        "Checkpoint duration",
        "ms",
        checkpoint_duration,
    ),
    Series::job(
        "checkpoint_size",
        "Checkpoint size",
        "bytes",
        checkpoint_size,
    ),
    Series::vertex("state_memory", "State in memory", "bytes", |v, _| {
        v.state.map(|s| s.bytes_in_memory as f64)
    }),
    Series::vertex(
        "state_spilled",
        "State spilled to RocksDB",
        "bytes",
        |v, _| v.state.map(|s| s.bytes_spilled as f64),
    ),
    Series::vertex("state_cache_hit_rate", "State cache hits", "%", |v, _| {
        v.state.and_then(|s| s.cache_hit_rate).map(|r| 100.0 * r)
    }),
];

/// Records of the vertex's Kafka partitions not read yet; none for a vertex reading none.
fn kafka_lag(v: &VertexView, _: &Reading<'_>) -> Option<f64> {
    let lags: Vec<i64> = v
        .subtasks
        .iter()
        .flat_map(|s| s.partitions.iter().filter_map(|p| p.lag))
        .collect();
    (!lags.is_empty()).then(|| lags.iter().sum::<i64>() as f64)
}

/// How far the vertex's event-time watermark is behind the wall clock (none before its first
/// watermark and after the end of its input).
fn watermark_delay(v: &VertexView, r: &Reading<'_>) -> Option<f64> {
    v.watermark
        .filter(|&w| w != i64::MAX)
        .map(|w| r.now_ms.saturating_sub(w) as f64)
}

fn latency(r: &Reading<'_>) -> Vec<(&'static str, f64)> {
    r.latency.map_or_else(Vec::new, |l| {
        vec![("p50", l.p50_ms), ("p99", l.p99_ms), ("max", l.max_ms)]
    })
}

fn checkpoint_duration(r: &Reading<'_>) -> Vec<(&'static str, f64)> {
    r.checkpoint
        .and_then(|c| c.duration_ms)
        .map_or_else(Vec::new, |d| vec![("duration", d as f64)])
}

fn checkpoint_size(r: &Reading<'_>) -> Vec<(&'static str, f64)> {
    r.checkpoint.map_or_else(Vec::new, |c| {
        vec![
            ("full", c.full_bytes as f64),
            ("uploaded", c.incremental_bytes as f64),
        ]
    })
}
