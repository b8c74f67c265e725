//! JSON records ⇄ Arrow batches: vectorised decoding with arrow-json that still names each
//! bad record, and encoding of result rows as one JSON object per record.

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::json::ReaderBuilder;
use arrow::json::reader::Decoder;

use kappa_runtime::window::{MAX_EVENT_TIME_MS, event_times};

use crate::ConnectorError;

/// A record that could not be decoded: its position in the input and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub index: usize,
    pub error: String,
}

/// Decodes JSON records (one object each) into batches of a fixed schema.
pub struct JsonDecoder {
    schema: SchemaRef,
    /// The event-time column, whose values must be possible times.
    event_time: Option<usize>,
}

impl JsonDecoder {
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            event_time: None,
        }
    }

    /// Records whose column `index` holds an impossible time (beyond
    /// [`MAX_EVENT_TIME_MS`]) are bad records.
    pub fn with_event_time(mut self, index: Option<usize>) -> Self {
        self.event_time = index;
        self
    }

    /// The event time (ms) in column `column` of one record; None when the record is bad
    /// or the time null.
    pub fn event_time_ms(&self, column: usize, record: &[u8]) -> Option<i64> {
        let (batch, bad) = self.decode(&[record]).ok()?;
        if !bad.is_empty() || batch.num_rows() != 1 {
            return None;
        }
        let times = event_times(batch.columns().get(column)?).ok()?;
        (!times.is_null(0)).then(|| times.value(0))
    }

    fn decoder(&self, rows: usize) -> Result<Decoder, ConnectorError> {
        ReaderBuilder::new(self.schema.clone())
            .with_batch_size(rows + 1)
            .build_decoder()
            .map_err(|e| ConnectorError::Format(e.to_string()))
    }

    /// Feeds one record; it must hold exactly one JSON value.
    fn feed(d: &mut Decoder, record: &[u8]) -> Result<(), String> {
        let before = d.len();
        let used = d.decode(record).map_err(explain)?;
        if used < record.len() {
            return Err("expected one JSON object per record, found more than one value".into());
        }
        d.decode(b"\n").map_err(explain)?;
        if d.has_partial_record() {
            return Err("incomplete JSON value".into());
        }
        match d.len() - before {
            1 => Ok(()),
            0 => Err("empty record: expected a JSON object".into()),
            n => Err(format!(
                "expected one JSON object per record, found {n} values"
            )),
        }
    }

    /// Decodes `records`; the batch holds the good ones in order, bad ones are listed apart.
    pub fn decode(
        &self,
        records: &[&[u8]],
    ) -> Result<(RecordBatch, Vec<BadRecord>), ConnectorError> {
        let (batch, mut bad, indices) = self.decode_all(records)?;
        let batch = match self.event_time {
            Some(column) => drop_impossible_times(&self.schema, batch, column, &indices, &mut bad)?,
            None => batch,
        };
        bad.sort_by_key(|b| b.index);
        Ok((batch, bad))
    }

    /// The decodable records, the others, and the record index of each row of the batch.
    fn decode_all(
        &self,
        records: &[&[u8]],
    ) -> Result<(RecordBatch, Vec<BadRecord>, Vec<usize>), ConnectorError> {
        let mut d = self.decoder(records.len())?;
        let fast = records
            .iter()
            .try_for_each(|r| Self::feed(&mut d, r))
            .and_then(|_| d.flush().map_err(explain));
        if let Ok(batch) = fast {
            let batch = batch.unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone()));
            let indices = (0..batch.num_rows()).collect();
            return Ok((batch, Vec::new(), indices));
        }
        // Slow path, only when something is wrong: one record at a time, to name the bad ones.
        let mut good = Vec::new();
        let mut indices = Vec::new();
        let mut bad = Vec::new();
        for (index, r) in records.iter().enumerate() {
            let mut d = self.decoder(1)?;
            match Self::feed(&mut d, r).and_then(|_| d.flush().map_err(explain)) {
                Ok(Some(b)) => {
                    indices.extend(std::iter::repeat_n(index, b.num_rows()));
                    good.push(b);
                }
                Ok(None) => bad.push(BadRecord {
                    index,
                    error: "empty record".into(),
                }),
                Err(error) => bad.push(BadRecord { index, error }),
            }
        }
        let batch = concat_batches(&self.schema, &good)
            .map_err(|e| ConnectorError::Format(e.to_string()))?;
        Ok((batch, bad, indices))
    }
}

