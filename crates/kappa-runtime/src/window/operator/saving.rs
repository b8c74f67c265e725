//! Snapshot and restore of the window operator's groups: one state entry per (key, window
//! start) in the key's key group, its value the window end, the timer flags and each
//! aggregate's saved bytes ([`super::super::accumulator`]). Entries read back are checked
//! whole: a truncated or corrupt one fails the restore with what did not fit.

use std::ops::RangeInclusive;

use kappa_job::keygroup::key_group_of;
use kappa_job::plan::WindowAssigner;

use super::WindowOperator;
use crate::error::TaskError;
use crate::state::{KeyedState, StateFailure, restore_each};
use crate::window::saved::{CorruptState, Reader, described};

/// A saved window that cannot be restored.
#[derive(Debug, thiserror::Error)]
pub(super) enum RestoreFailure {
    #[error("its bytes cannot be read")]
    Corrupt(#[from] CorruptState),
    /// Beyond the state limit.
    #[error(transparent)]
    Task(#[from] TaskError),
}

impl WindowOperator {
    /// Writes the groups changed since the last snapshot to `state` (and deletes released
    /// ones), so that `state` holds exactly this operator's windows.
    /// A spilling operator's `state` is the database it spills to: what it staged there is
    /// committed first.
    pub fn snapshot(&mut self, state: &mut dyn KeyedState) -> Result<(), StateFailure> {
        if let Some(spill) = &mut self.spill {
            spill.commit()?;
        }
        for (kg, key) in self.tombstones.drain(..) {
            state.delete(kg, &key);
        }
        let mut value = Vec::new();
        for g in std::mem::take(&mut self.dirty) {
            self.save_group(g, state, &mut value);
        }
        state.commit()
    }

    /// Stages group `g`'s entry in `state` (`value` is scratch space); returns its key group
    /// and state key.
    pub(super) fn save_group(
        &mut self,
        g: u32,
        state: &mut dyn KeyedState,
        value: &mut Vec<u8>,
    ) -> (u32, Box<[u8]>) {
        let group = &mut self.groups[g as usize];
        let kg = key_group_of(&group.key, self.max_parallelism);
        let key = state_key(&group.key, group.start);
        if let Some(old) = group.stored.take().filter(|old| *old != key) {
            state.delete(kg, &old);
        }
        value.clear();
        value.extend_from_slice(&group.end.to_le_bytes());
        value.push(u8::from(group.pending) | (u8::from(group.retained) << 1));
        for acc in &self.accs {
            acc.save(g as usize, value);
        }
        state.put(kg, &key, value);
        group.stored = Some(key.clone());
        (kg, key)
    }

    /// Loads the windows of the key groups `groups` from `state` (a fresh operator, before
    /// any input; several snapshots may be loaded one after the other when rescaling); returns
    /// how many it loaded. They are written to the operator's own state at the next snapshot.
    pub fn restore(
        &mut self,
        state: &dyn KeyedState,
        groups: RangeInclusive<u32>,
    ) -> Result<usize, StateFailure> {
        let restored = restore_each(state, groups, |kg, key, value| {
            self.load_group(key, value, false)
                .map(|_| ())
                .map_err(|e| self.unreadable(e, "saved", kg))
        })?;
        if let Some(spill) = &mut self.spill {
            spill.commit()?;
        }
        Ok(restored)
    }

    /// The failure of a `what` (saved, spilled) window of key group `kg` that could not be
    /// loaded.
    pub(super) fn unreadable(&self, e: RestoreFailure, what: &str, kg: u32) -> StateFailure {
        match e {
            RestoreFailure::Task(e) => StateFailure(e.to_string()),
            RestoreFailure::Corrupt(e) => StateFailure(format!(
                "window `{}`: a {what} window of key group {kg} cannot be read: {}",
                self.uid,
                described(&e)
            )),
        }
    }

    /// Loads one saved window into memory: `key` is the group's key bytes and window start,
    /// `value` what [`WindowOperator::snapshot`] wrote. A window read back from the operator's
    /// own store (`stored`) is there already; any other is written at the next snapshot.
    pub(super) fn load_group(
        &mut self,
        key: &[u8],
        value: &[u8],
        stored: bool,
    ) -> Result<u32, RestoreFailure> {
        let Some((row, start)) = key.split_last_chunk::<8>() else {
            return Err(CorruptState::Truncated {
                what: "window key",
                need: 8,
                have: key.len(),
            }
            .into());
        };
        let start = i64::from_be_bytes(*start);
        let mut bytes = Reader::new(value);
        let end = bytes.i64("window end")?;
        let flags = bytes.u8("window flags")?;
        if flags > 3 || start > end {
            return Err(CorruptState::Invalid {
                what: "window",
                detail: format!("[{start}, {end}) with flags {flags}"),
            }
            .into());
        }
        let g = self.new_group(row, start, end)?;
        match self.assigner {
            WindowAssigner::Session { .. } => self.sessions.entry(row.into()).or_default().push(g),
            _ => {
                self.index.insert((row.into(), start), g);
            }
        }
        for acc in &mut self.accs {
            acc.load(g as usize, &mut bytes)?;
        }
        bytes.finish()?;
        if stored {
            self.groups[g as usize].stored = Some(key.into());
        } else {
            // The live state backend is not the one restored from: write the window at the
            // next snapshot.
            self.dirty.insert(g);
        }
        self.recharge(g)?;
        let group = &mut self.groups[g as usize];
        if flags & 1 != 0 {
            group.pending = true;
            self.timers.insert((end, g));
        }
        if flags & 2 != 0 {
            group.retained = true;
            if let Some(t) = self.cleanup_time(end) {
                self.cleanup.insert((t, g));
            }
        }
        Ok(g)
    }
}

/// A window's state key: its key bytes, then its start (big-endian).
pub(super) fn state_key(key: &[u8], start: i64) -> Box<[u8]> {
    let mut k = Vec::with_capacity(key.len() + 8);
    k.extend_from_slice(key);
    k.extend_from_slice(&start.to_be_bytes());
    k.into()
}
