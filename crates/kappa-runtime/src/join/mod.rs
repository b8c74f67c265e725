//! Inner equi-joins of two streams, bounded in event time. Rows are kept per side and key (and
//! window), encoded in Arrow's row format: a window join emits the pairs of a key's left and
//! right rows of a window when the watermark passes its end, then forgets them; an interval
//! join emits a pair when its second row arrives and forgets a row once no row still to come
//! (at or after the watermark) can match it. Late rows — behind the watermark, or of a window
//! it passed — are counted and dropped, so the output depends only on the rows, not on how the
//! two inputs interleave.

mod saving;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::RangeInclusive;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use kappa_job::plan::{JoinKind, JoinPlan};

use crate::budget::StateCharge;
use crate::error::{TaskError, eval_error};
use crate::keyed::KeyEncoder;
use crate::metrics::SubtaskMetrics;
use crate::operator::{Operator, OperatorSnapshot, Output};
use crate::operators::{keyed_restore, keyed_snapshot};
use crate::state::KeyedState;
use crate::window::assign::Windows;
use crate::window::event_times;

/// Bytes charged per kept row besides its encoding.
const ROW_OVERHEAD: u64 = 48;

/// (key, window start; 0 for an interval join) → the rows, as (event time, encoded row).
type Entries = HashMap<(Box<[u8]>, i64), Vec<(i64, Box<[u8]>)>>;

/// The rows of one side.
struct Side {
    keys: KeyEncoder,
    rows: RowConverter,
    schema: SchemaRef,
    time: usize,
    entries: Entries,
}

impl Side {
    fn new(
        keys: &[kappa_job::sql::CompiledExpr],
        schema: &SchemaRef,
        time: usize,
    ) -> Result<Self, TaskError> {
        let fields = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        Ok(Self {
            keys: KeyEncoder::new(keys)?,
            rows: RowConverter::new(fields).map_err(|e| eval_error("join row encoding", e))?,
            schema: Arc::clone(schema),
            time,
            entries: HashMap::new(),
        })
    }

    /// Columns of `rows` (encoded by this side).
    fn columns<'a>(
        &self,
        rows: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Vec<ArrayRef>, TaskError> {
        let parser = self.rows.parser();
        self.rows
            .convert_rows(rows.map(|r| parser.parse(r)))
            .map_err(|e| eval_error("decoding joined rows", e))
    }
}

/// When the watermark drops a row of `side` at `t` from an interval join: once no row still to
/// come (later than the watermark) of the other side can match it.
fn expiry(kind: JoinKind, side: usize, t: i64) -> i64 {
    match kind {
        JoinKind::Interval { lower_ms, upper_ms } => match side {
            0 => t.saturating_sub(lower_ms),
            _ => t.saturating_add(upper_ms),
        },
        JoinKind::Window { .. } | JoinKind::WindowRows { .. } | JoinKind::Temporal => t,
    }
}

/// The Int64 value of column `c` at row `i` (a window bound of a windowed row).
pub(crate) fn int_at(batch: &RecordBatch, c: usize, i: usize) -> Result<i64, TaskError> {
    batch
        .column(c)
        .as_primitive_opt::<arrow::datatypes::Int64Type>()
        .filter(|a| a.is_valid(i))
        .map(|a| a.value(i))
        .ok_or_else(|| TaskError::Data(format!("a joined row without its window (column {c})")))
}

/// A joined pair waiting to be emitted: the left and right encoded rows and, for a window
/// join, the window.
struct Pair {
    left: Box<[u8]>,
    right: Box<[u8]>,
    window: Option<(i64, i64)>,
}

pub struct JoinOperator {
    uid: String,
    kind: JoinKind,
    max_parallelism: u32,
    charge: StateCharge,
    left_inputs: usize,
    sides: [Side; 2],
    output_schema: SchemaRef,
    watermark: i64,
    /// Window join: (window end, key, window start) of the windows holding rows.
    windows: BTreeSet<(i64, Box<[u8]>, i64)>,
    /// Interval join: (time the watermark drops a row at, side, key).
    expiries: BTreeSet<(i64, usize, Box<[u8]>)>,
    /// (side, key, start) changed since the last snapshot.
    dirty: HashSet<(usize, Box<[u8]>, i64)>,
    metrics: Arc<SubtaskMetrics>,
}

