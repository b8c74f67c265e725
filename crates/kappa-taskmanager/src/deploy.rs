//! Deploying the subtasks of a job attempt that the jobmanager placed here: plan the job from
//! its spec, wire local channels and remote senders, start a thread per subtask, report states.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use kappa_connectors::kafka::{PartitionStart, StartOffset};
use kappa_connectors::splits::SourceAssignment;
use kappa_connectors::{open_sink, open_source};
use kappa_job::keygroup::key_group_range;
use kappa_job::{JobPlan, Overrides, plan_job};
use kappa_proto::v1::partition_start::Start;
use kappa_proto::v1::source_splits::Splits;
use kappa_proto::v1::{
    DeployTasksRequest, ExchangeHeader, SourceSplits, TaskState, TaskStateReport,
};
use kappa_runtime::TaskError;
use kappa_runtime::channel::{Inputs, Outputs, Target};
use kappa_runtime::keyed::KeyPartitioner;
use kappa_runtime::metrics::SubtaskMetrics;
use kappa_runtime::task::{
    SnapshotHook, SourceCheckpoints, SourceOutput, SourceTask, TaskEnd, WindowTask,
};
use kappa_runtime::window::WindowOperator;
use kappa_state::Location;
use tonic::Status;

use crate::checkpoint::{
    CheckpointContext, SinkLog, SourceAcks, WindowSnapshots, pending_commits, restore_window,
};
use crate::exchange::RemoteSender;
use crate::registration::{ToJobManager, to_proto};
use crate::state::{AttemptKey, LocalAttempt, LocalSubtask, Shared};

/// Elements buffered in a window subtask's input channel.
const INPUT_CAPACITY: usize = 8;

