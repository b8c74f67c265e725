//! The web UI: six static files (HTML, four JavaScript modules, CSS) compiled into the binary
//! and served at `/` and `/ui/…`; the page itself asks the REST API for everything it shows.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../../ui/index.html");
const APP: &str = include_str!("../../ui/app.js");
const CHARTS: &str = include_str!("../../ui/charts.js");
const COMMON: &str = include_str!("../../ui/common.js");
const UPGRADES: &str = include_str!("../../ui/upgrades.js");
const STYLE: &str = include_str!("../../ui/style.css");

/// Routes of the UI's files (public: they hold no data; the API they call is protected).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let file = |content_type: &'static str, body: &'static str| {
        get(move || async move {
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
                .into_response()
        })
    };
    let module = |body: &'static str| file("text/javascript; charset=utf-8", body);
    Router::new()
        .route("/", file("text/html; charset=utf-8", INDEX))
        .route("/ui/app.js", module(APP))
        .route("/ui/charts.js", module(CHARTS))
        .route("/ui/common.js", module(COMMON))
        .route("/ui/upgrades.js", module(UPGRADES))
        .route("/ui/style.css", file("text/css; charset=utf-8", STYLE))
}
