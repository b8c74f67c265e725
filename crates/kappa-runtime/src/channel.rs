//! Channels between subtasks: bounded local channels whose full buffers block their senders
//! (backpressure), and remote targets in other taskmanagers behind a flow-controlled trait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError};

use crate::element::Element;
use crate::error::TaskError;
use crate::metrics::SubtaskMetrics;

/// An element tagged with the index of the upstream subtask that sent it.
pub type Tagged = (u32, Element);

/// How long a blocked sender or receiver waits before checking for cancellation.
const POLL: Duration = Duration::from_millis(100);

/// Returned when the job was cancelled or the receiving side is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// Why a send did not happen.
#[derive(Debug, Clone)]
pub enum SendError {
    /// The job is being cancelled, or a local downstream already stopped (its error is the cause).
    Closed,
    /// A remote downstream cannot be reached.
    Failed(TaskError),
}

impl From<Closed> for SendError {
    fn from(_: Closed) -> Self {
        SendError::Closed
    }
}

/// A downstream subtask in another taskmanager.
pub trait RemoteTarget: Send {
    /// Sends one element in order, waiting for flow-control credit (time the implementation
    /// records as backpressure with [`SubtaskMetrics::wait_started`] and `wait_ended`).
    fn send(&mut self, element: Element) -> Result<(), SendError>;
}

/// Where one upstream subtask sends to one downstream subtask.
pub enum Target {
    /// Same taskmanager: the downstream's input, no serialisation; elements are tagged with
    /// `channel`, the index the downstream knows this upstream by.
    Local {
        tx: Sender<Tagged>,
        channel: u32,
    },
    Remote(Box<dyn RemoteTarget>),
}

/// Puts `msg` into a local channel, waiting for room until cancelled; the wait counts as
/// backpressure of `waiter`, when given.
pub fn forward(
    tx: &Sender<Tagged>,
    msg: Tagged,
    cancel: &AtomicBool,
    waiter: Option<&SubtaskMetrics>,
) -> Result<(), Closed> {
    let mut msg = match tx.try_send(msg) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Disconnected(_)) => return Err(Closed),
        Err(TrySendError::Full(m)) => m,
    };
    if let Some(w) = waiter {
        w.wait_started();
    }
    let result = loop {
        if cancel.load(Ordering::Relaxed) {
            break Err(Closed);
        }
        match tx.send_timeout(msg, POLL) {
            Ok(()) => break Ok(()),
            Err(SendTimeoutError::Timeout(m)) => msg = m,
            Err(SendTimeoutError::Disconnected(_)) => break Err(Closed),
        }
    };
    if let Some(w) = waiter {
        w.wait_ended();
    }
    result
}

/// The sending ends of one upstream subtask towards the downstream subtasks of one edge.
pub struct Outputs {
    targets: Vec<Target>,
    cancel: Arc<AtomicBool>,
    metrics: Arc<SubtaskMetrics>,
}

impl Outputs {
    pub fn new(
        targets: Vec<Target>,
        cancel: Arc<AtomicBool>,
        metrics: Arc<SubtaskMetrics>,
    ) -> Self {
        Self {
            targets,
            cancel,
            metrics,
        }
    }

    /// Sends to one downstream subtask, waiting for room (recorded as backpressure).
    pub fn send(&mut self, target: usize, element: Element) -> Result<(), SendError> {
        match &mut self.targets[target] {
            Target::Local { tx, channel } => Ok(forward(
                tx,
                (*channel, element),
                &self.cancel,
                Some(&self.metrics),
            )?),
            Target::Remote(r) => r.send(element),
        }
    }

    /// Sends a control element to every downstream subtask.
    pub fn broadcast(&mut self, element: &Element) -> Result<(), SendError> {
        (0..self.targets.len()).try_for_each(|t| self.send(t, element.clone()))
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// The receiving end of one downstream subtask, fed by every upstream subtask.
pub struct Inputs {
    pub upstreams: u32,
    rx: Receiver<Tagged>,
    cancel: Arc<AtomicBool>,
    metrics: Arc<SubtaskMetrics>,
}

impl Inputs {
    /// A subtask input of `capacity` elements for `upstreams` senders; the sender is cloned
    /// for local upstreams and for the receivers of remote ones.
    pub fn new(
        upstreams: u32,
        capacity: usize,
        cancel: Arc<AtomicBool>,
        metrics: Arc<SubtaskMetrics>,
    ) -> (Self, Sender<Tagged>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        (
            Self {
                upstreams,
                rx,
                cancel,
                metrics,
            },
            tx,
        )
    }

    /// The next element, or `Closed` once the job is cancelled or every sender is gone.
    /// The next element, `None` if nothing arrived within a short while (so the caller can
    /// do periodic work), or `Closed` once the job is cancelled or every sender is gone.
    pub fn recv(&self) -> Result<Option<Tagged>, Closed> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Closed);
        }
        match self.rx.recv_timeout(POLL) {
            Ok(m) => {
                self.metrics
                    .queued
                    .store(self.rx.len() as u64, Ordering::Relaxed);
                Ok(Some(m))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(Closed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Origin;

    fn metrics() -> Arc<SubtaskMetrics> {
        Arc::default()
    }

    #[test]
    fn full_channel_blocks_until_cancelled() {
        let cancel = Arc::new(AtomicBool::new(false));
        let m = metrics();
        let (ins, tx) = Inputs::new(1, 1, Arc::clone(&cancel), metrics());
        let mut outs = Outputs::new(
            vec![Target::Local { tx, channel: 0 }],
            Arc::clone(&cancel),
            Arc::clone(&m),
        );
        outs.send(0, Element::End).unwrap();
        let c = Arc::clone(&cancel);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            c.store(true, Ordering::Relaxed);
        });
        assert!(matches!(outs.send(0, Element::End), Err(SendError::Closed)));
        t.join().unwrap();
        assert!(
            SubtaskMetrics::get(&m.backpressured_ns) >= 100_000_000,
            "a wait counts until it ends"
        );
        assert_eq!(
            m.backpressured_total_ns(),
            SubtaskMetrics::get(&m.backpressured_ns),
            "no wait goes on"
        );
        assert_eq!(ins.recv().unwrap_err(), Closed);
    }

    #[test]
    fn waiting_for_room_counts_as_backpressure() {
        let cancel = Arc::new(AtomicBool::new(false));
        let m = metrics();
        let (ins, tx) = Inputs::new(2, 1, Arc::clone(&cancel), metrics());
        let mut outs = Outputs::new(
            vec![Target::Local { tx, channel: 1 }],
            Arc::clone(&cancel),
            Arc::clone(&m),
        );
        outs.send(0, Element::Watermark(5, Origin(7))).unwrap();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(120));
            let first = ins.recv().unwrap().unwrap();
            let second = ins.recv().unwrap().unwrap();
            (first, second)
        });
        outs.send(0, Element::End).unwrap();
        let ((from, e), _) = reader.join().unwrap();
        assert_eq!(from, 1, "tagged with the upstream index");
        assert!(matches!(e, Element::Watermark(5, Origin(7))));
        assert!(SubtaskMetrics::get(&m.backpressured_ns) >= 50_000_000);
    }
}
