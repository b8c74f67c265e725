//! In-process HTTP fakes for the unit tests of one connector (a documented API served by
//! axum on a loopback port), each on a runtime of its own so that the blocking clients under
//! test can call it from the test's thread.

use axum::Router;

/// A served fake; it stops when dropped.
pub(crate) struct Served {
    pub url: String,
    _runtime: tokio::runtime::Runtime,
}

/// Serves `app` on a free loopback port.
pub(crate) fn serve(app: Router) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    runtime.spawn(async move { axum::serve(listener, app).await });
    Served {
        url,
        _runtime: runtime,
    }
}
