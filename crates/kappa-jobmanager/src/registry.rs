//! The taskmanagers the jobmanager knows: registration with a protocol-version check,
//! heartbeats and their timeout, and slot allocation spread over taskmanagers.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kappa_proto::v1::task_manager_service_client::TaskManagerServiceClient;
use kappa_proto::v1::{ProtocolVersion, RegisterTaskManagerRequest};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

/// A registered taskmanager.
#[derive(Clone)]
pub struct TaskManagerEntry {
    pub id: String,
    pub address: String,
    pub version: String,
    pub slots: u32,
    pub used: u32,
    pub registered_at_ms: i64,
    pub last_heartbeat: Instant,
    pub memory_bytes: u64,
    pub client: TaskManagerServiceClient<Channel>,
    /// Which registration of its id this is (see [`Registry::lose`]).
    pub incarnation: u64,
}

/// A taskmanager as the REST API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskManagerView {
    pub id: String,
    pub address: String,
    pub version: String,
    pub slots_total: u32,
    pub slots_free: u32,
    pub registered_at_ms: i64,
    /// Milliseconds since its last heartbeat.
    pub last_heartbeat_ms_ago: u64,
    pub memory_bytes: u64,
}

/// All registered taskmanagers.
#[derive(Default)]
pub struct Registry {
    tms: Mutex<BTreeMap<String, TaskManagerEntry>>,
    /// Incarnation of the latest registration.
    incarnations: std::sync::atomic::AtomicU64,
    /// Signalled when slots may have become available.
    pub changed: Notify,
    /// Calls to taskmanagers go over mutual TLS with this identity.
    tls: Option<kappa_proto::tls::ClusterTls>,
}

impl Registry {
    /// An empty registry whose calls to taskmanagers use `tls` when given.
    pub fn new(tls: Option<kappa_proto::tls::ClusterTls>) -> Self {
        Self {
            tls,
            ..Self::default()
        }
    }

    /// Checks and records a registration (a known id registering again replaces itself);
    /// returns its incarnation.
    pub fn register(&self, req: &RegisterTaskManagerRequest, now_ms: i64) -> Result<u64, Status> {
        let current = ProtocolVersion::Current as u32;
        if req.protocol_version != current {
            tracing::error!(
                id = %req.taskmanager_id, address = %req.address, version = %req.version,
                protocol = req.protocol_version, expected = current,
                "refusing a taskmanager with an incompatible protocol version"
            );
            return Err(Status::failed_precondition(format!(
                "protocol version {} is not supported by this jobmanager (it speaks {current}, kappa {})",
                req.protocol_version,
                env!("CARGO_PKG_VERSION")
            )));
        }
        if req.taskmanager_id.is_empty() || req.address.is_empty() || req.slots == 0 {
            tracing::error!(id = %req.taskmanager_id, address = %req.address, slots = req.slots, "refusing a malformed registration");
            return Err(Status::invalid_argument(
                "a registration needs a taskmanager id, an address and at least one slot",
            ));
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", req.address))
            .map_err(|e| Status::invalid_argument(format!("address `{}`: {e}", req.address)))?
            .connect_timeout(Duration::from_secs(5));
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.client())
                .map_err(|e| Status::invalid_argument(format!("TLS to `{}`: {e}", req.address)))?;
        }
        let entry = TaskManagerEntry {
            id: req.taskmanager_id.clone(),
            address: req.address.clone(),
            version: req.version.clone(),
            slots: req.slots,
            used: 0,
            registered_at_ms: now_ms,
            last_heartbeat: Instant::now(),
            memory_bytes: 0,
            client: TaskManagerServiceClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(kappa_proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(kappa_proto::MAX_MESSAGE_BYTES),
            incarnation: self
                .incarnations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1,
        };
        tracing::info!(id = %entry.id, address = %entry.address, slots = entry.slots, version = %entry.version, "taskmanager registered");
        let incarnation = entry.incarnation;
        self.tms.lock().insert(entry.id.clone(), entry);
        self.changed.notify_waiters();
        Ok(incarnation)
    }

    /// Whether `incarnation` is the current registration of taskmanager `id`.
    pub fn is_current(&self, id: &str, incarnation: u64) -> bool {
        self.tms
            .lock()
            .get(id)
            .is_some_and(|t| t.incarnation == incarnation)
    }

    /// Removes taskmanager `id` (it does not answer); returns it.
    pub fn remove(&self, id: &str) -> Option<TaskManagerEntry> {
        self.tms.lock().remove(id)
    }

