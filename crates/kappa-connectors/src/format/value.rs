//! `format = "string"` and `format = "raw"`: the record value as the one column of the
//! schema, Utf8 (a value that is not UTF-8 is a bad record) or Binary; a sink writes its one
//! column's values as they are.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;

use crate::ConnectorError;
use crate::json::BadRecord;

/// Decodes record values into the single column of `schema`.
pub struct ValueDecoder {
    schema: SchemaRef,
    /// Utf8 (string) rather than Binary (raw).
    text: bool,
}

impl ValueDecoder {
    pub fn string(schema: SchemaRef) -> Self {
        Self { schema, text: true }
    }

    pub fn raw(schema: SchemaRef) -> Self {
        Self {
            schema,
            text: false,
        }
    }

    /// The values as one column; with `string`, the ones that are not UTF-8 are bad.
    pub fn decode(
        &self,
        records: &[&[u8]],
    ) -> Result<(RecordBatch, Vec<BadRecord>), ConnectorError> {
        let mut bad = Vec::new();
        let column: ArrayRef = match self.text {
            false => Arc::new(BinaryArray::from_iter_values(records.iter().copied())),
            true => {
                let mut good = Vec::with_capacity(records.len());
                for (index, r) in records.iter().enumerate() {
                    match std::str::from_utf8(r) {
                        Ok(s) => good.push(s),
                        Err(e) => bad.push(BadRecord {
                            index,
                            error: format!("format = \"string\" and the value is not UTF-8: {e}"),
                        }),
                    }
                }
                Arc::new(StringArray::from_iter_values(good))
            }
        };
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), vec![column])
            .map_err(|e| ConnectorError::Format(e.to_string()))?;
        Ok((batch, bad))
    }
}

/// The values of the single column of `batch` (Utf8 or Binary) as records; a null is an
/// empty value.
pub fn encode_values(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, ConnectorError> {
    let wrong = || {
        ConnectorError::Format(format!(
            "format = \"string\" or \"raw\" writes one string or bytes column; the sink got {}",
            batch.schema()
        ))
    };
    let [column] = batch.columns() else {
        return Err(wrong());
    };
    let any = column.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return Ok((0..a.len())
            .map(|i| a.value(i).as_bytes().to_vec())
            .collect());
    }
    let a = any.downcast_ref::<BinaryArray>().ok_or_else(wrong)?;
    Ok((0..a.len()).map(|i| a.value(i).to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};

    fn schema(ty: DataType) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("value", ty, false)]))
    }

    #[test]
    fn strings_that_are_not_utf8_are_bad_records() {
        let d = ValueDecoder::string(schema(DataType::Utf8));
        let recs: Vec<&[u8]> = vec![b"caf\xc3\xa9", b"\xff\xfe", b"", b"ok"];
        let (batch, bad) = d.decode(&recs).unwrap();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].index, 1);
        assert!(bad[0].error.contains("not UTF-8"), "{bad:?}");
        assert_eq!(
            encode_values(&batch).unwrap(),
            [&b"caf\xc3\xa9"[..], b"", b"ok"]
        );
    }

    #[test]
    fn raw_values_round_trip_byte_for_byte() {
        let d = ValueDecoder::raw(schema(DataType::Binary));
        let recs: Vec<&[u8]> = vec![b"\xff\x00\x01", b"", b"text"];
        let (batch, bad) = d.decode(&recs).unwrap();
        assert!(bad.is_empty());
        assert_eq!(batch.column(0).data_type(), &DataType::Binary);
        assert_eq!(encode_values(&batch).unwrap(), recs);
    }

    #[test]
    fn encoding_refuses_other_columns() {
        let s = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let b = RecordBatch::try_new(s, vec![Arc::new(arrow::array::Int64Array::from(vec![1]))])
            .unwrap();
        assert!(encode_values(&b).is_err());
    }
}
