//! An upgrade's lifecycle as pure decision code: observations of the jobs, the outcomes of
//! the steps it asked for and the user's requests in; the next step, and when to persist its
//! record, out. The shell ([`super::driver`]) carries steps out one at a time and makes each
//! idempotent, so a jobmanager that takes over re-issues the step of the recorded phase.
//!
//! Starting (shadows created, shadow job submitted) → Shadowing (v2 recomputes history
//! beside v1) → CaughtUp (v2 reached v1: the diff is ready) → StoppingV1 (savepoint, cancel)
//! → AligningV2 (v2 reaches v1's last watermark) → StoppingV2 (savepoint, cancel) → Swapping
//! (the live sinks take the shadows' content, each at one instant) → StartingLive (v2 from its
//! savepoint into the live sinks) → Done. Until the swap begins, an abort or a failure leaves
//! v1 as it was (restarted from its savepoint if the cut-over had stopped it) and drops the
//! shadows. An audit is an upgrade to v1's own file that ends at CaughtUp.

use serde::{Deserialize, Serialize};

use super::plan::ShadowSink;

/// Where an upgrade is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// Creating the shadow sinks and submitting v2 into them.
    Starting,
    /// v2 recomputes history into the shadows beside v1.
    Shadowing,
    /// v2 has caught up with v1: the diff is ready; waiting for the cut-over.
    CaughtUp,
    /// v1 is being stopped with a savepoint.
    StoppingV1,
    /// v1 stopped: v2 reaches v1's last watermark.
    AligningV2,
    /// v2 is being stopped with a savepoint.
    StoppingV2,
    /// The live sinks take the shadows' content.
    Swapping,
    /// v2 starts from its savepoint into the live sinks.
    StartingLive,
    Done,
    /// The shadow job is cancelled, v1 restarted if it was stopped, the shadows dropped.
    Aborting,
    Aborted,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Aborted)
    }

    /// Whether an abort still leaves the live sinks as v1 wrote them.
    fn abortable(self) -> bool {
        !matches!(
            self,
            Self::Swapping | Self::StartingLive | Self::Done | Self::Aborting | Self::Aborted
        )
    }

    /// Whether the cut-over stopped v1 (an abort restarts it).
    fn v1_stopped(self) -> bool {
        matches!(self, Self::StoppingV1 | Self::AligningV2 | Self::StoppingV2)
    }
}

/// An upgrade, or an audit (v1 against its own logic, never cut over).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Upgrade,
    Audit,
}

/// Which job a step is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Which {
    V1,
    Shadow,
}

/// What the shell carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    CreateShadows,
    SubmitShadow,
    /// A savepoint, then cancel. Of a job that already ended: the savepoint it left in the
    /// upgrade's directory.
    Stop(Which),
    Swap,
    /// v2 into the live sinks from its savepoint.
    SubmitLive {
        savepoint: String,
    },
    /// Cancels the shadow job if it runs (one of this upgrade that the record does not name
    /// yet included).
    CancelShadow,
    /// v1 from the savepoint the cut-over took.
    RestartV1 {
        savepoint: String,
    },
    DropShadows,
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Nothing,
    /// The job a submission started.
    Job(String),
    /// The savepoint a stop took.
    Savepoint(String),
    /// What the step did, for the history.
    Note(String),
}

/// Why a step failed; `retryable`: trying again later may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub message: String,
    pub retryable: bool,
}

/// A job as seen at one tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobSeen {
    /// RUNNING, FAILED…
    pub state: String,
    pub terminal: bool,
    /// The lowest watermark of its vertices, when every vertex has one.
    pub watermark: Option<i64>,
    /// Whether it is catching up with its Kafka sources (None: not known yet).
    pub catching_up: Option<bool>,
    /// Records its Kafka sources have not read.
    pub lag: Option<u64>,
    /// Records its Kafka sources read per second lately.
    pub read_per_second: f64,
}

/// The jobs at one tick (None: the jobmanager does not know the job).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    pub v1: Option<JobSeen>,
    pub shadow: Option<JobSeen>,
}

