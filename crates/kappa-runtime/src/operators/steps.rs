//! The job's `[[steps]]` (filters, selects) as a stateless operator.

use arrow::array::RecordBatch;
use kappa_job::plan::StepPlan;

use crate::error::TaskError;
use crate::operator::{Operator, Output};
use crate::steps;

pub struct StepsOperator {
    steps: Vec<StepPlan>,
}

impl StepsOperator {
    pub fn new(steps: Vec<StepPlan>) -> Self {
        Self { steps }
    }
}

impl Operator for StepsOperator {
    fn process_batch(
        &mut self,
        _: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), TaskError> {
        out.emit(0, steps::apply(&self.steps, batch)?);
        Ok(())
    }
}
