//! `count(DISTINCT x)`: the set of distinct non-null values of each window group, as their
//! canonical bytes ([`super::values`]); sessions that join merge their sets. A set's bytes
//! are estimated as it grows, so the window operator charges them to the job's state budget.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use hashbrown::HashSet;

use super::saved::{CorruptState, Reader, write_blob};
use super::values::ValueCodec;

/// Estimated heap bytes of one value in a set besides its own bytes: the boxed slice's
/// pointer and length, the table's control byte and spare capacity.
const VALUE_OVERHEAD: u64 = 32;

/// The distinct values of every window group of one aggregate.
#[derive(Debug, Default)]
pub struct DistinctSets {
    sets: Vec<HashSet<Box<[u8]>>>,
    /// Estimated heap bytes of each set.
    bytes: Vec<u64>,
}

impl DistinctSets {
    pub fn ensure(&mut self, len: usize) {
        if self.sets.len() < len {
            self.sets.resize_with(len, HashSet::new);
            self.bytes.resize(len, 0);
        }
    }

    pub fn reset(&mut self, g: usize) {
        self.sets[g] = HashSet::new();
        self.bytes[g] = 0;
    }

    /// Adds a value (None, a null, is not counted).
    pub fn insert(&mut self, g: usize, value: Option<&[u8]>) {
        if let Some(v) = value
            && !self.sets[g].contains(v)
        {
            self.bytes[g] += v.len() as u64 + VALUE_OVERHEAD;
            self.sets[g].insert(v.into());
        }
    }

    /// Folds the set of `src` into `dst` (`src` is released after).
    pub fn merge(&mut self, dst: usize, src: usize) {
        let from = std::mem::take(&mut self.sets[src]);
        self.bytes[src] = 0;
        for v in from {
            if !self.sets[dst].contains(&v) {
                self.bytes[dst] += v.len() as u64 + VALUE_OVERHEAD;
                self.sets[dst].insert(v);
            }
        }
    }

    /// Estimated heap bytes of group `g`'s set.
    pub fn heap(&self, g: usize) -> u64 {
        self.bytes[g]
    }

    /// Appends group `g`'s set: a count, then each value with its length.
    pub fn save(&self, g: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.sets[g].len() as u64).to_le_bytes());
        for v in &self.sets[g] {
            write_blob(out, v);
        }
    }

    /// Sets group `g` from the bytes [`DistinctSets::save`] wrote, each value checked.
    pub fn load(
        &mut self,
        g: usize,
        bytes: &mut Reader<'_>,
        codec: &ValueCodec,
    ) -> Result<(), CorruptState> {
        self.reset(g);
        let n = bytes.u64("distinct value count")?;
        // Each value takes at least its 4-byte length: a larger count is corrupt (and is
        // never used to size an allocation).
        if n > (bytes.remaining() / 4) as u64 {
            return Err(CorruptState::Invalid {
                what: "distinct value count",
                detail: format!("{n} values in {} bytes", bytes.remaining()),
            });
        }
        for _ in 0..n {
            let v = bytes.blob("distinct value")?;
            codec.check(v)?;
            if self.sets[g].contains(v) {
                return Err(CorruptState::Invalid {
                    what: "distinct values",
                    detail: "a value appears twice".into(),
                });
            }
            self.insert(g, Some(v));
        }
        Ok(())
    }

    /// The number of distinct values of each group.
    pub fn output(&self, groups: &[u32]) -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|&g| self.sets[g as usize].len() as i64),
        ))
    }
}