/// What arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The jobs now; `now_ms` also paces retries.
    Tick { seen: Seen, now_ms: i64 },
    StepDone {
        step: Step,
        outcome: Result<Output, StepError>,
        now_ms: i64,
    },
    /// A jobmanager took the upgrade over from its record.
    Resumed { now_ms: i64 },
}

/// What a user asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Cutover { now_ms: i64 },
    Abort { why: String, now_ms: i64 },
}

/// What the shell does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Step),
    /// Write the record (its phase or what it knows changed).
    Persist,
    /// Compare the live sinks with the shadows (v2 caught up).
    Diff,
}

/// A request the upgrade refuses in its phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// One line of an upgrade's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryLine {
    pub at_ms: i64,
    pub phase: Phase,
    pub note: String,
}

/// How long a failed step waits before it is tried again.
pub const RETRY_AFTER_MS: i64 = 5_000;

/// Everything an upgrade knows; its record in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpgradeRecord {
    pub id: String,
    pub kind: Kind,
    pub phase: Phase,
    /// The running job being replaced (v1).
    pub v1_job: String,
    pub shadows: Vec<ShadowSink>,
    /// Whether the cut-over deletes what only v1 wrote (false when v2 could not recompute
    /// all of v1's history: the topic no longer holds it).
    pub delete_vanished: bool,
    /// Cut over as soon as v2 caught up.
    pub auto_cutover: bool,
    /// Nothing v1 computes changed and its state fits v2: no shadows, no replay; the cut-over
    /// stops v1 with a savepoint and starts v2 from it.
    #[serde(default)]
    pub from_savepoint: bool,
    /// With `from_savepoint`, v2's file (no shadow job keeps it): its name, its text with
    /// literal secrets redacted, and those sealed with the jobmanagers' key.
    #[serde(default)]
    pub v2_file: Option<StoredFile>,
    /// v2 writing into the shadows.
    pub shadow_job: Option<String>,
    /// v2 writing into the live sinks, after the cut-over.
    pub live_job: Option<String>,
    /// v1 restarted by an abort after the cut-over had stopped it.
    pub v1_restarted_as: Option<String>,
    pub v1_savepoint: Option<String>,
    /// The savepoint v2 continues from into the live sinks (v1's with `from_savepoint`).
    pub v2_savepoint: Option<String>,
    /// v1's watermark when it stopped: v2 passes it before it stops.
    pub v1_watermark: Option<i64>,
    pub started_at_ms: i64,
    pub caught_up_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    /// Why it was aborted.
    pub reason: Option<String>,
    /// The latest failed step and why (it is tried again, or the upgrade aborts).
    pub error: Option<String>,
    pub history: Vec<HistoryLine>,
}

/// A job file kept in a record as a job's is: redacted, its literal secrets sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredFile {
    pub name: String,
    pub shown: String,
    pub sealed: Option<String>,
}

impl UpgradeRecord {
    /// A new upgrade of job `v1_job` into `shadows`, starting at `started_at_ms`.
    pub fn new(
        id: String,
        kind: Kind,
        v1_job: String,
        shadows: Vec<ShadowSink>,
        started_at_ms: i64,
    ) -> Self {
        Self {
            id,
            kind,
            phase: Phase::Starting,
            v1_job,
            shadows,
            delete_vanished: true,
            auto_cutover: false,
            from_savepoint: false,
            v2_file: None,
            shadow_job: None,
            live_job: None,
            v1_restarted_as: None,
            v1_savepoint: None,
            v2_savepoint: None,
            v1_watermark: None,
            started_at_ms,
            caught_up_at_ms: None,
            ended_at_ms: None,
            reason: None,
            error: None,
            history: Vec::new(),
        }
    }
}

/// The decisions of one upgrade around its record.
pub struct UpgradeMachine {
    pub record: UpgradeRecord,
    /// The step being carried out.
    in_flight: Option<Step>,
    /// A failed step waits until then.
    retry_at_ms: i64,
    /// Steps of the abort still to do, in order.
    abort_steps: Vec<Step>,
    /// An abort asked for while a step was under way: it follows the step.
    pending_abort: Option<String>,
}

