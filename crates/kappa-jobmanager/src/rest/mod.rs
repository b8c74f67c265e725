//! The REST API under /api/v1 (JSON), /metrics (Prometheus text) and the web UI, served with
//! axum; the OpenAPI document at /api/v1/openapi.json is generated from these handlers.
//! Every error is a JSON body `{"error": …}` with a 4xx status; an optional bearer token
//! protects the API and /metrics, and [`guard`] checks every request's host and origin.

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kappa_job::SpecError;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{JobManager, SubmitError};

mod cluster;
mod guard;
mod jobs;
mod series;
mod tls;
mod ui;
mod upgrades;

pub use guard::AllowedHosts;
pub use tls::{RestTls, RestTlsError};

pub use jobs::{
    SavepointRequest, SavepointResponse, StopRequest, SubmitRequest, SubmitResponse,
    ValidateResponse,
};

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// Every problem of a refused job file, with file, line, column and field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<SpecError>,
}

/// An error answer: a status and a JSON body.
pub(crate) struct ApiError(StatusCode, ErrorBody);

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Self(
            status,
            ErrorBody {
                error: msg.into(),
                details: Vec::new(),
            },
        )
    }

    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<crate::upgrade::dry_run::UpgradeError> for ApiError {
    fn from(e: crate::upgrade::dry_run::UpgradeError) -> Self {
        use crate::upgrade::dry_run::UpgradeError;
        match e {
            UpgradeError::NotFound(id) => Self::not_found(format!("no job {id}")),
            UpgradeError::Submit(e) => e.into(),
            e @ (UpgradeError::Kafka(_) | UpgradeError::Lookup(_)) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            e @ UpgradeError::Changes(_) => Self::new(StatusCode::BAD_REQUEST, e.to_string()),
            e @ UpgradeError::Refused(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
            e @ UpgradeError::Store(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                kappa_runtime::error::with_causes(&e),
            ),
        }
    }
}

impl From<crate::upgrade::control::UpgradeRequestError> for ApiError {
    fn from(e: crate::upgrade::control::UpgradeRequestError) -> Self {
        use crate::upgrade::control::UpgradeRequestError;
        match e {
            UpgradeRequestError::NotFound(id) => Self::not_found(format!("no upgrade {id}")),
            e @ UpgradeRequestError::Refused(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
            e @ UpgradeRequestError::Diff {
                retryable: true, ..
            } => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            e @ UpgradeRequestError::Diff { .. } => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Invalid(errs) => {
                let n = errs.0.len();
                let error = if n == 1 {
                    errs.0[0].to_string()
                } else {
                    format!("{n} problems in the job: {errs}")
                };
                Self(
                    StatusCode::BAD_REQUEST,
                    ErrorBody {
                        error,
                        details: errs.0,
                    },
                )
            }
            SubmitError::BadRequest(m) => Self::new(StatusCode::BAD_REQUEST, m),
            e @ SubmitError::Location(_) => Self::new(StatusCode::BAD_REQUEST, e.to_string()),
            SubmitError::Unavailable(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, m),
        }
    }
}

/// A request body that was refused before any handler read it (too large, unreadable).
impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than this jobmanager accepts (--max-request-bytes)"
                .to_string()
        } else {
            r.body_text()
        };
        Self::new(status, msg)
    }
}

/// Declares the bearer token scheme in the OpenAPI document.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kappa REST API",
        description = "Submit, watch and control Kappa jobs. With an auth token configured, every route under /api/v1 (but this document) and /metrics needs `Authorization: Bearer <token>`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// The routes of the API with their OpenAPI description.
