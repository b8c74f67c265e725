//! The ranking operator of one keyed subtask (`ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)`
//! bounded by a filter, see [`kappa_job::plan::RankPlan`]), its state in memory:
//!
//! - Top-N per window: each partition (a window, and any other PARTITION BY columns) keeps its
//!   first N rows by the ORDER BY (ties by the other columns); when the watermark reaches the
//!   window's end they are emitted with their row numbers 1..N and the partition is dropped.
//!   Rows of a partition whose end the watermark has already passed (updates of windows with
//!   allowed lateness) are late: counted and dropped.
//! - Keep-first deduplication: each key keeps the earliest row seen so far (by event time,
//!   ties by the other columns) and emits it once the watermark passes its time; later rows of
//!   an emitted key are dropped. A row of a key never seen that is already behind the
//!   watermark is emitted at once (nothing earlier can be waited for). A key is remembered
//!   forever, or with a state TTL until the watermark is that far past its row: a row of a
//!   forgotten key is emitted again.
//!
//! Every partition is charged to the job's [`StateBudget`](crate::budget::StateBudget);
//! snapshots and restores are by key group (`saving.rs`).

use std::collections::{BTreeSet, HashMap, HashSet};

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{Schema, SchemaRef};
use kappa_job::keygroup::key_group_of;
use kappa_job::plan::{RankKind, RankPlan};

use self::rows::{Row, RowCodec};
use crate::budget::{OverBudget, StateCharge};
use crate::error::TaskError;
use crate::keyed::KeyEncoder;
use crate::window::event_times;

mod rows;
mod saving;
#[cfg(test)]
mod tests;
mod windows;

/// Estimated heap bytes of a partition besides its rows: the entry, its key (in the map, a
/// timer and the state key) and the containers' overhead.
const PARTITION_OVERHEAD: u64 = 160;

/// The rows of one partition key.
#[derive(Debug)]
struct Partition {
    /// Top-N: the window's end; deduplication: the time of its (first) row.
    time: i64,
    /// Top-N: its first rows, in rank order; deduplication: the earliest row while not
    /// emitted, none after.
    rows: Vec<Row>,
    /// Deduplication: its row was emitted.
    emitted: bool,
    /// Is in the state backend.
    stored: bool,
    /// Bytes charged for it.
    bytes: u64,
}

/// A keyed ranking of one subtask.
pub struct RankOperator {
    uid: String,
    plan: RankPlan,
    max_parallelism: u32,
    charge: StateCharge,
    keys: KeyEncoder,
    rows: RowCodec,
    /// The columns of the rows held.
    held: SchemaRef,
    partitions: HashMap<Box<[u8]>, Partition>,
    /// (time, key): partitions to emit once the watermark reaches the time.
    timers: BTreeSet<(i64, Box<[u8]>)>,
    /// (time, key): emitted keys of a deduplication to forget (with a state TTL).
    expiry: BTreeSet<(i64, Box<[u8]>)>,
    /// Partitions changed since the last snapshot.
    dirty: HashSet<Box<[u8]>>,
    /// Keys of dropped partitions that are in the state backend.
    tombstones: Vec<Box<[u8]>>,
    watermark: i64,
    late: usize,
}

impl RankOperator {
    pub fn new(
        plan: &RankPlan,
        max_parallelism: u32,
        charge: StateCharge,
    ) -> Result<Self, TaskError> {
        let (RankKind::TopN { end_index: at, .. } | RankKind::KeepFirst { time_index: at, .. }) =
            plan.kind;
        if plan.partition.is_empty() {
            // Keys are encoded per row: without a key expression there would be none.
            return Err(TaskError::Data(format!(
                "ranking `{}` has no PARTITION BY key",
                plan.uid
            )));
        }
        let (held, input) = (plan.row_fields().len(), plan.input_schema.fields().len());
        let windows = plan.assign.map(|(_, time)| time);
        if at >= held || windows.is_some_and(|t| t >= input) {
            return Err(TaskError::Data(format!(
                "ranking `{}`: its times are not columns of its rows ({at} of {held}, {windows:?} of {input})",
                plan.uid,
            )));
        }
        Ok(Self {
            uid: plan.uid.clone(),
            plan: plan.clone(),
            max_parallelism,
            charge,
            keys: KeyEncoder::new(&plan.partition)?,
            rows: RowCodec::new(plan)?,
            held: Arc::new(Schema::new(plan.row_fields().to_vec())),
            partitions: HashMap::new(),
            timers: BTreeSet::new(),
            expiry: BTreeSet::new(),
            dirty: HashSet::new(),
            tombstones: Vec::new(),
            watermark: i64::MIN,
            late: 0,
        })
    }

