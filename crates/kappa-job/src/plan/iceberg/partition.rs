//! An iceberg sink's `partition_by`: Iceberg's hidden partitioning, written as Spark's DDL
//! writes it — `"day(event_time), bucket(16, item_id), region"` — each part a column (its
//! value: identity), `year|month|day|hour(column)` of a timestamp or date column (the plural
//! forms too), `bucket(N, column)` or `truncate(W, column)`. Partition fields are named as
//! Iceberg's Java API names them (`event_time_day`, `item_id_bucket`, `region`).

use arrow::datatypes::SchemaRef;

use super::IcebergType;

/// How a partition value is derived from its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionTransform {
    Identity,
    Year,
    Month,
    Day,
    Hour,
    Bucket(u32),
    Truncate(u32),
}

impl PartitionTransform {
    /// Iceberg's name of the transform (`identity`, `day`, `bucket[16]`, `truncate[4]`).
    pub fn iceberg(self) -> String {
        match self {
            Self::Identity => "identity".into(),
            Self::Year => "year".into(),
            Self::Month => "month".into(),
            Self::Day => "day".into(),
            Self::Hour => "hour".into(),
            Self::Bucket(n) => format!("bucket[{n}]"),
            Self::Truncate(w) => format!("truncate[{w}]"),
        }
    }

    /// Whether a column of type `t` can be partitioned this way.
    fn applies_to(self, t: IcebergType) -> bool {
        use IcebergType as T;
        match self {
            Self::Identity => !matches!(t, T::Float | T::Double),
            Self::Year | Self::Month | Self::Day => {
                matches!(t, T::Date | T::Timestamp | T::TimestampTz)
            }
            Self::Hour => matches!(t, T::Timestamp | T::TimestampTz),
            Self::Bucket(_) => matches!(
                t,
                T::Int | T::Long | T::String | T::Binary | T::Date | T::Timestamp | T::TimestampTz
            ),
            Self::Truncate(_) => matches!(t, T::Int | T::Long | T::String | T::Binary),
        }
    }
}

/// One partition field: a transform of an output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcebergPartition {
    /// The output column (the table's column of that name).
    pub column: String,
    pub transform: PartitionTransform,
}

impl IcebergPartition {
    /// The partition field's name, as Iceberg's Java API names it.
    pub fn name(&self) -> String {
        let c = &self.column;
        match self.transform {
            PartitionTransform::Identity => c.clone(),
            PartitionTransform::Year => format!("{c}_year"),
            PartitionTransform::Month => format!("{c}_month"),
            PartitionTransform::Day => format!("{c}_day"),
            PartitionTransform::Hour => format!("{c}_hour"),
            PartitionTransform::Bucket(_) => format!("{c}_bucket"),
            PartitionTransform::Truncate(_) => format!("{c}_trunc"),
        }
    }
}

/// A positive count in a transform (`16` in `bucket(16, id)`).
fn count(text: &str, part: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "`{part}`: `{}` must be a whole number above 0",
            text.trim()
        )),
    }
}

/// One part of `partition_by`.
fn part(text: &str) -> Result<IcebergPartition, String> {
    let identity = |column: &str| IcebergPartition {
        column: column.to_string(),
        transform: PartitionTransform::Identity,
    };
    let Some((function, rest)) = text.split_once('(') else {
        return Ok(identity(text));
    };
    let Some(args) = rest.strip_suffix(')') else {
        return Err(format!("`{text}` has no closing `)`"));
    };
    let args: Vec<&str> = args.split(',').map(str::trim).collect();
    let one = |t: PartitionTransform| match args.as_slice() {
        [c] if !c.is_empty() => Ok(IcebergPartition {
            column: c.to_string(),
            transform: t,
        }),
        _ => Err(format!("`{text}` takes one column")),
    };
    let with_count = |make: fn(u32) -> PartitionTransform| match args.as_slice() {
        [n, c] if !c.is_empty() => Ok(IcebergPartition {
            column: c.to_string(),
            transform: make(count(n, text)?),
        }),
        _ => Err(format!(
            "`{text}` takes a count and a column: `{function}(16, column)`"
        )),
    };
    match function.trim().to_ascii_lowercase().as_str() {
        "identity" => one(PartitionTransform::Identity),
        "year" | "years" => one(PartitionTransform::Year),
        "month" | "months" => one(PartitionTransform::Month),
        "day" | "days" => one(PartitionTransform::Day),
        "hour" | "hours" => one(PartitionTransform::Hour),
        "bucket" => with_count(PartitionTransform::Bucket),
        "truncate" => with_count(PartitionTransform::Truncate),
        other => Err(format!(
            "`{other}` is not an Iceberg partition transform: use identity, year, month, day, hour, bucket(N, column) or truncate(W, column)"
        )),
    }
}

