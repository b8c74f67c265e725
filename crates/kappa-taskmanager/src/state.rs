//! What a taskmanager knows: its identity and slots, and the subtasks of each job attempt it
//! runs, with their inputs (for remote upstreams), split inboxes and metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_channel::Sender;
use kappa_connectors::kafka::PartitionStart;
use kappa_job::PhysicalGraph;
use kappa_job::graph::Partitioning;
use kappa_proto::v1::ExchangeHeader;
use kappa_runtime::channel::Tagged;
use kappa_runtime::metrics::SubtaskMetrics;
use kappa_runtime::subtask::Trigger;
use parking_lot::Mutex;
use tokio::sync::mpsc::UnboundedSender;

use kappa_proto::tls::{Authenticator, ClusterTls, Peer, Role};
use tonic::{Request, Status};

use crate::registration::ToJobManager;

/// How long a control call from a jobmanager identity waits for the registration to name it.
const LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// (job id, attempt number).
pub type AttemptKey = (String, u32);

/// (vertex id, subtask index).
pub type SubtaskKey = (u32, u32);

/// Where the frames of an exchange stream go: the downstream's input, the channel they
/// arrive on, the attempt's cancel flag and the edge's schema.
pub struct ExchangeInput {
    pub input: Sender<Tagged>,
    pub channel: u32,
    pub cancel: Arc<AtomicBool>,
    /// What its record batches must look like.
    pub schema: Option<arrow::datatypes::SchemaRef>,
    /// The taskmanager the upstream subtask runs on, the only one that may send on the stream.
    pub sender: Option<String>,
}

/// One deployed subtask.
pub struct LocalSubtask {
    pub vertex: u32,
    /// The vertex's name, for metric labels.
    pub name: String,
    pub subtask: u32,
    pub metrics: Arc<SubtaskMetrics>,
}

/// The part of a job attempt that runs here.
pub struct LocalAttempt {
    pub job_name: String,
    pub cancel: Arc<AtomicBool>,
    /// Whether the attempt is catching up with its sources (the jobmanager says).
    pub catching_up: Arc<AtomicBool>,
    /// The job's graph, to place the streams of remote upstreams.
    pub graph: Arc<PhysicalGraph>,
    /// The schema of the records of each edge, to check what remote upstreams send.
    pub edge_schemas: HashMap<u32, arrow::datatypes::SchemaRef>,
    /// Subtasks here fed by edges: their input channels.
    pub inputs: HashMap<SubtaskKey, Sender<Tagged>>,
    /// The taskmanager of every subtask of the attempt.
    pub placement: HashMap<SubtaskKey, String>,
    /// Source subtasks here: where newly discovered partitions are handed over.
    pub split_inboxes: HashMap<SubtaskKey, Sender<Vec<PartitionStart>>>,
    /// Source subtasks here: where checkpoint triggers go.
    pub checkpoint_triggers: HashMap<SubtaskKey, Sender<Trigger>>,
    /// Subtasks here that checkpoint: where completed checkpoints are announced.
    pub checkpoint_completions: Vec<Sender<u64>>,
    pub subtasks: Vec<LocalSubtask>,
    /// Subtask threads still running.
    pub running: AtomicUsize,
    /// Local working directory of its state, removed when the attempt ends.
    pub local_state: std::path::PathBuf,
}

/// State shared by the services and task threads of a taskmanager.
pub struct Shared {
    pub id: String,
    pub slots: u32,
    /// host:port other processes reach this taskmanager at.
    pub address: String,
    /// Local working directory of subtask state.
    pub state_dir: std::path::PathBuf,
    /// The memory every job's cached keyed state here shares (spilling windows).
    pub state_cache: Arc<kappa_runtime::budget::StateBudget>,
    /// The latest checkpoints of the keyed operators here, kept for restores here.
    pub local_recovery: kappa_state::LocalRecovery,
    /// What jobs may touch here, checked whatever the jobmanager checked.
    pub confinement: kappa_connectors::confine::Confinement,
    pub attempts: Mutex<HashMap<AttemptKey, Arc<LocalAttempt>>>,
    /// Attempts cancelled before their deployment arrived (a deployment can be overtaken by
    /// its cancel): they are refused if it comes. The most recent ones only.
    pub cancelled: Mutex<std::collections::VecDeque<AttemptKey>>,
    pub reports: UnboundedSender<ToJobManager>,
    pub handle: tokio::runtime::Handle,
    /// Mutual TLS with the cluster: this process's identity for its calls (data exchange).
    pub tls: Option<ClusterTls>,
    /// With mutual TLS: the identity of the jobmanager this taskmanager is registered with,
    /// the only one whose control calls it takes.
    pub leader: tokio::sync::watch::Sender<Option<String>>,
}

