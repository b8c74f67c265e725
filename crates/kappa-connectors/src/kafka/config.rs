//! The one place a Kafka client of Kappa is configured: sources, sinks, dead-letter and
//! transactional producers, commit-marker groups and the jobmanager's metadata lookups all
//! start from [`client_config`], so each gets the connector's brokers, TLS and SASL. Its
//! secrets must have been read on this process first
//! ([`SecretSources::resolve_kafka`](kappa_job::secret::SecretSources::resolve_kafka)).

use kappa_job::kafka::{KafkaConnection, KafkaSecurity, SaslAuth};
use kappa_job::secret::SecretError;
use rdkafka::ClientConfig;

/// A client configuration: the allow-listed `properties`, then TLS and SASL, then the brokers
/// (the planner refuses properties that would change the last two). An error when a secret
/// is a reference not resolved here.
pub fn client_config(connection: &KafkaConnection) -> Result<ClientConfig, SecretError> {
    let mut c = ClientConfig::new();
    for (k, v) in &connection.properties {
        c.set(k, v);
    }
    for (k, v) in security_settings(&connection.security)? {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &connection.bootstrap_servers);
    Ok(c)
}

/// librdkafka's settings for TLS and SASL. Certificates are always verified.
pub fn security_settings(s: &KafkaSecurity) -> Result<Vec<(&'static str, String)>, SecretError> {
    let mut out = vec![("security.protocol", s.protocol.as_str().to_string())];
    if let Some(tls) = &s.tls {
        out.push(("enable.ssl.certificate.verification", "true".into()));
        let identification = if tls.endpoint_identification {
            "https"
        } else {
            "none"
        };
        out.push((
            "ssl.endpoint.identification.algorithm",
            identification.into(),
        ));
        if let Some(ca) = &tls.ca_location {
            out.push(("ssl.ca.location", ca.clone()));
        }
        if let Some(cert) = &tls.client_certificate {
            out.push((
                "ssl.certificate.location",
                cert.certificate_location.clone(),
            ));
            out.push(("ssl.key.location", cert.key_location.clone()));
            if let Some(p) = &cert.key_password {
                out.push((
                    "ssl.key.password",
                    p.value("security.key_password")?.to_string(),
                ));
            }
        }
    }
    match &s.sasl {
        Some(SaslAuth::Password {
            mechanism,
            username,
            password,
        }) => {
            out.push(("sasl.mechanism", mechanism.as_str().into()));
            out.push(("sasl.username", username.clone()));
            out.push((
                "sasl.password",
                password.value("security.password")?.to_string(),
            ));
        }
        Some(SaslAuth::OAuthBearer(oidc)) => {
            out.push(("sasl.mechanism", "OAUTHBEARER".into()));
            out.push(("sasl.oauthbearer.method", "oidc".into()));
            out.push((
                "sasl.oauthbearer.token.endpoint.url",
                oidc.token_endpoint_url.clone(),
            ));
            out.push(("sasl.oauthbearer.client.id", oidc.client_id.clone()));
            out.push((
                "sasl.oauthbearer.client.secret",
                oidc.client_secret
                    .value("security.oauth_client_secret")?
                    .to_string(),
            ));
            if let Some(scope) = &oidc.scope {
                out.push(("sasl.oauthbearer.scope", scope.clone()));
            }
        }
        None => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
