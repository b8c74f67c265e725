//! The upgrade machine walked through its lifecycle and the orderings processes rarely
//! produce: aborts while a step is under way, failures at each step, jobs that end on their
//! own, and a jobmanager taking over in every phase.

use super::machine::UpgradeMachine;
use super::plan::ShadowSink;
use super::protocol::*;
use super::record::*;

fn record(kind: Kind) -> UpgradeRecord {
    let shadows = vec![ShadowSink {
        sink: "pg".into(),
        connector: "postgres".into(),
        live: "hourly".into(),
        shadow: "hourly__u1".into(),
    }];
    UpgradeRecord::new("u1".into(), kind, "v1".into(), shadows, 0)
}

fn running(watermark: i64, catching_up: bool, lag: u64) -> JobSeen {
    JobSeen {
        state: "RUNNING".into(),
        terminal: false,
        watermark: Some(watermark),
        catching_up: Some(catching_up),
        lag: Some(lag),
        read_per_second: 1_000.0,
        // Without periodic checkpoints: caught up needs none.
        checkpoint: None,
    }
}

fn ended(state: &str, watermark: i64) -> JobSeen {
    JobSeen {
        state: state.into(),
        terminal: true,
        watermark: Some(watermark),
        ..JobSeen::default()
    }
}

fn tick(m: &mut UpgradeMachine, v1: JobSeen, shadow: Option<JobSeen>, now_ms: i64) -> Vec<Command> {
    m.on(Event::Tick {
        seen: Seen {
            v1: Some(v1),
            shadow,
        },
        now_ms,
    })
}

fn done(m: &mut UpgradeMachine, step: Step, output: Output, now_ms: i64) -> Vec<Command> {
    m.on(Event::StepDone {
        step,
        outcome: Ok(output),
        now_ms,
    })
}

fn fail(m: &mut UpgradeMachine, step: Step, retryable: bool, now_ms: i64) -> Vec<Command> {
    m.on(Event::StepDone {
        step,
        outcome: Err(StepError {
            message: "broken".into(),
            retryable,
        }),
        now_ms,
    })
}

