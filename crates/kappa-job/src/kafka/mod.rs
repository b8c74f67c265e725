//! A Kafka connector's connection as planned: the brokers, TLS and SASL (validated from the
//! `security` table), and the librdkafka settings `properties` may hold (an allow-list).
//! kappa-connectors turns it into every client's configuration in one place.

pub mod properties;

use std::collections::BTreeMap;

pub use crate::spec::{SaslMechanism, SecurityProtocol};

use crate::secret::Secret;

/// Where and how every Kafka client of one connector connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConnection {
    pub bootstrap_servers: String,
    /// Boxed: most connections have none, and plans keep it in enums of small variants.
    pub security: Box<KafkaSecurity>,
    /// Allow-listed librdkafka tuning and client settings (see [`properties`]).
    pub properties: BTreeMap<String, String>,
}

impl KafkaConnection {
    /// Plain TCP to `bootstrap_servers`, no settings.
    pub fn plaintext(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            security: Box::default(),
            properties: BTreeMap::new(),
        }
    }
}

/// TLS and SASL of a connection; only valid combinations can be built by the planner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    pub protocol: SecurityProtocol,
    /// With `SASL_PLAINTEXT` and `SASL_SSL`.
    pub sasl: Option<SaslAuth>,
    /// With `SSL` and `SASL_SSL`.
    pub tls: Option<TlsSettings>,
}

/// How the client authenticates with SASL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslAuth {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    Password {
        mechanism: SaslMechanism,
        username: String,
        password: Secret,
    },
    /// OAUTHBEARER with tokens from an OIDC token endpoint (client credentials grant).
    OAuthBearer(OidcClient),
}

impl SaslAuth {
    pub fn mechanism(&self) -> SaslMechanism {
        match self {
            Self::Password { mechanism, .. } => *mechanism,
            Self::OAuthBearer(_) => SaslMechanism::OAuthBearer,
        }
    }
}

/// The client credentials an OAUTHBEARER client gets its tokens with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcClient {
    /// An `http://` or `https://` URL.
    pub token_endpoint_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: Option<String>,
}

/// TLS settings: files are absolute paths read by every process that connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// CA certificates (PEM) the broker is verified against; None: the system's.
    pub ca_location: Option<String>,
    /// The client's own certificate, for brokers that authenticate clients by certificate.
    pub client_certificate: Option<ClientCertificate>,
    /// Whether the broker's certificate must name the host connected to.
    pub endpoint_identification: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            ca_location: None,
            client_certificate: None,
            endpoint_identification: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    pub certificate_location: String,
    pub key_location: String,
    pub key_password: Option<Secret>,
}
