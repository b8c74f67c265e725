//! The time-series route of the REST API: the last hour of a job's metrics, which the web
//! UI's charts draw.

use axum::Json;
use axum::extract::{Path, State};

use super::{ApiError, ErrorBody};
use crate::JobManager;
use crate::timeseries::JobSeries;

/// The last hour of a job's metrics, one point every few seconds while it runs: records/s
/// and watermark delay per vertex, Kafka lag per source, event-to-sink latency (p50, p99, max
/// of the rows written since the previous point), checkpoint duration and size.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/series", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job's time series", body = JobSeries),
        (status = 404, description = "No such job", body = ErrorBody)
    ))]
pub async fn job_series(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<Json<JobSeries>, ApiError> {
    if jm.job(&id).is_none() {
        return Err(ApiError::not_found(format!("no job with id `{id}`")));
    }
    Ok(Json(jm.series(&id)))
}
