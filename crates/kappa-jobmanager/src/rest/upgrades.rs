//! Upgrades over REST: the plan of replacing a running job with a new version of its file,
//! starting it (or an audit of the job against its own file), following it, its diff, the
//! cut-over and the abort.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::jobs::{SubmitQuery, parse_submission};
use super::{ApiError, ErrorBody};
use crate::JobManager;
use crate::upgrade::control::{StartOptions, UpgradeView};
use crate::upgrade::plan::UpgradePlan;
use crate::upgrade::protocol::Request;
use crate::upgrade::record::Kind;

/// The plan of upgrading a running job to a new version of its file (`kappactl upgrade
/// --dry-run`): what changed, whether the new version starts from a savepoint or replays
/// history (the backlog and the time it should take), the shadow sinks it would write, and
/// what refuses a cut-over. Nothing runs. Of the submission's fields only `job` and
/// `file_name` apply: `start`, `parallelism` and `allow_non_restored_state` are refused (400).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/upgrade-plan", tag = "jobs",
    params(("id" = String, Path, description = "The running job (v1)"), SubmitQuery),
    request_body(description = "The new version (v2): a JSON submission, or the raw job.toml (UTF-8) as application/toml", content(
        (super::SubmitRequest = "application/json"),
        (String = "application/toml")
    )),
    responses(
        (status = 200, description = "The plan", body = UpgradePlan),
        (status = 400, description = "The new job file or the request is invalid", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 413, description = "The body is larger than --max-request-bytes", body = ErrorBody),
        (status = 415, description = "The body is neither application/json nor application/toml", body = ErrorBody),
        (status = 503, description = "Kafka did not answer about a topic of the new file (a retry may help)", body = ErrorBody)
    ))]
pub async fn upgrade_plan(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<UpgradePlan>, ApiError> {
    let s = parse_submission(&headers, query, body)?;
    refuse_overrides(&s)?;
    Ok(Json(jm.upgrade_plan(&id, &s.file, &s.req.job).await?))
}

/// The file is the new version whole: the plan decides where it starts.
fn refuse_overrides(s: &super::jobs::Submission) -> Result<(), ApiError> {
    let set = [
        ("start", s.req.start.is_some()),
        ("parallelism", s.req.parallelism.is_some()),
        ("allow_non_restored_state", s.req.allow_non_restored_state),
    ];
    if let Some((field, _)) = set.iter().find(|(_, given)| *given) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "`{field}` does not apply to an upgrade: the plan decides where the new version starts, and its settings are those of its file"
            ),
        ));
    }
    Ok(())
}

/// How an upgrade starts.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UpgradeQuery {
    /// Cut over as soon as the new version has caught up (default: wait for a cut-over
    /// request).
    #[serde(default)]
    pub auto_cutover: bool,
}

/// Starts upgrading a running job to a new version of its file (`kappactl upgrade`): shadow
/// sinks are created beside the live ones, the new version recomputes history into them
/// beside the running job, and the upgrade waits for a cut-over (or cuts over by itself with
/// `auto_cutover`) once it has caught up. Refused (409) when the plan refuses it.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/upgrades", tag = "upgrades",
    params(("id" = String, Path, description = "The running job (v1)"), SubmitQuery, UpgradeQuery),
    request_body(description = "The new version (v2): a JSON submission, or the raw job.toml (UTF-8) as application/toml", content(
        (super::SubmitRequest = "application/json"),
        (String = "application/toml")
    )),
    responses(
        (status = 201, description = "Started", body = UpgradeView),
        (status = 400, description = "The new job file or the request is invalid", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The upgrade cannot be cut over, or the job is being upgraded already", body = ErrorBody),
        (status = 413, description = "The body is larger than --max-request-bytes", body = ErrorBody),
        (status = 415, description = "The body is neither application/json nor application/toml", body = ErrorBody),
        (status = 503, description = "Kafka did not answer, or the upgrade could not be recorded (a retry may help)", body = ErrorBody)
    ))]
pub async fn start_upgrade(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    options: Result<Query<UpgradeQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<UpgradeView>), ApiError> {
    let Query(options) = options.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid query parameters: {}", e.body_text()),
        )
    })?;
    let s = parse_submission(&headers, query, body)?;
    refuse_overrides(&s)?;
    let options = StartOptions {
        kind: Kind::Upgrade,
        auto_cutover: options.auto_cutover,
    };
    let view = jm
        .start_upgrade(&id, &s.file, Some(&s.req.job), options)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Starts an audit of a running job (`kappactl audit`): its own file recomputes history into