    /// Number of partitions (windows or keys) held.
    pub fn partitions_in_state(&self) -> usize {
        self.partitions.len()
    }

    /// Rows dropped as late since the last call.
    pub fn take_late(&mut self) -> usize {
        std::mem::take(&mut self.late)
    }

    /// The column whose values are partition times: the window's end, or the event time.
    fn time_index(&self) -> usize {
        match self.plan.kind {
            RankKind::TopN { end_index, .. } => end_index,
            RankKind::KeepFirst { time_index, .. } => time_index,
        }
    }

    /// The key group of a partition key: of its hashed keys (a window assigned here follows
    /// them).
    fn key_group(&self, key: &[u8]) -> u32 {
        let hashed = match self.plan.assign {
            Some(_) => &key[..key.len().saturating_sub(8)],
            None => key,
        };
        key_group_of(hashed, self.max_parallelism)
    }

    fn is_behind(&self, t: i64) -> bool {
        self.watermark != i64::MIN && t <= self.watermark
    }

    /// Takes rows; returns those emitted at once (deduplication of keys seen late).
    pub fn process(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>, TaskError> {
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        let width = self.plan.input_schema.fields().len();
        if batch.num_columns() != width {
            return Err(TaskError::Data(format!(
                "ranking `{}`: a batch of {} columns where its input has {width}",
                self.uid,
                batch.num_columns()
            )));
        }
        let windowed = match self.plan.assign {
            Some((assigner, time)) => {
                let w = windows::windowed(batch, assigner, time, &self.held)?;
                self.late += w.untimed;
                Some(w)
            }
            None => None,
        };
        let held = windowed.as_ref().map_or(batch, |w| &w.batch);
        let rows = self.rows.rows(held)?;
        let keys = self.keys.rows(batch)?;
        let times = event_times(held.column(self.time_index()))?;
        let mut emit = Vec::new();
        let mut key = Vec::new();
        for (j, row) in rows.into_iter().enumerate() {
            let Some(t) = times.is_valid(j).then(|| times.value(j)) else {
                self.late += 1;
                continue;
            };
            // A window assigned here is part of the partition's key, after the hashed keys.
            key.clear();
            match &windowed {
                Some(w) => {
                    key.extend_from_slice(keys.row(w.origin[j] as usize).as_ref());
                    key.extend_from_slice(&t.to_be_bytes());
                }
                None => key.extend_from_slice(keys.row(j).as_ref()),
            }
            match self.plan.kind {
                RankKind::TopN { limit, .. } => self.add_ranked(&key, t, row, limit)?,
                RankKind::KeepFirst { .. } => {
                    if let Some(first) = self.add_first(&key, t, row)? {
                        emit.push(first);
                    }
                }
            }
        }
        if emit.is_empty() {
            return Ok(None);
        }
        let numbered: Vec<(&Row, u64)> = emit.iter().map(|r| (r, 1)).collect();
        self.rows
            .output(&numbered, &self.plan.output_schema)
            .map(Some)
    }

    /// The error for a charge beyond the job's state limit.
    fn over_budget(&self, e: OverBudget) -> TaskError {
        TaskError::Data(format!(
            "{e}: ranking `{}` holds {} partitions here ({}). Raise `[limits] state_memory` in the job file (or the jobmanager's --job-state-limit), add taskmanagers and parallelism, set the query's state_ttl (deduplication), or look for a watermark that does not advance (the job's warnings)",
            self.uid,
            self.partitions_in_state(),
            bytesize::ByteSize(self.charge.held()),
        ))
    }

    /// Charges (or gives back) what partition `key` holds now.
    fn recharge(&mut self, key: &[u8]) -> Result<(), TaskError> {
        let Some(p) = self.partitions.get(key) else {
            return Ok(());
        };
        let now =
            PARTITION_OVERHEAD + 4 * key.len() as u64 + p.rows.iter().map(Row::bytes).sum::<u64>();
        let held = p.bytes;
        if now > held {
            self.charge
                .grow(now - held)
                .map_err(|e| self.over_budget(e))?;
        } else {
            self.charge.shrink(held - now);
        }
        if let Some(p) = self.partitions.get_mut(key) {
            p.bytes = now;
        }
        self.dirty.insert(key.into());
        Ok(())
    }

    /// A new partition of `key` at `time`, charged.
    fn open(
        &mut self,
        key: &[u8],
        time: i64,
        rows: Vec<Row>,
        emitted: bool,
    ) -> Result<(), TaskError> {
        self.partitions.insert(
            key.into(),
            Partition {
                time,
                rows,
                emitted,
                stored: false,
                bytes: 0,
            },
        );
        if let Err(e) = self.recharge(key) {
            self.partitions.remove(key);
            self.dirty.remove(key);
            return Err(e);
        }
        Ok(())
    }

    /// Top-N: `row` of the window ending at `end`, kept if among its first `limit`.
    fn add_ranked(
        &mut self,
        key: &[u8],
        end: i64,
        row: Row,
        limit: usize,
    ) -> Result<(), TaskError> {
        if self.is_behind(end) {
            self.late += 1;
            return Ok(());
        }
        let Some(p) = self.partitions.get_mut(key) else {
            self.open(key, end, vec![row], false)?;
            self.timers.insert((end, key.into()));
            return Ok(());
        };
        let at = p.rows.partition_point(|r| r.sort <= row.sort);
        if at >= limit {
            return Ok(());
        }
        p.rows.insert(at, row);
        p.rows.truncate(limit);
        self.recharge(key)
    }

    /// Deduplication: `row` of `key` at `t`; returns it when it is to be emitted at once.
    fn add_first(&mut self, key: &[u8], t: i64, row: Row) -> Result<Option<Row>, TaskError> {
        let Some(p) = self.partitions.get_mut(key) else {
            if self.is_behind(t) {
                self.open(key, t, Vec::new(), true)?;
                self.forget_later(key, t);
                return Ok(Some(row));
            }
            self.open(key, t, vec![row], false)?;
            self.timers.insert((t, key.into()));
            return Ok(None);
        };
        let earlier = match p.rows.first() {
            Some(first) => row.sort < first.sort,
            None => false,
        };
        if p.emitted || !earlier {
            return Ok(None);
        }
        let old = p.time;
        p.time = t;
        p.rows = vec![row];
        self.timers.remove(&(old, Box::from(key)));
        self.timers.insert((t, key.into()));
        self.recharge(key).map(|()| None)
    }

    /// With a state TTL: forget emitted key `key` (of a row at `t`) once the watermark is the
    /// TTL past `t`.
    fn forget_later(&mut self, key: &[u8], t: i64) {
        if let RankKind::KeepFirst { ttl_ms, .. } = self.plan.kind
            && ttl_ms > 0
        {
            self.expiry.insert((t.saturating_add(ttl_ms), key.into()));
        }
    }

    /// Drops partition `key` (its state entry at the next snapshot).
    fn drop_partition(&mut self, key: &[u8]) {
        if let Some(p) = self.partitions.remove(key) {
            self.charge.shrink(p.bytes);
            if p.stored {
                self.tombstones.push(key.into());
            }
        }
        self.dirty.remove(key);
    }

    /// Moves the event-time clock; returns the rows of the partitions it completed.
    pub fn advance(&mut self, watermark: i64) -> Result<Option<RecordBatch>, TaskError> {
        if watermark <= self.watermark {
            return Ok(None);
        }
        self.watermark = watermark;
        let mut fired = Vec::new();
        while let Some((t, _)) = self.timers.first()
            && *t <= watermark
        {
            if let Some((t, key)) = self.timers.pop_first() {
                fired.push((t, key));
            }
        }
        let mut emitted: Vec<(Row, u64)> = Vec::new();
        for (t, key) in fired {
            let Some(p) = self.partitions.get_mut(&key) else {
                continue;
            };
            let rows = std::mem::take(&mut p.rows);
            emitted.extend(rows.into_iter().zip(1..));
            match self.plan.kind {
                RankKind::TopN { .. } => self.drop_partition(&key),
                RankKind::KeepFirst { .. } => {
                    p.emitted = true;
                    self.recharge(&key)?;
                    self.forget_later(&key, t);
                }
            }
        }
        while let Some((t, _)) = self.expiry.first()
            && *t <= watermark
        {
            if let Some((_, key)) = self.expiry.pop_first() {
                self.drop_partition(&key);
            }
        }
        if emitted.is_empty() {
            return Ok(None);
        }
        let numbered: Vec<(&Row, u64)> = emitted.iter().map(|(r, n)| (r, *n)).collect();
        self.rows
            .output(&numbered, &self.plan.output_schema)
            .map(Some)
    }
}
