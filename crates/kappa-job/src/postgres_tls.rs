//! TLS settings of a PostgreSQL connection string, read as libpq reads them: `sslmode`
//! (`disable`, `prefer` — the default —, `require`, `verify-ca`, `verify-full`), `sslrootcert`
//! (the CA file), `sslcert` and `sslkey` (a client certificate), as URL query parameters
//! (`postgres://…/db?sslmode=verify-full&sslrootcert=/etc/pg/ca.pem`) or keywords
//! (`host=db sslmode=verify-full sslrootcert=/etc/pg/ca.pem`).
//!
//! The one place they are read: [`split`] takes them out of the string (the client library
//! that connects does not know all of them) and checks them together; the jobmanager reports
//! its errors at the sink's `url`, the taskmanager reads the same settings when it connects.

use std::ops::Range;
use std::path::PathBuf;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, else plain TCP (libpq's default).
    #[default]
    Prefer,
    /// TLS; the certificate is checked against `sslrootcert` when given (then as verify-ca).
    Require,
    /// TLS with a certificate signed by `sslrootcert`.
    VerifyCa,
    /// TLS with a certificate signed by `sslrootcert` that names the host connected to.
    VerifyFull,
}

/// What the server's certificate is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Nothing: the connection is encrypted, but anyone in between could answer.
    Nothing,
    /// Signed by the CA of `sslrootcert`.
    Chain,
    /// Signed by the CA and valid for the host name (or address) connected to.
    ChainAndHost,
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostgresTls {
    pub mode: SslMode,
    /// `sslrootcert`: the CA certificates (PEM) the server's certificate is checked against.
    pub root_cert: Option<PathBuf>,
    /// `sslcert` and `sslkey`: a client certificate (PEM) and its private key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl PostgresTls {
    /// How the server's certificate is checked (libpq: with a root certificate, `prefer` and
    /// `require` check the chain as `verify-ca` does).
    pub fn verify(&self) -> Verify {
        match (self.mode, &self.root_cert) {
            (SslMode::VerifyFull, _) => Verify::ChainAndHost,
            (SslMode::VerifyCa, _) | (_, Some(_)) => Verify::Chain,
            _ => Verify::Nothing,
        }
    }

    /// The files named, for the checks of confined jobs.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        let (cert, key) = match &self.client_cert {
            Some((c, k)) => (Some(c), Some(k)),
            None => (None, None),
        };
        self.root_cert.iter().chain(cert).chain(key)
    }
}

/// A connection string split into what the client library reads and the TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// The string without the TLS parameters (it may hold a password).
    pub connection: String,
    pub tls: PostgresTls,
}

/// Why the TLS settings of a connection string cannot be used; no restart changes that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSettingError {
    #[error(
        "sslmode `{0}` is not one of disable, prefer, require, verify-ca, verify-full (`allow` is not supported: use prefer)"
    )]
    Mode(String),
    #[error("`{0}` is given twice")]
    Twice(&'static str),
    #[error("`{0}` is empty")]
    Empty(&'static str),
    #[error("`{param}` must be an absolute path (a file on every taskmanager), not `{path}`")]
    Relative { param: &'static str, path: String },
    #[error(
        "sslmode={0} checks the server's certificate: set sslrootcert to the CA file (PEM) that signed it"
    )]
    NeedsRootCert(&'static str),
    #[error("`sslcert` and `sslkey` go together: give both, or neither")]
    HalfClientCert,
    #[error(
        "sslmode=disable connects without TLS: sslrootcert, sslcert and sslkey would not be used"
    )]
    FilesWithoutTls,
    #[error("bad percent-encoding in the value of `{0}`")]
    Percent(String),
    #[error("unterminated quoted value in the connection string")]
    Quote,
}

const MODE: &str = "sslmode";
const ROOT_CERT: &str = "sslrootcert";
const CERT: &str = "sslcert";
const KEY: &str = "sslkey";

