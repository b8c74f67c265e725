//! Upgrades over REST: the plan of replacing a running job with a new version of its file.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};

use super::jobs::{SubmitQuery, parse_submission};
use super::{ApiError, ErrorBody};
use crate::JobManager;
use crate::upgrade::plan::UpgradePlan;

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
    // The file is the new version whole: the plan decides where it starts.
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
    Ok(Json(jm.upgrade_plan(&id, &s.file, &s.req.job).await?))
}
