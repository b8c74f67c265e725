//! Bounded channels between subtasks: a full channel blocks its senders (backpressure) so
//! memory stays bounded; senders give up when the job is cancelled.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError};

use crate::element::Element;
use crate::metrics::SubtaskMetrics;

/// An element tagged with the index of the upstream subtask that sent it.
pub type Tagged = (u32, Element);

/// How long a blocked sender or receiver waits before checking for cancellation.
const POLL: Duration = Duration::from_millis(100);

/// Returned when the job was cancelled or the receiving side is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// The sending ends of one upstream subtask towards every downstream subtask.
pub struct Outputs {
    index: u32,
    targets: Vec<Sender<Tagged>>,
    cancel: Arc<AtomicBool>,
    metrics: Arc<SubtaskMetrics>,
}

impl Outputs {
    /// Sends to one downstream subtask, waiting for room (recorded as backpressure).
    pub fn send(&self, target: usize, element: Element) -> Result<(), Closed> {
        let tx = &self.targets[target];
        let mut msg = match tx.try_send((self.index, element)) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(_)) => return Err(Closed),
            Err(TrySendError::Full(m)) => m,
        };
        let started = Instant::now();
        let result = loop {
            if self.cancel.load(Ordering::Relaxed) {
                break Err(Closed);
            }
            match tx.send_timeout(msg, POLL) {
                Ok(()) => break Ok(()),
                Err(SendTimeoutError::Timeout(m)) => msg = m,
                Err(SendTimeoutError::Disconnected(_)) => break Err(Closed),
            }
        };
        SubtaskMetrics::add(
            &self.metrics.backpressured_ns,
            started.elapsed().as_nanos() as usize,
        );
        result
    }

    /// Sends a control element to every downstream subtask.
    pub fn broadcast(&self, element: &Element) -> Result<(), Closed> {
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
    /// The next element, or `Closed` once the job is cancelled or every sender is gone.
    pub fn recv(&self) -> Result<Tagged, Closed> {
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Closed);
            }
            match self.rx.recv_timeout(POLL) {
                Ok(m) => {
                    self.metrics
                        .queued
                        .store(self.rx.len() as u64, Ordering::Relaxed);
                    return Ok(m);
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err(Closed),
            }
        }
    }
}

/// Connects `upstream` subtasks all-to-all with `downstream` subtasks through channels of
/// `capacity` elements each.
pub fn all_to_all(
    upstream: &[Arc<SubtaskMetrics>],
    downstream: &[Arc<SubtaskMetrics>],
    capacity: usize,
    cancel: &Arc<AtomicBool>,
) -> (Vec<Outputs>, Vec<Inputs>) {
    let (txs, inputs): (Vec<_>, Vec<_>) = downstream
        .iter()
        .map(|m| {
            let (tx, rx) = crossbeam_channel::bounded(capacity);
            let inputs = Inputs {
                upstreams: upstream.len() as u32,
                rx,
                cancel: Arc::clone(cancel),
                metrics: Arc::clone(m),
            };
            (tx, inputs)
        })
        .unzip();
    let outputs = upstream
        .iter()
        .enumerate()
        .map(|(i, m)| Outputs {
            index: i as u32,
            targets: txs.clone(),
            cancel: Arc::clone(cancel),
            metrics: Arc::clone(m),
        })
        .collect();
    (outputs, inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_channel_blocks_until_cancelled() {
        let cancel = Arc::new(AtomicBool::new(false));
        let m: Vec<Arc<SubtaskMetrics>> = vec![Arc::default()];
        let (outs, ins) = all_to_all(&m, &m, 1, &cancel);
        outs[0].send(0, Element::End).unwrap();
        let c = Arc::clone(&cancel);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            c.store(true, Ordering::Relaxed);
        });
        assert_eq!(outs[0].send(0, Element::End), Err(Closed));
        t.join().unwrap();
        assert!(SubtaskMetrics::get(&m[0].backpressured_ns) > 0);
        assert_eq!(ins[0].recv().unwrap_err(), Closed);
    }

    #[test]
    fn elements_are_tagged_with_their_upstream() {
        let cancel = Arc::new(AtomicBool::new(false));
        let up: Vec<Arc<SubtaskMetrics>> = vec![Arc::default(), Arc::default()];
        let down: Vec<Arc<SubtaskMetrics>> = vec![Arc::default()];
        let (outs, ins) = all_to_all(&up, &down, 4, &cancel);
        outs[1].send(0, Element::Watermark(5)).unwrap();
        let (from, e) = ins[0].recv().unwrap();
        assert_eq!(from, 1);
        assert!(matches!(e, Element::Watermark(5)));
    }
}
