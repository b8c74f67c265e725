//! The window operator of one keyed subtask: assigns records to (key, window) groups, keeps
//! their aggregates, and emits a row per group when the watermark passes the window end. A
//! record whose windows do not fit in i64 milliseconds, or an aggregate that overflows, fails
//! the subtask with a [`TaskError::Data`] naming the value. Every group is charged to the
//! job's [`StateBudget`](crate::budget::StateBudget), and so is what its aggregates hold as
//! they grow (distinct sets, sketches, first and last values); beyond it the subtask fails
//! too — unless the operator spills (`spill.rs`): then the groups in memory are a cache of
//! its RocksDB state, and a refused charge evicts cold groups to disk instead.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};
use hashbrown::{Equivalent, HashMap};
use kappa_job::keygroup::key_group_of;
use kappa_job::plan::{WindowAssigner, WindowPlan};

use super::accumulator::{Accumulator, ArgValues, Overflow};
use super::assign::{Described, Windows};
use crate::budget::{OverBudget, StateCharge};
use crate::error::{TaskError, eval_error};
use crate::keyed::KeyEncoder;
use crate::state::KeyedState;
use crate::steps::evaluate;

mod retract;
mod saving;
mod spill;

use spill::Spill;
pub use spill::SpillStats;

#[derive(Debug, Clone)]
struct Group {
    key: Box<[u8]>,
    start: i64,
    end: i64,
    /// Has a timer in `timers` (will be emitted when the watermark reaches `end`).
    pending: bool,
    /// Has an entry in `cleanup` (fired, kept for allowed lateness).
    retained: bool,
    /// The state key it was last written under, if it was.
    stored: Option<Box<[u8]>>,
    /// Heap bytes of its aggregates charged to the budget (beyond [`ACCUMULATOR_SLOT`]).
    heap: u64,
    /// Holds a group (its slot is not free).
    live: bool,
    /// Used since the eviction clock last passed it.
    touched: bool,
}

/// One input row as the aggregates take it.
struct Input<'a> {
    values: &'a [ArgValues],
    row: usize,
    /// Its event time.
    time: i64,
    /// A deleted row of a change stream: taken out of its group.
    retract: bool,
}

/// Estimated heap bytes of one group besides its key bytes and accumulators: the `Group`,
/// its index entry and timers with their containers' overhead.
const GROUP_OVERHEAD: u64 = 160;
/// Heap bytes of one accumulator slot (an i64, an f64 and a count).
const ACCUMULATOR_SLOT: u64 = 24;

/// Borrowed lookup key for the (key bytes, window start) index, without allocating.
#[derive(Hash)]
struct GroupRef<'a>(&'a [u8], i64);

impl Equivalent<(Box<[u8]>, i64)> for GroupRef<'_> {
    fn equivalent(&self, key: &(Box<[u8]>, i64)) -> bool {
        *self.0 == *key.0 && self.1 == key.1
    }
}

/// Windows fired per part of a firing at most (see [`WindowOperator::fire_next`]).
pub const FIRE_CHUNK: usize = 16_384;