/// Takes the TLS parameters out of `url` (URL or key-value form) and checks them.
pub fn split(url: &str) -> Result<PostgresUrl, TlsSettingError> {
    let trimmed = url.trim_start();
    let (pairs, connection) =
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            split_url(url)?
        } else {
            split_keywords(url)?
        };
    let mut found: [Option<String>; 4] = Default::default();
    for (key, value) in pairs {
        for (slot, name) in found.iter_mut().zip(TLS_KEYS) {
            if key == name && slot.replace(value.clone()).is_some() {
                return Err(TlsSettingError::Twice(name));
            }
        }
    }
    let [mode, root, cert, key] = found;
    let tls = settings(mode, root, cert, key)?;
    Ok(PostgresUrl { connection, tls })
}

fn settings(
    mode: Option<String>,
    root: Option<String>,
    cert: Option<String>,
    key: Option<String>,
) -> Result<PostgresTls, TlsSettingError> {
    let mode = match mode.as_deref() {
        None => SslMode::default(),
        Some("disable") => SslMode::Disable,
        Some("prefer") => SslMode::Prefer,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(other) => return Err(TlsSettingError::Mode(other.to_string())),
    };
    let path = |param: &'static str, value: Option<String>| match value {
        None => Ok(None),
        Some(v) if v.is_empty() => Err(TlsSettingError::Empty(param)),
        Some(v) if !v.starts_with('/') => Err(TlsSettingError::Relative { param, path: v }),
        Some(v) => Ok(Some(PathBuf::from(v))),
    };
    let root_cert = path(ROOT_CERT, root)?;
    let client_cert = match (path(CERT, cert)?, path(KEY, key)?) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err(TlsSettingError::HalfClientCert),
    };
    let tls = PostgresTls {
        mode,
        root_cert,
        client_cert,
    };
    match mode {
        SslMode::VerifyCa if tls.root_cert.is_none() => {
            Err(TlsSettingError::NeedsRootCert("verify-ca"))
        }
        SslMode::VerifyFull if tls.root_cert.is_none() => {
            Err(TlsSettingError::NeedsRootCert("verify-full"))
        }
        SslMode::Disable if tls.files().next().is_some() => Err(TlsSettingError::FilesWithoutTls),
        _ => Ok(tls),
    }
}

const TLS_KEYS: [&str; 4] = [MODE, ROOT_CERT, CERT, KEY];

fn is_tls_key(key: &str) -> bool {
    TLS_KEYS.contains(&key)
}

/// `postgres://…?a=b&sslmode=…#f`: the TLS parameters of the query, and the URL without them.
fn split_url(url: &str) -> Result<(Vec<(String, String)>, String), TlsSettingError> {
    let Some(q) = url.find('?') else {
        return Ok((Vec::new(), url.to_string()));
    };
    let end = url[q..].find('#').map_or(url.len(), |i| q + i);
    let (mut pairs, mut kept) = (Vec::new(), Vec::new());
    for param in url[q + 1..end].split('&') {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        let key = percent_decode(k, k)?;
        if is_tls_key(&key) {
            pairs.push((key.clone(), percent_decode(v, &key)?));
        } else {
            kept.push(param);
        }
    }
    let query = match kept.is_empty() {
        true => String::new(),
        false => format!("?{}", kept.join("&")),
    };
    Ok((pairs, format!("{}{query}{}", &url[..q], &url[end..])))
}

fn percent_decode(s: &str, key: &str) -> Result<String, TlsSettingError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| TlsSettingError::Percent(key.to_string()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TlsSettingError::Percent(key.to_string()))
}

/// `host=h sslmode='verify-full' …`: the TLS keywords, and the string without them.
fn split_keywords(text: &str) -> Result<(Vec<(String, String)>, String), TlsSettingError> {
    let (mut pairs, mut cut): (Vec<(String, String)>, Vec<Range<usize>>) = (vec![], vec![]);
    for (key, value, range) in keywords(text)? {
        if is_tls_key(&key) {
            pairs.push((key, value));
            cut.push(range);
        }
    }
    let mut out = text.to_string();
    for r in cut.into_iter().rev() {
        out.replace_range(r, "");
    }
    Ok((pairs, out))
}

