//! State larger than memory for the window operator: its groups in memory are a write-back
//! cache of its RocksDB state. When a charge is refused, a clock sweep (second chance: a
//! group used since the last pass is spared once) evicts groups that are not due to fire —
//! a changed one is written first — and a group not in memory is read back on its next
//! event. An evicted group that waits for its window end (or, fired, for its allowed
//! lateness to pass) leaves a timer entry in a key group of its own, [`TIMERS`], ordered by
//! the time it is due, so that the watermark finds it without anything per group in memory;
//! only the earliest due time is kept. Timer entries are never part of a key-group range a
//! restore reads: a restore rebuilds them from the windows' flags.

use kappa_job::keygroup::key_group_of;

use super::{GroupRef, WindowOperator};
use crate::error::TaskError;
use crate::metrics::StateFigures;
use crate::state::{KeyedState, StateFailure};

/// The key group of timer entries: beyond every job's key groups (at most 32768).
const TIMERS: u32 = u16::MAX as u32;

/// Spilled groups brought back into memory at a time when they are due; each chunk is fired
/// (and released) before the next is read.
const LOAD_CHUNK: usize = 4096;

/// Share of what it holds a refused operator keeps when it evicts: evicting a quarter at a
/// time keeps evictions rare.
const KEEP_NUMERATOR: u64 = 3;
const KEEP_DENOMINATOR: u64 = 4;

/// How the cache of one window operator did, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpillStats {
    /// Events whose group was in memory.
    pub hits: u64,
    /// Groups read back from disk (an event's, or a due one's).
    pub loads: u64,
    /// Groups evicted to disk.
    pub evictions: u64,
}

/// The store of a spilling window operator and what it knows of it.
pub(super) struct Spill {
    store: Box<dyn KeyedState>,
    /// Writes staged in `store` since its last commit.
    staged: bool,
    /// Whether a group was ever evicted (before that, a group not in memory is nowhere).
    evicted: bool,
    /// The earliest due time of a timer entry, if there may be one.
    next_due: Option<i64>,
    /// Where the last scan of due timer entries stopped (the first entry it did not take):
    /// every entry before it was taken or is stale, so the next scan starts there instead of
    /// skipping the deletes of all the taken ones. None when an entry was added before it.
    resume: Option<Vec<u8>>,
    /// The eviction clock's hand over the group slots.
    hand: usize,
    stats: SpillStats,
}

impl Spill {
    pub(super) fn new(store: Box<dyn KeyedState>) -> Self {
        Self {
            store,
            staged: false,
            evicted: false,
            next_due: None,
            resume: None,
            hand: 0,
            stats: SpillStats::default(),
        }
    }

    /// Stages a delete of a window's entry.
    pub(super) fn delete(&mut self, kg: u32, key: &[u8]) {
        self.store.delete(kg, key);
        self.staged = true;
    }

    /// Commits what was staged (reads see only committed writes).
    pub(super) fn commit(&mut self) -> Result<(), StateFailure> {
        if std::mem::take(&mut self.staged) {
            self.store.commit()?;
        }
        Ok(())
    }

    /// Stages a timer entry for the window `key` of key group `kg`, due at `due`.
    fn add_timer(&mut self, due: i64, kg: u32, key: &[u8]) {
        let k = timer_key(due, kg, key);
        if self.resume.as_ref().is_some_and(|r| k < *r) {
            self.resume = None;
        }
        self.store.put(TIMERS, &k, &[]);
        self.staged = true;
        self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
    }
}

