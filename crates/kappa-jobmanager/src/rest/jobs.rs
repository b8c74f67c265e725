//! The job routes of the REST API: submit (JSON or a raw job.toml), validate, list, detail,
//! spec, cancel, checkpoints, savepoints and stop.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use kappa_job::{Overrides, Start};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ErrorBody};
use crate::JobManager;
use crate::checkpoint::CheckpointStats;
use crate::job::{JobDetail, JobSummary};

/// A job submission (also the body of a validation request).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The text of job.toml.
    pub job: String,
    /// The file's name, used in error messages.
    #[serde(default)]
    pub file_name: Option<String>,
    /// earliest | latest | timestamp:<epoch-ms> (overrides `source.start`),
    /// savepoint:<directory or URI>, or checkpoint:<job id>:<checkpoint id> (a retained
    /// checkpoint of a job of this cluster) to resume from its offsets and state.
    #[serde(default)]
    pub start: Option<String>,
    /// Overrides `parallelism`.
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// With a savepoint: start even if it holds state the job has no operator for.
    #[serde(default)]
    pub allow_non_restored_state: bool,
}

/// The same settings as query parameters, for a raw job.toml body.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// With a raw job.toml body: the file's name, used in error messages.
    pub file_name: Option<String>,
    /// With a raw job.toml body: where the sources start (as `start` in the JSON body).
    pub start: Option<String>,
    /// With a raw job.toml body: overrides `parallelism`.
    pub parallelism: Option<u32>,
    /// With a raw job.toml body: drop savepoint state no operator takes.
    pub allow_non_restored_state: Option<bool>,
}

/// A savepoint request (`POST /jobs/{id}/savepoints`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SavepointRequest {
    /// Where to write it (default: `{checkpoint dir}/savepoints`).
    #[serde(default)]
    pub dir: Option<String>,
}

/// A stop request (`POST /jobs/{id}/stop`): a savepoint, then cancel.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SavepointResponse {
    /// The savepoint's directory: start a job from it with `savepoint:<path>`.
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    pub id: String,
    pub name: String,
    /// What the submitter should know, e.g. that the job's literal secrets are not kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A validated plan, as `kappactl validate` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ValidateResponse {
    pub name: String,
    pub parallelism: u32,
    pub plan: String,
    pub graph: kappa_job::PhysicalGraph,
}

/// A job's file as submitted, literal secrets redacted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobSpecResponse {
    pub file_name: String,
    /// The text of job.toml, each literal secret replaced by `***` (a resubmission must give
    /// them again, or reference them).
    pub job: String,
}

/// A submission as the handlers use it.
pub(super) struct Submission {
    pub(super) file: String,
    pub(super) req: SubmitRequest,
    pub(super) overrides: Overrides,
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

/// The two kinds of body a submission may have.
#[derive(Debug, PartialEq, Eq)]
enum BodyType {
    Json,
    Toml,
}

/// The media type of a request body (its parameters, such as `charset`, aside).
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?;
    let text = String::from_utf8_lossy(value.as_bytes());
    let essence = text.split(';').next().unwrap_or("").trim();
    Some(essence.to_ascii_lowercase())
}

/// `application/json` or `application/toml`; anything else (no type, or the types an HTML
/// form of another site can send without asking) is refused with 415.
fn body_type(headers: &HeaderMap) -> Result<BodyType, ApiError> {
    match media_type(headers).as_deref() {
        Some("application/json") => Ok(BodyType::Json),
        Some("application/toml") => Ok(BodyType::Toml),
        other => Err(unsupported(other, "application/json or application/toml")),
    }
}

fn unsupported(given: Option<&str>, wanted: &str) -> ApiError {
    let given = given.map_or("no Content-Type".to_string(), |t| format!("`{t}`"));
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("this route takes {wanted}, not {given}"),
    )
}

