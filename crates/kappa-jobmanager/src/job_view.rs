//! The JSON views of a job the REST API returns: summary, detail with its vertices and
//! subtasks, and the warnings read from them.

use serde::{Deserialize, Serialize};

use crate::job::{AttemptInfo, JobState};
use crate::latency::LatencyView;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobSummary {
    pub id: String,
    pub name: String,
    pub state: JobState,
    pub start: String,
    pub parallelism: u32,
    pub submitted_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    /// The root cause of the latest failure.
    pub error: Option<String>,
}

/// A warning per source subtask whose silent splits hold the watermark back.
pub(crate) fn stalled_watermark_warnings(vertices: &[VertexView]) -> Vec<String> {
    let mut out = Vec::new();
    for v in vertices {
        for s in v.subtasks.iter().filter(|s| s.stalled_splits > 0) {
            out.push(format!(
                "`{}` subtask {}: {} of its splits ({}) read nothing for over {} s while others read: they hold the watermark back, so windows do not fire and state grows. Set `idle_timeout` in the source's event_time if they may stay empty.",
                v.name,
                s.index,
                s.stalled_splits,
                s.splits.as_deref().unwrap_or("?"),
                kappa_runtime::operators::STALLED_AFTER.as_secs()
            ));
        }
    }
    out
}

/// The keyed state of a subtask (or, summed, of a vertex).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateView {
    /// Groups (a key's window, partition or rows) in memory.
    pub keys_in_memory: u64,
    /// Their estimated bytes.
    pub bytes_in_memory: u64,
    /// Bytes of spilled state in the taskmanager's local RocksDB (SST files on disk and
    /// memtables not flushed yet).
    pub bytes_spilled: u64,
    /// Of the lookups of windows since the subtasks started, the share answered from
    /// memory (not read back from disk); absent before the first.
    pub cache_hit_rate: Option<f64>,
    /// Lookups answered from memory, groups read back from disk, groups evicted.
    pub cache_hits: u64,
    pub cache_loads: u64,
    pub evictions: u64,
}

impl StateView {
    pub fn of(f: kappa_runtime::metrics::StateFigures) -> Self {
        let lookups = f.cache_hits + f.cache_loads;
        Self {
            keys_in_memory: f.keys_in_memory,
            bytes_in_memory: f.bytes_in_memory,
            bytes_spilled: f.bytes_spilled,
            cache_hit_rate: (lookups > 0).then(|| f.cache_hits as f64 / lookups as f64),
            cache_hits: f.cache_hits,
            cache_loads: f.cache_loads,
            evictions: f.evictions,
        }
    }

    /// The state of a vertex: its subtasks' added up.
    pub fn sum<'a>(parts: impl Iterator<Item = &'a StateView>) -> Self {
        let mut f = kappa_runtime::metrics::StateFigures::default();
        for p in parts {
            f.keys_in_memory += p.keys_in_memory;
            f.bytes_in_memory += p.bytes_in_memory;
            f.bytes_spilled += p.bytes_spilled;
            f.cache_hits += p.cache_hits;
            f.cache_loads += p.cache_loads;
            f.evictions += p.evictions;
        }
        Self::of(f)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubtaskView {
    pub index: u32,
    pub records_in: u64,
    pub records_out: u64,
    pub late_records_dropped: u64,
    /// Keyed subtasks: their state.
    pub state: Option<StateView>,
    pub bad_records_skipped: u64,
    pub bad_records_dead_lettered: u64,
    /// Elements waiting in the input channel.
    pub queued: u64,
    /// Source subtasks: splits that read nothing for 30 s while others read, holding the
    /// watermark back (no idle timeout lets them go).
    pub stalled_splits: u64,
    pub watermark: Option<i64>,
    #[serde(flatten)]
    pub rates: crate::rates::SubtaskRates,
    /// The Kafka partitions or files a source subtask reads.
    pub splits: Option<String>,
    /// The taskmanager it runs on.
    pub taskmanager: Option<String>,
    /// Source subtasks: progress and lag per Kafka partition.
    pub partitions: Vec<PartitionView>,
}

/// Where a source subtask is in one Kafka partition.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartitionView {
    pub partition: i32,
    /// The next offset it will read.
    pub position: i64,
    pub high_watermark: Option<i64>,
    /// Records not yet read.
    pub lag: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VertexView {
    pub id: u32,
    pub name: String,
    pub operators: Vec<String>,
    pub parallelism: u32,
    pub records_in: u64,
    pub records_out: u64,
    pub records_in_per_second: f64,
    pub records_out_per_second: f64,
    pub backpressure_ratio: f64,
    pub late_records_dropped: u64,
    pub bad_records_skipped: u64,
    pub bad_records_dead_lettered: u64,
    /// Vertices with keyed operators: their state.
    pub state: Option<StateView>,
    pub watermark: Option<i64>,
    pub subtasks: Vec<SubtaskView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub summary: JobSummary,
    pub file_name: String,
    pub reason: Option<String>,
    pub max_parallelism: u32,
    /// How often the job is checkpointed (its own interval or the cluster's default); absent
    /// when it takes no periodic checkpoints.
    pub checkpoint_interval_ms: Option<u64>,
    pub attempts: Vec<AttemptInfo>,
    /// Event-to-sink latency of the rows the latest attempt wrote; absent before its first.
    pub latency: Option<LatencyView>,
    /// Whether the job catches up with its Kafka sources, and when it will have; absent for
    /// a job without Kafka sources or with `[catch_up] enabled = false`.
    pub catch_up: Option<crate::catch_up::CatchUpStatus>,
    pub vertices: Vec<VertexView>,
    pub edges: Vec<kappa_job::graph::Edge>,
    /// What may go wrong while the job runs, e.g. a stalled watermark.
    pub warnings: Vec<String>,
}