/// A timer entry's key: the due time (sign flipped, big-endian, so keys sort by time), the
/// window's key group, its state key.
fn timer_key(due: i64, kg: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + key.len());
    k.extend_from_slice(&due_bytes(due));
    k.extend_from_slice(&(kg as u16).to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn due_bytes(due: i64) -> [u8; 8] {
    ((due as u64) ^ (1 << 63)).to_be_bytes()
}

/// A timer entry's (due time, key group, state key), if it is one.
fn parse_timer(k: &[u8]) -> Option<(i64, u32, &[u8])> {
    let (due, rest) = k.split_first_chunk::<8>()?;
    let (kg, key) = rest.split_first_chunk::<2>()?;
    let due = (u64::from_be_bytes(*due) ^ (1 << 63)) as i64;
    Some((due, u32::from(u16::from_be_bytes(*kg)), key))
}

pub(super) fn io(e: StateFailure) -> TaskError {
    TaskError::Io(format!("spilled window state: {e}"))
}

impl WindowOperator {
    /// How the cache did, for a spilling operator.
    pub fn spill_stats(&self) -> Option<SpillStats> {
        self.spill.as_ref().map(|s| s.stats)
    }

    /// The size of its state, in memory and spilled, and how its cache did.
    pub fn state_figures(&self) -> StateFigures {
        let stats = self.spill_stats().unwrap_or_default();
        StateFigures {
            keys_in_memory: self.groups_in_state() as u64,
            bytes_in_memory: self.bytes_in_state(),
            bytes_spilled: self.spill.as_ref().map_or(0, |s| s.store.stored_bytes()),
            cache_hits: stats.hits,
            cache_loads: stats.loads,
            evictions: stats.evictions,
        }
    }

    /// The group of (`key`, window `start`): in memory, or read back from disk.
    pub(super) fn find(&mut self, key: &[u8], start: i64) -> Result<Option<u32>, TaskError> {
        let found = self.index.get(&GroupRef(key, start)).copied();
        match &mut self.spill {
            Some(spill) if found.is_some() => spill.stats.hits += 1,
            Some(spill) if found.is_none() && spill.evicted => {
                let kg = key_group_of(key, self.max_parallelism);
                return self.load(kg, &super::saving::state_key(key, start));
            }
            _ => {}
        }
        Ok(found)
    }

    /// Reads the window `skey` of key group `kg` back from disk, if it is there.
    fn load(&mut self, kg: u32, skey: &[u8]) -> Result<Option<u32>, TaskError> {
        let Some(spill) = self.spill.as_mut().filter(|s| s.evicted) else {
            return Ok(None);
        };
        spill.commit().map_err(io)?;
        let Some(value) = spill.store.get(kg, skey).map_err(io)? else {
            return Ok(None);
        };
        spill.stats.loads += 1;
        let g = self
            .load_group(skey, &value, true)
            .map_err(|e| io(self.unreadable(e, "spilled", kg)))?;
        Ok(Some(g))
    }

    /// Whether group `g` must stay in memory now: an updating aggregate's changed group is
    /// emitted with its batch, and a group whose end or cleanup time the watermark passed is
    /// being fired or dropped.
    fn is_due(&self, g: u32) -> bool {
        let group = &self.groups[g as usize];
        let global = matches!(
            self.assigner,
            kappa_job::plan::WindowAssigner::Global { .. }
        );
        (group.pending && (global || group.end <= self.watermark))
            || (group.retained
                && self
                    .cleanup_time(group.end)
                    .is_some_and(|t| t <= self.watermark))
    }

    /// Evicts groups (never `keep`, nor a due one) until the operator holds at most three
    /// quarters of what it held, or every group was passed twice.
    pub(super) fn make_room(&mut self, keep: Option<u32>) -> Result<(), TaskError> {
        let target = self.charge.held() / KEEP_DENOMINATOR * KEEP_NUMERATOR;
        let slots = self.groups.len();
        let mut value = Vec::new();
        let mut passed = 0;
        while passed < 2 * slots && self.charge.held() > target {
            let Some(spill) = &mut self.spill else {
                return Ok(());
            };
            let g = (spill.hand % slots) as u32;
            spill.hand = (spill.hand + 1) % slots;
            passed += 1;
            let group = &mut self.groups[g as usize];
            if !group.live || Some(g) == keep {
                continue;
            }
            if std::mem::take(&mut group.touched) || self.is_due(g) {
                continue;
            }
            self.evict(g, &mut value);
        }
        // Updates held back are due and stay in memory: past the target, they go out.
        if self.holding && self.charge.held() > target {
            self.release_held = true;
        }
        if let Some(spill) = &mut self.spill {
            spill.commit().map_err(io)?;
        }
        Ok(())
    }

    /// Writes group `g` to disk (if it changed since it was last written) with its timer
    /// entry, and frees its memory.
    fn evict(&mut self, g: u32, value: &mut Vec<u8>) {
        let Some(mut spill) = self.spill.take() else {
            return;
        };
        let group = &self.groups[g as usize];
        let due = if group.pending {
            Some(group.end)
        } else if group.retained {
            self.cleanup_time(group.end)
        } else {
            None
        };
        let unchanged = match self.dirty.contains(&g) {
            false => group.stored.clone(),
            true => None,
        };
        let (kg, skey) = match unchanged {
            Some(stored) => (key_group_of(&group.key, self.max_parallelism), stored),
            None => self.save_group(g, spill.store.as_mut(), value),
        };
        if let Some(due) = due {
            spill.add_timer(due, kg, &skey);
        }
        spill.staged = true;
        if !spill.evicted {
            tracing::info!(window = %self.uid, held = self.charge.held(), "window state beyond its memory: evicting to local disk");
        }
        spill.evicted = true;
        spill.stats.evictions += 1;
        self.spill = Some(spill);
        self.forget(g);
    }

    /// Brings the next chunk of spilled groups whose timers the watermark passed back into
    /// memory (see [`WindowOperator::spilled_due`] for whether more are due).
    pub(super) fn load_due(&mut self) -> Result<(), TaskError> {
        let watermark = self.watermark;
        let Some(spill) = &mut self.spill else {
            return Ok(());
        };
        let Some(first) = spill.next_due.filter(|d| *d <= watermark) else {
            return Ok(());
        };
        spill.commit().map_err(io)?;
        let mut due: Vec<Vec<u8>> = Vec::new();
        let mut after = None;
        let from = match spill.resume.take() {
            Some(r) if r.as_slice() > due_bytes(first).as_slice() => r,
            _ => due_bytes(first).to_vec(),
        };
        let mut stopped_at = None;
        spill
            .store
            .scan_from(TIMERS, &from, &mut |_, k, _| match parse_timer(k) {
                Some((d, _, _)) if d > watermark || due.len() == LOAD_CHUNK => {
                    after = Some(d);
                    stopped_at = Some(k.to_vec());
                    false
                }
                _ => {
                    due.push(k.to_vec());
                    true
                }
            })
            .map_err(io)?;
        spill.next_due = after;
        spill.resume = stopped_at;
        for k in &due {
            spill.store.delete(TIMERS, k);
            spill.staged = true;
        }
        for k in &due {
            let Some((_, kg, skey)) = parse_timer(k) else {
                return Err(TaskError::Data(format!(
                    "window `{}`: a spilled timer entry of {} bytes cannot be read",
                    self.uid,
                    k.len()
                )));
            };
            let Some((row, start)) = skey.split_last_chunk::<8>() else {
                return Err(TaskError::Data(format!(
                    "window `{}`: a spilled timer of key group {kg} names no window",
                    self.uid
                )));
            };
            // A group in memory keeps its own timers; an entry may be stale (the group was
            // read back and evicted again with another due time, or released).
            if !self
                .index
                .contains_key(&GroupRef(row, i64::from_be_bytes(*start)))
            {
                self.load(kg, skey)?;
            }
        }
        Ok(())
    }

    /// Whether spilled groups may be due at the watermark.
    pub(super) fn spilled_due(&self) -> bool {
        self.spill
            .as_ref()
            .and_then(|s| s.next_due)
            .is_some_and(|d| d <= self.watermark)
    }
}