/// Reads a submission: JSON ([`SubmitRequest`]), or the raw job.toml with [`SubmitQuery`].
pub(super) fn parse_submission(
    headers: &HeaderMap,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Submission, ApiError> {
    let query = query
        .map(|Query(q)| q)
        .map_err(|e| bad_request(format!("invalid query parameters: {}", e.body_text())));
    let body = body?;
    let req = if body_type(headers)? == BodyType::Json {
        serde_json::from_slice::<SubmitRequest>(&body)
            .map_err(|e| bad_request(format!("invalid request body: {e}")))?
    } else {
        let q = query?;
        let name = q.file_name.clone().unwrap_or_else(|| "job.toml".into());
        let job = String::from_utf8(body.to_vec()).map_err(|e| {
            bad_request(format!(
                "{name} is not UTF-8 text (invalid byte at offset {}): a job file must be UTF-8",
                e.utf8_error().valid_up_to()
            ))
        })?;
        SubmitRequest {
            job,
            file_name: q.file_name,
            start: q.start,
            parallelism: q.parallelism,
            allow_non_restored_state: q.allow_non_restored_state.unwrap_or(false),
        }
    };
    let start = req
        .start
        .as_deref()
        .map(str::parse::<Start>)
        .transpose()
        .map_err(|e| bad_request(format!("start: {e}")))?;
    // A savepoint or checkpoint supplies the offsets: the plan is the file's own.
    let position = match start {
        Some(Start::Position(p)) => Some(p),
        _ => None,
    };
    let overrides = Overrides {
        start: position,
        parallelism: req.parallelism,
        ..Overrides::default()
    };
    Ok(Submission {
        file: req.file_name.clone().unwrap_or_else(|| "job.toml".into()),
        req,
        overrides,
    })
}

fn find(jm: &JobManager, id: &str) -> Result<std::sync::Arc<crate::job::JobEntry>, ApiError> {
    jm.job(id)
        .ok_or_else(|| ApiError::not_found(format!("no job with id `{id}`")))
}

/// Lists every job, oldest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    responses((status = 200, description = "Every job, oldest first", body = Vec<JobSummary>)))]
pub async fn list_jobs(State(jm): State<JobManager>) -> Json<Vec<JobSummary>> {
    Json(jm.jobs().iter().map(|j| j.summary()).collect())
}

/// Submits a job: a JSON body, or the raw job.toml (`Content-Type: application/toml`) with
/// the settings as query parameters.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs",
    params(SubmitQuery),
    request_body(description = "A JSON submission, or the raw job.toml (UTF-8) as application/toml", content(
        (SubmitRequest = "application/json"),
        (String = "application/toml")
    )),
    responses(
        (status = 201, description = "Submitted", body = SubmitResponse),
        (status = 400, description = "The job, its start or the request is invalid; `details` lists every problem of the file with its line", body = ErrorBody),
        (status = 413, description = "The body is larger than --max-request-bytes", body = ErrorBody),
        (status = 415, description = "The body is neither application/json nor application/toml", body = ErrorBody)
    ))]
pub async fn submit(
    State(jm): State<JobManager>,
    headers: HeaderMap,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    let s = parse_submission(&headers, query, body)?;
    let id = jm
        .submit_from(
            &s.file,
            &s.req.job,
            &crate::store::Submitted {
                start: s.req.start.clone(),
                parallelism: s.req.parallelism,
                allow_non_restored_state: s.req.allow_non_restored_state,
            },
        )
        .await?;
    let job = jm.job(&id);
    let name = job
        .as_ref()
        .map(|j| j.plan.name.clone())
        .unwrap_or_default();
    let warnings = job.and_then(|j| j.text.warning()).into_iter().collect();
    Ok((
        StatusCode::CREATED,
        Json(SubmitResponse { id, name, warnings }),
    ))
}

/// Checks a job and returns its plan; runs nothing.
#[utoipa::path(post, path = "/api/v1/jobs/validate", tag = "jobs",
    params(SubmitQuery),
    request_body(description = "A JSON submission, or the raw job.toml (UTF-8) as application/toml", content(
        (SubmitRequest = "application/json"),
        (String = "application/toml")
    )),
    responses(
        (status = 200, description = "The job is valid", body = ValidateResponse),
        (status = 400, description = "The job or the request is invalid", body = ErrorBody),
        (status = 413, description = "The body is larger than --max-request-bytes", body = ErrorBody),
        (status = 415, description = "The body is neither application/json nor application/toml", body = ErrorBody)
    ))]
