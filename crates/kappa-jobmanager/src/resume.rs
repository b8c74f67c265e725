//! Resuming kept jobs when this jobmanager starts or becomes the leader: each record on its
//! own, from its newest readable checkpoint, or listed as ended or failed with the reason.

use std::sync::Arc;

use crate::job::JobEntry;
use crate::job_text::JobText;
use crate::sealing::SealError;
use crate::submission::SubmitError;

/// Why a kept job cannot resume.
#[derive(Debug, thiserror::Error)]
enum ResumeError {
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Secrets(#[from] SealError),
}
use crate::store::JobRecord;
use crate::{Inner, checkpoint, job, retention, store};

impl Inner {
    /// Resumes the jobs of the store that had not ended, each from its latest checkpoint.
    pub(crate) async fn resume_jobs(self: &Arc<Self>) {
        let records = match self.store.load::<JobRecord>().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the kept jobs: none resumed");
                return;
            }
        };
        for r in records {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "a kept job's record cannot be read: that job is not resumed");
                    continue;
                }
            };
            if let Err(e) = kappa_job::confine::names::job_id(&r.id) {
                tracing::error!(error = %e, "a kept job's record has an id no jobmanager makes: that job is not resumed");
                continue;
            }
            if self.jobs.read().contains_key(&r.id) {
                continue;
            }
            let state = job::JobState::ALL.iter().find(|s| s.name() == r.state);
            if let Some(&ended) = state.filter(|s| s.is_terminal()) {
                self.keep_ended(&r, ended, None).await;
                continue;
            }
            if state.is_none() {
                tracing::error!(job = %r.id, state = %r.state, "a kept job's record names an unknown state: that job is not resumed");
                continue;
            }
            match self.rebuild(&r).await {
                Ok(job) => {
                    tracing::info!(job = %r.id, checkpoint = ?r.latest_checkpoint, "resuming a kept job");
                    let job = Arc::new(job);
                    self.jobs.write().insert(r.id.clone(), Arc::clone(&job));
                    self.spawn_driver(job);
                }
                Err(e) => {
                    tracing::error!(job = %r.id, error = %e, "cannot resume a kept job");
                    let reason = format!("could not resume after a jobmanager change: {e}");
                    self.keep_ended(&r, job::JobState::Failed, Some(reason))
                        .await;
                }
            }
        }
    }

    /// A kept job that ended, or that cannot resume (FAILED with `failure`), is listed with
    /// its history until its retention passes (when its file still plans); past it, its
    /// record is deleted.
    async fn keep_ended(
        self: &Arc<Self>,
        r: &store::JobRecord,
        state: job::JobState,
        failure: Option<String>,
    ) {
        let now = job::now_ms();
        if failure.is_none() && retention::expired(r.ended_at_ms, now, self.config.job_retention) {
            if let Err(e) = self.store.delete::<JobRecord>(&r.id).await {
                tracing::warn!(job = %r.id, error = %e, "could not delete an ended job's record");
            }
            return;
        }
        let submitted = store::Submitted {
            start: r.start.clone(),
            parallelism: r.parallelism,
            allow_non_restored_state: r.allow_non_restored_state,
        };
        let text = JobText::listed(&r.file_name, &r.spec, r.sealed_secrets.as_deref());
        let Ok(mut job) = self
            .prepare(&r.id, &r.file_name, text, &submitted, false)
            .await
        else {
            return;
        };
        job.submitted_at_ms = r.submitted_at_ms;
        job.attempt_offset = r.last_attempt;
        job.set_state(state, failure.clone());
        let s = job.status.get_mut();
        s.ended_at_ms = Some(r.ended_at_ms.unwrap_or(now).min(now));
        if failure.is_some() {
            s.error = failure;
        }
        let job = Arc::new(job);
        self.jobs.write().insert(r.id.clone(), Arc::clone(&job));
        if state == job::JobState::Failed {
            let _ = self.persist(&job).await;
        }
    }

    /// The newest completed checkpoint of job `id` that can be read, from `latest` down
    /// through the older ones still kept; the error of `latest` when none can.
    async fn newest_readable_checkpoint(
        location: &kappa_state::Location,
        id: &str,
        latest: u64,
    ) -> Result<checkpoint::CheckpointMetadata, SubmitError> {
        let path = location.child(&[id, &format!("chk-{latest}"), "_metadata"]);
        let first = match checkpoint::read_metadata_at(location, &path).await {
            Ok(meta) => return Ok(meta),
            Err(e) => e,
        };
        for n in checkpoint::kept_checkpoint_ids(location, id).await {
            if n >= latest {
                continue;
            }
            let path = location.child(&[id, &format!("chk-{n}"), "_metadata"]);
            match checkpoint::read_metadata_at(location, &path).await {
                Ok(meta) => {
                    tracing::warn!(job = %id, latest, error = %first, fallback = n, "the latest checkpoint cannot be read: resuming from an older one");
                    return Ok(meta);
                }
                Err(e) => {
                    tracing::warn!(job = %id, checkpoint = n, error = %e, "an older checkpoint cannot be read either")
                }
            }
        }
        Err(SubmitError::BadRequest(format!(
            "{first}; no older checkpoint of the job can be read"
        )))
    }

    /// The entry of a kept job, restoring from its latest completed checkpoint.
    async fn rebuild(&self, r: &store::JobRecord) -> Result<JobEntry, ResumeError> {
        let key = self.config.secret_key.as_deref();
        let text = JobText::kept(
            &r.id,
            &r.file_name,
            &r.spec,
            r.sealed_secrets.as_deref(),
            key,
        )?;
        let submitted = store::Submitted {
            start: r.start.clone(),
            parallelism: r.parallelism,
            allow_non_restored_state: r.allow_non_restored_state,
        };
        let latest = match (r.latest_checkpoint, &self.checkpoint_location) {
            (Some(n), Some(location)) => {
                Some(Self::newest_readable_checkpoint(location, &r.id, n).await?)
            }
            _ => None,
        };
        let mut job = self
            .prepare(&r.id, &r.file_name, text, &submitted, latest.is_none())
            .await?;
        // The roots may have changed since it was submitted.
        self.confine(&r.file_name, job.text.deployed(), &job.plan)?;
        job.submitted_at_ms = r.submitted_at_ms;
        job.attempt_offset = r.last_attempt;
        if let Some(c) = job.checkpoints.get_mut().as_mut() {
            if let Some(meta) = latest {
                c.resume_from(meta);
            }
            // Checkpoint ids are never reused, also after a fall back to an older one: sinks
            // name committed output by them.
            if let Some(n) = r.latest_checkpoint {
                c.number_after(n);
            }
        }
        Ok(job)
    }
}
