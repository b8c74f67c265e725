//! Debezium's JSON change events (`format = "debezium-json"`) as a change stream: a create
//! or snapshot read (`op` `c`, `r`) inserts `after`, an update (`u`) deletes `before` and
//! inserts `after`, a delete (`d`) deletes `before`. The row images are decoded by the JSON
//! decoder into the source's columns; an event in the `{"schema": …, "payload": …}` envelope
//! of Kafka Connect's JsonConverter is read from its payload. A tombstone (a record without
//! a value, which Debezium writes after a delete for log compaction) changes nothing. An
//! event that is not a change of a row, or lacks the image its `op` needs, is a bad record:
//! none of its rows is kept.

use std::collections::BTreeSet;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ConnectorError;
use crate::json::{BadRecord, JsonDecoder};

/// A change event, or Kafka Connect's envelope around one.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, default)]
    before: Option<&'a RawValue>,
    #[serde(borrow, default)]
    after: Option<&'a RawValue>,
    #[serde(default)]
    op: Option<String>,
    /// With `schema`: the event inside the JsonConverter's envelope.
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    schema: Option<&'a RawValue>,
}

/// One row image of an event: the record it came from and whether it is deleted.
struct Image<'a> {
    record: usize,
    delete: bool,
    json: &'a [u8],
}

/// Rows decoded from change events.
#[derive(Debug)]
pub struct Changes {
    /// The rows, in the order of the events (an update's deleted row before its new one).
    pub batch: RecordBatch,
    /// Per row: whether it is deleted.
    pub deletes: BooleanArray,
    /// Per row: the index of the record it came from.
    pub records: Vec<usize>,
    /// The records that were not decoded, and why.
    pub bad: Vec<BadRecord>,
}

/// Decodes Debezium JSON change events into rows of a fixed schema.
pub struct DebeziumDecoder {
    rows: JsonDecoder,
}

impl DebeziumDecoder {
    /// The decoder of rows of `schema`; `event_time`: the column whose values must be
    /// possible times (see [`JsonDecoder::with_event_time`]).
    pub fn new(schema: SchemaRef, event_time: Option<usize>) -> Self {
        Self {
            rows: JsonDecoder::new(schema).with_event_time(event_time),
        }
    }

    /// Decodes `records`: the rows of the good ones in order, the bad ones listed apart.
    pub fn decode(&self, records: &[&[u8]]) -> Result<Changes, ConnectorError> {
        let mut images = Vec::with_capacity(records.len());
        let mut bad = Vec::new();
        for (record, value) in records.iter().enumerate() {
            if value.is_empty() {
                continue;
            }
            if let Err(error) = images_of(record, value, &mut images) {
                bad.push(BadRecord {
                    index: record,
                    error,
                });
            }
        }
        let jsons: Vec<&[u8]> = images.iter().map(|i| i.json).collect();
        let (batch, bad_images) = self.rows.decode(&jsons)?;
        // A record is bad when any of its images is; the good images are the batch's rows.
        let mut bad_records = BTreeSet::new();
        let mut bad_image = vec![false; images.len()];
        for b in bad_images {
            let image = &images[b.index];
            bad_image[b.index] = true;
            let side = if image.delete { "before" } else { "after" };
            if bad_records.insert(image.record) {
                bad.push(BadRecord {
                    index: image.record,
                    error: format!("`{side}`: {}", b.error),
                });
            }
        }
        let rows: Vec<&Image<'_>> = images
            .iter()
            .zip(&bad_image)
            .filter(|(_, bad)| !**bad)
            .map(|(image, _)| image)
            .collect();
        let keep: Vec<bool> = rows
            .iter()
            .map(|i| !bad_records.contains(&i.record))
            .collect();
        let (batch, rows) = match keep.iter().all(|k| *k) {
            true => (batch, rows),
            false => {
                let batch = filter_record_batch(&batch, &BooleanArray::from(keep.clone()))
                    .map_err(|e| ConnectorError::Format(e.to_string()))?;
                let rows = rows
                    .into_iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(r, _)| r)
                    .collect();
                (batch, rows)
            }
        };
        bad.sort_by_key(|b| b.index);
        Ok(Changes {
            batch,
            deletes: rows.iter().map(|i| Some(i.delete)).collect(),
            records: rows.iter().map(|i| i.record).collect(),
            bad,
        })
    }
}