/// The source assignment a deployment message carries.
pub fn splits_from_proto(s: Option<&SourceSplits>) -> Result<SourceAssignment, Status> {
    let kafka = match s.and_then(|s| s.splits.as_ref()) {
        Some(Splits::Files(f)) => {
            return Ok(SourceAssignment::Files(
                f.paths.iter().map(Into::into).collect(),
            ));
        }
        Some(Splits::Kafka(k)) => k,
        None => {
            return Err(Status::invalid_argument(
                "a source subtask needs its splits",
            ));
        }
    };
    kafka
        .partitions
        .iter()
        .map(|p| {
            let offset = match p.start {
                Some(Start::Beginning(_)) => StartOffset::Beginning,
                Some(Start::Offset(o)) => StartOffset::Offset(o),
                None => {
                    return Err(Status::invalid_argument(format!(
                        "partition {} has no start",
                        p.partition
                    )));
                }
            };
            Ok(PartitionStart {
                partition: p.partition,
                offset,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(SourceAssignment::Kafka)
}

/// Plans the job of a deployment exactly as the jobmanager did.
fn plan(req: &DeployTasksRequest) -> Result<JobPlan, Status> {
    let start = if req.start.is_empty() {
        None
    } else {
        Some(
            req.start
                .parse()
                .map_err(|e| Status::invalid_argument(format!("start: {e}")))?,
        )
    };
    let overrides = Overrides {
        start,
        parallelism: (req.parallelism > 0).then_some(req.parallelism),
    };
    plan_job(&req.file_name, &req.job_spec, &overrides)
        .map_err(|e| Status::invalid_argument(format!("the job does not plan here: {e}")))
}

struct Reporter {
    shared: Arc<Shared>,
    key: AttemptKey,
    vertex: u32,
    subtask: u32,
    metrics: Arc<SubtaskMetrics>,
}

impl Reporter {
    fn report(&self, state: TaskState, error: Option<&TaskError>) {
        let _ = self
            .shared
            .reports
            .send(ToJobManager::Report(TaskStateReport {
                taskmanager_id: self.shared.id.clone(),
                job_id: self.key.0.clone(),
                attempt: self.key.1,
                vertex: self.vertex,
                subtask: self.subtask,
                state: state as i32,
                error: error.map(ToString::to_string).unwrap_or_default(),
                retriable: error.is_some_and(TaskError::is_retriable),
                metrics: Some(to_proto(
                    &self.key.0,
                    self.key.1,
                    self.vertex,
                    self.subtask,
                    &self.metrics,
                )),
            }));
    }

    /// Runs a subtask body on its own thread, reporting RUNNING and how it ended.
    fn spawn(
        self,
        name: String,
        body: impl FnOnce() -> Result<TaskEnd, TaskError> + Send + 'static,
    ) -> Result<(), Status> {
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                self.report(TaskState::Running, None);
                let result = body();
                match &result {
                    Ok(TaskEnd::Finished) => self.report(TaskState::Finished, None),
                    Ok(TaskEnd::Cancelled) => self.report(TaskState::Canceled, None),
                    Err(e) => {
                        tracing::error!(job = %self.key.0, vertex = self.vertex, subtask = self.subtask, error = %e, "subtask failed");
                        self.report(TaskState::Failed, Some(e));
                    }
                }
                self.shared.subtask_ended(&self.key);
            })
            .map(|_| ())
            .map_err(|e| Status::resource_exhausted(format!("starting a subtask thread: {e}")))
    }
}

/// Starts the subtasks of `req` on this taskmanager.
pub fn deploy(shared: &Arc<Shared>, req: DeployTasksRequest) -> Result<(), Status> {
    let plan = Arc::new(plan(&req)?);
    let p = plan.parallelism;
    let key: AttemptKey = (req.job_id.clone(), req.attempt);
    if shared.attempts.lock().contains_key(&key) {
        return Err(Status::already_exists(format!(
            "job {} attempt {} is already deployed here",
            key.0, key.1
        )));
    }
    for t in &req.tasks {
        let valid_vertex = t.vertex == 0 || (t.vertex == 1 && plan.window.is_some());
        if !valid_vertex || t.subtask >= p {
            return Err(Status::invalid_argument(format!(
                "no subtask {} of vertex {} in this job",
                t.subtask, t.vertex
            )));
        }
    }
    let mut locations: HashMap<u32, (String, String)> = HashMap::new();
    for l in &req.window_locations {
        locations.insert(l.subtask, (l.taskmanager_id.clone(), l.address.clone()));
    }
    if plan.window.is_some() && (0..p).any(|i| !locations.contains_key(&i)) {
        return Err(Status::invalid_argument(
            "the deployment does not locate every window subtask",
        ));
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let checkpointing = if req.checkpoint_location.is_empty() {
        None
    } else {
        let location = Location::parse(&req.checkpoint_location)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let local = shared.state_dir.join(format!("{}-{}", key.0, key.1));
        Some(Arc::new(CheckpointContext {
            shared: Arc::clone(shared),
            location,
            job_id: key.0.clone(),
            attempt: key.1,
            local,
        }))
    };
    let mut checkpoint_triggers = HashMap::new();
    let mut checkpoint_completions = Vec::new();
    let mut completion_ends = HashMap::new();
    let mut trigger_ends = HashMap::new();
    let mut subtasks = Vec::new();
    let mut inputs = HashMap::new();
    let mut input_ends = Vec::new();
    let mut split_inboxes = HashMap::new();
    let mut inbox_ends = HashMap::new();
    let sink_vertex = u32::from(plan.window.is_some());
    for t in &req.tasks {
        let metrics: Arc<SubtaskMetrics> = Arc::default();
        if t.vertex == sink_vertex && checkpointing.is_some() {
            let (tx, rx) = crossbeam_channel::unbounded();
            checkpoint_completions.push(tx);
            completion_ends.insert(t.subtask, rx);
        }
        if t.vertex == 1 {
            let (ins, tx) =
                Inputs::new(p, INPUT_CAPACITY, Arc::clone(&cancel), Arc::clone(&metrics));
            inputs.insert(t.subtask, tx);
            input_ends.push((t.subtask, ins, Arc::clone(&metrics), t.clone()));
        } else {
            let (tx, rx) = crossbeam_channel::unbounded();
            split_inboxes.insert(t.subtask, tx);
            inbox_ends.insert(t.subtask, rx);
            if checkpointing.is_some() {
                let (tx, rx) = crossbeam_channel::unbounded();
                checkpoint_triggers.insert(t.subtask, tx);
                trigger_ends.insert(t.subtask, rx);
            }
        }
        subtasks.push(LocalSubtask {
            vertex: t.vertex,
            subtask: t.subtask,
            metrics,
        });
    }
    let attempt = Arc::new(LocalAttempt {
        job_name: plan.name.clone(),
        cancel: Arc::clone(&cancel),
        inputs: inputs.clone(),
        split_inboxes,
        checkpoint_triggers,
        checkpoint_completions,
        subtasks,
        running: AtomicUsize::new(req.tasks.len()),
        local_state: checkpointing.as_ref().map(|c| c.local.clone()),
    });
    shared
        .attempts
        .lock()
        .insert(key.clone(), Arc::clone(&attempt));
    tracing::info!(job = %key.0, attempt = key.1, name = %plan.name, subtasks = req.tasks.len(), "deploying subtasks");

    let reporter = |vertex: u32, subtask: u32| {
        let metrics = attempt
            .subtasks
            .iter()
            .find(|s| s.vertex == vertex && s.subtask == subtask)
            .map(|s| Arc::clone(&s.metrics))
            .unwrap_or_default();
        Reporter {
            shared: Arc::clone(shared),
            key: key.clone(),
            vertex,
            subtask,
            metrics,
        }
    };
    for (i, ins, metrics, deployment) in input_ends {
        let Some(w) = plan.window.clone() else {
            continue;
        };
        let plan = Arc::clone(&plan);
        let ctx = checkpointing.clone();
        let completions = completion_ends.remove(&i);
        let job_id = key.0.clone();
        reporter(1, i).spawn(format!("{}-window-{i}", key.0), move || {
            let mut window = WindowOperator::new(&w, Arc::clone(&plan.output_schema), plan.max_parallelism)?;
            let mut sink = open_sink(&plan, &job_id, i)?;
            let checkpoints = match ctx.zip(completions) {
                Some((ctx, completions)) => {
                    let restores = &deployment.restore;
                    if !restores.is_empty() {
                        let range = key_group_range(i, plan.max_parallelism, plan.parallelism);
                        let n = restore_window(&ctx, i, restores, &mut window, range)?;
                        tracing::info!(job = %ctx.job_id, subtask = i, windows = n, "window state restored");
                    }
                    sink.recover(pending_commits(&ctx, &deployment.sink_commits)?)?;
                    let log = SinkLog::new(sink.writer(), completions);
                    Some(Box::new(WindowSnapshots::open(ctx, i, log)?) as Box<dyn SnapshotHook>)
                }
                None => None,
            };
            let task = WindowTask {
                inputs: ins,
                window,
                sink,
                metrics,
                checkpoints,
            };
            task.run()
        })?;
    }
    for t in req.tasks.iter().filter(|t| t.vertex == 0) {
        let i = t.subtask;
        let assignment = splits_from_proto(t.splits.as_ref())?;
        let metrics = attempt
            .subtasks
            .iter()
            .find(|s| s.vertex == 0 && s.subtask == i)
            .map(|s| Arc::clone(&s.metrics))
            .unwrap_or_default();
        let targets = match &plan.window {
            None => None,
            Some(_) => {
                let mut v = Vec::with_capacity(p as usize);
                for j in 0..p {
                    v.push(match inputs.get(&j) {
                        Some(tx) => Target::Local(tx.clone()),
                        None => {
                            let (_, address) = locations.get(&j).ok_or_else(|| {
                                Status::invalid_argument(format!(
                                    "window subtask {j} has no location"
                                ))
                            })?;
                            let header = ExchangeHeader {
                                job_id: key.0.clone(),
                                attempt: key.1,
                                upstream: i,
                                downstream: j,
                            };
                            Target::Remote(Box::new(RemoteSender::new(
                                address.clone(),
                                header,
                                shared.handle.clone(),
                                Arc::clone(&cancel),
                                Arc::clone(&metrics),
                            )))
                        }
                    });
                }
                Some(v)
            }
        };
        let (plan, cancel, job_id) = (Arc::clone(&plan), Arc::clone(&cancel), key.0.clone());
        let inbox = inbox_ends.remove(&i);
        let (triggers, ctx) = (trigger_ends.remove(&i), checkpointing.clone());
        let (completions, commits) = (completion_ends.remove(&i), t.sink_commits.clone());
        reporter(0, i).spawn(format!("{}-source-{i}", key.0), move || {
            let mut sink_log = None;
            let output = match (targets, &plan.window) {
                (Some(targets), Some(w)) => SourceOutput::Keyed {
                    partitioner: KeyPartitioner::new(
                        &w.keys,
                        plan.max_parallelism,
                        plan.parallelism,
                    )?,
                    outputs: Outputs::new(i, targets, Arc::clone(&cancel), Arc::clone(&metrics)),
                },
                _ => {
                    let mut sink = open_sink(&plan, &job_id, i)?;
                    if let (Some(ctx), Some(completions)) = (&ctx, completions) {
                        sink.recover(pending_commits(ctx, &commits)?)?;
                        sink_log = Some(SinkLog::new(sink.writer(), completions));
                    }
                    SourceOutput::Sink(sink)
                }
            };
            let checkpoints = triggers.zip(ctx).map(|(triggers, ctx)| SourceCheckpoints {
                triggers,
                acks: Box::new(SourceAcks {
                    ctx,
                    subtask: i,
                    sink: sink_log,
                }),
            });
            let reader = open_source(&plan, &job_id, &assignment, inbox, Arc::clone(&metrics))?;
            SourceTask {
                reader,
                event_time: plan.event_time.clone(),
                steps: plan.steps.clone(),
                output,
                metrics,
                cancel,
                checkpoints,
                drained: false,
            }
            .run()
        })?;
    }
    Ok(())
}
