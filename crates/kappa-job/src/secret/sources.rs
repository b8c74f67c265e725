//! Where the secret references of jobs may read on this process: `${file:…}` only under the
//! `--allow-secret-path` directories, `${env:…}` only the variables `--allow-secret-env`
//! names. A job file comes from whoever may submit it, and a reference it resolves is sent to
//! servers the job names: without these lists a job could read the process's own
//! credentials (its object-store keys, its TLS key) and hand them to a broker of its choice.

use std::path::PathBuf;
use std::sync::Arc;

use super::redact::{FieldValue, secret_fields};
use super::{Secret, SecretError, SecretProblem};
use crate::SpecError;
use crate::confine::resolved;
use crate::error::Locator;
use crate::kafka::{KafkaConnection, SaslAuth};
use crate::spec::JobSpec;

/// The directories and environment variables secret references may read.
#[derive(Debug, Clone)]
pub struct SecretSources {
    /// The process, for messages: `jobmanager`, `taskmanager`, `kappa local`.
    process: &'static str,
    /// Directories (resolved); None: any file.
    roots: Option<Vec<PathBuf>>,
    /// Variable names, or prefixes ending in `*`; None: any variable.
    env: Option<Vec<String>>,
}

const PATH_FLAG: &str = "--allow-secret-path DIR (KAPPA_ALLOW_SECRET_PATHS)";
const ENV_FLAG: &str = "--allow-secret-env NAME (KAPPA_ALLOW_SECRET_ENV)";

/// Why a directory given at start cannot hold secrets.
#[derive(Debug, thiserror::Error)]
#[error("--allow-secret-path `{root}` is not an existing directory")]
pub struct SecretRootError {
    pub root: String,
    #[source]
    pub source: Option<std::io::Error>,
}

impl SecretSources {
    /// Any file and variable: a single user's own process (`kappa local` without lists).
    pub fn any(process: &'static str) -> Self {
        Self {
            process,
            roots: None,
            env: None,
        }
    }

    /// No file and no variable: a cluster process started without lists.
    pub fn none(process: &'static str) -> Self {
        Self {
            process,
            roots: Some(Vec::new()),
            env: Some(Vec::new()),
        }
    }