impl Shared {
    /// Who calls this taskmanager's services (nobody is checked without TLS).
    pub fn authenticator(&self) -> Authenticator {
        Authenticator::new(self.tls.is_some())
    }

    /// With mutual TLS: refuses control calls from anyone but the leader jobmanager this
    /// taskmanager is registered with. A jobmanager may call right after it answered the
    /// registration, before this taskmanager has read the answer: a call from another
    /// jobmanager identity waits a moment for the registration to name it.
    pub async fn check_leader<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(caller) = self.authenticator().require(req, Role::JobManager)? else {
            return Ok(());
        };
        let name = caller.to_string();
        let mut leader = self.leader.subscribe();
        let named = tokio::time::timeout(
            LEADER_WAIT,
            leader.wait_for(|l| l.as_deref() == Some(name.as_str())),
        )
        .await;
        if matches!(named, Ok(Ok(_))) {
            return Ok(());
        }
        let leader = self.leader.borrow().clone();
        tracing::error!(%caller, ?leader, "refusing a control call from a jobmanager that is not this taskmanager's leader");
        Err(Status::permission_denied(format!(
            "{caller} is not the jobmanager this taskmanager is registered with"
        )))
    }

    /// With mutual TLS: refuses an exchange stream unless `caller` is the taskmanager
    /// `upstream` names (the one running the stream's upstream subtask).
    pub fn check_sender(caller: Option<&Peer>, upstream: Option<&str>) -> Result<(), Status> {
        match caller {
            Some(p) if Some(p.name.as_str()) != upstream => {
                tracing::error!(caller = %p, upstream = ?upstream, "refusing an exchange stream from a taskmanager that does not run its upstream");
                Err(Status::permission_denied(format!(
                    "{p} does not run the upstream subtask of this stream"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The input of the downstream subtask an exchange stream is for, and the channel its
    /// frames arrive on; an error names what does not fit the job's graph.
    pub fn input_of(&self, h: &ExchangeHeader) -> Option<Result<ExchangeInput, String>> {
        let attempts = self.attempts.lock();
        let a = attempts.get(&(h.job_id.clone(), h.attempt))?;
        let Some(edge) = a.graph.edge(h.edge) else {
            return Some(Err(format!("the job has no edge {}", h.edge)));
        };
        let (Some(from), Some(to)) = (a.graph.vertex(edge.from), a.graph.vertex(edge.to)) else {
            return Some(Err(format!("edge {} names an unknown vertex", h.edge)));
        };
        let forward = edge.partitioning == Partitioning::Forward;
        if h.upstream >= from.parallelism
            || h.downstream >= to.parallelism
            || (forward && h.upstream != h.downstream)
        {
            return Some(Err(format!(
                "edge {} has no stream from subtask {} to subtask {}",
                h.edge, h.upstream, h.downstream
            )));
        }
        let Some(channel) = a.graph.channel(h.edge, h.upstream) else {
            return Some(Err(format!(
                "edge {} has no channel for subtask {}",
                h.edge, h.upstream
            )));
        };
        let input = a.inputs.get(&(to.id, h.downstream))?.clone();
        Some(Ok(ExchangeInput {
            input,
            channel,
            cancel: Arc::clone(&a.cancel),
            schema: a.edge_schemas.get(&h.edge).cloned(),
            sender: a.placement.get(&(from.id, h.upstream)).cloned(),
        }))
    }

    /// Called by each subtask thread as it ends; forgets the attempt after the last one.
    pub fn subtask_ended(&self, key: &AttemptKey) {
        let mut attempts = self.attempts.lock();
        if let Some(a) = attempts.get(key)
            && a.running.fetch_sub(1, Ordering::SeqCst) == 1
        {
            let _ = std::fs::remove_dir_all(&a.local_state);
            attempts.remove(key);
        }
    }

    /// Slots taken by running attempts (one per subtask index, as with slot sharing).
    pub fn slots_used(&self) -> u32 {
        self.attempts
            .lock()
            .values()
            .map(|a| {
                let mut idx: Vec<u32> = a.subtasks.iter().map(|s| s.subtask).collect();
                idx.sort_unstable();
                idx.dedup();
                idx.len() as u32
            })
            .sum()
    }
}
