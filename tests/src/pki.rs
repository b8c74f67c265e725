//! A test CA (rcgen) and the certificates it issues to servers and clients, as PEM files in a
//! temporary directory: what PostgreSQL and etcd run TLS with in the tests.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA whose certificate is `ca` (PEM), issuing certificates into its directory.
pub struct Pki {
    dir: tempfile::TempDir,
    pub ca: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        // Servers started as another user (PostgreSQL as `postgres` under root) read in here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key)?;
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.pem())?;
        Ok(Self {
            dir,
            ca,
            issuer: Issuer::new(params, key),
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A certificate with common name `name`, valid for `hosts` (names or IP addresses), for
    /// servers and clients; files `{name}.pem` and `{name}-key.pem` (mode 0600).
    pub fn issue(&self, name: &str, hosts: &[&str]) -> anyhow::Result<Issued> {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut params = CertificateParams::new(hosts).context("host names")?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let issued = Issued {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        };
        std::fs::write(&issued.cert, cert.pem())?;
        std::fs::write(&issued.key, key.serialize_pem())?;
        std::fs::set_permissions(&issued.key, std::fs::Permissions::from_mode(0o600))?;
        Ok(issued)
    }
}