    /// Files under `roots` (None: any) and the variables `env` names (None: any; a name
    /// ending in `*` is a prefix).
    pub fn only(
        process: &'static str,
        roots: Option<&[String]>,
        env: Option<&[String]>,
    ) -> Result<Self, SecretRootError> {
        let roots = match roots {
            None => None,
            Some(roots) => {
                let mut dirs = Vec::with_capacity(roots.len());
                for root in roots.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
                    let error = |source| SecretRootError {
                        root: root.to_string(),
                        source,
                    };
                    let real = std::fs::canonicalize(root).map_err(|e| error(Some(e)))?;
                    if !real.is_dir() {
                        return Err(error(None));
                    }
                    dirs.push(real);
                }
                Some(dirs)
            }
        };
        let env = env.map(|names| {
            names
                .iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect()
        });
        Ok(Self {
            process,
            roots,
            env,
        })
    }

    /// What the references may read, for the start-up log.
    pub fn describe(&self) -> String {
        let list = |l: &Option<Vec<String>>| match l {
            None => "any".to_string(),
            Some(l) if l.is_empty() => "none".to_string(),
            Some(l) => l.join(", "),
        };
        let roots = self
            .roots
            .as_ref()
            .map(|r| r.iter().map(|p| p.display().to_string()).collect());
        format!("files {}; environment {}", list(&roots), list(&self.env))
    }

    /// Whether `secret`, the value of `field`, may be read here (a literal always may).
    pub fn check(&self, secret: &Secret, field: &str) -> Result<(), SecretError> {
        self.allowed(secret, field).map(|_| ())
    }

    /// Every secret reference of `spec` this process does not let jobs read, located in its
    /// file (what [`resolve`](Self::resolve) would refuse before reading anything).
    pub fn check_spec(&self, spec: &JobSpec, loc: &Locator<'_>) -> Vec<SpecError> {
        secret_fields(spec)
            .into_iter()
            .filter_map(|f| match f.value {
                FieldValue::Secret(s) => self.check(s, &f.field).err().map(|e| (f, e.reason)),
                FieldValue::Url(_) => None,
            })
            .map(|(f, e)| loc.at(Some(f.span), &f.field, e.to_string()))
            .collect()
    }

    /// The file a `${file:…}` reference may read, resolved; None for other secrets.
    fn allowed(&self, secret: &Secret, field: &str) -> Result<Option<PathBuf>, SecretError> {
        let process = self.process;
        let refused = |what: &'static str, flag: &'static str, allowed: &[String]| {
            let reference = secret.reference();
            let problem = match allowed.is_empty() {
                true => SecretProblem::NotAllowed {
                    reference,
                    process,
                    what,
                    flag,
                },
                false => SecretProblem::Outside {
                    reference,
                    process,
                    allowed: format!("{what} {}", allowed.join(", ")),
                    flag,
                },
            };
            problem.at(field)
        };
        match secret {
            Secret::Literal(_) | Secret::Redacted => Ok(None),
            Secret::Env(name) => match &self.env {
                Some(names) if !names.iter().any(|n| env_matches(n, name)) => {
                    Err(refused("environment variables", ENV_FLAG, names))
                }
                _ => Ok(None),
            },
            Secret::File(path) => {
                let real = resolved(path)
                    .map_err(|e| self.unreadable(secret, field, std::io::Error::other(e)))?;
                match &self.roots {
                    Some(roots) if !roots.iter().any(|r| real.starts_with(r)) => {
                        let shown: Vec<String> =
                            roots.iter().map(|r| r.display().to_string()).collect();
                        Err(refused("files under", PATH_FLAG, &shown))
                    }
                    _ => Ok(Some(real)),
                }
            }
        }
    }

    fn unreadable(&self, secret: &Secret, field: &str, e: std::io::Error) -> SecretError {
        SecretProblem::FileUnreadable {
            reference: secret.reference(),
            process: self.process,
            source: Arc::new(e),
        }
        .at(field)
    }

    /// The value of `secret` (the value of `field`) read here: a literal as it is, a
    /// reference from its variable or file (without the file's trailing line break).
    pub fn resolve(&self, secret: &Secret, field: &str) -> Result<Secret, SecretError> {
        let file = self.allowed(secret, field)?;
        let value = match (secret, file) {
            (Secret::Literal(v), _) => return Ok(Secret::Literal(v.clone())),
            (Secret::Redacted, _) => return Err(SecretProblem::Redacted.at(field)),
            (Secret::Env(name), _) => match std::env::var(name) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    let process = self.process;
                    let name = name.clone();
                    return Err(SecretProblem::EnvMissing { name, process }.at(field));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    let name = name.clone();
                    return Err(SecretProblem::EnvNotText { name }.at(field));
                }
            },
            (Secret::File(_), real) => std::fs::read_to_string(real.unwrap_or_default())
                .map_err(|e| self.unreadable(secret, field, e))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if value.is_empty() {
            let reference = secret.reference();
            let process = self.process;
            return Err(SecretProblem::Empty { reference, process }.at(field));
        }
        Ok(Secret::Literal(value))
    }

    /// `connection` with every secret read here; `connector` is its table (`source`,
    /// `sinks.out`), naming the fields in errors.
    pub fn resolve_kafka(
        &self,
        connection: &KafkaConnection,
        connector: &str,
    ) -> Result<KafkaConnection, SecretError> {
        let mut c = connection.clone();
        let field = |name: &str| format!("{connector}.security.{name}");
        if let Some(cert) = c
            .security
            .tls
            .as_mut()
            .and_then(|t| t.client_certificate.as_mut())
            && let Some(p) = cert.key_password.as_mut()
        {
            *p = self.resolve(p, &field("key_password"))?;
        }
        match c.security.sasl.as_mut() {
            Some(SaslAuth::Password { password, .. }) => {
                *password = self.resolve(password, &field("password"))?;
            }
            Some(SaslAuth::OAuthBearer(oidc)) => {
                oidc.client_secret =
                    self.resolve(&oidc.client_secret, &field("oauth_client_secret"))?;
            }
            None => {}
        }
        Ok(c)
    }
}

/// Whether variable `name` is allowed by `pattern` (a name, or a prefix ending in `*`).
fn env_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}