/// Keyed event-time windows of one subtask.
pub struct WindowOperator {
    /// The window's uid, for errors.
    uid: String,
    /// What the groups take, charged to the job's state budget.
    charge: StateCharge,
    /// Number of key groups, to place each group's state.
    max_parallelism: u32,
    /// Groups changed since the last snapshot.
    dirty: HashSet<u32>,
    /// (key group, state key) of released groups that are still in the state backend.
    tombstones: Vec<(u32, Box<[u8]>)>,
    assigner: WindowAssigner,
    lateness: i64,
    time_index: usize,
    keys: KeyEncoder,
    args: Vec<Option<kappa_job::sql::CompiledExpr>>,
    accs: Vec<Accumulator>,
    output_schema: SchemaRef,
    groups: Vec<Group>,
    free: Vec<u32>,
    /// Tumbling and sliding windows: (key, start) → group.
    index: HashMap<(Box<[u8]>, i64), u32>,
    /// Session windows: key → its open sessions.
    sessions: HashMap<Box<[u8]>, Vec<u32>>,
    /// (window end, group): groups to emit once the watermark reaches their end.
    timers: BTreeSet<(i64, u32)>,
    /// (window end + allowed lateness, group): fired groups to drop once the watermark passes.
    cleanup: BTreeSet<(i64, u32)>,
    watermark: i64,
    late: usize,
    /// Whether late events are emitted (to a late output), not only counted.
    late_output: bool,
    /// Late rows of the batch being processed, with the window each missed.
    late_rows: Vec<(u32, i64, i64)>,
    late_batch: Option<RecordBatch>,
    /// With the RocksDB backend: where groups that do not fit in memory go.
    spill: Option<Spill>,
    /// An updating aggregate holds its updates back (the job is catching up).
    holding: bool,
    /// Held updates must go out now: they keep memory the cache needs.
    release_held: bool,
    /// An updating aggregate of a change stream: the index of the change column in its input
    /// (see [`WindowPlan::retract`]).
    retract: Option<usize>,
}

impl WindowOperator {
    /// Whether a window of `plan` can keep state larger than memory (all but session
    /// windows, whose sessions of a key merge in memory).
    pub fn spills(plan: &WindowPlan) -> bool {
        !matches!(plan.assigner, WindowAssigner::Session { .. })
    }

    /// A window operator charging its groups to `charge`; with `store` (only when
    /// [`WindowOperator::spills`]) a cache of that store, which must be the database its
    /// snapshots are written to.
    pub fn new(
        plan: &WindowPlan,
        max_parallelism: u32,
        charge: StateCharge,
        store: Option<Box<dyn KeyedState>>,
    ) -> Result<Self, TaskError> {
        retract::check(plan)?;
        Ok(Self {
            uid: plan.uid.clone(),
            charge,
            max_parallelism,
            dirty: HashSet::new(),
            tombstones: Vec::new(),
            assigner: plan.assigner,
            lateness: plan.allowed_lateness_ms,
            time_index: plan.time_index,
            keys: KeyEncoder::new(&plan.keys)?,
            args: plan
                .aggregates
                .iter()
                .map(|(_, c)| c.argument.clone())
                .collect(),
            accs: plan
                .aggregates
                .iter()
                .map(|(name, c)| Accumulator::new(name, c))
                .collect::<Result<_, _>>()?,
            output_schema: Arc::clone(&plan.output_schema),
            groups: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            sessions: HashMap::new(),
            timers: BTreeSet::new(),
            cleanup: BTreeSet::new(),
            watermark: i64::MIN,
            late: 0,
            late_output: plan.late_output.is_some(),
            late_rows: Vec::new(),
            late_batch: None,
            spill: store.filter(|_| Self::spills(plan)).map(Spill::new),
            holding: false,
            release_held: false,
            retract: plan.retract,
        })
    }

    /// Whether an updating aggregate holds its updates back instead of emitting each batch's
    /// (while the job catches up, so that a key changed by many records is emitted once).
    /// Held updates go out at [`WindowOperator::flush`], at the end of the input, when they
    /// keep memory the cache needs, and before the state TTL drops their group.
    pub fn hold_updates(&mut self, on: bool) {
        self.holding = on;
    }

    /// Lets the updates held back out: [`WindowOperator::fire_next`] emits them.
    pub fn release_held(&mut self) {
        self.release_held = true;
    }

    /// Emits every update held back, in one batch.
    pub fn flush(&mut self) -> Result<Option<RecordBatch>, TaskError> {
        self.release_held();
        self.fire_all()
    }

    /// Number of window groups held in state.
    pub fn groups_in_state(&self) -> usize {
        self.groups.len() - self.free.len()
    }

    /// Estimated heap bytes of the groups held.
    pub fn bytes_in_state(&self) -> u64 {
        self.charge.held()
    }