impl JoinOperator {
    pub fn new(
        plan: &JoinPlan,
        max_parallelism: u32,
        charge: StateCharge,
        metrics: Arc<SubtaskMetrics>,
    ) -> Result<Self, TaskError> {
        Ok(Self {
            uid: plan.uid.clone(),
            kind: plan.kind,
            max_parallelism,
            charge,
            left_inputs: plan.left_inputs,
            sides: [
                Side::new(&plan.left_keys, &plan.left_schema, plan.left_time)?,
                Side::new(&plan.right_keys, &plan.right_schema, plan.right_time)?,
            ],
            output_schema: Arc::clone(&plan.output_schema),
            watermark: i64::MIN,
            windows: BTreeSet::new(),
            expiries: BTreeSet::new(),
            dirty: HashSet::new(),
            metrics,
        })
    }

    /// Rows held, on both sides.
    pub fn rows_in_state(&self) -> usize {
        self.sides
            .iter()
            .flat_map(|s| s.entries.values())
            .map(Vec::len)
            .sum()
    }

    fn keep(
        &mut self,
        side: usize,
        key: &[u8],
        start: i64,
        t: i64,
        row: &[u8],
    ) -> Result<(), TaskError> {
        let bytes = ROW_OVERHEAD + (key.len() + row.len()) as u64;
        if let Err(e) = self.charge.grow(bytes) {
            return Err(TaskError::Data(format!(
                "{e}: join `{}` holds {} rows here when a row of key {} arrives. Raise `[limits] state_memory`, narrow the join's time bounds or windows, or look for a watermark that does not advance",
                self.uid,
                self.rows_in_state(),
                self.sides[side].keys.describe(key),
            )));
        }
        self.sides[side]
            .entries
            .entry((key.into(), start))
            .or_default()
            .push((t, row.into()));
        self.dirty.insert((side, key.into(), start));
        Ok(())
    }

    /// Adds a batch of `side`; returns the pairs it completes (interval join).
    fn process(&mut self, side: usize, batch: &RecordBatch) -> Result<Vec<Pair>, TaskError> {
        let keys = self.sides[side].keys.rows(batch)?;
        let times = event_times(batch.column(self.sides[side].time))?;
        let rows = self.sides[side]
            .rows
            .convert_columns(batch.columns())
            .map_err(|e| eval_error("encoding join rows", e))?;
        let mut pairs = Vec::new();
        let mut late = 0;
        for i in 0..batch.num_rows() {
            let Some(t) = times.is_valid(i).then(|| times.value(i)) else {
                late += 1;
                continue;
            };
            let (key, row) = (keys.row(i), rows.row(i));
            match self.kind {
                JoinKind::Window { assigner } => {
                    let windows = Windows::of(assigner, 0, t).ok_or_else(|| {
                        TaskError::Data(format!(
                            "join `{}`: event time {t} has no window",
                            self.uid
                        ))
                    })?;
                    let mut kept = false;
                    for (start, end) in windows.iter() {
                        if self.watermark != i64::MIN && end <= self.watermark {
                            continue;
                        }
                        self.keep(side, key.as_ref(), start, t, row.as_ref())?;
                        self.windows.insert((end, key.as_ref().into(), start));
                        kept = true;
                    }
                    late += usize::from(!kept);
                }
                JoinKind::WindowRows { left, right } => {
                    let (s, e) = if side == 0 { left } else { right };
                    let (start, end) = (int_at(batch, s, i)?, int_at(batch, e, i)?);
                    if self.watermark != i64::MIN && end <= self.watermark {
                        late += 1;
                        continue;
                    }
                    self.keep(side, key.as_ref(), start, t, row.as_ref())?;
                    self.windows.insert((end, key.as_ref().into(), start));
                }
                JoinKind::Temporal => {
                    if self.watermark != i64::MIN && t < self.watermark {
                        late += 1;
                        continue;
                    }
                    self.keep(side, key.as_ref(), 0, t, row.as_ref())?;
                    match side {
                        // A left row waits for the watermark to pass its time: then every
                        // version up to it is known.
                        0 => {
                            self.windows.insert((t, key.as_ref().into(), 0));
                        }
                        _ => self.prune_versions(key.as_ref()),
                    }
                }
                JoinKind::Interval { lower_ms, upper_ms } => {
                    if self.watermark != i64::MIN && t < self.watermark {
                        late += 1;
                        continue;
                    }
                    let other = &self.sides[1 - side];
                    if let Some(theirs) = other.entries.get(&(key.as_ref().into(), 0)) {
                        for (t2, r2) in theirs {
                            let diff = match side {
                                0 => t.saturating_sub(*t2),
                                _ => t2.saturating_sub(t),
                            };
                            if (lower_ms..=upper_ms).contains(&diff) {
                                let (left, right) = match side {
                                    0 => (row.as_ref().into(), r2.clone()),
                                    _ => (r2.clone(), row.as_ref().into()),
                                };
                                pairs.push(Pair {
                                    left,
                                    right,
                                    window: None,
                                });
                            }
                        }
                    }
                    self.keep(side, key.as_ref(), 0, t, row.as_ref())?;
                    self.expiries
                        .insert((expiry(self.kind, side, t), side, key.as_ref().into()));
                }
            }
        }
        SubtaskMetrics::add(&self.metrics.late_dropped, late);
        Ok(pairs)
    }

