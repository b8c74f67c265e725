//! The index of every row of a batch, rendered from the sink's index-name template: literal
//! text, columns as text, and timestamp or epoch-millisecond columns formatted in UTC.

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use kappa_job::elasticsearch::{IndexName, IndexPart, index_name_problem};

use super::error::EsError;
use crate::ConnectorError;
use crate::time_text::TimeColumn;

/// How one part of the template is written for a row.
enum Writer<'a> {
    Literal(&'a str),
    Text(ArrayFormatter<'a>),
    Time {
        name: &'a str,
        times: TimeColumn<'a>,
    },
}

/// The index of each row of `batch`; `ids` names the rows in errors.
pub fn index_names(
    template: &IndexName,
    batch: &RecordBatch,
    ids: &[String],
) -> Result<Vec<String>, EsError> {
    let options = FormatOptions::default();
    let schema = batch.schema_ref();
    let format_error =
        |e: arrow::error::ArrowError| EsError::Encode(ConnectorError::Format(e.to_string()));
    let writers = template
        .parts
        .iter()
        .map(|p| {
            Ok(match p {
                IndexPart::Literal(s) => Writer::Literal(s),
                IndexPart::Column(i) => Writer::Text(
                    ArrayFormatter::try_new(batch.column(*i).as_ref(), &options)
                        .map_err(format_error)?,
                ),
                IndexPart::Time { column, format } => Writer::Time {
                    name: schema.field(*column).name(),
                    times: TimeColumn::new(batch.column(*column).as_ref(), format)
                        .map_err(EsError::Encode)?,
                },
            })
        })
        .collect::<Result<Vec<_>, EsError>>()?;
    let mut names = Vec::with_capacity(batch.num_rows());
    for (row, id) in ids.iter().enumerate().take(batch.num_rows()) {
        let failed = |why: String| EsError::IndexName {
            id: id.clone(),
            why,
        };
        let mut name = String::new();
        for w in &writers {
            use std::fmt::Write;
            match w {
                Writer::Literal(s) => name.push_str(s),
                Writer::Text(f) => write!(name, "{}", f.value(row))
                    .map_err(|e| failed(format!("writing its index name: {e}")))?,
                Writer::Time {
                    name: column,
                    times,
                } => {
                    if !times.write(row, &mut name) {
                        return Err(failed(format!(
                            "`{column}` is null or out of range: it has no index name"
                        )));
                    }
                }
            }
        }
        if let Some(why) = index_name_problem(&name) {
            return Err(failed(format!("no valid index name: {why}")));
        }
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, TimestampSecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new("window_start", DataType::Int64, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Second, Some("+02:00".into())),
                false,
            ),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["item_1", "Item_2"])),
                Arc::new(Int64Array::from(vec![Some(1_704_067_200_000), None])),
                Arc::new(
                    TimestampSecondArray::from(vec![1_706_745_599, 0]).with_timezone("+02:00"),
                ),
            ],
        )
        .unwrap()
    }

    fn ids() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn renders_times_in_utc_and_columns_as_text() {
        let b = batch();
        let t = IndexName::parse("d-{ts:%Y.%m.%d}-{window_start}", b.schema_ref()).unwrap();
        let names = index_names(&t, &b, &ids());
        // Row 1's window_start is null: rendered as nothing, like a key's null.
        assert_eq!(
            names.unwrap(),
            ["d-2024.01.31-1704067200000", "d-1970.01.01-"]
        );
        let t = IndexName::parse("h-{window_start:%Y-%m}", b.schema_ref()).unwrap();
        let e = index_names(&t, &b.slice(0, 1), &ids()).unwrap();
        assert_eq!(e, ["h-2024-01"]);
    }

    #[test]
    fn rows_without_a_valid_index_name_are_named() {
        let b = batch();
        let t = IndexName::parse("h-{window_start:%Y-%m}", b.schema_ref()).unwrap();
        let e = index_names(&t, &b, &ids()).unwrap_err().to_string();
        assert_eq!(
            e,
            "document _id `b`: `window_start` is null or out of range: it has no index name"
        );
        let t = IndexName::parse("i-{item_id}", b.schema_ref()).unwrap();
        let e = index_names(&t, &b, &ids()).unwrap_err().to_string();
        assert!(
            e.starts_with("document _id `b`: no valid index name: `i-Item_2`"),
            "{e}"
        );
        assert!(e.contains("lowercase"), "{e}");
    }
}
