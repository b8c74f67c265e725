//! The text of a job file with its literal secrets replaced by `***`: each literal value of a
//! secret field, and the password inside a PostgreSQL `url`, found by the spans the parser
//! keeps. Everything else stays byte for byte, line numbers included, so the redacted text
//! can be shown, stored and quoted; [`restore`] puts the literals back.

use std::fmt;
use std::ops::Range;

use toml::Spanned;

use super::{REDACTED, Secret};
use crate::SpecErrors;
use crate::parse::parse_job;
use crate::plan::{check_size, redact_url, url_password_ranges};
use crate::spec::{JobSpec, KafkaSecuritySpec, SchemaRegistrySpec};

/// A job file with its literal secrets replaced.
pub struct Redacted {
    /// The text to show, store and quote.
    pub text: String,
    /// What was replaced, in order: put back by [`restore`].
    pub literals: Vec<Literal>,
}

/// One literal secret taken out of a job file.
#[derive(Clone, PartialEq, Eq)]
pub struct Literal {
    /// Its field (`sinks.out.security.password`).
    pub field: String,
    /// Where its replacement stands in the redacted text.
    pub at: Range<usize>,
    /// The value as it was written in the file (the TOML string, quotes included).
    pub original: String,
}

impl fmt::Debug for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Literal({} at {:?})", self.field, self.at)
    }
}

/// The literals cannot be put back into the text: they were not taken out of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret {index} of {count} does not fit the text (at {at:?} in {len} bytes)")]
pub struct RestoreError {
    pub index: usize,
    pub count: usize,
    pub at: Range<usize>,
    pub len: usize,
}

/// A field of a job file that may hold a secret, as written.
pub(crate) struct SecretField<'a> {
    pub field: String,
    pub span: Range<usize>,
    pub value: FieldValue<'a>,
}

pub(crate) enum FieldValue<'a> {
    Secret(&'a Secret),
    /// A PostgreSQL connection string, which may hold a password.
    Url(&'a str),
}

/// Every secret field of `spec`, in no particular order.
pub(crate) fn secret_fields(spec: &JobSpec) -> Vec<SecretField<'_>> {
    let mut out = Vec::new();
    let sources = spec.source.iter().map(|s| ("source".to_string(), s));
    let named = spec
        .sources
        .iter()
        .map(|(n, s)| (format!("sources.{n}"), s));
    for (prefix, s) in sources.chain(named) {
        security_fields(&mut out, &prefix, s.security.as_ref());
        registry_fields(&mut out, &prefix, s.schema_registry.as_ref());
    }
    let sinks = spec.sink.iter().map(|s| ("sink".to_string(), s));
    let named = spec.sinks.iter().map(|(n, s)| (format!("sinks.{n}"), s));
    for (prefix, s) in sinks.chain(named) {
        security_fields(&mut out, &prefix, s.security.as_ref());
        registry_fields(&mut out, &prefix, s.schema_registry.as_ref());
        push_secret(&mut out, format!("{prefix}.password"), s.password.as_ref());
        push_secret(&mut out, format!("{prefix}.api_key"), s.api_key.as_ref());
        if let Some(url) = &s.url {
            out.push(SecretField {
                field: format!("{prefix}.url"),
                span: url.span(),
                value: FieldValue::Url(url.get_ref()),
            });
        }
    }
    out
}

fn security_fields<'a>(
    out: &mut Vec<SecretField<'a>>,
    prefix: &str,
    s: Option<&'a KafkaSecuritySpec>,
) {
    let Some(s) = s else { return };
    let fields = [
        ("password", &s.password),
        ("key_password", &s.key_password),
        ("oauth_client_secret", &s.oauth_client_secret),
    ];
    for (name, v) in fields {
        push_secret(out, format!("{prefix}.security.{name}"), v.as_ref());
    }
}

fn registry_fields<'a>(
    out: &mut Vec<SecretField<'a>>,
    prefix: &str,
    r: Option<&'a Spanned<SchemaRegistrySpec>>,
) {
    let password = r.and_then(|r| r.get_ref().password.as_ref());
    push_secret(out, format!("{prefix}.schema_registry.password"), password);
}

