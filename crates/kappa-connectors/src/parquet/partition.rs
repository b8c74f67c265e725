//! The partition directory of every row of a batch, rendered from the sink's template (e.g.
//! `dt={window_start:%Y-%m-%d}`), and the batch split by directory. `/` in the template's
//! text separates directory levels; a value's text stays in its level (object_store encodes
//! what a name cannot hold, `/` included), a null is Hive's `__HIVE_DEFAULT_PARTITION__`.
//! Times are formatted in UTC.

use std::collections::HashMap;
use std::fmt::Write;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use kappa_job::path_template::{PathPart, PathTemplate};
use kappa_runtime::TaskError;

use crate::time_text::TimeColumn;
use object_store::path::{Path as ObjectPath, PathPart as ObjectPart};

/// The directory name of a null value (Hive's, which pyarrow and Spark read as null).
pub(super) const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

fn data(what: &str, e: impl std::fmt::Display) -> TaskError {
    TaskError::Data(format!("partition directory: {what}: {e}"))
}

/// The rows of `batch` by their directory under the sink's location, in the order the
/// directories first appear; everything in the top directory without a template.
pub(super) fn split(
    template: Option<&PathTemplate>,
    batch: &RecordBatch,
) -> Result<Vec<(ObjectPath, RecordBatch)>, TaskError> {
    let Some(template) = template else {
        return Ok(vec![(ObjectPath::default(), batch.clone())]);
    };
    let dirs = render(template, batch)?;
    let mut groups: Vec<(ObjectPath, Vec<u32>)> = Vec::new();
    let mut index: HashMap<&ObjectPath, usize> = HashMap::new();
    for (row, dir) in dirs.iter().enumerate() {
        let row = u32::try_from(row).map_err(|e| data("batch too large", e))?;
        let i = *index.entry(dir).or_insert_with(|| {
            groups.push((dir.clone(), Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(row);
    }
    if let [(dir, _)] = groups.as_slice() {
        return Ok(vec![(dir.clone(), batch.clone())]);
    }
    groups
        .into_iter()
        .map(|(dir, rows)| {
            let rows = take_record_batch(batch, &UInt32Array::from(rows))
                .map_err(|e| data("selecting rows", e))?;
            Ok((dir, rows))
        })
        .collect()
}

/// How one column part renders a row.
enum Value<'a> {
    Text(ArrayFormatter<'a>),
    Time(TimeColumn<'a>),
}

/// The directory of every row of `batch`.
fn render(template: &PathTemplate, batch: &RecordBatch) -> Result<Vec<ObjectPath>, TaskError> {
    let options = FormatOptions::default();
    let values = template
        .parts
        .iter()
        .map(|p| match p {
            PathPart::Literal(_) => Ok(None),
            PathPart::Column { index, format } => {
                let col = batch
                    .columns()
                    .get(*index)
                    .ok_or_else(|| data("no column", index))?
                    .as_ref();
                let value = match format {
                    None => Value::Text(
                        ArrayFormatter::try_new(col, &options)
                            .map_err(|e| data("formatting", e))?,
                    ),
                    Some(f) => Value::Time(
                        TimeColumn::new(col, f).map_err(|e| data("formatting a time", e))?,
                    ),
                };
                Ok(Some((col, value)))
            }
        })
        .collect::<Result<Vec<_>, TaskError>>()?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut levels = vec![String::new()];
        for (part, value) in template.parts.iter().zip(&values) {
            let level = levels.last_mut().ok_or_else(|| data("no level", row))?;
            match (part, value) {
                (PathPart::Literal(text), _) => {
                    let mut pieces = text.split('/');
                    level.push_str(pieces.next().unwrap_or_default());
                    levels.extend(pieces.map(str::to_string));
                }
                (_, Some((col, _))) if col.is_null(row) => level.push_str(NULL_PARTITION),
                (_, Some((_, Value::Text(f)))) => {
                    write!(level, "{}", f.value(row)).map_err(|e| data("formatting", e))?;
                }
                (_, Some((_, Value::Time(t)))) => {
                    if !t.write(row, level) {
                        return Err(data("a time out of range in row", row));
                    }
                }
                (_, None) => {}
            }
        }
        out.push(ObjectPath::from_iter(
            levels.iter().map(|l| ObjectPart::from(l.as_str())),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, TimestampSecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    const DAY_MS: i64 = 86_400_000;
    /// 2024-11-25T00:00:00Z.
    const NOV_25: i64 = 1_732_492_800_000;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("item_id", DataType::Utf8, true),
            Field::new("window_start", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Second, None), false),
        ]));
        let starts = [NOV_25, NOV_25 + 3_600_000, NOV_25 + DAY_MS, NOV_25];
        RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("item_1"),
                    Some("a/b"),
                    None,
                    Some("item_1"),
                ])),
                Arc::new(Int64Array::from(starts.to_vec())),
                Arc::new(TimestampSecondArray::from(
                    starts.iter().map(|s| s / 1000).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch")
    }

    fn dirs(template: &str) -> Vec<(String, usize)> {
        let b = batch();
        let t = PathTemplate::parse(template, &b.schema()).expect("template");
        split(Some(&t), &b)
            .expect("split")
            .into_iter()
            .map(|(d, rows)| (d.to_string(), rows.num_rows()))
            .collect()
    }

    #[test]
    fn rows_are_split_by_their_rendered_directory() {
        assert_eq!(
            dirs("dt={window_start:%Y-%m-%d}"),
            [("dt=2024-11-25".into(), 3), ("dt=2024-11-26".into(), 1)]
        );
        assert_eq!(
            dirs("year={ts:%Y}/month={ts:%m}/h={window_start:%H}"),
            [
                ("year=2024/month=11/h=00".into(), 3),
                ("year=2024/month=11/h=01".into(), 1),
            ]
        );
    }

    #[test]
    fn values_stay_in_their_level_and_nulls_are_hive_nulls() {
        assert_eq!(
            dirs("item={item_id}/d={window_start:%d}"),
            [
                ("item=item_1/d=25".into(), 2),
                ("item=a%2Fb/d=25".into(), 1),
                (format!("item={NULL_PARTITION}/d=26"), 1),
            ]
        );
        let b = batch();
        let all = split(None, &b).expect("split");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0.to_string(), "");
        assert_eq!(all[0].1.num_rows(), 4);
    }
}
