//! TLS of the PostgreSQL sink (rustls with ring, through tokio-postgres-rustls), with libpq's
//! semantics for the settings [`kappa_job::postgres_tls`] reads from the connection string:
//! `verify-full` checks the CA and the host name, `verify-ca` (and `prefer`/`require` given a
//! `sslrootcert`) the CA only, `prefer`/`require` without one encrypt without checking who
//! answers. And which connection failures no restart can cure: a refused TLS handshake, a
//! server that will not speak TLS to `require`, one that only takes TLS from `disable`.

use std::path::Path;
use std::sync::Arc;

use kappa_job::postgres_tls::{PostgresTls, SslMode, Verify};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Why the TLS files of a connection string cannot be used; no restart changes that.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("reading {what} `{}`", path.display())]
    Read {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} `{}` is not PEM", path.display())]
    Pem {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{what} `{}` holds no certificate", path.display())]
    NoCertificate {
        what: &'static str,
        path: std::path::PathBuf,
    },
    #[error("the TLS settings cannot be used")]
    Rustls(#[source] rustls::Error),
    #[error("the CA certificates cannot be used")]
    Roots(#[source] rustls::client::VerifierBuilderError),
}

const ROOT_CERT: &str = "sslrootcert";
const CERT: &str = "sslcert";
const KEY: &str = "sslkey";

/// What tokio-postgres is told: it knows only whether TLS is off, preferred or required.
pub fn client_mode(mode: SslMode) -> postgres::config::SslMode {
    match mode {
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            postgres::config::SslMode::Require
        }
    }
}

/// The TLS connector for `tls`, its files read now.
pub fn connector(tls: &PostgresTls) -> Result<MakeRustlsConnect, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Rustls)?;
    let verifier: Arc<dyn ServerCertVerifier> = match (tls.verify(), &tls.root_cert) {
        (Verify::Nothing, _) | (_, None) => Arc::new(Lenient {
            chain: None,
            algorithms,
        }),
        (verify, Some(path)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ROOT_CERT, path)? {
                roots.add(cert).map_err(TlsSetupError::Rustls)?;
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(TlsSetupError::Roots)?;
            match verify {
                Verify::ChainAndHost => webpki,
                _ => Arc::new(Lenient {
                    chain: Some(webpki),
                    algorithms,
                }),
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &tls.client_cert {
        Some((cert, key)) => {
            let chain = certificates(CERT, cert)?;
            let key = PrivateKeyDer::from_pem_slice(&read(KEY, key)?).map_err(|source| {
                TlsSetupError::Pem {
                    what: KEY,
                    path: key.clone(),
                    source,
                }
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(TlsSetupError::Rustls)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsSetupError::Pem {
            what,
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The server-certificate checks rustls has no setting for: `verify-ca` (the chain, not the
/// name) and `prefer`/`require` without a root certificate (nothing: libpq's semantics). The
/// handshake's signatures are checked either way, so the traffic is encrypted to the holder
/// of the certificate's key.
#[derive(Debug)]
struct Lenient {
    /// Checks the chain (and the name, whose failure is forgiven); None: anything goes.
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a connection failure cannot be cured by connecting again, when it cannot: the TLS
/// handshake was refused (a certificate, a protocol), the server does not do TLS for
/// `require`, or it takes only TLS connections from `disable`.
pub fn final_connect_error(e: &postgres::Error, mode: SslMode) -> Option<&'static str> {
    if let Some(db) = e.as_db_error() {
        // pg_hba: `no pg_hba.conf entry for host …, no encryption`.
        let no_encryption = db.code().code() == "28000" && db.message().contains("no encryption");
        return (no_encryption && mode == SslMode::Disable).then_some(
            "the server takes only TLS connections here: set sslmode=verify-full (or require)",
        );
    }
    if !e.to_string().starts_with("error performing TLS handshake") {
        return None;
    }
    // A TLS failure from the connection itself (a reset mid-handshake) may pass.
    let io = std::error::Error::source(e).and_then(|c| c.downcast_ref::<std::io::Error>());
    match io {
        Some(io)
            if !io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>()) =>
        {
            None
        }
        _ => Some("the TLS handshake was refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn missing_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let missing = dir.path().join("missing.pem");
        let tls = |root: &PathBuf| PostgresTls {
            mode: SslMode::VerifyFull,
            root_cert: Some(root.clone()),
            client_cert: None,
        };
        let e = connector(&tls(&missing)).err().unwrap();
        assert!(
            matches!(
                &e,
                TlsSetupError::Read {
                    what: "sslrootcert",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = connector(&tls(&not_pem)).err().unwrap();
        assert!(matches!(e, TlsSetupError::NoCertificate { .. }), "{e:?}");
    }

    #[test]
    fn without_a_root_certificate_nothing_is_read() {
        assert!(connector(&PostgresTls::default()).is_ok());
    }
}