    /// Estimated heap bytes of a group with a key of `key_len` bytes: the key is kept in
    /// the group, in the index and (once snapshotted) as the state key.
    fn group_bytes(&self, key_len: usize) -> u64 {
        3 * key_len as u64 + GROUP_OVERHEAD + ACCUMULATOR_SLOT * self.accs.len() as u64
    }

    /// Records dropped as too late since the last call.
    pub fn take_late(&mut self) -> usize {
        std::mem::take(&mut self.late)
    }

    /// With a late output: the late records of the last batch, each with the window it
    /// missed (`window_start`, `window_end` appended to its columns).
    pub fn take_late_rows(&mut self) -> Option<RecordBatch> {
        self.late_batch.take()
    }

    /// The error for a record at `t` whose windows cannot be represented.
    fn out_of_range(&self, t: i64, key: &[u8]) -> TaskError {
        TaskError::Data(format!(
            "event time {t} (key {}) is out of range for a {} with allowed lateness {}ms: its window would start or end (plus lateness) beyond the 64-bit millisecond range; filter such records out before the window",
            self.keys.describe(key),
            Described(self.assigner),
            self.lateness
        ))
    }

    /// The error for an aggregate of group `g` that overflowed.
    fn overflowed(&self, e: Overflow, g: u32) -> TaskError {
        let group = &self.groups[g as usize];
        TaskError::Data(format!(
            "{e} in the window [{}, {}) of key {}",
            group.start,
            group.end,
            self.keys.describe(&group.key)
        ))
    }

