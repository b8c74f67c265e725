//! The numeric aggregates (count, sum, min, max, avg; min and max of dates, times, timestamps
//! and durations as their Int64 numbers) kept column-wise: one fixed 24-byte slot
//! per window group, updated row by row, merged when session windows join, read out as Arrow
//! arrays. Integer sums and counts are checked: one that no longer fits in i64 is an error,
//! never a wrapped number; integer averages keep their sum exactly.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::DataType;
use arrow::datatypes::{Float64Type, Int64Type};
use kappa_job::sql::{AggregateCall, AggregateFunction};

use super::accumulator::Overflow;
use crate::error::{TaskError, eval_error};

/// The argument values of one batch, in the accumulator's arithmetic type.
pub enum NumericArgs {
    /// count(*): every row counts.
    Star,
    /// count(x): the rows where x is not null count, whatever its type.
    Any(ArrayRef),
    Int(Int64Array),
    Float(Float64Array),
}

/// One numeric aggregate over all window groups of a subtask.
#[derive(Debug, Clone)]
pub struct Numeric {
    /// The aggregate as in the job file, for errors.
    label: String,
    function: AggregateFunction,
    integer: bool,
    ints: Vec<i64>,
    floats: Vec<f64>,
    counts: Vec<i64>,
}

impl Numeric {
    /// The accumulator of `call`, shown as `label` in errors.
    pub fn new(label: String, call: &AggregateCall) -> Self {
        let integer = call
            .argument
            .as_ref()
            .is_some_and(|a| a.data_type.is_integer() || a.data_type.is_temporal());
        Self {
            label,
            function: call.function,
            integer,
            ints: Vec::new(),
            floats: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Converts an evaluated argument column to the arithmetic type.
    pub fn arg_values(&self, column: Option<ArrayRef>) -> Result<NumericArgs, TaskError> {
        let Some(col) = column else {
            return Ok(NumericArgs::Star);
        };
        if self.function == AggregateFunction::Count {
            return Ok(NumericArgs::Any(col));
        }
        let target = if self.integer {
            DataType::Int64
        } else {
            DataType::Float64
        };
        // Not `safe`: a value the type cannot hold (an unsigned one beyond i64) fails instead
        // of turning into a null that the aggregate would skip.
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let c = cast_with_options(&col, &target, &options)
            .map_err(|e| eval_error(&format!("the argument of `{}`", self.label), e))?;
        Ok(if self.integer {
            NumericArgs::Int(c.as_primitive::<Int64Type>().clone())
        } else {
            NumericArgs::Float(c.as_primitive::<Float64Type>().clone())
        })
    }

    /// Makes room for group ids below `len`, new slots empty.
    pub fn ensure(&mut self, len: usize) {
        if self.counts.len() < len {
            self.counts.resize(len, 0);
            self.ints.resize(len, 0);
            self.floats.resize(len, 0.0);
        }
    }

    /// Appends the state of group `g` to `out` (24 bytes).
    pub fn save(&self, g: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.counts[g].to_le_bytes());
        out.extend_from_slice(&self.ints[g].to_le_bytes());
        out.extend_from_slice(&self.floats[g].to_le_bytes());
    }

    /// Bytes [`Numeric::save`] writes per group.
    pub const SAVED_LEN: usize = 24;

    /// Sets group `g` from bytes written by [`Numeric::save`].
    pub fn load(&mut self, g: usize, bytes: &[u8; Self::SAVED_LEN]) {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            b
        };
        self.counts[g] = i64::from_le_bytes(word(0));
        self.ints[g] = i64::from_le_bytes(word(1));
        self.floats[g] = f64::from_le_bytes(word(2));
    }

    /// Empties a slot for reuse.
    pub fn reset(&mut self, g: usize) {
        self.counts[g] = 0;
        self.ints[g] = 0;
        self.floats[g] = 0.0;
    }

