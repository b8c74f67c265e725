//! The jobmanager's gRPC service: taskmanagers register, send heartbeats with their subtasks'
//! counters, and report subtask states, which are routed to the job's current attempt.

use std::sync::Arc;

use kappa_proto::v1::job_manager_service_server::JobManagerService;
use kappa_proto::v1::{
    Ack, AttachRequest, CheckpointAck, ControlEvent, HeartbeatRequest, HeartbeatResponse,
    RegisterTaskManagerRequest, RegisterTaskManagerResponse, TaskStateReport,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use kappa_proto::tls::Role as Identity;

use crate::Inner;
use crate::ha::Role;
use crate::job::{AttemptEvent, AttemptRun, now_ms};

pub struct JobManagerRpc {
    pub inner: Arc<Inner>,
}

/// The prefix of a standby's refusal; the leader's gRPC URL follows it (taskmanagers read it).
pub const STANDBY_PREFIX: &str = "standby jobmanager; the leader is at ";

impl JobManagerRpc {
    /// With mutual TLS: refuses a caller other than taskmanager `id` (the id it claims).
    fn speaks_for<T>(&self, req: &Request<T>, id: &str) -> Result<(), Status> {
        match self
            .inner
            .config
            .authenticator()
            .require(req, Identity::TaskManager)?
        {
            Some(p) if p.name != id => {
                tracing::error!(caller = %p, claimed = %id, "refusing a call made for another taskmanager");
                Err(Status::permission_denied(format!(
                    "{p} may not speak for taskmanager {id}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Refuses calls on a standby (HA), naming the leader when known.
    fn leader_only(&self) -> Result<(), Status> {
        match &*self.inner.role.read() {
            Role::Leader => Ok(()),
            Role::Standby(Some(l)) => {
                let mut s = Status::unavailable(format!("{STANDBY_PREFIX}{}", l.rpc));
                if let Ok(v) = l.rpc.parse() {
                    s.metadata_mut().insert(kappa_proto::LEADER_METADATA_KEY, v);
                }
                Err(s)
            }
            Role::Standby(None) => Err(Status::unavailable(
                "standby jobmanager; no leader is elected yet",
            )),
        }
    }
}

#[tonic::async_trait]
impl JobManagerService for JobManagerRpc {
    async fn register_task_manager(
        &self,
        req: Request<RegisterTaskManagerRequest>,
    ) -> Result<Response<RegisterTaskManagerResponse>, Status> {
        self.leader_only()?;
        self.speaks_for(&req, &req.get_ref().taskmanager_id)?;
        let remote = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let req = req.into_inner();
        let incarnation = self
            .inner
            .registry
            .register(&req, now_ms())
            .inspect_err(|s| {
                tracing::error!(from = %remote, id = %req.taskmanager_id, reason = %s.message(), "taskmanager refused");
            })?;
        Ok(Response::new(RegisterTaskManagerResponse {
            jobmanager_id: self.inner.id.clone(),
            heartbeat_interval_ms: self.inner.config.heartbeat_interval.as_millis() as u64,
            incarnation,
            jobmanager_identity: self
                .inner
                .config
                .cluster_tls
                .as_ref()
                .map(|t| t.me().to_string())
                .unwrap_or_default(),
        }))
    }

    type AttachStream = ReceiverStream<Result<ControlEvent, Status>>;

    async fn attach(
        &self,
        req: Request<AttachRequest>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        self.leader_only()?;
        self.speaks_for(&req, &req.get_ref().taskmanager_id)?;
        let r = req.into_inner();
        if !self
            .inner
            .registry
            .is_current(&r.taskmanager_id, r.incarnation)
        {
            return Err(Status::not_found(format!(
                "taskmanager {} is not registered as incarnation {}",
                r.taskmanager_id, r.incarnation
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            // The stream ends when the taskmanager's connection does.
            tx.closed().await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if let Some(tm) = inner.registry.lose(&r.taskmanager_id, r.incarnation) {
                crate::taskmanager_lost(&inner, &tm, "its control stream to the jobmanager broke");
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        self.leader_only()?;
        self.speaks_for(&req, &req.get_ref().taskmanager_id)?;
        let req = req.into_inner();
        if !self
            .inner
            .registry
            .heartbeat(&req.taskmanager_id, req.memory_bytes)
        {
            return Err(Status::not_found(format!(
                "taskmanager {} is not registered",
                req.taskmanager_id
            )));
        }
        for m in &req.subtasks {
            let Some(job) = self.inner.job(&m.job_id) else {
                continue;
            };
            let s = job.status.lock();
            if let Some(run) = s.attempt.as_ref().filter(|r| r.number == m.attempt)
                && placed(run, m.subtask, &req.taskmanager_id)
            {
                run.update(m);
            }
        }
        Ok(Response::new(HeartbeatResponse {}))
    }

    async fn acknowledge_checkpoint(
        &self,
        req: Request<CheckpointAck>,
    ) -> Result<Response<Ack>, Status> {
        self.leader_only()?;
        self.speaks_for(&req, &req.get_ref().taskmanager_id)?;
        let a = req.into_inner();
        if let Some(job) = self.inner.job(&a.job_id) {
            let s = job.status.lock();
            if let Some(run) = s.attempt.as_ref().filter(|r| r.number == a.attempt) {
                not_placed(run, a.subtask, &a.taskmanager_id)?;
                let _ = run.events.send(AttemptEvent::Checkpoint(a));
            }
        }
        Ok(Response::new(Ack {}))
    }

    async fn report_task_state(
        &self,
        req: Request<TaskStateReport>,
    ) -> Result<Response<Ack>, Status> {
        self.leader_only()?;
        self.speaks_for(&req, &req.get_ref().taskmanager_id)?;
        let r = req.into_inner();
        if let Some(job) = self.inner.job(&r.job_id) {
            let s = job.status.lock();
            if let Some(run) = s.attempt.as_ref().filter(|a| a.number == r.attempt) {
                not_placed(run, r.subtask, &r.taskmanager_id)?;
                if let Some(m) = &r.metrics {
                    run.update(m);
                }
                let _ = run.events.send(AttemptEvent::Task(r));
            }
        }
        Ok(Response::new(Ack {}))
    }
}

/// Whether subtask `subtask` (of any vertex) of the attempt runs on taskmanager `tm`.
fn placed(run: &AttemptRun, subtask: u32, tm: &str) -> bool {
    run.placement
        .get(subtask as usize)
        .is_some_and(|placed| placed == tm)
}

/// Refuses a report or an ack for a subtask the taskmanager does not run.
fn not_placed(run: &AttemptRun, subtask: u32, tm: &str) -> Result<(), Status> {
    if placed(run, subtask, tm) {
        return Ok(());
    }
    tracing::error!(taskmanager = %tm, attempt = run.number, subtask, "refusing a report for a subtask the taskmanager does not run");
    Err(Status::permission_denied(format!(
        "taskmanager {tm} does not run subtask {subtask} of attempt {}",
        run.number
    )))
}
