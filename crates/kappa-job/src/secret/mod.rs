//! Secrets written in a job file (a password, a key password, a client secret): a literal
//! value, or a reference — `${env:NAME}`, `${file:/path}` — read only on the process that
//! builds the client needing it ([`SecretSources`]). Debug output never shows a value, and
//! [`redact`] gives the text of a job file with every literal secret replaced by `***`.

pub(crate) mod redact;
mod sources;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

pub use redact::{Literal, Redacted, RestoreError, redact, redacted_fields, restore};
pub use sources::{SecretRootError, SecretSources};

/// What a redacted literal secret is replaced by, and what a resubmitted secret field may
/// not hold.
pub const REDACTED: &str = "***";

/// A secret as a job file gives it. Its `Debug` prints `***` (or the reference) and it has no
/// `Display`; read it with [`Secret::value`] only where it is handed to a client.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The value itself, written in the job file (or resolved from a reference).
    Literal(String),
    /// `${env:NAME}`: the environment variable NAME of the process that builds the client.
    Env(String),
    /// `${file:/path}`: the file's contents (without a trailing newline) on that process.
    File(PathBuf),
    /// `***`: a literal secret shown redacted; it must be given again.
    Redacted,
}

impl Secret {
    /// A literal secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self::Literal(value.into())
    }

    /// Reads a secret field's text: `***`, a reference, or a literal. Text starting with
    /// `${` must be a well-formed reference.
    pub fn parse(text: &str) -> Result<Self, BadReference> {
        if text == REDACTED {
            return Ok(Self::Redacted);
        }
        let Some(inner) = text.strip_prefix("${") else {
            return Ok(Self::Literal(text.to_string()));
        };
        let inner = inner.strip_suffix('}').ok_or(BadReference::Unclosed)?;
        if let Some(name) = inner.strip_prefix("env:") {
            let mut chars = name.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(BadReference::EnvName);
            }
            return Ok(Self::Env(name.to_string()));
        }
        if let Some(path) = inner.strip_prefix("file:") {
            if !path.starts_with('/') || path.contains('\0') {
                return Err(BadReference::FilePath);
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        Err(BadReference::Kind)
    }

    /// Whether the value is written in the job file (a literal, possibly empty).
    pub fn is_literal(&self) -> bool {
        matches!(self, Self::Literal(_))
    }

    /// Whether it is a literal with no text.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Literal(v) if v.is_empty())
    }

    /// The value, for the one place that hands it to a client; `field` names it in the error
    /// when it is a reference not resolved on this process or a redacted one.
    pub fn value(&self, field: &str) -> Result<&str, SecretError> {
        match self {
            Self::Literal(v) => Ok(v),
            Self::Redacted => Err(SecretProblem::Redacted.at(field)),
            Self::Env(_) | Self::File(_) => Err(SecretProblem::Unresolved {
                reference: self.reference(),
            }
            .at(field)),
        }
    }

    /// The reference as written (`${env:NAME}`, `${file:/path}`); `***` for a value.
    fn reference(&self) -> String {
        match self {
            Self::Env(name) => format!("${{env:{name}}}"),
            Self::File(path) => format!("${{file:{}}}", path.display()),
            Self::Literal(_) | Self::Redacted => REDACTED.to_string(),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reference())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Secret::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A secret field's text starts with `${` but is no reference (the text itself is not shown:
/// it may be a literal secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadReference {
    #[error(
        "a secret starting with `${{` is a reference and must end with `}}`: write ${{env:NAME}} or ${{file:/absolute/path}}"
    )]
    Unclosed,
    #[error("in ${{env:NAME}}, NAME is letters, digits and `_`, not starting with a digit")]
    EnvName,
    #[error("in ${{file:PATH}}, PATH must be an absolute path")]
    FilePath,
    #[error("unknown secret reference: write ${{env:NAME}} or ${{file:/absolute/path}}")]
    Kind,
}

/// Why a secret could not be read on this process. No message shows a secret's value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SecretError {
    /// Its place in the job file (`sinks.out.security.password`).
    pub field: String,
    pub reason: SecretProblem,
}

/// What is wrong with a secret (see [`SecretError`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretProblem {
    #[error(
        "{reference}: this {process} lets jobs read no secrets from {what}; start it with {flag}"
    )]
    NotAllowed {
        reference: String,
        process: &'static str,
        what: &'static str,
        flag: &'static str,
    },
    #[error("{reference}: this {process} lets jobs read only {allowed} ({flag})")]
    Outside {
        reference: String,
        process: &'static str,
        allowed: String,
        flag: &'static str,
    },
    #[error("${{env:{name}}}: the environment variable is not set on this {process}")]
    EnvMissing { name: String, process: &'static str },
    #[error("${{env:{name}}}: the environment variable is not UTF-8 text")]
    EnvNotText { name: String },
    #[error("{reference}: cannot be read on this {process}: {source}")]
    FileUnreadable {
        reference: String,
        process: &'static str,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("{reference} is empty on this {process}")]
    Empty {
        reference: String,
        process: &'static str,
    },
    #[error(
        "the secret was redacted (`***`): give it again, or reference it with ${{env:NAME}} or ${{file:/path}}"
    )]
    Redacted,
    #[error("{reference} was not resolved on this process")]
    Unresolved { reference: String },
}

impl SecretProblem {
    /// This problem at `field`.
    pub fn at(self, field: &str) -> SecretError {
        SecretError {
            field: field.to_string(),
            reason: self,
        }
    }
}
