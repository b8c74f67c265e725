//! A job's life across its attempts as pure decision code: what happened (slots taken or not,
//! an attempt ended, a restart delay passed, with whether a cancel was asked) in, what the
//! driver does next (take slots, run attempt n, wait and restart, end in a state) out. The
//! driver carries the commands out; the orderings are unit-tested here.

use std::time::Duration;

use kappa_job::plan::RestartPlan;
use kappa_runtime::TaskError;

use crate::job::JobState;

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    Finished,
    Cancelled,
    Failed(TaskError),
}

/// What happened.
#[derive(Debug)]
pub enum Event {
    /// The job was submitted or resumed.
    Start,
    /// Slots were taken for the next attempt.
    SlotsTaken,
    /// No slots within the slot timeout.
    SlotTimeout(String),
    /// The attempt ended after running this long.
    AttemptEnded(Outcome, Duration),
    /// A wait ended: the restart delay passed, or a cancel cut it (or the wait for slots)
    /// short.
    Waited,
}

/// What the driver does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Wait for slots (a cancel while waiting ends the job as CANCELED).
    TakeSlots,
    /// Deploy and follow attempt number n.
    RunAttempt(u32),
    /// Show RESTARTING with the reason and wait this long, then send `Waited`.
    Restart { delay: Duration, reason: String },
    /// The job ends in this state, with this error shown.
    End {
        state: JobState,
        error: Option<String>,
    },
}

/// The decisions of one job.
pub struct Lifecycle {
    restart: RestartPlan,
    /// Attempts before this jobmanager took the job over.
    attempt_offset: u32,
    /// Restarts so far (attempts are numbered by them).
    restarts: u32,
    /// Restarts in a row: since an attempt ran at least the plan's `reset_after`.
    in_a_row: u32,
}

impl Lifecycle {
    pub fn new(restart: RestartPlan, attempt_offset: u32) -> Self {
        Self {
            restart,
            attempt_offset,
            restarts: 0,
            in_a_row: 0,
        }
    }