impl UpgradeMachine {
    pub fn new(record: UpgradeRecord) -> Self {
        Self {
            record,
            in_flight: None,
            retry_at_ms: i64::MIN,
            abort_steps: Vec::new(),
            pending_abort: None,
        }
    }

    /// The step being carried out, if any.
    pub fn in_flight(&self) -> Option<&Step> {
        self.in_flight.as_ref()
    }

    /// The commands after `event`.
    pub fn on(&mut self, event: Event) -> Vec<Command> {
        let mut out = Vec::new();
        match event {
            Event::Resumed { now_ms } => self.resumed(now_ms, &mut out),
            Event::Tick { seen, now_ms } => self.tick(&seen, now_ms, &mut out),
            Event::StepDone {
                step,
                outcome,
                now_ms,
            } => self.step_done(step, outcome, now_ms, &mut out),
        }
        out
    }

    /// A user's cut-over or abort: the commands, or why the phase refuses it.
    pub fn request(&mut self, request: Request) -> Result<Vec<Command>, Refused> {
        let mut out = Vec::new();
        match request {
            Request::Cutover { now_ms } => {
                if self.record.kind == Kind::Audit {
                    return Err(Refused(
                        "an audit is never cut over: it only compares".into(),
                    ));
                }
                match self.record.phase {
                    Phase::CaughtUp => {
                        self.enter(Phase::StoppingV1, "cut-over requested", now_ms, &mut out)
                    }
                    Phase::Shadowing => self.record.auto_cutover = true,
                    p if p.is_terminal() => {
                        return Err(Refused(format!("the upgrade is {}", phase_name(p))));
                    }
                    // Already cutting over.
                    _ => {}
                }
                out.push(Command::Persist);
            }
            Request::Abort { why, now_ms } => {
                let phase = self.record.phase;
                if !phase.abortable() || self.pending_abort.is_some() {
                    return Err(Refused(match phase {
                        Phase::Done => "the upgrade is done: v2 writes the live sinks".into(),
                        Phase::Swapping | Phase::StartingLive => {
                            "the cut-over is swapping the sinks: it completes".into()
                        }
                        _ => "the upgrade is already aborted".into(),
                    }));
                }
                match self.in_flight {
                    // The step's outcome is needed (a savepoint of v1 to restart it from).
                    Some(_) => self.pending_abort = Some(why),
                    None => self.abort(why, now_ms, &mut out),
                }
            }
        }
        Ok(out)
    }

    fn resumed(&mut self, now_ms: i64, out: &mut Vec<Command>) {
        self.in_flight = None;
        match self.record.phase {
            // The new file's text lived only in the request that started the upgrade (unless
            // the record keeps it: a start from a savepoint has nothing else to do).
            Phase::Starting if !self.record.from_savepoint => self.abort(
                "the jobmanager restarted while the upgrade started".into(),
                now_ms,
                out,
            ),
            Phase::Aborting => {
                self.abort_steps = self.abort_plan();
                self.next_abort_step(now_ms, out);
            }
            _ => self.issue(out),
        }
    }

    fn tick(&mut self, seen: &Seen, now_ms: i64, out: &mut Vec<Command>) {
        let phase = self.record.phase;
        if phase.abortable()
            && phase != Phase::Starting
            && self.in_flight.is_none()
            && let Some(why) = self.lost_job(seen)
        {
            return self.abort(why, now_ms, out);
        }
        match phase {
            Phase::Starting if self.record.from_savepoint => {
                self.record.caught_up_at_ms = Some(now_ms);
                self.enter(
                    Phase::CaughtUp,
                    "nothing v1 computes changed: v2 starts from a savepoint of v1, without a replay",
                    now_ms,
                    out,
                );
                if self.record.auto_cutover {
                    self.enter(Phase::StoppingV1, "automatic cut-over", now_ms, out);
                }
            }
            Phase::Shadowing => {
                if let Some(v2) = &seen.shadow
                    && caught_up(v2, seen.v1.as_ref().and_then(|v| v.watermark))
                {
                    self.record.caught_up_at_ms = Some(now_ms);
                    self.enter(Phase::CaughtUp, "v2 caught up with v1", now_ms, out);
                    out.push(Command::Diff);
                    if self.record.auto_cutover && self.record.kind == Kind::Upgrade {
                        self.enter(Phase::StoppingV1, "automatic cut-over", now_ms, out);
                    }
                }
            }
            Phase::AligningV2 => {
                let Some(v1) = &seen.v1 else { return };
                if !v1.terminal {
                    return;
                }
                if self.record.v1_watermark.is_none() {
                    self.record.v1_watermark = v1.watermark;
                    out.push(Command::Persist);
                }
                if let Some(v2) = &seen.shadow
                    && caught_up(v2, self.record.v1_watermark)
                {
                    self.enter(
                        Phase::StoppingV2,
                        "v2 passed v1's last watermark",
                        now_ms,
                        out,
                    );
                }
            }
            _ => {}
        }
        if now_ms >= self.retry_at_ms && self.in_flight.is_none() {
            match self.record.phase {
                Phase::Aborting => self.next_abort_step(now_ms, out),
                _ => self.issue(out),
            }
        }
    }

