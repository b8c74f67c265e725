//! `kappa certs`: a cluster CA and the certificates of its processes, for a test or a small
//! install (a larger one brings its own PKI or cert-manager with the same subject names).
//! A certificate's common name is the process's identity in the cluster:
//! `jobmanager/<name>` or `taskmanager/<id>` (the taskmanager's id is taken from it).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kappa_proto::tls::{Peer, Role};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

#[derive(clap::Subcommand, Debug)]
pub enum CertsCommand {
    /// Create a CA (ca.pem, ca-key.pem) in --dir and a certificate for each process named.
    Init {
        #[command(flatten)]
        common: Common,
        /// A jobmanager to issue a certificate for (its name; repeat for standbys).
        #[arg(long = "jobmanager", value_name = "NAME")]
        jobmanagers: Vec<String>,
        /// A taskmanager to issue a certificate for (its id; repeat).
        #[arg(long = "taskmanager", value_name = "ID")]
        taskmanagers: Vec<String>,
    },
    /// Issue a certificate of the CA in --dir for one more process.
    Issue {
        #[command(flatten)]
        common: Common,
        /// `jobmanager/<name>` or `taskmanager/<id>`.
        identity: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct Common {
    /// Directory of the CA and the certificates.
    #[arg(long, default_value = "certs")]
    dir: PathBuf,
    /// Host names and IP addresses the processes are reached at (each certificate names them
    /// all, with localhost and 127.0.0.1; repeat).
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Days a process certificate is valid.
    #[arg(long, default_value_t = 365)]
    days: i64,
}

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
/// The CA outlives the certificates it issues.
const CA_DAYS: i64 = 3650;

/// Runs a `kappa certs` command.
pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init {
            common,
            jobmanagers,
            taskmanagers,
        } => {
            let peers = jobmanagers
                .iter()
                .map(|n| Peer::new(Role::JobManager, n))
                .chain(taskmanagers.iter().map(|n| Peer::new(Role::TaskManager, n)))
                .collect::<Result<Vec<_>, _>>()?;
            let (ca_cert, ca_key) = (common.dir.join(CA_CERT), common.dir.join(CA_KEY));
            if ca_cert.exists() || ca_key.exists() {
                bail!(
                    "{} already holds a CA: issue more certificates with `kappa certs issue`",
                    common.dir.display()
                );
            }
            std::fs::create_dir_all(&common.dir)
                .with_context(|| format!("creating {}", common.dir.display()))?;
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params
                .distinguished_name
                .push(DnType::CommonName, "Kappa cluster CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            validity(&mut params, CA_DAYS);
            let cert = params.self_signed(&key)?;
            write(&ca_cert, &cert.pem(), false)?;
            write(&ca_key, &key.serialize_pem(), true)?;
            println!("CA: {}", ca_cert.display());
            let issuer = Issuer::new(params, key);
            for peer in &peers {
                issue(&common, &issuer, peer)?;
            }
            Ok(())
        }
        CertsCommand::Issue { common, identity } => {
            let peer: Peer = identity.parse()?;
            let ca = |name| {
                let path = common.dir.join(name);
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))
            };
            let key = KeyPair::from_pem(&ca(CA_KEY)?).context("the CA key")?;
            let issuer =
                Issuer::from_ca_cert_pem(&ca(CA_CERT)?, key).context("the CA certificate")?;
            issue(&common, &issuer, &peer)
        }
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // An hour back: clocks of the machines differ a little.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

/// Writes `<role>-<name>.pem` and its key, signed by `issuer`.
fn issue(common: &Common, issuer: &Issuer<'_, KeyPair>, peer: &Peer) -> anyhow::Result<()> {
    let mut hosts = common.hosts.clone();
    for h in ["localhost", "127.0.0.1"] {
        if !hosts.iter().any(|x| x == h) {
            hosts.push(h.to_string());
        }
    }
    let mut params = CertificateParams::new(hosts).context("a --host")?;
    params
        .distinguished_name
        .push(DnType::CommonName, peer.to_string());
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut params, common.days);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    let stem = peer.to_string().replace('/', "-");
    let (cert_path, key_path) = (
        common.dir.join(format!("{stem}.pem")),
        common.dir.join(format!("{stem}-key.pem")),
    );
    write(&cert_path, &cert.pem(), false)?;
    write(&key_path, &key.serialize_pem(), true)?;
    println!(
        "{peer}: --cluster-cert {} --cluster-key {} --cluster-ca {}",
        cert_path.display(),
        key_path.display(),
        common.dir.join(CA_CERT).display()
    );
    Ok(())
}

/// Writes a new file (never over an existing one); keys readable by the owner only.
fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
