//! Barrier alignment for a subtask with several inputs: once barrier n arrived on an input,
//! that input's later elements are held back until barrier n arrived on every input (or the
//! input ended); then the checkpoint is taken and the held elements are replayed in order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::channel::{Closed, Inputs};
use crate::element::Element;

/// What the aligner hands to the task next.
#[derive(Debug)]
pub enum Aligned {
    /// An element to process, from input `0`.
    Element(u32, Element),
    /// Barrier n arrived on every live input, after waiting this long since the first one:
    /// snapshot now, then forward the barrier.
    Checkpoint(u64, Duration),
}

/// Aligns barriers of `inputs` inputs.
pub struct BarrierAligner {
    /// The checkpoint being aligned, if any, and when its first barrier arrived.
    current: Option<u64>,
    started: Option<Instant>,
    arrived: Vec<bool>,
    ended: Vec<bool>,
    held: Vec<VecDeque<Element>>,
    replay: VecDeque<(u32, Element)>,
}

impl BarrierAligner {
    pub fn new(inputs: u32) -> Self {
        let n = inputs as usize;
        Self {
            current: None,
            started: None,
            arrived: vec![false; n],
            ended: vec![false; n],
            held: vec![VecDeque::new(); n],
            replay: VecDeque::new(),
        }
    }

    /// Elements held back while aligning (a gauge of alignment cost).
    pub fn held(&self) -> usize {
        self.held.iter().map(VecDeque::len).sum()
    }

    fn complete(&self) -> bool {
        self.arrived.iter().zip(&self.ended).all(|(a, e)| *a || *e)
    }

    /// Feeds one element from input `from`; returns what to hand on now, if anything.
    pub fn push(&mut self, from: u32, element: Element) -> Option<Aligned> {
        let i = from as usize;
        if self.current.is_some() && self.arrived[i] {
            self.held[i].push_back(element);
            return None;
        }
        match element {
            Element::Barrier(n) => {
                match self.current {
                    None => {
                        self.current = Some(n);
                        self.started = Some(Instant::now());
                    }
                    Some(c) if c == n => {}
                    // A newer barrier while aligning an older one: the older checkpoint was
                    // abandoned upstream; align the newer one instead.
                    Some(_) => {
                        self.release_held();
                        self.arrived.iter_mut().for_each(|a| *a = false);
                        self.current = Some(n);
                    }
                }
                self.arrived[i] = true;
                self.finish_if_complete()
            }
            Element::End => {
                self.ended[i] = true;
                // The end passes on; an ended input no longer holds up alignment.
                self.replay.push_back((from, Element::End));
                self.finish_if_complete()
            }
            other => Some(Aligned::Element(from, other)),
        }
    }

    fn release_held(&mut self) {
        for (i, q) in self.held.iter_mut().enumerate() {
            self.replay.extend(q.drain(..).map(|e| (i as u32, e)));
        }
    }

    fn finish_if_complete(&mut self) -> Option<Aligned> {
        let n = self.current?;
        if !self.complete() {
            return None;
        }
        self.current = None;
        let waited = self.started.take().map_or(Duration::ZERO, |t| t.elapsed());
        self.arrived.iter_mut().for_each(|a| *a = false);
        self.release_held();
        Some(Aligned::Checkpoint(n, waited))
    }

    /// The next thing to hand on: replayed elements first, then the inputs; `None` when
    /// nothing arrived for a short while.
    pub fn next(&mut self, inputs: &Inputs) -> Result<Option<Aligned>, Closed> {
        loop {
            if let Some((from, e)) = self.replay.pop_front() {
                match e {
                    Element::End => {
                        // An end held back during an alignment counts from its replay on.
                        self.ended[from as usize] = true;
                        return Ok(Some(Aligned::Element(from, Element::End)));
                    }
                    e => {
                        if let Some(a) = self.push(from, e) {
                            return Ok(Some(a));
                        }
                        continue;
                    }
                }
            }
            let Some((from, e)) = inputs.recv()? else {
                return Ok(None);
            };
            if let Some(a) = self.push(from, e) {
                return Ok(Some(a));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Origin;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    fn feed(
        a: &mut BarrierAligner,
        tx: &crossbeam_channel::Sender<(u32, Element)>,
        ins: &Inputs,
        items: Vec<(u32, Element)>,
    ) -> Vec<String> {
        for it in items {
            tx.send(it).unwrap();
        }
        let mut out = Vec::new();
        while let Some(x) = a.next(ins).unwrap() {
            out.push(match x {
                Aligned::Element(i, Element::Watermark(w, _)) => format!("{i}:w{w}"),
                Aligned::Element(i, Element::End) => format!("{i}:end"),
                Aligned::Element(i, e) => format!("{i}:{e:?}"),
                Aligned::Checkpoint(n, _) => format!("chk{n}"),
            });
        }
        out
    }

    #[test]
    fn inputs_past_the_barrier_wait_for_the_others() {
        let cancel = Arc::new(AtomicBool::new(false));
        let (ins, tx) = Inputs::new(2, 64, cancel, Arc::default());
        let mut a = BarrierAligner::new(2);
        let out = feed(
            &mut a,
            &tx,
            &ins,
            vec![
                (0, Element::Watermark(1, Origin::UNKNOWN)),
                (0, Element::Barrier(7)),
                (0, Element::Watermark(2, Origin::UNKNOWN)),
                (1, Element::Watermark(3, Origin::UNKNOWN)),
                (1, Element::Barrier(7)),
                (1, Element::Watermark(4, Origin::UNKNOWN)),
            ],
        );
        assert_eq!(out, ["0:w1", "1:w3", "chk7", "0:w2", "1:w4"]);
    }

    #[test]
    fn an_ended_input_does_not_hold_up_alignment() {
        let cancel = Arc::new(AtomicBool::new(false));
        let (ins, tx) = Inputs::new(2, 64, cancel, Arc::default());
        let mut a = BarrierAligner::new(2);
        let out = feed(
            &mut a,
            &tx,
            &ins,
            vec![
                (0, Element::Barrier(1)),
                (0, Element::Watermark(5, Origin::UNKNOWN)),
                (1, Element::End),
            ],
        );
        assert_eq!(out, ["chk1", "1:end", "0:w5"]);
        let out = feed(&mut a, &tx, &ins, vec![(0, Element::Barrier(2))]);
        assert_eq!(out, ["chk2"]);
    }

    #[test]
    fn an_end_held_back_during_an_alignment_counts_once_replayed() {
        let cancel = Arc::new(AtomicBool::new(false));
        let (ins, tx) = Inputs::new(2, 64, cancel, Arc::default());
        let mut a = BarrierAligner::new(2);
        // Input 0 passes barrier 1 and ends while input 1 is still before barrier 1.
        let out = feed(
            &mut a,
            &tx,
            &ins,
            vec![
                (0, Element::Barrier(1)),
                (0, Element::End),
                (1, Element::Barrier(1)),
            ],
        );
        assert_eq!(out, ["chk1", "0:end"]);
        // The next checkpoint needs only the input that is left.
        let out = feed(
            &mut a,
            &tx,
            &ins,
            vec![
                (1, Element::Barrier(2)),
                (1, Element::Watermark(9, Origin::UNKNOWN)),
            ],
        );
        assert_eq!(out, ["chk2", "1:w9"]);
    }
}
