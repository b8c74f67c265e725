//! The aggregates of a window operator: one [`Accumulator`] per aggregate, each over all the
//! operator's window groups (column-wise), updated row by row, merged when sessions join,
//! saved with each group and read out as Arrow arrays.
//!
//! Saved bytes per group and aggregate: the numeric aggregates ([`super::numeric`]) keep the
//! fixed 24 bytes they always had, so a state saved before the others existed reads the same;
//! distinct sets, sketches and first/last values follow as a u32 length and their bytes. Which
//! is which comes from the job's aggregates, as the layout always did.

use arrow::array::ArrayRef;
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use kappa_job::sql::{AggregateCall, AggregateFunction};

use super::distinct::DistinctSets;
use super::hll::{self, Sketch};
use super::numeric::{Numeric, NumericArgs};
use super::pick::{Pick, Picks};
use super::saved::{CorruptState, Reader};
use super::values::{Encoded, ValueCodec};
use crate::error::{TaskError, eval_error};

/// An integer sum or a count that no longer fits in i64; the group keeps its last value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{aggregate}` overflows 64-bit integers")]
pub struct Overflow {
    /// The aggregate as in the job file, e.g. `total = sum(amount)`.
    pub aggregate: String,
}

/// The aggregate named `name` as errors show it, e.g. `total = sum(amount)`.
pub fn label(name: &str, call: &AggregateCall) -> String {
    match &call.argument {
        Some(a) => format!("{name} = {}", a.text),
        None => format!("{name} = {}(*)", call.function.name()),
    }
}

/// The argument values of one batch, as the accumulator takes them.
pub enum ArgValues {
    Numeric(NumericArgs),
    /// Values kept whole, encoded.
    Encoded(Encoded),
}

/// What an aggregate keeps per group.
#[derive(Debug)]
enum Kind {
    Numeric(Numeric),
    Distinct(DistinctSets),
    Approx(Vec<Sketch>),
    Pick(Picks),
}

/// One aggregate over all window groups of a subtask.
#[derive(Debug)]
pub struct Accumulator {
    /// The aggregate as in the job file, for errors.
    label: String,
    /// The encoding of the argument's values, for the aggregates that keep them.
    codec: Option<ValueCodec>,
    kind: Kind,
    /// min/max of dates, times, timestamps and durations: kept as Int64 numbers, given back
    /// in this type.
    temporal: Option<DataType>,
}

impl Accumulator {
    /// The accumulator of the aggregate named `name` (its output column).
    pub fn new(name: &str, call: &AggregateCall) -> Result<Self, TaskError> {
        let label = label(name, call);
        let arg_type = call.argument.as_ref().map(|a| &a.data_type);
        let text = arg_type.is_some_and(|t| !t.is_primitive());
        let kind = match call.function {
            AggregateFunction::CountDistinct => Kind::Distinct(DistinctSets::default()),
            AggregateFunction::ApproxCountDistinct => Kind::Approx(Vec::new()),
            AggregateFunction::FirstValue => Kind::Pick(Picks::new(Pick::First)),
            AggregateFunction::LastValue => Kind::Pick(Picks::new(Pick::Last)),
            AggregateFunction::Min if text => Kind::Pick(Picks::new(Pick::Min)),
            AggregateFunction::Max if text => Kind::Pick(Picks::new(Pick::Max)),
            _ => {
                let min_max = matches!(
                    call.function,
                    AggregateFunction::Min | AggregateFunction::Max
                );
                return Ok(Self {
                    kind: Kind::Numeric(Numeric::new(label.clone(), call)),
                    label,
                    codec: None,
                    temporal: arg_type.filter(|t| min_max && t.is_temporal()).cloned(),
                });
            }
        };
        let codec = call
            .argument
            .as_ref()
            .and_then(|a| ValueCodec::new(&a.data_type))
            .ok_or_else(|| {
                TaskError::Data(format!(
                    "`{label}`: its argument's type cannot be aggregated"
                ))
            })?;
        Ok(Self {
            label,
            codec: Some(codec),
            kind,
            temporal: None,
        })
    }

    /// Converts an evaluated argument column to what the accumulator takes.
    pub fn arg_values(&self, column: Option<ArrayRef>) -> Result<ArgValues, TaskError> {
        let codec = match (&self.kind, &self.codec) {
            (Kind::Numeric(n), _) => {
                let column = match (column, &self.temporal) {
                    (Some(c), Some(_)) => Some(as_number(&c).map_err(|e| {
                        eval_error(&format!("the argument of `{}`", self.label), e)
                    })?),
                    (column, _) => column,
                };
                return n.arg_values(column).map(ArgValues::Numeric);
            }
            (_, Some(codec)) => codec,
            (_, None) => return Err(self.no_argument()),
        };
        let column = column.ok_or_else(|| self.no_argument())?;
        let distinct = matches!(self.kind, Kind::Distinct(_) | Kind::Approx(_));
        codec
            .encode(&column, distinct)
            .map(ArgValues::Encoded)
            .map_err(|e| eval_error(&format!("the argument of `{}`", self.label), e))
    }

