//! `--ha etcd` and how the jobmanager reaches etcd: endpoints and prefix, TLS (`https://`
//! endpoints with `--etcd-ca`, optionally a client certificate) and a user whose password is
//! read from a file or `KAPPA_ETCD_PASSWORD`, never from the command line.

use std::path::PathBuf;

use anyhow::{Context, bail};
use kappa_jobmanager::ha::{EtcdAuth, EtcdTls, HaConfig};

/// The variable the etcd password may be given in (there is no flag for it: `ps` shows flags).
const PASSWORD_ENV: &str = "KAPPA_ETCD_PASSWORD";

/// The flags, flattened into `kappa jobmanager`'s.
#[derive(clap::Args, Clone, Debug)]
pub struct EtcdArgs {
    /// High availability: `etcd` (leader election and job records in etcd; several
    /// jobmanagers, one leads) or `none` (job records under the checkpoint directory).
    #[arg(long, env = "KAPPA_HA", default_value = "none", value_parser = ["none", "etcd"])]
    pub ha: String,
    /// etcd endpoints for --ha etcd, comma-separated (http://host:2379,…; https://… with
    /// --etcd-ca).
    #[arg(long, env = "KAPPA_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of this cluster in etcd.
    #[arg(long, env = "KAPPA_ETCD_PREFIX", default_value = "/kappa")]
    pub etcd_prefix: String,
    /// CA certificate (PEM) of etcd's servers, for https:// endpoints; their certificates must
    /// name the endpoint's host.
    #[arg(long, env = "KAPPA_ETCD_CA", value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM) for an etcd that asks for one (--client-cert-auth).
    #[arg(
        long,
        env = "KAPPA_ETCD_CERT",
        value_name = "FILE",
        requires = "etcd_key"
    )]
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        env = "KAPPA_ETCD_KEY",
        value_name = "FILE",
        requires = "etcd_cert"
    )]
    pub etcd_key: Option<PathBuf>,
    /// etcd user, for an etcd with authentication on; the password comes from
    /// --etcd-password-file or KAPPA_ETCD_PASSWORD.
    #[arg(long, env = "KAPPA_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// A file holding the etcd user's password (one line).
    #[arg(long, env = "KAPPA_ETCD_PASSWORD_FILE", value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,
}

impl EtcdArgs {
    /// The HA settings, None without `--ha etcd`; every contradiction refused naming the flags.
    pub fn config(&self) -> anyhow::Result<Option<HaConfig>> {
        if self.ha != "etcd" {
            let etcd_flag = [
                (!self.etcd_endpoints.is_empty(), "--etcd-endpoints"),
                (self.etcd_ca.is_some(), "--etcd-ca"),
                (self.etcd_cert.is_some(), "--etcd-cert"),
                (self.etcd_user.is_some(), "--etcd-user"),
                (self.etcd_password_file.is_some(), "--etcd-password-file"),
            ]
            .into_iter()
            .find_map(|(given, flag)| given.then_some(flag));
            if let Some(flag) = etcd_flag {
                bail!("{flag} is given but HA is off: add --ha etcd (KAPPA_HA=etcd)");
            }
            return Ok(None);
        }
        if self.etcd_endpoints.is_empty() {
            bail!(
                "--ha etcd needs --etcd-endpoints (KAPPA_ETCD_ENDPOINTS), e.g. http://127.0.0.1:2379"
            );
        }
        Ok(Some(HaConfig {
            endpoints: self.etcd_endpoints.clone(),
            prefix: self.etcd_prefix.trim_end_matches('/').to_string(),
            tls: self.tls()?,
            auth: self.auth(std::env::var(PASSWORD_ENV).ok())?,
        }))
    }

