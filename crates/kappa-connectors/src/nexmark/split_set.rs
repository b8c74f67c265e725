//! Several splits of one split count read as one stream in event-number order: the unit a
//! source subtask reads. Merging by the smallest next event number keeps the stream's event
//! times in order even when the splits' positions differ (after a restore at another
//! parallelism), so one watermark per subtask is exact.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use super::config::{NexmarkConfig, NexmarkError, Split};

/// The splits one reader owns, each with its next event number.
#[derive(Debug, Clone)]
pub struct SplitSet {
    /// The split count all splits share (None: no splits).
    count: Option<u32>,
    /// Next event numbers of the splits with more to emit, smallest first.
    next: BinaryHeap<Reverse<u64>>,
    /// Positions of the splits at or past the end of a bounded sequence.
    done: Vec<u64>,
    end: Option<u64>,
}

impl SplitSet {
    /// The splits at their positions (next event numbers); all of one split count, each once,
    /// each position in its split.
    pub fn new(
        config: &NexmarkConfig,
        splits: impl IntoIterator<Item = (Split, u64)>,
    ) -> Result<Self, NexmarkError> {
        let mut set = SplitSet {
            count: None,
            next: BinaryHeap::new(),
            done: Vec::new(),
            end: config.events,
        };
        let mut seen = BTreeSet::new();
        for (split, position) in splits {
            split.check(position)?;
            let count = *set.count.get_or_insert(split.count());
            if count != split.count() {
                return Err(NexmarkError::MixedSplitCounts {
                    first: count,
                    other: split.count(),
                });
            }
            if !seen.insert(split.index()) {
                return Err(NexmarkError::DuplicateSplit {
                    index: split.index(),
                    count,
                });
            }
            set.push(position);
        }
        Ok(set)
    }

    fn push(&mut self, position: u64) {
        match self.end.is_some_and(|end| position >= end) {
            true => self.done.push(position),
            false => self.next.push(Reverse(position)),
        }
    }

    /// The next event number to emit, None when every split is finished.
    pub fn peek(&self) -> Option<u64> {
        self.next.peek().map(|r| r.0)
    }

    /// Moves past the event number [`SplitSet::peek`] gave.
    pub fn advance(&mut self) {
        if let (Some(Reverse(n)), Some(count)) = (self.next.pop(), self.count) {
            self.push(n.saturating_add(count.into()));
        }
    }

    /// The smallest next event number of the splits with more to emit, else of the finished
    /// ones (0 for no splits).
    pub fn next_position(&self) -> u64 {
        self.peek()
            .or_else(|| self.done.iter().min().copied())
            .unwrap_or(0)
    }

    /// The split count its splits share (None: it has no splits).
    pub fn count(&self) -> Option<u32> {
        self.count
    }

    /// Number of splits, finished ones included.
    pub fn len(&self) -> usize {
        self.next.len() + self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every split with its next event number, by split index: what a checkpoint records.
    pub fn positions(&self) -> Vec<(Split, u64)> {
        let Some(count) = self.count else {
            return Vec::new();
        };
        let mut out: Vec<(Split, u64)> = self
            .next
            .iter()
            .map(|r| r.0)
            .chain(self.done.iter().copied())
            .filter_map(|p| {
                let index = u32::try_from(p % u64::from(count)).ok()?;
                Split::new(index, count).ok().map(|s| (s, p))
            })
            .collect();
        out.sort_by_key(|(s, _)| s.index());
        out
    }
}