/// The partition fields of `text` over the columns of `output` typed `columns`.
pub fn parse(
    text: &str,
    output: &SchemaRef,
    columns: &[IcebergType],
) -> Result<Vec<IcebergPartition>, String> {
    let mut fields: Vec<IcebergPartition> = Vec::new();
    for piece in split_top(text) {
        let piece = piece.trim();
        if piece.is_empty() {
            return Err("an empty partition field (a stray `,`?)".into());
        }
        let field = part(piece)?;
        let Ok(index) = output.index_of(&field.column) else {
            return Err(format!(
                "`{piece}`: the output has no column `{}`",
                field.column
            ));
        };
        if let Some(t) = columns.get(index)
            && !field.transform.applies_to(*t)
        {
            return Err(format!(
                "`{piece}`: {} does not apply to `{}`, a {} column{}",
                field.transform.iceberg(),
                field.column,
                output.field(index).data_type(),
                match field.transform {
                    PartitionTransform::Year
                    | PartitionTransform::Month
                    | PartitionTransform::Day
                    | PartitionTransform::Hour => {
                        " (an epoch-milliseconds integer is not a time to Iceberg: output it as a TIMESTAMP)"
                    }
                    _ => "",
                }
            ));
        }
        if fields.iter().any(|f| f.name() == field.name()) {
            return Err(format!("`{piece}` is given twice"));
        }
        fields.push(field);
    }
    Ok(fields)
}

/// `text` split at the commas outside parentheses.
fn split_top(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn output() -> (SchemaRef, Vec<IcebergType>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("item_id", DataType::Utf8, true),
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
            Field::new("window_start", DataType::Int64, true),
            Field::new("score", DataType::Float64, true),
        ]));
        let types = schema
            .fields()
            .iter()
            .filter_map(|f| IcebergType::of(f.data_type()))
            .collect();
        (schema, types)
    }

    #[test]
    fn transforms_parse_with_iceberg_names() {
        let (schema, types) = output();
        let fields = parse(
            "days(event_time), bucket(16, item_id),window_start",
            &schema,
            &types,
        )
        .expect("parses");
        let got: Vec<(String, String)> = fields
            .iter()
            .map(|f| (f.name(), f.transform.iceberg()))
            .collect();
        assert_eq!(
            got,
            [
                ("event_time_day".to_string(), "day".to_string()),
                ("item_id_bucket".to_string(), "bucket[16]".to_string()),
                ("window_start".to_string(), "identity".to_string()),
            ]
        );
        let fields =
            parse("truncate(4, item_id), hour(event_time)", &schema, &types).expect("parses");
        assert_eq!(fields[0].transform, PartitionTransform::Truncate(4));
        assert_eq!(fields[1].name(), "event_time_hour");
    }

    #[test]
    fn bad_transforms_say_why() {
        let (schema, types) = output();
        let why = |text: &str| parse(text, &schema, &types).expect_err(text);
        assert!(
            why("day(window_start)").contains("epoch-milliseconds"),
            "{}",
            why("day(window_start)")
        );
        assert!(why("bucket(0, item_id)").contains("above 0"));
        assert!(why("bucket(item_id)").contains("a count and a column"));
        assert!(why("weeks(event_time)").contains("not an Iceberg partition transform"));
        assert!(why("day(missing)").contains("no column `missing`"));
        assert!(why("score").contains("identity does not apply"));
        assert!(why("item_id, item_id").contains("given twice"));
        assert!(why("item_id,").contains("empty partition field"));
        assert!(why("day(event_time").contains("closing"));
    }
}