    /// The next command after `event`; `cancel_requested` is whether the user asked to cancel.
    pub fn on(&mut self, event: Event, cancel_requested: bool) -> Command {
        let cancelled = Command::End {
            state: JobState::Canceled,
            error: None,
        };
        match event {
            Event::Start | Event::Waited if cancel_requested => cancelled,
            Event::Start | Event::Waited => Command::TakeSlots,
            Event::SlotsTaken if cancel_requested => cancelled,
            Event::SlotsTaken => Command::RunAttempt(self.attempt_offset + self.restarts + 1),
            Event::SlotTimeout(reason) => Command::End {
                state: JobState::Failed,
                error: Some(reason),
            },
            Event::AttemptEnded(Outcome::Finished, _) => Command::End {
                state: JobState::Finished,
                error: None,
            },
            Event::AttemptEnded(Outcome::Cancelled, _) => cancelled,
            // A cancel asked while the attempt failed ends the job: no restart.
            Event::AttemptEnded(Outcome::Failed(e), _) if cancel_requested => Command::End {
                state: JobState::Canceled,
                error: Some(e.to_string()),
            },
            Event::AttemptEnded(Outcome::Failed(e), ran) => {
                // An attempt that ran long enough was a recovery: back off from the start.
                if ran >= self.restart.reset_after {
                    self.in_a_row = 0;
                }
                let delay = e
                    .is_retriable()
                    .then(|| self.restart.delay_before(self.in_a_row + 1))
                    .flatten();
                match delay {
                    None => Command::End {
                        state: JobState::Failed,
                        error: Some(e.to_string()),
                    },
                    Some(delay) => {
                        self.restarts += 1;
                        self.in_a_row += 1;
                        Command::Restart {
                            delay,
                            reason: format!("restart {} in {delay:?} after: {e}", self.restarts),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_job::spec::RestartStrategyKind;

    fn backoff(max_attempts: Option<u32>) -> Lifecycle {
        Lifecycle::new(
            RestartPlan {
                strategy: RestartStrategyKind::ExponentialBackoff,
                delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(3),
                max_attempts,
                reset_after: Duration::from_secs(600),
            },
            4,
        )
    }

    /// An attempt that failed with an I/O error after a second.
    fn io(what: &str) -> Event {
        io_after(what, Duration::from_secs(1))
    }

    fn io_after(what: &str, ran: Duration) -> Event {
        Event::AttemptEnded(Outcome::Failed(TaskError::Io(what.into())), ran)
    }

    #[test]
    fn attempts_are_numbered_after_an_earlier_jobmanager_s_and_restarts_back_off() {
        let mut l = backoff(None);
        assert_eq!(l.on(Event::Start, false), Command::TakeSlots);
        assert_eq!(l.on(Event::SlotsTaken, false), Command::RunAttempt(5));
        let mut delays = Vec::new();
        for n in 6..=9 {
            match l.on(io("broker gone"), false) {
                Command::Restart { delay, reason } => {
                    assert!(reason.contains("after: broker gone"), "{reason}");
                    delays.push(delay.as_secs());
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(l.on(Event::Waited, false), Command::TakeSlots);
            assert_eq!(l.on(Event::SlotsTaken, false), Command::RunAttempt(n));
        }
        assert_eq!(delays, [1, 2, 3, 3], "doubling up to max_delay");
    }

    #[test]
    fn a_restart_during_a_restart_counts_towards_the_limit() {
        let mut l = backoff(Some(2));
        l.on(Event::SlotsTaken, false);
        assert!(matches!(l.on(io("a"), false), Command::Restart { .. }));
        // The restarted attempt fails before it ever ran (e.g. its deployment failed).
        assert!(matches!(l.on(io("b"), false), Command::Restart { .. }));
        assert_eq!(
            l.on(io("c"), false),
            Command::End {
                state: JobState::Failed,
                error: Some("c".into())
            }
        );
    }

    #[test]
    fn an_attempt_that_ran_past_reset_after_starts_the_backoff_and_the_limit_over() {
        let mut l = backoff(Some(2));
        l.on(Event::SlotsTaken, false);
        let delay = |c: Command| match c {
            Command::Restart { delay, .. } => delay.as_secs(),
            other => panic!("{other:?}"),
        };
        assert_eq!(delay(l.on(io("a"), false)), 1);
        assert_eq!(delay(l.on(io("b"), false)), 2);
        // The third attempt ran ten minutes: a new failure is the first in a row, and the
        // attempts keep their numbers.
        let ten_minutes = Duration::from_secs(600);
        assert_eq!(delay(l.on(io_after("c", ten_minutes), false)), 1);
        l.on(Event::Waited, false);
        assert_eq!(l.on(Event::SlotsTaken, false), Command::RunAttempt(8));
        assert_eq!(delay(l.on(io("d"), false)), 2);
        assert!(
            matches!(
                l.on(io("e"), false),
                Command::End {
                    state: JobState::Failed,
                    ..
                }
            ),
            "three in a row after the reset"
        );
    }

    #[test]
    fn bad_data_is_not_restarted() {
        let mut l = backoff(None);
        let e = Event::AttemptEnded(
            Outcome::Failed(TaskError::Data("bad record".into())),
            Duration::ZERO,
        );
        assert_eq!(
            l.on(e, false),
            Command::End {
                state: JobState::Failed,
                error: Some("bad record".into())
            }
        );
    }

    #[test]
    fn a_cancel_wins_at_every_step() {
        let canceled = |error: Option<&str>| Command::End {
            state: JobState::Canceled,
            error: error.map(str::to_string),
        };
        let mut l = backoff(None);
        assert_eq!(l.on(Event::Start, true), canceled(None));
        assert_eq!(
            l.on(Event::SlotsTaken, true),
            canceled(None),
            "slots came with the cancel"
        );
        assert_eq!(l.on(io("x"), true), canceled(Some("x")), "no restart");
        assert_eq!(
            l.on(Event::Waited, true),
            canceled(None),
            "cancelled while waiting"
        );
        assert_eq!(
            l.on(
                Event::AttemptEnded(Outcome::Cancelled, Duration::ZERO),
                false
            ),
            canceled(None)
        );
        assert_eq!(
            l.on(Event::SlotTimeout("no slots".into()), false),
            Command::End {
                state: JobState::Failed,
                error: Some("no slots".into())
            }
        );
    }
}
