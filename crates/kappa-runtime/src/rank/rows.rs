//! The rows a ranking holds: every column's value in Kappa's own value encoding (what is
//! saved), and a sort key — the ORDER BY terms, then every column ascending so that ties
//! are broken the same way on every run — in Arrow's row format, which is only ever built
//! from values (at arrival and again at restore), never saved.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::compute::SortOptions;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use kappa_job::plan::RankPlan;

use crate::error::{TaskError, eval_error};
use crate::steps::evaluate;
use crate::window::values::{ValueCodec, ValueError};

/// Heap bytes of a row besides its values and sort key (containers and their lengths).
const ROW_OVERHEAD: u64 = 48;
/// Heap bytes of one column value's slot in a row.
const VALUE_OVERHEAD: u64 = 16;

/// One held row.
#[derive(Debug, Clone)]
pub(super) struct Row {
    /// Orders rows: smaller ranks first.
    pub sort: Box<[u8]>,
    /// Each column's encoded value; None for a null.
    pub values: Box<[Option<Box<[u8]>>]>,
}

impl Row {
    /// Estimated heap bytes it takes.
    pub fn bytes(&self) -> u64 {
        let values: usize = self.values.iter().flatten().map(|v| v.len()).sum();
        ROW_OVERHEAD
            + self.sort.len() as u64
            + values as u64
            + VALUE_OVERHEAD * self.values.len() as u64
    }
}

/// Turns batches into rows and rows back into batches.
pub(super) struct RowCodec {
    plan: RankPlan,
    /// The columns of the rows held.
    schema: SchemaRef,
    codecs: Vec<ValueCodec>,
    sorter: RowConverter,
}

impl RowCodec {
    pub fn new(plan: &RankPlan) -> Result<Self, TaskError> {
        let schema = Arc::new(Schema::new(plan.row_fields().to_vec()));
        let codecs = schema
            .fields()
            .iter()
            .map(|f| {
                ValueCodec::new(f.data_type()).ok_or_else(|| {
                    TaskError::Data(format!(
                        "ranking `{}`: column `{}` of type {} cannot be kept",
                        plan.uid,
                        f.name(),
                        f.data_type()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let order = plan.order.iter().map(|o| {
            SortField::new_with_options(
                o.expr.data_type.clone(),
                SortOptions {
                    descending: o.descending,
                    nulls_first: o.nulls_first,
                },
            )
        });
        let ties = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()));
        let sorter = RowConverter::new(order.chain(ties).collect())
            .map_err(|e| eval_error("ranking sort keys", e))?;
        Ok(Self {
            plan: plan.clone(),
            schema,
            codecs,
            sorter,
        })
    }

    /// Every row of `batch` (with the columns of the rows held).
    pub fn rows(&self, batch: &RecordBatch) -> Result<Vec<Row>, TaskError> {
        if batch.num_columns() != self.codecs.len() {
            return Err(TaskError::Data(format!(
                "ranking `{}`: a batch of {} columns where its rows have {}",
                self.plan.uid,
                batch.num_columns(),
                self.codecs.len()
            )));
        }
        let mut columns: Vec<ArrayRef> = self
            .plan
            .order
            .iter()
            .map(|o| evaluate(&o.expr, batch))
            .collect::<Result<_, _>>()?;
        columns.extend(batch.columns().iter().cloned());
        let sort = self
            .sorter
            .convert_columns(&columns)
            .map_err(|e| eval_error("ranking sort keys", e))?;
        let encoded = self
            .codecs
            .iter()
            .zip(batch.columns())
            .map(|(c, column)| c.encode(column, false))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| eval_error("encoding ranked rows", e))?;
        Ok((0..batch.num_rows())
            .map(|i| Row {
                sort: sort.row(i).as_ref().into(),
                values: encoded.iter().map(|e| e.get(i).map(Box::from)).collect(),
            })
            .collect())
    }

    /// Rows of saved values (checked against their types), with their sort keys rebuilt.
    pub fn restored(&self, values: Vec<Vec<Option<Box<[u8]>>>>) -> Result<Vec<Row>, RestoredRows> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let width = self.codecs.len();
        if let Some(v) = values.iter().find(|v| v.len() != width) {
            return Err(RestoredRows::Width {
                have: v.len(),
                want: width,
            });
        }
        let columns = self
            .codecs
            .iter()
            .enumerate()
            .map(|(c, codec)| codec.decode(values.iter().map(|v| v[c].as_deref())))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)
            .map_err(|e| RestoredRows::Batch(eval_error("restored rows", e)))?;
        self.rows(&batch).map_err(RestoredRows::Batch)
    }

    /// The rows as a batch of the ranking's output: their columns and their row numbers.
    pub fn output(
        &self,
        rows: &[(&Row, u64)],
        schema: &SchemaRef,
    ) -> Result<RecordBatch, TaskError> {
        let mut columns = self
            .codecs
            .iter()
            .enumerate()
            .map(|(c, codec)| codec.decode(rows.iter().map(|(r, _)| r.values[c].as_deref())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| eval_error("building ranked rows", e))?;
        columns.push(Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|(_, n)| *n),
        )));
        RecordBatch::try_new(Arc::clone(schema), columns)
            .map_err(|e| eval_error("building ranked rows", e))
    }
}

/// Saved rows that do not make rows of the ranking's input.
#[derive(Debug, thiserror::Error)]
pub(super) enum RestoredRows {
    #[error("a saved row of {have} values where the rows have {want} columns")]
    Width { have: usize, want: usize },
    #[error("a saved value does not fit its column")]
    Value(#[from] ValueError),
    #[error("the saved rows do not make a batch")]
    Batch(#[source] TaskError),
}
