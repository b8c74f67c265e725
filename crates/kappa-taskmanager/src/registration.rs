//! The taskmanager's side of the cluster protocol: register with the jobmanager, send
//! heartbeats with the metrics of running subtasks, forward subtask state reports, and cancel
//! local work when the jobmanager stays unreachable.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kappa_proto::v1::job_manager_service_client::JobManagerServiceClient;
use kappa_proto::v1::{
    CheckpointAck, HeartbeatRequest, PartitionProgress, ProtocolVersion,
    RegisterTaskManagerRequest, SubtaskMetrics, TaskStateReport,
};
use kappa_runtime::metrics::SubtaskMetrics as Live;
use tokio::sync::mpsc::UnboundedReceiver;
use tonic::Code;
use tonic::transport::Channel;

use crate::TaskManagerError;
use crate::state::Shared;

/// Without a successful heartbeat for this long, local subtasks are cancelled (the jobmanager
/// will have given up on them and may run them elsewhere).
const JOBMANAGER_TIMEOUT: Duration = Duration::from_secs(15);

async fn connect(url: &str) -> Result<JobManagerServiceClient<Channel>, tonic::transport::Error> {
    JobManagerServiceClient::connect(url.to_string()).await
}

fn resident_memory() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(0);
    pages * 4096
}

/// The counters of one subtask as sent to the jobmanager.
pub fn to_proto(job_id: &str, attempt: u32, vertex: u32, subtask: u32, m: &Live) -> SubtaskMetrics {
    SubtaskMetrics {
        job_id: job_id.to_string(),
        attempt,
        vertex,
        subtask,
        records_in: Live::get(&m.records_in),
        records_out: Live::get(&m.records_out),
        watermark: m.watermark(),
        backpressured_ns: m.backpressured_total_ns(),
        late_dropped: Live::get(&m.late_dropped),
        skipped: Live::get(&m.skipped),
        dead_lettered: Live::get(&m.dead_lettered),
        queued: Live::get(&m.queued),
        partitions: m
            .partitions
            .lock()
            .iter()
            .map(|p| PartitionProgress {
                partition: p.partition,
                position: p.position,
                high_watermark: p.high_watermark,
            })
            .collect(),
    }
}

fn snapshot(shared: &Shared) -> Vec<SubtaskMetrics> {
    let attempts = shared.attempts.lock();
    attempts
        .iter()
        .flat_map(|((job_id, attempt), a)| {
            a.subtasks
                .iter()
                .map(move |s| to_proto(job_id, *attempt, s.vertex, s.subtask, &s.metrics))
        })
        .collect()
}

fn cancel_everything(shared: &Shared) {
    for a in shared.attempts.lock().values() {
        a.cancel.store(true, Ordering::SeqCst);
    }
}

/// Registers and heartbeats until refused (incompatible version); reconnects on failures.
pub async fn register_and_heartbeat(
    shared: Arc<Shared>,
    jobmanager: String,
) -> Result<(), TaskManagerError> {
    let mut last_ok = Instant::now();
    let mut warned = false;
    loop {
        if last_ok.elapsed() > JOBMANAGER_TIMEOUT && !shared.attempts.lock().is_empty() {
            tracing::error!(%jobmanager, "jobmanager unreachable for {JOBMANAGER_TIMEOUT:?}: cancelling local subtasks");
            cancel_everything(&shared);
        }
        let mut client = match connect(&jobmanager).await {
            Ok(c) => c,
            Err(e) => {
                if !warned {
                    tracing::warn!(%jobmanager, error = %e, "cannot reach the jobmanager; retrying");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let request = RegisterTaskManagerRequest {
            protocol_version: ProtocolVersion::Current as u32,
            version: env!("CARGO_PKG_VERSION").to_string(),
            taskmanager_id: shared.id.clone(),
            address: shared.address.clone(),
            slots: shared.slots,
            metrics_address: shared.address.clone(),
        };
        let interval = match client.register_task_manager(request).await {
            Ok(r) => Duration::from_millis(r.into_inner().heartbeat_interval_ms.max(100)),
            Err(s) if s.code() == Code::FailedPrecondition || s.code() == Code::InvalidArgument => {
                tracing::error!(%jobmanager, reason = %s.message(), "the jobmanager refused this taskmanager");
                return Err(TaskManagerError::Refused(s.message().to_string()));
            }
            Err(s) => {
                tracing::warn!(%jobmanager, error = %s.message(), "registration failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(%jobmanager, id = %shared.id, slots = shared.slots, address = %shared.address, "registered with the jobmanager");
        warned = false;
        last_ok = Instant::now();
        loop {
            tokio::time::sleep(interval).await;
            let hb = HeartbeatRequest {
                taskmanager_id: shared.id.clone(),
                memory_bytes: resident_memory(),
                subtasks: snapshot(&shared),
            };
            match client.heartbeat(hb).await {
                Ok(_) => last_ok = Instant::now(),
                Err(s) if s.code() == Code::NotFound => {
                    tracing::warn!(
                        "the jobmanager does not know this taskmanager (it restarted or timed us out): registering again"
                    );
                    break;
                }
                Err(s) => {
                    tracing::warn!(error = %s.message(), "heartbeat failed");
                    if last_ok.elapsed() > JOBMANAGER_TIMEOUT {
                        break;
                    }
                }
            }
        }
    }
}

/// What a taskmanager tells the jobmanager besides heartbeats.
#[derive(Debug, Clone)]
pub enum ToJobManager {
    Report(TaskStateReport),
    Ack(CheckpointAck),
}

/// Forwards subtask state reports and checkpoint acknowledgements to the jobmanager, in
/// order, retrying while it is unreachable.
pub async fn forward_reports(jobmanager: String, mut messages: UnboundedReceiver<ToJobManager>) {
    let mut client: Option<JobManagerServiceClient<Channel>> = None;
    while let Some(message) = messages.recv().await {
        let deadline = Instant::now() + JOBMANAGER_TIMEOUT;
        loop {
            if client.is_none() {
                client = connect(&jobmanager).await.ok();
            }
            let sent = match (client.as_mut(), &message) {
                (Some(c), ToJobManager::Report(r)) => {
                    c.report_task_state(r.clone()).await.map(|_| ())
                }
                (Some(c), ToJobManager::Ack(a)) => {
                    c.acknowledge_checkpoint(a.clone()).await.map(|_| ())
                }
                (None, _) => Err(tonic::Status::unavailable("not connected")),
            };
            match sent {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    tracing::error!(?message, error = %e.message(), "could not tell the jobmanager");
                    break;
                }
                Err(_) => {
                    client = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
