//! A join's rows in keyed state: one entry per (side, key, window start), its rows as an Arrow
//! IPC stream of the side's columns. Entries changed since the last snapshot are rewritten,
//! emptied ones deleted. What is read back is checked (side, layout, schema) and decoded by
//! Arrow's IPC reader, which validates it, before it is re-encoded.

use std::io::Cursor;
use std::ops::RangeInclusive;

use arrow::array::{Array, RecordBatch};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use kappa_job::keygroup::key_group_of;
use kappa_job::plan::JoinKind;

use super::{JoinOperator, expiry};
use crate::state::{KeyedState, StateFailure, restore_each};
use crate::window::event_times;

/// State key of an entry: side (one byte), the encoded key, the window start (big endian).
fn state_key(side: usize, key: &[u8], start: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 9);
    out.push(side as u8);
    out.extend_from_slice(key);
    out.extend_from_slice(&start.to_be_bytes());
    out
}

impl JoinOperator {
    /// Writes the entries changed since the last snapshot.
    pub(super) fn save(&mut self, state: &mut dyn KeyedState) -> Result<(), StateFailure> {
        for (side, key, start) in self.dirty.drain() {
            let kg = key_group_of(&key, self.max_parallelism);
            let at = state_key(side, &key, start);
            let s = &self.sides[side];
            let Some(rows) = s.entries.get(&(key, start)) else {
                state.delete(kg, &at);
                continue;
            };
            let columns = s
                .columns(rows.iter().map(|(_, r)| r.as_ref()))
                .map_err(|e| StateFailure(e.to_string()))?;
            let batch = RecordBatch::try_new(s.schema.clone(), columns)
                .map_err(|e| StateFailure(format!("join rows: {e}")))?;
            let mut writer = StreamWriter::try_new(Vec::new(), &s.schema)
                .map_err(|e| StateFailure(format!("join rows: {e}")))?;
            writer
                .write(&batch)
                .and_then(|()| writer.finish())
                .map_err(|e| StateFailure(format!("join rows: {e}")))?;
            let bytes = writer
                .into_inner()
                .map_err(|e| StateFailure(format!("join rows: {e}")))?;
            state.put(kg, &at, &bytes);
        }
        state.commit()
    }

    /// Loads the entries of key groups `groups` (a fresh operator; several snapshots may be
    /// loaded when rescaling); returns how many.
    pub(super) fn load(
        &mut self,
        state: &dyn KeyedState,
        groups: RangeInclusive<u32>,
    ) -> Result<usize, StateFailure> {
        restore_each(state, groups, |_, at, value| {
            let (side, rest) = match at.split_first() {
                Some((&s, rest)) if s < 2 && rest.len() >= 8 => (usize::from(s), rest),
                _ => return Err(StateFailure("a join state entry of another layout".into())),
            };
            let (key, start) = rest.split_at(rest.len() - 8);
            let start = i64::from_be_bytes(
                start
                    .try_into()
                    .map_err(|_| StateFailure("bad window start".into()))?,
            );
            let reader = StreamReader::try_new(Cursor::new(value), None)
                .map_err(|e| StateFailure(format!("join rows: {e}")))?;
            if reader.schema().fields() != self.sides[side].schema.fields() {
                return Err(StateFailure(
                    "join state rows do not have this join's columns".into(),
                ));
            }
            for batch in reader {
                let batch = batch.map_err(|e| StateFailure(format!("join rows: {e}")))?;
                let times = event_times(batch.column(self.sides[side].time))
                    .map_err(|e| StateFailure(e.to_string()))?;
                let rows = self.sides[side]
                    .rows
                    .convert_columns(batch.columns())
                    .map_err(|e| StateFailure(format!("join rows: {e}")))?;
                for i in 0..batch.num_rows() {
                    if !times.is_valid(i) {
                        return Err(StateFailure("a join state row without event time".into()));
                    }
                    let t = times.value(i);
                    self.keep(side, key, start, t, rows.row(i).as_ref())
                        .map_err(|e| StateFailure(e.to_string()))?;
                    match self.kind {
                        JoinKind::Window { assigner } => {
                            let end = crate::window::assign::Windows::of(assigner, 0, t)
                                .and_then(|w| w.iter().find(|(s, _)| *s == start))
                                .map(|(_, e)| e)
                                .ok_or_else(|| {
                                    StateFailure(format!(
                                        "a join state row at {t} outside its window starting {start}"
                                    ))
                                })?;
                            self.windows.insert((end, key.into(), start));
                        }
                        JoinKind::WindowRows { left, right } => {
                            let e = if side == 0 { left.1 } else { right.1 };
                            let end = super::int_at(&batch, e, i)
                                .map_err(|e| StateFailure(e.to_string()))?;
                            self.windows.insert((end, key.into(), start));
                        }
                        JoinKind::Temporal => {
                            if side == 0 {
                                self.windows.insert((t, key.into(), 0));
                            }
                        }
                        JoinKind::Interval { .. } => {
                            self.expiries
                                .insert((expiry(self.kind, side, t), side, key.into()));
                        }
                    }
                }
            }
            Ok(())
        })
    }
}
