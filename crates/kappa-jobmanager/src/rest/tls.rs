//! HTTPS for the REST API and the web UI (`--tls-cert/--tls-key`): a server certificate chain
//! and its key in PEM, served with rustls (the cluster's crypto provider, ring). Clients are not
//! asked for certificates here: the bearer token authenticates them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the REST certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RestTlsError {
    #[error("REST TLS certificate {}: {source}", path.display())]
    Certificate {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("REST TLS certificate {}: no certificate in the file", path.display())]
    NoCertificate { path: PathBuf },
    #[error("REST TLS key {}: {source}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("REST TLS: the key {} does not fit the certificate {}: {source}", key.display(), cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// A loaded server certificate and key for the REST API.
#[derive(Clone)]
pub struct RestTls {
    config: Arc<ServerConfig>,
    cert: PathBuf,
}

impl fmt::Debug for RestTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RestTls({})", self.cert.display())
    }
}

impl RestTls {
    /// Reads a PEM certificate chain (the server's first) and its PEM private key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, RestTlsError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|source| RestTlsError::Certificate {
                path: cert.to_path_buf(),
                source,
            })?;
        if chain.is_empty() {
            return Err(RestTlsError::NoCertificate {
                path: cert.to_path_buf(),
            });
        }
        let private = PrivateKeyDer::from_pem_file(key).map_err(|source| RestTlsError::Key {
            path: key.to_path_buf(),
            source,
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
            .map_err(|source| RestTlsError::Mismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                source,
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            cert: cert.to_path_buf(),
        })
    }

    /// The rustls settings the server uses.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_foreign_files_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = RestTls::load(&missing, &missing).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = RestTls::load(&empty, &empty).unwrap_err();
        assert!(matches!(err, RestTlsError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().contains("empty.pem"), "{err}");
    }
}
