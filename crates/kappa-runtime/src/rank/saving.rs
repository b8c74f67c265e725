//! Snapshot and restore of a ranking's partitions: one state entry per partition key in its
//! key group, its value the flags (bit 0: emitted), the time (window end or row time), the
//! number of rows and each row's column values (a presence byte, then a length-prefixed
//! value). Entries read back are checked whole — flags, counts, every value against its type —
//! so a corrupt one fails the restore with what did not fit; sort keys are rebuilt from the
//! values.

use std::ops::RangeInclusive;

use kappa_job::plan::RankKind;

use super::RankOperator;
use super::rows::RestoredRows;
use crate::error::TaskError;
use crate::state::{KeyedState, StateFailure, restore_each};
use crate::window::saved::{CorruptState, Reader, described, write_blob};

/// A saved partition that cannot be restored.
#[derive(Debug, thiserror::Error)]
enum RestoreFailure {
    #[error("its bytes cannot be read")]
    Corrupt(#[from] CorruptState),
    #[error("its rows cannot be rebuilt")]
    Rows(#[from] RestoredRows),
    /// Beyond the state limit.
    #[error(transparent)]
    Task(#[from] TaskError),
}

impl RankOperator {
    /// Writes the partitions changed since the last snapshot to `state` (and deletes dropped
    /// ones), so that `state` holds exactly this operator's partitions.
    pub fn snapshot(&mut self, state: &mut dyn KeyedState) -> Result<(), StateFailure> {
        for key in std::mem::take(&mut self.tombstones) {
            state.delete(self.key_group(&key), &key);
        }
        let mut value = Vec::new();
        for key in std::mem::take(&mut self.dirty) {
            let kg = self.key_group(&key);
            let Some(p) = self.partitions.get_mut(&key) else {
                continue;
            };
            value.clear();
            value.push(u8::from(p.emitted));
            value.extend_from_slice(&p.time.to_le_bytes());
            let count = u32::try_from(p.rows.len()).unwrap_or(u32::MAX);
            value.extend_from_slice(&count.to_le_bytes());
            for row in &p.rows {
                for v in &row.values {
                    match v {
                        Some(bytes) => {
                            value.push(1);
                            write_blob(&mut value, bytes);
                        }
                        None => value.push(0),
                    }
                }
            }
            state.put(kg, &key, &value);
            p.stored = true;
        }
        state.commit()
    }

    /// Loads the partitions of the key groups `groups` from `state` (a fresh operator, before
    /// any input; several snapshots may be loaded one after the other when rescaling); returns
    /// how many it loaded. They are written to the operator's own state at the next snapshot.
    pub fn restore(
        &mut self,
        state: &dyn KeyedState,
        groups: RangeInclusive<u32>,
    ) -> Result<usize, StateFailure> {
        restore_each(state, groups, |kg, key, value| {
            self.restore_partition(key, value).map_err(|e| {
                StateFailure(format!(
                    "ranking `{}`: a saved partition of key group {kg} cannot be restored: {}",
                    self.uid,
                    described(&e)
                ))
            })
        })
    }

    /// Restores one saved partition: `key` its partition key, `value` what
    /// [`RankOperator::snapshot`] wrote.
    fn restore_partition(&mut self, key: &[u8], value: &[u8]) -> Result<(), RestoreFailure> {
        let mut bytes = Reader::new(value);
        let flags = bytes.u8("ranking flags")?;
        let time = bytes.i64("ranking time")?;
        let count = u32::from_le_bytes(bytes.array("ranking row count")?) as usize;
        // (flags it may have, most rows): only a deduplication's key is ever emitted.
        let (flags_max, most) = match self.plan.kind {
            RankKind::TopN { limit, .. } => (0, limit),
            RankKind::KeepFirst { .. } => (1, usize::from(flags == 0)),
        };
        let emitted = flags == 1;
        let width = self.plan.row_fields().len();
        // A row takes at least one byte per column: a count beyond the bytes is corrupt.
        if flags > flags_max || count > most || count.saturating_mul(width) > bytes.remaining() {
            return Err(CorruptState::Invalid {
                what: "ranking partition",
                detail: format!("flags {flags} with {count} rows"),
            }
            .into());
        }
        if count == 0 && !emitted {
            return Err(CorruptState::Invalid {
                what: "ranking partition",
                detail: "no rows and nothing emitted".into(),
            }
            .into());
        }
        // A window assigned here ends the key: the partition's time.
        if self.plan.assign.is_some() && !key.ends_with(&time.to_be_bytes()) {
            return Err(CorruptState::Invalid {
                what: "ranking partition",
                detail: format!("a key that does not end with its window end {time}"),
            }
            .into());
        }
        if self.partitions.contains_key(key) {
            return Err(CorruptState::Invalid {
                what: "ranking partition",
                detail: "restored twice".into(),
            }
            .into());
        }
        let mut values = Vec::with_capacity(count);
        for _ in 0..count {
            let mut row = Vec::with_capacity(width);
            for _ in 0..width {
                row.push(match bytes.u8("value presence")? {
                    0 => None,
                    1 => Some(Box::from(bytes.blob("value")?)),
                    other => {
                        return Err(CorruptState::Invalid {
                            what: "value presence",
                            detail: other.to_string(),
                        }
                        .into());
                    }
                });
            }
            values.push(row);
        }
        bytes.finish()?;
        let mut rows = self.rows.restored(values)?;
        rows.sort_by(|a, b| a.sort.cmp(&b.sort));
        self.open(key, time, rows, emitted)?;
        match emitted {
            true => self.forget_later(key, time),
            false => {
                self.timers.insert((time, key.into()));
            }
        }
        Ok(())
    }
}
