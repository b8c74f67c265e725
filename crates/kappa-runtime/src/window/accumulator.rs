//! Incremental aggregates (count, sum, min, max, avg) kept column-wise: one slot per window
//! group, updated row by row, merged when session windows join, read out as Arrow arrays.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::datatypes::{Float64Type, Int64Type};
use kappa_job::sql::{AggregateCall, AggregateFunction};

use crate::error::{TaskError, eval_error};

/// The argument values of one batch, in the accumulator's arithmetic type.
pub enum ArgValues {
    /// count(*): every row counts.
    Star,
    Int(Int64Array),
    Float(Float64Array),
}

/// One aggregate over all window groups of a subtask.
#[derive(Debug, Clone)]
pub struct Accumulator {
    function: AggregateFunction,
    integer: bool,
    ints: Vec<i64>,
    floats: Vec<f64>,
    counts: Vec<i64>,
}

impl Accumulator {
    pub fn new(call: &AggregateCall) -> Self {
        let integer = call
            .argument
            .as_ref()
            .is_some_and(|a| a.data_type.is_integer());
        Self {
            function: call.function,
            integer,
            ints: Vec::new(),
            floats: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Converts an evaluated argument column to the arithmetic type.
    pub fn arg_values(&self, column: Option<ArrayRef>) -> Result<ArgValues, TaskError> {
        let Some(col) = column else {
            return Ok(ArgValues::Star);
        };
        let float = !self.integer || self.function == AggregateFunction::Avg;
        let target = if float {
            DataType::Float64
        } else {
            DataType::Int64
        };
        let c = cast(&col, &target).map_err(|e| eval_error("aggregate argument", e))?;
        Ok(if float {
            ArgValues::Float(c.as_primitive::<Float64Type>().clone())
        } else {
            ArgValues::Int(c.as_primitive::<Int64Type>().clone())
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

    /// Bytes [`Accumulator::save`] writes per group.
    pub const SAVED_LEN: usize = 24;

    /// Sets group `g` from bytes written by [`Accumulator::save`].
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
    pub fn update(&mut self, g: usize, values: &ArgValues, row: usize) {
        match values {
            ArgValues::Star => self.counts[g] += 1,
            ArgValues::Int(a) => {
                if a.is_valid(row) {
                    self.add_int(g, a.value(row), 1);
                }
            }
            ArgValues::Float(a) => {
                if a.is_valid(row) {
                    self.add_float(g, a.value(row), 1);
                }
            }
        }
    }

    fn add_int(&mut self, g: usize, v: i64, n: i64) {
        let first = self.counts[g] == 0;
        self.counts[g] += n;
        let slot = &mut self.ints[g];
        *slot = match self.function {
            AggregateFunction::Sum => slot.wrapping_add(v),
            AggregateFunction::Min if first => v,
            AggregateFunction::Min => (*slot).min(v),
            AggregateFunction::Max if first => v,
            AggregateFunction::Max => (*slot).max(v),
            AggregateFunction::Count | AggregateFunction::Avg => *slot,
        };
    }

    fn add_float(&mut self, g: usize, v: f64, n: i64) {
        let first = self.counts[g] == 0;
        self.counts[g] += n;
        let slot = &mut self.floats[g];
        *slot = match self.function {
            AggregateFunction::Sum | AggregateFunction::Avg => *slot + v,
            AggregateFunction::Min if first => v,
            AggregateFunction::Min => slot.min(v),
            AggregateFunction::Max if first => v,
            AggregateFunction::Max => slot.max(v),
            AggregateFunction::Count => *slot,
        };
    }

    /// Folds group `src` into group `dst` (session windows joining).
    pub fn merge(&mut self, dst: usize, src: usize) {
        let n = self.counts[src];
        if n == 0 {
            return;
        }
        match self.function {
            AggregateFunction::Count => self.counts[dst] += n,
            _ if self.integer && self.function != AggregateFunction::Avg => {
                self.add_int(dst, self.ints[src], n)
            }
            _ => self.add_float(dst, self.floats[src], n),
        }
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
                valid(g).then(|| self.floats[g] / self.counts[g] as f64)
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};
    use kappa_job::sql::compile_aggregate;

    fn acc(text: &str, ty: DataType) -> Accumulator {
        let schema = Arc::new(Schema::new(vec![Field::new("x", ty, true)]));
        Accumulator::new(&compile_aggregate(text, &schema).unwrap())
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
            a.update(0, &v, 0);
            a.update(0, &v, 1);
            a.update(1, &v, 2);
            a.update(1, &v, 3);
            a.merge(0, 1);
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
}