    /// Moves the event-time clock: emits the windows it closes (window join) and forgets the
    /// rows no later row can match.
    fn advance(&mut self, watermark: i64) -> Vec<Pair> {
        if watermark <= self.watermark {
            return Vec::new();
        }
        self.watermark = watermark;
        let mut pairs = Vec::new();
        if self.kind == JoinKind::Temporal {
            while let Some((t, _, _)) = self.windows.first() {
                if *t >= watermark {
                    break;
                }
                let Some((_, key, _)) = self.windows.pop_first() else {
                    break;
                };
                pairs.extend(self.fire_temporal(&key));
            }
            return pairs;
        }
        while let Some((end, _, _)) = self.windows.first() {
            if *end > watermark {
                break;
            }
            let Some((end, key, start)) = self.windows.pop_first() else {
                break;
            };
            let k = (key.clone(), start);
            let left = self.forget(0, &k);
            let right = self.forget(1, &k);
            for (_, l) in &left {
                for (_, r) in &right {
                    pairs.push(Pair {
                        left: l.clone(),
                        right: r.clone(),
                        window: Some((start, end)),
                    });
                }
            }
        }
        while let Some((t, _, _)) = self.expiries.first() {
            if *t >= watermark {
                break;
            }
            let Some((_, side, key)) = self.expiries.pop_first() else {
                break;
            };
            let kind = self.kind;
            let k = (key, 0);
            let Some(rows) = self.sides[side].entries.get_mut(&k) else {
                continue;
            };
            let mut freed = 0;
            rows.retain(|(t, r)| {
                let keep = expiry(kind, side, *t) >= watermark;
                if !keep {
                    freed += ROW_OVERHEAD + (k.0.len() + r.len()) as u64;
                }
                keep
            });
            if rows.is_empty() {
                self.sides[side].entries.remove(&k);
            }
            self.charge.shrink(freed);
            self.dirty.insert((side, k.0, 0));
        }
        pairs
    }

    /// Temporal join: pairs the left rows of `key` the watermark passed with the version of
    /// their time (the right row with the latest time not after it), and forgets them.
    fn fire_temporal(&mut self, key: &[u8]) -> Vec<Pair> {
        let k: (Box<[u8]>, i64) = (key.into(), 0);
        let watermark = self.watermark;
        let due: Vec<(i64, Box<[u8]>)> = match self.sides[0].entries.get_mut(&k) {
            Some(rows) => {
                let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(rows)
                    .into_iter()
                    .partition(|(t, _)| *t < watermark);
                *rows = wait;
                due
            }
            None => Vec::new(),
        };
        if self.sides[0].entries.get(&k).is_some_and(Vec::is_empty) {
            self.sides[0].entries.remove(&k);
        }
        let freed: u64 = due
            .iter()
            .map(|(_, r)| ROW_OVERHEAD + (key.len() + r.len()) as u64)
            .sum();
        self.charge.shrink(freed);
        self.dirty.insert((0, k.0.clone(), 0));
        let versions = self.sides[1].entries.get(&k);
        let mut pairs = Vec::new();
        for (t, left) in due {
            // The latest version at t; among equal times the last to arrive.
            let version = versions.and_then(|v| {
                v.iter()
                    .enumerate()
                    .filter(|(_, (vt, _))| *vt <= t)
                    .max_by_key(|(i, (vt, _))| (*vt, *i))
                    .map(|(_, (_, row))| row.clone())
            });
            if let Some(right) = version {
                pairs.push(Pair {
                    left,
                    right,
                    window: None,
                });
            }
        }
        self.prune_versions(key);
        pairs
    }

