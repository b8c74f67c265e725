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
    /// Keyed subtasks: their state.
    pub state: StateMetrics,
}

/// The figures of one keyed operator's state, as in [`StateMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateFigures {
    pub keys_in_memory: u64,
    pub bytes_in_memory: u64,
    pub bytes_spilled: u64,
    pub cache_hits: u64,
    pub cache_loads: u64,
    pub evictions: u64,
}

impl StateFigures {
    fn fields(&self) -> [u64; 6] {
        [
            self.keys_in_memory,
            self.bytes_in_memory,
            self.bytes_spilled,
            self.cache_hits,
            self.cache_loads,
            self.evictions,
        ]
    }
}

/// What the keyed state of a subtask holds (gauges) and how its cache did (counters since the
/// subtask started); each keyed operator adds its part (see [`StateMetrics::report`]).
#[derive(Debug, Default)]
pub struct StateMetrics {
    /// Groups (a key's window, partition or rows) held in memory.
    pub keys_in_memory: AtomicU64,
    /// Estimated bytes they take.
    pub bytes_in_memory: AtomicU64,
    /// Bytes of spilled state in the local RocksDB (its SST files and memtables).
    pub bytes_spilled: AtomicU64,
    /// Lookups answered from memory.
    pub cache_hits: AtomicU64,
    /// Groups read back from disk.
    pub cache_loads: AtomicU64,
    /// Groups evicted to disk.
    pub evictions: AtomicU64,
}

impl StateMetrics {
    fn atomics(&self) -> [&AtomicU64; 6] {
        [
            &self.keys_in_memory,
            &self.bytes_in_memory,
            &self.bytes_spilled,
            &self.cache_hits,
            &self.cache_loads,
            &self.evictions,
        ]
    }

    /// One operator's figures went from `before` to `now`: adds the differences, so that
    /// several keyed operators of a chain add up.
    pub fn report(&self, before: &StateFigures, now: &StateFigures) {
        for ((a, b), n) in self
            .atomics()
            .into_iter()
            .zip(before.fields())
            .zip(now.fields())
        {
            a.fetch_add(n.wrapping_sub(b), Ordering::Relaxed);
        }
    }

    /// Takes the figures a subtask reported (a copy kept elsewhere): the sizes as they are,
    /// the counters never back (a report may be overtaken by a later one).
    pub fn set(&self, f: &StateFigures) {
        let [keys, bytes, disk, hits, loads, evictions] = self.atomics();
        for (a, v) in [
            (keys, f.keys_in_memory),
            (bytes, f.bytes_in_memory),
            (disk, f.bytes_spilled),
        ] {
            a.store(v, Ordering::Relaxed);
        }
        for (a, v) in [
            (hits, f.cache_hits),
            (loads, f.cache_loads),
            (evictions, f.evictions),
        ] {
            a.fetch_max(v, Ordering::Relaxed);
        }
    }

    /// The figures of the whole subtask.
    pub fn figures(&self) -> StateFigures {
        let [
            keys_in_memory,
            bytes_in_memory,
            bytes_spilled,
            cache_hits,
            cache_loads,
            evictions,
        ] = self.atomics().map(|a| a.load(Ordering::Relaxed));
        StateFigures {
            keys_in_memory,
            bytes_in_memory,
            bytes_spilled,
            cache_hits,
            cache_loads,
            evictions,
        }
    }
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
            state: StateMetrics::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(n: u64) -> StateFigures {
        StateFigures {
            keys_in_memory: n,
            bytes_in_memory: 10 * n,
            bytes_spilled: 100 * n,
            cache_hits: n,
            cache_loads: n,
            evictions: n,
        }
    }

    #[test]
    fn operators_of_a_chain_add_up_and_a_copy_never_counts_back() {
        let m = StateMetrics::default();
        let (a, b) = (figures(5), figures(7));
        m.report(&StateFigures::default(), &a);
        m.report(&StateFigures::default(), &b);
        assert_eq!(m.figures(), figures(12));
        // The first shrinks: its sizes go down with it.
        m.report(&a, &figures(2));
        assert_eq!(m.figures(), figures(9));
        let copy = StateMetrics::default();
        copy.set(&figures(9));
        copy.set(&figures(4));
        let f = copy.figures();
        assert_eq!(
            (f.keys_in_memory, f.bytes_spilled),
            (4, 400),
            "sizes as reported"
        );
        assert_eq!((f.cache_hits, f.evictions), (9, 9), "counters never back");
    }
}
