//! TLS and SASL in front of the test broker. Tansu 0.6 serves neither TLS (its `--cert` and
//! `--key` flags exclude each other and no listener uses them) nor SASL PLAIN (its SCRAM users
//! cannot be stored in its memory or S3 storage), so the tests put this proxy between the
//! clients and Tansu: it terminates TLS (rustls, optionally requiring a client certificate
//! from the test CA) and, optionally, answers Kafka's SASL handshake with PLAIN, checking one
//! user name and password before it forwards anything but `ApiVersions` to the broker.
//! The certificates are made with the `openssl` command.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};

/// A test CA, a broker certificate it signed for 127.0.0.1 and localhost, a client
/// certificate it signed with an encrypted key, and a second CA that signed nothing.
pub struct TestCerts {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    /// Encrypted with [`TestCerts::KEY_PASSWORD`].
    pub client_key: PathBuf,
    pub other_ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl (apt install openssl)")?;
    if !out.status.success() {
        bail!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl TestCerts {
    pub const KEY_PASSWORD: &'static str = "client-key-pw";

    /// Makes them in `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let ca_ext = [
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ];
        for name in ["ca", "other-ca"] {
            let (key, pem, subject) = (
                format!("{name}.key"),
                format!("{name}.pem"),
                format!("/CN=kappa test {name}"),
            );
            let mut args = vec![
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", &key,
                "-out", &pem, "-subj", &subject,
            ];
            args.extend(ca_ext);
            openssl(dir, &args)?;
        }
        let pass = format!("pass:{}", Self::KEY_PASSWORD);
        for (name, usage, encrypt) in [
            ("server", "serverAuth", false),
            ("client", "clientAuth", true),
        ] {
            let (key, csr, pem, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            let subject = format!("/CN={name}");
            let mut req = vec![
                "req", "-newkey", "rsa:2048", "-keyout", &key, "-out", &csr, "-subj", &subject,
            ];
            if encrypt {
                req.extend(["-passout", &pass]);
            } else {
                req.push("-nodes");
            }
            openssl(dir, &req)?;
            std::fs::write(
                dir.join(&ext),
                format!(
                    "basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                ),
            )?;
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-out",
                    &pem,
                    "-extfile",
                    &ext,
                ],
            )?;
        }
        Ok(Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.pem"),
        })
    }

    /// A TLS server configuration with the broker certificate; `require_client_cert`: only
    /// clients with a certificate of the test CA are let in.
    pub fn server_config(&self, require_client_cert: bool) -> anyhow::Result<Arc<ServerConfig>> {
        let provider = Arc::new(crypto::aws_lc_rs::default_provider());
        let certs = CertificateDer::pem_slice_iter(&std::fs::read(&self.server_cert)?)
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(&std::fs::read(&self.server_key)?)?;
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(&std::fs::read(&self.ca)?) {
                roots.add(ca?)?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Ok(Arc::new(builder.with_single_cert(certs, key)?))
    }
}

/// What the proxy asks of a client before it reaches the broker.
#[derive(Clone)]
pub struct ProxyOptions {
    /// Terminate TLS with this configuration.
    pub tls: Option<Arc<ServerConfig>>,
    /// Require SASL PLAIN with this user name and password.
    pub sasl_plain: Option<(String, String)>,
}

/// A proxy on a loopback port; stopped when dropped.
pub struct KafkaProxy {
    pub port: u16,
    _runtime: tokio::runtime::Runtime,
}

/// Binds the port a proxy will serve (the broker must advertise it before the proxy starts).
pub fn bind() -> anyhow::Result<TcpListener> {
    Ok(TcpListener::bind("127.0.0.1:0")?)
}

impl KafkaProxy {
    /// Serves `listener`, forwarding to the broker at `upstream`.
    pub fn start(
        listener: TcpListener,
        upstream: &str,
        options: ProxyOptions,
    ) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let upstream = upstream.to_string();
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((stream, _)) = listener.accept().await {
                let (upstream, options) = (upstream.clone(), options.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, &upstream, options).await {
                        eprintln!("kafka proxy: {e:#}");
                    }
                });
            }
        });
        Ok(Self {
            port,
            _runtime: runtime,
        })
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn serve(stream: TcpStream, upstream: &str, options: ProxyOptions) -> anyhow::Result<()> {
    let mut client: Box<dyn Io> = match options.tls {
        Some(config) => Box::new(
            TlsAcceptor::from(config)
                .accept(stream)
                .await
                .context("TLS handshake")?,
        ),
        None => Box::new(stream),
    };
    let mut broker = TcpStream::connect(upstream).await?;
    if let Some((user, password)) = &options.sasl_plain {
        authenticate(&mut client, &mut broker, user, password).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut broker).await?;
    Ok(())
}

