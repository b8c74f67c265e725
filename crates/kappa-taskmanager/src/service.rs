//! The taskmanager's control service: the jobmanager deploys and cancels job attempts here and
//! hands over newly discovered Kafka partitions.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kappa_connectors::splits::SourceAssignment;
use kappa_proto::v1::task_manager_service_server::TaskManagerService;
use kappa_proto::v1::{
    Ack, AddSplitsRequest, CancelAttemptRequest, DeployTasksRequest,
    NotifyCheckpointCompleteRequest, SetCatchingUpRequest, TriggerCheckpointRequest,
};
use kappa_runtime::subtask::Trigger;
use tonic::{Request, Response, Status};

use crate::deploy::{deploy, splits_from_proto};
use crate::state::Shared;

/// Cancels of attempts not deployed here that are remembered.
const CANCELLED_KEPT: usize = 1024;

pub struct ControlService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl TaskManagerService for ControlService {
    async fn deploy_tasks(
        &self,
        req: Request<DeployTasksRequest>,
    ) -> Result<Response<Ack>, Status> {
        self.shared.check_leader(&req).await?;
        let req = req.into_inner();
        let shared = Arc::clone(&self.shared);
        // Planning compiles SQL: keep it off the async workers.
        tokio::task::spawn_blocking(move || deploy(&shared, req))
            .await
            .map_err(|e| Status::internal(format!("deployment stopped: {e}")))??;
        Ok(Response::new(Ack {}))
    }

    async fn cancel_attempt(
        &self,
        req: Request<CancelAttemptRequest>,
    ) -> Result<Response<Ack>, Status> {
        self.shared.check_leader(&req).await?;
        let req = req.into_inner();
        let key = (req.job_id.clone(), req.attempt);
        let mut cancelled = self.shared.cancelled.lock();
        match self.shared.attempts.lock().get(&key) {
            Some(a) => {
                tracing::info!(job = %req.job_id, attempt = req.attempt, "cancelling subtasks");
                a.cancel.store(true, Ordering::SeqCst);
            }
            None => {
                cancelled.push_back(key);
                while cancelled.len() > CANCELLED_KEPT {
                    cancelled.pop_front();
                }
            }
        }
        Ok(Response::new(Ack {}))
    }

    async fn trigger_checkpoint(
        &self,
        req: Request<TriggerCheckpointRequest>,
    ) -> Result<Response<Ack>, Status> {
        self.shared.check_leader(&req).await?;
        let req = req.into_inner();
        let attempts = self.shared.attempts.lock();
        let attempt = attempts
            .get(&(req.job_id.clone(), req.attempt))
            .ok_or_else(|| {
                Status::not_found(format!(
                    "job {} attempt {} does not run here",
                    req.job_id, req.attempt
                ))
            })?;
        for tx in attempt.checkpoint_triggers.values() {
            // A source that already ended simply does not take part.
            let _ = tx.send(Trigger {
                checkpoint: req.checkpoint_id,
                drain: req.drain,
            });
        }
        Ok(Response::new(Ack {}))
    }

    async fn set_catching_up(
        &self,
        req: Request<SetCatchingUpRequest>,
    ) -> Result<Response<Ack>, Status> {
        self.shared.check_leader(&req).await?;
        let req = req.into_inner();
        let attempts = self.shared.attempts.lock();
        // An attempt that already ended here has nothing to tell.
        if let Some(a) = attempts.get(&(req.job_id.clone(), req.attempt)) {
            a.catching_up.store(req.catching_up, Ordering::Relaxed);
        }
        Ok(Response::new(Ack {}))
    }

    async fn notify_checkpoint_complete(
        &self,
        req: Request<NotifyCheckpointCompleteRequest>,
    ) -> Result<Response<Ack>, Status> {
        self.shared.check_leader(&req).await?;
        let req = req.into_inner();
        let attempts = self.shared.attempts.lock();
        if let Some(a) = attempts.get(&(req.job_id.clone(), req.attempt)) {
            for tx in &a.checkpoint_completions {
                // A subtask that already ended has nothing left to commit.
                let _ = tx.send(req.checkpoint_id);
            }
        }
        Ok(Response::new(Ack {}))
    }

    async fn add_splits(&self, req: Request<AddSplitsRequest>) -> Result<Response<Ack>, Status> {
        self.shared.check_leader(&req).await?;
        let req = req.into_inner();
        let SourceAssignment::Kafka(partitions) = splits_from_proto(req.splits.as_ref())? else {
            return Err(Status::invalid_argument(
                "only Kafka partitions can be added while running",
            ));
        };
        let attempts = self.shared.attempts.lock();
        let inbox = attempts
            .get(&(req.job_id.clone(), req.attempt))
            .and_then(|a| a.split_inboxes.get(&(req.vertex, req.subtask)))
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no source subtask {} of vertex {} of job {} attempt {} here",
                    req.subtask, req.vertex, req.job_id, req.attempt
                ))
            })?;
        inbox
            .send(partitions)
            .map_err(|_| Status::failed_precondition("the source subtask has ended"))?;
        Ok(Response::new(Ack {}))
    }
}