/// Every `key = value` of a key-value connection string with its byte range; values unquoted
/// (backslash escapes) or in single quotes (`\'`, `\\`). What it does not understand is left
/// for the client library to refuse.
fn keywords(text: &str) -> Result<Vec<(String, String, Range<usize>)>, TlsSettingError> {
    let b = text.as_bytes();
    let skip_spaces = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut out = Vec::new();
    let mut i = skip_spaces(0);
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = text[start..i].to_string();
        i = skip_spaces(i);
        if b.get(i) != Some(&b'=') {
            break;
        }
        i = skip_spaces(i + 1);
        let mut value = Vec::new();
        if b.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(TlsSettingError::Quote),
                    Some(b'\'') => break,
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            i += 1;
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                value.push(b[i]);
                i += 1;
            }
        }
        let value = String::from_utf8_lossy(&value).into_owned();
        out.push((key, value, start..i));
        i = skip_spaces(i);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str) -> PostgresTls {
        split(url).unwrap().tls
    }

    #[test]
    fn url_parameters_are_taken_out_and_the_rest_is_kept() {
        let u = split(
            "postgres://k:pw@db:5432/x?application_name=a&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            u.connection,
            "postgres://k:pw@db:5432/x?application_name=a&connect_timeout=3"
        );
        assert_eq!(u.tls.mode, SslMode::VerifyFull);
        assert_eq!(u.tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(u.tls.verify(), Verify::ChainAndHost);
        let u = split("postgresql://db/x?sslmode=require").unwrap();
        assert_eq!(u.connection, "postgresql://db/x");
        assert_eq!(u.tls.verify(), Verify::Nothing);
    }

    #[test]
    fn keywords_are_taken_out_with_their_quotes() {
        let u = split(
            "host=db sslmode = 'verify-ca' password='a b\\'c' sslcert=/c.pem sslkey='/k y.pem' dbname=x sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(u.connection, "host=db  password='a b\\'c'   dbname=x ");
        assert_eq!(u.tls.mode, SslMode::VerifyCa);
        assert_eq!(
            u.tls.client_cert,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k y.pem")))
        );
        assert_eq!(
            split("host=db sslmode=verify-ca").unwrap_err(),
            TlsSettingError::NeedsRootCert("verify-ca")
        );
    }

    #[test]
    fn libpq_defaults_and_require_with_a_root_certificate() {
        assert_eq!(tls("postgres://db/x"), PostgresTls::default());
        assert_eq!(tls("host=db").mode, SslMode::Prefer);
        assert_eq!(
            tls("host=db sslmode=require sslrootcert=/ca.pem").verify(),
            Verify::Chain
        );
        assert_eq!(tls("host=db sslrootcert=/ca.pem").verify(), Verify::Chain);
    }

    #[test]
    fn wrong_settings_are_refused_saying_why() {
        let cases = [
            (
                "host=db sslmode=allow",
                TlsSettingError::Mode("allow".into()),
            ),
            (
                "postgres://db/x?sslmode=verify-full",
                TlsSettingError::NeedsRootCert("verify-full"),
            ),
            (
                "host=db sslmode=require sslcert=/c.pem",
                TlsSettingError::HalfClientCert,
            ),
            (
                "host=db sslmode=require sslrootcert=ca.pem",
                TlsSettingError::Relative {
                    param: ROOT_CERT,
                    path: "ca.pem".into(),
                },
            ),
            (
                "host=db sslmode=disable sslrootcert=/ca.pem",
                TlsSettingError::FilesWithoutTls,
            ),
            (
                "host=db sslmode=require sslmode=disable",
                TlsSettingError::Twice(MODE),
            ),
            ("host=db sslrootcert=", TlsSettingError::Empty(ROOT_CERT)),
            ("host=db sslmode='require", TlsSettingError::Quote),
            (
                "postgres://db/x?sslrootcert=%zz",
                TlsSettingError::Percent(ROOT_CERT.into()),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(split(url).unwrap_err(), want, "{url}");
        }
    }
}
