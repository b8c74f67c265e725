//! The taskmanager's side of the cluster protocol: register with the jobmanager (the leader,
//! with HA), send heartbeats with the metrics of running subtasks, forward subtask state
//! reports, and cancel local work when the jobmanager stays unreachable or is replaced.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kappa_proto::tls::ClusterTls;
use kappa_proto::v1::job_manager_service_client::JobManagerServiceClient;
use kappa_proto::v1::{
    AttachRequest, CheckpointAck, HeartbeatRequest, LatencyBucket, PartitionProgress,
    ProtocolVersion, RegisterTaskManagerRequest, SubtaskMetrics, TaskStateReport,
};
use kappa_runtime::metrics::SubtaskMetrics as Live;
use tokio::sync::mpsc::UnboundedReceiver;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::TaskManagerError;
use crate::state::Shared;

/// Without a successful heartbeat for this long, local subtasks are cancelled (the jobmanager
/// will have given up on them and may run them elsewhere).
const JOBMANAGER_TIMEOUT: Duration = Duration::from_secs(15);

/// The jobmanagers this taskmanager may talk to, and the one it talks to now.
pub struct JobManagers {
    candidates: Vec<String>,
    current: parking_lot::Mutex<String>,
    /// Mutual TLS: connect with this identity to jobmanagers of the cluster CA.
    tls: Option<ClusterTls>,
    /// The host name jobmanagers' certificates are checked for (default: the URL's host).
    tls_name: Option<String>,
}

/// The leader a standby jobmanager's refusal names, if it names one.
fn leader_of(s: &tonic::Status) -> Option<&str> {
    s.metadata()
        .get(kappa_proto::LEADER_METADATA_KEY)?
        .to_str()
        .ok()
        .filter(|l| !l.is_empty())
}

impl JobManagers {
    /// From one URL or a comma-separated list.
    pub fn new(list: &str, tls: Option<ClusterTls>, tls_name: Option<String>) -> Self {
        let candidates: Vec<String> = list
            .split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        let first = candidates.first().cloned().unwrap_or_default();
        Self {
            candidates,
            current: parking_lot::Mutex::new(first),
            tls,
            tls_name,
        }
    }

