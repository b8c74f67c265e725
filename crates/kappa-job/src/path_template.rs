//! Partition-directory templates of the parquet sink, such as `dt={window_start:%Y-%m-%d}`:
//! literal path text and column references as in key templates, a time column (a timestamp,
//! or epoch milliseconds in an integer column) optionally formatted with a strftime format
//! (UTC). Checked against the output schema when the job is planned, so that every directory
//! a row renders to is a visible, relative one: readers (pyarrow, Spark, DuckDB's hive
//! partitioning) skip names starting with `.` or `_`, and `..` would leave the sink's prefix.

use arrow::datatypes::{DataType, Schema};

use crate::template::{Piece, column_index, pieces};

/// One piece of a partition template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPart {
    /// Literal path text; `/` separates directory levels.
    Literal(String),
    /// An output column, rendered as text, or with `format` (strftime, UTC) for a time column.
    Column {
        index: usize,
        format: Option<String>,
    },
}

/// A parsed partition template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    pub text: String,
    pub parts: Vec<PathPart>,
}

const WHAT: &str = "partition template";

/// Whether a literal character may appear in a partition directory name.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.=+,@/".contains(c)
}

impl PathTemplate {
    /// Parses `text` against the columns of `schema`.
    pub fn parse(text: &str, schema: &Schema) -> Result<Self, String> {
        let mut parts = Vec::new();
        for piece in pieces(text, WHAT)? {
            parts.push(match piece {
                Piece::Literal(s) => {
                    if let Some(c) = s.chars().find(|c| !plain(*c)) {
                        return Err(format!(
                            "{WHAT}: `{c}` cannot be part of a directory name (letters, digits and -_.=+,@ only; `/` between levels)"
                        ));
                    }
                    PathPart::Literal(s)
                }
                Piece::Field(field) => {
                    let (name, format) = match field.split_once(':') {
                        Some((n, f)) => (n.trim(), Some(f.to_string())),
                        None => (field.trim(), None),
                    };
                    let index = column_index(WHAT, name, schema)?;
                    if let Some(f) = &format {
                        check_format(f, schema.field(index).data_type(), name)?;
                    }
                    PathPart::Column { index, format }
                }
            });
        }
        check_levels(&parts)?;
        Ok(Self {
            text: text.to_string(),
            parts,
        })
    }
}

fn check_format(format: &str, t: &DataType, name: &str) -> Result<(), String> {
    crate::time_format::check(format, name, t).map_err(|e| format!("{WHAT}: {e}"))?;
    if format.contains('/') {
        return Err(format!(
            "{WHAT}: a format makes one directory name: put `/` outside the braces, e.g. `{{{name}:%Y}}/{{{name}:%m}}`"
        ));
    }
    Ok(())
}

/// Every directory level must be a visible name: it begins with literal text other than `.`
/// or `_`, or with a formatted time column whose text does not (the text of any other column
/// could be anything).
fn check_levels(parts: &[PathPart]) -> Result<(), String> {
    let mut level_start = true;
    for part in parts {
        match part {
            PathPart::Literal(text) => {
                for (i, level) in text.split('/').enumerate() {
                    if i > 0 && level_start {
                        return Err(format!(
                            "{WHAT}: an empty directory level (`//` or a `/` at the start)"
                        ));
                    }
                    if i > 0 || level_start {
                        if level.starts_with(['.', '_']) {
                            return Err(format!(
                                "{WHAT}: directory `{level}` starts with `.` or `_`: readers take it for hidden and skip it"
                            ));
                        }
                        level_start = level.is_empty();
                    }
                }
            }
            PathPart::Column {
                format: Some(f), ..
            } if level_start => {
                let sample = crate::time_format::sample(f).unwrap_or_default();
                if sample.is_empty() || sample.starts_with(['.', '_']) {
                    return Err(format!(
                        "{WHAT}: `{f}` makes directory names such as `{sample}`, which readers take for hidden: begin the level with literal text"
                    ));
                }
                level_start = false;
            }
            PathPart::Column { .. } if level_start => {
                return Err(format!(
                    "{WHAT}: begin each directory level with literal text, e.g. `name={{column}}` (hive-style): a column's value could start with `.` or `_` and hide its files"
                ));
            }
            PathPart::Column { .. } => {}
        }
    }
    match level_start {
        true => Err(format!(
            "{WHAT}: it ends with `/`, an empty directory level"
        )),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, TimeUnit};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new("window_start", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ])
    }

    #[test]
    fn parses_levels_of_literals_columns_and_formats() {
        let t = PathTemplate::parse("dt={window_start:%Y-%m-%d}/item={item_id}", &schema())
            .expect("valid");
        assert_eq!(
            t.parts,
            [
                PathPart::Literal("dt=".into()),
                PathPart::Column {
                    index: 1,
                    format: Some("%Y-%m-%d".into())
                },
                PathPart::Literal("/item=".into()),
                PathPart::Column {
                    index: 0,
                    format: None
                },
            ]
        );
        PathTemplate::parse("{ts:%Y}/{ts:%m}", &schema()).expect("formatted levels");
    }

    #[test]
    fn refuses_hidden_empty_and_unknown_levels() {
        for (text, why) in [
            ("{nope}", "does not have"),
            ("{item_id}", "literal text"),
            ("dt={item_id:%Y}", "a format applies"),
            ("dt={ts:%Q}", "not a strftime"),
            ("dt={ts:%Y/%m}", "outside the braces"),
            ("_tmp/x={item_id}", "hidden"),
            ("a/.x={item_id}", "hidden"),
            ("a/../b", "hidden"),
            ("/a", "empty directory"),
            ("a//b", "empty directory"),
            ("a/", "ends with"),
            ("a b", "cannot be part"),
            ("a}", "unmatched"),
            ("", "empty"),
        ] {
            let e = PathTemplate::parse(text, &schema()).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
