//! Prometheus text exposition of the jobmanager: cluster gauges (taskmanagers, slots, jobs by
//! state), the counters of every subtask of every running job, and each running job's
//! event-to-sink latency histogram, read at scrape time.

use kappa_runtime::latency::LatencyHistogram;
use kappa_runtime::prometheus::{SubtaskRow, encode, register_subtasks};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{IntGaugeVec, Opts, Registry};

use crate::JobManager;
use crate::job::JobState;

fn int_gauges(
    reg: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> Result<IntGaugeVec, prometheus::Error> {
    let g = IntGaugeVec::new(Opts::new(name, help), &[label])?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Renders every metric in the Prometheus text format.
pub fn render(jm: &JobManager) -> Result<String, prometheus::Error> {
    let reg = Registry::new();
    let (total, free) = jm.registry().slots();
    let slots = int_gauges(&reg, "kappa_slots", "Task slots of the cluster", "kind")?;
    slots.with_label_values(&["total"]).set(i64::from(total));
    slots.with_label_values(&["free"]).set(i64::from(free));
    let tms = int_gauges(
        &reg,
        "kappa_taskmanagers",
        "Registered taskmanagers",
        "state",
    )?;
    tms.with_label_values(&["registered"])
        .set(jm.registry().views().len() as i64);
    let jobs = int_gauges(&reg, "kappa_jobs", "Jobs by state", "state")?;
    let all = jm.jobs();
    for st in JobState::ALL {
        jobs.with_label_values(&[st.name()])
            .set(all.iter().filter(|j| j.state() == st).count() as i64);
    }
    // Before the status locks below are taken (it reads each job's state).
    register_catch_up(&reg, &all)?;
    let statuses: Vec<_> = all.iter().map(|j| (j, j.status.lock())).collect();
    let rows: Vec<SubtaskRow<'_>> = statuses
        .iter()
        .filter_map(|(j, s)| s.attempt.as_ref().filter(|r| r.live).map(|r| (j, r)))
        .flat_map(|(j, r)| {
            r.metrics.iter().flat_map(move |v| {
                v.subtasks.iter().enumerate().map(move |(i, m)| SubtaskRow {
                    job_id: &j.id,
                    job_name: &j.plan.name,
                    vertex: &v.name,
                    subtask: i as u32,
                    metrics: m,
                })
            })
        })
        .collect();
    register_subtasks(&reg, &rows)?;
    let latencies = statuses
        .iter()
        .filter_map(|(j, s)| s.attempt.as_ref().filter(|r| r.live).map(|r| (j, r)))
        .map(|(j, r)| {
            let labels = [
                ("job_id", j.id.as_str()),
                ("job_name", j.plan.name.as_str()),
            ];
            latency_metric(&labels, &crate::latency::merged(&r.metrics))
        })
        .collect();
    reg.register(Box::new(LatencyFamily::new(latencies)?))?;
    encode(&reg)
}

/// Whether each running job that reads Kafka catches up with its sources, and the time left.
fn register_catch_up(
    reg: &Registry,
    jobs: &[std::sync::Arc<crate::job::JobEntry>],
) -> Result<(), prometheus::Error> {
    let labels = ["job_id", "job_name"];
    let on = IntGaugeVec::new(
        Opts::new(
            "kappa_job_catching_up",
            "1 while the job catches up with its Kafka sources (its lag is worth more than its catch_up threshold of reading), else 0",
        ),
        &labels,
    )?;
    let eta = prometheus::GaugeVec::new(
        Opts::new(
            "kappa_job_catch_up_eta_seconds",
            "While the job catches up: the expected time until its Kafka lag is gone, at the rate it shrinks",
        ),
        &labels,
    )?;
    reg.register(Box::new(on.clone()))?;
    reg.register(Box::new(eta.clone()))?;
    for j in jobs.iter().filter(|j| j.state() == JobState::Running) {
        let Some(status) = j.catch_up.lock().as_ref().map(|c| c.status()) else {
            continue;
        };
        let values = [j.id.as_str(), j.plan.name.as_str()];
        on.with_label_values(&values)
            .set(i64::from(status.catching_up));
        if let Some(ms) = status.eta_ms {
            eta.with_label_values(&values).set(ms as f64 / 1000.0);
        }
    }
    Ok(())
}

/// Upper bounds of the latency buckets exported, in seconds (each HDR bucket holding a bound
/// counts below it: exact to within 1 %).
const LATENCY_BOUNDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

const LATENCY_NAME: &str = "kappa_sink_latency_seconds";

/// One job's latency as a Prometheus histogram (cumulative since its attempt started).
fn latency_metric(labels: &[(&str, &str)], h: &LatencyHistogram) -> Metric {
    let buckets = LATENCY_BOUNDS
        .iter()
        .map(|&le| {
            let mut b = Bucket::default();
            b.set_upper_bound(le);
            b.set_cumulative_count(h.rows_at_most((le * 1e6) as u64));
            b
        })
        .collect();
    let mut hist = Histogram::default();
    hist.set_bucket(buckets);
    hist.set_sample_count(h.rows());
    hist.set_sample_sum(h.sum_micros() / 1e6);
    let mut m = Metric::from_label(
        labels
            .iter()
            .map(|(n, v)| {
                let mut p = LabelPair::default();
                p.set_name(n.to_string());
                p.set_value(v.to_string());
                p
            })
            .collect(),
    );
    m.set_histogram(hist);
    m
}

/// The latency histograms of the running jobs, as one metric family.
struct LatencyFamily {
    desc: Desc,
    family: MetricFamily,
}

impl LatencyFamily {
    fn new(metrics: Vec<Metric>) -> Result<Self, prometheus::Error> {
        let help = "Event-to-sink latency of the rows a job's sinks wrote since its attempt started: from when what produced a row entered the engine (read by a source; for a window's row, the records that moved the watermark past its end) to the sink";
        let desc = Desc::new(
            LATENCY_NAME.into(),
            help.into(),
            vec!["job_id".into(), "job_name".into()],
            Default::default(),
        )?;
        let mut family = MetricFamily::default();
        family.set_name(LATENCY_NAME.into());
        family.set_help(help.into());
        family.set_field_type(MetricType::HISTOGRAM);
        *family.mut_metric() = metrics;
        Ok(Self { desc, family })
    }
}

impl Collector for LatencyFamily {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if self.family.get_metric().is_empty() {
            return Vec::new();
        }
        vec![self.family.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_s_latency_is_a_histogram_in_seconds() {
        let mut h = LatencyHistogram::new();
        h.record(3_000, 9);
        h.record(70_000, 1);
        let reg = Registry::new();
        let m = latency_metric(&[("job_id", "j1"), ("job_name", "a \"quoted\" name")], &h);
        reg.register(Box::new(LatencyFamily::new(vec![m]).unwrap()))
            .unwrap();
        let text = encode(&reg).unwrap();
        let labels = r#"job_id="j1",job_name="a \"quoted\" name""#;
        for (le, n) in [
            ("0.0025", 0),
            ("0.005", 9),
            ("0.05", 9),
            ("0.1", 10),
            ("+Inf", 10),
        ] {
            let line = format!("{LATENCY_NAME}_bucket{{{labels},le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains(&format!("{LATENCY_NAME}_count{{{labels}}} 10")),
            "{text}"
        );
        assert!(
            text.contains("# TYPE kappa_sink_latency_seconds histogram"),
            "{text}"
        );
        // No running job: no family.
        let empty = Registry::new();
        empty
            .register(Box::new(LatencyFamily::new(Vec::new()).unwrap()))
            .unwrap();
        assert!(!encode(&empty).unwrap().contains(LATENCY_NAME));
    }
}
