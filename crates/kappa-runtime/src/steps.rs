//! The `[[steps]]` of a job applied to a batch: SQL filters keep the rows whose predicate is
//! true, selects compute new columns, each vectorised over the whole batch.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::{filter_record_batch, prep_null_mask_filter};
use kappa_job::plan::StepPlan;
use kappa_job::sql::CompiledExpr;

use crate::error::{TaskError, eval_error};

/// Evaluates an expression to an array with one value per row of `batch`.
pub fn evaluate(e: &CompiledExpr, batch: &RecordBatch) -> Result<ArrayRef, TaskError> {
    e.expr
        .evaluate(batch)
        .and_then(|v| v.into_array(batch.num_rows()))
        .map_err(|err| eval_error(&format!("evaluating `{}`", e.text), err.strip_backtrace()))
}

/// Applies every step in order; a batch may come out empty.
pub fn apply(steps: &[StepPlan], mut batch: RecordBatch) -> Result<RecordBatch, TaskError> {
    for step in steps {
        if batch.num_rows() == 0 {
            break;
        }
        batch = match step {
            StepPlan::Filter(f) => {
                let mask = evaluate(f, &batch)?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| {
                        TaskError::Data(format!("filter `{}` did not give booleans", f.text))
                    })?;
                let mask = if mask.null_count() > 0 {
                    prep_null_mask_filter(mask)
                } else {
                    mask.clone()
                };
                filter_record_batch(&batch, &mask)
                    .map_err(|e| eval_error(&format!("filter `{}`", f.text), e))?
            }
            StepPlan::Select { exprs, schema } => {
                let columns = exprs
                    .iter()
                    .map(|e| evaluate(e, &batch))
                    .collect::<Result<Vec<_>, _>>()?;
                RecordBatch::try_new(Arc::clone(schema), columns)
                    .map_err(|e| eval_error("building the selected columns", e))?
            }
        };
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use kappa_job::sql;

    #[test]
    fn filter_then_select() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["user_1", "user_60", "user_70"])),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
            ],
        )
        .unwrap();
        let f = sql::compile_filter(
            "CAST(split_part(user_id, '_', 2) AS INT) > 50 AND n > 0",
            &schema,
        )
        .unwrap();
        let s1 = sql::compile_named("n * 10 AS n10", &schema).unwrap();
        let out_schema = Arc::new(sql::schema_of(std::slice::from_ref(&s1)));
        let steps = vec![
            StepPlan::Filter(f),
            StepPlan::Select {
                exprs: vec![s1],
                schema: out_schema,
            },
        ];
        let out = apply(&steps, batch).unwrap();
        assert_eq!(out.num_rows(), 1, "null predicate counts as false");
        let col = out.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(col.value(0), 30);
    }
}