const API_VERSIONS: i16 = 18;
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

async fn read_frame(s: &mut (impl AsyncRead + Unpin)) -> anyhow::Result<Vec<u8>> {
    let size = s.read_i32().await?;
    let mut frame = vec![0u8; usize::try_from(size).context("negative frame size")?];
    s.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame(s: &mut (impl AsyncWrite + Unpin), frame: &[u8]) -> anyhow::Result<()> {
    s.write_i32(i32::try_from(frame.len())?).await?;
    s.write_all(frame).await?;
    s.flush().await?;
    Ok(())
}

/// A request's header fields and its body (request header v1: SaslHandshake and
/// SaslAuthenticate v0-v1 are not flexible).
struct Request<'a> {
    api_key: i16,
    version: i16,
    correlation_id: i32,
    body: &'a [u8],
}

fn parse(frame: &[u8]) -> anyhow::Result<Request<'_>> {
    let i16_at = |i: usize| -> anyhow::Result<i16> {
        Ok(i16::from_be_bytes(
            frame.get(i..i + 2).context("short frame")?.try_into()?,
        ))
    };
    let api_key = i16_at(0)?;
    let version = i16_at(2)?;
    let correlation_id = i32::from_be_bytes(frame.get(4..8).context("short frame")?.try_into()?);
    let client_id_len = usize::try_from(i16_at(8)?.max(0))?;
    let body = frame.get(10 + client_id_len..).context("short frame")?;
    Ok(Request {
        api_key,
        version,
        correlation_id,
        body,
    })
}

/// Runs Kafka's SASL exchange (SaslHandshake v1, SaslAuthenticate v0/v1) as the broker would,
/// accepting PLAIN with `user` and `password` only; ApiVersions goes to the broker.
async fn authenticate(
    client: &mut Box<dyn Io>,
    broker: &mut TcpStream,
    user: &str,
    password: &str,
) -> anyhow::Result<()> {
    loop {
        let frame = read_frame(client).await?;
        let req = parse(&frame)?;
        let mut reply = req.correlation_id.to_be_bytes().to_vec();
        match req.api_key {
            API_VERSIONS => {
                write_frame(broker, &frame).await?;
                let answer = read_frame(broker).await?;
                write_frame(client, &answer).await?;
                continue;
            }
            SASL_HANDSHAKE if req.version == 1 => {
                let mechanism = req.body.get(2..).unwrap_or_default();
                let code = if mechanism == b"PLAIN" {
                    0
                } else {
                    UNSUPPORTED_SASL_MECHANISM
                };
                reply.extend(code.to_be_bytes());
                reply.extend(1i32.to_be_bytes());
                reply.extend(5i16.to_be_bytes());
                reply.extend(b"PLAIN");
                write_frame(client, &reply).await?;
                if code != 0 {
                    bail!(
                        "SASL mechanism {} refused",
                        String::from_utf8_lossy(mechanism)
                    );
                }
            }
            SASL_AUTHENTICATE if req.version <= 1 => {
                // PLAIN: authzid NUL user NUL password.
                let token = req.body.get(4..).unwrap_or_default();
                let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
                let ok = matches!(parts.as_slice(), [_, u, p] if *u == user.as_bytes() && *p == password.as_bytes());
                if ok {
                    reply.extend(0i16.to_be_bytes());
                    reply.extend((-1i16).to_be_bytes());
                } else {
                    let message = b"Invalid username or password";
                    reply.extend(SASL_AUTHENTICATION_FAILED.to_be_bytes());
                    reply.extend(i16::try_from(message.len())?.to_be_bytes());
                    reply.extend(message);
                }
                reply.extend(0i32.to_be_bytes());
                if req.version == 1 {
                    reply.extend(0i64.to_be_bytes());
                }
                write_frame(client, &reply).await?;
                if !ok {
                    bail!("SASL PLAIN: wrong user name or password");
                }
                return Ok(());
            }
            key => bail!(
                "request {key} v{} before SASL authentication: closing",
                req.version
            ),
        }
    }
}