    /// Adds row `row` of `values` to group `g`.
    #[inline]
    pub fn update(&mut self, g: usize, values: &NumericArgs, row: usize) -> Result<(), Overflow> {
        match values {
            NumericArgs::Star => self.counts[g] = self.count_plus(g, 1)?,
            NumericArgs::Any(a) => {
                if a.is_valid(row) {
                    self.counts[g] = self.count_plus(g, 1)?;
                }
            }
            NumericArgs::Int(a) => {
                if a.is_valid(row) {
                    self.add_int(g, a.value(row), 1)?;
                }
            }
            NumericArgs::Float(a) => {
                if a.is_valid(row) {
                    self.add_float(g, a.value(row), 1)?;
                }
            }
        }
        Ok(())
    }

    /// Takes row `row` of `values` out of group `g` again (a deleted row of a change stream).
    /// Only counts, sums and averages can: min and max keep no more than their value, so the
    /// planner never retracts from them, and they are left as they are.
    pub fn retract(&mut self, g: usize, values: &NumericArgs, row: usize) -> Result<(), Overflow> {
        match values {
            NumericArgs::Star => self.counts[g] = self.count_plus(g, -1)?,
            NumericArgs::Any(a) => {
                if a.is_valid(row) {
                    self.counts[g] = self.count_plus(g, -1)?;
                }
            }
            NumericArgs::Int(a) if a.is_valid(row) => match self.function {
                AggregateFunction::Avg => self.add_to_sum(g, -i128::from(a.value(row)), -1)?,
                AggregateFunction::Sum => {
                    let count = self.count_plus(g, -1)?;
                    self.ints[g] = self.ints[g]
                        .checked_sub(a.value(row))
                        .ok_or_else(|| self.overflow())?;
                    self.counts[g] = count;
                }
                _ => {}
            },
            NumericArgs::Float(a) if a.is_valid(row) => match self.function {
                AggregateFunction::Sum | AggregateFunction::Avg => {
                    self.counts[g] = self.count_plus(g, -1)?;
                    // Without values the sum is exactly nothing, whatever rounding left.
                    self.floats[g] = match self.counts[g] {
                        0 => 0.0,
                        _ => self.floats[g] - a.value(row),
                    };
                }
                _ => {}
            },
            NumericArgs::Int(_) | NumericArgs::Float(_) => {}
        }
        Ok(())
    }

    fn overflow(&self) -> Overflow {
        Overflow {
            aggregate: self.label.clone(),
        }
    }

    /// The count of group `g` after `n` more values.
    fn count_plus(&self, g: usize, n: i64) -> Result<i64, Overflow> {
        self.counts[g].checked_add(n).ok_or_else(|| self.overflow())
    }

    fn add_int(&mut self, g: usize, v: i64, n: i64) -> Result<(), Overflow> {
        if self.function == AggregateFunction::Avg {
            return self.add_to_sum(g, i128::from(v), n);
        }
        let first = self.counts[g] == 0;
        let count = self.count_plus(g, n)?;
        let slot = self.ints[g];
        self.ints[g] = match self.function {
            AggregateFunction::Sum => slot.checked_add(v).ok_or_else(|| self.overflow())?,
            AggregateFunction::Min if first => v,
            AggregateFunction::Min => slot.min(v),
            AggregateFunction::Max if first => v,
            AggregateFunction::Max => slot.max(v),
            // Count and Avg do not keep this slot; the other functions are not numeric.
            _ => slot,
        };
        self.counts[g] = count;
        Ok(())
    }

    /// The exact sum of an integer average: `floats` holds it rounded to f64 and `ints` the
    /// rest, so a state saved while averages kept only an f64 sum (rest 0) reads the same.
    /// Saturates only on a corrupt saved state.
    fn exact_sum(&self, g: usize) -> i128 {
        (self.floats[g] as i128).saturating_add(i128::from(self.ints[g]))
    }

    /// Integer averages: adds `sum`, the sum of `n` values, to group `g`.
    fn add_to_sum(&mut self, g: usize, sum: i128, n: i64) -> Result<(), Overflow> {
        let count = self.count_plus(g, n)?;
        let total = self
            .exact_sum(g)
            .checked_add(sum)
            .ok_or_else(|| self.overflow())?;
        let rounded = total as f64;
        let rest = total
            .checked_sub(rounded as i128)
            .and_then(|r| i64::try_from(r).ok())
            .ok_or_else(|| self.overflow())?;
        self.floats[g] = rounded;
        self.ints[g] = rest;
        self.counts[g] = count;
        Ok(())
    }

