//! What outlives a jobmanager process: each job's record (its file, how it was submitted, its
//! state, its latest completed checkpoint), in etcd with HA or else under the checkpoint root.

use std::sync::Arc;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use object_store::{ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex as AsyncMutex;

use crate::job::JobEntry;

/// How long one etcd request may take.
const ETCD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A job as kept in the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub file_name: String,
    /// The text of job.toml.
    pub spec: String,
    /// The start given at submission (`savepoint:…` and `checkpoint:…` included).
    pub start: Option<String>,
    pub parallelism: Option<u32>,
    pub allow_non_restored_state: bool,
    pub submitted_at_ms: i64,
    /// The job's state name; a job in a terminal state is not resumed.
    pub state: String,
    /// The latest completed checkpoint: a resumed job restores from it.
    pub latest_checkpoint: Option<u64>,
    /// The number of the latest attempt.
    #[serde(default)]
    pub last_attempt: u32,
}

/// How a job was submitted (what its record keeps besides the entry).
#[derive(Debug, Clone, Default)]
pub struct Submitted {
    pub start: Option<String>,
    pub parallelism: Option<u32>,
    pub allow_non_restored_state: bool,
}

impl JobRecord {
    /// The record of `job` now.
    pub fn of(job: &JobEntry) -> Self {
        let latest_checkpoint = job
            .checkpoints
            .lock()
            .as_ref()
            .and_then(|c| c.latest().map(|m| m.checkpoint_id));
        Self {
            id: job.id.clone(),
            file_name: job.file_name.clone(),
            spec: job.spec.clone(),
            start: job.submitted.start.clone(),
            parallelism: job.submitted.parallelism,
            allow_non_restored_state: job.submitted.allow_non_restored_state,
            submitted_at_ms: job.submitted_at_ms,
            state: job.state().name().to_string(),
            latest_checkpoint,
            last_attempt: job
                .status
                .lock()
                .attempts
                .last()
                .map_or(job.attempt_offset, |a| a.attempt),
        }
    }
}

/// Why the store could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("etcd: {0}")]
    Etcd(String),
    #[error("{0}")]
    Objects(String),
    #[error("{0}: {1}")]
    Corrupt(String, String),
    #[error("this jobmanager is no longer the leader")]
    NotLeader,
}

/// Job records in etcd under `{prefix}/jobs/`, written only while this jobmanager leads.
pub struct EtcdJobs {
    pub client: AsyncMutex<etcd_client::Client>,
    pub prefix: String,
    /// The key that holds this jobmanager's leadership, while it leads.
    pub leader_key: Mutex<Option<Vec<u8>>>,
}

/// Where job records are kept.
pub enum JobStore {
    /// Nowhere (no checkpoint directory and no HA): jobs end with the process.
    None,
    /// `{checkpoint root}/_jobs/{id}.json`.
    Objects(kappa_state::Location),
    Etcd(Arc<EtcdJobs>),
}

impl JobStore {
    /// Writes `record` (with HA only while this jobmanager is the leader).
    pub async fn put(&self, record: &JobRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec(record)
            .map_err(|e| StoreError::Corrupt(format!("job {}", record.id), e.to_string()))?;
        match self {
            Self::None => Ok(()),
            Self::Objects(location) => {
                let path = location.child(&["_jobs", &format!("{}.json", record.id)]);
                location
                    .store
                    .put(&path, PutPayload::from(json))
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        StoreError::Objects(format!("writing {}: {e}", location.show(&path)))
                    })
            }
            Self::Etcd(e) => {
                let Some(leader) = e.leader_key.lock().clone() else {
                    return Err(StoreError::NotLeader);
                };
                let key = format!("{}/jobs/{}", e.prefix, record.id);
                // Only while the leadership key exists: a deposed leader writes nothing.
                let txn = Txn::new()
                    .when([Compare::version(leader, CompareOp::Greater, 0)])
                    .and_then([TxnOp::put(key, json, None)]);
                let mut client = e.client.lock().await;
                let resp = tokio::time::timeout(ETCD_TIMEOUT, client.txn(txn))
                    .await
                    .map_err(|_| StoreError::Etcd("no answer".into()))?
                    .map_err(|x| StoreError::Etcd(x.to_string()))?;
                match resp.succeeded() {
                    true => Ok(()),
                    false => Err(StoreError::NotLeader),
                }
            }
        }
    }

    /// Every record kept.
    pub async fn load(&self) -> Result<Vec<JobRecord>, StoreError> {
        let mut out: Vec<JobRecord> = Vec::new();
        match self {
            Self::None => {}
            Self::Objects(location) => {
                use tokio_stream::StreamExt;
                let dir = location.child(&["_jobs"]);
                let mut metas = Vec::new();
                let mut listing = location.store.list(Some(&dir));
                while let Some(m) = listing.next().await {
                    metas.push(m.map_err(|e| {
                        StoreError::Objects(format!("listing {}: {e}", location.show(&dir)))
                    })?);
                }
                for m in metas {
                    let shown = location.show(&m.location);
                    let bytes = location
                        .store
                        .get(&m.location)
                        .await
                        .map_err(|e| StoreError::Objects(format!("reading {shown}: {e}")))?
                        .bytes()
                        .await
                        .map_err(|e| StoreError::Objects(format!("reading {shown}: {e}")))?;
                    out.push(
                        serde_json::from_slice(&bytes)
                            .map_err(|e| StoreError::Corrupt(shown, e.to_string()))?,
                    );
                }
            }
            Self::Etcd(e) => {
                let prefix = format!("{}/jobs/", e.prefix);
                let mut client = e.client.lock().await;
                let get = client.get(prefix.clone(), Some(GetOptions::new().with_prefix()));
                let resp = tokio::time::timeout(ETCD_TIMEOUT, get)
                    .await
                    .map_err(|_| StoreError::Etcd("no answer".into()))?
                    .map_err(|x| StoreError::Etcd(x.to_string()))?;
                for kv in resp.kvs() {
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    out.push(
                        serde_json::from_slice(kv.value())
                            .map_err(|x| StoreError::Corrupt(key, x.to_string()))?,
                    );
                }
            }
        }
        out.sort_by_key(|r| r.submitted_at_ms);
        Ok(out)
    }
}
