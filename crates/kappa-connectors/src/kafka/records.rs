//! One partition's records taken in a poll — from librdkafka's buffers or from the archive —
//! decoded into the source's columns: the values by the format's decoder, bad ones through
//! the `on_error` policy with their partition and offset, and the Kafka metadata columns the
//! source asks for appended for the records kept (a change format's rows then carry their
//! change column last).

use std::sync::Arc;

use arrow::array::TimestampMillisecondArray;
use arrow::array::{ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use kappa_job::plan::{KafkaMetadata, with_change_column};
use kappa_runtime::TaskError;

use crate::bad_records::BadRecordPolicy;
use crate::format::{Decoded, RecordDecoder, task_error};

/// Records of one partition in offset order.
#[derive(Default)]
pub(super) struct Polled<'a> {
    pub values: Vec<&'a [u8]>,
    pub offsets: Vec<i64>,
    /// Milliseconds since the epoch, where the record has a timestamp; filled only when the
    /// source has a timestamp column.
    pub timestamps: Vec<Option<i64>>,
    /// Filled only when the source has a key column.
    pub keys: Vec<Option<&'a [u8]>>,
}

/// Turns polled records into the source's batches.
pub(super) struct Decoding {
    pub decoder: RecordDecoder,
    pub policy: BadRecordPolicy,
    /// The source's columns: the decoded ones, then one per metadata field.
    pub schema: SchemaRef,
    pub metadata: Vec<KafkaMetadata>,
    pub topic: String,
}

impl Decoding {
    pub fn wants(&self, field: KafkaMetadata) -> bool {
        self.metadata.contains(&field)
    }

    /// Where a record is, for the bad-record policy's messages.
    fn location(&self, partition: i32, offset: i64, archived: bool) -> String {
        let from = if archived { " (in the archive)" } else { "" };
        format!(
            "topic `{}` partition {partition} offset {offset}{from}",
            self.topic
        )
    }

    /// The batch of `records` of `partition` (none if every record was bad); `archived` says
    /// in messages that they were read from the archive.
    pub fn decode(
        &mut self,
        partition: i32,
        records: &Polled<'_>,
        archived: bool,
    ) -> Result<Option<RecordBatch>, TaskError> {
        let timed = match self.wants(KafkaMetadata::Timestamp) {
            true => self.without_untimed(partition, records, archived)?,
            false => None,
        };
        let records = timed.as_ref().unwrap_or(records);
        let Decoded {
            batch,
            bad,
            changes,
        } = self.decoder.decode(&records.values).map_err(task_error)?;
        let mut kept = vec![true; records.values.len()];
        for b in &bad {
            let at = self.location(partition, records.offsets[b.index], archived);
            self.policy.handle(&at, records.values[b.index], &b.error)?;
            kept[b.index] = false;
        }
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        if self.metadata.is_empty() && changes.is_none() {
            return Ok(Some(batch));
        }
        // The record of each row.
        let (deletes, rows) = match changes {
            Some((deletes, rows)) => (Some(deletes), rows),
            None => (None, (0..kept.len()).filter(|&i| kept[i]).collect()),
        };
        let mut columns = batch.columns().to_vec();
        for field in &self.metadata {
            columns.push(metadata_column(*field, partition, records, &rows));
        }
        let schema = match deletes {
            Some(deletes) => {
                columns.push(Arc::new(deletes));
                with_change_column(&self.schema)
            }
            None => Arc::clone(&self.schema),
        };
        RecordBatch::try_new(schema, columns)
            .map(Some)
            .map_err(|e| TaskError::Data(format!("the metadata columns of `{}`: {e}", self.topic)))
    }

    /// `records` without those that have no timestamp, which are bad records for a source with
    /// a timestamp column; none when every record has one.
    fn without_untimed<'a>(
        &mut self,
        partition: i32,
        records: &Polled<'a>,
        archived: bool,
    ) -> Result<Option<Polled<'a>>, TaskError> {
        if records.timestamps.iter().all(Option::is_some) {
            return Ok(None);
        }
        let mut timed = Polled::default();
        for (i, t) in records.timestamps.iter().enumerate() {
            if t.is_none() {
                let why = "the record has no timestamp (the message format before Kafka 0.10), and the source has a timestamp column";
                let at = self.location(partition, records.offsets[i], archived);
                self.policy.handle(&at, records.values[i], why)?;
                continue;
            }
            timed.values.push(records.values[i]);
            timed.offsets.push(records.offsets[i]);
            timed.timestamps.push(*t);
            if let Some(k) = records.keys.get(i) {
                timed.keys.push(*k);
            }
        }
        Ok(Some(timed))
    }
}

/// The values of `field` for records `rows` of `partition`.
fn metadata_column(
    field: KafkaMetadata,
    partition: i32,
    records: &Polled<'_>,
    rows: &[usize],
) -> ArrayRef {
    match field {
        KafkaMetadata::Partition => Arc::new(Int32Array::from(vec![partition; rows.len()])),
        KafkaMetadata::Offset => Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|&i| records.offsets[i]),
        )),
        KafkaMetadata::Timestamp => Arc::new(TimestampMillisecondArray::from_iter(
            rows.iter()
                .map(|&i| records.timestamps.get(i).copied().flatten()),
        )),
        KafkaMetadata::Key => Arc::new(BinaryArray::from_iter(
            rows.iter().map(|&i| records.keys.get(i).copied().flatten()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, TimeUnit};
    use kappa_job::spec::OnError;

    use crate::format::value::ValueDecoder;

    #[test]
    fn metadata_columns_follow_the_records_kept() {
        let payload = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, false)]));
        let mut fields: Vec<Field> = payload
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend([
            Field::new("p", DataType::Int32, false),
            Field::new("o", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
            Field::new("k", DataType::Binary, true),
        ]);
        let metrics = Arc::default();
        let mut decoding = Decoding {
            decoder: RecordDecoder::Value(ValueDecoder::string(payload)),
            policy: BadRecordPolicy::new(OnError::Skip, None, Arc::clone(&metrics)),
            schema: Arc::new(Schema::new(fields)),
            metadata: vec![
                KafkaMetadata::Partition,
                KafkaMetadata::Offset,
                KafkaMetadata::Timestamp,
                KafkaMetadata::Key,
            ],
            topic: "t".into(),
        };
        // The second record is not UTF-8 and the third has no timestamp: both skipped, and
        // their metadata with them.
        let records = Polled {
            values: vec![b"a", b"\xff", b"c", b"d"],
            offsets: vec![10, 11, 13, 14],
            timestamps: vec![Some(1_000), Some(2_000), None, Some(4_000)],
            keys: vec![Some(b"ka"), None, None, None],
        };
        let batch = decoding.decode(7, &records, false).unwrap().unwrap();
        let text = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(text.iter().collect::<Vec<_>>(), [Some("a"), Some("d")]);
        let p = batch.column(1).as_primitive::<Int32Type>();
        assert_eq!(p.values(), &[7, 7]);
        let o = batch.column(2).as_primitive::<Int64Type>();
        assert_eq!(o.values(), &[10, 14]);
        let ts = batch
            .column(3)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        assert_eq!(ts.values(), &[1_000, 4_000]);
        let k = batch.column(4).as_binary::<i32>();
        assert_eq!(k.iter().collect::<Vec<_>>(), [Some(&b"ka"[..]), None]);
        assert_eq!(
            metrics.skipped.load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }
}