    /// Removes taskmanager `id` if `incarnation` is still its registration; returns it.
    pub fn lose(&self, id: &str, incarnation: u64) -> Option<TaskManagerEntry> {
        let mut tms = self.tms.lock();
        if tms.get(id)?.incarnation != incarnation {
            return None;
        }
        tms.remove(id)
    }

    /// Records a heartbeat; false if the taskmanager is not registered.
    pub fn heartbeat(&self, id: &str, memory_bytes: u64) -> bool {
        match self.tms.lock().get_mut(id) {
            Some(tm) => {
                tm.last_heartbeat = Instant::now();
                tm.memory_bytes = memory_bytes;
                true
            }
            None => false,
        }
    }

    /// Removes taskmanagers silent for longer than `timeout`; returns them.
    pub fn reap(&self, timeout: Duration) -> Vec<TaskManagerEntry> {
        let mut tms = self.tms.lock();
        let lost: Vec<String> = tms
            .values()
            .filter(|t| t.last_heartbeat.elapsed() > timeout)
            .map(|t| t.id.clone())
            .collect();
        lost.iter().filter_map(|id| tms.remove(id)).collect()
    }

    pub fn get(&self, id: &str) -> Option<TaskManagerEntry> {
        self.tms.lock().get(id).cloned()
    }

    /// Takes `n` slots spread over the taskmanagers with the most free slots; the id of the
    /// taskmanager of each slot, or None if fewer than `n` are free.
    pub fn allocate(&self, n: u32) -> Option<Vec<String>> {
        let mut tms = self.tms.lock();
        let free: u32 = tms.values().map(|t| t.slots - t.used.min(t.slots)).sum();
        if free < n {
            return None;
        }
        let mut placement = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let tm = tms
                .values_mut()
                .filter(|t| t.used < t.slots)
                .max_by(|a, b| {
                    (a.slots - a.used)
                        .cmp(&(b.slots - b.used))
                        .then_with(|| b.id.cmp(&a.id))
                })?;
            tm.used += 1;
            placement.push(tm.id.clone());
        }
        Some(placement)
    }

    /// Gives slots back (those of taskmanagers that are gone are simply forgotten).
    pub fn release(&self, placement: &[String]) {
        let mut tms = self.tms.lock();
        for id in placement {
            if let Some(t) = tms.get_mut(id) {
                t.used = t.used.saturating_sub(1);
            }
        }
        drop(tms);
        self.changed.notify_waiters();
    }

    /// (total, free) slots.
    pub fn slots(&self) -> (u32, u32) {
        let tms = self.tms.lock();
        let total = tms.values().map(|t| t.slots).sum();
        let free = tms.values().map(|t| t.slots - t.used.min(t.slots)).sum();
        (total, free)
    }

    /// Forgets every taskmanager (a deposed leader: they register with the new one).
    pub fn clear(&self) {
        self.tms.lock().clear();
    }

    pub fn views(&self) -> Vec<TaskManagerView> {
        self.tms
            .lock()
            .values()
            .map(|t| TaskManagerView {
                id: t.id.clone(),
                address: t.address.clone(),
                version: t.version.clone(),
                slots_total: t.slots,
                slots_free: t.slots - t.used.min(t.slots),
                registered_at_ms: t.registered_at_ms,
                last_heartbeat_ms_ago: t.last_heartbeat.elapsed().as_millis() as u64,
                memory_bytes: t.memory_bytes,
            })
            .collect()
    }

    /// Addresses by id, for placing subtasks.
    pub fn addresses(&self) -> HashMap<String, String> {
        self.tms
            .lock()
            .values()
            .map(|t| (t.id.clone(), t.address.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, slots: u32, protocol: u32) -> RegisterTaskManagerRequest {
        RegisterTaskManagerRequest {
            protocol_version: protocol,
            version: "test".into(),
            taskmanager_id: id.into(),
            address: "127.0.0.1:1".into(),
            slots,
            metrics_address: String::new(),
        }
    }

    #[tokio::test]
    async fn versions_are_checked_and_slots_spread() {
        let r = Registry::default();
        let current = ProtocolVersion::Current as u32;
        assert_eq!(
            r.register(&req("x", 4, current + 1), 0).unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(
            r.register(&req("", 4, current), 0).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        for id in ["a", "b", "c"] {
            r.register(&req(id, 2, current), 0).unwrap();
        }
        let p = r.allocate(4).unwrap();
        for id in ["a", "b", "c"] {
            let n = p.iter().filter(|t| *t == id).count();
            assert!(
                (1..=2).contains(&n),
                "slots spread over every taskmanager: {p:?}"
            );
        }
        assert_eq!(r.slots(), (6, 2));
        assert!(r.allocate(3).is_none());
        r.release(&p);
        assert_eq!(r.slots(), (6, 6));
    }
}