pub async fn validate(
    State(jm): State<JobManager>,
    headers: HeaderMap,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ValidateResponse>, ApiError> {
    let s = parse_submission(&headers, query, body)?;
    let plan = crate::submission::plan_blocking(&s.file, &s.req.job, &s.overrides)
        .await
        .map_err(ApiError::from)?;
    jm.confine(&s.file, &s.req.job, &plan)?;
    let graph = plan.graph();
    Ok(Json(ValidateResponse {
        name: plan.name.clone(),
        parallelism: plan.parallelism,
        plan: graph.to_string(),
        graph,
    }))
}

/// A job: state, attempts, operators with their subtasks, records, watermarks, lag.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobDetail),
        (status = 404, description = "No such job", body = ErrorBody)
    ))]
pub async fn job_detail(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    Ok(Json(find(&jm, &id)?.detail()))
}

/// The job's file as submitted (to resubmit it, e.g. from one of its checkpoints).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/spec", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job file", body = JobSpecResponse),
        (status = 404, description = "No such job", body = ErrorBody)
    ))]
pub async fn job_spec(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<Json<JobSpecResponse>, ApiError> {
    let job = find(&jm, &id)?;
    Ok(Json(JobSpecResponse {
        file_name: job.file_name.clone(),
        job: job.text.shown.clone(),
    }))
}

/// The job's checkpoints, newest first.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/checkpoints", tag = "checkpoints",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Checkpoint history, newest first", body = Vec<CheckpointStats>),
        (status = 404, description = "No such job", body = ErrorBody)
    ))]
pub async fn checkpoints(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<Json<Vec<CheckpointStats>>, ApiError> {
    Ok(Json(find(&jm, &id)?.checkpoint_history()))
}

/// Reads an optional JSON body (an empty one is the default); a body needs the JSON type.
fn optional_json<T: Default + serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body?;
    if body.is_empty() {
        return Ok(T::default());
    }
    let given = media_type(headers);
    if given.as_deref() != Some("application/json") {
        return Err(unsupported(given.as_deref(), "an application/json body"));
    }
    // JSON null asks for the defaults too.
    if body.trim_ascii() == b"null" {
        return Ok(T::default());
    }
    serde_json::from_slice(&body).map_err(|e| bad_request(format!("invalid request body: {e}")))
}

/// Takes a savepoint of a running job; answers once it is written.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/savepoints", tag = "checkpoints",
    params(("id" = String, Path, description = "Job id")),
    request_body(content = Option<SavepointRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Written", body = SavepointResponse),
        (status = 400, description = "Bad request, or the cluster has no checkpoint directory", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is not running", body = ErrorBody),
        (status = 415, description = "A body that is not application/json", body = ErrorBody),
        (status = 500, description = "The savepoint failed", body = ErrorBody)
    ))]
pub async fn savepoint(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SavepointResponse>, ApiError> {
    let req: SavepointRequest = optional_json(&headers, body)?;
    take_savepoint(&jm, &id, req.dir.as_deref(), false).await
}

async fn take_savepoint(
    jm: &JobManager,
    id: &str,
    dir: Option<&str>,
    drain: bool,
) -> Result<Json<SavepointResponse>, ApiError> {
    let path = jm
        .savepoint(id, dir, drain)
        .await
        .map_err(|e| ApiError::new(e.status(), e.to_string()))?;
    Ok(Json(SavepointResponse { path }))
}

/// Takes a savepoint (after draining, if asked), then cancels the job.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/stop", tag = "checkpoints",
    params(("id" = String, Path, description = "Job id")),
    request_body(content = Option<StopRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Savepoint written; the job is being cancelled", body = SavepointResponse),
        (status = 400, description = "Bad request, or the cluster has no checkpoint directory", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is not running", body = ErrorBody),
        (status = 415, description = "A body that is not application/json", body = ErrorBody),
        (status = 500, description = "The savepoint failed", body = ErrorBody)
    ))]
pub async fn stop(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SavepointResponse>, ApiError> {
    let req: StopRequest = optional_json(&headers, body)?;
    let written = take_savepoint(&jm, &id, req.dir.as_deref(), req.drain).await?;
    if let Some(job) = jm.job(&id) {
        job.request_cancel();
    }
    Ok(written)
}

/// Cancels a job.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 202, description = "Cancelling", body = JobSummary),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job already ended", body = ErrorBody)
    ))]
pub async fn cancel(
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