    /// Why the upgrade cannot go on: v1 or v2 ended, or is unknown.
    fn lost_job(&self, seen: &Seen) -> Option<String> {
        let v1_ours = self.record.phase.v1_stopped();
        match &seen.v1 {
            None => return Some(format!("job {} (v1) is gone", self.record.v1_job)),
            Some(v1) if v1.terminal && !v1_ours => {
                return Some(format!("v1 ended ({})", v1.state));
            }
            _ => {}
        }
        let shadow = self.record.shadow_job.as_ref()?;
        let v2_ours = self.record.phase == Phase::StoppingV2;
        match &seen.shadow {
            None => Some(format!("the shadow job {shadow} is gone")),
            Some(v2) if v2.terminal && !v2_ours => Some(format!("v2 ended ({})", v2.state)),
            _ => None,
        }
    }

    /// The step of the current phase, unless one is under way.
    fn issue(&mut self, out: &mut Vec<Command>) {
        if self.in_flight.is_some() {
            return;
        }
        let step = match self.record.phase {
            // Creating shadows is idempotent: a failed submission starts over from it.
            Phase::Starting if !self.record.from_savepoint => Step::CreateShadows,
            Phase::StoppingV1 => Step::Stop(Which::V1),
            Phase::StoppingV2 => Step::Stop(Which::Shadow),
            Phase::Swapping => Step::Swap,
            Phase::StartingLive => match &self.record.v2_savepoint {
                Some(savepoint) => Step::SubmitLive {
                    savepoint: savepoint.clone(),
                },
                None => return,
            },
            _ => return,
        };
        self.run(step, out);
    }

    fn run(&mut self, step: Step, out: &mut Vec<Command>) {
        self.in_flight = Some(step.clone());
        out.push(Command::Run(step));
    }

    /// Keeps what a step found out (ids of jobs it started, savepoints it took).
    fn record_output(&mut self, step: &Step, output: &Output) {
        let r = &mut self.record;
        match (step, output) {
            (Step::SubmitShadow, Output::Job(id)) => r.shadow_job = Some(id.clone()),
            (Step::Stop(Which::V1), Output::Savepoint(p)) => {
                r.v1_savepoint = Some(p.clone());
                if r.from_savepoint {
                    r.v2_savepoint = Some(p.clone());
                }
            }
            (Step::Stop(Which::Shadow), Output::Savepoint(p)) => r.v2_savepoint = Some(p.clone()),
            (Step::SubmitLive { .. }, Output::Job(id)) => r.live_job = Some(id.clone()),
            (Step::RestartV1 { .. }, Output::Job(id)) => r.v1_restarted_as = Some(id.clone()),
            _ => {}
        }
    }

