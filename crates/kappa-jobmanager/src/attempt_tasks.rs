//! The subtasks of one attempt as the jobmanager knows them — where each runs and its last
//! state — and the decisions on the reports and losses that arrive, in whatever order they
//! arrive. Pure: no I/O, so the orderings processes rarely produce are unit-tested.

use std::collections::HashMap;

use kappa_job::PhysicalGraph;
use kappa_proto::v1::{TaskState, TaskStateReport};
use kappa_runtime::TaskError;

/// Whether a subtask state is an end.
pub fn terminal(s: TaskState) -> bool {
    matches!(
        s,
        TaskState::Finished | TaskState::Canceled | TaskState::Failed
    )
}

/// (vertex, subtask) → (taskmanager, last state), and the vertices' names for messages.
pub struct AttemptTasks {
    tasks: HashMap<(u32, u32), (String, TaskState)>,
    names: HashMap<u32, String>,
}

impl AttemptTasks {
    /// Every subtask of `graph`, subtask i of each vertex in slot i of `placement`; None if
    /// the placement has too few slots.
    pub fn new(graph: &PhysicalGraph, placement: &[String]) -> Option<Self> {
        let mut tasks = HashMap::new();
        for v in &graph.vertices {
            for i in 0..v.parallelism {
                let tm = placement.get(i as usize)?;
                tasks.insert((v.id, i), (tm.clone(), TaskState::Unspecified));
            }
        }
        let names = graph
            .vertices
            .iter()
            .map(|v| (v.id, v.name.clone()))
            .collect();
        Some(Self { tasks, names })
    }

    /// A subtask reported its state; the error a FAILED report is. A report about a subtask
    /// the attempt does not have, or from a taskmanager it does not run on, changes nothing;
    /// an ended subtask stays ended (a late RUNNING cannot revive it).
    pub fn on_report(&mut self, r: &TaskStateReport) -> Option<TaskError> {
        let state = TaskState::try_from(r.state).unwrap_or(TaskState::Unspecified);
        let t = self.tasks.get_mut(&(r.vertex, r.subtask))?;
        if t.0 != r.taskmanager_id || terminal(t.1) {
            return None;
        }
        t.1 = state;
        (state == TaskState::Failed).then(|| {
            let what = self
                .names
                .get(&r.vertex)
                .map_or_else(|| format!("vertex {}", r.vertex), |n| format!("`{n}`"));
            let msg = format!(
                "{what} subtask {} on taskmanager {}: {}",
                r.subtask, r.taskmanager_id, r.error
            );
            match r.retriable {
                true => TaskError::Io(msg),
                false => TaskError::Data(msg),
            }
        })
    }

    /// Taskmanager `id` is gone: its subtasks that had not ended count as stopped. The error
    /// if it ran any of them.
    pub fn on_lost(&mut self, id: &str, address: &str, reason: &str) -> Option<TaskError> {
        self.stop_on(id)
            .then(|| TaskError::Io(format!("taskmanager {id} at {address} was lost ({reason})")))
    }

    /// Taskmanager `id` does not answer: its subtasks count as stopped (it cancels them
    /// itself when it finds the jobmanager gone or registers again). Whether it ran any.
    pub fn stop_on(&mut self, id: &str) -> bool {
        let mut affected = false;
        for t in self
            .tasks
            .values_mut()
            .filter(|t| t.0 == id && !terminal(t.1))
        {
            t.1 = TaskState::Canceled;
            affected = true;
        }
        affected
    }

    /// The subtasks that have not ended.
    pub fn live(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.tasks
            .iter()
            .filter(|(_, t)| !terminal(t.1))
            .map(|(k, _)| *k)
    }

    pub fn all_terminal(&self) -> bool {
        self.tasks.values().all(|t| terminal(t.1))
    }

    /// Every subtask finished its input (a bounded job is done).
    pub fn all_finished(&self) -> bool {
        self.tasks.values().all(|t| t.1 == TaskState::Finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_job::{Overrides, plan_job};

    const REFERENCE: &str = include_str!("../../../examples/hourly-item-clicks.toml");

    fn tasks() -> AttemptTasks {
        let graph = plan_job("job.toml", REFERENCE, &Overrides::default())
            .unwrap()
            .graph();
        AttemptTasks::new(&graph, &["tm-a".into(), "tm-b".into()]).unwrap()
    }

    fn report(vertex: u32, subtask: u32, tm: &str, state: TaskState) -> TaskStateReport {
        TaskStateReport {
            taskmanager_id: tm.into(),
            vertex,
            subtask,
            state: state as i32,
            error: "disk full".into(),
            retriable: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_placement_with_too_few_slots_is_refused() {
        let graph = plan_job("job.toml", REFERENCE, &Overrides::default())
            .unwrap()
            .graph();
        assert!(AttemptTasks::new(&graph, &["tm-a".into()]).is_none());
    }

    #[test]
    fn a_failure_names_the_vertex_and_an_ended_subtask_stays_ended() {
        let mut t = tasks();
        assert!(
            t.on_report(&report(0, 0, "tm-a", TaskState::Running))
                .is_none()
        );
        let e = t
            .on_report(&report(1, 1, "tm-b", TaskState::Failed))
            .expect("a failure");
        assert!(e.is_retriable());
        assert_eq!(
            e.to_string(),
            "`window` subtask 1 on taskmanager tm-b: disk full"
        );
        // A RUNNING overtaken by the FAILED arrives late: still failed.
        assert!(
            t.on_report(&report(1, 1, "tm-b", TaskState::Running))
                .is_none()
        );
        assert!(!t.live().any(|k| k == (1, 1)));
    }

    #[test]
    fn reports_from_elsewhere_or_about_unknown_subtasks_change_nothing() {
        let mut t = tasks();
        assert!(
            t.on_report(&report(1, 1, "tm-a", TaskState::Failed))
                .is_none()
        );
        assert!(
            t.on_report(&report(9, 0, "tm-a", TaskState::Failed))
                .is_none()
        );
        assert_eq!(t.live().count(), 4);
    }

    #[test]
    fn a_lost_taskmanager_stops_its_subtasks_once() {
        let mut t = tasks();
        for (v, s, tm) in [(0, 0, "tm-a"), (1, 0, "tm-a")] {
            t.on_report(&report(v, s, tm, TaskState::Finished));
        }
        assert!(
            t.on_lost("tm-a", "a:1", "no heartbeat").is_none(),
            "its subtasks had finished: nothing lost"
        );
        let e = t
            .on_lost("tm-b", "b:1", "its control stream broke")
            .unwrap();
        assert!(e.to_string().contains("its control stream broke"), "{e}");
        assert!(t.all_terminal());
        assert!(
            !t.all_finished(),
            "tm-b's subtasks were stopped, not finished"
        );
        // A report of a subtask of the lost taskmanager that arrives after its loss.
        assert!(
            t.on_report(&report(0, 1, "tm-b", TaskState::Failed))
                .is_none()
        );
        assert!(t.on_lost("tm-b", "b:1", "again").is_none());
    }
}