fn api_routes() -> OpenApiRouter<JobManager> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(cluster::overview))
        .routes(routes!(cluster::taskmanagers))
        .routes(routes!(cluster::taskmanager))
        .routes(routes!(jobs::list_jobs, jobs::submit))
        .routes(routes!(jobs::validate))
        .routes(routes!(jobs::job_detail))
        .routes(routes!(jobs::job_spec))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::checkpoints))
        .routes(routes!(series::job_series))
        .routes(routes!(jobs::savepoint))
        .routes(routes!(jobs::stop))
        .routes(routes!(upgrades::upgrade_plan))
        .routes(routes!(upgrades::start_upgrade))
        .routes(routes!(upgrades::start_audit))
        .routes(routes!(upgrades::list_upgrades))
        .routes(routes!(upgrades::upgrade_detail))
        .routes(routes!(upgrades::cutover))
        .routes(routes!(upgrades::abort))
        .routes(routes!(upgrades::upgrade_diff))
        .routes(routes!(cluster::metrics))
}

/// The OpenAPI document of this server.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// On a standby (HA): API calls are redirected to the leader (307 keeps the method and body),
/// or answered 503 while no leader is known.
async fn leader_only(State(jm): State<JobManager>, req: Request, next: Next) -> Response {
    match jm.role() {
        crate::ha::Role::Leader => next.run(req).await,
        crate::ha::Role::Standby(Some(leader)) => {
            let target = format!(
                "{}{}",
                leader.rest,
                req.uri().path_and_query().map_or("", |p| p.as_str())
            );
            match header::HeaderValue::from_str(&target) {
                Ok(location) => {
                    let mut resp = ApiError::new(
                        StatusCode::TEMPORARY_REDIRECT,
                        format!(
                            "this jobmanager is a standby; the leader is at {}",
                            leader.rest
                        ),
                    )
                    .into_response();
                    resp.headers_mut().insert(header::LOCATION, location);
                    resp
                }
                Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "bad leader address")
                    .into_response(),
            }
        }
        crate::ha::Role::Standby(None) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this jobmanager is a standby and no leader is elected yet; retry shortly",
        )
        .into_response(),
    }
}

/// Readiness for load balancers (public, no data): 200 on the leader, 503 on a standby, so
/// only the leader gets traffic.
async fn readyz(State(jm): State<JobManager>) -> Response {
    match jm.role() {
        crate::ha::Role::Leader => (StatusCode::OK, "leader\n").into_response(),
        crate::ha::Role::Standby(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "standby\n").into_response()
        }
    }
}

/// Adds an error answer (`status`, an [`ErrorBody`]) to every operation of the document.
fn document_answer(doc: &mut utoipa::openapi::OpenApi, status: &str, description: &str) {
    let answer = utoipa::openapi::ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            op.responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| answer.clone().into());
        }
    }
}

/// Serves the HTTP service on `listener` (HTTPS with the configured certificate) until the
/// process ends.
pub(crate) fn serve(listener: tokio::net::TcpListener, jm: JobManager) -> std::io::Result<()> {
    let tls = jm.config().rest_tls.clone();
    let app = router(jm);
    match tls {
        None => {
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "REST server stopped");
                }
            });
        }
        Some(tls) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(tls.server_config());
            let server = axum_server::from_tcp_rustls(listener.into_std()?, config)?;
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "REST server (HTTPS) stopped");
                }
            });
        }
    }
    Ok(())
}

/// The host names requests may name: those configured, else loopback names when the API
/// listens on loopback, else any.
fn allowed_hosts(config: &crate::JobManagerConfig) -> AllowedHosts {
    match &config.allowed_hosts {
        Some(names) => AllowedHosts::Only(names.iter().map(|n| n.to_ascii_lowercase()).collect()),
        None if config.rest.ip().is_loopback() => AllowedHosts::loopback(config.rest.ip()),
        None => AllowedHosts::Any,
    }
}

