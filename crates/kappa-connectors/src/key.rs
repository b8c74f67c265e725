//! Renders record keys from a template such as `{item_id}-{window_end}` for every row of a
//! result batch.

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use kappa_job::template::{KeyTemplate, TemplatePart};

use crate::ConnectorError;

/// The key of every row of `batch`.
pub fn render_keys(
    template: &KeyTemplate,
    batch: &RecordBatch,
) -> Result<Vec<String>, ConnectorError> {
    let options = FormatOptions::default();
    let formatters = template
        .parts
        .iter()
        .map(|p| match p {
            TemplatePart::Column(i) => ArrayFormatter::try_new(batch.column(*i).as_ref(), &options)
                .map(Some)
                .map_err(|e| ConnectorError::Format(e.to_string())),
            TemplatePart::Literal(_) => Ok(None),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut keys = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut key = String::new();
        for (part, fmt) in template.parts.iter().zip(&formatters) {
            match (part, fmt) {
                (TemplatePart::Literal(s), _) => key.push_str(s),
                (_, Some(f)) => {
                    use std::fmt::Write;
                    write!(key, "{}", f.value(row))
                        .map_err(|e| ConnectorError::Format(e.to_string()))?;
                }
                (TemplatePart::Column(_), None) => {}
            }
        }
        keys.push(key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn renders_each_row() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new("window_end", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec!["item_1", "item_2"])),
                Arc::new(Int64Array::from(vec![3600000, 7200000])),
            ],
        )
        .unwrap();
        let t = KeyTemplate::parse("{item_id}-{window_end}", &schema).unwrap();
        assert_eq!(
            render_keys(&t, &batch).unwrap(),
            vec!["item_1-3600000", "item_2-7200000"]
        );
    }
}
