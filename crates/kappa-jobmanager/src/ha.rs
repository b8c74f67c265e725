//! High availability on etcd: jobmanagers campaign for leadership with a lease; the leader
//! takes over the jobs kept in etcd, and steps down at once when it loses its lease.
//!
//! A standby answers REST calls with a redirect to the leader and gRPC calls with
//! UNAVAILABLE naming the leader, so kappactl and taskmanagers find it. The leader's writes to
//! etcd are transactions conditioned on its leadership key, so a deposed leader writes nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex as AsyncMutex;

use crate::Inner;
use crate::store::EtcdJobs;

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
    /// TLS to etcd (`https://` endpoints).
    pub tls: Option<EtcdTls>,
    /// User and password, for an etcd with authentication on.
    pub auth: Option<EtcdAuth>,
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

/// The files of TLS to etcd: the CA its servers' certificates are checked against (with the
/// endpoint's host name), and optionally a client certificate and key.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}

/// An etcd user and password; the password is never shown.
#[derive(Clone)]
pub struct EtcdAuth {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for EtcdAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EtcdAuth {{ user: {:?}, password: *** }}", self.user)
    }
}

/// Why the jobmanager cannot use etcd at start. It does not retry: a process manager restarts
/// it, and the reason (a wrong CA, password or address) is in the message.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("reading the etcd {what} `{}`", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach etcd at {endpoints}{hint}")]
    Unreachable {
        endpoints: String,
        /// What may be missing, or nothing.
        hint: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd at {endpoints} did not answer within {CONNECT_TIMEOUT:?}")]
    NoAnswer { endpoints: String },
    #[error("etcd at {endpoints} refused {}", who(.user))]
    Refused {
        endpoints: String,
        user: Option<String>,
        #[source]
        source: etcd_client::Error,
    },
}

fn who(user: &Option<String>) -> String {
    match user {
        Some(u) => format!("user `{u}` (--etcd-user, --etcd-password-file or KAPPA_ETCD_PASSWORD)"),
        None => "a client without a user (its authentication is on: give --etcd-user)".into(),
    }
}

/// Whether etcd refused who asks, rather than not answering.
fn is_refusal(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if matches!(s.code(), Code::InvalidArgument | Code::Unauthenticated | Code::PermissionDenied)
            || s.message().contains("user name is empty"))
}

impl HaConfig {
    fn options(&self) -> Result<ConnectOptions, EtcdError> {
        let read = |what: &'static str, path: &PathBuf| {
            std::fs::read(path).map_err(|source| EtcdError::Read {
                what,
                path: path.clone(),
                source,
            })
        };
        // No request timeout: a campaign waits as long as another jobmanager leads.
        let mut options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT);
        if let Some(tls) = &self.tls {
            let mut t =
                TlsOptions::new().ca_certificate(Certificate::from_pem(read("CA", &tls.ca)?));
            if let Some((cert, key)) = &tls.client {
                t = t.identity(Identity::from_pem(
                    read("client certificate", cert)?,
                    read("client key", key)?,
                ));
            }
            options = options.with_tls(t);
        }
        if let Some(auth) = &self.auth {
            // Tokens expire (simple tokens after --auth-token-ttl, and when etcd restarts): a
            // request refused for its token authenticates again and is retried once.
            options = options
                .with_user(auth.user.clone(), auth.password.clone())
                .with_auto_token_refresh(true);
        }
        Ok(options)
    }
}

/// Connects to etcd and reads this cluster's prefix, failing with the endpoints named when
/// none answers and with the user when etcd refuses it.
pub async fn connect(config: &HaConfig) -> Result<Client, EtcdError> {
    let endpoints = config.endpoints.join(",");
    let user = config.auth.as_ref().map(|a| a.user.clone());
    // A server that wants a client certificate closes the connection without saying why.
    let hint = match &config.tls {
        Some(EtcdTls { client: None, .. }) => {
            " (if etcd asks clients for certificates, give --etcd-cert and --etcd-key)"
        }
        _ => "",
    };
    let failed = |source: etcd_client::Error| match is_refusal(&source) {
        true => EtcdError::Refused {
            endpoints: endpoints.clone(),
            user: user.clone(),
            source,
        },
        false => EtcdError::Unreachable {
            endpoints: endpoints.clone(),
            hint,
            source,
        },
    };
    let connecting = Client::connect(&config.endpoints, Some(config.options()?));
    let mut client = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| EtcdError::NoAnswer {
            endpoints: endpoints.clone(),
        })?
        .map_err(failed)?;
    // A connection is lazy: read something to find out whether etcd answers and lets us in.
    let read = client.get(
        config.prefix.as_str(),
        Some(GetOptions::new().with_prefix().with_count_only()),
    );
    tokio::time::timeout(CONNECT_TIMEOUT, read)
        .await
        .map_err(|_| EtcdError::NoAnswer {
            endpoints: endpoints.clone(),
        })?
        .map_err(failed)?;
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
