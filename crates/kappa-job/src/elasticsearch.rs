//! What an Elasticsearch / OpenSearch sink is planned into: its nodes, credentials, TLS file,
//! index template, and the index-name template `hourly-{window_start:%Y-%m}` — literal text
//! and output columns, a timestamp or epoch-millisecond column optionally formatted with a
//! strftime format — with the index-name rules both servers enforce.

use std::path::PathBuf;

use arrow::datatypes::{DataType, Schema};

use crate::secret::Secret;
use crate::template::{Piece, column_index, pieces};

/// Bytes of buffered bulk requests that make the sink send them (`bulk_size`, default).
pub const DEFAULT_BULK_SIZE: u64 = 5 << 20;

/// The longest index name, in bytes.
const INDEX_NAME_MAX: usize = 255;

/// Characters no index name may hold (`:` is refused since Elasticsearch 7).
const INDEX_NAME_FORBIDDEN: &[char] =
    &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];

/// An Elasticsearch or OpenSearch sink as planned.
#[derive(Debug, Clone)]
pub struct ElasticsearchTarget {
    /// Base URLs of the nodes (`https://es1:9200`), requests spread over them.
    pub nodes: Vec<String>,
    /// The index each row is written to.
    pub index: IndexName,
    pub auth: Auth,
    /// The CA certificates (PEM) the nodes' certificates are checked against, instead of the
    /// system's.
    pub ca_file: Option<PathBuf>,
    /// An index template to create at open when the cluster has none of its name.
    pub template: Option<IndexTemplate>,
    /// Buffered bytes that make the sink send a bulk request between checkpoints.
    pub bulk_size: u64,
}

/// How the sink authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    /// HTTP basic authentication.
    Basic {
        username: String,
        password: Secret,
    },
    /// `Authorization: ApiKey <key>`, the key as Elasticsearch encodes it (`encoded`).
    ApiKey(Secret),
}

/// `PUT _index_template/<name>` with the mappings of the indices the sink writes.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexTemplate {
    pub name: String,
    /// The patterns of the index names it applies to (`hourly-*`).
    pub patterns: Vec<String>,
    /// The `mappings` object.
    pub mappings: serde_json::Value,
}

impl IndexTemplate {
    /// The request body of `PUT _index_template/<name>`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "index_patterns": self.patterns,
            "template": { "mappings": self.mappings },
        })
    }
}

/// One piece of an index-name template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexPart {
    Literal(String),
    /// An output column as text, like a key template's.
    Column(usize),
    /// A timestamp or epoch-millisecond column, formatted in UTC.
    Time {
        column: usize,
        format: String,
    },
}

/// A parsed index-name template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexName {
    pub text: String,
    pub parts: Vec<IndexPart>,
}

impl IndexName {
    /// Parses `text` against `schema`: `{column}` or `{column:<strftime>}`; `{{`, `}}` are
    /// literal braces. The literal text must be fit for an index name.
    pub fn parse(text: &str, schema: &Schema) -> Result<Self, String> {
        let what = "`index`";
        let mut parts = Vec::new();
        for piece in pieces(text, what)? {
            let part = match piece {
                Piece::Literal(s) => {
                    literal_fits(&s)?;
                    IndexPart::Literal(s)
                }
                Piece::Field(field) => {
                    let (name, format) = match field.split_once(':') {
                        Some((name, format)) => (name.trim(), Some(format)),
                        None => (field.trim(), None),
                    };
                    let column = column_index(what, name, schema)?;
                    let data_type = schema.field(column).data_type();
                    match format {
                        Some(format) => time_part(name, column, data_type, format)?,
                        None if matches!(data_type, DataType::Timestamp(_, _)) => {
                            return Err(format!(
                                "column `{name}` is a timestamp, whose text holds `:` (which an index name cannot): give a format, e.g. {{{name}:%Y-%m-%d}}"
                            ));
                        }
                        None => IndexPart::Column(column),
                    }
                }
            };
            parts.push(part);
        }
        if let Some(IndexPart::Literal(first)) = parts.first()
            && first.starts_with(['-', '_', '+'])
        {
            return Err("an index name must not start with `-`, `_` or `+`".into());
        }
        Ok(Self {
            text: text.to_string(),
            parts,
        })
    }

    /// The index patterns of the names it renders: each field becomes `*` (`hourly-*`).
    pub fn pattern(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                IndexPart::Literal(s) => out.push_str(s),
                _ if out.ends_with('*') => {}
                _ => out.push('*'),
            }
        }
        out
    }
}

