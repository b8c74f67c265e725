//! Keys of records: the key expressions evaluated on a batch and encoded as comparable bytes
//! (Arrow row format), hashed into key groups that decide the owning subtask.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::row::{RowConverter, Rows, SortField};
use arrow::util::display::array_value_to_string;
use kappa_job::keygroup::{key_group_of, subtask_of_key_group};
use kappa_job::sql::CompiledExpr;

use crate::error::{TaskError, eval_error};
use crate::steps::evaluate;

/// Evaluates key expressions and encodes them as rows.
pub struct KeyEncoder {
    keys: Vec<CompiledExpr>,
    converter: RowConverter,
}

impl KeyEncoder {
    pub fn new(keys: &[CompiledExpr]) -> Result<Self, TaskError> {
        // The row format encodes no rows without columns: every record would vanish.
        if keys.is_empty() {
            return Err(TaskError::Data(
                "a keyed operator without key expressions".into(),
            ));
        }
        let fields = keys
            .iter()
            .map(|k| SortField::new(k.data_type.clone()))
            .collect();
        let converter = RowConverter::new(fields).map_err(|e| eval_error("key encoding", e))?;
        Ok(Self {
            keys: keys.to_vec(),
            converter,
        })
    }

    /// The key columns of a batch.
    pub fn columns(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>, TaskError> {
        self.keys.iter().map(|k| evaluate(k, batch)).collect()
    }

    /// The encoded key of every row of a batch.
    pub fn rows(&self, batch: &RecordBatch) -> Result<Rows, TaskError> {
        let cols = self.columns(batch)?;
        self.converter
            .convert_columns(&cols)
            .map_err(|e| eval_error("key encoding", e))
    }

    /// The converter, to decode stored keys back into columns.
    pub fn converter(&self) -> &RowConverter {
        &self.converter
    }

    /// An encoded key as text, for error messages: its values separated by commas.
    pub fn describe(&self, row: &[u8]) -> String {
        let parser = self.converter.parser();
        let columns = match self.converter.convert_rows([parser.parse(row)]) {
            Ok(columns) => columns,
            Err(e) => return format!("<undecodable key: {e}>"),
        };
        columns
            .iter()
            .map(|c| {
                array_value_to_string(c, 0).unwrap_or_else(|e| format!("<undisplayable: {e}>"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Splits batches by key group among the subtasks of a keyed vertex.
pub struct KeyPartitioner {
    encoder: KeyEncoder,
    max_parallelism: u32,
    parallelism: u32,
}

impl KeyPartitioner {
    pub fn new(
        keys: &[CompiledExpr],
        max_parallelism: u32,
        parallelism: u32,
    ) -> Result<Self, TaskError> {
        Ok(Self {
            encoder: KeyEncoder::new(keys)?,
            max_parallelism,
            parallelism,
        })
    }

    /// One (subtask, batch) per subtask that receives rows; row order is kept within each.
    pub fn split(&self, batch: &RecordBatch) -> Result<Vec<(usize, RecordBatch)>, TaskError> {
        if self.parallelism == 1 {
            return Ok(vec![(0, batch.clone())]);
        }
        let rows = self.encoder.rows(batch)?;
        let mut indices: Vec<Vec<u32>> = vec![Vec::new(); self.parallelism as usize];
        for (i, row) in rows.iter().enumerate() {
            let kg = key_group_of(row.as_ref(), self.max_parallelism);
            indices[subtask_of_key_group(kg, self.max_parallelism, self.parallelism) as usize]
                .push(i as u32);
        }
        let mut out = Vec::new();
        for (target, idx) in indices.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let part = if idx.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(idx))
                    .map_err(|e| eval_error("keyed exchange", e))?
            };
            out.push((target, part));
        }
        Ok(out)
    }
}

/// The key group of every row, for operators that keep state per key group.
pub fn key_groups(rows: &Rows, max_parallelism: u32) -> Vec<u32> {
    rows.iter()
        .map(|r| key_group_of(r.as_ref(), max_parallelism))
        .collect()
}

/// Shared, immutable key expressions of a job.
pub type Keys = Arc<[CompiledExpr]>;

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};
    use kappa_job::keygroup::key_group_range;
    use kappa_job::sql::compile_named;

    #[test]
    fn every_row_goes_to_the_owner_of_its_key_group() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "item_id",
            DataType::Utf8,
            false,
        )]));
        let items: Vec<String> = (0..1000).map(|i| format!("item_{i}")).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(StringArray::from(items))],
        )
        .unwrap();
        let key = compile_named("item_id", &schema).unwrap();
        let p = KeyPartitioner::new(std::slice::from_ref(&key), 128, 3).unwrap();
        let parts = p.split(&batch).unwrap();
        assert_eq!(parts.iter().map(|(_, b)| b.num_rows()).sum::<usize>(), 1000);
        let enc = KeyEncoder::new(&[key]).unwrap();
        for (target, part) in parts {
            let range = key_group_range(target as u32, 128, 3);
            for kg in key_groups(&enc.rows(&part).unwrap(), 128) {
                assert!(range.contains(&kg));
            }
        }
    }
}
