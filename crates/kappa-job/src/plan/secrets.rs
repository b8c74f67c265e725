//! Planning secret fields: a literal must not be empty, a redacted one (`***`, from a pasted
//! `/spec`) must be given again, and a PostgreSQL or Redis sink's password is given once — in
//! its `url` or in `password`. References are kept as they are: they are read where the client
//! is built.

use std::ops::Range;

use toml::Spanned;

use super::{Planner, span};
use crate::secret::{Secret, redact};
use crate::spec::SinkSpec;

impl Planner<'_> {
    /// A secret setting, checked.
    pub(super) fn secret(&mut self, v: &Spanned<Secret>, field: &str) -> Secret {
        match v.get_ref() {
            s if s.is_empty() => self.err(span(v), field, "must not be empty"),
            Secret::Redacted if !self.allow_redacted => self.redacted(span(v), field, ""),
            _ => {}
        }
        v.get_ref().clone()
    }

    /// A required secret setting; a missing one is reported at `at`.
    pub(super) fn required_secret(
        &mut self,
        v: &Option<Spanned<Secret>>,
        field: &str,
        at: Option<Range<usize>>,
        why: &str,
    ) -> Secret {
        match v {
            Some(s) => self.secret(s, field),
            None => {
                self.err(at, field, format!("missing: {why}"));
                Secret::new("")
            }
        }
    }

    /// The `password` of a sink with a `url` (PostgreSQL, Redis), refused when `url` has
    /// one too.
    pub(super) fn url_password(&mut self, s: &SinkSpec, prefix: &str) -> Option<Secret> {
        let field = format!("{prefix}.url");
        if let Some(url) = &s.url
            && redact::url_redacted(url.get_ref())
            && !self.allow_redacted
        {
            let hint = " (or leave it out of the url and set `password`)";
            self.redacted(span(url), &field, hint);
        }
        let password = s.password.as_ref()?;
        let in_url = s
            .url
            .as_ref()
            .is_some_and(|u| !super::url_password_ranges(u.get_ref()).is_empty());
        if in_url {
            self.err(
                span(password),
                &format!("{prefix}.password"),
                "the url has a password too: give it once",
            );
        }
        Some(self.secret(password, &format!("{prefix}.password")))
    }

    fn redacted(&mut self, at: Option<Range<usize>>, field: &str, hint: &str) {
        self.err(
            at,
            field,
            format!(
                "the secret was redacted (`***`) when the job was shown: give it again{hint}, or reference it with ${{env:NAME}} or ${{file:/path}}"
            ),
        );
    }
}
