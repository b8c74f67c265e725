//! Deploying the subtasks of a job attempt that the jobmanager placed here: plan the job from
//! its spec, build each subtask's operator chain from the physical graph, wire local channels
//! and remote senders per edge, start a thread per subtask, report states.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use kappa_connectors::confine::Confinement;
use kappa_connectors::kafka::{PartitionStart, StartOffset};
use kappa_connectors::splits::SourceAssignment;
use kappa_connectors::{open_sink, open_source};
use kappa_job::confine::names;
use kappa_job::graph::{OperatorKind, Partitioning, PhysicalGraph, Route, Vertex};
use kappa_job::keygroup::key_group_range;
use kappa_job::spec::StateBackend;
use kappa_job::{JobPlan, Overrides, plan_job};
use kappa_proto::v1::partition_start::Start;
use kappa_proto::v1::source_splits::Splits;
use kappa_proto::v1::{
    DeployTasksRequest, ExchangeHeader, SourceSplits, TaskDeployment, TaskState, TaskStateReport,
};
use kappa_runtime::TaskError;
use kappa_runtime::budget::StateBudget;
use kappa_runtime::chain::{Chain, EdgeOutput, Partitioner};
use kappa_runtime::channel::{Inputs, Outputs, Tagged, Target};
use kappa_runtime::join::JoinOperator;
use kappa_runtime::keyed::KeyPartitioner;
use kappa_runtime::metrics::SubtaskMetrics;
use kappa_runtime::operator::Operator;
use kappa_runtime::operators::{
    Ranking, SinkOperator, SourceOperator, StepsOperator, WindowedAggregate,
};
use kappa_runtime::rank::RankOperator;
use kappa_runtime::state::KeyedState;
use kappa_runtime::subtask::{CheckpointHook, Head, Subtask, TaskEnd, Trigger};
use kappa_runtime::window::WindowOperator;
use kappa_state::{Location, file_from_proto, nexmark_from_proto};
use tonic::Status;

use crate::checkpoint::{
    CheckpointContext, LocalState, OperatorPart, SinkLog, SubtaskCheckpoints, keyed_part,
    pending_commits,
};
use crate::exchange::RemoteSender;
use crate::registration::{ToJobManager, to_proto};
use crate::state::{AttemptKey, LocalAttempt, LocalSubtask, Shared, SubtaskKey};

/// Elements buffered in a subtask's input channel.
const INPUT_CAPACITY: usize = 8;

