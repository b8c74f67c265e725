//! Prometheus series of subtasks (records, watermark, backpressure, bad and late records,
//! queue length, Kafka lag), rendered by the jobmanager and every taskmanager at scrape time.

use prometheus::{Encoder, GaugeVec, Opts, Registry, TextEncoder};

use crate::metrics::SubtaskMetrics;

/// One subtask to export, with its labels.
pub struct SubtaskRow<'a> {
    pub job_id: &'a str,
    pub job_name: &'a str,
    pub vertex: &'a str,
    pub subtask: u32,
    pub metrics: &'a SubtaskMetrics,
}

/// A per-subtask series: name, help, and how to read it.
type Series = (&'static str, &'static str, fn(&SubtaskMetrics) -> f64);

const SERIES: [Series; 15] = [
    (
        "kappa_records_in_total",
        "Records received by the subtask",
        |m| SubtaskMetrics::get(&m.records_in) as f64,
    ),
    (
        "kappa_records_out_total",
        "Records emitted by the subtask",
        |m| SubtaskMetrics::get(&m.records_out) as f64,
    ),
    (
        "kappa_backpressured_seconds_total",
        "Time spent waiting for room downstream",
        |m| m.backpressured_total_ns() as f64 / 1e9,
    ),
    (
        "kappa_late_records_dropped_total",
        "Records dropped because their windows had closed",
        |m| SubtaskMetrics::get(&m.late_dropped) as f64,
    ),
    (
        "kappa_bad_records_skipped_total",
        "Undecodable records skipped (on_error = skip)",
        |m| SubtaskMetrics::get(&m.skipped) as f64,
    ),
    (
        "kappa_bad_records_dead_lettered_total",
        "Undecodable records sent to the dead-letter topic",
        |m| SubtaskMetrics::get(&m.dead_lettered) as f64,
    ),
    (
        "kappa_input_queue_length",
        "Elements waiting in the subtask's input channel",
        |m| SubtaskMetrics::get(&m.queued) as f64,
    ),
    (
        "kappa_stalled_splits",
        "Source splits that read nothing for 30 s while others read, holding the watermark back",
        |m| SubtaskMetrics::get(&m.stalled_splits) as f64,
    ),
    (
        "kappa_state_keys_in_memory",
        "Keyed subtasks: groups (a key's window) held in memory",
        |m| SubtaskMetrics::get(&m.state.keys_in_memory) as f64,
    ),
    (
        "kappa_state_memory_bytes",
        "Keyed subtasks: estimated bytes of the state held in memory",
        |m| SubtaskMetrics::get(&m.state.bytes_in_memory) as f64,
    ),
    (
        "kappa_state_spilled_bytes",
        "Keyed subtasks: bytes of state spilled to the local RocksDB (SST files and memtables)",
        |m| SubtaskMetrics::get(&m.state.bytes_spilled) as f64,
    ),
    (
        "kappa_state_cache_hits_total",
        "Keyed subtasks: lookups of state answered from memory",
        |m| SubtaskMetrics::get(&m.state.cache_hits) as f64,
    ),
    (
        "kappa_state_cache_loads_total",
        "Keyed subtasks: groups of state read back from disk",
        |m| SubtaskMetrics::get(&m.state.cache_loads) as f64,
    ),
    (
        "kappa_state_evictions_total",
        "Keyed subtasks: groups of state evicted to disk",
        |m| SubtaskMetrics::get(&m.state.evictions) as f64,
    ),
    (
        "kappa_watermark_ms",
        "Current event-time watermark (epoch ms)",
        |m| m.watermark().map_or(f64::NAN, |w| w as f64),
    ),
];

pub fn gauge_vec(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<GaugeVec, prometheus::Error> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Adds the series of `rows` to `reg`.
pub fn register_subtasks(reg: &Registry, rows: &[SubtaskRow<'_>]) -> Result<(), prometheus::Error> {
    let labels = ["job_id", "job_name", "vertex", "subtask"];
    let vecs = SERIES
        .iter()
        .map(|(n, h, f)| Ok((gauge_vec(reg, n, h, &labels)?, *f)))
        .collect::<Result<Vec<_>, prometheus::Error>>()?;
    let lag = gauge_vec(
        reg,
        "kappa_kafka_partition_lag",
        "Records of a Kafka partition not yet read by its source subtask",
        &["job_id", "job_name", "partition"],
    )?;
    for r in rows {
        let sub = r.subtask.to_string();
        let l = [r.job_id, r.job_name, r.vertex, sub.as_str()];
        for (g, f) in &vecs {
            g.with_label_values(&l).set(f(r.metrics));
        }
        for p in r.metrics.partitions.lock().iter() {
            if let Some(n) = p.lag() {
                lag.with_label_values(&[r.job_id, r.job_name, &p.partition.to_string()])
                    .set(n as f64);
            }
        }
    }
    Ok(())
}

/// The registry in the Prometheus text format.
pub fn encode(reg: &Registry) -> Result<String, prometheus::Error> {
    let mut buf = Vec::new();
    TextEncoder::new().encode(&reg.gather(), &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}
