//! The steps of an upgrade ([`super::protocol::Step`]) as the shell carries them out, each
//! idempotent: creating and dropping shadows, submitting v2 (into the shadows, then into the
//! live sinks from its savepoint), stopping a job with a savepoint in the upgrade's directory,
//! the swap, cancelling the shadow job and restarting v1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_runtime::error::with_causes;

use super::driver::UpgradeHandle;
use super::protocol::{Output, Step, StepError, Which};
use super::record::UpgradeRecord;
use super::sinks::SinkOps;
use crate::job::JobEntry;
use crate::{Inner, store};

/// How long a cancelled job may take to end.
const END_TIMEOUT: Duration = Duration::from_secs(60);

/// The jobmanager's handle, whose submissions and savepoints the steps use.
fn manager(inner: &Arc<Inner>) -> crate::JobManager {
    crate::JobManager {
        inner: Arc::clone(inner),
    }
}

/// The operations on the shadows of `record`, with v1's connections (planned again from its
/// whole file once it ended: a listed job's plan has its literal secrets redacted).
pub(super) async fn sink_ops(
    inner: &Inner,
    record: &UpgradeRecord,
) -> Result<Vec<SinkOps>, StepError> {
    let v1 = inner.job(&record.v1_job).ok_or_else(|| StepError {
        message: format!("job {} (v1) is gone", record.v1_job),
        retryable: false,
    })?;
    let sinks = match v1.text.is_listed_only() {
        false => v1.plan.sinks.clone(),
        true => {
            let text = whole_text(inner, &v1)?;
            crate::submission::plan_blocking(&v1.file_name, &text, &Default::default())
                .await
                .map_err(|e| StepError {
                    message: with_causes(&e),
                    retryable: false,
                })?
                .sinks
        }
    };
    let shadow = record.shadow_job.as_deref().and_then(|id| inner.job(id));
    let writers = |sink: &str| {
        shadow
            .as_deref()
            .map_or_else(Vec::new, |j| writers(j, sink))
    };
    Ok(SinkOps::all(
        &record.id,
        &record.shadows,
        &sinks,
        &writers,
        &inner.config.confinement,
        inner.config.kafka_timeout,
    )?)
}

/// The ids under which the subtasks of sink `sink` of `job` commit their output.
fn writers(job: &JobEntry, sink: &str) -> Vec<String> {
    let Some(uid) = job
        .plan
        .sinks
        .iter()
        .find(|s| s.name == sink)
        .map(|s| &s.uid)
    else {
        return Vec::new();
    };
    let graph = job.plan.graph();
    let subtasks = graph
        .vertices
        .iter()
        .find(|v| v.chain.iter().any(|o| &o.uid == uid))
        .map_or(0, |v| v.parallelism);
    (0..subtasks)
        .map(|i| kappa_connectors::sink_writer_id(&job.id, uid, i))
        .collect()
}

/// The whole file of `job`: kept while it can run, unsealed from its record once it ended
/// (its literal secrets need the jobmanagers' `--secret-key-file`).
fn whole_text(inner: &Inner, job: &JobEntry) -> Result<String, StepError> {
    if !job.text.is_listed_only() {
        return Ok(job.text.deployed().to_string());
    }
    let t = &job.text;
    let what = format!("the file of job {}", job.id);
    unsealed(
        inner,
        &job.id,
        &job.file_name,
        &t.shown,
        t.sealed.as_deref(),
        &what,
    )
}

/// The whole text of file `file` kept (under `id`) as its redacted text `shown` and its
/// `sealed` literals; `what` names it in errors.
fn unsealed(
    inner: &Inner,
    id: &str,
    file: &str,
    shown: &str,
    sealed: Option<&str>,
    what: &str,
) -> Result<String, StepError> {
    let key = inner.config.secret_key.as_deref();
    crate::job_text::JobText::kept(id, file, shown, sealed, key)
        .map(|t| t.deployed().to_string())
        .map_err(|e| StepError {
            message: format!("{what}: {}", with_causes(&e)),
            retryable: false,
        })
}

/// Runs `f` on each shadow's operations on a blocking thread.
async fn each_sink<T: Send + 'static>(
    inner: &Inner,
    record: &UpgradeRecord,
    f: impl Fn(&SinkOps) -> Result<T, super::sinks::SinkOpsError> + Send + 'static,
) -> Result<Vec<T>, StepError> {
    let ops = sink_ops(inner, record).await?;
    let done =
        tokio::task::spawn_blocking(move || ops.iter().map(f).collect::<Result<Vec<T>, _>>())
            .await
            .map_err(super::sinks::SinkOpsError::from)??;
    Ok(done)
}

