//! The aggregates that keep one row's value per window group: `first_value(x)` and
//! `last_value(x)`, x of the row with the smallest (largest) event time, ties going to the
//! first (last) row to arrive; and `min(x)` and `max(x)` of strings, the least (greatest)
//! non-null value by its UTF-8 bytes (the order of code points, Arrow's order of strings).
//! Arrival is a sequence number of the operator, saved with each pick and continued after a
//! restore, so sessions that join, before or after a restore, keep the right row.

use super::saved::{CorruptState, Reader};
use super::values::{ValueCodec, ValueError};
use arrow::array::ArrayRef;

/// The row a group keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Picked {
    time: i64,
    /// Arrival order.
    seq: u64,
    /// x in its encoding ([`super::values`]); None: null.
    value: Option<Box<[u8]>>,
}

impl Picked {
    fn order(&self) -> (i64, u64) {
        (self.time, self.seq)
    }
}

/// Which row a group keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    First,
    Last,
    /// The least non-null value.
    Min,
    /// The greatest non-null value.
    Max,
}

/// The picked values of every window group of one aggregate.
#[derive(Debug)]
pub struct Picks {
    pick: Pick,
    slots: Vec<Option<Picked>>,
    /// The arrival number of the next row.
    next_seq: u64,
}

impl Picks {
    pub fn new(pick: Pick) -> Self {
        Self {
            pick,
            slots: Vec::new(),
            next_seq: 0,
        }
    }

    pub fn ensure(&mut self, len: usize) {
        if self.slots.len() < len {
            self.slots.resize(len, None);
        }
    }

    pub fn reset(&mut self, g: usize) {
        self.slots[g] = None;
    }

    /// Whether a row arrived `seq`-th at `time` with `value` replaces what group `g` keeps.
    fn beats(&self, g: usize, (time, seq): (i64, u64), value: Option<&[u8]>) -> bool {
        self.slots[g].as_ref().is_none_or(|kept| match self.pick {
            Pick::First => (time, seq) < kept.order(),
            Pick::Last => (time, seq) > kept.order(),
            Pick::Min => value < kept.value.as_deref(),
            Pick::Max => value > kept.value.as_deref(),
        })
    }

    /// A row at event time `time` with `value` (None: null) arrives in group `g`.
    pub fn update(&mut self, g: usize, value: Option<&[u8]>, time: i64) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        if value.is_none() && matches!(self.pick, Pick::Min | Pick::Max) {
            return;
        }
        if self.beats(g, (time, seq), value) {
            self.slots[g] = Some(Picked {
                time,
                seq,
                value: value.map(Into::into),
            });
        }
    }

    /// Folds group `src` into `dst` (`src` is released after).
    pub fn merge(&mut self, dst: usize, src: usize) {
        if let Some(p) = self.slots[src].take()
            && self.beats(dst, p.order(), p.value.as_deref())
        {
            self.slots[dst] = Some(p);
        }
    }

    /// Estimated heap bytes of group `g`'s value.
    pub fn heap(&self, g: usize) -> u64 {
        self.slots[g]
            .as_ref()
            .and_then(|p| p.value.as_ref())
            .map_or(0, |v| v.len() as u64)
    }

    /// Appends group `g`'s pick: a tag (0 none, 1 a null value, 2 a value), then the event
    /// time, the arrival number and the value's bytes.
    pub fn save(&self, g: usize, out: &mut Vec<u8>) {
        let Some(p) = &self.slots[g] else {
            out.push(0);
            return;
        };
        out.push(if p.value.is_some() { 2 } else { 1 });
        out.extend_from_slice(&p.time.to_le_bytes());
        out.extend_from_slice(&p.seq.to_le_bytes());
        if let Some(v) = &p.value {
            out.extend_from_slice(v);
        }
    }

    /// Sets group `g` from all the bytes of one [`Picks::save`], the value checked.
    pub fn load(
        &mut self,
        g: usize,
        mut bytes: Reader<'_>,
        codec: &ValueCodec,
    ) -> Result<(), CorruptState> {
        let tag = bytes.u8("picked value tag")?;
        self.slots[g] = match tag {
            0 => None,
            1 | 2 => {
                let time = bytes.i64("picked event time")?;
                let seq = bytes.u64("picked arrival")?;
                let value = if tag == 2 {
                    let v = bytes.take(bytes.remaining(), "picked value")?;
                    codec.check(v)?;
                    Some(v.into())
                } else {
                    None
                };
                self.next_seq = self.next_seq.max(seq.saturating_add(1));
                Some(Picked { time, seq, value })
            }
            tag => {
                return Err(CorruptState::Invalid {
                    what: "picked value",
                    detail: format!("unknown tag {tag}"),
                });
            }
        };
        bytes.finish()
    }

    /// The values of the given groups (null for a group without rows).
    pub fn output(&self, groups: &[u32], codec: &ValueCodec) -> Result<ArrayRef, ValueError> {
        codec.decode(groups.iter().map(|&g| {
            self.slots[g as usize]
                .as_ref()
                .and_then(|p| p.value.as_deref())
        }))
    }
}