fn push_secret<'a>(out: &mut Vec<SecretField<'a>>, field: String, v: Option<&'a Spanned<Secret>>) {
    if let Some(v) = v {
        out.push(SecretField {
            field,
            span: v.span(),
            value: FieldValue::Secret(v.get_ref()),
        });
    }
}

/// Whether a connection string holds a password that was redacted.
pub(crate) fn url_redacted(url: &str) -> bool {
    url_password_ranges(url)
        .into_iter()
        .any(|r| &url[r] == REDACTED)
}

/// The text of job file `file` with every literal secret replaced by `"***"` and every
/// password in a PostgreSQL `url` by `***`; an error when it does not parse.
pub fn redact(file: &str, text: &str) -> Result<Redacted, SpecErrors> {
    check_size(file, text)?;
    let spec = parse_job(file, text)?;
    let mut replace: Vec<(String, Range<usize>, String)> = Vec::new();
    for f in secret_fields(&spec) {
        let shown = match f.value {
            FieldValue::Secret(s) if s.is_literal() => REDACTED.to_string(),
            FieldValue::Url(url) if !url_password_ranges(url).is_empty() && !url_redacted(url) => {
                redact_url(url)
            }
            FieldValue::Secret(_) | FieldValue::Url(_) => continue,
        };
        let Some(original) = text.get(f.span.clone()) else {
            continue;
        };
        let lines = original.matches('\n').count();
        replace.push((f.field, f.span, toml_string(&shown, lines)));
    }
    replace.sort_by_key(|(_, span, _)| span.start);
    let mut out = String::with_capacity(text.len());
    let mut literals = Vec::with_capacity(replace.len());
    let mut from = 0;
    for (field, span, token) in replace {
        out.push_str(&text[from..span.start]);
        let start = out.len();
        out.push_str(&token);
        literals.push(Literal {
            field,
            at: start..out.len(),
            original: text[span.clone()].to_string(),
        });
        from = span.end;
    }
    out.push_str(&text[from..]);
    Ok(Redacted {
        text: out,
        literals,
    })
}

/// The fields of job file `file` whose secret was redacted (`***`), which cannot run as
/// they are; an error when it does not parse.
pub fn redacted_fields(file: &str, text: &str) -> Result<Vec<String>, SpecErrors> {
    let spec = parse_job(file, text)?;
    let mut out: Vec<String> = secret_fields(&spec)
        .into_iter()
        .filter(|f| match f.value {
            FieldValue::Secret(s) => *s == Secret::Redacted,
            FieldValue::Url(url) => url_redacted(url),
        })
        .map(|f| f.field)
        .collect();
    out.sort();
    Ok(out)
}

/// The original text of a redacted one: each literal put back where [`redact`] took it out.
pub fn restore(text: &str, literals: &[Literal]) -> Result<String, RestoreError> {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for (index, l) in literals.iter().enumerate() {
        let fits = from <= l.at.start && text.get(l.at.clone()).is_some();
        if !fits {
            return Err(RestoreError {
                index,
                count: literals.len(),
                at: l.at.clone(),
                len: text.len(),
            });
        }
        out.push_str(&text[from..l.at.start]);
        out.push_str(&l.original);
        from = l.at.end;
    }
    out.push_str(&text[from..]);
    Ok(out)
}

/// `value` as a TOML string token spanning `lines` line breaks, as the token it replaces
/// did, so the lines after it keep their numbers.
fn toml_string(value: &str, lines: usize) -> String {
    let mut escaped = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            c if c.is_control() => escaped.push_str(&format!("\\u{:04X}", c as u32)),
            c => escaped.push(c),
        }
    }
    match lines {
        0 => format!("\"{escaped}\""),
        // A line-ending backslash in a multi-line string drops the line break after it.
        n => format!("\"\"\"{escaped}\\{}\"\"\"", "\n".repeat(n)),
    }
}
