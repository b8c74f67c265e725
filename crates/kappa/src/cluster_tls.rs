//! The mutual-TLS flags of `kappa jobmanager` and `kappa taskmanager`: a process either has a
//! certificate of the cluster CA, or runs plaintext gRPC because it was told `--insecure`.

use std::path::PathBuf;

use anyhow::bail;
use kappa_proto::tls::ClusterTls;

/// Mutual TLS between the cluster's processes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClusterTlsArgs {
    /// This process's certificate (PEM) from the cluster CA; its common name is the process's
    /// identity (`jobmanager/<name>`, `taskmanager/<id>`). `kappa certs init` makes them.
    #[arg(long, env = "KAPPA_CLUSTER_CERT")]
    pub cluster_cert: Option<PathBuf>,
    /// The key of --cluster-cert (PEM).
    #[arg(long, env = "KAPPA_CLUSTER_KEY")]
    pub cluster_key: Option<PathBuf>,
    /// The cluster CA (PEM): peers must show a certificate it signed.
    #[arg(long, env = "KAPPA_CLUSTER_CA")]
    pub cluster_ca: Option<PathBuf>,
    /// Plaintext gRPC between the cluster's processes: whoever reaches a port can deploy work,
    /// stop jobs or read records. Only on a network you trust.
    #[arg(long, env = "KAPPA_INSECURE")]
    pub insecure: bool,
}

impl ClusterTlsArgs {
    /// The TLS identity of `process` (`jobmanager`, `taskmanager`), or None with --insecure.
    pub fn load(&self, process: &str) -> anyhow::Result<Option<ClusterTls>> {
        match (
            &self.cluster_cert,
            &self.cluster_key,
            &self.cluster_ca,
            self.insecure,
        ) {
            (Some(cert), Some(key), Some(ca), false) => Ok(Some(ClusterTls::load(cert, key, ca)?)),
            (None, None, None, true) => {
                tracing::warn!(
                    "{process}: plaintext gRPC (--insecure): whoever reaches its ports can deploy work, stop jobs and read records"
                );
                Ok(None)
            }
            (None, None, None, false) => bail!(
                "{process}: gRPC between the cluster's processes needs --cluster-cert, --cluster-key and --cluster-ca (create them with `kappa certs init`), or --insecure for plaintext on a network you trust"
            ),
            (_, _, _, true) => bail!("--insecure and the --cluster-* flags exclude each other"),
            _ => bail!("--cluster-cert, --cluster-key and --cluster-ca go together"),
        }
    }

    /// Whether any flag of mutual TLS is given.
    pub fn given(&self) -> bool {
        self.cluster_cert.is_some() || self.cluster_key.is_some() || self.cluster_ca.is_some()
    }
}
