//! The REST API under /api/v1 (JSON) and /metrics (Prometheus text), served with axum;
//! every error is a JSON body `{"error": …}` with a 4xx status.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kappa_job::{Overrides, SpecError, Start, plan_job};
use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointStats;
use crate::job::{JobDetail, JobState, JobSummary};
use crate::{JobManager, SavepointStart, SubmitError, prom};

/// Largest accepted request body.
const BODY_LIMIT: usize = 4 << 20;

/// A job submission (also the body of a validation request).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The text of job.toml.
    pub job: String,
    /// The file's name, used in error messages.
    #[serde(default)]
    pub file_name: Option<String>,
    /// earliest | latest | timestamp:<epoch-ms> (overrides `source.start`), or
    /// savepoint:<directory or URI> to resume from a savepoint's offsets and state.
    #[serde(default)]
    pub start: Option<String>,
    /// Overrides `parallelism`.
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// With a savepoint: start even if it holds state the job has no operator for.
    #[serde(default)]
    pub allow_non_restored_state: bool,
}

/// A savepoint request (`POST /jobs/{id}/savepoints`, `POST /jobs/{id}/stop`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavepointRequest {
    /// Where to write it (default: `{checkpoint dir}/savepoints`).
    #[serde(default)]
    pub dir: Option<String>,
}

/// A stop request (`POST /jobs/{id}/stop`): a savepoint, then cancel.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Where to write the savepoint (default: `{checkpoint dir}/savepoints`).
    #[serde(default)]
    pub dir: Option<String>,
    /// Fire every open window before the savepoint (the output is complete; the job is not
    /// meant to be resumed).
    #[serde(default)]
    pub drain: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavepointResponse {
    /// The savepoint's directory: start a job from it with `savepoint:<path>`.
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub id: String,
    pub name: String,
}

/// A validated plan, as `kappactl validate` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidateResponse {
    pub name: String,
    pub parallelism: u32,
    pub plan: String,
    pub graph: kappa_job::PhysicalGraph,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<SpecError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Overview {
    pub version: String,
    pub uptime_seconds: u64,
    pub taskmanagers: u32,
    pub slots_total: u32,
    pub slots_free: u32,
    pub checkpoint_dir: Option<String>,
    pub jobs: std::collections::BTreeMap<String, usize>,
}

struct ApiError(StatusCode, ErrorBody);

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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
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
        }
    }
}

/// The routes of the REST API.
pub fn router(jm: JobManager) -> Router {
    Router::new()
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/jobs", get(list_jobs).post(submit))
        .route("/api/v1/jobs/validate", post(validate))
        .route("/api/v1/taskmanagers", get(taskmanagers))
        .route("/api/v1/jobs/{id}", get(job_detail))
        .route("/api/v1/jobs/{id}/cancel", post(cancel))
        .route("/api/v1/jobs/{id}/checkpoints", get(checkpoints))
        .route("/api/v1/jobs/{id}/savepoints", post(savepoint))
        .route("/api/v1/jobs/{id}/stop", post(stop))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(jm)
}

fn parse_request(
    body: &Bytes,
) -> Result<(String, SubmitRequest, Overrides, Option<String>), ApiError> {
    let req: SubmitRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e}"),
        )
    })?;
    let start = req
        .start
        .as_deref()
        .map(str::parse::<Start>)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("start: {e}")))?;
    let (position, savepoint) = match start {
        Some(Start::Position(p)) => (Some(p), None),
        Some(Start::Savepoint(uri)) => (None, Some(uri)),
        None => (None, None),
    };
    let overrides = Overrides {
        start: position,
        parallelism: req.parallelism,
    };
    let file = req.file_name.clone().unwrap_or_else(|| "job.toml".into());
    Ok((file, req, overrides, savepoint))
}

async fn overview(State(jm): State<JobManager>) -> Json<Overview> {
    let (slots_total, slots_free) = jm.registry().slots();
    let mut jobs = std::collections::BTreeMap::new();
    for st in JobState::ALL {
        jobs.insert(st.name().to_string(), 0);
    }
    for j in jm.jobs() {
        *jobs.entry(j.state().name().to_string()).or_default() += 1;
    }
    Json(Overview {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: jm.uptime().as_secs(),
        taskmanagers: jm.registry().views().len() as u32,
        slots_total,
        slots_free,
        checkpoint_dir: jm.config().checkpoint_dir.as_ref().cloned(),
        jobs,
    })
}