/// shadow sinks beside it, and once caught up the diff lists every row the job's sinks hold
/// that its logic does not give (duplicates, losses, tampering). Never cut over; abort it to
/// drop the shadows.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/audits", tag = "upgrades",
    params(("id" = String, Path, description = "The running job")),
    responses(
        (status = 201, description = "Started", body = UpgradeView),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job's sinks cannot be audited, or it is being upgraded already", body = ErrorBody),
        (status = 503, description = "Kafka did not answer, or the audit could not be recorded (a retry may help)", body = ErrorBody)
    ))]
pub async fn start_audit(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<UpgradeView>), ApiError> {
    let options = StartOptions {
        kind: Kind::Audit,
        auto_cutover: false,
    };
    let view = jm.start_upgrade(&id, "", None, options).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Every upgrade and audit, oldest first.
#[utoipa::path(get, path = "/api/v1/upgrades", tag = "upgrades",
    responses((status = 200, description = "The upgrades", body = Vec<UpgradeView>)))]
pub async fn list_upgrades(State(jm): State<JobManager>) -> Json<Vec<UpgradeView>> {
    Json(jm.upgrades())
}

/// An upgrade: its phase and history, the new version's progress, the latest diff.
#[utoipa::path(get, path = "/api/v1/upgrades/{id}", tag = "upgrades",
    params(("id" = String, Path, description = "Upgrade id")),
    responses(
        (status = 200, description = "The upgrade", body = UpgradeView),
        (status = 404, description = "No such upgrade", body = ErrorBody)
    ))]
pub async fn upgrade_detail(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<Json<UpgradeView>, ApiError> {
    jm.upgrade(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no upgrade {id}")))
}

/// Cuts an upgrade over: the old version stops with a savepoint, the new one reaches where it
/// stopped and stops with a savepoint, the live sinks take the shadows' content (each at one
/// instant), and the new version continues from its savepoint into the live sinks. Before the
/// new version caught up, it cuts over once it has.
#[utoipa::path(post, path = "/api/v1/upgrades/{id}/cutover", tag = "upgrades",
    params(("id" = String, Path, description = "Upgrade id")),
    responses(
        (status = 202, description = "Cutting over", body = UpgradeView),
        (status = 404, description = "No such upgrade", body = ErrorBody),
        (status = 409, description = "An audit, or an upgrade that ended", body = ErrorBody)
    ))]
pub async fn cutover(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<UpgradeView>), ApiError> {
    let view = jm.upgrade_request(
        &id,
        Request::Cutover {
            now_ms: crate::job::now_ms(),
        },
    )?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Aborts an upgrade or audit: the new version is cancelled, the old one restarted from its
/// savepoint if the cut-over had stopped it, and the shadows are dropped. Refused once the
/// sinks are being swapped.
#[utoipa::path(post, path = "/api/v1/upgrades/{id}/abort", tag = "upgrades",
    params(("id" = String, Path, description = "Upgrade id")),
    responses(
        (status = 202, description = "Aborting", body = UpgradeView),
        (status = 404, description = "No such upgrade", body = ErrorBody),
        (status = 409, description = "The swap began, or the upgrade ended", body = ErrorBody)
    ))]
pub async fn abort(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<UpgradeView>), ApiError> {
    let request = Request::Abort {
        why: "aborted on request".into(),
        now_ms: crate::job::now_ms(),
    };
    let view = jm.upgrade_request(&id, request)?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Compares the live sinks with the shadows now, as JSON lines: one line per row that
/// differs (`sink`, `key`, `old` from the running job, `new` from the new version,
/// `magnitude`), in key order. The status shows the counts and the largest changes.
#[utoipa::path(get, path = "/api/v1/upgrades/{id}/diff", tag = "upgrades",
    params(("id" = String, Path, description = "Upgrade id")),
    responses(
        (status = 200, description = "Every differing row, one JSON object per line", content_type = "application/x-ndjson", body = String),
        (status = 404, description = "No such upgrade", body = ErrorBody),
        (status = 409, description = "The upgrade has no shadows to compare in its phase", body = ErrorBody),
        (status = 503, description = "A sink could not be read (a retry may help)", body = ErrorBody)
    ))]
pub async fn upgrade_diff(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, rows) = jm.upgrade_diff(&id).await?;
    let mut body = String::new();
    for row in rows {
        let line = serde_json::to_string(&row).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding a row: {e}"),
            )
        })?;
        body.push_str(&line);
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
