//! Submitting a job: the start it asks for, planning on a blocking thread, the entry with its
//! checkpoints, and the savepoint or retained checkpoint it starts from, checked against it.

use kappa_job::{Overrides, SpecErrors, plan_job};

use crate::job::JobEntry;
use crate::job_text::JobText;
use crate::{Inner, checkpoint, job, store};

/// A savepoint to start a job from.
#[derive(Debug, Clone)]
pub struct SavepointStart {
    /// What to restore.
    pub from: RestoreFrom,
    /// Start even if the savepoint holds state the job has no operator for (it is dropped).
    pub allow_non_restored_state: bool,
}

/// A savepoint directory, or a retained checkpoint of a job of this cluster.
#[derive(Debug, Clone)]
pub enum RestoreFrom {
    Savepoint(String),
    Checkpoint { job: String, id: u64 },
}

impl std::fmt::Display for RestoreFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Savepoint(uri) => write!(f, "savepoint {uri}"),
            Self::Checkpoint { job, id } => write!(f, "checkpoint {id} of job {job}"),
        }
    }
}

/// Checks that the state of `meta` fits the job, operator by operator (uid), or drops what
/// no operator takes when allowed.
fn check_restored_state(
    sp: &SavepointStart,
    meta: &mut checkpoint::CheckpointMetadata,
    plan: &kappa_job::JobPlan,
    layouts: &[checkpoint::OperatorLayout],
) -> Result<(), SubmitError> {
    use kappa_job::graph::OperatorKind;
    let bad = |m: String| SubmitError::BadRequest(format!("{}: {m}", sp.from));
    let graph = plan.graph();
    let kind_of = |uid: &str| graph.operators().find(|o| o.uid == uid).map(|o| o.kind);
    let mut unmapped: Vec<String> = Vec::new();
    for o in &meta.operators {
        if !kind_of(&o.uid).is_some_and(OperatorKind::is_keyed) && !unmapped.contains(&o.uid) {
            unmapped.push(o.uid.clone());
        }
    }
    for c in &meta.sink_commits {
        if !matches!(kind_of(&c.uid), Some(OperatorKind::Sink(_))) && !unmapped.contains(&c.uid) {
            unmapped.push(c.uid.clone());
        }
    }
    for s in &meta.sources {
        if !matches!(kind_of(&s.uid), Some(OperatorKind::Source(_))) && !unmapped.contains(&s.uid) {
            unmapped.push(s.uid.clone());
        }
    }
    if !unmapped.is_empty() {
        let ours: Vec<String> = graph.operators().map(|o| format!("`{}`", o.uid)).collect();
        let theirs: Vec<String> = unmapped.iter().map(|u| format!("`{u}`")).collect();
        if !sp.allow_non_restored_state {
            return Err(bad(format!(
                "it holds state of the operators {} that no operator of the job takes (the job's operators: {}); start with --allow-non-restored-state to drop it",
                theirs.join(", "),
                ours.join(", ")
            )));
        }
        tracing::warn!(from = %sp.from, operators = ?unmapped, "dropping state no operator takes");
        meta.operators.retain(|o| !unmapped.contains(&o.uid));
        meta.sink_commits.retain(|c| !unmapped.contains(&c.uid));
        meta.sources.retain(|s| !unmapped.contains(&s.uid));
        meta.layouts.retain(|l| !unmapped.contains(&l.uid));
    }
    if !meta.operators.is_empty() && meta.max_parallelism != plan.max_parallelism {
        return Err(bad(format!(
            "its keyed state is split into {} key groups (max_parallelism) but the job has {}: set max_parallelism = {} in the job to restore it",
            meta.max_parallelism, plan.max_parallelism, meta.max_parallelism
        )));
    }
    for saved in &meta.layouts {
        let Some(ours) = layouts.iter().find(|l| l.uid == saved.uid) else {
            continue;
        };
        if !saved.aggregates.is_empty() && saved.aggregates != ours.aggregates {
            return Err(bad(format!(
                "the state of `{}` has the aggregates [{}] but the job computes [{}]: the state cannot be restored into them",
                saved.uid,
                saved.aggregates.join(", "),
                ours.aggregates.join(", ")
            )));
        }
    }
    Ok(())
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Invalid(SpecErrors),
    #[error("{0}")]
    BadRequest(String),
    /// The job store (etcd, the checkpoint directory) cannot record it now.
    #[error("{0}")]
    Unavailable(String),
    /// A savepoint location this jobmanager does not let jobs use.
    #[error("savepoint: {0}")]
    Location(#[source] kappa_job::confine::PathRefused),
}

impl From<crate::job_text::SubmittedError> for SubmitError {
    /// A file that does not plan is invalid; secrets that cannot be sealed now may be later.
    fn from(e: crate::job_text::SubmittedError) -> Self {
        match e {
            crate::job_text::SubmittedError::Invalid(e) => Self::Invalid(e),
            e @ crate::job_text::SubmittedError::Seal(_) => Self::Unavailable(e.to_string()),
        }
    }
}

/// Plans a job on a blocking thread: planning a large job must not hold up an async worker
/// (heartbeats, the REST API).
pub(crate) async fn plan_blocking(
    file: &str,
    spec: &str,
    overrides: &Overrides,
) -> Result<kappa_job::JobPlan, SubmitError> {
    let (file, spec, overrides) = (file.to_string(), spec.to_string(), overrides.clone());
    tokio::task::spawn_blocking(move || plan_job(&file, &spec, &overrides))
        .await
        .map_err(|e| SubmitError::Unavailable(format!("planning the job stopped: {e}")))?
        .map_err(SubmitError::Invalid)
}

impl Inner {
    /// Refuses a job whose files or PostgreSQL hosts this jobmanager does not let jobs use;
    /// each refusal is located in the job file.
    pub(crate) fn confine(
        &self,
        file: &str,
        spec: &str,
        plan: &kappa_job::JobPlan,
    ) -> Result<(), SubmitError> {
        self.config
            .confinement
            .check_job(file, spec, plan)
            .map_err(SubmitError::Invalid)
    }

    /// Plans a job and builds its entry: checkpoints, and the savepoint or checkpoint it
    /// starts from (read only when `restore_initial`).
    pub(crate) async fn prepare(
        &self,
        id: &str,
        file_name: &str,
        text: JobText,
        submitted: &store::Submitted,
        restore_initial: bool,
    ) -> Result<JobEntry, SubmitError> {
        let start = submitted
            .start
            .as_deref()
            .map(str::parse::<kappa_job::Start>)
            .transpose()
            .map_err(|e| SubmitError::BadRequest(format!("start: {e}")))?;
        let (position, from) = match start {
            Some(kappa_job::Start::Position(p)) => (Some(p), None),
            Some(kappa_job::Start::Savepoint(uri)) => (None, Some(RestoreFrom::Savepoint(uri))),
            Some(kappa_job::Start::Checkpoint { job, id }) => {
                (None, Some(RestoreFrom::Checkpoint { job, id }))
            }
            None => (None, None),
        };
        let overrides = &Overrides {
            start: position,
            parallelism: submitted.parallelism,
            allow_redacted_secrets: text.is_listed_only(),
        };
        let savepoint = from.filter(|_| restore_initial).map(|from| SavepointStart {
            from,
            allow_non_restored_state: submitted.allow_non_restored_state,
        });
        let plan = plan_blocking(file_name, text.deployed(), overrides).await?;
        let layouts: Vec<checkpoint::OperatorLayout> = plan
            .windows
            .iter()
            .map(|w| checkpoint::OperatorLayout {
                uid: w.uid.clone(),
                aggregates: w.aggregate_names(),
            })
            .collect();
        // The cluster's default interval applies where checkpoints can be written.
        let default_interval = self
            .checkpoint_location
            .as_ref()
            .and(self.config.default_checkpoint_interval);
        let periodic = plan.checkpoints.resolve(default_interval);
        let checkpoints = match (periodic, &self.checkpoint_location) {
            (Some(cp), Some(location)) => Some(checkpoint::Checkpoints::new(
                location.clone(),
                cp,
                layouts.clone(),
            )),
            (Some(_), None) => {
                return Err(SubmitError::BadRequest(
                    "the job asks for checkpoints but the cluster has no checkpoint directory (start the jobmanager with --checkpoint-dir)".into(),
                ));
            }
            // Without periodic checkpoints a job still takes savepoints on request.
            (None, Some(location)) => Some(checkpoint::Checkpoints::new(
                location.clone(),
                checkpoint::Checkpoints::on_request(),
                layouts.clone(),
            )),
            (None, None) => None,
        };
        if periodic.is_none()
            && let Some(sink) = plan
                .sinks
                .iter()
                .find(|s| s.delivery == kappa_job::spec::Delivery::ExactlyOnce)
        {
            let why = match plan.checkpoints {
                kappa_job::plan::Checkpointing::Job { .. } => {
                    "the job's [checkpoints] table has no interval and the cluster has no default (--checkpoint-interval off)"
                }
                _ if self.checkpoint_location.is_none() => {
                    "the cluster has no checkpoint directory (start the jobmanager with --checkpoint-dir)"
                }
                _ => {
                    "the cluster takes no checkpoints by default (--checkpoint-interval off): add a [checkpoints] table with an interval"
                }
            };
            return Err(SubmitError::BadRequest(format!(
                "sink `{}` is exactly-once, which commits output when checkpoints complete, but {why}",
                sink.name
            )));
        }
        let initial = match savepoint {
            Some(_) if checkpoints.is_none() => {
                return Err(SubmitError::BadRequest(
                    "starting from a savepoint needs the jobmanager's --checkpoint-dir (window state is restored through it)".into(),
                ));
            }
            Some(sp) => Some(self.restore_source(&sp, &plan, &layouts).await?),
            None => None,
        };
        let mut job = JobEntry::new(
            id.to_string(),
            file_name.to_string(),
            text,
            plan,
            checkpoints,
            initial,
        );
        job.submitted = submitted.clone();
        Ok(job)
    }

    /// Reads the savepoint or retained checkpoint to start from and checks it fits the job.
    async fn restore_source(
        &self,
        sp: &SavepointStart,
        plan: &kappa_job::JobPlan,
        layouts: &[checkpoint::OperatorLayout],
    ) -> Result<job::RestoreSource, SubmitError> {
        let (location, mut meta) = match &sp.from {
            RestoreFrom::Savepoint(uri) => {
                // Checked before it is parsed: parsing creates a local directory.
                let paths = &self.config.confinement.paths;
                paths
                    .check_location(uri, self.config.checkpoint_dir.as_deref())
                    .map_err(SubmitError::Location)?;
                let location = kappa_state::Location::parse(uri)
                    .map_err(|e| SubmitError::BadRequest(format!("savepoint {uri}: {e}")))?;
                let meta = checkpoint::read_metadata(&location)
                    .await
                    .map_err(SubmitError::BadRequest)?;
                (location, meta)
            }
            RestoreFrom::Checkpoint { job, id } => {
                if let Err(e) = kappa_job::confine::names::job_id(job) {
                    return Err(SubmitError::BadRequest(format!("checkpoint {id}: {e}")));
                }
                let entry = self.job(job).ok_or_else(|| {
                    SubmitError::BadRequest(format!("checkpoint {id} of job {job}: no such job"))
                })?;
                let found = entry.checkpoints.lock().as_ref().and_then(|c| {
                    c.is_retained(*id)
                        .then(|| (c.location.clone(), c.metadata_path(job, *id)))
                });
                let Some((location, path)) = found else {
                    return Err(SubmitError::BadRequest(format!(
                        "checkpoint {id} of job {job} is not a retained completed checkpoint"
                    )));
                };
                let meta = checkpoint::read_metadata_at(&location, &path)
                    .await
                    .map_err(SubmitError::BadRequest)?;
                (location, meta)
            }
        };
        check_restored_state(sp, &mut meta, plan, layouts)?;
        Ok(job::RestoreSource { location, meta })
    }
}
