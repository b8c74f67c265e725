//! Cluster certificates for the tests: `kappa certs init` in a temporary directory for the
//! identities named, and the `--cluster-*` flags and files of each.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::bin;

/// A CA and a certificate per identity (`jobmanager/<name>`, `taskmanager/<id>`), removed
/// with this value.
pub struct ClusterCerts {
    dir: tempfile::TempDir,
}

impl ClusterCerts {
    /// `kappa certs init` for `identities`, each certificate naming `hosts` too (besides
    /// localhost and 127.0.0.1).
    pub fn init(identities: &[&str], hosts: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut cmd = std::process::Command::new(bin("kappa"));
        cmd.args(["certs", "init", "--dir"]).arg(dir.path());
        for identity in identities {
            let (role, name) = identity
                .split_once('/')
                .with_context(|| format!("`{identity}` is not role/name"))?;
            cmd.arg(format!("--{role}")).arg(name);
        }
        for host in hosts {
            cmd.arg("--host").arg(host);
        }
        let made = cmd.output().context("kappa certs init")?;
        if !made.status.success() {
            bail!(
                "kappa certs init: {}",
                String::from_utf8_lossy(&made.stderr)
            );
        }
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir().join("ca.pem")
    }

    /// The certificate and the key of `identity`.
    pub fn pair(&self, identity: &str) -> (PathBuf, PathBuf) {
        let stem = identity.replace('/', "-");
        (
            self.dir().join(format!("{stem}.pem")),
            self.dir().join(format!("{stem}-key.pem")),
        )
    }

    /// `--cluster-cert/--cluster-key/--cluster-ca` of `identity`.
    pub fn flags(&self, identity: &str) -> Vec<String> {
        let (cert, key) = self.pair(identity);
        [
            ("--cluster-cert", cert),
            ("--cluster-key", key),
            ("--cluster-ca", self.ca()),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect()
    }
}
