//! Drives one job through its lifecycle: wait for slots (spread over taskmanagers), assign
//! the source splits, deploy the subtasks over gRPC, follow their reports, discover new Kafka
//! partitions, and on a failure cancel the attempt everywhere and restart it or give up.

mod catch_up;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_connectors::ConnectorError;
use kappa_connectors::kafka::StartOffset;
use kappa_connectors::kafka::admin::TopicAdmin;
use kappa_connectors::splits::{SourceAssignment, assign_splits};
use kappa_job::graph::PhysicalGraph;
use kappa_job::plan::SourceKind;
use kappa_proto::v1::NotifyCheckpointCompleteRequest;
use kappa_proto::v1::{
    AddSplitsRequest, CancelAttemptRequest, DeployTasksRequest, SubtaskLocation, TaskDeployment,
    TriggerCheckpointRequest,
};
use kappa_runtime::TaskError;
use kappa_runtime::metrics::VertexMetrics;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tonic::Status;

use crate::Inner;
use crate::attempt_machine::{AttemptMachine, Command as AttemptCommand, Input, JobShape};
use crate::attempt_tasks::AttemptTasks;
use crate::calls::{CALL_TIMEOUT, Client, DEPLOY_TIMEOUT, concurrently};
use crate::checkpoint::{
    CheckpointMetadata, delete_objects, tick_interval, write_metadata, write_savepoint,
};
use crate::deployment::{head_source, restore_starts, splits_to_proto, task_deployment};
use crate::job::{
    AttemptEvent, AttemptInfo, AttemptRun, JobEntry, JobState, RestoreSource, SavepointTarget,
    now_ms,
};
use crate::lifecycle::{Command, Event, Lifecycle, Outcome};
use crate::rates::RateTracker;

/// How long a failing or cancelled attempt may take to stop before its slots are reused.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the job until it is finished, failed or cancelled, and records how it ended.
pub async fn drive(inner: Arc<Inner>, job: Arc<JobEntry>) {
    drive_to_end(&inner, &job).await;
    let _ = inner.persist(&job).await;
}

/// Carries out the lifecycle's commands until the job ends.
async fn drive_to_end(inner: &Arc<Inner>, job: &Arc<JobEntry>) {
    let restart = job.plan.restart.unwrap_or(inner.config.restart);
    let mut lifecycle = Lifecycle::new(restart, job.attempt_offset);
    let mut command = lifecycle.on(Event::Start, job.cancel_requested());
    let mut placement = Vec::new();
    loop {
        let event = match command {
            Command::TakeSlots => match take_slots(inner, job).await {
                Ok(p) => {
                    placement = p;
                    Event::SlotsTaken
                }
                Err(SlotWait::Cancelled) => Event::Waited,
                Err(SlotWait::TimedOut(reason)) => Event::SlotTimeout(reason),
            },
            Command::RunAttempt(number) => {
                let started = Instant::now();
                let outcome = run_attempt(inner, job, number, &placement).await;
                inner.registry.release(&std::mem::take(&mut placement));
                Event::AttemptEnded(outcome, started.elapsed())
            }
            Command::Restart { delay, reason } => {
                tracing::warn!(job = %job.id, ?delay, %reason, "job restarting");
                job.set_state(JobState::Restarting, Some(reason));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = job.cancelled() => {}
                }
                Event::Waited
            }
            Command::End { state, error } => {
                if state == JobState::Failed {
                    tracing::error!(job = %job.id, error = ?error, "job failed");
                }
                // A job that ends well has no error; earlier attempts keep theirs.
                job.status.lock().error = error;
                job.set_state(state, None);
                return;
            }
        };
        // A failure is shown while the job restarts.
        if let Event::AttemptEnded(Outcome::Failed(e), _) = &event {
            job.status.lock().error = Some(e.to_string());
        }
        command = lifecycle.on(event, job.cancel_requested());
    }
}

enum SlotWait {
    Cancelled,
    TimedOut(String),
}