    fn no_argument(&self) -> TaskError {
        TaskError::Data(format!("`{}` needs an argument", self.label))
    }

    /// Makes room for group ids below `len`, new slots empty.
    pub fn ensure(&mut self, len: usize) {
        match &mut self.kind {
            Kind::Numeric(n) => n.ensure(len),
            Kind::Distinct(d) => d.ensure(len),
            Kind::Approx(s) if s.len() < len => s.resize_with(len, Sketch::default),
            Kind::Approx(_) => {}
            Kind::Pick(p) => p.ensure(len),
        }
    }

    /// Empties a slot for reuse.
    pub fn reset(&mut self, g: usize) {
        match &mut self.kind {
            Kind::Numeric(n) => n.reset(g),
            Kind::Distinct(d) => d.reset(g),
            Kind::Approx(s) => s[g] = Sketch::default(),
            Kind::Pick(p) => p.reset(g),
        }
    }

    /// Adds row `row` of `values`, at event time `time`, to group `g`.
    #[inline]
    pub fn update(
        &mut self,
        g: usize,
        values: &ArgValues,
        row: usize,
        time: i64,
    ) -> Result<(), Overflow> {
        match (&mut self.kind, values) {
            (Kind::Numeric(n), ArgValues::Numeric(v)) => n.update(g, v, row)?,
            (Kind::Distinct(d), ArgValues::Encoded(v)) => d.insert(g, v.get(row)),
            (Kind::Approx(s), ArgValues::Encoded(v)) => {
                if let Some(v) = v.get(row) {
                    s[g].insert(v);
                }
            }
            (Kind::Pick(p), ArgValues::Encoded(v)) => p.update(g, v.get(row), time),
            // `arg_values` of this accumulator made the values: the kinds always match.
            _ => {}
        }
        Ok(())
    }

    /// Whether the aggregate of `call` can take a row out again ([`Accumulator::retract`]).
    pub fn retracts(call: &AggregateCall) -> bool {
        matches!(
            call.function,
            AggregateFunction::Count | AggregateFunction::Sum | AggregateFunction::Avg
        )
    }

    /// Takes row `row` of `values` out of group `g` (a deleted row of a change stream); only
    /// for aggregates that [`Accumulator::retracts`].
    pub fn retract(&mut self, g: usize, values: &ArgValues, row: usize) -> Result<(), Overflow> {
        if let (Kind::Numeric(n), ArgValues::Numeric(v)) = (&mut self.kind, values) {
            n.retract(g, v, row)?;
        }
        Ok(())
    }

    /// Folds group `src` into group `dst` (session windows joining).
    pub fn merge(&mut self, dst: usize, src: usize) -> Result<(), Overflow> {
        match &mut self.kind {
            Kind::Numeric(n) => n.merge(dst, src)?,
            Kind::Distinct(d) => d.merge(dst, src),
            Kind::Approx(s) => {
                let from = std::mem::take(&mut s[src]);
                s[dst].merge(&from);
            }
            Kind::Pick(p) => p.merge(dst, src),
        }
        Ok(())
    }

    /// Estimated heap bytes group `g` holds beyond its fixed slot (values, sets, sketches).
    pub fn heap(&self, g: usize) -> u64 {
        match &self.kind {
            Kind::Numeric(_) => 0,
            Kind::Distinct(d) => d.heap(g),
            Kind::Approx(s) => s[g].heap(),
            Kind::Pick(p) => p.heap(g),
        }
    }

