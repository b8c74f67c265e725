//! The cluster routes of the REST API: overview, taskmanagers (with the subtasks each runs)
//! and the Prometheus metrics.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ErrorBody};
use crate::job::JobState;
use crate::registry::TaskManagerView;
use crate::{JobManager, prom};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Overview {
    pub version: String,
    pub uptime_seconds: u64,
    pub taskmanagers: u32,
    pub slots_total: u32,
    pub slots_free: u32,
    pub checkpoint_dir: Option<String>,
    /// Number of jobs in each state (every state listed).
    pub jobs: std::collections::BTreeMap<String, usize>,
}

/// A subtask running on a taskmanager.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskManagerTask {
    pub job_id: String,
    pub job_name: String,
    /// The operator (vertex) name.
    pub vertex: String,
    pub subtask: u32,
    pub records_in: u64,
    pub records_out: u64,
}

/// A taskmanager and the subtasks it runs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskManagerDetail {
    pub taskmanager: TaskManagerView,
    pub tasks: Vec<TaskManagerTask>,
}

/// The cluster at a glance.
#[utoipa::path(get, path = "/api/v1/overview", tag = "cluster",
    responses((status = 200, description = "Cluster overview", body = Overview)))]
pub async fn overview(State(jm): State<JobManager>) -> Json<Overview> {
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

/// The registered taskmanagers.
#[utoipa::path(get, path = "/api/v1/taskmanagers", tag = "cluster",
    responses((status = 200, description = "Registered taskmanagers", body = Vec<TaskManagerView>)))]
pub async fn taskmanagers(State(jm): State<JobManager>) -> Json<Vec<TaskManagerView>> {
    Json(jm.registry().views())
}

/// One taskmanager: its slots and the subtasks of running jobs placed on it.
#[utoipa::path(get, path = "/api/v1/taskmanagers/{id}", tag = "cluster",
    params(("id" = String, Path, description = "Taskmanager id")),
    responses(
        (status = 200, description = "The taskmanager", body = TaskManagerDetail),
        (status = 404, description = "No such taskmanager", body = ErrorBody)
    ))]
pub async fn taskmanager(
    State(jm): State<JobManager>,
    Path(id): Path<String>,
) -> Result<Json<TaskManagerDetail>, ApiError> {
    let view = jm
        .registry()
        .views()
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no taskmanager with id `{id}`")))?;
    let mut tasks = Vec::new();
    for job in jm.jobs() {
        if job.state().is_terminal() {
            continue;
        }
        let detail = job.detail();
        for v in &detail.vertices {
            for s in v
                .subtasks
                .iter()
                .filter(|s| s.taskmanager.as_deref() == Some(&id))
            {
                tasks.push(TaskManagerTask {
                    job_id: job.id.clone(),
                    job_name: job.plan.name.clone(),
                    vertex: v.name.clone(),
                    subtask: s.index,
                    records_in: s.records_in,
                    records_out: s.records_out,
                });
            }
        }
    }
    Ok(Json(TaskManagerDetail {
        taskmanager: view,
        tasks,
    }))
}

/// Prometheus metrics of the jobmanager (each taskmanager serves its own).
#[utoipa::path(get, path = "/metrics", tag = "cluster",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(jm): State<JobManager>) -> Result<Response, ApiError> {
    let text = prom::render(&jm).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering metrics: {e}"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
