//! Record-key templates such as `{item_id}-{window_end}`: literal text and column references,
//! checked against the output schema when the job is planned.

use arrow::datatypes::Schema;

/// One piece of a key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    /// Index of an output column.
    Column(usize),
}

/// A parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    pub text: String,
    pub parts: Vec<TemplatePart>,
}

impl KeyTemplate {
    /// Parses `text` against the columns of `schema`; `{{` and `}}` are literal braces.
    pub fn parse(text: &str, schema: &Schema) -> Result<Self, String> {
        let parts = pieces(text, "key template")?
            .into_iter()
            .map(|p| match p {
                Piece::Literal(s) => Ok(TemplatePart::Literal(s)),
                Piece::Field(name) => {
                    column_index("key template", name.trim(), schema).map(TemplatePart::Column)
                }
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            text: text.to_string(),
            parts,
        })
    }
}

/// One piece of a template's text, before its fields are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Literal(String),
    /// What stands between `{` and `}`, as written.
    Field(&'a str),
}

/// Splits a template (`what` names it in messages) into literal text and `{…}` fields;
/// `{{` and `}}` are literal braces. An empty template is an error.
pub fn pieces<'a>(text: &'a str, what: &str) -> Result<Vec<Piece<'a>>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let start = i + 1;
                let end = chars
                    .by_ref()
                    .find(|(_, c)| *c == '}')
                    .map_or(text.len(), |(j, _)| j);
                if !literal.is_empty() {
                    parts.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Piece::Field(&text[start..end]));
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` in {what} (write `}}}}` for a literal brace)"
                ));
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Piece::Literal(literal));
    }
    if parts.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(parts)
}

/// The index of column `name` of `schema`, or why a template (`what`) cannot name it.
pub fn column_index(what: &str, name: &str, schema: &Schema) -> Result<usize, String> {
    schema.index_of(name).map_err(|_| {
        let cols: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        format!(
            "{what} names column `{name}`, which the output does not have (columns: {})",
            cols.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new("window_end", DataType::Int64, false),
        ])
    }

    #[test]
    fn parses_columns_and_literals() {
        let t = KeyTemplate::parse("{item_id}-{window_end}", &schema()).unwrap();
        assert_eq!(
            t.parts,
            vec![
                TemplatePart::Column(0),
                TemplatePart::Literal("-".into()),
                TemplatePart::Column(1)
            ]
        );
        let t = KeyTemplate::parse("{{x}}{item_id}", &schema()).unwrap();
        assert_eq!(t.parts[0], TemplatePart::Literal("{x}".into()));
    }

    #[test]
    fn rejects_unknown_columns_and_stray_braces() {
        assert!(
            KeyTemplate::parse("{nope}", &schema())
                .unwrap_err()
                .contains("nope")
        );
        assert!(KeyTemplate::parse("a}", &schema()).is_err());
        assert!(KeyTemplate::parse("", &schema()).is_err());
    }
}
