//! The driver's side of catching up (see [`crate::catch_up`]): samples the attempt's Kafka
//! sources, and on a change tells the subtasks and the checkpoint coordinator. Subtasks a
//! call did not reach are told again at the next sample.

use kappa_proto::v1::SetCatchingUpRequest;

use super::Attempt;
use crate::catch_up::Change;
use crate::job::now_ms;

impl Attempt<'_> {
    /// A new attempt: its subtasks start live, so a catch-up under way ends (and starts again
    /// if the restored positions are still far behind).
    pub(super) fn restart_catch_up(&self) {
        let change = self
            .job
            .catch_up
            .lock()
            .as_mut()
            .and_then(|c| c.restart(now_ms()));
        if change.is_some()
            && let Some(c) = self.job.checkpoints.lock().as_mut()
        {
            c.set_catching_up(false);
        }
    }

    /// Takes a sample of the sources; on a change, or while subtasks were not all told the
    /// current mode, tells them.
    pub(super) async fn follow_catch_up(&mut self) {
        let sample = {
            let status = self.job.status.lock();
            status
                .attempt
                .as_ref()
                .and_then(|r| r.kafka_sample(now_ms()))
        };
        let (change, catching_up, status) = {
            let mut guard = self.job.catch_up.lock();
            let Some(c) = guard.as_mut() else {
                return;
            };
            let change = sample.and_then(|s| c.observe(s));
            (change, c.catching_up(), c.status())
        };
        if let Some(change) = change {
            if let Some(c) = self.job.checkpoints.lock().as_mut() {
                c.set_catching_up(catching_up);
            }
            match change {
                Change::Started => {
                    tracing::info!(job = %self.job.id, lag = status.lag, read_per_second = status.read_per_second, "catching up with the sources")
                }
                Change::Finished => {
                    tracing::info!(job = %self.job.id, lag = status.lag, "caught up: live")
                }
            }
        }
        if self.told_catching_up == catching_up {
            return;
        }
        let req = SetCatchingUpRequest {
            job_id: self.job.id.clone(),
            attempt: self.number,
            catching_up,
        };
        let failed = self
            .on_taskmanagers(req, |mut c, r| async move {
                c.set_catching_up(r).await.map(|_| ())
            })
            .await;
        for (tm, why) in &failed {
            tracing::warn!(taskmanager = %tm, catching_up, error = %why, "could not tell a taskmanager whether the job catches up");
        }
        if failed.is_empty() {
            self.told_catching_up = catching_up;
        }
    }
}