/// Carries `step` out.
pub(super) async fn run(
    inner: &Arc<Inner>,
    handle: &UpgradeHandle,
    step: &Step,
) -> Result<Output, StepError> {
    let record = handle.record();
    match step {
        Step::CreateShadows => {
            each_sink(inner, &record, SinkOps::create).await?;
            Ok(Output::Nothing)
        }
        Step::SubmitShadow => {
            let (file, text) = handle.v2.lock().clone().ok_or_else(|| StepError {
                message: "v2's file is not known to this jobmanager".into(),
                retryable: false,
            })?;
            let text = retarget(&text, &record, Side::Shadow)?;
            let id = submit(inner, &file, &text, Some("earliest".into()), None).await?;
            // The text lives on in the shadow job.
            handle.v2.lock().take();
            Ok(Output::Job(id))
        }
        Step::Stop(which) => stop(inner, &record, *which).await,
        Step::Swap => {
            let started = Instant::now();
            let (upgrade, delete) = (record.id.clone(), record.delete_vanished);
            let swapped = each_sink(inner, &record, move |op| op.swap(&upgrade, delete)).await?;
            let figures: Vec<String> = swapped
                .iter()
                .map(|s| format!("`{}` {} written, {} removed", s.sink, s.written, s.removed))
                .collect();
            Ok(Output::Note(format!(
                "the live sinks hold v2's results ({}) after {} ms",
                figures.join("; "),
                started.elapsed().as_millis()
            )))
        }
        Step::SubmitLive { savepoint } => {
            let (file, text) = live_file(inner, &record)?;
            let start = Some(format!("savepoint:{savepoint}"));
            let id = submit(inner, &file, &text, start, None).await?;
            Ok(Output::Job(id))
        }
        Step::CancelShadow => {
            for job in shadow_writers(inner, &record) {
                job.request_cancel();
                wait_ended(&job).await?;
            }
            Ok(Output::Nothing)
        }
        Step::RestartV1 { savepoint } => {
            let v1 = inner.job(&record.v1_job).ok_or_else(|| StepError {
                message: format!(
                    "job {} (v1) is gone: restart it from {savepoint}",
                    record.v1_job
                ),
                retryable: false,
            })?;
            let start = Some(format!("savepoint:{savepoint}"));
            let text = whole_text(inner, &v1)?;
            let id = submit(inner, &v1.file_name, &text, start, v1.submitted.parallelism).await?;
            Ok(Output::Job(id))
        }
        Step::DropShadows => {
            each_sink(inner, &record, SinkOps::drop_shadow).await?;
            Ok(Output::Nothing)
        }
    }
}

/// v2's file with its live sinks (its name, its whole text): the shadow job's retargeted
/// back, or the one the record keeps when v2 starts from v1's savepoint.
fn live_file(inner: &Inner, record: &UpgradeRecord) -> Result<(String, String), StepError> {
    let failed = |message: String| StepError {
        message,
        retryable: false,
    };
    if let Some(f) = &record.v2_file {
        let text = unsealed(
            inner,
            &record.id,
            &f.name,
            &f.shown,
            f.sealed.as_deref(),
            "v2's file",
        )?;
        return Ok((f.name.clone(), text));
    }
    let shadow = record
        .shadow_job
        .as_deref()
        .and_then(|id| inner.job(id))
        .ok_or_else(|| failed("the shadow job, whose file v2 runs from, is gone".into()))?;
    let text = retarget(&whole_text(inner, &shadow)?, record, Side::Live)?;
    Ok((shadow.file_name.clone(), text))
}

/// Which targets a file is given.
#[derive(Clone, Copy)]
enum Side {
    Shadow,
    Live,
}

/// `text` writing into the shadows, or into the live sinks again.
fn retarget(text: &str, record: &UpgradeRecord, side: Side) -> Result<String, StepError> {
    let targets: Vec<kappa_job::retarget::Retarget> = record
        .shadows
        .iter()
        .map(|s| kappa_job::retarget::Retarget {
            sink: s.sink.clone(),
            field: match s.connector.as_str() {
                "postgres" => "table",
                "kafka" => "topic",
                _ => "path",
            },
            value: match side {
                Side::Shadow => s.shadow.clone(),
                Side::Live => s.live.clone(),
            },
        })
        .collect();
    kappa_job::retarget::retarget_sinks(text, &targets).map_err(|e| StepError {
        message: with_causes(&e),
        retryable: false,
    })
}