async fn taskmanagers(State(jm): State<JobManager>) -> Json<Vec<crate::registry::TaskManagerView>> {
    Json(jm.registry().views())
}

async fn list_jobs(State(jm): State<JobManager>) -> Json<Vec<JobSummary>> {
    Json(jm.jobs().iter().map(|j| j.summary()).collect())
}

async fn submit(
    State(jm): State<JobManager>,
    body: Bytes,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    let (file, req, overrides, savepoint) = parse_request(&body)?;
    let savepoint = savepoint.map(|uri| SavepointStart {
        uri,
        allow_non_restored_state: req.allow_non_restored_state,
    });
    let id = jm
        .submit_from(&file, &req.job, &overrides, savepoint)
        .await?;
    let name = jm.job(&id).map(|j| j.plan.name.clone()).unwrap_or_default();
    Ok((StatusCode::CREATED, Json(SubmitResponse { id, name })))
}

async fn validate(body: Bytes) -> Result<Json<ValidateResponse>, ApiError> {
    let (file, req, overrides, _) = parse_request(&body)?;
    let plan = plan_job(&file, &req.job, &overrides)
        .map_err(|e| ApiError::from(SubmitError::Invalid(e)))?;
    let graph = plan.graph();
    Ok(Json(ValidateResponse {
        name: plan.name.clone(),
        parallelism: plan.parallelism,
        plan: graph.to_string(),
        graph,
    }))
}

fn find(jm: &JobManager, id: &str) -> Result<std::sync::Arc<crate::job::JobEntry>, ApiError> {
    jm.job(id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job with id `{id}`")))
}

async fn job_detail(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    Ok(Json(find(&jm, &id)?.detail()))
}

async fn checkpoints(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<Json<Vec<CheckpointStats>>, ApiError> {
    let job = find(&jm, &id)?;
    let history = job
        .checkpoints
        .lock()
        .as_ref()
        .map(|c| c.history())
        .unwrap_or_default();
    Ok(Json(history))
}

fn savepoint_request<T: Default + serde::de::DeserializeOwned>(
    body: &Bytes,
) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e}"),
        )
    })
}

async fn savepoint(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<SavepointResponse>, ApiError> {
    let req: SavepointRequest = savepoint_request(&body)?;
    let path = jm
        .savepoint(&id, req.dir.as_deref(), false)
        .await
        .map_err(|e| ApiError::new(e.status(), e.to_string()))?;
    Ok(Json(SavepointResponse { path }))
}

/// Takes a savepoint (after draining, if asked), then cancels the job.
async fn stop(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<SavepointResponse>, ApiError> {
    let req: StopRequest = savepoint_request(&body)?;
    let path = jm
        .savepoint(&id, req.dir.as_deref(), req.drain)
        .await
        .map_err(|e| ApiError::new(e.status(), e.to_string()))?;
    if let Some(job) = jm.job(&id) {
        job.request_cancel();
    }
    Ok(Json(SavepointResponse { path }))
}

async fn cancel(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobSummary>), ApiError> {
    let job = find(&jm, &id)?;
    if !job.request_cancel() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job `{id}` already ended ({})", job.state().name()),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(job.summary())))
}

async fn metrics(State(jm): State<JobManager>) -> Result<Response, ApiError> {
    let text = prom::render(&jm).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering metrics: {e}"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobManagerConfig;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const JOB: &str = include_str!("../../../examples/hourly-item-clicks.toml");

    async fn call(method: &str, uri: &str, body: &str) -> (StatusCode, String) {
        let app = router(JobManager::new(JobManagerConfig::default()).unwrap());
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
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
            ("GET", "/no/such/route", "", StatusCode::NOT_FOUND),
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
        ] {
            let (got, text) = call(method, uri, body).await;
            assert_eq!(got, status, "{method} {uri}: {text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{text}");
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
    async fn overview_and_metrics_answer() {
        let (status, text) = call("GET", "/api/v1/overview", "").await;
        assert_eq!(status, StatusCode::OK);
        let v: Overview = serde_json::from_str(&text).unwrap();
        assert_eq!((v.taskmanagers, v.slots_total, v.slots_free), (0, 0, 0));
        let (status, text) = call("GET", "/metrics", "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("kappa_slots{kind=\"total\"} 0"), "{text}");
    }
}