    /// The mean of an integer average, from its exact sum.
    fn exact_mean(&self, g: usize) -> f64 {
        divide(self.exact_sum(g), self.counts[g])
    }

    /// Float sums and averages do not wrap: past f64's range they become infinite.
    fn add_float(&mut self, g: usize, v: f64, n: i64) -> Result<(), Overflow> {
        let first = self.counts[g] == 0;
        self.counts[g] = self.count_plus(g, n)?;
        let slot = &mut self.floats[g];
        *slot = match self.function {
            AggregateFunction::Sum | AggregateFunction::Avg => *slot + v,
            AggregateFunction::Min if first => v,
            AggregateFunction::Min => slot.min(v),
            AggregateFunction::Max if first => v,
            AggregateFunction::Max => slot.max(v),
            // Count does not keep this slot; the other functions are not numeric.
            _ => *slot,
        };
        Ok(())
    }

    /// Folds group `src` into group `dst` (session windows joining).
    pub fn merge(&mut self, dst: usize, src: usize) -> Result<(), Overflow> {
        let n = self.counts[src];
        if n == 0 {
            return Ok(());
        }
        match self.function {
            AggregateFunction::Count => self.counts[dst] = self.count_plus(dst, n)?,
            AggregateFunction::Avg if self.integer => {
                self.add_to_sum(dst, self.exact_sum(src), n)?
            }
            _ if self.integer => self.add_int(dst, self.ints[src], n)?,
            _ => self.add_float(dst, self.floats[src], n)?,
        }
        Ok(())
    }

    /// The values of the given groups, in order.
    pub fn output(&self, groups: &[u32]) -> ArrayRef {
        let valid = |g: usize| self.counts[g] > 0;
        match self.function {
            AggregateFunction::Count => Arc::new(Int64Array::from_iter_values(
                groups.iter().map(|&g| self.counts[g as usize]),
            )),
            AggregateFunction::Avg => Arc::new(Float64Array::from_iter(groups.iter().map(|&g| {
                let g = g as usize;
                valid(g).then(|| {
                    if self.integer {
                        self.exact_mean(g)
                    } else {
                        self.floats[g] / self.counts[g] as f64
                    }
                })
            }))),
            _ if self.integer => Arc::new(Int64Array::from_iter(
                groups
                    .iter()
                    .map(|&g| valid(g as usize).then(|| self.ints[g as usize])),
            )),
            _ => Arc::new(Float64Array::from_iter(
                groups
                    .iter()
                    .map(|&g| valid(g as usize).then(|| self.floats[g as usize])),
            )),
        }
    }
}