    /// A client of the current jobmanager (over mutual TLS when the cluster has it: an
    /// `http://` URL is then taken as `https://`).
    async fn connect(&self) -> Result<JobManagerServiceClient<Channel>, tonic::transport::Error> {
        let url = self.current();
        let endpoint = match &self.tls {
            Some(tls) => {
                let url = match url.strip_prefix("http://") {
                    Some(rest) => format!("https://{rest}"),
                    None => url,
                };
                let mut config = tls.client();
                if let Some(name) = &self.tls_name {
                    config = config.domain_name(name.clone());
                }
                Endpoint::from_shared(url)?.tls_config(config)?
            }
            None => Endpoint::from_shared(url)?,
        };
        Ok(JobManagerServiceClient::new(endpoint.connect().await?)
            .max_decoding_message_size(kappa_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(kappa_proto::MAX_MESSAGE_BYTES))
    }

    pub fn current(&self) -> String {
        self.current.lock().clone()
    }

    /// After a failure: go to the leader a standby named, else to the next jobmanager given
    /// (from a leader that was named but fails, back to the first one given).
    fn switch(&self, leader: Option<&str>) {
        let mut current = self.current.lock();
        if let Some(leader) = leader {
            *current = leader.to_string();
            return;
        }
        if self.candidates.is_empty() {
            return;
        }
        let at = self.candidates.iter().position(|c| *c == *current);
        let next = at.map_or(0, |i| (i + 1) % self.candidates.len());
        *current = self.candidates[next].clone();
    }
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
        stalled_splits: Live::get(&m.stalled_splits),
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
        latency: m
            .latency
            .lock()
            .buckets()
            .map(|(micros, rows)| LatencyBucket { micros, rows })
            .collect(),
        state: Some(kappa_state::figures_to_proto(&m.state.figures())),
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

/// Registers and heartbeats until refused (incompatible version); reconnects on failures,
/// following a standby to the leader.
pub async fn register_and_heartbeat(
    shared: Arc<Shared>,
    jobmanagers: Arc<JobManagers>,
) -> Result<(), TaskManagerError> {
    let mut last_ok = Instant::now();
    let mut warned = false;
    let mut registered_before = false;
    loop {
        let jobmanager = jobmanagers.current();
        if last_ok.elapsed() > JOBMANAGER_TIMEOUT && !shared.attempts.lock().is_empty() {
            tracing::error!(%jobmanager, "jobmanager unreachable for {JOBMANAGER_TIMEOUT:?}: cancelling local subtasks");
            cancel_everything(&shared);
        }
        let mut client = match jobmanagers.connect().await {
            Ok(c) => c,
            Err(e) => {
                if !warned {
                    tracing::warn!(%jobmanager, error = %e, "cannot reach the jobmanager; retrying");
                    warned = true;
                }
                jobmanagers.switch(None);
                tokio::time::sleep(Duration::from_millis(500)).await;
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
        let (interval, incarnation) = match client.register_task_manager(request).await {
            Ok(r) => {
                let r = r.into_inner();
                // With mutual TLS, only this jobmanager's calls are taken from now on.
                shared
                    .leader
                    .send_replace(Some(r.jobmanager_identity).filter(|i| !i.is_empty()));
                (
                    Duration::from_millis(r.heartbeat_interval_ms.max(100)),
                    r.incarnation,
                )
            }
            Err(s) if s.code() == Code::FailedPrecondition || s.code() == Code::InvalidArgument => {
                tracing::error!(%jobmanager, reason = %s.message(), "the jobmanager refused this taskmanager");
                return Err(TaskManagerError::Refused(s.message().to_string()));
            }
            Err(s) => {
                tracing::warn!(%jobmanager, error = %s.message(), "registration failed; retrying");
                jobmanagers.switch(leader_of(&s));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if registered_before && !shared.attempts.lock().is_empty() {
            // The jobmanager we register with now did not deploy what runs here (it restarted,
            // timed us out, or another one leads): it restarts those jobs itself.
            tracing::warn!(%jobmanager, "registered again: cancelling the subtasks of the previous registration");
            cancel_everything(&shared);
        }
        registered_before = true;
        tracing::info!(%jobmanager, id = %shared.id, slots = shared.slots, address = %shared.address, "registered with the jobmanager");
        warned = false;
        last_ok = Instant::now();
        // Held open while this registration lasts: the jobmanager sees this process end at once.
        let _attached = Attached(tokio::spawn(attach(
            client.clone(),
            AttachRequest {
                taskmanager_id: shared.id.clone(),
                incarnation,
            },
        )));
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
                Err(s) if s.code() == Code::Unavailable && leader_of(&s).is_some() => {
                    tracing::warn!(error = %s.message(), "the jobmanager is no longer the leader: following the new one");
                    jobmanagers.switch(leader_of(&s));
                    break;
                }
                Err(s) => {
                    tracing::warn!(error = %s.message(), "heartbeat failed");
                    // The jobmanager may be gone: with several, look for the leader elsewhere.
                    if last_ok.elapsed() > JOBMANAGER_TIMEOUT
                        || (jobmanagers.candidates.len() > 1 && last_ok.elapsed() > interval * 3)
                    {
                        jobmanagers.switch(None);
                        break;
                    }
                }
            }
        }
    }
}

/// The task holding the control stream of one registration open; stops it when dropped.
struct Attached(tokio::task::JoinHandle<()>);

impl Drop for Attached {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens the control stream and holds it until the jobmanager ends it.
async fn attach(mut client: JobManagerServiceClient<Channel>, req: AttachRequest) {
    match client.attach(req).await {
        Ok(stream) => {
            let mut stream = stream.into_inner();
            while let Ok(Some(_)) = stream.message().await {}
            tracing::debug!("the control stream to the jobmanager ended");
        }
        Err(s) => tracing::warn!(error = %s.message(), "could not open the control stream"),
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
pub async fn forward_reports(
    jobmanagers: Arc<JobManagers>,
    mut messages: UnboundedReceiver<ToJobManager>,
) {
    let mut client: Option<JobManagerServiceClient<Channel>> = None;
    while let Some(message) = messages.recv().await {
        let deadline = Instant::now() + JOBMANAGER_TIMEOUT;
        loop {
            if client.is_none() {
                client = jobmanagers.connect().await.ok();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_leader_that_fails_leads_back_to_the_jobmanagers_given() {
        let one = JobManagers::new("https://jm-rpc:6123", None, None);
        one.switch(Some("https://10.0.0.7:6123"));
        assert_eq!(one.current(), "https://10.0.0.7:6123");
        one.switch(None);
        assert_eq!(one.current(), "https://jm-rpc:6123", "back to the Service");
        one.switch(None);
        assert_eq!(one.current(), "https://jm-rpc:6123");

        let two = JobManagers::new("http://a:1, http://b:1", None, None);
        two.switch(None);
        assert_eq!(two.current(), "http://b:1");
        two.switch(Some("http://c:1"));
        two.switch(None);
        assert_eq!(two.current(), "http://a:1");
    }
}