    fn step_done(
        &mut self,
        step: Step,
        outcome: Result<Output, StepError>,
        now_ms: i64,
        out: &mut Vec<Command>,
    ) {
        if self.in_flight.as_ref() != Some(&step) {
            // The answer to a step of a phase left since (an abort overtook it).
            tracing::debug!(upgrade = %self.record.id, ?step, "late step outcome ignored");
            return;
        }
        self.in_flight = None;
        let output = match outcome {
            Ok(o) => o,
            Err(e) => {
                self.failed(step, e, now_ms, out);
                return self.abort_if_asked(now_ms, out);
            }
        };
        self.record.error = None;
        self.record_output(&step, &output);
        if self.pending_abort.is_some() {
            return self.abort_if_asked(now_ms, out);
        }
        match (step, output) {
            (Step::CreateShadows, _) => {
                self.note("shadow sinks created".into(), now_ms);
                out.push(Command::Persist);
                self.run(Step::SubmitShadow, out);
            }
            (Step::SubmitShadow, Output::Job(id)) => {
                self.enter(
                    Phase::Shadowing,
                    &format!("v2 runs as job {id} into the shadows"),
                    now_ms,
                    out,
                );
            }
            (Step::Stop(Which::V1), Output::Savepoint(path)) => {
                let next = match self.record.from_savepoint {
                    true => Phase::StartingLive,
                    false => Phase::AligningV2,
                };
                self.enter(
                    next,
                    &format!("v1 stopped with savepoint {path}"),
                    now_ms,
                    out,
                );
            }
            (Step::Stop(Which::Shadow), Output::Savepoint(path)) => self.enter(
                Phase::Swapping,
                &format!("v2 stopped with savepoint {path}"),
                now_ms,
                out,
            ),
            (Step::Swap, output) => {
                let note = match output {
                    Output::Note(n) => n,
                    _ => "the live sinks hold v2's results".into(),
                };
                self.enter(Phase::StartingLive, &note, now_ms, out)
            }
            (Step::SubmitLive { .. }, Output::Job(id)) => {
                self.record.ended_at_ms = Some(now_ms);
                self.enter(
                    Phase::Done,
                    &format!("v2 runs as job {id} into the live sinks"),
                    now_ms,
                    out,
                );
                // The Kafka shadow topics stay until now: dropping them is tidying.
                self.run(Step::DropShadows, out);
            }
            (Step::RestartV1 { .. }, Output::Job(id)) => {
                self.note(format!("v1 restarted as job {id}"), now_ms);
                out.push(Command::Persist);
                self.next_abort_step(now_ms, out);
            }
            (Step::CancelShadow | Step::DropShadows, _) if self.record.phase == Phase::Aborting => {
                self.next_abort_step(now_ms, out)
            }
            (Step::DropShadows, _) => {}
            (step, output) => {
                tracing::warn!(upgrade = %self.record.id, ?step, ?output, "a step answered with an unexpected output");
            }
        }
    }

    /// An abort asked for while the step that just ended was under way.
    fn abort_if_asked(&mut self, now_ms: i64, out: &mut Vec<Command>) {
        if let Some(why) = self.pending_abort.take()
            && self.record.phase.abortable()
        {
            self.abort(why, now_ms, out);
        }
    }

    fn failed(&mut self, step: Step, e: StepError, now_ms: i64, out: &mut Vec<Command>) {
        tracing::warn!(upgrade = %self.record.id, ?step, error = %e.message, retryable = e.retryable, "upgrade step failed");
        self.record.error = Some(format!("{}: {}", step_name(&step), e.message));
        out.push(Command::Persist);
        let retry_at = now_ms + RETRY_AFTER_MS;
        match self.record.phase {
            // Tidying after the end: nothing depends on it.
            Phase::Done => {}
            Phase::Aborting if e.retryable => {
                self.abort_steps.insert(0, step);
                self.retry_at_ms = retry_at;
            }
            Phase::Aborting => {
                // Leave what cannot be undone, say so, and go on with the rest.
                self.note(format!("not done: {}", e.message), now_ms);
                self.next_abort_step(now_ms, out);
            }
            // A stop of v1 that cannot succeed left it running: the cut-over can be asked
            // again.
            Phase::StoppingV1 if !e.retryable => {
                self.enter(Phase::CaughtUp, "stopping v1 failed", now_ms, out)
            }
            // Past the point of no return (a sink may have been swapped): only forward.
            Phase::Swapping | Phase::StartingLive => self.retry_at_ms = retry_at,
            _ if e.retryable => self.retry_at_ms = retry_at,
            _ => self.abort(
                format!("{} failed: {}", step_name(&step), e.message),
                now_ms,
                out,
            ),
        }
    }