/// A formatted time column, if what the format writes fits an index name.
fn time_part(
    name: &str,
    column: usize,
    data_type: &DataType,
    format: &str,
) -> Result<IndexPart, String> {
    let text = crate::time_format::check(format, name, data_type)?;
    literal_fits(&text).map_err(|e| {
        format!("the time format `{format}` of column `{name}` writes `{text}`: {e}")
    })?;
    Ok(IndexPart::Time {
        column,
        format: format.to_string(),
    })
}

/// Whether literal text may be part of an index name.
fn literal_fits(s: &str) -> Result<(), String> {
    if let Some(c) = s.chars().find(|c| INDEX_NAME_FORBIDDEN.contains(c)) {
        return Err(format!("an index name cannot hold `{c}`"));
    }
    if s.chars().any(char::is_uppercase) {
        return Err(format!(
            "an index name must be lowercase: `{s}` is not (write `{}`)",
            s.to_lowercase()
        ));
    }
    Ok(())
}

/// Why `name` cannot be an index name, if it cannot (the rules of both servers).
pub fn index_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name == "." || name == ".." {
        return Some(format!("`{name}` is not an index name"));
    }
    if name.len() > INDEX_NAME_MAX {
        return Some(format!(
            "an index name is at most {INDEX_NAME_MAX} bytes, `{name}` has {}",
            name.len()
        ));
    }
    if name.starts_with(['-', '_', '+']) {
        return Some(format!(
            "`{name}`: an index name must not start with `-`, `_` or `+`"
        ));
    }
    literal_fits(name).err().map(|e| format!("`{name}`: {e}"))
}

/// Whether `name` may name an index template.
pub fn template_name_problem(name: &str) -> Option<String> {
    index_name_problem(name).map(|e| e.replace("index name", "index template name"))
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
            Field::new("ratio", DataType::Float64, false),
        ])
    }

    #[test]
    fn parses_literals_columns_and_formatted_times() {
        let t = IndexName::parse("hourly-{window_start:%Y-%m}-{item_id}", &schema()).unwrap();
        assert_eq!(
            t.parts,
            [
                IndexPart::Literal("hourly-".into()),
                IndexPart::Time {
                    column: 1,
                    format: "%Y-%m".into()
                },
                IndexPart::Literal("-".into()),
                IndexPart::Column(0),
            ]
        );
        assert_eq!(t.pattern(), "hourly-*-*");
        let t = IndexName::parse("clicks", &schema()).unwrap();
        assert_eq!(t.parts, [IndexPart::Literal("clicks".into())]);
        assert_eq!(t.pattern(), "clicks");
        let t = IndexName::parse("d-{ts:%Y.%m.%d}", &schema()).unwrap();
        assert_eq!(t.pattern(), "d-*");
    }

    #[test]
    fn refuses_what_cannot_make_an_index_name() {
        let cases = [
            ("{nope}", "names column `nope`"),
            ("{ratio:%Y}", "a format applies to timestamps"),
            ("x-{ts}", "give a format, e.g. {ts:%Y-%m-%d}"),
            ("x-{ts:%Y %m}", "cannot hold ` `"),
            ("x-{ts:%e}", "writes ` 3`"),
            ("x-{ts:%T}", "cannot hold `:`"),
            ("x-{ts:%B}", "must be lowercase"),
            ("x-{ts:%Y:%m}", "cannot hold `:`"),
            ("x-{ts:%Q}", "`%Q` of column `ts` is not a strftime format"),
            ("Hourly-{item_id}", "must be lowercase"),
            ("a/b", "cannot hold `/`"),
            ("_x", "must not start with"),
            ("", "is empty"),
            ("a}", "unmatched `}`"),
        ];
        for (text, why) in cases {
            let e = IndexName::parse(text, &schema()).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn rendered_names_are_checked() {
        assert_eq!(index_name_problem("hourly-2024-01"), None);
        for (name, why) in [
            ("Item", "lowercase"),
            ("a b", "cannot hold ` `"),
            ("..", "not an index name"),
            ("", "not an index name"),
            ("-a", "must not start"),
        ] {
            let e = index_name_problem(name).unwrap();
            assert!(e.contains(why), "{name}: {e}");
        }
        assert!(
            index_name_problem(&"a".repeat(256))
                .unwrap()
                .contains("at most 255")
        );
        assert!(
            template_name_problem("T")
                .unwrap()
                .contains("index template name")
        );
    }

    #[test]
    fn template_body_has_patterns_and_mappings() {
        let t = IndexTemplate {
            name: "kappa-hourly".into(),
            patterns: vec!["hourly-*".into()],
            mappings: serde_json::json!({"properties": {"click_count": {"type": "long"}}}),
        };
        assert_eq!(
            t.body(),
            serde_json::json!({
                "index_patterns": ["hourly-*"],
                "template": {"mappings": {"properties": {"click_count": {"type": "long"}}}}
            })
        );
    }
}