    /// Temporal join: forgets the versions of `key` no left row still to come can use — all
    /// but the latest of those before the watermark.
    fn prune_versions(&mut self, key: &[u8]) {
        let k: (Box<[u8]>, i64) = (key.into(), 0);
        let watermark = self.watermark;
        let Some(versions) = self.sides[1].entries.get_mut(&k) else {
            return;
        };
        let latest_before = versions
            .iter()
            .enumerate()
            .filter(|(_, (t, _))| *t < watermark)
            .max_by_key(|(i, (t, _))| (*t, *i))
            .map(|(i, _)| i);
        let before = versions.len();
        let mut freed = 0;
        let mut i = 0;
        versions.retain(|(t, r)| {
            let keep = *t >= watermark || Some(i) == latest_before;
            if !keep {
                freed += ROW_OVERHEAD + (key.len() + r.len()) as u64;
            }
            i += 1;
            keep
        });
        if versions.len() != before {
            self.charge.shrink(freed);
            self.dirty.insert((1, k.0, 0));
        }
    }

    /// Removes an entry of `side`, giving back its bytes; its state is deleted at the next
    /// snapshot.
    fn forget(&mut self, side: usize, k: &(Box<[u8]>, i64)) -> Vec<(i64, Box<[u8]>)> {
        let rows = self.sides[side].entries.remove(k).unwrap_or_default();
        let bytes: u64 = rows
            .iter()
            .map(|(_, r)| ROW_OVERHEAD + (k.0.len() + r.len()) as u64)
            .sum();
        self.charge.shrink(bytes);
        if !rows.is_empty() {
            self.dirty.insert((side, k.0.clone(), k.1));
        }
        rows
    }

    /// The output rows of `pairs`: the left columns (with the window for a window join), then
    /// the right ones (likewise).
    fn output(&self, pairs: &[Pair]) -> Result<Option<RecordBatch>, TaskError> {
        if pairs.is_empty() {
            return Ok(None);
        }
        let mut columns = self.sides[0].columns(pairs.iter().map(|p| p.left.as_ref()))?;
        let window = |f: fn(&(i64, i64)) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                pairs.iter().map(|p| p.window.as_ref().map_or(0, f)),
            ))
        };
        let windowed = matches!(self.kind, JoinKind::Window { .. });
        if windowed {
            columns.push(window(|w| w.0));
            columns.push(window(|w| w.1));
        }
        columns.extend(self.sides[1].columns(pairs.iter().map(|p| p.right.as_ref()))?);
        if windowed {
            columns.push(window(|w| w.0));
            columns.push(window(|w| w.1));
        }
        RecordBatch::try_new(Arc::clone(&self.output_schema), columns)
            .map(Some)
            .map_err(|e| eval_error("building joined rows", e))
    }
}

impl Operator for JoinOperator {
    fn process_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), TaskError> {
        let side = usize::from(input >= self.left_inputs);
        let pairs = self.process(side, &batch)?;
        if let Some(b) = self.output(&pairs)? {
            out.emit(0, b);
        }
        Ok(())
    }

    fn process_watermark(&mut self, watermark: i64, out: &mut Output) -> Result<(), TaskError> {
        let pairs = self.advance(watermark);
        if let Some(b) = self.output(&pairs)? {
            out.emit(0, b);
        }
        Ok(())
    }

    fn snapshot(
        &mut self,
        n: u64,
        state: Option<&mut dyn KeyedState>,
    ) -> Result<OperatorSnapshot, TaskError> {
        let written = state.map(|state| self.save(state));
        keyed_snapshot("join", n, written)
    }

    fn restore(
        &mut self,
        state: &dyn KeyedState,
        groups: RangeInclusive<u32>,
    ) -> Result<usize, TaskError> {
        keyed_restore("join", self.load(state, groups))
    }
}
