//! Mutual TLS between the processes of a cluster. Every jobmanager and taskmanager holds a
//! certificate of the cluster's CA whose subject common name says its role and name
//! (`jobmanager/<name>`, `taskmanager/<id>`). Servers ask every client for its certificate;
//! the services then check who calls ([`Authenticator::caller`]) before they act. Clients
//! verify the server's certificate against the CA and its host name.
//!
//! Without TLS (`--insecure`, or `kappa local` on loopback) nobody is checked.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// The role of a cluster process, as its certificate says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    JobManager,
    TaskManager,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::JobManager => "jobmanager",
            Self::TaskManager => "taskmanager",
        }
    }
}

/// A cluster process as named by its certificate: `jobmanager/<name>` or `taskmanager/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    pub role: Role,
    pub name: String,
}

impl Peer {
    pub fn new(role: Role, name: &str) -> Result<Self, TlsError> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(TlsError::Name(format!("{}/{name}", role.as_str())));
        }
        Ok(Self {
            role,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.role.as_str(), self.name)
    }
}

impl FromStr for Peer {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        match s.split_once('/') {
            Some(("jobmanager", name)) => Self::new(Role::JobManager, name),
            Some(("taskmanager", name)) => Self::new(Role::TaskManager, name),
            _ => Err(TlsError::Name(s.to_string())),
        }
    }
}

/// Why TLS settings or a peer's certificate are not usable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{what}: not an X.509 certificate: {source}")]
    Parse {
        what: String,
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    #[error("{what}: its subject has no common name")]
    NoCommonName { what: String },
    #[error(
        "`{0}` is not a cluster identity: a certificate's common name must be `jobmanager/<name>` or `taskmanager/<id>` (letters, digits, - _ .)"
    )]
    Name(String),
}

/// The PEM blocks of a file that are certificates.
fn pem_certificates(pem: &[u8]) -> impl Iterator<Item = x509_parser::pem::Pem> + '_ {
    x509_parser::pem::Pem::iter_from_buffer(pem)
        .filter_map(Result::ok)
        .filter(|p| p.label == "CERTIFICATE")
}

/// The identity a DER certificate names in its subject's common name.
pub fn peer_of_certificate(der: &[u8], what: &str) -> Result<Peer, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|source| TlsError::Parse {
        what: what.to_string(),
        source,
    })?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| TlsError::NoCommonName {
            what: what.to_string(),
        })?;
    cn.parse()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A process's certificate, key and the cluster CA.
#[derive(Clone)]
pub struct ClusterTls {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
    me: Peer,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterTls").field("me", &self.me).finish()
    }
}

impl ClusterTls {
    /// Reads PEM files: this process's certificate and key, and the CA it trusts.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<Self, TlsError> {
        install_crypto_provider();
        let (cert_pem, key_pem, ca_pem) = (read(cert)?, read(key)?, read(ca)?);
        let leaf = pem_certificates(&cert_pem)
            .next()
            .ok_or_else(|| TlsError::NoCertificate {
                path: cert.to_path_buf(),
            })?;
        let me = peer_of_certificate(&leaf.contents, &cert.display().to_string())?;
        if pem_certificates(&ca_pem).next().is_none() {
            return Err(TlsError::NoCertificate {
                path: ca.to_path_buf(),
            });
        }
        Ok(Self {
            ca: ca_pem,
            cert: cert_pem,
            key: key_pem,
            me,
        })
    }

    /// Who this process is, as its certificate says.
    pub fn me(&self) -> &Peer {
        &self.me
    }

    /// Serves with this certificate and asks every client for one of the CA's. A client
    /// without one may connect (to read /metrics); the gRPC services refuse it.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .client_auth_optional(true)
    }

    /// Connects with this certificate to servers of the CA.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
    }
}

/// Makes ring the process's TLS crypto provider (two are linked in: rustls cannot choose).
/// Call before any TLS client or server is built; later calls change nothing.
pub fn install_crypto_provider() {
    // Err: a provider is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Tells the services who calls them.
#[derive(Debug, Clone, Copy)]
pub struct Authenticator {
    /// Whether this process serves TLS (then every caller must show a certificate).
    tls: bool,
}

impl Authenticator {
    pub fn new(tls: bool) -> Self {
        Self { tls }
    }

    /// The URL scheme of this cluster's gRPC endpoints.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The verified caller of a request; None without TLS (nobody is checked then).
    pub fn caller<T>(&self, req: &Request<T>) -> Result<Option<Peer>, Status> {
        if !self.tls {
            return Ok(None);
        }
        let certs = req.peer_certs().ok_or_else(|| {
            Status::unauthenticated("this cluster takes calls only with a client certificate")
        })?;
        let leaf = certs.first().ok_or_else(|| {
            Status::unauthenticated("this cluster takes calls only with a client certificate")
        })?;
        peer_of_certificate(leaf, "the client certificate")
            .map(Some)
            .map_err(|e| Status::permission_denied(e.to_string()))
    }

    /// The caller, which must have `role` (any name) when TLS is on.
    pub fn require<T>(&self, req: &Request<T>, role: Role) -> Result<Option<Peer>, Status> {
        match self.caller(req)? {
            Some(p) if p.role != role => Err(Status::permission_denied(format!(
                "{p} may not call this: only a {}",
                role.as_str()
            ))),
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_role_and_plain_name() {
        let p: Peer = "taskmanager/tm-1.a_b".parse().unwrap();
        assert_eq!((p.role, p.name.as_str()), (Role::TaskManager, "tm-1.a_b"));
        assert_eq!(p.to_string(), "taskmanager/tm-1.a_b");
        assert_eq!(
            "jobmanager/jm-0".parse::<Peer>().unwrap().role,
            Role::JobManager
        );
        for bad in [
            "taskmanager",
            "taskmanager/",
            "admin/x",
            "taskmanager/a/b",
            "taskmanager/a b",
            "jobmanager/../x",
        ] {
            let e = bad.parse::<Peer>().unwrap_err().to_string();
            assert!(e.contains("is not a cluster identity"), "{bad}: {e}");
        }
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let e = peer_of_certificate(b"\x30\x03\x02\x01\x00", "x").unwrap_err();
        assert!(matches!(e, TlsError::Parse { .. }), "{e}");
    }

    #[test]
    fn without_tls_nobody_is_checked_and_with_tls_a_certificate_is_required() {
        let req = Request::new(());
        assert_eq!(Authenticator::new(false).caller(&req).unwrap(), None);
        let e = Authenticator::new(true).caller(&req).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }
}