/// Moves the rows of `batch` (of `schema`) whose event time is impossible to `bad`;
/// `indices`: the record of each row.
pub(crate) fn drop_impossible_times(
    schema: &SchemaRef,
    batch: RecordBatch,
    column: usize,
    indices: &[usize],
    bad: &mut Vec<BadRecord>,
) -> Result<RecordBatch, ConnectorError> {
    let Some(col) = batch.columns().get(column) else {
        return Ok(batch);
    };
    let name = schema.field(column).name();
    let times = event_times(col).map_err(|e| ConnectorError::Format(e.to_string()))?;
    let before = bad.len();
    let mut possible = Vec::with_capacity(times.len());
    for (row, t) in times.iter().enumerate() {
        let impossible = t.filter(|t| t.unsigned_abs() > MAX_EVENT_TIME_MS as u64);
        possible.push(impossible.is_none());
        if let Some(t) = impossible {
            bad.push(BadRecord {
                index: indices.get(row).copied().unwrap_or(row),
                error: format!(
                    "`{name}` = {t} ms is not a possible event time (at most {MAX_EVENT_TIME_MS} ms from 1970 either way)"
                ),
            });
        }
    }
    if bad.len() == before {
        return Ok(batch);
    }
    filter_record_batch(&batch, &BooleanArray::from(possible))
        .map_err(|e| ConnectorError::Format(e.to_string()))
}

/// arrow-json's message, reworded where it speaks of Arrow internals rather than the record.
fn explain(e: arrow::error::ArrowError) -> String {
    let msg = e.to_string();
    let msg = msg.strip_prefix("Json error: ").unwrap_or(&msg).to_string();
    if msg.contains("unmasked nulls in non-nullable") {
        let field = msg.split('"').nth(1).unwrap_or("?");
        return format!(
            "missing or null field `{field}` (declare it as \"type?\" in source.schema if it is optional)"
        );
    }
    msg
}

/// Encodes every row of a batch as a JSON object, in column order.
pub fn encode_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, ConnectorError> {
    let mut buf = Vec::with_capacity(batch.num_rows() * 64);
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(batch)
            .map_err(|e| ConnectorError::Format(e.to_string()))?;
        w.finish()
            .map_err(|e| ConnectorError::Format(e.to_string()))?;
    }
    Ok(buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("note", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn good_records_decode_in_one_batch() {
        let d = JsonDecoder::new(schema());
        let recs: Vec<&[u8]> = vec![
            br#"{"user_id":"u1","timestamp":1732500000123,"extra":1}"#,
            br#"{"user_id":"u2","timestamp":5}"#,
        ];
        let (b, bad) = d.decode(&recs).unwrap();
        assert!(bad.is_empty());
        assert_eq!(b.num_rows(), 2);
    }

    #[test]
    fn impossible_event_times_are_bad_records_on_both_paths() {
        let d = JsonDecoder::new(schema()).with_event_time(Some(1));
        let min = i64::MIN.to_string();
        let max = i64::MAX.to_string();
        let records = [
            r#"{"user_id":"u1","timestamp":1732500000123}"#.to_string(),
            format!(r#"{{"user_id":"u2","timestamp":{min}}}"#),
            format!(r#"{{"user_id":"u3","timestamp":{max}}}"#),
            r#"{"user_id":"u4","timestamp":-5}"#.to_string(),
        ];
        let mut with_broken = records.to_vec();
        with_broken.insert(1, "{not json".to_string());
        for (recs, impossible) in [(records.to_vec(), vec![1, 2]), (with_broken, vec![2, 3])] {
            let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_bytes()).collect();
            let (b, bad) = d.decode(&refs).unwrap();
            let users = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>();
            let users: Vec<&str> = users.unwrap().iter().map(|u| u.unwrap()).collect();
            assert_eq!(users, ["u1", "u4"], "the possible ones, in order");
            let named: Vec<usize> = bad
                .iter()
                .filter(|b| b.error.contains("not a possible event time"))
                .map(|b| b.index)
                .collect();
            assert_eq!(named, impossible, "{bad:?}");
            assert!(bad.iter().any(|b| b.error.contains(&min)), "{bad:?}");
        }
    }

    #[test]
    fn bad_records_are_named_and_good_ones_kept() {
        let d = JsonDecoder::new(schema());
        let recs: Vec<&[u8]> = vec![
            br#"{"user_id":"u1","timestamp":1}"#,
            b"not json",
            br#"{"user_id":"u3"}"#,
            br#"{"user_id":"u4","timestamp":"yesterday"}"#,
            br#"{"user_id":"u5","timestamp":2}{"user_id":"u6","timestamp":3}"#,
            b"",
            br#"{"user_id":"u7","timestamp":4}"#,
        ];
        let (b, bad) = d.decode(&recs).unwrap();
        assert_eq!(b.num_rows(), 2, "{bad:?}");
        let idx: Vec<_> = bad.iter().map(|b| b.index).collect();
        assert_eq!(idx, vec![1, 2, 3, 4, 5], "{bad:?}");
    }

    #[test]
    fn rows_encode_as_objects() {
        let d = JsonDecoder::new(schema());
        let (b, _) = d.decode(&[br#"{"user_id":"u1","timestamp":7}"#]).unwrap();
        let rows = encode_rows(&b.project(&[0]).unwrap()).unwrap();
        assert_eq!(rows, vec![br#"{"user_id":"u1"}"#.to_vec()]);
    }
}