/// Adds the row images of change event `value` (record `record`) to `out`, or says why it
/// is not a change of a row.
fn images_of<'a>(record: usize, value: &'a [u8], out: &mut Vec<Image<'a>>) -> Result<(), String> {
    let mut event: Event<'a> = serde_json::from_slice(value)
        .map_err(|e| format!("not a Debezium change event (a JSON object): {e}"))?;
    if let (Some(_), None) = (event.schema, &event.op) {
        // An envelope with a null payload is a tombstone written through the JsonConverter.
        let Some(payload) = event.payload else {
            return Ok(());
        };
        event = serde_json::from_str(payload.get())
            .map_err(|e| format!("`payload` is not a Debezium change event: {e}"))?;
    }
    let Some(op) = event.op.as_deref() else {
        return Err("no `op`: not a Debezium change event (it says c, r, u or d)".into());
    };
    let image = |side: Option<&'a RawValue>, name: &str, delete: bool| match side {
        Some(json) => Ok(Image {
            record,
            delete,
            json: json.get().as_bytes(),
        }),
        None => Err(format!(
            "op `{op}` without `{name}`{}",
            match delete {
                // PostgreSQL sends the old row only with REPLICA IDENTITY FULL.
                true =>
                    ": a change stream deletes the old row, so the table must log it whole (ALTER TABLE … REPLICA IDENTITY FULL in PostgreSQL)",
                false => "",
            }
        )),
    };
    match op {
        "c" | "r" => out.push(image(event.after, "after", false)?),
        "u" => {
            let before = image(event.before, "before", true)?;
            let after = image(event.after, "after", false)?;
            out.extend([before, after]);
        }
        "d" => out.push(image(event.before, "before", true)?),
        "t" => {
            return Err(
                "op `t`: a truncate is not a change of a row; delete the rows instead".into(),
            );
        }
        other => return Err(format!("op `{other}` is not c, r, u or d")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn decoder() -> DebeziumDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Int64, true),
        ]));
        DebeziumDecoder::new(schema, None)
    }

    fn ids(c: &Changes) -> Vec<(i64, bool, usize)> {
        let ids = c.batch.column(0).as_primitive::<Int64Type>();
        (0..c.batch.num_rows())
            .map(|r| (ids.value(r), c.deletes.value(r), c.records[r]))
            .collect()
    }

    #[test]
    fn each_op_inserts_or_deletes_its_images_in_order() {
        let records: Vec<&[u8]> = vec![
            br#"{"before":null,"after":{"id":1,"amount":5},"op":"c","ts_ms":1}"#,
            br#"{"before":{"id":1,"amount":5},"after":{"id":1,"amount":7},"op":"u"}"#,
            b"",
            br#"{"schema":{"type":"struct"},"payload":{"before":{"id":2,"amount":null},"after":null,"op":"d"}}"#,
            br#"{"after":{"id":3,"amount":1},"op":"r","source":{"snapshot":"true"}}"#,
            br#"{"schema":{"type":"struct"},"payload":null}"#,
        ];
        let c = decoder().decode(&records).unwrap();
        assert!(c.bad.is_empty(), "{:?}", c.bad);
        assert_eq!(
            ids(&c),
            vec![
                (1, false, 0),
                (1, true, 1),
                (1, false, 1),
                (2, true, 3),
                (3, false, 4)
            ]
        );
        let amounts = c.batch.column(1).as_primitive::<Int64Type>();
        assert_eq!(amounts.value(1), 5, "the update deletes the old row");
        assert_eq!(amounts.value(2), 7);
        assert!(amounts.is_null(3));
    }

    #[test]
    fn a_bad_event_keeps_none_of_its_rows_and_says_why() {
        let records: Vec<&[u8]> = vec![
            br#"{"after":{"id":1,"amount":5}}"#,
            br#"{"before":null,"after":{"id":2,"amount":7},"op":"u"}"#,
            br#"{"before":{"id":3,"amount":1},"after":{"id":3,"amount":"x"},"op":"u"}"#,
            br#"{"after":{"id":4},"op":"c"}"#,
            br#"{"op":"t"}"#,
            br#"{"before":{"id":5},"op":"x"}"#,
            b"{not json",
        ];
        let c = decoder().decode(&records).unwrap();
        assert_eq!(ids(&c), vec![(4, false, 3)]);
        let why: Vec<(usize, &str)> = c.bad.iter().map(|b| (b.index, b.error.as_str())).collect();
        assert_eq!(why.len(), 6, "{why:?}");
        assert_eq!(why[0].0, 0);
        assert!(why[0].1.starts_with("no `op`"), "{}", why[0].1);
        assert!(why[1].1.contains("without `before`"), "{}", why[1].1);
        assert!(why[1].1.contains("REPLICA IDENTITY FULL"), "{}", why[1].1);
        assert_eq!(why[2].0, 2);
        assert!(why[2].1.starts_with("`after`:"), "{}", why[2].1);
        assert!(why[3].1.contains("truncate"), "{}", why[3].1);
        assert!(why[4].1.contains("op `x`"), "{}", why[4].1);
        assert!(
            why[5].1.starts_with("not a Debezium change event"),
            "{}",
            why[5].1
        );
    }
}