    /// The late rows of `batch` as a batch with the windows they missed.
    fn late_batch(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>, TaskError> {
        if self.late_rows.is_empty() {
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.late_rows);
        let indices = arrow::array::UInt32Array::from_iter_values(rows.iter().map(|r| r.0));
        let taken = arrow::compute::take_record_batch(batch, &indices)
            .map_err(|e| crate::error::eval_error("selecting late events", e))?;
        let mut fields: Vec<arrow::datatypes::FieldRef> =
            taken.schema().fields().iter().cloned().collect();
        let mut columns = taken.columns().to_vec();
        for (name, values) in [
            ("window_start", rows.iter().map(|r| r.1).collect::<Vec<_>>()),
            ("window_end", rows.iter().map(|r| r.2).collect()),
        ] {
            fields.push(Arc::new(arrow::datatypes::Field::new(
                name,
                DataType::Int64,
                false,
            )));
            columns.push(Arc::new(Int64Array::from(values)) as ArrayRef);
        }
        let schema = Arc::new(arrow::datatypes::Schema::new(fields));
        RecordBatch::try_new(schema, columns)
            .map(Some)
            .map_err(|e| crate::error::eval_error("building the late events", e))
    }

    /// Adds a batch; returns the updates of already-fired windows it caused (allowed lateness).
    pub fn process(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>, TaskError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let rows = self.keys.rows(batch)?;
        let times = event_times(batch.column(self.time_index))?;
        // Rows of windowed results bring their windows.
        let carried = match self.assigner {
            WindowAssigner::Carried { start, end } => {
                let bound = |c: usize| -> Result<Int64Array, TaskError> {
                    let col = batch.column(c);
                    col.as_primitive_opt::<Int64Type>().cloned().ok_or_else(|| {
                        TaskError::Data(format!(
                            "window `{}`: a row's window bound is {}, not epoch milliseconds",
                            self.uid,
                            col.data_type()
                        ))
                    })
                };
                Some((bound(start)?, bound(end)?))
            }
            _ => None,
        };
        let values = self
            .args
            .iter()
            .zip(&self.accs)
            .map(|(arg, acc)| {
                let col = arg.as_ref().map(|a| evaluate(a, batch)).transpose()?;
                acc.arg_values(col)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let deletes = self.deletes(batch)?;
        for i in 0..n {
            let key = rows.row(i);
            let Some(t) = times.is_valid(i).then(|| times.value(i)) else {
                self.late += 1;
                continue;
            };
            let windows = match (self.assigner, &carried) {
                (WindowAssigner::Carried { .. }, Some((starts, ends))) => {
                    match (starts.is_valid(i), ends.is_valid(i)) {
                        (true, true) => {
                            Windows::carried(self.lateness, starts.value(i), ends.value(i))
                        }
                        _ => None,
                    }
                }
                _ => Windows::of(self.assigner, self.lateness, t),
            }
            .ok_or_else(|| self.out_of_range(t, key.as_ref()))?;
            let mut accepted = false;
            let input = Input {
                values: &values,
                row: i,
                time: t,
                retract: deletes.as_ref().is_some_and(|d| d.value(i)),
            };
            for (start, end) in windows.iter() {
                if input.retract {
                    self.remove(key.as_ref(), start, end, &input)?;
                    accepted = true;
                    continue;
                }
                accepted |= match self.assigner {
                    WindowAssigner::Session { .. } => {
                        self.add_session(key.as_ref(), start, end, &input)?
                    }
                    _ => self.add(key.as_ref(), start, end, &input)?,
                };
            }
            if !accepted {
                self.late += 1;
                if self.late_output {
                    let (start, end) = windows.latest();
                    self.late_rows.push((i as u32, start, end));
                }
            }
        }
        self.late_batch = self.late_batch(batch)?;
        // A batch changes a batch's worth of groups at most.
        let fired = self.fire_ready(usize::MAX);
        self.release_held = false;
        fired
    }

    fn is_late(&self, end: i64) -> bool {
        self.watermark != i64::MIN && self.cleanup_time(end).is_some_and(|t| t <= self.watermark)
    }

    /// When a fired group ending at `end` is dropped: after the allowed lateness, or, for an
    /// updating aggregate, when its key has been idle for the state TTL; None: never.
    fn cleanup_time(&self, end: i64) -> Option<i64> {
        match self.assigner {
            WindowAssigner::Global { ttl_ms: 0 } => None,
            WindowAssigner::Global { ttl_ms } => Some(end.saturating_add(ttl_ms)),
            _ => Some(end.saturating_add(self.lateness)),
        }
    }

    /// An updating aggregate's group ends at the latest event of its key: moves its timer
    /// and cleanup time with it.
    fn extend_global(&mut self, g: u32, end: i64) {
        let old = self.groups[g as usize].end;
        if end <= old {
            return;
        }
        let group = &self.groups[g as usize];
        if group.pending {
            self.timers.remove(&(old, g));
            self.timers.insert((end, g));
        }
        if group.retained {
            if let Some(t) = self.cleanup_time(old) {
                self.cleanup.remove(&(t, g));
            }
            if let Some(t) = self.cleanup_time(end) {
                self.cleanup.insert((t, g));
            }
        }
        self.groups[g as usize].end = end;
    }

    /// The error for a charge beyond the job's state limit `when` something happened.
    fn over_budget(&self, e: OverBudget, when: &str) -> TaskError {
        TaskError::Data(format!(
            "{e}: window `{}` holds {} windows here ({}) when {when}. Raise `[limits] state_memory` in the job file (or the jobmanager's --job-state-limit), add taskmanagers and parallelism, or look for a watermark that does not advance (the job's warnings) or more keys (or distinct values) than expected",
            self.uid,
            self.groups_in_state(),
            bytesize::ByteSize(self.charge.held()),
        ))
    }

    /// Charges `bytes` more: beyond the limit, a spilling operator evicts groups other than
    /// `keep` (and takes the bytes anyway if that is not enough); any other fails with what
    /// `when` says happened.
    fn grow(
        &mut self,
        bytes: u64,
        keep: Option<u32>,
        when: impl FnOnce(&Self) -> String,
    ) -> Result<(), TaskError> {
        match self.charge.grow(bytes) {
            Ok(()) => Ok(()),
            Err(e) if self.spill.is_none() => Err(self.over_budget(e, &when(self))),
            Err(_) => {
                self.make_room(keep)?;
                if self.charge.grow(bytes).is_err() {
                    self.charge.force(bytes);
                }
                Ok(())
            }
        }
    }

    fn new_group(&mut self, key: &[u8], start: i64, end: i64) -> Result<u32, TaskError> {
        let bytes = self.group_bytes(key.len());
        self.grow(bytes, None, |w| {
            format!("a window of key {} opens", w.keys.describe(key))
        })?;
        let group = Group {
            key: key.into(),
            start,
            end,
            pending: false,
            retained: false,
            stored: None,
            heap: 0,
            live: true,
            touched: true,
        };
        Ok(match self.free.pop() {
            Some(g) => {
                self.groups[g as usize] = group;
                g
            }
            None => {
                self.groups.push(group);
                let len = self.groups.len();
                self.accs.iter_mut().for_each(|a| a.ensure(len));
                (len - 1) as u32
            }
        })
    }

    /// Charges (or gives back) what group `g`'s aggregates hold beyond their fixed slots
    /// since it was last charged.
    fn recharge(&mut self, g: u32) -> Result<(), TaskError> {
        let now: u64 = self.accs.iter().map(|a| a.heap(g as usize)).sum();
        let held = self.groups[g as usize].heap;
        if now > held {
            self.grow(now - held, Some(g), |w| {
                let group = &w.groups[g as usize];
                format!(
                    "the aggregates of its window [{}, {}) of key {} grow",
                    group.start,
                    group.end,
                    w.keys.describe(&group.key)
                )
            })?;
        } else {
            self.charge.shrink(held - now);
        }
        self.groups[g as usize].heap = now;
        Ok(())
    }

    fn update(&mut self, g: u32, input: &Input<'_>) -> Result<(), TaskError> {
        for (i, v) in input.values.iter().enumerate() {
            let done = match input.retract {
                true => self.accs[i].retract(g as usize, v, input.row),
                false => self.accs[i].update(g as usize, v, input.row, input.time),
            };
            if let Err(e) = done {
                return Err(self.overflowed(e, g));
            }
        }
        self.recharge(g)?;
        self.dirty.insert(g);
        let group = &mut self.groups[g as usize];
        group.touched = true;
        if !group.pending {
            group.pending = true;
            self.timers.insert((group.end, g));
        }
        Ok(())
    }

    fn add(
        &mut self,
        key: &[u8],
        start: i64,
        end: i64,
        input: &Input<'_>,
    ) -> Result<bool, TaskError> {
        if self.is_late(end) {
            return Ok(false);
        }
        let g = match self.find(key, start)? {
            Some(g) if matches!(self.assigner, WindowAssigner::Global { .. }) => {
                self.extend_global(g, end);
                g
            }
            Some(g) => g,
            None => {
                let g = self.new_group(key, start, end)?;
                self.index.insert((key.into(), start), g);
                g
            }
        };
        self.update(g, input)?;
        Ok(true)
    }

    fn add_session(
        &mut self,
        key: &[u8],
        start: i64,
        end: i64,
        input: &Input<'_>,
    ) -> Result<bool, TaskError> {
        if self.is_late(end) {
            return Ok(false);
        }
        let open = self.sessions.get(key).cloned().unwrap_or_default();
        let (overlapping, mut rest): (Vec<u32>, Vec<u32>) = open.into_iter().partition(|&g| {
            let s = &self.groups[g as usize];
            s.start <= end && start <= s.end
        });
        let g = match overlapping.split_first() {
            None => self.new_group(key, start, end)?,
            Some((&first, others)) => {
                // The joined session's bounds; its timers are keyed by its old end.
                let old_end = self.groups[first as usize].end;
                let mut new_start = self.groups[first as usize].start.min(start);
                let mut new_end = old_end.max(end);
                for &o in others {
                    for i in 0..self.accs.len() {
                        if let Err(e) = self.accs[i].merge(first as usize, o as usize) {
                            return Err(self.overflowed(e, first));
                        }
                    }
                    new_start = new_start.min(self.groups[o as usize].start);
                    new_end = new_end.max(self.groups[o as usize].end);
                    self.release(o);
                }
                let f = &mut self.groups[first as usize];
                if new_end != old_end {
                    if f.pending {
                        self.timers.remove(&(old_end, first));
                        f.pending = false;
                    }
                    if f.retained {
                        self.cleanup
                            .remove(&(old_end.saturating_add(self.lateness), first));
                        f.retained = false;
                    }
                }
                f.start = new_start;
                f.end = new_end;
                first
            }
        };
        rest.push(g);
        self.sessions.insert(key.into(), rest);
        self.update(g, input)?;
        Ok(true)
    }

    /// Frees a group slot and deletes its state.
    fn release(&mut self, g: u32) {
        if let Some(stored) = self.groups[g as usize].stored.take() {
            let kg = key_group_of(&self.groups[g as usize].key, self.max_parallelism);
            match &mut self.spill {
                // Deleted now: a later miss of the same window must not read it back.
                Some(spill) => spill.delete(kg, &stored),
                None => self.tombstones.push((kg, stored)),
            }
        }
        self.forget(g);
    }

    /// Frees a group slot and forgets its timers and index entries (what is stored stays).
    fn forget(&mut self, g: u32) {
        let group = &self.groups[g as usize];
        if group.pending {
            self.timers.remove(&(group.end, g));
        }
        if group.retained
            && let Some(t) = self.cleanup_time(group.end)
        {
            self.cleanup.remove(&(t, g));
        }
        match self.assigner {
            WindowAssigner::Session { .. } => {
                if let Some(list) = self.sessions.get_mut(&group.key) {
                    list.retain(|&x| x != g);
                    if list.is_empty() {
                        self.sessions.remove(&group.key);
                    }
                }
            }
            _ => {
                self.index.remove(&GroupRef(&group.key, group.start));
            }
        }
        let bytes = self.group_bytes(group.key.len()) + group.heap;
        self.charge.shrink(bytes);
        self.groups[g as usize].live = false;
        self.groups[g as usize].stored = None;
        self.dirty.remove(&g);
        self.accs.iter_mut().for_each(|a| a.reset(g as usize));
        self.free.push(g);
    }

    /// Moves the event-time clock; returns the windows that fired, in one batch.
    pub fn advance(&mut self, watermark: i64) -> Result<Option<RecordBatch>, TaskError> {
        if !self.set_watermark(watermark) {
            return Ok(None);
        }
        self.fire_all()
    }

    /// Moves the event-time clock (whether it moved); [`WindowOperator::fire_next`] emits the
    /// windows that fired.
    pub fn set_watermark(&mut self, watermark: i64) -> bool {
        let moved = watermark > self.watermark;
        self.watermark = self.watermark.max(watermark);
        moved
    }

    /// Every part [`WindowOperator::fire_next`] gives, in one batch.
    fn fire_all(&mut self) -> Result<Option<RecordBatch>, TaskError> {
        let mut fired = Vec::new();
        while let Some(b) = self.fire_next()? {
            fired.push(b);
        }
        match fired.len() {
            0 | 1 => Ok(fired.pop()),
            _ => arrow::compute::concat_batches(&Arc::clone(&self.output_schema), &fired)
                .map(Some)
                .map_err(|e| eval_error("joining fired windows", e)),
        }
    }

    /// The next part (at most [`FIRE_CHUNK`] windows) of what is due at the watermark (or
    /// released); None once nothing is left. Spilled groups that are due come back into
    /// memory a chunk at a time. Fired groups past their cleanup time are dropped as it goes.
    pub fn fire_next(&mut self) -> Result<Option<RecordBatch>, TaskError> {
        loop {
            let fired = self.fire_ready(FIRE_CHUNK)?;
            self.clean_up();
            if fired.is_some() {
                return Ok(fired);
            }
            if !self.spilled_due() {
                break;
            }
            self.load_due()?;
        }
        self.release_held = false;
        if let Some(spill) = &mut self.spill {
            spill.commit().map_err(spill::io)?;
        }
        Ok(None)
    }

    /// Drops the fired groups whose cleanup time the watermark passed.
    fn clean_up(&mut self) {
        while let Some(&(t, g)) = self.cleanup.first() {
            if t > self.watermark {
                break;
            }
            self.cleanup.pop_first();
            self.groups[g as usize].retained = false;
            self.release(g);
        }
    }

    /// Fires at most `limit` groups that are due.
    fn fire_ready(&mut self, limit: usize) -> Result<Option<RecordBatch>, TaskError> {
        // An updating aggregate emits every group a batch changed, whatever the watermark,
        // unless it holds its updates back: then only groups its TTL is about to drop.
        let global = match self.assigner {
            WindowAssigner::Global { ttl_ms } => Some(ttl_ms),
            _ => None,
        };
        let held = self.holding && !self.release_held;
        let fire_until = match global {
            Some(ttl) if held && self.watermark != i64::MAX => match ttl {
                0 => i64::MIN,
                ttl => self.watermark.saturating_sub(ttl),
            },
            Some(_) => i64::MAX,
            None if self.watermark == i64::MIN => i64::MIN,
            None => self.watermark,
        };
        let mut fired = Vec::new();
        while let Some(&(end, g)) = self.timers.first() {
            if end > fire_until || fire_until == i64::MIN || fired.len() == limit {
                break;
            }
            self.timers.pop_first();
            self.groups[g as usize].pending = false;
            fired.push(g);
        }
        if fired.is_empty() {
            return Ok(None);
        }
        let batch = self.output(&fired)?;
        let emptied = self.emptied(&batch);
        for (i, g) in fired.into_iter().enumerate() {
            if self.lateness == 0 && global.is_none()
                || emptied.as_ref().is_some_and(|e| e.value(i))
            {
                self.release(g);
            } else if !self.groups[g as usize].retained {
                self.dirty.insert(g);
                self.groups[g as usize].retained = true;
                if let Some(t) = self.cleanup_time(self.groups[g as usize].end) {
                    self.cleanup.insert((t, g));
                }
            }
        }
        Ok(Some(batch))
    }

    fn output(&self, groups: &[u32]) -> Result<RecordBatch, TaskError> {
        let parser = self.keys.converter().parser();
        let key_rows = groups
            .iter()
            .map(|&g| parser.parse(&self.groups[g as usize].key));
        let mut columns: Vec<ArrayRef> = self
            .keys
            .converter()
            .convert_rows(key_rows)
            .map_err(|e| eval_error("decoding window keys", e))?;
        columns.push(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|&g| self.groups[g as usize].start),
        )));
        columns.push(Arc::new(Int64Array::from_iter_values(
            groups.iter().map(|&g| self.groups[g as usize].end),
        )));
        for a in &self.accs {
            columns.push(a.output(groups)?);
        }
        if self.retract.is_some() {
            columns.push(retract::deleted_keys(&columns)?);
        }
        RecordBatch::try_new(Arc::clone(&self.output_schema), columns)
            .map_err(|e| eval_error("building window results", e))
    }
}

/// Event times of a column as epoch milliseconds.
pub fn event_times(col: &ArrayRef) -> Result<Int64Array, TaskError> {
    let ms = match col.data_type() {
        DataType::Int64 => Arc::clone(col),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            cast(col, &DataType::Int64).map_err(|e| eval_error("event time", e))?
        }
        _ => {
            let t = cast(col, &DataType::Timestamp(TimeUnit::Millisecond, None))
                .map_err(|e| eval_error("event time", e))?;
            cast(&t, &DataType::Int64).map_err(|e| eval_error("event time", e))?
        }
    };
    Ok(ms.as_primitive::<Int64Type>().clone())
}
