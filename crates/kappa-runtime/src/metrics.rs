//! Live counters of one subtask, written by the task thread and read by the jobmanager
//! (REST API, Prometheus) without locks (but the latency histogram of sinks).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use parking_lot::Mutex;

use crate::latency::{LatencyHistogram, Origin};

/// The reference point of wait timestamps in this process.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn since_epoch() -> u64 {
    EPOCH.elapsed().as_nanos() as u64
}

/// Counters of one subtask; all monotonic except the gauges `watermark` and `queued`.
#[derive(Debug)]
pub struct SubtaskMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    /// Current event-time watermark in epoch ms; i64::MIN before the first one.
    pub watermark: AtomicI64,
    /// Nanoseconds spent waiting for room downstream (backpressure), waits that ended.
    pub backpressured_ns: AtomicU64,
    /// When the wait going on now started (nanoseconds since [`EPOCH`]), or 0.
    pub waiting_since_ns: AtomicU64,
    /// Records that arrived after their windows closed (beyond allowed lateness), dropped.
    pub late_dropped: AtomicU64,
    /// Records that could not be decoded and were skipped (on_error = "skip").
    pub skipped: AtomicU64,
    /// Records written to the dead-letter topic (on_error = "dead-letter").
    pub dead_lettered: AtomicU64,
    /// Elements waiting in this subtask's input channel.
    pub queued: AtomicU64,
    /// Source subtasks: splits that read nothing for a while and hold the watermark back.
    pub stalled_splits: AtomicU64,
    /// Source subtasks: where they are in each Kafka partition they read.
    pub partitions: Mutex<Vec<PartitionProgress>>,
    /// When what the subtask processes now entered the engine (µs since the epoch, 0 when
    /// unknown): set by the task loop as it takes an element (a source when it reads), read by
    /// the chain for what it sends on and by a sink for its latency. See [`crate::latency`].
    pub origin: AtomicI64,
    /// Sink subtasks: latency of the rows written so far.
    pub latency: Mutex<LatencyHistogram>,
}

/// Progress of a source subtask in one Kafka partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionProgress {
    pub partition: i32,
    /// The next offset it will read.
    pub position: i64,
    /// The partition's high watermark as last seen by the consumer.
    pub high_watermark: Option<i64>,
}

impl PartitionProgress {
    /// Records not yet read, when the high watermark is known.
    pub fn lag(&self) -> Option<i64> {
        self.high_watermark.map(|h| (h - self.position).max(0))
    }
}

impl Default for SubtaskMetrics {
    fn default() -> Self {
        Self {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            backpressured_ns: AtomicU64::new(0),
            waiting_since_ns: AtomicU64::new(0),
            late_dropped: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            stalled_splits: AtomicU64::new(0),
            partitions: Mutex::new(Vec::new()),
            origin: AtomicI64::new(0),
            latency: Mutex::new(LatencyHistogram::new()),
        }
    }
}

impl SubtaskMetrics {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// A wait for room downstream begins.
    pub fn wait_started(&self) {
        self.waiting_since_ns
            .store(since_epoch().max(1), Ordering::Relaxed);
    }

    /// The wait that began with [`Self::wait_started`] is over.
    pub fn wait_ended(&self) {
        let since = self.waiting_since_ns.swap(0, Ordering::Relaxed);
        if since > 0 {
            self.backpressured_ns
                .fetch_add(since_epoch().saturating_sub(since), Ordering::Relaxed);
        }
    }

    /// Time spent waiting for room downstream so far, including a wait going on now.
    pub fn backpressured_total_ns(&self) -> u64 {
        let since = self.waiting_since_ns.load(Ordering::Relaxed);
        let ongoing = if since > 0 {
            since_epoch().saturating_sub(since)
        } else {
            0
        };
        Self::get(&self.backpressured_ns) + ongoing
    }

    pub fn watermark(&self) -> Option<i64> {
        let w = self.watermark.load(Ordering::Relaxed);
        (w != i64::MIN).then_some(w)
    }

    /// What the subtask processes from now on entered the engine at `origin`.
    pub fn set_origin(&self, origin: Origin) {
        self.origin.store(origin.0, Ordering::Relaxed);
    }

    /// When what the subtask processes now entered the engine.
    pub fn origin(&self) -> Origin {
        Origin(self.origin.load(Ordering::Relaxed))
    }
}

/// The metrics of every subtask of one vertex, by subtask index.
#[derive(Debug, Clone)]
pub struct VertexMetrics {
    pub vertex: u32,
    pub name: String,
    pub subtasks: Vec<Arc<SubtaskMetrics>>,
}

impl VertexMetrics {
    pub fn new(vertex: u32, name: &str, parallelism: u32) -> Self {
        Self {
            vertex,
            name: name.to_string(),
            subtasks: (0..parallelism).map(|_| Arc::default()).collect(),
        }
    }

    /// Sum of one counter over all subtasks.
    pub fn sum(&self, f: impl Fn(&SubtaskMetrics) -> &AtomicU64) -> u64 {
        self.subtasks
            .iter()
            .map(|s| SubtaskMetrics::get(f(s)))
            .sum()
    }

    /// The vertex watermark: the minimum over its subtasks, if all have one.
    pub fn watermark(&self) -> Option<i64> {
        self.subtasks
            .iter()
            .map(|s| s.watermark())
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }
}