/// `total / n` (n > 0) rounded once to the nearest f64.
fn divide(total: i128, n: i64) -> f64 {
    let n = i128::from(n.max(1));
    // Scale the dividend so that the quotient has over 55 significant bits (it fits: below
    // 2^121), then fold a remainder into an odd last bit: the conversion to f64 then rounds
    // as the exact quotient would.
    let bits = |x: u128| x.max(1).ilog2();
    let shift = (56 + bits(n.unsigned_abs())).saturating_sub(bits(total.unsigned_abs()));
    let scaled = total << shift;
    let (q, r) = (scaled.div_euclid(n), scaled.rem_euclid(n));
    let (x, shift) = if r == 0 {
        (q as f64, shift)
    } else {
        // n > 1, so 2q + 1 fits.
        ((2 * q + 1) as f64, shift + 1)
    };
    // Dividing by a power of two is exact.
    x * f64::from_bits(u64::from(1023 - shift) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, UInt64Array};
    use arrow::datatypes::{Field, Schema};
    use kappa_job::sql::compile_aggregate;

    /// The accumulator of `total = text` over a column `x` of `schema`.
    fn numeric(text: &str, schema: &arrow::datatypes::SchemaRef) -> Numeric {
        let call = compile_aggregate(text, schema).unwrap();
        Numeric::new(super::super::accumulator::label("total", &call), &call)
    }

    fn acc(text: &str, ty: DataType) -> Numeric {
        let schema = Arc::new(Schema::new(vec![Field::new("x", ty, true)]));
        numeric(text, &schema)
    }

    #[test]
    fn aggregates_ignore_nulls_and_merge() {
        let vals = Arc::new(Int64Array::from(vec![Some(3), None, Some(-2), Some(7)])) as ArrayRef;
        for (text, expect) in [
            ("sum(x)", "8"),
            ("min(x)", "-2"),
            ("max(x)", "7"),
            ("count(x)", "3"),
            ("count(*)", "4"),
            ("avg(x)", "2.6666666666666665"),
        ] {
            let mut a = acc(text, DataType::Int64);
            a.ensure(2);
            let v = a
                .arg_values((!text.contains('*')).then(|| Arc::clone(&vals)))
                .unwrap();
            a.update(0, &v, 0).unwrap();
            a.update(0, &v, 1).unwrap();
            a.update(1, &v, 2).unwrap();
            a.update(1, &v, 3).unwrap();
            a.merge(0, 1).unwrap();
            let out = a.output(&[0]);
            let s = arrow::util::display::array_value_to_string(&out, 0).unwrap();
            assert_eq!(s, expect, "{text}");
        }
    }

    #[test]
    fn empty_group_gives_null_except_count() {
        let mut a = acc("max(x)", DataType::Float64);
        a.ensure(1);
        assert!(a.output(&[0]).is_null(0));
        let mut c = acc("count(x)", DataType::Float64);
        c.ensure(1);
        assert_eq!(
            c.output(&[0])
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0),
            0
        );
    }

    /// An accumulator of `text` over a column `x` of `values`, with `groups` groups, and the
    /// values as its argument.
    fn setup(text: &str, values: ArrayRef, groups: usize) -> (Numeric, NumericArgs) {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "x",
            values.data_type().clone(),
            true,
        )]));
        let mut a = numeric(text, &schema);
        a.ensure(groups);
        let v = a.arg_values(Some(values)).unwrap();
        (a, v)
    }

    fn ints(out: ArrayRef) -> Vec<Option<i64>> {
        out.as_primitive::<Int64Type>().iter().collect()
    }

    fn floats(out: ArrayRef) -> Vec<Option<f64>> {
        out.as_primitive::<Float64Type>().iter().collect()
    }

    /// The saved state of one group: count, integer slot, float slot.
    fn saved(count: i64, int: i64, float: f64) -> [u8; Numeric::SAVED_LEN] {
        let mut out = Vec::new();
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&int.to_le_bytes());
        out.extend_from_slice(&float.to_le_bytes());
        out.try_into().unwrap()
    }

    #[test]
    fn an_integer_sum_beyond_i64_is_an_error_never_a_wrapped_number() {
        let values = Arc::new(Int64Array::from(vec![i64::MAX, 1, -1, i64::MIN])) as ArrayRef;
        let (mut a, v) = setup("sum(x)", values, 3);
        let overflow = Overflow {
            aggregate: "total = sum(x)".into(),
        };
        a.update(0, &v, 0).unwrap();
        assert_eq!(a.update(0, &v, 1), Err(overflow.clone()));
        assert_eq!(
            overflow.to_string(),
            "`total = sum(x)` overflows 64-bit integers"
        );
        assert_eq!(
            ints(a.output(&[0])),
            [Some(i64::MAX)],
            "the sum kept its value"
        );
        // Sums that fit are exact, up to the ends of i64.
        a.update(0, &v, 2).unwrap();
        a.update(0, &v, 1).unwrap();
        assert_eq!(ints(a.output(&[0])), [Some(i64::MAX)]);
        a.update(1, &v, 3).unwrap();
        a.update(2, &v, 2).unwrap();
        // Sessions joining: i64::MIN + -1 does not fit, i64::MAX + i64::MIN does.
        assert_eq!(a.merge(1, 2), Err(overflow));
        a.merge(0, 1).unwrap();
        assert_eq!(ints(a.output(&[0])), [Some(-1)]);
    }

    #[test]
    fn a_count_beyond_i64_is_an_error() {
        let values = Arc::new(Int64Array::from(vec![1])) as ArrayRef;
        for text in ["count(*)", "count(x)", "sum(x)", "avg(x)"] {
            let (mut a, v) = setup(text, values.clone(), 2);
            let v = if text == "count(*)" {
                NumericArgs::Star
            } else {
                v
            };
            let overflow = Err(Overflow {
                aggregate: format!("total = {text}"),
            });
            // A restored state at the largest count.
            a.load(0, &saved(i64::MAX, 0, 0.0));
            assert_eq!(a.update(0, &v, 0), overflow, "{text}");
            a.update(1, &v, 0).unwrap();
            assert_eq!(a.merge(0, 1), overflow, "{text}");
        }
    }

    #[test]
    fn integer_averages_are_exact_and_read_states_saved_with_a_float_sum() {
        let cases: [(&[i64], f64); 6] = [
            (&[i64::MAX, i64::MIN], -0.5),
            (&[1, 0, 0], 1.0 / 3.0),
            (&[-1, 0, 0], -1.0 / 3.0),
            (&[i64::MAX, i64::MAX, i64::MAX], i64::MAX as f64),
            // 2^53 + 1.5: the nearest f64 is 2^53 + 2.
            (&[(1 << 53) + 1, (1 << 53) + 2], ((1_i64 << 53) + 2) as f64),
            (&[3, -2, 7], 8.0 / 3.0),
        ];
        for (values, mean) in cases {
            let column = Arc::new(Int64Array::from(values.to_vec())) as ArrayRef;
            let (mut a, v) = setup("avg(x)", column, 2);
            for row in 0..values.len() {
                a.update(0, &v, row).unwrap();
            }
            assert_eq!(floats(a.output(&[0])), [Some(mean)], "{values:?}");
            // The same values split over two sessions that join.
            a.reset(0);
            for row in 0..values.len() {
                a.update(row % 2, &v, row).unwrap();
            }
            a.merge(0, 1).unwrap();
            assert_eq!(floats(a.output(&[0])), [Some(mean)], "{values:?} merged");
            // And through a snapshot.
            let mut bytes = Vec::new();
            a.save(0, &mut bytes);
            let (mut restored, _) = setup("avg(x)", Arc::new(Int64Array::from(vec![0])), 1);
            restored.load(0, &bytes.try_into().unwrap());
            assert_eq!(
                floats(restored.output(&[0])),
                [Some(mean)],
                "{values:?} restored"
            );
        }
        // A state saved while averages kept an f64 sum and nothing in the integer slot.
        let column = Arc::new(Int64Array::from(vec![5])) as ArrayRef;
        let (mut a, v) = setup("avg(x)", column, 1);
        a.load(0, &saved(2, 0, 10.0));
        a.update(0, &v, 0).unwrap();
        assert_eq!(floats(a.output(&[0])), [Some(5.0)]);
    }

    #[test]
    fn an_unsigned_value_beyond_i64_is_an_error_not_a_skipped_null() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::UInt64, true)]));
        let a = numeric("sum(x)", &schema);
        let column = Arc::new(UInt64Array::from(vec![1, u64::MAX])) as ArrayRef;
        let e = a.arg_values(Some(column)).err().map(|e| e.to_string());
        assert!(
            e.as_ref().is_some_and(
                |e| e.contains("`total = sum(x)`") && e.contains("18446744073709551615")
            ),
            "{e:?}"
        );
    }

    #[test]
    fn count_of_any_type_counts_the_non_null_values() {
        let column = Arc::new(StringArray::from(vec![Some("a"), None, Some("b")])) as ArrayRef;
        let (mut a, v) = setup("count(x)", column, 1);
        for row in 0..3 {
            a.update(0, &v, row).unwrap();
        }
        assert_eq!(ints(a.output(&[0])), [Some(2)]);
    }
}