fn runs(commands: &[Command]) -> Vec<Step> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Run(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// An upgrade whose v2 runs as job `v2` and has caught up with v1 at watermark 100.
fn caught_up(kind: Kind) -> UpgradeMachine {
    let mut m = UpgradeMachine::new(record(kind));
    let c = tick(&mut m, running(100, false, 0), None, 1);
    assert_eq!(runs(&c), [Step::CreateShadows]);
    let c = done(&mut m, Step::CreateShadows, Output::Nothing, 2);
    assert_eq!(runs(&c), [Step::SubmitShadow]);
    let c = done(&mut m, Step::SubmitShadow, Output::Job("v2".into()), 3);
    assert_eq!(m.record.phase, Phase::Shadowing);
    assert!(c.contains(&Command::Persist));
    assert_eq!(m.record.shadow_job.as_deref(), Some("v2"));
    // Catching up, then live but behind v1's watermark, then too far behind its sources:
    // not yet.
    for v2 in [
        running(50, true, 90_000),
        running(90, false, 0),
        running(100, false, 5_000),
    ] {
        tick(&mut m, running(100, false, 0), Some(v2), 4);
        assert_eq!(m.record.phase, Phase::Shadowing);
    }
    let c = tick(
        &mut m,
        running(100, false, 0),
        Some(running(100, false, 10)),
        5,
    );
    assert_eq!(m.record.phase, Phase::CaughtUp);
    assert!(c.contains(&Command::Diff), "{c:?}");
    assert_eq!(m.record.caught_up_at_ms, Some(5));
    m
}

#[test]
fn an_upgrade_cuts_over_in_order_and_ends_with_v2_live() {
    let mut m = caught_up(Kind::Upgrade);
    let c = m.request(Request::Cutover { now_ms: 9 }).unwrap();
    assert_eq!(runs(&c), [Step::Stop(Which::V1)]);
    assert_eq!(m.record.phase, Phase::StoppingV1);
    let c = done(
        &mut m,
        Step::Stop(Which::V1),
        Output::Savepoint("sp1".into()),
        10,
    );
    assert_eq!(m.record.phase, Phase::AligningV2);
    assert!(runs(&c).is_empty());
    // v1 is still ending: v2 is not stopped yet.
    tick(
        &mut m,
        running(120, false, 0),
        Some(running(130, false, 0)),
        11,
    );
    assert_eq!(m.record.phase, Phase::AligningV2);
    // v1 ended at watermark 140, past v2: wait for v2.
    tick(
        &mut m,
        ended("CANCELED", 140),
        Some(running(130, false, 0)),
        12,
    );
    assert_eq!(m.record.phase, Phase::AligningV2);
    assert_eq!(m.record.v1_watermark, Some(140));
    let c = tick(
        &mut m,
        ended("CANCELED", 140),
        Some(running(141, false, 0)),
        13,
    );
    assert_eq!(m.record.phase, Phase::StoppingV2);
    assert_eq!(runs(&c), [Step::Stop(Which::Shadow)]);
    // v2 ends because it is stopped: that is no reason to abort.
    let c = tick(
        &mut m,
        ended("CANCELED", 140),
        Some(ended("CANCELED", 141)),
        14,
    );
    assert!(runs(&c).is_empty());
    assert_eq!(m.record.phase, Phase::StoppingV2);
    let c = done(
        &mut m,
        Step::Stop(Which::Shadow),
        Output::Savepoint("sp2".into()),
        15,
    );
    assert_eq!(
        (m.record.phase, runs(&c)),
        (Phase::Swapping, vec![Step::Swap])
    );
    let c = done(&mut m, Step::Swap, Output::Note("swapped".into()), 16);
    assert_eq!(
        runs(&c),
        [Step::SubmitLive {
            savepoint: "sp2".into()
        }]
    );
    let c = done(
        &mut m,
        Step::SubmitLive {
            savepoint: "sp2".into(),
        },
        Output::Job("v2-live".into()),
        17,
    );
    assert_eq!(m.record.phase, Phase::Done);
    assert_eq!(runs(&c), [Step::DropShadows]);
    assert_eq!(m.record.live_job.as_deref(), Some("v2-live"));
    assert_eq!(
        (
            m.record.v1_savepoint.as_deref(),
            m.record.v2_savepoint.as_deref()
        ),
        (Some("sp1"), Some("sp2"))
    );
    assert!(m.record.history.iter().any(|h| h.note == "swapped"));
    assert!(m.request(Request::Cutover { now_ms: 9 }).is_err());
    assert!(
        m.request(Request::Abort {
            why: "late".into(),
            now_ms: 18
        })
        .is_err()
    );
}

#[test]
fn automatic_cut_over_starts_when_v2_catches_up_and_audits_never_cut_over() {
    let mut r = record(Kind::Upgrade);
    r.auto_cutover = true;
    let mut m = UpgradeMachine::new(r);
    tick(&mut m, running(10, false, 0), None, 1);
    done(&mut m, Step::CreateShadows, Output::Nothing, 2);
    done(&mut m, Step::SubmitShadow, Output::Job("v2".into()), 3);
    let c = tick(
        &mut m,
        running(10, false, 0),
        Some(running(10, false, 0)),
        4,
    );
    assert_eq!(m.record.phase, Phase::StoppingV1);
    assert_eq!(runs(&c), [Step::Stop(Which::V1)]);
    assert!(c.contains(&Command::Diff));

    let mut audit = caught_up(Kind::Audit);
    let refused = audit.request(Request::Cutover { now_ms: 9 }).unwrap_err();
    assert!(refused.0.contains("never cut over"), "{refused}");
    assert_eq!(audit.record.phase, Phase::CaughtUp);
}

#[test]
fn an_abort_before_the_swap_cancels_v2_drops_the_shadows_and_leaves_v1() {
    let mut m = caught_up(Kind::Upgrade);
    let c = m
        .request(Request::Abort {
            why: "the diff is wrong".into(),
            now_ms: 20,
        })
        .unwrap();
    assert_eq!(m.record.phase, Phase::Aborting);
    assert_eq!(runs(&c), [Step::CancelShadow]);
    let c = done(&mut m, Step::CancelShadow, Output::Nothing, 21);
    assert_eq!(runs(&c), [Step::DropShadows]);
    done(&mut m, Step::DropShadows, Output::Nothing, 22);
    assert_eq!(m.record.phase, Phase::Aborted);
    assert_eq!(m.record.reason.as_deref(), Some("the diff is wrong"));
    assert_eq!(m.record.ended_at_ms, Some(22));
}

#[test]
fn an_abort_during_the_stop_of_v1_waits_for_its_savepoint_and_restarts_v1_from_it() {
    let mut m = caught_up(Kind::Upgrade);
    m.request(Request::Cutover { now_ms: 9 }).unwrap();
    let c = m
        .request(Request::Abort {
            why: "changed my mind".into(),
            now_ms: 30,
        })
        .unwrap();
    assert!(c.is_empty(), "the stop is under way: {c:?}");
    assert_eq!(m.record.phase, Phase::StoppingV1);
    assert!(
        m.request(Request::Abort {
            why: "again".into(),
            now_ms: 30
        })
        .is_err()
    );
    let c = done(
        &mut m,
        Step::Stop(Which::V1),
        Output::Savepoint("sp1".into()),
        31,
    );
    assert_eq!(m.record.phase, Phase::Aborting);
    assert_eq!(runs(&c), [Step::CancelShadow]);
    let c = done(&mut m, Step::CancelShadow, Output::Nothing, 32);
    let restart = Step::RestartV1 {
        savepoint: "sp1".into(),
    };
    assert_eq!(runs(&c), std::slice::from_ref(&restart));
    let c = done(&mut m, restart, Output::Job("v1b".into()), 33);
    assert_eq!(runs(&c), [Step::DropShadows]);
    assert_eq!(m.record.v1_restarted_as.as_deref(), Some("v1b"));
    done(&mut m, Step::DropShadows, Output::Nothing, 34);
    assert_eq!(m.record.phase, Phase::Aborted);
}

#[test]
fn a_job_that_ends_on_its_own_aborts_the_upgrade() {
    let mut m = caught_up(Kind::Upgrade);
    let c = tick(
        &mut m,
        running(100, false, 0),
        Some(ended("FAILED", 100)),
        40,
    );
    assert_eq!(m.record.phase, Phase::Aborting);
    assert_eq!(m.record.reason.as_deref(), Some("v2 ended (FAILED)"));
    assert_eq!(runs(&c), [Step::CancelShadow]);

    let mut m = caught_up(Kind::Upgrade);
    tick(
        &mut m,
        ended("CANCELED", 100),
        Some(running(100, false, 0)),
        41,
    );
    assert_eq!(m.record.reason.as_deref(), Some("v1 ended (CANCELED)"));
    let mut m = caught_up(Kind::Upgrade);
    m.on(Event::Tick {
        seen: Seen::default(),
        now_ms: 42,
    });
    assert_eq!(m.record.reason.as_deref(), Some("job v1 (v1) is gone"));
}

#[test]
fn failed_steps_are_retried_after_a_while_or_abort_or_return_to_caught_up() {
    // A retryable failure of the submission: the start is tried again after the pause.
    let mut m = UpgradeMachine::new(record(Kind::Upgrade));
    tick(&mut m, running(1, false, 0), None, 0);
    done(&mut m, Step::CreateShadows, Output::Nothing, 1);
    fail(&mut m, Step::SubmitShadow, true, 2);
    assert!(m.record.error.as_deref().unwrap().contains("broken"));
    assert!(runs(&tick(&mut m, running(1, false, 0), None, 3)).is_empty());
    let c = tick(&mut m, running(1, false, 0), None, 2 + RETRY_AFTER_MS);
    assert_eq!(runs(&c), [Step::CreateShadows]);
    // One that cannot succeed aborts.
    fail(&mut m, Step::CreateShadows, false, 2 + RETRY_AFTER_MS);
    assert_eq!(m.record.phase, Phase::Aborting);

    // A stop of v1 refused for good: back to caught up, v1 running.
    let mut m = caught_up(Kind::Upgrade);
    m.request(Request::Cutover { now_ms: 9 }).unwrap();
    fail(&mut m, Step::Stop(Which::V1), false, 50);
    assert_eq!(m.record.phase, Phase::CaughtUp);
    assert!(m.request(Request::Cutover { now_ms: 9 }).is_ok());

    // Past the point of no return every failure is retried, and an abort refused.
    let mut m = caught_up(Kind::Upgrade);
    m.request(Request::Cutover { now_ms: 9 }).unwrap();
    done(
        &mut m,
        Step::Stop(Which::V1),
        Output::Savepoint("sp1".into()),
        60,
    );
    tick(
        &mut m,
        ended("CANCELED", 100),
        Some(running(100, false, 0)),
        61,
    );
    done(
        &mut m,
        Step::Stop(Which::Shadow),
        Output::Savepoint("sp2".into()),
        62,
    );
    fail(&mut m, Step::Swap, false, 63);
    assert_eq!(m.record.phase, Phase::Swapping);
    assert!(
        m.request(Request::Abort {
            why: "no".into(),
            now_ms: 64
        })
        .is_err()
    );
    let c = tick(
        &mut m,
        ended("CANCELED", 100),
        Some(ended("CANCELED", 100)),
        63 + RETRY_AFTER_MS,
    );
    assert_eq!(runs(&c), [Step::Swap]);
}

#[test]
fn a_failed_abort_step_is_retried_and_one_that_cannot_succeed_is_noted() {
    let mut m = caught_up(Kind::Upgrade);
    m.request(Request::Abort {
        why: "stop".into(),
        now_ms: 70,
    })
    .unwrap();
    fail(&mut m, Step::CancelShadow, true, 71);
    let c = tick(&mut m, running(1, false, 0), None, 71 + RETRY_AFTER_MS);
    assert_eq!(runs(&c), [Step::CancelShadow]);
    done(&mut m, Step::CancelShadow, Output::Nothing, 72);
    let c = fail(&mut m, Step::DropShadows, false, 73);
    assert!(runs(&c).is_empty());
    assert_eq!(m.record.phase, Phase::Aborted);
    assert!(
        m.record
            .history
            .iter()
            .any(|h| h.note == "not done: broken")
    );
}

#[test]
fn a_jobmanager_taking_over_repeats_the_step_of_the_recorded_phase() {
    let resumed = |phase: Phase, edit: &dyn Fn(&mut UpgradeRecord)| {
        let mut r = record(Kind::Upgrade);
        r.phase = phase;
        r.shadow_job = Some("v2".into());
        edit(&mut r);
        let mut m = UpgradeMachine::new(r);
        let c = m.on(Event::Resumed { now_ms: 80 });
        (m, runs(&c))
    };
    let none = |_: &mut UpgradeRecord| {};
    // v2's file is gone with the old jobmanager: the start is aborted.
    let (m, steps) = resumed(Phase::Starting, &none);
    assert_eq!(
        (m.record.phase, steps),
        (Phase::Aborting, vec![Step::CancelShadow])
    );
    assert_eq!(resumed(Phase::Shadowing, &none).1, vec![]);
    assert_eq!(
        resumed(Phase::StoppingV1, &none).1,
        vec![Step::Stop(Which::V1)]
    );
    assert_eq!(
        resumed(Phase::StoppingV2, &none).1,
        vec![Step::Stop(Which::Shadow)]
    );
    assert_eq!(resumed(Phase::Swapping, &none).1, vec![Step::Swap]);
    let with_sp = |r: &mut UpgradeRecord| r.v2_savepoint = Some("sp2".into());
    assert_eq!(
        resumed(Phase::StartingLive, &with_sp).1,
        vec![Step::SubmitLive {
            savepoint: "sp2".into()
        }]
    );
    // An abort that had stopped v1 restarts it again unless it was restarted.
    let stopped = |r: &mut UpgradeRecord| r.v1_savepoint = Some("sp1".into());
    let (mut m, steps) = resumed(Phase::Aborting, &stopped);
    assert_eq!(steps, vec![Step::CancelShadow]);
    let c = done(&mut m, Step::CancelShadow, Output::Nothing, 81);
    assert_eq!(
        runs(&c),
        [Step::RestartV1 {
            savepoint: "sp1".into()
        }]
    );
    let restarted = |r: &mut UpgradeRecord| {
        r.v1_savepoint = Some("sp1".into());
        r.v1_restarted_as = Some("v1b".into());
    };
    let (mut m, _) = resumed(Phase::Aborting, &restarted);
    let c = done(&mut m, Step::CancelShadow, Output::Nothing, 81);
    assert_eq!(runs(&c), [Step::DropShadows]);
    // The answer to a step of the old jobmanager's is not this one's.
    let (mut m, _) = resumed(Phase::Swapping, &none);
    done(
        &mut m,
        Step::Stop(Which::Shadow),
        Output::Savepoint("old".into()),
        82,
    );
    assert_eq!(m.record.v2_savepoint, None);
}

#[test]
fn a_start_from_a_savepoint_has_no_shadow_run_and_starts_v2_from_v1s_savepoint() {
    let mut r = record(Kind::Upgrade);
    r.from_savepoint = true;
    r.shadows.clear();
    let mut m = UpgradeMachine::new(r);
    // Kept in its record, it survives a jobmanager's restart while starting.
    let c = m.on(Event::Resumed { now_ms: 1 });
    assert!(runs(&c).is_empty());
    assert_eq!(m.record.phase, Phase::Starting);
    let c = tick(&mut m, running(10, false, 0), None, 2);
    assert_eq!(m.record.phase, Phase::CaughtUp);
    assert!(runs(&c).is_empty(), "no shadows: {c:?}");
    let c = m.request(Request::Cutover { now_ms: 3 }).unwrap();
    assert_eq!(runs(&c), [Step::Stop(Which::V1)]);
    let c = done(
        &mut m,
        Step::Stop(Which::V1),
        Output::Savepoint("sp1".into()),
        4,
    );
    assert_eq!(m.record.phase, Phase::StartingLive);
    let live = Step::SubmitLive {
        savepoint: "sp1".into(),
    };
    assert_eq!(runs(&c), std::slice::from_ref(&live));
    done(&mut m, live, Output::Job("v2".into()), 5);
    assert_eq!(m.record.phase, Phase::Done);
    assert_eq!(m.record.live_job.as_deref(), Some("v2"));
}

#[test]
fn the_diff_waits_until_a_checkpoint_started_after_v2_caught_up_completed() {
    let mut m = UpgradeMachine::new(record(Kind::Audit));
    tick(&mut m, running(100, false, 0), None, 1);
    done(&mut m, Step::CreateShadows, Output::Nothing, 2);
    done(&mut m, Step::SubmitShadow, Output::Job("v2".into()), 3);
    let at = |checkpoint| JobSeen {
        checkpoint: Some(checkpoint),
        ..running(100, false, 0)
    };
    // Checkpoint 5 was complete when v2 caught up and 6 may have been under way: what an
    // exactly-once sink wrote since is committed with 7.
    for (n, now) in [(5, 4), (6, 5)] {
        let c = tick(&mut m, running(100, false, 0), Some(at(n)), now);
        assert_eq!(m.record.phase, Phase::CaughtUp, "checkpoint {n}");
        assert!(!c.contains(&Command::Diff), "checkpoint {n}: {c:?}");
    }
    let c = tick(&mut m, running(100, false, 0), Some(at(7)), 6);
    assert!(c.contains(&Command::Diff), "{c:?}");
    let c = tick(&mut m, running(100, false, 0), Some(at(8)), 7);
    assert!(!c.contains(&Command::Diff), "once: {c:?}");
}
