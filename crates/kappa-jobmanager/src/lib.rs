//! The Kappa jobmanager: accepts jobs, plans and schedules them on slots, restarts failed
//! attempts, and serves the REST API and Prometheus metrics on :8081.

mod driver;
pub mod job;
mod prom;
mod rates;
pub mod rest;
mod slots;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_job::{Overrides, SpecErrors, plan_job};
use parking_lot::RwLock;

use crate::job::JobEntry;
use crate::slots::SlotPool;

/// Settings of a jobmanager.
#[derive(Debug, Clone)]
pub struct JobManagerConfig {
    /// Slots of the in-process taskmanager.
    pub slots: u32,
    /// Where checkpoints will be written (accepted now; used by the checkpoints feature).
    pub checkpoint_dir: Option<PathBuf>,
    /// How long to wait for Kafka metadata before an attempt fails (and is retried).
    pub kafka_timeout: Duration,
}

impl Default for JobManagerConfig {
    fn default() -> Self {
        Self {
            slots: 4,
            checkpoint_dir: None,
            kafka_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Invalid(SpecErrors),
    #[error("{0}")]
    BadRequest(String),
}

pub(crate) struct Inner {
    pub config: JobManagerConfig,
    pub slots: SlotPool,
    pub jobs: RwLock<BTreeMap<String, Arc<JobEntry>>>,
    pub started: Instant,
}

/// Handle to the jobmanager; cheap to clone.
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
}

impl JobManager {
    /// Creates a jobmanager; must be called inside a tokio runtime (it starts a metrics sampler).
    pub fn new(config: JobManagerConfig) -> Self {
        let inner = Arc::new(Inner {
            slots: SlotPool::new(config.slots),
            config,
            jobs: RwLock::new(BTreeMap::new()),
            started: Instant::now(),
        });
        tokio::spawn(sample_rates(Arc::downgrade(&inner)));
        Self { inner }
    }

    pub fn config(&self) -> &JobManagerConfig {
        &self.inner.config
    }

    /// Validates and starts a job; returns its id.
    pub fn submit(
        &self,
        file_name: &str,
        spec: &str,
        overrides: &Overrides,
    ) -> Result<String, SubmitError> {
        let plan = plan_job(file_name, spec, overrides).map_err(SubmitError::Invalid)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let job = Arc::new(JobEntry::new(
            id.clone(),
            file_name.to_string(),
            spec.to_string(),
            plan,
        ));
        tracing::info!(job = %id, name = %job.plan.name, start = %job.plan.source.start, parallelism = job.plan.parallelism, "job submitted");
        self.inner.jobs.write().insert(id.clone(), Arc::clone(&job));
        tokio::spawn(driver::drive(Arc::clone(&self.inner), job));
        Ok(id)
    }

    pub fn job(&self, id: &str) -> Option<Arc<JobEntry>> {
        self.inner.jobs.read().get(id).cloned()
    }

    /// All jobs, oldest first.
    pub fn jobs(&self) -> Vec<Arc<JobEntry>> {
        let mut jobs: Vec<_> = self.inner.jobs.read().values().cloned().collect();
        jobs.sort_by_key(|j| j.submitted_at_ms);
        jobs
    }

    pub fn slots_total(&self) -> u32 {
        self.inner.slots.total()
    }

    pub fn slots_free(&self) -> u32 {
        self.inner.slots.free()
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }
}

/// Samples the counters of running attempts once a second for the per-second rates.
async fn sample_rates(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let jobs: Vec<_> = inner.jobs.read().values().cloned().collect();
        let now = Instant::now();
        for j in jobs {
            let mut s = j.status.lock();
            if let Some(r) = s.attempt.as_mut().filter(|r| r.live) {
                r.rates.sample(&r.handle.metrics, now);
            }
        }
    }
}
