//! A running attempt as pure decision code: what arrives (subtask reports, lost
//! taskmanagers, checkpoint acknowledgements, savepoint requests, checkpoint ticks, and the
//! results of the writes it asked for) in, what the driver does (trigger, write a
//! checkpoint's metadata, point the job's record at it, notify the sinks, write savepoints,
//! delete obsolete files, fail the attempt) out, in order. A checkpoint's sinks are told it
//! completed only after the record points at it; a record that cannot be written takes the
//! checkpoint back.

use kappa_proto::v1::{CheckpointAck, TaskStateReport};
use kappa_runtime::TaskError;
use object_store::path::Path as ObjectPath;

use crate::attempt_tasks::AttemptTasks;
use crate::checkpoint::{CheckpointMetadata, Checkpoints, Step};
use crate::savepoint_queue::SavepointQueue;

/// What arrives.
#[derive(Debug)]
pub enum Input<T> {
    Task(TaskStateReport),
    Lost {
        id: String,
        address: String,
        reason: String,
    },
    Ack(CheckpointAck),
    Savepoint {
        waiter: T,
        drain: bool,
    },
    /// The checkpoint interval passed.
    Tick,
    /// [`Command::WriteMetadata`] was carried out (`Ok` with the path).
    MetadataWritten {
        meta: Box<CheckpointMetadata>,
        written: Result<String, String>,
    },
    /// [`Command::PointRecord`] was carried out.
    RecordWritten {
        meta: Box<CheckpointMetadata>,
        written: Result<(), String>,
    },
}

/// What the driver does, in order; a `Fail` ends the list (savepoint waiters are told first).
#[derive(Debug)]
pub enum Command<T> {
    Trigger {
        checkpoint: u64,
        drain: bool,
    },
    WriteMetadata(Box<CheckpointMetadata>),
    /// Make the job's record point at this checkpoint.
    PointRecord(Box<CheckpointMetadata>),
    NotifyComplete(u64),
    WriteSavepoints {
        meta: Box<CheckpointMetadata>,
        waiters: Vec<T>,
    },
    FailSavepoints {
        waiters: Vec<T>,
        why: String,
    },
    DeleteObjects(Vec<ObjectPath>),
    Fail(TaskError),
}

/// The job's shape, for building checkpoint metadata.
#[derive(Debug, Clone)]
pub struct JobShape {
    pub job_id: String,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// Whether the job takes periodic checkpoints (else only savepoints).
    pub periodic: bool,
}

/// The decisions of one attempt.
pub struct AttemptMachine<T> {
    pub number: u32,
    pub tasks: AttemptTasks,
    pub savepoints: SavepointQueue<T>,
    shape: JobShape,
}

impl<T> AttemptMachine<T> {
    pub fn new(number: u32, tasks: AttemptTasks, shape: JobShape) -> Self {
        Self {
            number,
            tasks,
            savepoints: SavepointQueue::default(),
            shape,
        }
    }

    /// The commands after `input`; `checkpoints` is the job's coordinator, if it has one.
    pub fn on(
        &mut self,
        input: Input<T>,
        checkpoints: Option<&mut Checkpoints>,
    ) -> Vec<Command<T>> {
        let mut out = Vec::new();
        match (input, checkpoints) {
            (Input::Task(r), _) => out.extend(self.tasks.on_report(&r).map(Command::Fail)),
            (
                Input::Lost {
                    id,
                    address,
                    reason,
                },
                _,
            ) => out.extend(
                self.tasks
                    .on_lost(&id, &address, &reason)
                    .map(Command::Fail),
            ),
            // Without a coordinator there are no checkpoints to take part in.
            (Input::Savepoint { waiter, .. }, None) => out.push(Command::FailSavepoints {
                waiters: vec![waiter],
                why: "the cluster has no checkpoint directory".into(),
            }),
            (_, None) => {}
            (Input::Savepoint { waiter, drain }, Some(c)) => {
                self.savepoints.request(waiter, drain);
                self.start_savepoint(c, &mut out);
            }
            (Input::Ack(a), Some(c)) => {
                let s = &self.shape;
                let step = c.acknowledge(a, s.parallelism, s.max_parallelism, &s.job_id);
                self.step(step, &mut out);
                self.after_checkpoint(c, &mut out);
            }
            (Input::Tick, Some(c)) => {
                let step = match self.shape.periodic || c.in_progress() {
                    true => c.tick(self.number, self.tasks.live().collect()),
                    false => Step::Nothing,
                };
                self.step(step, &mut out);
                self.after_checkpoint(c, &mut out);
            }
            (Input::MetadataWritten { meta, written }, Some(c)) => {
                let ok = written.is_ok();
                let step = c.completed((*meta).clone(), written);
                match ok {
                    true => out.push(Command::PointRecord(meta)),
                    false => {
                        self.step(step, &mut out);
                        self.after_checkpoint(c, &mut out);
                    }
                }
            }
            (Input::RecordWritten { meta, written }, Some(c)) => {
                let n = meta.checkpoint_id;
                match written {
                    Err(e) => {
                        let step = c.revoke(n, format!("recording it in the job's record: {e}"));
                        self.step(step, &mut out);
                    }
                    Ok(()) => {
                        // Before the savepoint's waiters hear of it: a stop cancels right after.
                        out.push(Command::NotifyComplete(n));
                        let waiters = self.savepoints.completed(n);
                        if !waiters.is_empty() {
                            out.push(Command::WriteSavepoints {
                                meta: meta.clone(),
                                waiters,
                            });
                        }
                        out.push(Command::DeleteObjects(c.prune()));
                    }
                }
                self.after_checkpoint(c, &mut out);
            }
        }
        // Nothing after a failure but telling savepoint waiters: the attempt is cancelled.
        if let Some(at) = out.iter().position(|c| matches!(c, Command::Fail(_))) {
            let told: Vec<Command<T>> = out
                .drain(at + 1..)
                .filter(|c| matches!(c, Command::FailSavepoints { .. }))
                .collect();
            let fail = out.pop();
            out.extend(told);
            out.extend(fail);
        }
        out
    }