/// Waits until the job's slots are free; they are spread over the taskmanagers.
async fn take_slots(inner: &Inner, job: &JobEntry) -> Result<Vec<String>, SlotWait> {
    let p = job.plan.parallelism;
    let started = Instant::now();
    loop {
        if let Some(placement) = inner.registry.allocate(p) {
            return Ok(placement);
        }
        let (total, free) = inner.registry.slots();
        let reason = format!("waiting for {p} free slots ({free} of {total} free)");
        if started.elapsed() > inner.config.slot_timeout {
            return Err(SlotWait::TimedOut(format!(
                "no {p} free slots within {:?} ({free} of {total} free): add taskmanagers or lower the parallelism",
                inner.config.slot_timeout
            )));
        }
        if job.state() != JobState::Created || job.status.lock().reason.as_deref() != Some(&reason)
        {
            job.set_state(JobState::Created, Some(reason));
        }
        tokio::select! {
            _ = inner.registry.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = job.cancelled() => return Err(SlotWait::Cancelled),
        }
    }
}

/// Assigns the splits of every source vertex (the blocking Kafka metadata calls off the async
/// workers); by vertex id.
async fn assign(
    inner: &Inner,
    job: &JobEntry,
    graph: &PhysicalGraph,
) -> Result<BTreeMap<u32, Vec<SourceAssignment>>, TaskError> {
    let mut out = BTreeMap::new();
    for v in &graph.vertices {
        let Some(s) = head_source(v) else {
            continue;
        };
        let Some(source) = job.plan.sources.get(s).cloned() else {
            return Err(TaskError::Data(format!("vertex {} reads no source", v.id)));
        };
        let p = v.parallelism;
        let timeout = inner.config.kafka_timeout;
        let secrets = inner.config.confinement.secrets.clone();
        let uid = v.chain[0].uid.clone();
        let mut pinned = job
            .pinned_starts
            .lock()
            .get(&uid)
            .cloned()
            .unwrap_or_default();
        let assigned = tokio::task::spawn_blocking(move || {
            assign_splits(&source, p, timeout, &mut pinned, &secrets).map(|a| (a, pinned))
        })
        .await;
        match assigned {
            Ok(Ok((a, pinned))) => {
                job.pinned_starts.lock().insert(uid, pinned);
                out.insert(v.id, a);
            }
            Ok(Err(ConnectorError::Secret(e))) => return Err(TaskError::Secret(e)),
            Ok(Err(e)) => return Err(TaskError::Io(e.to_string())),
            Err(e) => return Err(TaskError::Io(format!("split assignment stopped: {e}"))),
        }
    }
    Ok(out)
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        for t in self.machine.savepoints.abandon() {
            let _ = t.reply.send(Err(
                "the job attempt ended before the savepoint was taken".into()
            ));
        }
    }
}

/// How often the driver looks whether a job catches up with its sources.
const CATCH_UP_SAMPLES: Duration = Duration::from_secs(1);

/// One deployed attempt, from the driver's side.
struct Attempt<'a> {
    inner: &'a Inner,
    job: &'a Arc<JobEntry>,
    number: u32,
    placement: &'a [String],
    graph: PhysicalGraph,
    /// The attempt's decisions: its subtasks' states, savepoints, checkpoint steps.
    machine: AttemptMachine<SavepointTarget>,
    events: UnboundedReceiver<AttemptEvent>,
    first_error: Option<TaskError>,
    /// Whether every subtask was last told that the job catches up.
    told_catching_up: bool,
}

async fn run_attempt(
    inner: &Inner,
    job: &Arc<JobEntry>,
    number: u32,
    placement: &[String],
) -> Outcome {
    job.status.lock().attempts.push(AttemptInfo {
        attempt: number,
        started_at_ms: now_ms(),
        ended_at_ms: None,
        error: None,
        restored_from: None,
    });
    // A jobmanager that takes the job over numbers its attempts after this one.
    let _ = inner.persist(job).await;
    let outcome = deploy_and_follow(inner, job, number, placement).await;
    let mut s = job.status.lock();
    if let Some(r) = s.attempt.as_mut() {
        r.live = false;
    }
    if let Some(a) = s.attempts.last_mut() {
        a.ended_at_ms = Some(now_ms());
        if let Outcome::Failed(e) = &outcome {
            a.error = Some(e.to_string());
        }
    }
    outcome
}

