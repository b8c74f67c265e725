//! The Kappa worker: registers its slots with the jobmanager, runs the subtasks deployed to
//! it, exchanges records with other taskmanagers, and serves gRPC and /metrics on one port.

mod checkpoint;
mod deploy;
mod exchange;
mod ipc;
mod registration;
mod service;
mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kappa_proto::MAX_MESSAGE_BYTES;
use kappa_proto::tls::ClusterTls;
use kappa_proto::v1::data_exchange_service_server::DataExchangeServiceServer;
use kappa_proto::v1::task_manager_service_server::TaskManagerServiceServer;
use kappa_runtime::prometheus::{SubtaskRow, encode, register_subtasks};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tonic::service::Routes;

use crate::exchange::ExchangeServer;
use crate::service::ControlService;
use crate::state::Shared;

#[derive(Debug, thiserror::Error)]
pub enum TaskManagerError {
    #[error("cannot listen on {0}")]
    Bind(String),
    #[error("the jobmanager refused this taskmanager: {0}")]
    Refused(String),
    #[error("cluster TLS: {0}")]
    Tls(#[source] tonic::transport::Error),
}

/// A connection that has sent nothing for this long is sent an HTTP/2 PING…
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// …and closed when no answer comes within this.
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How a taskmanager is set up.
#[derive(Debug, Clone)]
pub struct TaskManagerConfig {
    /// Unique id; generated when None.
    pub id: String,
    pub slots: u32,
    /// Where gRPC and /metrics listen (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Host other processes reach this taskmanager at (default: the bind address).
    pub advertised_host: Option<String>,
    /// The jobmanager's gRPC URL, e.g. http://127.0.0.1:6123; with HA, the URLs of every
    /// jobmanager, comma-separated (standbys point to the leader).
    pub jobmanager: String,
    /// Where subtasks keep their local state (RocksDB); emptied at start.
    pub state_dir: std::path::PathBuf,
    /// Memory for the cached keyed state of jobs with the RocksDB backend, shared by every
    /// job here (None: no limit).
    pub state_memory: Option<u64>,
    /// What its jobs may touch (file paths, savepoint locations, PostgreSQL hosts), checked
    /// here whatever the jobmanager checked.
    pub confinement: kappa_connectors::confine::Confinement,
    /// Mutual TLS with the jobmanager and the other taskmanagers; None: plaintext gRPC
    /// (`--insecure`, `kappa local`).
    pub cluster_tls: Option<ClusterTls>,
    /// With cluster TLS: the host name every jobmanager's certificate is checked for, instead
    /// of the host of the URL dialed (a standby names the leader by an address its
    /// certificate may not carry, e.g. a pod IP).
    pub jobmanager_tls_name: Option<String>,
}

/// A started taskmanager.
pub struct TaskManagerHandle {
    pub id: String,
    /// host:port of its gRPC services and /metrics.
    pub address: String,
    /// Ends with an error when the jobmanager refuses this taskmanager.
    pub registration: JoinHandle<Result<(), TaskManagerError>>,
}

/// Binds the port, starts serving, and registers with the jobmanager in the background.
pub async fn start(config: TaskManagerConfig) -> Result<TaskManagerHandle, TaskManagerError> {
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| TaskManagerError::Bind(format!("{}: {e}", config.bind)))?;
    let local = listener
        .local_addr()
        .map_err(|e| TaskManagerError::Bind(e.to_string()))?;
    let host = config
        .advertised_host
        .clone()
        .unwrap_or_else(|| local.ip().to_string());
    let address = format!("{host}:{}", local.port());
    // Whatever an earlier process left here (it was killed) is of no use: attempts restore
    // from checkpoints in object storage.
    let _ = std::fs::remove_dir_all(&config.state_dir);
    let (reports_tx, reports_rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        id: config.id.clone(),
        slots: config.slots,
        address: address.clone(),
        state_dir: config.state_dir.clone(),
        state_cache: kappa_runtime::budget::StateBudget::new(config.state_memory),
        local_recovery: kappa_state::LocalRecovery::new(config.state_dir.join(".local-recovery")),
        confinement: config.confinement.clone(),
        attempts: Mutex::new(HashMap::new()),
        cancelled: Mutex::default(),
        reports: reports_tx,
        handle: tokio::runtime::Handle::current(),
        tls: config.cluster_tls.clone(),
        leader: tokio::sync::watch::Sender::new(None),
    });
    let control = TaskManagerServiceServer::new(ControlService {
        shared: Arc::clone(&shared),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let exchange = DataExchangeServiceServer::new(ExchangeServer {
        shared: Arc::clone(&shared),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let router = Routes::new(control)
        .add_service(exchange)
        .into_axum_router()
        .merge(
            axum::Router::new()
                .route("/metrics", get(metrics))
                .with_state(Arc::clone(&shared)),
        );
    // A peer that stops answering (a network partition) closes its connections here too, so
    // the receiving side of an exchange stream ends instead of waiting for TCP to give up.
    let mut server = tonic::transport::Server::builder()
        // /metrics is scraped over HTTP/1.1; gRPC uses HTTP/2.
        .accept_http1(true)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT));
    if let Some(tls) = &config.cluster_tls {
        server = server
            .tls_config(tls.server())
            .map_err(TaskManagerError::Tls)?;
    }
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(async move {
        if let Err(e) = server
            .add_routes(Routes::from(router))
            .serve_with_incoming(incoming)
            .await
        {
            tracing::error!(error = %e, "taskmanager server stopped");
        }
    });
    let jobmanagers = Arc::new(registration::JobManagers::new(
        &config.jobmanager,
        config.cluster_tls.clone(),
        config.jobmanager_tls_name.clone(),
    ));
    tokio::spawn(registration::forward_reports(
        Arc::clone(&jobmanagers),
        reports_rx,
    ));
    let registration = tokio::spawn(registration::register_and_heartbeat(
        Arc::clone(&shared),
        jobmanagers,
    ));
    tracing::info!(id = %config.id, %address, slots = config.slots, "taskmanager serving");
    Ok(TaskManagerHandle {
        id: config.id,
        address,
        registration,
    })
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let reg = prometheus::Registry::new();
    let rendered = {
        let attempts = shared.attempts.lock();
        let rows: Vec<SubtaskRow<'_>> = attempts
            .iter()
            .flat_map(|((job_id, _), a)| {
                a.subtasks.iter().map(move |s| SubtaskRow {
                    job_id,
                    job_name: &a.job_name,
                    vertex: &s.name,
                    subtask: s.subtask,
                    metrics: &s.metrics,
                })
            })
            .collect();
        register_subtasks(&reg, &rows)
    };
    let slots = prometheus::IntGaugeVec::new(
        prometheus::Opts::new("kappa_taskmanager_slots", "Slots of this taskmanager"),
        &["kind"],
    );
    let result = rendered.and_then(|_| {
        let slots = slots?;
        reg.register(Box::new(slots.clone()))?;
        slots
            .with_label_values(&["total"])
            .set(i64::from(shared.slots));
        slots
            .with_label_values(&["used"])
            .set(i64::from(shared.slots_used()));
        encode(&reg)
    });
    match result {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering metrics: {e}"),
        )
            .into_response(),
    }
}