    /// Aborts: v1 as it was, shadows dropped.
    fn abort(&mut self, why: String, now_ms: i64, out: &mut Vec<Command>) {
        let restart_v1 = self.record.phase.v1_stopped();
        self.record.reason = Some(why.clone());
        self.enter(Phase::Aborting, &why, now_ms, out);
        self.abort_steps = self.abort_plan_from(restart_v1);
        self.retry_at_ms = i64::MIN;
        self.next_abort_step(now_ms, out);
    }

    /// The abort's steps from its record (a resumed abort does them all again; each is
    /// idempotent).
    fn abort_plan(&self) -> Vec<Step> {
        let restart = self.record.v1_savepoint.is_some() && self.record.v1_restarted_as.is_none();
        self.abort_plan_from(restart)
    }

    fn abort_plan_from(&self, restart_v1: bool) -> Vec<Step> {
        let mut steps = vec![Step::CancelShadow];
        if restart_v1
            && self.record.v1_restarted_as.is_none()
            && let Some(savepoint) = &self.record.v1_savepoint
        {
            steps.push(Step::RestartV1 {
                savepoint: savepoint.clone(),
            });
        }
        steps.push(Step::DropShadows);
        steps
    }

    fn next_abort_step(&mut self, now_ms: i64, out: &mut Vec<Command>) {
        if self.in_flight.is_some() {
            return;
        }
        if self.abort_steps.is_empty() {
            self.record.ended_at_ms = Some(now_ms);
            self.enter(Phase::Aborted, "shadows dropped", now_ms, out);
            return;
        }
        let step = self.abort_steps.remove(0);
        self.run(step, out);
    }

    fn enter(&mut self, phase: Phase, note: &str, now_ms: i64, out: &mut Vec<Command>) {
        self.record.phase = phase;
        self.note(note.to_string(), now_ms);
        out.push(Command::Persist);
        self.issue(out);
    }

    fn note(&mut self, note: String, at_ms: i64) {
        self.record.history.push(HistoryLine {
            at_ms,
            phase: self.record.phase,
            note,
        });
    }
}

/// Records behind that still count as caught up, at least (a second of reading, else).
const CAUGHT_UP_LAG: f64 = 100.0;

/// Whether v2 has caught up: running, live with its sources, at most a second of reading
/// behind them, and past `watermark`.
fn caught_up(v2: &JobSeen, watermark: Option<i64>) -> bool {
    let passed = match (watermark, v2.watermark) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(w1), Some(w2)) => w2 >= w1,
    };
    let close = v2
        .lag
        .is_some_and(|lag| lag as f64 <= v2.read_per_second.max(CAUGHT_UP_LAG));
    v2.state == "RUNNING" && v2.catching_up == Some(false) && close && passed
}

pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Starting => "STARTING",
        Phase::Shadowing => "SHADOWING",
        Phase::CaughtUp => "CAUGHT_UP",
        Phase::StoppingV1 => "STOPPING_V1",
        Phase::AligningV2 => "ALIGNING_V2",
        Phase::StoppingV2 => "STOPPING_V2",
        Phase::Swapping => "SWAPPING",
        Phase::StartingLive => "STARTING_LIVE",
        Phase::Done => "DONE",
        Phase::Aborting => "ABORTING",
        Phase::Aborted => "ABORTED",
    }
}

fn step_name(s: &Step) -> &'static str {
    match s {
        Step::CreateShadows => "creating the shadow sinks",
        Step::SubmitShadow => "submitting v2 into the shadows",
        Step::Stop(Which::V1) => "stopping v1 with a savepoint",
        Step::Stop(Which::Shadow) => "stopping v2 with a savepoint",
        Step::Swap => "swapping the sinks",
        Step::SubmitLive { .. } => "starting v2 into the live sinks",
        Step::CancelShadow => "cancelling the shadow job",
        Step::RestartV1 { .. } => "restarting v1 from its savepoint",
        Step::DropShadows => "dropping the shadow sinks",
    }
}
