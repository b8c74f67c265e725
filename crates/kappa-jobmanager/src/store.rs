//! What outlives a jobmanager process: each job's record (its file, how it was submitted, its
//! state, its latest completed checkpoint) and each upgrade's, in etcd with HA or else under
//! the checkpoint root.

use std::sync::Arc;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use object_store::{ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
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
    /// The text of job.toml, literal secrets redacted (`***`).
    pub spec: String,
    /// Its literal secrets, sealed with the jobmanagers' `--secret-key-file` (base64 of a
    /// `kappa.v1.SealedSecrets`); absent without literal secrets, without a key, and in
    /// records of earlier releases (whose `spec` is the file as submitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_secrets: Option<String>,
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
    /// When the job ended (its record is deleted a retention after).
    #[serde(default)]
    pub ended_at_ms: Option<i64>,
}

/// A kind of record the store keeps: `{prefix}/{KIND}/{id}` in etcd, else
/// `{checkpoint root}/_{KIND}/{id}.json`.
pub trait Record: Serialize + DeserializeOwned {
    const KIND: &'static str;
    fn id(&self) -> &str;
    /// Records are loaded in this order.
    fn order(&self) -> i64;
}

impl Record for JobRecord {
    const KIND: &'static str = "jobs";
    fn id(&self) -> &str {
        &self.id
    }
    fn order(&self) -> i64 {
        self.submitted_at_ms
    }
}