    fn step(&mut self, step: Step, out: &mut Vec<Command<T>>) {
        match step {
            Step::Nothing => {}
            Step::FailJob(why) => out.push(Command::Fail(TaskError::Io(why))),
            Step::Trigger(n) => out.push(Command::Trigger {
                checkpoint: n,
                drain: self.savepoints.drains(n),
            }),
            Step::Complete(meta) => out.push(Command::WriteMetadata(meta)),
        }
    }

    /// Starts the checkpoint waiting savepoints are taken from, unless one is under way.
    fn start_savepoint(&mut self, c: &mut Checkpoints, out: &mut Vec<Command<T>>) {
        if !self.savepoints.wants_checkpoint() {
            return;
        }
        let step = c.trigger_now(self.number, self.tasks.live().collect());
        if let Step::Trigger(n) = step {
            self.savepoints.started(n);
        }
        self.step(step, out);
    }

    /// After a checkpoint step: a failed savepoint checkpoint fails its savepoints (and the
    /// attempt, if it drained the pipeline); waiting savepoints start theirs.
    fn after_checkpoint(&mut self, c: &mut Checkpoints, out: &mut Vec<Command<T>>) {
        if let Some((n, why)) = c.last_failure.clone() {
            let (waiters, restart) = self.savepoints.failed(n, &why);
            if !waiters.is_empty() {
                out.push(Command::FailSavepoints {
                    waiters,
                    why: format!("the savepoint's checkpoint {n} failed: {why}"),
                });
            }
            if let Some(e) = restart {
                out.push(Command::Fail(e));
                return;
            }
        }
        self.start_savepoint(c, out);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use kappa_job::plan::CheckpointPlan;
    use kappa_job::{Overrides, plan_job};
    use kappa_proto::v1 as pb;

    use super::*;

    const REFERENCE: &str = include_str!("../../../examples/hourly-item-clicks.toml");

    /// The reference job at parallelism 2 on two taskmanagers, checkpointing.
    fn machine() -> (AttemptMachine<&'static str>, Checkpoints, tempfile::TempDir) {
        let graph = plan_job("job.toml", REFERENCE, &Overrides::default())
            .unwrap()
            .graph();
        let tasks = AttemptTasks::new(&graph, &["tm-a".into(), "tm-b".into()]).unwrap();
        let shape = JobShape {
            job_id: "j".into(),
            parallelism: 2,
            max_parallelism: 128,
            periodic: true,
        };
        let dir = tempfile::tempdir().unwrap();
        let location = kappa_state::Location::parse(dir.path().to_str().unwrap()).unwrap();
        let plan = CheckpointPlan {
            interval: Duration::from_secs(1),
            interval_during_catch_up: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
            min_pause: Duration::ZERO,
            retained: 1,
            tolerable_failures: Some(0),
        };
        let c = Checkpoints::new(location, plan, Vec::new());
        (AttemptMachine::new(1, tasks, shape), c, dir)
    }

    fn acks(n: u64) -> Vec<Input<&'static str>> {
        let expected: HashSet<(u32, u32)> = (0..2).flat_map(|i| [(0, i), (1, i)]).collect();
        expected
            .into_iter()
            .map(|(vertex, subtask)| {
                Input::Ack(pb::CheckpointAck {
                    job_id: "j".into(),
                    attempt: 1,
                    checkpoint_id: n,
                    vertex,
                    subtask,
                    ..Default::default()
                })
            })
            .collect()
    }

