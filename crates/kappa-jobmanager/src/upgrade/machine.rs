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

use super::protocol::{
    Command, Event, JobSeen, Output, RETRY_AFTER_MS, Refused, Request, Seen, Step, StepError, Which,
};
use super::record::{HistoryLine, Kind, Phase, UpgradeRecord, phase_name};

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
    /// The shadow job's latest completed checkpoint when it caught up: its output is complete
    /// in the shadows (an exactly-once sink commits at checkpoints) once a checkpoint started
    /// after that completed. The diff waits for that.
    caught_up_at_checkpoint: Option<u64>,
    /// Whether the diff of the caught-up shadows was asked for.
    diffed: bool,
}

impl UpgradeMachine {
    pub fn new(record: UpgradeRecord) -> Self {
        Self {
            record,
            in_flight: None,
            retry_at_ms: i64::MIN,
            abort_steps: Vec::new(),
            pending_abort: None,
            caught_up_at_checkpoint: None,
            diffed: false,
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
                    self.caught_up_at_checkpoint = v2.checkpoint;
                    self.enter(Phase::CaughtUp, "v2 caught up with v1", now_ms, out);
                    self.diff_when_committed(v2, out);
                    if self.record.auto_cutover && self.record.kind == Kind::Upgrade {
                        self.enter(Phase::StoppingV1, "automatic cut-over", now_ms, out);
                    }
                }
            }
            Phase::CaughtUp => {
                if let Some(v2) = &seen.shadow {
                    self.diff_when_committed(v2, out);
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

    /// Asks for the diff once the caught-up shadow job's output is all in the shadows: two
    /// checkpoints completed since it caught up (the second started after), or it takes none
    /// periodically.
    fn diff_when_committed(&mut self, v2: &JobSeen, out: &mut Vec<Command>) {
        if self.diffed {
            return;
        }
        let committed = match (v2.checkpoint, self.caught_up_at_checkpoint) {
            (Some(now), Some(at)) => now >= at + 2,
            // Taken over by a jobmanager after it caught up: count from now.
            (Some(now), None) => {
                self.caught_up_at_checkpoint = Some(now);
                false
            }
            (None, _) => true,
        };
        if committed {
            self.diffed = true;
            out.push(Command::Diff);
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
        // A savepoint of v1 in the record means the cut-over stopped it.
        self.abort_plan_from(true)
    }

    /// Cancel v2, restart v1 from its savepoint (with `restart_v1`, when the record has one and
    /// v1 was not restarted yet), drop the shadows.
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