    /// Appends the state of group `g` to `out`.
    pub fn save(&self, g: usize, out: &mut Vec<u8>) {
        let at = out.len();
        match &self.kind {
            Kind::Numeric(n) => return n.save(g, out),
            Kind::Distinct(d) => {
                out.extend_from_slice(&[0; 4]);
                d.save(g, out);
            }
            Kind::Approx(s) => {
                out.extend_from_slice(&[0; 4]);
                s[g].save(out);
            }
            Kind::Pick(p) => {
                out.extend_from_slice(&[0; 4]);
                p.save(g, out);
            }
        }
        // The length before the bytes; a group's state beyond 4 GiB cannot be held within
        // any state limit, and saturating makes a reader report it corrupt.
        let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// Sets group `g` from the bytes [`Accumulator::save`] wrote, read from `bytes`.
    pub fn load(&mut self, g: usize, bytes: &mut Reader<'_>) -> Result<(), CorruptState> {
        if let Kind::Numeric(n) = &mut self.kind {
            n.load(g, &bytes.array("numeric aggregate")?);
            return Ok(());
        }
        let mut blob = Reader::new(bytes.blob("aggregate")?);
        match (&mut self.kind, &self.codec) {
            (Kind::Distinct(d), Some(codec)) => {
                d.load(g, &mut blob, codec)?;
                blob.finish()
            }
            (Kind::Approx(s), _) => {
                s[g] = Sketch::load(blob)?;
                Ok(())
            }
            (Kind::Pick(p), Some(codec)) => p.load(g, blob, codec),
            // `new` gives every kind but the numeric ones a codec.
            _ => Ok(()),
        }
    }

    /// The values of the given groups, in order.
    pub fn output(&self, groups: &[u32]) -> Result<ArrayRef, TaskError> {
        Ok(match (&self.kind, &self.codec) {
            (Kind::Numeric(n), _) => match &self.temporal {
                None => n.output(groups),
                Some(t) => from_number(&n.output(groups), t)
                    .map_err(|e| eval_error(&format!("reading out `{}`", self.label), e))?,
            },
            (Kind::Distinct(d), _) => d.output(groups),
            (Kind::Approx(s), _) => hll::output(s, groups),
            (Kind::Pick(p), Some(codec)) => p
                .output(groups, codec)
                .map_err(|e| eval_error(&format!("reading out `{}`", self.label), e))?,
            (Kind::Pick(_), None) => return Err(self.no_argument()),
        })
    }
}

/// A column of dates, times, timestamps or durations as its numbers (the 32-bit types cast to
/// integers only as Int32).
fn as_number(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    match column.data_type().primitive_width() {
        Some(4) => cast(column, &DataType::Int32),
        _ => cast(column, &DataType::Int64),
    }
}

/// Int64 numbers as a column of the date, time, timestamp or duration type `t`.
fn from_number(numbers: &ArrayRef, t: &DataType) -> Result<ArrayRef, ArrowError> {
    match t.primitive_width() {
        Some(4) => cast(&cast(numbers, &DataType::Int32)?, t),
        _ => cast(numbers, t),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, LargeStringArray, StringViewArray};
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use kappa_job::plan::aggregate_type;
    use kappa_job::sql::compile_aggregate;

    use super::*;

    /// `text` over `column` (x): rows 0 and 1 in group 0, the rest in group 1, group 1 joined
    /// into 0, then saved and loaded into a new accumulator; its value.
    fn merged_and_restored(text: &str, column: ArrayRef) -> ArrayRef {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "x",
            column.data_type().clone(),
            true,
        )]));
        let call = compile_aggregate(text, &schema).unwrap();
        let mut a = Accumulator::new("y", &call).unwrap();
        a.ensure(2);
        let values = a.arg_values(Some(Arc::clone(&column))).unwrap();
        for row in 0..column.len() {
            a.update(usize::from(row > 1), &values, row, 0).unwrap();
        }
        a.merge(0, 1).unwrap();
        let mut saved = Vec::new();
        a.save(0, &mut saved);
        let mut restored = Accumulator::new("y", &call).unwrap();
        restored.ensure(1);
        let mut reader = Reader::new(&saved);
        restored.load(0, &mut reader).unwrap();
        reader.finish().unwrap();
        let out = restored.output(&[0]).unwrap();
        assert_eq!(out.data_type(), &aggregate_type(&call), "{text}");
        out
    }

    #[test]
    fn min_and_max_of_times_keep_their_type() {
        let numbers =
            Arc::new(Int64Array::from(vec![Some(5), None, Some(-3), Some(9)])) as ArrayRef;
        for t in [
            DataType::Date32,
            DataType::Date64,
            DataType::Time32(TimeUnit::Second),
            DataType::Time64(TimeUnit::Microsecond),
            DataType::Timestamp(TimeUnit::Nanosecond, Some("+02:00".into())),
            DataType::Duration(TimeUnit::Millisecond),
        ] {
            // Arrow casts integers to the 32-bit types from Int32 only.
            let column = match t.primitive_width() {
                Some(4) => cast(&cast(&numbers, &DataType::Int32).unwrap(), &t),
                _ => cast(&numbers, &t),
            }
            .unwrap();
            // min is row 2 (-3), max row 3 (9).
            for (text, row) in [("min(x)", 2), ("max(x)", 3)] {
                let out = merged_and_restored(text, Arc::clone(&column));
                assert_eq!(&out, &column.slice(row, 1), "{text} of {t}");
            }
        }
    }

    #[test]
    fn min_and_max_of_strings_compare_code_points_and_skip_nulls() {
        let strings = vec![Some("b"), None, Some("ä"), Some("a")];
        let views = Arc::new(StringViewArray::from(strings.clone())) as ArrayRef;
        let large = Arc::new(LargeStringArray::from(strings)) as ArrayRef;
        for column in [views, large] {
            for (text, expected) in [("min(x)", "a"), ("max(x)", "ä")] {
                let out = merged_and_restored(text, Arc::clone(&column));
                let want = cast(
                    &(Arc::new(LargeStringArray::from(vec![expected])) as ArrayRef),
                    column.data_type(),
                );
                assert_eq!(&out, &want.unwrap(), "{text} of {}", column.data_type());
            }
        }
        // A group of nulls only has no value.
        let nulls = Arc::new(LargeStringArray::from(vec![None::<&str>; 3])) as ArrayRef;
        assert!(merged_and_restored("max(x)", nulls).is_null(0));
    }
}