/// Submits a job, unless one started with the same `start` (a savepoint of this upgrade's)
/// exists: a jobmanager that took over repeats a submission whose outcome it did not record.
async fn submit(
    inner: &Arc<Inner>,
    file: &str,
    text: &str,
    start: Option<String>,
    parallelism: Option<u32>,
) -> Result<String, StepError> {
    if start
        .as_deref()
        .is_some_and(|s| s.starts_with("savepoint:"))
    {
        let submitted = inner
            .jobs
            .read()
            .values()
            .find(|j| j.submitted.start == start)
            .map(|j| j.id.clone());
        if let Some(id) = submitted {
            tracing::info!(job = %id, start = ?start, "the job of this step runs already");
            return Ok(id);
        }
    }
    let submitted = store::Submitted {
        start,
        parallelism,
        allow_non_restored_state: false,
    };
    manager(inner)
        .submit_from(file, text, &submitted)
        .await
        .map_err(|e| StepError {
            retryable: matches!(e, crate::SubmitError::Unavailable(_)),
            message: with_causes(&e),
        })
}

/// Jobs not ended that write into a shadow of `record`: its shadow job, and one a
/// jobmanager submitted before it could record it.
fn shadow_writers(inner: &Inner, record: &UpgradeRecord) -> Vec<Arc<JobEntry>> {
    let targets: Vec<&str> = record.shadows.iter().map(|s| s.shadow.as_str()).collect();
    inner
        .jobs
        .read()
        .values()
        .filter(|j| !j.state().is_terminal())
        .filter(|j| {
            record.shadow_job.as_deref() == Some(j.id.as_str())
                || j.plan.sinks.iter().any(|s| {
                    super::plan::target(&s.kind).is_some_and(|(_, t)| targets.contains(&t.as_str()))
                })
        })
        .cloned()
        .collect()
}

async fn wait_ended(job: &JobEntry) -> Result<(), StepError> {
    let deadline = Instant::now() + END_TIMEOUT;
    while !job.state().is_terminal() {
        if Instant::now() > deadline {
            return Err(StepError {
                message: format!("job {} did not end within {END_TIMEOUT:?}", job.id),
                retryable: true,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Stops v1 or the shadow job with a savepoint in the upgrade's directory; of a job that
/// already ended, finds the savepoint it left there.
async fn stop(
    inner: &Arc<Inner>,
    record: &UpgradeRecord,
    which: Which,
) -> Result<Output, StepError> {
    let id = match which {
        Which::V1 => Some(record.v1_job.as_str()),
        Which::Shadow => record.shadow_job.as_deref(),
    };
    let job = id.and_then(|id| inner.job(id)).ok_or_else(|| StepError {
        message: "the job to stop is gone".into(),
        retryable: false,
    })?;
    let root = inner
        .config
        .checkpoint_dir
        .as_deref()
        .ok_or_else(|| StepError {
            message: "the cluster has no checkpoint directory for savepoints".into(),
            retryable: false,
        })?;
    let side = match which {
        Which::V1 => "v1",
        Which::Shadow => "v2",
    };
    let dir = format!(
        "{}/upgrades/{}/{side}",
        root.trim_end_matches('/'),
        record.id
    );
    if !job.state().is_terminal() {
        let path = manager(inner)
            .savepoint(&job.id, Some(&dir), false)
            .await
            .map_err(|e| StepError {
                // A job restarting (or resumed by a new jobmanager) runs again soon.
                retryable: matches!(
                    e,
                    crate::SavepointError::Failed(_) | crate::SavepointError::NotRunning(_)
                ),
                message: with_causes(&e),
            })?;
        job.request_cancel();
        wait_ended(&job).await?;
        return Ok(Output::Savepoint(path));
    }
    latest_savepoint(&dir).await.map(Output::Savepoint)
}

/// The newest savepoint under `dir` (the names end in the time they were taken).
async fn latest_savepoint(dir: &str) -> Result<String, StepError> {
    let missing = |why: String| StepError {
        message: format!("the job ended without a savepoint in {dir}: {why}"),
        retryable: false,
    };
    let location = kappa_state::Location::parse(dir).map_err(|e| missing(e.to_string()))?;
    let listing = location
        .store
        .list_with_delimiter(Some(&location.child(&[])))
        .await
        .map_err(|e| missing(e.to_string()))?;
    let mut found = Vec::new();
    for p in listing.common_prefixes {
        let Some(name) = p.filename().map(str::to_string) else {
            continue;
        };
        let taken: Option<i64> = name.rsplit('-').next().and_then(|t| t.parse().ok());
        let sub = format!("{}/{name}", dir.trim_end_matches('/'));
        let Ok(at) = kappa_state::Location::parse(&sub) else {
            continue;
        };
        if let Some(t) = taken
            && crate::checkpoint::read_metadata(&at).await.is_ok()
        {
            found.push((t, sub));
        }
    }
    found
        .into_iter()
        .max()
        .map(|(_, path)| path)
        .ok_or_else(|| missing("none was completed".into()))
}
