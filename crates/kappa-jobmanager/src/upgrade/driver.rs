//! The shell of an upgrade: each second it tells the machine what v1 and the shadow job do,
//! carries out the step the machine asks for (one at a time, on its own task), persists the
//! record when told, and computes the diff. Every step is idempotent, so a jobmanager that
//! takes an upgrade over from its record repeats the step of its phase safely.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::diff::{SinkDiff, diff};
use super::machine::UpgradeMachine;
use super::protocol::{Command, Event, JobSeen, Seen, StepError};
use super::record::UpgradeRecord;
use super::steps::{run, sink_ops};
use crate::Inner;
use crate::job::{JobEntry, now_ms};

/// How often the jobs are looked at.
const TICK: Duration = Duration::from_secs(1);

/// What reaches the driver besides its ticks.
pub(crate) enum Msg {
    Event(Event),
    Commands(Vec<Command>),
}

/// The latest comparison of the live sinks with the shadows.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DiffView {
    pub computed_at_ms: i64,
    pub sinks: Vec<SinkDiff>,
    /// Why the latest comparison failed, if it did.
    pub error: Option<String>,
}

/// A running upgrade: its machine and what its driver shares with the REST API.
pub struct UpgradeHandle {
    pub machine: Mutex<UpgradeMachine>,
    tx: mpsc::UnboundedSender<Msg>,
    pub diff: Mutex<Option<DiffView>>,
    /// v2's file (name, whole text) while the upgrade starts; a jobmanager that takes over
    /// does not have it.
    pub(super) v2: Mutex<Option<(String, String)>>,
}

impl UpgradeHandle {
    pub fn record(&self) -> UpgradeRecord {
        self.machine.lock().record.clone()
    }

    /// Hands commands (of a user's request) to the driver.
    pub(crate) fn send(&self, commands: Vec<Command>) {
        // A driver that ended has nothing left to do.
        let _ = self.tx.send(Msg::Commands(commands));
    }
}

impl Inner {
    /// Runs the upgrade of `record`: a new one with v2's file, or (`v2` None) one taken over
    /// from the store.
    pub(crate) fn spawn_upgrade(
        self: &Arc<Self>,
        record: UpgradeRecord,
        v2: Option<(String, String)>,
    ) -> Arc<UpgradeHandle> {
        let (tx, rx) = mpsc::unbounded_channel();
        let resumed = v2.is_none();
        let handle = Arc::new(UpgradeHandle {
            machine: Mutex::new(UpgradeMachine::new(record)),
            tx,
            diff: Mutex::new(None),
            v2: Mutex::new(v2),
        });
        let id = handle.machine.lock().record.id.clone();
        self.upgrades.write().insert(id, Arc::clone(&handle));
        let task = tokio::spawn(drive(Arc::clone(self), Arc::clone(&handle), rx, resumed));
        let mut drivers = self.drivers.lock();
        drivers.retain(|h| !h.is_finished());
        drivers.push(task);
        handle
    }

    /// Takes over the upgrades kept in the store that had not ended.
    pub(crate) async fn resume_upgrades(self: &Arc<Self>) {
        let records = match self.store.load::<UpgradeRecord>().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the kept upgrades: none resumed");
                return;
            }
        };
        for r in records {
            match r {
                Ok(r) if self.upgrades.read().contains_key(&r.id) => {}
                Ok(r) => {
                    tracing::info!(upgrade = %r.id, phase = ?r.phase, "taking over a kept upgrade");
                    self.spawn_upgrade(r, None);
                }
                Err(e) => {
                    tracing::error!(error = %e, "a kept upgrade's record cannot be read: it is not resumed")
                }
            }
        }
    }
}