async fn deploy_and_follow(
    inner: &Inner,
    job: &Arc<JobEntry>,
    number: u32,
    placement: &[String],
) -> Outcome {
    // Resume from the latest completed checkpoint (or the savepoint the job started from):
    // its offsets, and its window state.
    let own = job.checkpoints.lock().as_ref().and_then(|c| {
        c.latest().cloned().map(|meta| RestoreSource {
            location: c.location.clone(),
            meta,
        })
    });
    let own_checkpoint = own.is_some();
    let latest = own.or_else(|| job.initial_restore.clone());
    if let Some(RestoreSource { meta, location }) = &latest {
        restore_starts(
            &mut job.pinned_starts.lock(),
            &job.plan,
            meta,
            own_checkpoint,
        );
        if let Some(a) = job.status.lock().attempts.last_mut() {
            a.restored_from = Some(meta.checkpoint_id);
        }
        tracing::info!(job = %job.id, attempt = number, checkpoint = meta.checkpoint_id, from = %location.text, "restoring");
    }
    let plan = &job.plan;
    let graph = plan.graph();
    let assignments = match assign(inner, job, &graph).await {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(e),
    };
    let addresses = inner.registry.addresses();
    let (events_tx, events_rx) = unbounded_channel();
    let metrics = graph
        .vertices
        .iter()
        .map(|v| VertexMetrics::new(v.id, &v.name, v.parallelism))
        .collect();
    job.status.lock().attempt = Some(AttemptRun {
        number,
        metrics,
        placement: placement.to_vec(),
        assignments: assignments.clone(),
        rates: RateTracker::default(),
        live: true,
        events: events_tx,
    });
    let checkpoint_location = job
        .checkpoints
        .lock()
        .as_ref()
        .map(|c| c.location.text.clone())
        .unwrap_or_default();
    // Slot sharing: slot i runs subtask i of every vertex.
    let mut per_tm: BTreeMap<&str, Vec<TaskDeployment>> = BTreeMap::new();
    let mut locations = Vec::new();
    let Some(tasks) = AttemptTasks::new(&graph, placement) else {
        return Outcome::Failed(TaskError::Io("fewer slots than subtasks".into()));
    };
    for v in &graph.vertices {
        for i in 0..v.parallelism {
            let Some(tm) = placement.get(i as usize) else {
                return Outcome::Failed(TaskError::Io(format!(
                    "no slot for subtask {i} of vertex {}",
                    v.id
                )));
            };
            per_tm.entry(tm).or_default().push(task_deployment(
                v,
                i,
                &assignments,
                latest.as_ref(),
                plan.max_parallelism,
            ));
            // Every subtask: receivers are reached at their address, and a receiver takes a
            // stream only from the taskmanager of its upstream subtask.
            locations.push(SubtaskLocation {
                vertex: v.id,
                subtask: i,
                taskmanager_id: tm.clone(),
                address: addresses.get(tm).cloned().unwrap_or_default(),
            });
        }
    }
    let mut attempt = Attempt {
        inner,
        job,
        number,
        placement,
        graph: graph.clone(),
        machine: AttemptMachine::new(
            number,
            tasks,
            JobShape {
                job_id: job.id.clone(),
                parallelism: plan.parallelism,
                max_parallelism: plan.max_parallelism,
                periodic: job.periodic_checkpoints().is_some(),
            },
        ),
        events: events_rx,
        first_error: None,
        told_catching_up: false,
    };
    attempt.restart_catch_up();
    let mut deployments = Vec::new();
    for (tm, tasks) in per_tm {
        let req = DeployTasksRequest {
            job_id: job.id.clone(),
            attempt: number,
            job_spec: job.text.deployed().to_string(),
            file_name: job.file_name.clone(),
            parallelism: plan.parallelism,
            start: plan
                .start_override
                .map(|s| s.to_string())
                .unwrap_or_default(),
            tasks,
            locations: locations.clone(),
            checkpoint_location: checkpoint_location.clone(),
            state_limit_bytes: plan
                .state_limit
                .or(inner.config.job_state_limit)
                .unwrap_or(0),
        };
        let client = inner.registry.get(tm).map(|t| t.client);
        deployments.push((tm.to_string(), async move {
            let mut client = client.ok_or_else(|| Status::unavailable("it is gone"))?;
            client.deploy_tasks(req).await.map(|_| ())
        }));
    }
    let failed = tokio::select! {
        failed = concurrently(deployments, DEPLOY_TIMEOUT) => failed,
        // A cancel does not wait for a slow or hung deployment.
        _ = job.cancelled() => {
            job.set_state(JobState::Cancelling, None);
            attempt.cancel_everywhere().await;
            return attempt.finish_stopping().await;
        }
    };
    if let Some((tm, why)) = failed.into_iter().next() {
        attempt
            .fail(TaskError::Io(format!(
                "deploying to taskmanager {tm}: {why}"
            )))
            .await;
        return attempt.finish_stopping().await;
    }
    {
        let mut s = job.status.lock();
        if job.cancel_requested() {
            s.state = JobState::Cancelling;
        } else {
            s.state = JobState::Running;
            s.reason = None;
        }
    }
    tracing::info!(job = %job.id, attempt = number, taskmanagers = ?placement, "job attempt deployed");
    attempt.follow().await
}