    fn names(commands: &[Command<&'static str>]) -> Vec<String> {
        commands
            .iter()
            .map(|c| match c {
                Command::Trigger { checkpoint, drain } => format!("trigger {checkpoint} {drain}"),
                Command::WriteMetadata(m) => format!("write metadata {}", m.checkpoint_id),
                Command::PointRecord(m) => format!("point record {}", m.checkpoint_id),
                Command::NotifyComplete(n) => format!("notify {n}"),
                Command::WriteSavepoints { waiters, .. } => format!("savepoints {waiters:?}"),
                Command::FailSavepoints { waiters, .. } => format!("fail savepoints {waiters:?}"),
                Command::DeleteObjects(_) => "delete".into(),
                Command::Fail(e) => format!("fail: {e}"),
            })
            .collect()
    }

    /// Runs checkpoint 1 (triggered for `input`) up to its metadata; returns that metadata.
    fn up_to_metadata(
        m: &mut AttemptMachine<&'static str>,
        c: &mut Checkpoints,
        input: Input<&'static str>,
        trigger: &str,
    ) -> Box<CheckpointMetadata> {
        assert_eq!(names(&m.on(input, Some(c))), [trigger]);
        let mut last = Vec::new();
        for a in acks(1) {
            last = m.on(a, Some(c));
        }
        let Some(Command::WriteMetadata(meta)) = last.pop() else {
            panic!("the last ack completes the checkpoint");
        };
        let next = m.on(
            Input::MetadataWritten {
                meta: meta.clone(),
                written: Ok("chk-1".into()),
            },
            Some(c),
        );
        assert_eq!(
            names(&next),
            ["point record 1"],
            "the record before any sink"
        );
        meta
    }

    #[test]
    fn sinks_hear_of_a_checkpoint_only_after_the_record_points_at_it() {
        let (mut m, mut c, _dir) = machine();
        let meta = up_to_metadata(&mut m, &mut c, Input::Tick, "trigger 1 false");
        let done = m.on(
            Input::RecordWritten {
                meta,
                written: Ok(()),
            },
            Some(&mut c),
        );
        assert_eq!(names(&done), ["notify 1", "delete"]);
    }

    #[test]
    fn a_checkpoint_completing_while_the_record_write_fails_commits_nothing() {
        let (mut m, mut c, _dir) = machine();
        let meta = up_to_metadata(
            &mut m,
            &mut c,
            Input::Savepoint {
                waiter: "stop",
                drain: true,
            },
            "trigger 1 true",
        );
        let failed = m.on(
            Input::RecordWritten {
                meta,
                written: Err("etcd is away".into()),
            },
            Some(&mut c),
        );
        let failed = names(&failed);
        assert!(
            !failed.iter().any(|c| c.starts_with("notify")),
            "{failed:?}"
        );
        assert_eq!(
            failed.len(),
            2,
            "the waiter is told, then one failure: {failed:?}"
        );
        assert_eq!(failed[0], "fail savepoints [\"stop\"]");
        assert!(
            failed[1].starts_with("fail: ") && failed[1].contains("etcd is away"),
            "no tolerable failures: the job fails: {failed:?}"
        );
        assert!(c.latest().is_none(), "taken back");
    }

    #[test]
    fn a_taskmanager_lost_during_a_savepoint_fails_the_attempt_and_nothing_else() {
        let (mut m, mut c, _dir) = machine();
        let started = m.on(
            Input::Savepoint {
                waiter: "sp",
                drain: false,
            },
            Some(&mut c),
        );
        assert_eq!(names(&started), ["trigger 1 false"]);
        let lost = m.on(
            Input::Lost {
                id: "tm-b".into(),
                address: "b:1".into(),
                reason: "its control stream broke".into(),
            },
            Some(&mut c),
        );
        assert_eq!(
            names(&lost),
            ["fail: taskmanager tm-b at b:1 was lost (its control stream broke)"]
        );
        // The attempt ends: the savepoint's waiter is told (the driver drops the machine).
        assert_eq!(m.savepoints.abandon(), ["sp"]);
    }

    #[test]
    fn savepoints_without_a_checkpoint_directory_are_refused() {
        let (mut m, _c, _dir) = machine();
        let out = m.on(
            Input::Savepoint {
                waiter: "sp",
                drain: false,
            },
            None,
        );
        assert_eq!(names(&out), ["fail savepoints [\"sp\"]"]);
        assert!(m.on(Input::Tick, None).is_empty());
    }
}