impl Record for crate::upgrade::record::UpgradeRecord {
    const KIND: &'static str = "upgrades";
    fn id(&self) -> &str {
        &self.id
    }
    fn order(&self) -> i64 {
        self.started_at_ms
    }
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
        let (last_attempt, ended_at_ms) = {
            let s = job.status.lock();
            let last = s.attempts.last().map_or(job.attempt_offset, |a| a.attempt);
            (last, s.ended_at_ms)
        };
        Self {
            id: job.id.clone(),
            file_name: job.file_name.clone(),
            spec: job.text.shown.clone(),
            sealed_secrets: job.text.sealed.clone(),
            start: job.submitted.start.clone(),
            parallelism: job.submitted.parallelism,
            allow_non_restored_state: job.submitted.allow_non_restored_state,
            submitted_at_ms: job.submitted_at_ms,
            state: job.state().name().to_string(),
            latest_checkpoint,
            last_attempt,
            ended_at_ms,
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

impl EtcdJobs {
    /// Runs `op` only while this jobmanager's leadership key exists: a deposed leader changes
    /// nothing.
    async fn leader_txn(&self, op: TxnOp) -> Result<(), StoreError> {
        let Some(leader) = self.leader_key.lock().clone() else {
            return Err(StoreError::NotLeader);
        };
        let txn = Txn::new()
            .when([Compare::version(leader, CompareOp::Greater, 0)])
            .and_then([op]);
        let mut client = self.client.lock().await;
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
    pub async fn put<R: Record>(&self, record: &R) -> Result<(), StoreError> {
        let id = record.id();
        let json = serde_json::to_vec(record)
            .map_err(|e| StoreError::Corrupt(format!("{} {id}", R::KIND), e.to_string()))?;
        match self {
            Self::None => Ok(()),
            Self::Objects(location) => {
                let path = location.child(&[&format!("_{}", R::KIND), &format!("{id}.json")]);
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
                let key = format!("{}/{}/{id}", e.prefix, R::KIND);
                e.leader_txn(TxnOp::put(key, json, None)).await
            }
        }
    }

    /// Deletes the record `id` of kind `R` (with HA only while this jobmanager is the leader).
    pub async fn delete<R: Record>(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Self::None => Ok(()),
            Self::Objects(location) => {
                let path = location.child(&[&format!("_{}", R::KIND), &format!("{id}.json")]);
                match location.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(StoreError::Objects(format!(
                        "deleting {}: {e}",
                        location.show(&path)
                    ))),
                }
            }
            Self::Etcd(e) => {
                let key = format!("{}/{}/{id}", e.prefix, R::KIND);
                e.leader_txn(TxnOp::delete(key, None)).await
            }
        }
    }

    /// Every record kept, each read on its own: a record that cannot be read is an error in
    /// its place and keeps no other from being resumed. Err only when the store cannot be
    /// listed at all.
    pub async fn load<R: Record>(&self) -> Result<Vec<Result<R, StoreError>>, StoreError> {
        let mut out: Vec<Result<R, StoreError>> = Vec::new();
        match self {
            Self::None => {}
            Self::Objects(location) => {
                use tokio_stream::StreamExt;
                let dir = location.child(&[&format!("_{}", R::KIND)]);
                let mut metas = Vec::new();
                let mut listing = location.store.list(Some(&dir));
                while let Some(m) = listing.next().await {
                    metas.push(m.map_err(|e| {
                        StoreError::Objects(format!("listing {}: {e}", location.show(&dir)))
                    })?);
                }
                for m in metas {
                    out.push(read_object(location, &m.location).await);
                }
            }
            Self::Etcd(e) => {
                let prefix = format!("{}/{}/", e.prefix, R::KIND);
                for (key, value) in etcd_page_through(e, &prefix).await? {
                    out.push(parse(&key, &value));
                }
            }
        }
        out.sort_by_key(|r| r.as_ref().map_or(i64::MIN, |r| r.order()));
        Ok(out)
    }
}

/// Records per etcd response: a record may be as large as etcd's request limit (1.5 MiB by
/// default), and a response must stay under the client's 4 MiB message limit.
const ETCD_PAGE: i64 = 2;

/// Every key and value under `prefix`, a page at a time.
async fn etcd_page_through(
    e: &EtcdJobs,
    prefix: &str,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let end = prefix_end(prefix.as_bytes());
    let mut from = prefix.as_bytes().to_vec();
    let mut out = Vec::new();
    loop {
        let options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(ETCD_PAGE);
        let mut client = e.client.lock().await;
        let resp = tokio::time::timeout(ETCD_TIMEOUT, client.get(from.clone(), Some(options)))
            .await
            .map_err(|_| StoreError::Etcd("no answer".into()))?
            .map_err(|x| StoreError::Etcd(x.to_string()))?;
        drop(client);
        for kv in resp.kvs() {
            out.push((
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.value().to_vec(),
            ));
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                // The next page starts right after the last key.
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok(out),
        }
    }
}

/// The end of the key range of `prefix` (its last byte below 0xff incremented).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(b) = end.pop() {
        if b < 0xff {
            end.push(b + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the key space.
    vec![0]
}

async fn read_object<R: Record>(
    location: &kappa_state::Location,
    path: &object_store::path::Path,
) -> Result<R, StoreError> {
    let shown = location.show(path);
    let bytes = location
        .store
        .get(path)
        .await
        .map_err(|e| StoreError::Objects(format!("reading {shown}: {e}")))?
        .bytes()
        .await
        .map_err(|e| StoreError::Objects(format!("reading {shown}: {e}")))?;
    parse(&shown, &bytes)
}

/// A record read back: hostile until it parses and names itself where it is kept.
fn parse<R: Record>(place: &str, bytes: &[u8]) -> Result<R, StoreError> {
    let record: R = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(place.to_string(), e.to_string()))?;
    let named = place
        .trim_end_matches(".json")
        .rsplit('/')
        .next()
        .is_some_and(|id| id == record.id());
    match named {
        true => Ok(record),
        false => Err(StoreError::Corrupt(
            place.to_string(),
            format!("the record is of {} `{}`", R::KIND, record.id()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"/kappa/jobs/"), b"/kappa/jobs0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn a_record_must_parse_and_be_kept_under_its_own_id() {
        let record = JobRecord {
            id: "j1".into(),
            file_name: "job.toml".into(),
            spec: String::new(),
            sealed_secrets: None,
            start: None,
            parallelism: None,
            allow_non_restored_state: false,
            submitted_at_ms: 1,
            state: "RUNNING".into(),
            latest_checkpoint: Some(3),
            last_attempt: 1,
            ended_at_ms: None,
        };
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(parse::<JobRecord>("/kappa/jobs/j1", &json).unwrap(), record);
        assert_eq!(
            parse::<JobRecord>("chk/_jobs/j1.json", &json).unwrap(),
            record
        );
        let moved = parse::<JobRecord>("/kappa/jobs/j2", &json)
            .unwrap_err()
            .to_string();
        assert!(
            moved.contains("/kappa/jobs/j2") && moved.contains("jobs `j1`"),
            "{moved}"
        );
        let corrupt = parse::<JobRecord>("/kappa/jobs/j1", b"{\"id\": ")
            .unwrap_err()
            .to_string();
        assert!(corrupt.starts_with("/kappa/jobs/j1: "), "{corrupt}");
    }
}
