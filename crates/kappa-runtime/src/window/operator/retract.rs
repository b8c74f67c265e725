//! An updating aggregate of a change stream: a deleted row is taken out of its key's
//! aggregates again (count, sum and avg can), and a key whose rows are all deleted is emitted
//! as a delete and dropped. The plan's last aggregate counts each key's rows for that; the
//! output's last column says which rows are deletes.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::Int64Type;
use kappa_job::plan::{WindowAssigner, WindowPlan};

use super::{Input, WindowOperator};
use crate::error::TaskError;
use crate::window::accumulator::Accumulator;

/// Refuses a plan that retracts where it cannot: windows other than the updating aggregate,
/// aggregates that cannot take a row out, or no row count last.
pub(super) fn check(plan: &WindowPlan) -> Result<(), TaskError> {
    if plan.retract.is_none() {
        return Ok(());
    }
    let refused = |why: String| {
        Err(TaskError::Data(format!(
            "window `{}` aggregates a change stream, and {why}",
            plan.uid
        )))
    };
    if !matches!(plan.assigner, WindowAssigner::Global { .. }) {
        return refused("only an aggregate without a window can".into());
    }
    if let Some((name, _)) = plan
        .aggregates
        .iter()
        .find(|(_, c)| !Accumulator::retracts(c))
    {
        return refused(format!("`{name}` cannot undo a deleted row"));
    }
    match plan.aggregates.last() {
        Some((_, c)) if c.function.is_count() && c.argument.is_none() => Ok(()),
        _ => refused("its last aggregate does not count the rows of each key".into()),
    }
}

impl WindowOperator {
    /// The change column of `batch`, for an aggregate of a change stream.
    pub(super) fn deletes(&self, batch: &RecordBatch) -> Result<Option<BooleanArray>, TaskError> {
        let Some(at) = self.retract else {
            return Ok(None);
        };
        let column = (at < batch.num_columns())
            .then(|| batch.column(at).as_boolean_opt())
            .flatten();
        match column {
            Some(c) if c.null_count() == 0 => Ok(Some(c.clone())),
            _ => Err(TaskError::Data(format!(
                "window `{}`: the rows of a change stream came without their change column (column {at} of {})",
                self.uid,
                batch.num_columns()
            ))),
        }
    }

    /// Takes a deleted row out of its key's group; a key not held (its rows were read before
    /// the job started, or its state was dropped by the TTL) has nothing to take from.
    pub(super) fn remove(
        &mut self,
        key: &[u8],
        start: i64,
        end: i64,
        input: &Input<'_>,
    ) -> Result<(), TaskError> {
        let Some(g) = self.find(key, start)? else {
            tracing::debug!(window = %self.uid, key = %self.keys.describe(key), "a deleted row of a key not held");
            return Ok(());
        };
        self.extend_global(g, end);
        self.update(g, input)
    }

    /// For an aggregate of a change stream: which rows of fired `batch` are deletes.
    pub(super) fn emptied(&self, batch: &RecordBatch) -> Option<BooleanArray> {
        self.retract?;
        batch.columns().last()?.as_boolean_opt().cloned()
    }
}

/// The change column of fired rows whose columns (keys, bounds, aggregates) are `columns`: a
/// key counting no rows is deleted.
pub(super) fn deleted_keys(columns: &[ArrayRef]) -> Result<ArrayRef, TaskError> {
    let rows = columns
        .last()
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| {
            TaskError::Data("an aggregate of a change stream has no row count".into())
        })?;
    Ok(Arc::new(BooleanArray::from_iter(
        rows.iter().map(|n| Some(n.unwrap_or(0) <= 0)),
    )))
}
