//! The savepoints asked of a running attempt, as pure decision code: which checkpoint each is
//! taken from, whether that checkpoint drains the pipeline (stop --drain), and who is told
//! what when it completes, fails, or the attempt ends first. A request that arrives while a
//! savepoint's checkpoint is under way waits for the next one (it may want a drain the
//! running one does not do).

use kappa_runtime::TaskError;

/// Waiters of type `T` (the driver's reply channels).
pub struct SavepointQueue<T> {
    /// Asked for, their checkpoint not started yet; with whether each drains.
    waiting: Vec<(T, bool)>,
    /// The checkpoint under way for savepoints, its waiters, whether it drains.
    taking: Option<(u64, Vec<T>, bool)>,
}

impl<T> Default for SavepointQueue<T> {
    fn default() -> Self {
        Self {
            waiting: Vec::new(),
            taking: None,
        }
    }
}

impl<T> SavepointQueue<T> {
    pub fn request(&mut self, waiter: T, drain: bool) {
        self.waiting.push((waiter, drain));
    }

    /// Whether a checkpoint should start now for waiting savepoints.
    pub fn wants_checkpoint(&self) -> bool {
        !self.waiting.is_empty() && self.taking.is_none()
    }

    /// Checkpoint `n` started for the waiting savepoints.
    pub fn started(&mut self, n: u64) {
        let drain = self.waiting.iter().any(|(_, d)| *d);
        let waiters = self.waiting.drain(..).map(|(w, _)| w).collect();
        self.taking = Some((n, waiters, drain));
    }

    /// Whether checkpoint `n` drains the pipeline (sources send a final watermark, then stop).
    pub fn drains(&self, n: u64) -> bool {
        matches!(self.taking, Some((id, _, true)) if id == n)
    }

    /// Checkpoint `n` completed: the waiters to write its savepoints for.
    pub fn completed(&mut self, n: u64) -> Vec<T> {
        match self.taking.take() {
            Some((id, waiters, _)) if id == n => waiters,
            other => {
                self.taking = other;
                Vec::new()
            }
        }
    }

    /// Checkpoint `n` failed with `why`: the waiters to tell, and, if it drained, the error
    /// that restarts the attempt (its sources stopped reading for a stop that will not come).
    pub fn failed(&mut self, n: u64, why: &str) -> (Vec<T>, Option<TaskError>) {
        match self.taking.take() {
            Some((id, waiters, drain)) if id == n => {
                let restart = drain.then(|| {
                    TaskError::Io(format!(
                        "the drained savepoint (checkpoint {n}) failed: {why}"
                    ))
                });
                (waiters, restart)
            }
            other => {
                self.taking = other;
                (Vec::new(), None)
            }
        }
    }

    /// The attempt ended: every waiter, to be told no savepoint comes.
    pub fn abandon(&mut self) -> Vec<T> {
        let mut all: Vec<T> = self.taking.take().map(|t| t.1).unwrap_or_default();
        all.extend(self.waiting.drain(..).map(|(w, _)| w));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_get_the_savepoint_of_the_checkpoint_started_for_them() {
        let mut q = SavepointQueue::default();
        assert!(!q.wants_checkpoint());
        q.request("a", false);
        assert!(q.wants_checkpoint());
        q.started(7);
        assert!(!q.drains(7));
        // Asked while 7 is under way: waits for the next, which drains.
        q.request("b", true);
        assert!(!q.wants_checkpoint(), "one at a time");
        assert!(
            q.completed(6).is_empty(),
            "a periodic checkpoint is not theirs"
        );
        assert_eq!(q.completed(7), ["a"]);
        assert!(q.wants_checkpoint());
        q.started(8);
        assert!(q.drains(8));
        assert_eq!(q.completed(8), ["b"]);
        assert!(!q.wants_checkpoint());
    }

    #[test]
    fn a_failed_drained_savepoint_restarts_the_attempt() {
        let mut q = SavepointQueue::default();
        q.request("stop", true);
        q.started(3);
        let (told, restart) = q.failed(2, "older");
        assert!(told.is_empty() && restart.is_none(), "not theirs");
        let (told, restart) = q.failed(3, "upload failed");
        assert_eq!(told, ["stop"]);
        let e = restart.expect("a drained pipeline must restart");
        assert!(
            e.is_retriable() && e.to_string().contains("upload failed"),
            "{e}"
        );
        q.request("again", false);
        q.started(4);
        let (told, restart) = q.failed(4, "x");
        assert_eq!(told, ["again"]);
        assert!(
            restart.is_none(),
            "a savepoint that did not drain needs no restart"
        );
    }

    #[test]
    fn a_taskmanager_lost_during_a_savepoint_ends_the_attempt_and_tells_every_waiter() {
        let mut q = SavepointQueue::default();
        q.request("under way", false);
        q.started(5);
        q.request("waiting", true);
        // The attempt fails (its taskmanager was lost) before checkpoint 5 completes.
        let mut told = q.abandon();
        told.sort();
        assert_eq!(told, ["under way", "waiting"]);
        assert!(q.completed(5).is_empty(), "a late completion finds nobody");
        assert!(!q.wants_checkpoint());
    }
}
