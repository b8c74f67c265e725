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

/// A piece of a template's text: literal text, or what a `{…}` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(String),
    Field(String),
}

/// Splits a template into literal text and `{…}` fields (trimmed); `{{` and `}}` are literal
/// braces. `what` names the template in messages.
pub(crate) fn pieces(text: &str, what: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let field: String = chars.by_ref().take_while(|c| *c != '}').collect();
                if !literal.is_empty() {
                    out.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                out.push(Piece::Field(field.trim().to_string()));
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
        out.push(Piece::Literal(literal));
    }
    if out.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(out)
}

/// The index of column `name` of `schema`, or why a `what` cannot name it.
pub(crate) fn column(schema: &Schema, name: &str, what: &str) -> Result<usize, String> {
    schema.index_of(name).map_err(|_| {
        let cols: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        format!(
            "{what} names column `{name}`, which the output does not have (columns: {})",
            cols.join(", ")
        )
    })
}

impl KeyTemplate {
    /// Parses `text` against the columns of `schema`; `{{` and `}}` are literal braces.
    pub fn parse(text: &str, schema: &Schema) -> Result<Self, String> {
        let what = "key template";
        let parts = pieces(text, what)?
            .into_iter()
            .map(|p| match p {
                Piece::Literal(s) => Ok(TemplatePart::Literal(s)),
                Piece::Field(name) => column(schema, &name, what).map(TemplatePart::Column),
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            text: text.to_string(),
            parts,
        })
    }
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
