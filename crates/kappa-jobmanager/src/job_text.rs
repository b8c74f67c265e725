//! A job file as the jobmanager keeps it: the text it plans and deploys (literal secrets
//! included), the text it shows and records (literal secrets redacted), and the literal
//! secrets sealed with `--secret-key-file` for the record, so a resumed job gets them back.

use kappa_job::SpecErrors;
use kappa_job::secret::{redact, redacted_fields, restore};

use crate::sealing::{SealError, SecretKey, sealed_with};

/// A job's file.
pub struct JobText {
    /// The file as submitted, secrets included: planned and deployed, never shown. None when
    /// only the redacted file is known (a job listed that will not run).
    full: Option<String>,
    /// The file with every literal secret replaced by `***`: what the API shows and the
    /// record stores.
    pub shown: String,
    /// The literal secrets sealed with the jobmanager's key (for the record).
    pub sealed: Option<String>,
    /// The fields whose literal secrets are not kept: there is no key to seal them with.
    pub unkept: Vec<String>,
}

impl JobText {
    /// A file submitted as `full`: redacted, its literal secrets sealed with `key` (or, without
    /// one, not kept).
    pub fn submitted(
        id: &str,
        file: &str,
        full: &str,
        key: Option<&SecretKey>,
    ) -> Result<Self, SubmittedError> {
        let redacted = redact(file, full)?;
        let (sealed, unkept) = match (key, redacted.literals.is_empty()) {
            (_, true) => (None, Vec::new()),
            (Some(key), false) => (
                Some(key.seal(id, &redacted.text, &redacted.literals)?),
                Vec::new(),
            ),
            (None, false) => (
                None,
                redacted.literals.iter().map(|l| l.field.clone()).collect(),
            ),
        };
        Ok(Self {
            full: Some(full.to_string()),
            shown: redacted.text,
            sealed,
            unkept,
        })
    }

    /// The file of a kept record (`shown`, and its sealed secrets): whole again with `key`. A
    /// record of an earlier release holds its file as submitted, and is taken as submitted.
    pub fn kept(
        id: &str,
        file: &str,
        shown: &str,
        sealed: Option<&str>,
        key: Option<&SecretKey>,
    ) -> Result<Self, SealError> {
        let Some(sealed) = sealed else {
            let redacted = redacted_fields(file, shown).unwrap_or_default();
            if !redacted.is_empty() {
                return Err(SealError::NotKept {
                    fields: redacted.join(", "),
                });
            }
            return Self::submitted(id, file, shown, key).or_else(|e| match e {
                SubmittedError::Seal(e) => Err(e),
                // It does not parse: planning says where.
                SubmittedError::Invalid(_) => Ok(Self::listed(file, shown, None)),
            });
        };
        let Some(key) = key else {
            return Err(SealError::NoKey {
                sealed: sealed_with(sealed)?,
            });
        };
        let literals = key.open(id, shown, sealed)?;
        Ok(Self {
            full: Some(restore(shown, &literals).map_err(SealError::Restore)?),
            shown: shown.to_string(),
            sealed: Some(sealed.to_string()),
            unkept: Vec::new(),
        })
    }

    /// The file of a job that is listed and will not run, from its record: only its
    /// redacted text is kept (literals of a record of an earlier release are redacted here).
    pub fn listed(file: &str, text: &str, sealed: Option<&str>) -> Self {
        let (shown, sealed) = match redact(file, text) {
            Ok(r) if !r.literals.is_empty() => (r.text, None),
            _ => (text.to_string(), sealed.map(str::to_string)),
        };
        Self {
            full: None,
            shown,
            sealed,
            unkept: Vec::new(),
        }
    }

    /// The text planned and deployed: the whole file, or the redacted one of a listed job.
    pub fn deployed(&self) -> &str {
        self.full.as_deref().unwrap_or(&self.shown)
    }

    /// Whether only the redacted text is known (the job will not run).
    pub fn is_listed_only(&self) -> bool {
        self.full.is_none()
    }

    /// What to tell the submitter when literal secrets are not kept.
    pub fn warning(&self) -> Option<String> {
        (!self.unkept.is_empty()).then(|| {
            format!(
                "the literal secrets of {} are not kept in the job's record (this jobmanager has no --secret-key-file): the job cannot resume after a jobmanager restart or failover; reference secrets with ${{env:…}} or ${{file:…}}, or give the jobmanagers --secret-key-file",
                self.unkept.join(", ")
            )
        })
    }
}

/// Why a submitted file could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum SubmittedError {
    #[error(transparent)]
    Invalid(#[from] SpecErrors),
    #[error(transparent)]
    Seal(#[from] SealError),
}
