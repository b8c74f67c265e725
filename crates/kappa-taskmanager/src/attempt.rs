//! One attempt of a job on this taskmanager: wires channels, starts a thread per subtask,
//! cancels the others when one fails, and reports the first error as the root cause.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use kappa_connectors::splits::SourceAssignment;
use kappa_connectors::{SinkFactory, open_source};
use kappa_job::JobPlan;
use kappa_runtime::TaskError;
use kappa_runtime::channel::all_to_all;
use kappa_runtime::keyed::KeyPartitioner;
use kappa_runtime::metrics::VertexMetrics;
use kappa_runtime::task::{SourceOutput, SourceTask, TaskEnd, WindowTask};
use kappa_runtime::window::WindowOperator;

/// Elements buffered per channel between a source subtask and a window subtask.
const CHANNEL_CAPACITY: usize = 16;

/// What to run.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub job_id: String,
    pub attempt: u32,
    pub plan: Arc<JobPlan>,
    /// One assignment per source subtask.
    pub assignments: Vec<SourceAssignment>,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    Finished,
    Cancelled,
    Failed(TaskError),
}

/// A running attempt: its live metrics and the means to cancel it.
pub struct AttemptHandle {
    cancel: Arc<AtomicBool>,
    pub metrics: Vec<VertexMetrics>,
}

impl AttemptHandle {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

type TaskThread = (String, JoinHandle<Result<TaskEnd, TaskError>>);

fn spawn(
    name: String,
    f: impl FnOnce() -> Result<TaskEnd, TaskError> + Send + 'static,
) -> Result<TaskThread, TaskError> {
    let h = std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| TaskError::Io(format!("starting thread {name}: {e}")))?;
    Ok((name, h))
}

/// Starts every subtask of the deployment; `on_done` is called once with the outcome.
pub fn deploy(
    d: Deployment,
    on_done: impl FnOnce(AttemptOutcome) + Send + 'static,
) -> Result<AttemptHandle, TaskError> {
    let plan = Arc::clone(&d.plan);
    let p = plan.parallelism;
    let cancel = Arc::new(AtomicBool::new(false));
    let sources = VertexMetrics::new(0, "source", p);
    let windows = plan
        .window
        .as_ref()
        .map(|_| VertexMetrics::new(1, "window", p));
    let sinks = SinkFactory::new(&plan)?;
    let mut threads: Vec<TaskThread> = Vec::new();

    let mut outputs: Vec<SourceOutput> = Vec::new();
    if let (Some(w), Some(wm)) = (&plan.window, &windows) {
        let (outs, ins) = all_to_all(&sources.subtasks, &wm.subtasks, CHANNEL_CAPACITY, &cancel);
        for o in outs {
            let partitioner = KeyPartitioner::new(&w.keys, plan.max_parallelism, p)?;
            outputs.push(SourceOutput::Keyed {
                partitioner,
                outputs: o,
            });
        }
        for (i, inputs) in ins.into_iter().enumerate() {
            let task = WindowTask {
                inputs,
                window: WindowOperator::new(w, Arc::clone(&plan.output_schema))?,
                sink: sinks.open(&plan)?,
                metrics: Arc::clone(&wm.subtasks[i]),
            };
            threads.push(spawn(format!("{}-window-{i}", d.job_id), move || {
                task.run()
            })?);
        }
    } else {
        for _ in 0..p {
            outputs.push(SourceOutput::Sink(sinks.open(&plan)?));
        }
    }
    for (i, (output, assignment)) in outputs
        .into_iter()
        .zip(d.assignments.iter().cloned())
        .enumerate()
    {
        let (plan, cancel, job_id) = (Arc::clone(&plan), Arc::clone(&cancel), d.job_id.clone());
        let metrics = Arc::clone(&sources.subtasks[i]);
        threads.push(spawn(format!("{}-source-{i}", d.job_id), move || {
            let reader = open_source(&plan, &job_id, &assignment, Arc::clone(&metrics))?;
            SourceTask {
                reader,
                event_time: plan.event_time.clone(),
                steps: plan.steps.clone(),
                output,
                metrics,
                cancel,
            }
            .run()
        })?);
    }
    let watcher_cancel = Arc::clone(&cancel);
    let job_id = d.job_id.clone();
    std::thread::Builder::new()
        .name(format!("{job_id}-attempt-{}", d.attempt))
        .spawn(move || on_done(supervise(threads, &watcher_cancel)))
        .map_err(|e| TaskError::Io(format!("starting the attempt supervisor: {e}")))?;
    let mut metrics = vec![sources];
    metrics.extend(windows);
    Ok(AttemptHandle { cancel, metrics })
}

/// Waits for every task; the first failure cancels the rest and is the outcome.
fn supervise(threads: Vec<TaskThread>, cancel: &AtomicBool) -> AttemptOutcome {
    let mut first_error: Option<TaskError> = None;
    let mut cancelled = false;
    let mut pending: Vec<TaskThread> = threads;
    while !pending.is_empty() {
        let (done, rest): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(_, h)| h.is_finished());
        pending = rest;
        for (name, h) in done {
            let result = h
                .join()
                .unwrap_or_else(|_| Err(TaskError::Data(format!("task {name} panicked"))));
            match result {
                Ok(TaskEnd::Finished) => {}
                Ok(TaskEnd::Cancelled) => cancelled = true,
                Err(e) => {
                    tracing::error!(task = %name, error = %e, "task failed");
                    cancel.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
        }
        if !pending.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    match first_error {
        Some(e) => AttemptOutcome::Failed(e),
        None if cancelled || cancel.load(Ordering::Relaxed) => AttemptOutcome::Cancelled,
        None => AttemptOutcome::Finished,
    }
}
