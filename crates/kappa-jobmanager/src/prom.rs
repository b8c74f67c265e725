//! Prometheus text exposition of the jobmanager: cluster gauges (taskmanagers, slots, jobs by
//! state) and the counters of every subtask of every running job, read at scrape time.

use kappa_runtime::prometheus::{SubtaskRow, encode, register_subtasks};
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
    encode(&reg)
}
