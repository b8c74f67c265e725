//! Planning a Kafka connector's connection: the `security` table checked as a whole (TLS
//! settings only with a TLS protocol, SASL settings only with a SASL protocol, the credentials
//! each mechanism needs) and `properties` against the allow-list, every problem located.
//! No message shows a password or secret.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::{Planner, span};
use crate::kafka::properties;
use crate::kafka::{
    ClientCertificate, KafkaConnection, KafkaSecurity, OidcClient, SaslAuth, TlsSettings,
};
use crate::spec::{KafkaProperties, KafkaSecuritySpec, SaslMechanism};

impl Planner<'_> {
    /// The connection of a Kafka connector at `prefix` (`source`, `sinks.out`, …).
    pub(super) fn kafka_connection(
        &mut self,
        bootstrap_servers: String,
        security: Option<&KafkaSecuritySpec>,
        props: Option<&Spanned<KafkaProperties>>,
        prefix: &str,
    ) -> KafkaConnection {
        let security = security.map_or_else(Box::default, |s| {
            Box::new(self.kafka_security(s, &format!("{prefix}.security")))
        });
        let mut allowed = BTreeMap::new();
        for (key, value) in props.iter().flat_map(|p| p.get_ref().iter()) {
            match properties::check(key) {
                Ok(()) => {
                    allowed.insert(key.clone(), value.get_ref().0.clone());
                }
                Err(why) => self.err(
                    span(value),
                    &format!("{prefix}.properties.\"{key}\""),
                    why.to_string(),
                ),
            }
        }
        KafkaConnection {
            bootstrap_servers,
            security,
            properties: allowed,
        }
    }

    /// Refuses `security` and `properties` on a connector that is not Kafka.
    pub(super) fn forbid_kafka_settings(
        &mut self,
        security: Option<&KafkaSecuritySpec>,
        props: Option<&Spanned<KafkaProperties>>,
        prefix: &str,
    ) {
        if let Some(s) = security {
            self.err(
                span(&s.protocol),
                &format!("{prefix}.security"),
                "`security` applies to the kafka connector only",
            );
        }
        if let Some(p) = props {
            self.err(
                span(p),
                &format!("{prefix}.properties"),
                "`properties` applies to the kafka connector only",
            );
        }
    }

    fn kafka_security(&mut self, s: &KafkaSecuritySpec, prefix: &str) -> KafkaSecurity {
        let protocol = *s.protocol.get_ref();
        let tls = if protocol.uses_tls() {
            Some(self.tls(s, prefix))
        } else {
            let why = format!(
                "a TLS setting: it needs protocol SSL or SASL_SSL (protocol {} has no TLS)",
                protocol.as_str()
            );
            let fields = [
                ("ca_location", s.ca_location.as_ref().and_then(span)),
                (
                    "certificate_location",
                    s.certificate_location.as_ref().and_then(span),
                ),
                ("key_location", s.key_location.as_ref().and_then(span)),
                ("key_password", s.key_password.as_ref().and_then(span)),
                (
                    "endpoint_identification",
                    s.endpoint_identification.as_ref().and_then(span),
                ),
            ];
            self.refuse_present(&fields, prefix, &why);
            None
        };
        let sasl = if protocol.uses_sasl() {
            self.sasl(s, prefix)
        } else {
            let why = format!(
                "a SASL setting: it needs protocol SASL_SSL or SASL_PLAINTEXT (protocol {} has no SASL authentication)",
                protocol.as_str()
            );
            let mut fields = password_fields(s);
            fields.extend(oauth_fields(s));
            fields.push(("sasl_mechanism", s.sasl_mechanism.as_ref().and_then(span)));
            self.refuse_present(&fields, prefix, &why);
            None
        };
        KafkaSecurity {
            protocol,
            sasl,
            tls,
        }
    }

    fn tls(&mut self, s: &KafkaSecuritySpec, prefix: &str) -> TlsSettings {
        let ca_location = s
            .ca_location
            .as_ref()
            .map(|c| self.file(c, &format!("{prefix}.ca_location")));
        let client_certificate = match (&s.certificate_location, &s.key_location) {
            (Some(cert), Some(key)) => Some(ClientCertificate {
                certificate_location: self.file(cert, &format!("{prefix}.certificate_location")),
                key_location: self.file(key, &format!("{prefix}.key_location")),
                key_password: s
                    .key_password
                    .as_ref()
                    .map(|p| self.secret(p, &format!("{prefix}.key_password"))),
            }),
            (Some(cert), None) => {
                self.err(
                    span(cert),
                    &format!("{prefix}.key_location"),
                    "missing: a client certificate needs its private key (`key_location`)",
                );
                None
            }
            (None, Some(key)) => {
                self.err(
                    span(key),
                    &format!("{prefix}.certificate_location"),
                    "missing: a private key needs its client certificate (`certificate_location`)",
                );
                None
            }
            (None, None) => {
                if let Some(p) = &s.key_password {
                    self.err(
                        span(p),
                        &format!("{prefix}.key_password"),
                        "the password of a private key: set `key_location` and `certificate_location` too",
                    );
                }
                None
            }
        };
        TlsSettings {
            ca_location,
            client_certificate,
            endpoint_identification: s
                .endpoint_identification
                .as_ref()
                .is_none_or(|e| *e.get_ref()),
        }
    }

    fn sasl(&mut self, s: &KafkaSecuritySpec, prefix: &str) -> Option<SaslAuth> {
        let Some(mechanism) = &s.sasl_mechanism else {
            self.err(
                span(&s.protocol),
                &format!("{prefix}.sasl_mechanism"),
                format!(
                    "missing: protocol {} needs a SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER",
                    s.protocol.get_ref().as_str()
                ),
            );
            return None;
        };
        let mechanism = *mechanism.get_ref();
        let at = span(&s.protocol);
        if mechanism == SaslMechanism::OAuthBearer {
            let why = "OAUTHBEARER authenticates with tokens: set oauth_token_endpoint_url, oauth_client_id and oauth_client_secret instead";
            self.refuse_present(&password_fields(s), prefix, why);
            return Some(SaslAuth::OAuthBearer(self.oidc(s, prefix, at)));
        }
        let why = format!(
            "an OAUTHBEARER setting: sasl_mechanism {} authenticates with `username` and `password`",
            mechanism.as_str()
        );
        self.refuse_present(&oauth_fields(s), prefix, &why);
        let username = self.text(
            &s.username,
            &format!("{prefix}.username"),
            at.clone(),
            &format!("SASL {} needs a user name", mechanism.as_str()),
        );
        let password = self.required_secret(
            &s.password,
            &format!("{prefix}.password"),
            at,
            &format!("SASL {} needs the user's password", mechanism.as_str()),
        );
        Some(SaslAuth::Password {
            mechanism,
            username,
            password,
        })
    }

    /// OAUTHBEARER's client credentials; a missing one is reported at `at` (the protocol).
    fn oidc(
        &mut self,
        s: &KafkaSecuritySpec,
        prefix: &str,
        at: Option<Range<usize>>,
    ) -> OidcClient {
        let field = format!("{prefix}.oauth_token_endpoint_url");
        let url = self.text(
            &s.oauth_token_endpoint_url,
            &field,
            at.clone(),
            "OAUTHBEARER gets its tokens from an OIDC token endpoint, e.g. \"https://idp.example.com/oauth2/token\"",
        );
        let scheme = url.to_ascii_lowercase();
        if let Some(u) = &s.oauth_token_endpoint_url
            && !url.is_empty()
            && !(scheme.starts_with("https://") || scheme.starts_with("http://"))
        {
            self.err(span(u), &field, "must be an https:// (or http://) URL");
        }
        let client_id = self.text(
            &s.oauth_client_id,
            &format!("{prefix}.oauth_client_id"),
            at.clone(),
            "OAUTHBEARER needs the client id to ask the token endpoint with",
        );
        let client_secret = self.required_secret(
            &s.oauth_client_secret,
            &format!("{prefix}.oauth_client_secret"),
            at,
            "OAUTHBEARER needs the client secret to ask the token endpoint with",
        );
        let scope = match &s.oauth_scope {
            Some(sc) if sc.get_ref().trim().is_empty() => {
                self.err(
                    span(sc),
                    &format!("{prefix}.oauth_scope"),
                    "must not be empty",
                );
                None
            }
            sc => sc.as_ref().map(|sc| sc.get_ref().trim().to_string()),
        };
        OidcClient {
            token_endpoint_url: url,
            client_id,
            client_secret,
            scope,
        }
    }

    /// Each field of `fields` that is present is an error: `why`.
    fn refuse_present(&mut self, fields: &[(&str, Option<Range<usize>>)], prefix: &str, why: &str) {
        for (name, at) in fields {
            if let Some(at) = at {
                self.err(Some(at.clone()), &format!("{prefix}.{name}"), why);
            }
        }
    }

    /// A file every process reads: a non-empty absolute path.
    fn file(&mut self, v: &Spanned<String>, field: &str) -> String {
        let path = v.get_ref().trim();
        if path.is_empty() {
            self.err(span(v), field, "must not be empty");
        } else if !Path::new(path).is_absolute() {
            self.err(
                span(v),
                field,
                format!("`{path}` must be an absolute path: the jobmanager and every taskmanager read the file, each from its own working directory"),
            );
        }
        path.to_string()
    }

    /// A required text setting, trimmed; a missing one is reported at `at` (the protocol).
    fn text(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        at: Option<Range<usize>>,
        why: &str,
    ) -> String {
        match v {
            Some(t) if t.get_ref().trim().is_empty() => {
                self.err(span(t), field, "must not be empty");
                String::new()
            }
            Some(t) => t.get_ref().trim().to_string(),
            None => {
                self.err(at, field, format!("missing: {why}"));
                String::new()
            }
        }
    }
}

type Located<'a> = (&'a str, Option<Range<usize>>);

fn password_fields(s: &KafkaSecuritySpec) -> Vec<Located<'static>> {
    vec![
        ("username", s.username.as_ref().and_then(span)),
        ("password", s.password.as_ref().and_then(span)),
    ]
}

fn oauth_fields(s: &KafkaSecuritySpec) -> Vec<Located<'static>> {
    vec![
        (
            "oauth_token_endpoint_url",
            s.oauth_token_endpoint_url.as_ref().and_then(span),
        ),
        ("oauth_client_id", s.oauth_client_id.as_ref().and_then(span)),
        (
            "oauth_client_secret",
            s.oauth_client_secret.as_ref().and_then(span),
        ),
        ("oauth_scope", s.oauth_scope.as_ref().and_then(span)),
    ]
}

#[cfg(test)]
mod tests;
