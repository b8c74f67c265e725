//! `kappa local`: a jobmanager with an in-process taskmanager, serving the REST API until
//! Ctrl-C or SIGTERM.

use anyhow::Context;
use kappa_jobmanager::{JobManager, JobManagerConfig, rest};

use crate::LocalArgs;

/// Starts the cluster and its HTTP server; returns the handle and the bound address.
pub async fn start(args: &LocalArgs) -> anyhow::Result<(JobManager, std::net::SocketAddr)> {
    if let Some(dir) = &args.checkpoint_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating checkpoint dir {}", dir.display()))?;
    }
    let jm = JobManager::new(JobManagerConfig {
        slots: args.slots,
        checkpoint_dir: args.checkpoint_dir.clone(),
        ..JobManagerConfig::default()
    });
    let addr = format!("{}:{}", args.address, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| {
            format!("cannot listen on {addr} (is another kappa running? use --port)")
        })?;
    let bound = listener.local_addr()?;
    let app = rest::router(jm.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "REST server stopped");
        }
    });
    tracing::info!(%bound, slots = args.slots, "kappa local cluster ready: REST API at http://{bound}/api/v1");
    Ok((jm, bound))
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    let (jm, _) = start(&args).await?;
    shutdown_signal().await;
    tracing::info!("shutting down: cancelling running jobs");
    for j in jm.jobs() {
        j.request_cancel();
    }
    Ok(())
}