impl Attempt<'_> {
    fn apply(&mut self, event: AttemptEvent) -> Option<TaskError> {
        match event {
            // Checkpoint acknowledgements and savepoints are handled by `follow`.
            AttemptEvent::Checkpoint(_) | AttemptEvent::Savepoint(_) => None,
            AttemptEvent::Task(r) => self.machine.tasks.on_report(&r),
            AttemptEvent::TaskManagerLost {
                id,
                address,
                reason,
            } => self.machine.tasks.on_lost(&id, &address, &reason),
        }
    }

    /// Records the root cause and cancels the attempt on every taskmanager.
    async fn fail(&mut self, e: TaskError) {
        if self.first_error.is_none() {
            tracing::warn!(job = %self.job.id, attempt = self.number, error = %e, "attempt failing");
            self.job.set_state(JobState::Failing, Some(e.to_string()));
            self.first_error = Some(e);
            self.cancel_everywhere().await;
        }
    }

    /// Cancels the attempt on every taskmanager; one that does not answer is treated as lost
    /// (its subtasks count as stopped: it cancels them itself when it finds the jobmanager
    /// gone or registers again).
    async fn cancel_everywhere(&mut self) {
        let req = CancelAttemptRequest {
            job_id: self.job.id.clone(),
            attempt: self.number,
        };
        let calls = self
            .taskmanagers()
            .into_iter()
            .map(|(tm, mut c)| {
                let req = req.clone();
                (tm, async move { c.cancel_attempt(req).await.map(|_| ()) })
            })
            .collect();
        for (tm, why) in concurrently(calls, self.patience()).await {
            tracing::warn!(taskmanager = %tm, error = %why, "could not cancel subtasks");
            self.machine.tasks.stop_on(&tm);
            if let Some(entry) = self.inner.registry.remove(&tm) {
                crate::taskmanager_lost(
                    self.inner,
                    &entry,
                    &format!("it did not take a cancel: {why}"),
                );
            }
        }
    }

    /// Waits for every subtask to stop (or the timeout), then gives the outcome.
    async fn finish_stopping(mut self) -> Outcome {
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        while !self.machine.tasks.all_terminal() {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) => {
                    self.apply(ev);
                }
                Ok(None) | Err(_) => {
                    tracing::warn!(job = %self.job.id, attempt = self.number, "subtasks did not all stop in time");
                    break;
                }
            }
        }
        match self.first_error.take() {
            Some(e) => Outcome::Failed(e),
            None => Outcome::Cancelled,
        }
    }

    /// Follows the running attempt until it ends.
    async fn follow(mut self) -> Outcome {
        let discovery = self
            .job
            .plan
            .sources
            .iter()
            .any(|s| matches!(s.kind, SourceKind::Kafka(_)));
        let mut tick = tokio::time::interval(self.inner.config.partition_discovery_interval);
        tick.tick().await;
        let job = Arc::clone(self.job);
        let checkpointing = job.checkpoints.lock().is_some();
        let mut checkpoint_tick = tokio::time::interval(
            self.job
                .periodic_checkpoints()
                .map_or(Duration::from_secs(3600), |c| tick_interval(&c)),
        );
        checkpoint_tick.tick().await;
        let catching_up = self.job.catch_up.lock().is_some();
        let mut catch_up_tick = tokio::time::interval(CATCH_UP_SAMPLES);
        let outcome = loop {
            let input = tokio::select! {
                ev = self.events.recv() => match ev {
                    None => break Outcome::Failed(TaskError::Io("attempt events closed".into())),
                    Some(AttemptEvent::Task(r)) => Input::Task(r),
                    Some(AttemptEvent::TaskManagerLost { id, address, reason }) => Input::Lost { id, address, reason },
                    Some(AttemptEvent::Checkpoint(a)) => Input::Ack(a),
                    Some(AttemptEvent::Savepoint(t)) => Input::Savepoint { drain: t.drain, waiter: t },
                },
                _ = self.job.cancelled() => {
                    self.job.set_state(JobState::Cancelling, None);
                    self.cancel_everywhere().await;
                    break self.finish_stopping().await;
                }
                _ = tick.tick(), if discovery => {
                    if let Err(e) = self.discover_partitions().await {
                        tracing::warn!(job = %self.job.id, error = %e, "partition discovery failed");
                    }
                    continue;
                }
                _ = checkpoint_tick.tick(), if checkpointing => Input::Tick,
                _ = catch_up_tick.tick(), if catching_up => {
                    self.follow_catch_up().await;
                    continue;
                }
            };
            if let Some(e) = self.carry_out(input).await {
                self.fail(e).await;
                break self.finish_stopping().await;
            }
            if self.machine.tasks.all_terminal() {
                if self.machine.tasks.all_finished() {
                    break Outcome::Finished;
                }
                break Outcome::Failed(TaskError::Io(
                    "subtasks stopped without finishing (cancelled by their taskmanager)".into(),
                ));
            }
        };
        if let Some(c) = job.checkpoints.lock().as_mut() {
            c.abort_pending("the attempt ended");
        }
        outcome
    }

    /// Feeds `input` to the attempt's decisions and carries out the commands, feeding back
    /// the results of the writes; the error that fails the attempt, if any.
    async fn carry_out(&mut self, input: Input<SavepointTarget>) -> Option<TaskError> {
        let mut inputs = std::collections::VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let commands = {
                let mut guard = self.job.checkpoints.lock();
                self.machine.on(input, guard.as_mut())
            };
            for command in commands {
                match command {
                    AttemptCommand::Fail(e) => return Some(e),
                    AttemptCommand::Trigger { checkpoint, drain } => {
                        self.trigger(checkpoint, drain).await
                    }
                    AttemptCommand::WriteMetadata(meta) => {
                        let written = self.write_metadata(&meta).await;
                        inputs.push_back(Input::MetadataWritten { meta, written });
                    }
                    AttemptCommand::PointRecord(meta) => {
                        // Fault injection: the jobmanager dies after the metadata is written and
                        // before the job's record points at it (no sink may have committed it).
                        fail::fail_point!("checkpoint-before-record", |_| {
                            tracing::error!(job = %self.job.id, checkpoint = meta.checkpoint_id, "failpoint: aborting before the job record points at the checkpoint");
                            std::process::abort()
                        });
                        let written = self
                            .inner
                            .persist(self.job)
                            .await
                            .map_err(|e| e.to_string());
                        inputs.push_back(Input::RecordWritten { meta, written });
                    }
                    AttemptCommand::NotifyComplete(n) => self.notify_complete(n).await,
                    AttemptCommand::WriteSavepoints { meta, waiters } => {
                        self.write_savepoints(&meta, waiters).await
                    }
                    AttemptCommand::FailSavepoints { waiters, why } => {
                        for t in waiters {
                            let _ = t.reply.send(Err(why.clone()));
                        }
                    }
                    AttemptCommand::DeleteObjects(paths) => {
                        if let Some(location) = self.checkpoint_location() {
                            delete_objects(&location, paths).await;
                        }
                    }
                }
            }
        }
        None
    }

    /// Writes checkpoint `meta`'s `_metadata`; its path.
    async fn write_metadata(&self, meta: &CheckpointMetadata) -> Result<String, String> {
        let target = {
            let guard = self.job.checkpoints.lock();
            guard.as_ref().map(|c| {
                (
                    c.location.clone(),
                    c.metadata_path(&self.job.id, meta.checkpoint_id),
                )
            })
        };
        let Some((location, path)) = target else {
            return Err("the job has no checkpoint directory".into());
        };
        write_metadata(&location, &path, meta).await
    }

    /// Where the job's checkpoints are, if it has any.
    fn checkpoint_location(&self) -> Option<kappa_state::Location> {
        self.job
            .checkpoints
            .lock()
            .as_ref()
            .map(|c| c.location.clone())
    }

    /// Writes the savepoints of `waiters` from completed checkpoint `meta`.
    async fn write_savepoints(&self, meta: &CheckpointMetadata, waiters: Vec<SavepointTarget>) {
        let location = self.checkpoint_location();
        for t in waiters {
            let written = match &location {
                Some(location) => write_savepoint(location, &t.location, meta).await,
                None => Err("the job has no checkpoint directory".into()),
            };
            if let Ok(path) = &written {
                tracing::info!(job = %self.job.id, checkpoint = meta.checkpoint_id, %path, "savepoint written");
            }
            let _ = t.reply.send(written);
        }
    }

    /// The taskmanagers the attempt runs on, with their clients.
    /// How long a control call waits for a taskmanager's answer: a taskmanager silent for the
    /// heartbeat timeout is lost anyway, and the driver handles nothing else meanwhile (a
    /// frozen process answers nothing, and waiting longer only delays the restart).
    fn patience(&self) -> Duration {
        CALL_TIMEOUT.min(self.inner.config.heartbeat_timeout)
    }

    fn taskmanagers(&self) -> Vec<(String, Client)> {
        let mut tms: Vec<String> = (0..self.job.plan.parallelism as usize)
            .filter_map(|i| self.placement.get(i).cloned())
            .collect();
        tms.sort();
        tms.dedup();
        tms.into_iter()
            .filter_map(|tm| {
                let client = self.inner.registry.get(&tm)?.client;
                Some((tm, client))
            })
            .collect()
    }

    /// Makes `call` with `req` on each of the attempt's taskmanagers at once; those whose
    /// call failed, with why.
    async fn on_taskmanagers<R, F, Fut>(&self, req: R, call: F) -> Vec<(String, String)>
    where
        R: Clone,
        F: Fn(Client, R) -> Fut,
        Fut: std::future::Future<Output = Result<(), Status>> + Send + 'static,
    {
        let calls = self
            .taskmanagers()
            .into_iter()
            .map(|(tm, c)| (tm, call(c, req.clone())))
            .collect();
        concurrently(calls, self.patience()).await
    }

    /// Tells the attempt's taskmanagers that checkpoint `n` completed (sinks commit). One that
    /// misses it commits at the next notification; a restart commits from the checkpoint.
    async fn notify_complete(&self, n: u64) {
        let req = NotifyCheckpointCompleteRequest {
            job_id: self.job.id.clone(),
            attempt: self.number,
            checkpoint_id: n,
        };
        let failed = self
            .on_taskmanagers(req, |mut c, r| async move {
                c.notify_checkpoint_complete(r).await.map(|_| ())
            })
            .await;
        for (tm, why) in failed {
            tracing::warn!(taskmanager = %tm, checkpoint = n, error = %why, "could not notify a completed checkpoint");
        }
    }

    /// Asks the attempt's sources to take checkpoint `n` (draining first for a stop --drain).
    async fn trigger(&self, n: u64, drain: bool) {
        let req = TriggerCheckpointRequest {
            job_id: self.job.id.clone(),
            attempt: self.number,
            checkpoint_id: n,
            drain,
        };
        let failed = self
            .on_taskmanagers(req, |mut c, r| async move {
                c.trigger_checkpoint(r).await.map(|_| ())
            })
            .await;
        for (tm, why) in failed {
            tracing::warn!(taskmanager = %tm, checkpoint = n, error = %why, "could not trigger a checkpoint");
        }
    }

    /// Hands partitions added to the topics since the start to source subtasks (from the
    /// beginning), for every Kafka source.
    async fn discover_partitions(&mut self) -> Result<(), TaskError> {
        let sources: Vec<(u32, usize, String)> = self
            .graph
            .vertices
            .iter()
            .filter_map(|v| Some((v.id, head_source(v)?, v.chain[0].uid.clone())))
            .collect();
        for (vertex, s, uid) in sources {
            self.discover_source_partitions(vertex, s, &uid).await?;
        }
        Ok(())
    }

    async fn discover_source_partitions(
        &mut self,
        vertex: u32,
        source: usize,
        uid: &str,
    ) -> Result<(), TaskError> {
        let Some(SourceKind::Kafka(k)) = self.job.plan.sources.get(source).map(|s| &s.kind) else {
            return Ok(());
        };
        let secrets = &self.inner.config.confinement.secrets;
        let (connection, topic, timeout) = (
            secrets.resolve_kafka(&k.connection, uid)?,
            k.topic.clone(),
            self.inner.config.kafka_timeout,
        );
        let found = tokio::task::spawn_blocking(move || {
            TopicAdmin::new(&connection, timeout)?.partitions(&topic)
        })
        .await
        .map_err(|e| TaskError::Io(e.to_string()))?
        .map_err(|e| TaskError::Io(e.to_string()))?;
        let new: Vec<i32> = {
            let pinned = self.job.pinned_starts.lock();
            let known = pinned.get(uid);
            found
                .into_iter()
                .filter(|p| !known.is_some_and(|k| k.partitions.contains_key(p)))
                .collect()
        };
        for partition in new {
            let start = kappa_connectors::kafka::PartitionStart {
                partition,
                offset: StartOffset::Beginning,
            };
            let subtask = {
                let mut s = self.job.status.lock();
                let Some(assigned) = s
                    .attempt
                    .as_mut()
                    .and_then(|run| run.assignments.get_mut(&vertex))
                else {
                    return Ok(());
                };
                // The source subtask with the fewest partitions takes it.
                let (subtask, _) = assigned
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, a)| a.len())
                    .ok_or_else(|| TaskError::Io("no source subtask".into()))?;
                if let Some(SourceAssignment::Kafka(parts)) = assigned.get_mut(subtask) {
                    parts.push(start);
                }
                subtask
            };
            let tm = self.placement[subtask].clone();
            self.job
                .pinned_starts
                .lock()
                .entry(uid.to_string())
                .or_default()
                .partitions
                .insert(partition, StartOffset::Beginning);
            let mut client = self
                .inner
                .registry
                .get(&tm)
                .map(|t| t.client)
                .ok_or_else(|| TaskError::Io(format!("taskmanager {tm} is gone")))?;
            let req = AddSplitsRequest {
                job_id: self.job.id.clone(),
                attempt: self.number,
                vertex,
                subtask: subtask as u32,
                splits: Some(splits_to_proto(&SourceAssignment::Kafka(vec![start]))),
            };
            let call = async move { client.add_splits(req).await.map(|_| ()) };
            if let Some((_, why)) = concurrently(vec![(tm, call)], self.patience()).await.pop() {
                return Err(TaskError::Io(format!(
                    "handing partition {partition} of `{uid}` to subtask {subtask}: {why}"
                )));
            }
            tracing::info!(job = %self.job.id, source = %uid, partition, subtask, "new partition assigned");
        }
        Ok(())
    }
}
