//! Prometheus text exposition of the jobmanager: cluster gauges and the counters of every
//! subtask of every running job, read at scrape time.

use kappa_runtime::metrics::SubtaskMetrics;
use prometheus::{Encoder, GaugeVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::JobManager;
use crate::job::JobState;

/// A per-subtask series: name, help, and how to read it.
type Series = (&'static str, &'static str, fn(&SubtaskMetrics) -> f64);

fn gauge(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<GaugeVec, prometheus::Error> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Renders every metric in the Prometheus text format.
pub fn render(jm: &JobManager) -> Result<String, prometheus::Error> {
    let reg = Registry::new();
    let slots = IntGaugeVec::new(
        Opts::new("kappa_slots", "Task slots of the cluster"),
        &["kind"],
    )?;
    reg.register(Box::new(slots.clone()))?;
    slots
        .with_label_values(&["total"])
        .set(i64::from(jm.slots_total()));
    slots
        .with_label_values(&["free"])
        .set(i64::from(jm.slots_free()));
    let jobs = IntGaugeVec::new(Opts::new("kappa_jobs", "Jobs by state"), &["state"])?;
    reg.register(Box::new(jobs.clone()))?;
    let all = jm.jobs();
    for st in JobState::ALL {
        jobs.with_label_values(&[st.name()])
            .set(all.iter().filter(|j| j.state() == st).count() as i64);
    }
    let labels = ["job_id", "job_name", "vertex", "subtask"];
    let counters: [Series; 8] = [
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
            |m| SubtaskMetrics::get(&m.backpressured_ns) as f64 / 1e9,
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
            "kappa_watermark_ms",
            "Current event-time watermark (epoch ms)",
            |m| m.watermark().map_or(f64::NAN, |w| w as f64),
        ),
    ];
    let vecs = counters
        .iter()
        .map(|(n, h, f)| Ok((gauge(&reg, n, h, &labels)?, *f)))
        .collect::<Result<Vec<_>, prometheus::Error>>()?;
    for j in &all {
        let s = j.status.lock();
        let Some(r) = s.attempt.as_ref().filter(|r| r.live) else {
            continue;
        };
        for v in &r.handle.metrics {
            for (i, m) in v.subtasks.iter().enumerate() {
                let sub = i.to_string();
                let l = [
                    j.id.as_str(),
                    j.plan.name.as_str(),
                    v.name.as_str(),
                    sub.as_str(),
                ];
                for (g, f) in &vecs {
                    g.with_label_values(&l).set(f(m));
                }
            }
        }
    }
    let mut buf = Vec::new();
    TextEncoder::new().encode(&reg.gather(), &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}
