//! How long ended jobs stay: a FINISHED, CANCELED or FAILED job is listed with its history for
//! the retention (`--job-retention`), also by a jobmanager that takes over, and is then
//! forgotten here and in the job store.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::Inner;
use crate::ha::Role;
use crate::job::now_ms;

/// Whether a job that ended at `ended_at_ms` is past the retention at `now_ms` (a job without
/// an end time is not: one loaded from an earlier release's record gets one when loaded).
pub(crate) fn expired(ended_at_ms: Option<i64>, now_ms: i64, retention: Duration) -> bool {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    ended_at_ms.is_some_and(|end| now_ms.saturating_sub(end) >= retention_ms)
}

/// How often ended jobs are looked at.
fn sweep_interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_millis(200), Duration::from_secs(60))
}

/// Forgets ended jobs past the retention, while this jobmanager leads.
pub(crate) async fn prune_ended_jobs(inner: Weak<Inner>) {
    let Some(retention) = inner.upgrade().map(|i| i.config.job_retention) else {
        return;
    };
    let mut tick = tokio::time::interval(sweep_interval(retention));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if *inner.role.read() != Role::Leader {
            continue;
        }
        prune(&inner, retention).await;
    }
}

async fn prune(inner: &Arc<Inner>, retention: Duration) {
    let now = now_ms();
    let due: Vec<String> = inner
        .jobs
        .read()
        .values()
        .filter(|j| {
            let s = j.status.lock();
            s.state.is_terminal() && expired(s.ended_at_ms, now, retention)
        })
        .map(|j| j.id.clone())
        .collect();
    for id in due {
        match inner.store.delete::<crate::store::JobRecord>(&id).await {
            Ok(()) => {
                inner.jobs.write().remove(&id);
                tracing::info!(job = %id, ?retention, "ended job forgotten after its retention");
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "could not delete an ended job's record")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_expires_a_retention_after_it_ended() {
        let hour = Duration::from_secs(3600);
        assert!(!expired(Some(1_000), 1_000, hour));
        assert!(!expired(Some(1_000), 1_000 + 3_599_999, hour));
        assert!(expired(Some(1_000), 1_000 + 3_600_000, hour));
        assert!(!expired(None, i64::MAX, hour), "no end time: not yet");
        assert!(!expired(Some(0), 10, Duration::MAX), "no overflow");
        assert!(expired(Some(i64::MIN), i64::MAX, hour), "saturates");
    }
}