/// The source assignment a deployment message carries.
pub fn splits_from_proto(s: Option<&SourceSplits>) -> Result<SourceAssignment, Status> {
    let kafka = match s.and_then(|s| s.splits.as_ref()) {
        Some(Splits::Files(f)) => {
            return Ok(SourceAssignment::Files(
                f.files.iter().map(file_from_proto).collect(),
            ));
        }
        Some(Splits::Nexmark(n)) => {
            return Ok(SourceAssignment::Nexmark(
                n.splits.iter().map(nexmark_from_proto).collect(),
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
        ..Overrides::default()
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
                // A panicking operator fails its subtask with the panic's message: no subtask
                // may end silently and leave its job running.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
                    .unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "no message".into());
                        Err(TaskError::Data(format!("an operator panicked: {what}")))
                    });
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

/// One outgoing edge of a subtask before its thread starts: where each target is.
struct EdgeTargets {
    edge: u32,
    partitioning: Partitioning,
    /// The keyed operator at the head of the downstream vertex and the input this edge
    /// feeds, for hash partitioning.
    keyed: Option<(OperatorKind, usize)>,
    targets: Vec<Target>,
}

/// What one local subtask needs to start.
struct Prepared {
    deployment: TaskDeployment,
    metrics: Arc<SubtaskMetrics>,
    channels: Option<Inputs>,
    inbox: Option<crossbeam_channel::Receiver<Vec<PartitionStart>>>,
    triggers: Option<crossbeam_channel::Receiver<Trigger>>,
    completions: Option<crossbeam_channel::Receiver<u64>>,
    edges: Vec<EdgeTargets>,
}

/// How long the local copies of checkpoints of a job that no longer runs here are kept (a
/// restarted job comes back within its restart delay).
const LOCAL_COPIES_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Starts the subtasks of `req` on this taskmanager.
pub fn deploy(shared: &Arc<Shared>, req: DeployTasksRequest) -> Result<(), Status> {
    // The id names the attempt's local state directory.
    names::job_id(&req.job_id).map_err(|e| Status::invalid_argument(format!("job id: {e}")))?;
    let plan = Arc::new(plan(&req)?);
    let graph = Arc::new(plan.graph());
    let key: AttemptKey = (req.job_id.clone(), req.attempt);
    if shared.attempts.lock().contains_key(&key) {
        return Err(Status::already_exists(format!(
            "job {} attempt {} is already deployed here",
            key.0, key.1
        )));
    }
    for t in &req.tasks {
        if graph
            .vertex(t.vertex)
            .is_none_or(|v| t.subtask >= v.parallelism)
        {
            return Err(Status::invalid_argument(format!(
                "no subtask {} of vertex {} in this job",
                t.subtask, t.vertex
            )));
        }
    }
    let mut locations: HashMap<SubtaskKey, String> = HashMap::new();
    let mut placement: HashMap<SubtaskKey, String> = HashMap::new();
    for l in &req.locations {
        locations.insert((l.vertex, l.subtask), l.address.clone());
        placement.insert((l.vertex, l.subtask), l.taskmanager_id.clone());
    }
    for v in graph.vertices.iter().filter(|v| !v.inputs.is_empty()) {
        if (0..v.parallelism).any(|i| !locations.contains_key(&(v.id, i))) {
            return Err(Status::invalid_argument(format!(
                "the deployment does not locate every subtask of vertex {}",
                v.id
            )));
        }
    }
    // Local copies of checkpoints of jobs that stopped running here a while ago are of no use.
    let running: std::collections::HashSet<String> = shared
        .attempts
        .lock()
        .keys()
        .map(|k| k.0.clone())
        .chain([key.0.clone()])
        .collect();
    if let Err(e) = shared.local_recovery.sweep(&running, LOCAL_COPIES_KEPT_FOR) {
        tracing::warn!(error = %e, "dropping old local copies of checkpoints");
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let catching_up = Arc::new(AtomicBool::new(false));
    let budget = StateBudget::new((req.state_limit_bytes > 0).then_some(req.state_limit_bytes));
    // The attempt's local state: spilled windows, and the databases checkpoints are taken of.
    let local = shared.state_dir.join(format!("{}-{}", key.0, key.1));
    let checkpointing = if req.checkpoint_location.is_empty() {
        None
    } else {
        let location = Location::parse(&req.checkpoint_location)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Some(Arc::new(CheckpointContext {
            shared: Arc::clone(shared),
            location,
            job_id: key.0.clone(),
            attempt: key.1,
            local: local.clone(),
        }))
    };
    let mut prepared = Vec::new();
    let mut inputs: HashMap<SubtaskKey, crossbeam_channel::Sender<Tagged>> = HashMap::new();
    let mut split_inboxes = HashMap::new();
    let mut checkpoint_triggers = HashMap::new();
    let mut checkpoint_completions = Vec::new();
    let mut subtasks = Vec::new();
    for t in &req.tasks {
        let Some(v) = graph.vertex(t.vertex) else {
            continue;
        };
        let metrics: Arc<SubtaskMetrics> = Arc::default();
        let mut p = Prepared {
            deployment: t.clone(),
            metrics: Arc::clone(&metrics),
            channels: None,
            inbox: None,
            triggers: None,
            completions: None,
            edges: Vec::new(),
        };
        let at = (t.vertex, t.subtask);
        if matches!(v.chain[0].kind, OperatorKind::Source(_)) {
            let (tx, rx) = crossbeam_channel::unbounded();
            split_inboxes.insert(at, tx);
            p.inbox = Some(rx);
            if checkpointing.is_some() {
                let (tx, rx) = crossbeam_channel::unbounded();
                checkpoint_triggers.insert(at, tx);
                p.triggers = Some(rx);
            }
        } else {
            let channels: u32 = graph.input_channels(v).iter().map(|c| c.2).sum();
            let (ins, tx) = Inputs::new(
                channels,
                INPUT_CAPACITY,
                Arc::clone(&cancel),
                Arc::clone(&metrics),
            );
            inputs.insert(at, tx);
            p.channels = Some(ins);
        }
        if checkpointing.is_some() {
            let (tx, rx) = crossbeam_channel::unbounded();
            checkpoint_completions.push(tx);
            p.completions = Some(rx);
        }
        subtasks.push(LocalSubtask {
            vertex: t.vertex,
            subtask: t.subtask,
            name: v.name.clone(),
            metrics,
        });
        prepared.push(p);
    }
    // Every local subtask's outgoing edges, now that every local input exists.
    for p in &mut prepared {
        let (vertex, i) = (p.deployment.vertex, p.deployment.subtask);
        let Some(v) = graph.vertex(vertex) else {
            continue;
        };
        for op in &v.chain {
            for route in op.outputs.iter().flatten() {
                let Route::Edge(id) = *route else {
                    continue;
                };
                let Some(edge) = graph.edge(id) else {
                    return Err(Status::invalid_argument(format!("no edge {id}")));
                };
                let Some(to) = graph.vertex(edge.to) else {
                    return Err(Status::invalid_argument(format!("no vertex {}", edge.to)));
                };
                let downstream: Vec<u32> = match edge.partitioning {
                    Partitioning::Forward => vec![i],
                    _ => (0..to.parallelism).collect(),
                };
                let channel = graph.channel(id, i).ok_or_else(|| {
                    Status::invalid_argument(format!("edge {id} has no channel for subtask {i}"))
                })?;
                let mut targets = Vec::with_capacity(downstream.len());
                for j in downstream {
                    targets.push(match inputs.get(&(to.id, j)) {
                        Some(tx) => Target::Local {
                            tx: tx.clone(),
                            channel,
                        },
                        None => {
                            let address = locations.get(&(to.id, j)).ok_or_else(|| {
                                Status::invalid_argument(format!(
                                    "subtask {j} of vertex {} has no location",
                                    to.id
                                ))
                            })?;
                            let header = ExchangeHeader {
                                job_id: key.0.clone(),
                                attempt: key.1,
                                upstream: i,
                                downstream: j,
                                edge: id,
                            };
                            Target::Remote(Box::new(RemoteSender::new(
                                address.clone(),
                                header,
                                shared.handle.clone(),
                                Arc::clone(&cancel),
                                Arc::clone(&p.metrics),
                                shared.tls.clone(),
                            )))
                        }
                    });
                }
                let head = to.chain[0].kind;
                let keyed = match head.is_keyed() {
                    true => {
                        let input = to.inputs.iter().position(|e| *e == id).ok_or_else(|| {
                            Status::invalid_argument(format!(
                                "edge {id} is not an input of vertex {}",
                                to.id
                            ))
                        })?;
                        Some((head, input))
                    }
                    false => None,
                };
                p.edges.push(EdgeTargets {
                    edge: id,
                    partitioning: edge.partitioning,
                    keyed,
                    targets,
                });
            }
        }
    }
    let edge_schemas = graph
        .edges
        .iter()
        .filter_map(|e| Some((e.id, plan.edge_schema(&graph, e.id)?)))
        .collect();
    let attempt = Arc::new(LocalAttempt {
        job_name: plan.name.clone(),
        cancel: Arc::clone(&cancel),
        catching_up: Arc::clone(&catching_up),
        graph: Arc::clone(&graph),
        edge_schemas,
        inputs,
        placement,
        split_inboxes,
        checkpoint_triggers,
        checkpoint_completions,
        subtasks,
        running: AtomicUsize::new(req.tasks.len()),
        local_state: local.clone(),
    });
    {
        // Under the lock a cancel takes first: a cancel either sees the attempt or leaves
        // the mark that refuses it here.
        let cancelled = shared.cancelled.lock();
        if cancelled.contains(&key) {
            return Err(Status::aborted(format!(
                "job {} attempt {} was cancelled before its deployment arrived",
                key.0, key.1
            )));
        }
        shared
            .attempts
            .lock()
            .insert(key.clone(), Arc::clone(&attempt));
    }
    tracing::info!(job = %key.0, attempt = key.1, name = %plan.name, subtasks = req.tasks.len(), "deploying subtasks");
    for p in prepared {
        let (vertex, i) = (p.deployment.vertex, p.deployment.subtask);
        let reporter = Reporter {
            shared: Arc::clone(shared),
            key: key.clone(),
            vertex,
            subtask: i,
            metrics: Arc::clone(&p.metrics),
        };
        let name = graph
            .vertex(vertex)
            .map_or_else(String::new, |v| v.name.clone());
        let run = SubtaskRun {
            plan: Arc::clone(&plan),
            graph: Arc::clone(&graph),
            attempt: key.clone(),
            cancel: Arc::clone(&cancel),
            catching_up: Arc::clone(&catching_up),
            ctx: checkpointing.clone(),
            local: local.clone(),
            budget: Arc::clone(&budget),
            cache: Arc::clone(&shared.state_cache),
            confinement: shared.confinement.clone(),
            prepared: p,
        };
        reporter.spawn(format!("{}-{name}-{i}", key.0), move || run.start()?.run())?;
    }
    Ok(())
}

/// A subtask about to be built and run on its own thread.
struct SubtaskRun {
    plan: Arc<JobPlan>,
    graph: Arc<PhysicalGraph>,
    attempt: AttemptKey,
    cancel: Arc<AtomicBool>,
    catching_up: Arc<AtomicBool>,
    ctx: Option<Arc<CheckpointContext>>,
    /// The attempt's local state directory.
    local: std::path::PathBuf,
    /// The job's state limit in this taskmanager, shared by the attempt's subtasks here.
    budget: Arc<StateBudget>,
    /// The taskmanager's memory for cached state, shared by every job here.
    cache: Arc<StateBudget>,
    /// What the job's connectors may touch here.
    confinement: Confinement,
    prepared: Prepared,
}

/// Whether the keyed operator `kind` of `plan` keeps its state in RocksDB with a cache in
/// memory (the RocksDB backend, for the operators that can).
fn spills(plan: &JobPlan, kind: OperatorKind) -> bool {
    plan.state_backend == StateBackend::Rocksdb
        && matches!(kind, OperatorKind::Window(w) if plan.windows.get(w).is_some_and(WindowOperator::spills))
}

/// The keyed operator `kind` of `plan`, charged to `budget` (and its cache, if it spills to
/// `store`, to the taskmanager's `cache` too).
fn keyed_operator(
    plan: &JobPlan,
    kind: OperatorKind,
    (budget, cache): (&Arc<StateBudget>, &Arc<StateBudget>),
    store: Option<Box<dyn KeyedState>>,
    metrics: Arc<SubtaskMetrics>,
) -> Result<Box<dyn Operator>, TaskError> {
    let missing = || TaskError::Data(format!("the plan has no {kind:?}"));
    Ok(match kind {
        OperatorKind::Window(w) => {
            let window = plan.windows.get(w).ok_or_else(missing)?;
            let charge = match store {
                Some(_) => budget.cache_charge(cache),
                None => budget.charge(),
            };
            Box::new(WindowedAggregate::new(
                WindowOperator::new(window, plan.max_parallelism, charge, store)?,
                metrics,
            ))
        }
        OperatorKind::Rank(r) => {
            let ranking = plan.rankings.get(r).ok_or_else(missing)?;
            let rank = RankOperator::new(ranking, plan.max_parallelism, budget.charge())?;
            Box::new(Ranking::new(rank, metrics))
        }
        OperatorKind::Join(j) => {
            let join = plan.joins.get(j).ok_or_else(missing)?;
            Box::new(JoinOperator::new(
                join,
                plan.max_parallelism,
                budget.charge(),
                metrics,
            )?)
        }
        other => return Err(TaskError::Data(format!("{other:?} keeps no keyed state"))),
    })
}

impl SubtaskRun {
    /// Opens every operator of the chain (restoring state, committing pending sink output),
    /// and wires the chain to its edges.
    fn start(self) -> Result<Subtask, TaskError> {
        let SubtaskRun {
            plan,
            graph,
            attempt: (job_id, attempt),
            cancel,
            catching_up,
            ctx,
            local,
            budget,
            cache,
            confinement,
            prepared: p,
        } = self;
        let (vertex_id, i) = (p.deployment.vertex, p.deployment.subtask);
        let vertex: &Vertex = graph
            .vertex(vertex_id)
            .ok_or_else(|| TaskError::Data(format!("no vertex {vertex_id}")))?;
        let range = key_group_range(i, plan.max_parallelism, vertex.parallelism);
        let mut ops: Vec<Box<dyn Operator>> = Vec::with_capacity(vertex.chain.len());
        let mut parts = Vec::with_capacity(vertex.chain.len());
        let mut inbox = p.inbox;
        for (pos, op) in vertex.chain.iter().enumerate() {
            let metrics = Arc::clone(&p.metrics);
            // A keyed operator's checkpoint part, its state restored.
            let restores = &p.deployment.restore;
            let keyed = |op: &mut dyn Operator, state| {
                let at = (vertex, pos, i);
                keyed_part(ctx.as_deref(), at, restores, op, range.clone(), state)
            };
            let (boxed, part): (Box<dyn Operator>, OperatorPart) = match op.kind {
                OperatorKind::Source(s) => {
                    let source = plan
                        .sources
                        .get(s)
                        .ok_or_else(|| TaskError::Data(format!("no source {s}")))?;
                    let assignment = splits_from_proto(p.deployment.splits.as_ref())
                        .map_err(|s| TaskError::Data(s.message().to_string()))?;
                    let reader = open_source(
                        &confinement,
                        source,
                        &job_id,
                        &assignment,
                        inbox.take(),
                        (Arc::clone(&metrics), Arc::clone(&catching_up)),
                    )?;
                    let op_box = Box::new(SourceOperator::new(
                        reader,
                        source.event_time.clone(),
                        metrics,
                    ));
                    (
                        op_box,
                        OperatorPart::Source {
                            uid: op.uid.clone(),
                        },
                    )
                }
                OperatorKind::Steps(i) => {
                    let stage = plan
                        .stages
                        .get(i)
                        .ok_or_else(|| TaskError::Data(format!("no stage {i}")))?;
                    (
                        Box::new(StepsOperator::new(stage.steps.clone())),
                        OperatorPart::Stateless,
                    )
                }
                kind
                @ (OperatorKind::Window(_) | OperatorKind::Join(_) | OperatorKind::Rank(_)) => {
                    // Its local database: what it spills to, what its checkpoints are taken of.
                    let spills = spills(&plan, kind);
                    let state = match spills || ctx.is_some() {
                        true => Some(LocalState::open(&local, vertex_id, pos, i)?),
                        false => None,
                    };
                    let store = match (&state, spills) {
                        (Some(s), true) => Some(Box::new(s.db.handle()) as Box<dyn KeyedState>),
                        _ => None,
                    };
                    let mut agg = keyed_operator(&plan, kind, (&budget, &cache), store, metrics)?;
                    let part = keyed(agg.as_mut(), state)?;
                    (agg, part)
                }
                OperatorKind::Sink(k) => {
                    let sink_plan = plan
                        .sinks
                        .get(k)
                        .ok_or_else(|| TaskError::Data(format!("no sink {k}")))?;
                    let mut sink = open_sink(&confinement, sink_plan, &job_id, attempt, i)?;
                    let part = match &ctx {
                        Some(ctx) => {
                            let mine: Vec<_> = p
                                .deployment
                                .sink_commits
                                .iter()
                                .filter(|c| c.operator_uid == op.uid)
                                .cloned()
                                .collect();
                            sink.recover(pending_commits(ctx, &mine)?)?;
                            // Pending commits carry the name the sink commits under.
                            OperatorPart::Sink(SinkLog::new(op.uid.clone(), sink.writer()))
                        }
                        None => OperatorPart::Stateless,
                    };
                    let operator = SinkOperator::new(sink, metrics).with_changes(sink_plan.changes);
                    (Box::new(operator), part)
                }
            };
            ops.push(boxed);
            parts.push(part);
        }
        let mut edges = Vec::with_capacity(p.edges.len());
        for e in p.edges {
            let partitioner = match (e.partitioning, e.keyed) {
                (Partitioning::Forward, _) => Partitioner::Forward,
                (Partitioning::Hash, Some((op, input))) => {
                    let keys = plan.partition_keys(op, input).ok_or_else(|| {
                        TaskError::Data(format!("no keys for input {input} of {op:?}"))
                    })?;
                    Partitioner::Hash(KeyPartitioner::new(
                        keys,
                        plan.max_parallelism,
                        e.targets.len() as u32,
                    )?)
                }
                (Partitioning::Hash, None) => {
                    return Err(TaskError::Data(format!(
                        "edge {} is hashed but leads to no keyed operator",
                        e.edge
                    )));
                }
                (Partitioning::Rebalance, _) => Partitioner::Rebalance { next: i as usize },
                (Partitioning::Broadcast, _) => Partitioner::Broadcast,
            };
            let outputs = Outputs::new(e.targets, Arc::clone(&cancel), Arc::clone(&p.metrics));
            edges.push((
                e.edge,
                EdgeOutput {
                    partitioner,
                    outputs,
                },
            ));
        }
        let routes = vertex.chain.iter().map(|op| op.outputs.clone()).collect();
        let chain = Chain::new(ops, routes, edges, Arc::clone(&p.metrics))?;
        let head = match p.channels {
            Some(channels) => {
                let mut inputs = Vec::new();
                for (input, (_, _, n)) in graph.input_channels(vertex).into_iter().enumerate() {
                    inputs.extend(std::iter::repeat_n(input, n as usize));
                }
                Head::Channels { channels, inputs }
            }
            None => Head::Source {
                triggers: p.triggers,
            },
        };
        let checkpoints = match (ctx, p.completions) {
            (Some(ctx), Some(completions)) => Some(Box::new(SubtaskCheckpoints {
                ctx,
                vertex: vertex_id,
                subtask: i,
                parts,
                completions,
            }) as Box<dyn CheckpointHook>),
            _ => None,
        };
        Ok(Subtask {
            head,
            chain,
            metrics: p.metrics,
            cancel,
            catching_up,
            checkpoints,
        })
    }
}