async fn drive(
    inner: Arc<Inner>,
    handle: Arc<UpgradeHandle>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    resumed: bool,
) {
    if resumed {
        let commands = handle
            .machine
            .lock()
            .on(Event::Resumed { now_ms: now_ms() });
        execute(&inner, &handle, commands).await;
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let commands = tokio::select! {
            _ = tick.tick() => {
                let seen = observe(&inner, &handle.record());
                handle.machine.lock().on(Event::Tick { seen, now_ms: now_ms() })
            }
            msg = rx.recv() => match msg {
                Some(Msg::Event(e)) => handle.machine.lock().on(e),
                Some(Msg::Commands(c)) => c,
                None => return,
            },
        };
        execute(&inner, &handle, commands).await;
        let m = handle.machine.lock();
        if m.record.phase.is_terminal() && m.in_flight().is_none() {
            tracing::info!(upgrade = %m.record.id, phase = ?m.record.phase, "upgrade ended");
            return;
        }
    }
}

async fn execute(inner: &Arc<Inner>, handle: &Arc<UpgradeHandle>, commands: Vec<Command>) {
    for c in commands {
        match c {
            Command::Persist => {
                let record = handle.record();
                if let Err(e) = inner.store.put(&record).await {
                    tracing::warn!(upgrade = %record.id, error = %e, "could not record the upgrade");
                }
            }
            Command::Diff => {
                let (inner, handle) = (Arc::clone(inner), Arc::clone(handle));
                tokio::spawn(async move { refresh_diff(&inner, &handle).await });
            }
            Command::Run(step) => {
                let (inner, handle) = (Arc::clone(inner), Arc::clone(handle));
                tokio::spawn(async move {
                    let outcome = run(&inner, &handle, &step).await;
                    let _ = handle.tx.send(Msg::Event(Event::StepDone {
                        step,
                        outcome,
                        now_ms: now_ms(),
                    }));
                });
            }
        }
    }
}

/// What a job is doing now, for the machine.
fn seen(job: &JobEntry) -> JobSeen {
    let state = job.state();
    let status = job.status.lock();
    let run = status.attempt.as_ref();
    let watermark = run.and_then(|r| {
        r.metrics
            .iter()
            .map(|v| v.watermark())
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    });
    let lag = run.and_then(|r| r.kafka_sample(now_ms())).map(|s| s.lag);
    drop(status);
    let catch_up = job.catch_up.lock().as_ref().map(|c| c.status());
    let checkpoint = job
        .checkpoints
        .lock()
        .as_ref()
        .filter(|c| c.periodic().is_some())
        .map(|c| c.latest().map_or(0, |m| m.checkpoint_id));
    JobSeen {
        state: state.name().to_string(),
        terminal: state.is_terminal(),
        watermark,
        catching_up: catch_up.as_ref().map(|c| c.catching_up),
        lag,
        read_per_second: catch_up.map_or(0.0, |c| c.read_per_second),
        checkpoint,
    }
}

fn observe(inner: &Inner, record: &UpgradeRecord) -> Seen {
    Seen {
        v1: inner.job(&record.v1_job).map(|j| seen(&j)),
        shadow: record
            .shadow_job
            .as_deref()
            .and_then(|id| inner.job(id))
            .map(|j| seen(&j)),
    }
}

/// Compares every live sink with its shadow and keeps the result for the status.
async fn refresh_diff(inner: &Arc<Inner>, handle: &UpgradeHandle) {
    let record = handle.record();
    let result = compare(inner, &record, |_| {}).await;
    if let Err(e) = &result {
        tracing::warn!(upgrade = %record.id, error = %e.message, "comparing the sinks failed");
    }
    *handle.diff.lock() = Some(DiffView {
        computed_at_ms: now_ms(),
        error: result.as_ref().err().map(|e| e.message.clone()),
        sinks: result.unwrap_or_default(),
    });
}

/// The diff of every sink of `record`; `each` gets every differing row.
pub(crate) async fn compare(
    inner: &Arc<Inner>,
    record: &UpgradeRecord,
    mut each: impl FnMut(&super::diff::RowChange) + Send,
) -> Result<Vec<SinkDiff>, StepError> {
    let ops = sink_ops(inner, record).await?;
    let mut out = Vec::new();
    for op in ops {
        let sink = op.shadow().sink.clone();
        let [live, shadow] = tokio::task::spawn_blocking(move || op.rows())
            .await
            .map_err(super::sinks::SinkOpsError::from)??;
        out.push(diff(&sink, &live, &shadow, &mut each));
    }
    Ok(out)
}