/// The whole HTTP service: API (token-protected when configured), its OpenAPI document, UI.
pub fn router(jm: JobManager) -> Router {
    let config = jm.config();
    let (api, mut doc) = api_routes().split_for_parts();
    match config.auth_token {
        // The document says what this server asks for: no token, no security requirement.
        None => doc.security = None,
        Some(_) => document_answer(
            &mut doc,
            "401",
            "Missing or wrong `Authorization: Bearer <token>`",
        ),
    }
    document_answer(
        &mut doc,
        "403",
        "The request names a host this jobmanager does not answer to (--allowed-host), or changes something from another site's page",
    );
    let mut api = api
        .layer(DefaultBodyLimit::max(config.max_request_bytes))
        .layer(axum::middleware::from_fn_with_state(
            jm.clone(),
            leader_only,
        ));
    if let Some(token) = &config.auth_token {
        api = api.layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::new(guard::Token::new(token)),
            guard::require_token,
        ));
    }
    let doc = std::sync::Arc::new(doc);
    api.route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = std::sync::Arc::clone(&doc);
            async move { Json((*doc).clone()) }
        }),
    )
    .route("/readyz", get(readyz))
    .merge(ui::routes())
    .fallback(|| async { ApiError::not_found("no such route") })
    .method_not_allowed_fallback(|| async {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "this route does not take that method (see /api/v1/openapi.json)",
        )
    })
    .layer(axum::middleware::from_fn_with_state(
        std::sync::Arc::new(allowed_hosts(config)),
        guard::same_origin,
    ))
    .layer(axum::middleware::from_fn(guard::security_headers))
    .with_state(jm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobManagerConfig;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const JOB: &str = include_str!("../../../../examples/hourly-item-clicks.toml");

    async fn call_with(config: JobManagerConfig, req: Request<Body>) -> (StatusCode, String) {
        let app = router(JobManager::new(config).unwrap());
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    fn request(
        method: &str,
        uri: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(body.into())
            .unwrap()
    }

    async fn call(method: &str, uri: &str, body: &str) -> (StatusCode, String) {
        let req = request(method, uri, "application/json", body.to_string());
        call_with(JobManagerConfig::default(), req).await
    }

    fn assert_json_error(text: &str) {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{text}");
    }

    #[tokio::test]
    async fn errors_are_json_with_4xx() {
        for (method, uri, body, status) in [
            ("GET", "/api/v1/jobs/nope", "", StatusCode::NOT_FOUND),
            (
                "POST",
                "/api/v1/jobs/nope/cancel",
                "",
                StatusCode::NOT_FOUND,
            ),
            ("GET", "/api/v1/jobs/nope/spec", "", StatusCode::NOT_FOUND),
            (
                "GET",
                "/api/v1/taskmanagers/nope",
                "",
                StatusCode::NOT_FOUND,
            ),
            ("GET", "/no/such/route", "", StatusCode::NOT_FOUND),
            ("DELETE", "/api/v1/jobs", "", StatusCode::METHOD_NOT_ALLOWED),
            ("POST", "/api/v1/jobs", "{not json", StatusCode::BAD_REQUEST),
            (
                "POST",
                "/api/v1/jobs",
                r#"{"job":"name = 1"}"#,
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST",
                "/api/v1/jobs",
                r#"{"job":"","start":"yesterday"}"#,
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST",
                "/api/v1/jobs",
                r#"{"job":"","start":"checkpoint:nope:3"}"#,
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST",
                "/api/v1/jobs/nope/stop",
                r#"{"drain":"yes"}"#,
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let (got, text) = call(method, uri, body).await;
            assert_eq!(got, status, "{method} {uri}: {text}");
            assert_json_error(&text);
        }
    }

    #[tokio::test]
    async fn validate_returns_the_plan_without_running_anything() {
        let body = serde_json::json!({"job": JOB, "parallelism": 3}).to_string();
        let (status, text) = call("POST", "/api/v1/jobs/validate", &body).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let v: ValidateResponse = serde_json::from_str(&text).unwrap();
        assert_eq!(v.parallelism, 3);
        assert!(v.plan.contains("hash(item_id)"), "{}", v.plan);
    }

    #[tokio::test]
    async fn a_raw_job_file_is_accepted_and_a_non_utf8_one_refused() {
        let req = request(
            "POST",
            "/api/v1/jobs/validate?parallelism=3&file_name=clicks.toml",
            "application/toml",
            JOB,
        );
        let (status, text) = call_with(JobManagerConfig::default(), req).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let mut latin1 = JOB.as_bytes().to_vec();
        latin1.extend_from_slice(b"# caf\xe9\n");
        let req = request(
            "POST",
            "/api/v1/jobs?file_name=clicks.toml",
            "application/toml",
            latin1,
        );
        let (status, text) = call_with(JobManagerConfig::default(), req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains("clicks.toml is not UTF-8"), "{text}");
        let req = request(
            "POST",
            "/api/v1/jobs?parallelism=many",
            "application/toml",
            JOB,
        );
        let (status, text) = call_with(JobManagerConfig::default(), req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert_json_error(&text);
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused_with_413() {
        let config = JobManagerConfig {
            max_request_bytes: 1000,
            ..JobManagerConfig::default()
        };
        let big = serde_json::json!({ "job": "#".repeat(5000) }).to_string();
        let (status, text) = call_with(
            config,
            request("POST", "/api/v1/jobs", "application/json", big),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
        assert!(text.contains("--max-request-bytes"), "{text}");
    }

    #[tokio::test]
    async fn a_token_protects_the_api_and_metrics_but_not_the_ui_files() {
        let config = || JobManagerConfig {
            auth_token: Some("s3cret".into()),
            ..JobManagerConfig::default()
        };
        let get = |uri: &str, token: Option<&str>| {
            let mut b = Request::builder().uri(uri);
            if let Some(t) = token {
                b = b.header("authorization", format!("Bearer {t}"));
            }
            b.body(Body::empty()).unwrap()
        };
        for uri in ["/api/v1/overview", "/api/v1/jobs", "/metrics"] {
            let (status, text) = call_with(config(), get(uri, None)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {text}");
            assert_json_error(&text);
            let (status, text) = call_with(config(), get(uri, Some("guess"))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {text}");
            assert!(text.contains("wrong"), "{text}");
            let (status, _) = call_with(config(), get(uri, Some("s3cret"))).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
        }
        for uri in [
            "/",
            "/ui/app.js",
            "/ui/charts.js",
            "/ui/common.js",
            "/ui/upgrades.js",
            "/ui/style.css",
            "/api/v1/openapi.json",
        ] {
            let (status, _) = call_with(config(), get(uri, None)).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
        }
        let (_, text) = call_with(config(), get("/api/v1/openapi.json", None)).await;
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc["security"][0]["bearer"],
            serde_json::json!([]),
            "{text}"
        );
        let jobs = &doc["paths"]["/api/v1/jobs"]["get"]["responses"]["401"];
        assert!(
            jobs["description"].is_string(),
            "the 401 answer is documented: {text}"
        );
    }

    #[tokio::test]
    async fn bodies_of_other_types_are_refused_with_415() {
        for (uri, content_type, body) in [
            ("/api/v1/jobs", Some("text/plain"), JOB.to_string()),
            (
                "/api/v1/jobs",
                Some("application/x-www-form-urlencoded"),
                format!("job={JOB}"),
            ),
            (
                "/api/v1/jobs/validate",
                Some("multipart/form-data"),
                JOB.to_string(),
            ),
            ("/api/v1/jobs", None, JOB.to_string()),
            (
                "/api/v1/jobs/nope/savepoints",
                Some("text/plain"),
                "{}".into(),
            ),
            ("/api/v1/jobs/nope/stop", None, r#"{"drain":true}"#.into()),
        ] {
            let mut req = Request::builder().method("POST").uri(uri);
            if let Some(t) = content_type {
                req = req.header("content-type", t);
            }
            let req = req.body(Body::from(body)).unwrap();
            let (status, text) = call_with(JobManagerConfig::default(), req).await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{uri} {content_type:?}: {text}"
            );
            assert!(text.contains("application/json"), "{text}");
        }
        // Without a body, or with a charset parameter, the type is fine.
        let req = request("POST", "/api/v1/jobs/nope/stop", "text/plain", "");
        let (status, _) = call_with(JobManagerConfig::default(), req).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let req = request(
            "POST",
            "/api/v1/jobs/validate",
            "application/toml; charset=utf-8",
            JOB,
        );
        let (status, text) = call_with(JobManagerConfig::default(), req).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }

    #[tokio::test]
    async fn other_sites_and_other_host_names_are_refused() {
        let post = |headers: &[(&str, &str)]| {
            let mut b = Request::builder()
                .method("POST")
                .uri("/api/v1/jobs/nope/cancel")
                .header("host", "127.0.0.1:8081");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(Body::empty()).unwrap()
        };
        let cross = [
            post(&[("origin", "http://evil.example")]),
            post(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://evil.example"),
            ]),
        ];
        for req in cross {
            let (status, text) = call_with(JobManagerConfig::default(), req).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
            assert!(
                text.contains("evil.example") || text.contains("cross-site"),
                "{text}"
            );
        }
        // The UI's own page and clients without Origin reach the handler (no such job).
        for req in [
            post(&[
                ("origin", "http://127.0.0.1:8081"),
                ("sec-fetch-site", "same-origin"),
            ]),
            post(&[]),
        ] {
            let (status, text) = call_with(JobManagerConfig::default(), req).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
        }
        // A rebound DNS name is refused on a loopback jobmanager, even for reads.
        let rebound = Request::builder()
            .uri("/api/v1/jobs")
            .header("host", "evil.example:8081")
            .body(Body::empty())
            .unwrap();
        let (status, text) = call_with(JobManagerConfig::default(), rebound).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
        assert!(text.contains("evil.example"), "{text}");
        // Configured names are the only ones.
        let config = JobManagerConfig {
            allowed_hosts: Some(vec!["Kappa.Example".into()]),
            ..JobManagerConfig::default()
        };
        let named = |host: &str| {
            Request::builder()
                .uri("/api/v1/jobs")
                .header("host", host)
                .body(Body::empty())
                .unwrap()
        };
        let (status, _) = call_with(config.clone(), named("kappa.example:443")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call_with(config, named("127.0.0.1:8081")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn every_answer_keeps_the_ui_out_of_other_sites() {
        for uri in ["/", "/ui/app.js", "/api/v1/jobs", "/no/such/route"] {
            let app = router(JobManager::new(JobManagerConfig::default()).unwrap());
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let h = resp.headers();
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("frame-ancestors 'none'"), "{uri}: {csp}");
            assert!(csp.contains("script-src 'self'"), "{uri}: {csp}");
            assert_eq!(h["x-frame-options"], "DENY", "{uri}");
            assert_eq!(h["x-content-type-options"], "nosniff", "{uri}");
        }
    }

    #[tokio::test]
    async fn the_openapi_document_lists_every_api_route() {
        let (status, text) = call("GET", "/api/v1/openapi.json", "").await;
        assert_eq!(status, StatusCode::OK);
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/api/v1/overview",
            "/api/v1/taskmanagers",
            "/api/v1/taskmanagers/{id}",
            "/api/v1/jobs",
            "/api/v1/jobs/validate",
            "/api/v1/jobs/{id}",
            "/api/v1/jobs/{id}/spec",
            "/api/v1/jobs/{id}/cancel",
            "/api/v1/jobs/{id}/checkpoints",
            "/api/v1/jobs/{id}/series",
            "/api/v1/jobs/{id}/savepoints",
            "/api/v1/jobs/{id}/stop",
            "/metrics",
        ] {
            assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys());
        }
        assert!(doc["components"]["schemas"]["JobDetail"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(doc["security"].is_null(), "no token, no requirement");
    }

    #[tokio::test]
    async fn overview_and_metrics_answer() {
        let (status, text) = call("GET", "/api/v1/overview", "").await;
        assert_eq!(status, StatusCode::OK);
        let v: cluster::Overview = serde_json::from_str(&text).unwrap();
        assert_eq!((v.taskmanagers, v.slots_total, v.slots_free), (0, 0, 0));
        let (status, text) = call("GET", "/metrics", "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("kappa_slots{kind=\"total\"} 0"), "{text}");
    }
}
