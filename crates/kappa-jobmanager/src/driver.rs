//! Drives one job through its lifecycle: wait for slots, look up and assign its splits,
//! deploy an attempt, and on failure restart it by its restart strategy or give up.

use std::sync::Arc;
use std::time::Duration;

use kappa_connectors::splits::assign_splits;
use kappa_runtime::TaskError;
use kappa_taskmanager::{AttemptOutcome, Deployment, deploy};

use crate::Inner;
use crate::job::{AttemptInfo, AttemptRun, JobEntry, JobState, now_ms};
use crate::rates::RateTracker;

/// Runs the job until it is finished, failed or cancelled.
pub async fn drive(inner: Arc<Inner>, job: Arc<JobEntry>) {
    let mut restarts: u32 = 0;
    let p = job.plan.parallelism;
    loop {
        if job.cancel_requested() {
            job.set_state(JobState::Canceled, None);
            return;
        }
        if !take_slots(&inner, &job, p).await {
            job.set_state(JobState::Canceled, None);
            return;
        }
        let outcome = run_attempt(&inner, &job, restarts + 1).await;
        inner.slots.give_back(p);
        let error = match outcome {
            AttemptOutcome::Finished => {
                job.set_state(JobState::Finished, None);
                return;
            }
            AttemptOutcome::Cancelled if job.cancel_requested() => {
                job.set_state(JobState::Canceled, None);
                return;
            }
            AttemptOutcome::Cancelled => {
                TaskError::Io("the attempt stopped without an error".into())
            }
            AttemptOutcome::Failed(e) => e,
        };
        job.status.lock().error = Some(error.to_string());
        let delay = if error.is_retriable() {
            job.plan.restart.delay_before(restarts + 1)
        } else {
            None
        };
        let Some(delay) = delay else {
            tracing::error!(job = %job.id, %error, "job failed");
            job.set_state(JobState::Failed, None);
            return;
        };
        restarts += 1;
        tracing::warn!(job = %job.id, %error, ?delay, restart = restarts, "job restarting");
        job.set_state(
            JobState::Restarting,
            Some(format!("restart {restarts} in {delay:?} after: {error}")),
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = job.cancelled() => {}
        }
    }
}

/// Waits until `p` slots are free; false if the job was cancelled while waiting.
async fn take_slots(inner: &Inner, job: &JobEntry, p: u32) -> bool {
    loop {
        if inner.slots.try_take(p) {
            return true;
        }
        let reason = format!(
            "waiting for {p} free slots ({} of {} free)",
            inner.slots.free(),
            inner.slots.total()
        );
        if job.state() != JobState::Created || job.status.lock().reason.as_deref() != Some(&reason)
        {
            job.set_state(JobState::Created, Some(reason));
        }
        tokio::select! {
            _ = inner.slots.wait_for_release() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = job.cancelled() => return false,
        }
    }
}

/// Assigns splits, deploys, and waits for the attempt to end (cancelling it on request).
async fn run_attempt(inner: &Inner, job: &Arc<JobEntry>, number: u32) -> AttemptOutcome {
    job.status.lock().attempts.push(AttemptInfo {
        attempt: number,
        started_at_ms: now_ms(),
        ended_at_ms: None,
        error: None,
    });
    let outcome = deploy_and_wait(inner, job, number).await;
    let mut s = job.status.lock();
    if let Some(r) = s.attempt.as_mut() {
        r.live = false;
    }
    if let Some(a) = s.attempts.last_mut() {
        a.ended_at_ms = Some(now_ms());
        if let AttemptOutcome::Failed(e) = &outcome {
            a.error = Some(e.to_string());
        }
    }
    outcome
}

async fn deploy_and_wait(inner: &Inner, job: &Arc<JobEntry>, number: u32) -> AttemptOutcome {
    let plan = Arc::clone(&job.plan);
    let timeout = inner.config.kafka_timeout;
    let source = plan.source.clone();
    let mut pinned = job.pinned_starts.lock().clone();
    let assigned = tokio::task::spawn_blocking(move || {
        assign_splits(&source, plan.parallelism, timeout, &mut pinned).map(|a| (a, pinned))
    })
    .await;
    let assignments = match assigned {
        Ok(Ok((a, pinned))) => {
            *job.pinned_starts.lock() = pinned;
            a
        }
        Ok(Err(e)) => return AttemptOutcome::Failed(TaskError::Io(e.to_string())),
        Err(e) => {
            return AttemptOutcome::Failed(TaskError::Io(format!("split assignment stopped: {e}")));
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let deployment = Deployment {
        job_id: job.id.clone(),
        attempt: number,
        plan: Arc::clone(&job.plan),
        assignments: assignments.clone(),
    };
    let handle = match deploy(deployment, move |o| {
        let _ = tx.send(o);
    }) {
        Ok(h) => h,
        Err(e) => return AttemptOutcome::Failed(e),
    };
    {
        let mut s = job.status.lock();
        s.attempt = Some(AttemptRun {
            handle,
            assignments,
            rates: RateTracker::default(),
            live: true,
        });
        if job.cancel_requested() {
            if let Some(r) = &s.attempt {
                r.handle.cancel();
            }
            s.state = JobState::Cancelling;
        } else {
            s.state = JobState::Running;
            s.reason = None;
        }
    }
    tracing::info!(job = %job.id, attempt = number, "job attempt running");
    rx.await.unwrap_or_else(|_| {
        AttemptOutcome::Failed(TaskError::Io("the attempt supervisor stopped".into()))
    })
}
