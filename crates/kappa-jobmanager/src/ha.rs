//! High availability on etcd: jobmanagers campaign for leadership with a lease; the leader
//! takes over the jobs kept in etcd, and steps down at once when it loses its lease.
//!
//! A standby answers REST calls with a redirect to the leader and gRPC calls with
//! UNAVAILABLE naming the leader, so kappactl and taskmanagers find it. The leader's writes to
//! etcd are transactions conditioned on its leadership key, so a deposed leader writes nothing.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex as AsyncMutex;

use crate::Inner;
use crate::store::{EtcdJobs, StoreError};

/// Lease time-to-live: a leader that stops renewing is replaced after this long.
const LEASE_TTL_SECONDS: i64 = 5;
/// How long connecting to etcd may take at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `--ha etcd` settings.
#[derive(Debug, Clone)]
pub struct HaConfig {
    pub endpoints: Vec<String>,
    /// Key prefix of this cluster in etcd (several clusters can share one etcd).
    pub prefix: String,
}

/// Where a jobmanager can be reached, as published in the election.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaderInfo {
    pub id: String,
    pub rest: String,
    pub rpc: String,
}

/// What this jobmanager is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// Waiting to lead; the leader, when known.
    Standby(Option<LeaderInfo>),
}

/// Connects to etcd, failing with the endpoints named when none answers.
pub async fn connect(config: &HaConfig) -> Result<Client, StoreError> {
    // No request timeout: a campaign waits as long as another jobmanager leads.
    let options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT);
    let mut client = Client::connect(&config.endpoints, Some(options))
        .await
        .map_err(|e| {
            StoreError::Etcd(format!(
                "cannot reach etcd at {}: {e}",
                config.endpoints.join(",")
            ))
        })?;
    // A connection is lazy: ask something to find out whether etcd answers.
    let answered = tokio::time::timeout(CONNECT_TIMEOUT, client.status()).await;
    if let Err(why) = answered
        .map_err(|_| "no answer".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        return Err(StoreError::Etcd(format!(
            "cannot reach etcd at {}: {why}",
            config.endpoints.join(",")
        )));
    }
    Ok(client)
}

fn election(prefix: &str) -> String {
    format!("{prefix}/leader")
}

/// Campaigns, leads, steps down when the lease is lost, and campaigns again, forever.
pub(crate) async fn run(inner: Arc<Inner>, jobs: Arc<EtcdJobs>, client: Client, me: LeaderInfo) {
    let value = serde_json::to_vec(&me).unwrap_or_default();
    let name = election(&jobs.prefix);
    tokio::spawn(watch_leader(
        Arc::clone(&inner),
        client.clone(),
        name.clone(),
    ));
    loop {
        let mut c = client.clone();
        let granted = tokio::time::timeout(CONNECT_TIMEOUT, c.lease_grant(LEASE_TTL_SECONDS, None))
            .await
            .unwrap_or_else(|_| Err(etcd_client::Error::InvalidArgs("no answer".into())));
        let lease = match granted {
            Ok(l) => l.id(),
            Err(e) => {
                tracing::warn!(error = %e, "etcd: cannot get a lease; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (lost_tx, mut lost) = tokio::sync::watch::channel(false);
        tokio::spawn(keep_alive(client.clone(), lease, lost_tx));
        let campaign = c.campaign(name.clone(), value.clone(), lease);
        let won = tokio::select! {
            r = campaign => r,
            _ = lost.changed() => {
                tracing::warn!("etcd: lease lost while campaigning; starting over");
                continue;
            }
        };
        let key = match won.as_ref().ok().and_then(|r| r.leader()) {
            Some(k) => k.key().to_vec(),
            None => {
                if let Err(e) = won {
                    tracing::warn!(error = %e, "etcd: campaign failed; retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        *jobs.leader_key.lock() = Some(key);
        tracing::info!(id = %me.id, "elected leader: taking over the jobs kept in etcd");
        inner.lead(me.clone()).await;
        // Lead until the lease is lost (etcd unreachable, or the lease expired).
        while !*lost.borrow() {
            if lost.changed().await.is_err() {
                break;
            }
        }
        jobs.leader_key.lock().take();
        tracing::error!(id = %me.id, "lost the leadership lease: stepping down, stopping every job driver");
        inner.step_down();
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, c.lease_revoke(lease)).await;
    }
}

/// Renews `lease` a few times per TTL; reports when renewal fails or the lease is gone.
async fn keep_alive(mut client: Client, lease: i64, lost: tokio::sync::watch::Sender<bool>) {
    let interval = Duration::from_millis((LEASE_TTL_SECONDS as u64 * 1000) / 4);
    let mut started = client.lease_keep_alive(lease).await;
    let mut last_ok = tokio::time::Instant::now();
    loop {
        let renewed = async {
            match started.as_mut() {
                Ok((keeper, stream)) => match keeper.keep_alive().await {
                    Ok(()) => matches!(stream.message().await, Ok(Some(r)) if r.ttl() > 0),
                    Err(_) => false,
                },
                Err(_) => false,
            }
        };
        let alive = tokio::time::timeout(interval, renewed)
            .await
            .unwrap_or(false);
        if alive {
            last_ok = tokio::time::Instant::now();
        } else {
            // Stop acting well before etcd could give the leadership to someone else.
            if last_ok.elapsed() >= Duration::from_secs(LEASE_TTL_SECONDS as u64) / 2 {
                let _ = lost.send(true);
                return;
            }
            started = match tokio::time::timeout(interval, client.lease_keep_alive(lease)).await {
                Ok(r) => r,
                Err(_) => Err(etcd_client::Error::InvalidArgs("timed out".into())),
            };
        }
        tokio::time::sleep(interval).await;
    }
}

/// Keeps the standby's idea of the leader up to date.
async fn watch_leader(inner: Arc<Inner>, mut client: Client, name: String) {
    loop {
        let leader = tokio::time::timeout(CONNECT_TIMEOUT, client.leader(name.clone()))
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|r| r.kv().map(|kv| kv.value().to_vec()))
            .and_then(|v| serde_json::from_slice::<LeaderInfo>(&v).ok());
        {
            let mut role = inner.role.write();
            if let Role::Standby(known) = &mut *role {
                *known = leader;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The etcd store of job records for `client` under `prefix`.
pub fn job_store(client: Client, prefix: &str) -> Arc<EtcdJobs> {
    Arc::new(EtcdJobs {
        client: AsyncMutex::new(client),
        prefix: prefix.trim_end_matches('/').to_string(),
        leader_key: parking_lot::Mutex::new(None),
    })
}