    fn tls(&self) -> anyhow::Result<Option<EtcdTls>> {
        let is_https = |e: &&String| e.to_ascii_lowercase().starts_with("https://");
        let (secure, plain): (Vec<&String>, Vec<&String>) =
            self.etcd_endpoints.iter().partition(is_https);
        if let (Some(s), Some(p)) = (secure.first(), plain.first()) {
            bail!("etcd endpoints mix https ({s}) and plaintext ({p}): use https:// for all");
        }
        match (&self.etcd_ca, secure.first()) {
            (Some(ca), Some(_)) => Ok(Some(EtcdTls {
                ca: ca.clone(),
                client: self.etcd_cert.clone().zip(self.etcd_key.clone()),
            })),
            (None, Some(s)) => bail!(
                "etcd endpoint {s} is https: give --etcd-ca (KAPPA_ETCD_CA), the CA certificate of etcd's servers"
            ),
            (Some(_), None) => bail!(
                "--etcd-ca is given but etcd endpoint {} is plaintext: use https://",
                self.etcd_endpoints.join(",")
            ),
            (None, None) if self.etcd_cert.is_some() => {
                bail!("--etcd-cert needs https:// endpoints and --etcd-ca")
            }
            (None, None) => Ok(None),
        }
    }

    /// The user and password; `env_password` is KAPPA_ETCD_PASSWORD.
    fn auth(&self, env_password: Option<String>) -> anyhow::Result<Option<EtcdAuth>> {
        let from_file = match &self.etcd_password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading --etcd-password-file {}", path.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            None => None,
        };
        match (&self.etcd_user, from_file, env_password) {
            (None, None, None) => Ok(None),
            (None, _, _) => bail!("an etcd password is given without --etcd-user"),
            (Some(_), Some(_), Some(_)) => {
                bail!("the etcd password is given twice: --etcd-password-file and {PASSWORD_ENV}")
            }
            (Some(user), Some(password), None) | (Some(user), None, Some(password)) => {
                Ok(Some(EtcdAuth {
                    user: user.clone(),
                    password,
                }))
            }
            (Some(user), None, None) => bail!(
                "--etcd-user {user} needs a password: --etcd-password-file FILE or {PASSWORD_ENV}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        etcd: EtcdArgs,
    }

    fn args(line: &str) -> EtcdArgs {
        Cli::parse_from(std::iter::once("kappa").chain(line.split_whitespace())).etcd
    }

    fn refusal(line: &str) -> String {
        args(line).config().unwrap_err().to_string()
    }

    #[test]
    fn tls_needs_https_endpoints_and_a_ca() {
        let c = args("--ha etcd --etcd-endpoints https://e1:2379,https://e2:2379 --etcd-ca /ca.pem --etcd-cert /c.pem --etcd-key /k.pem")
            .config()
            .unwrap()
            .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.ca, PathBuf::from("/ca.pem"));
        assert!(tls.client.is_some());
        assert!(refusal("--ha etcd --etcd-endpoints https://e1:2379").contains("give --etcd-ca"));
        assert!(
            refusal("--ha etcd --etcd-endpoints http://e1:2379 --etcd-ca /ca.pem")
                .contains("plaintext")
        );
        assert!(
            refusal("--ha etcd --etcd-endpoints https://e1:2379,http://e2:2379 --etcd-ca /ca.pem")
                .contains("mix")
        );
        assert!(refusal("--etcd-endpoints http://e1:2379").contains("HA is off"));
        assert!(
            args("--ha etcd --etcd-endpoints http://e1:2379")
                .config()
                .unwrap()
                .unwrap()
                .tls
                .is_none()
        );
    }

    #[test]
    fn the_password_comes_from_a_file_or_the_environment_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let with_file = args(&format!(
            "--etcd-user kappa --etcd-password-file {}",
            file.display()
        ));
        let auth = with_file.auth(None).unwrap().unwrap();
        assert_eq!(
            (auth.user.as_str(), auth.password.as_str()),
            ("kappa", "s3cret")
        );
        assert!(!format!("{auth:?}").contains("s3cret"));
        assert!(with_file.auth(Some("x".into())).is_err());
        let user_only = args("--etcd-user kappa");
        assert_eq!(
            user_only
                .auth(Some("env-pw".into()))
                .unwrap()
                .unwrap()
                .password,
            "env-pw"
        );
        assert!(
            user_only
                .auth(None)
                .unwrap_err()
                .to_string()
                .contains("needs a password")
        );
        assert!(args("").auth(Some("pw".into())).is_err());
        assert!(args("").auth(None).unwrap().is_none());
    }
}
