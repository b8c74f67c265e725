//! `--allow-postgres-host`: the PostgreSQL servers sinks may connect to, and
//! `--allow-service-host`: the other servers jobs connect to by url (Redis, Elasticsearch,
//! schema registries); none given: any. The hosts a PostgreSQL connection string names are
//! read by the client library that connects (in kappa-connectors), so what is checked is
//! what is connected to.

/// Which servers a list allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Postgres,
    /// Redis, Elasticsearch, schema registries.
    Service,
}

impl HostKind {
    fn noun(self) -> &'static str {
        match self {
            Self::Postgres => "postgres host",
            Self::Service => "host",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Self::Postgres => "--allow-postgres-host",
            Self::Service => "--allow-service-host",
        }
    }
}

/// The hosts of one kind the jobs of one process may connect to.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// The process, for messages naming its flag.
    process: &'static str,
    kind: HostKind,
    /// Lower-case names or addresses; None: any.
    hosts: Option<Vec<String>>,
}

/// A connection to a host that is not allowed.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{noun} `{host}` is not one this {process} lets jobs connect to ({allowed}; {flag})",
    noun = .kind.noun(),
    flag = .kind.flag()
)]
pub struct HostRefused {
    pub host: String,
    pub process: &'static str,
    pub allowed: String,
    pub kind: HostKind,
}

/// A host as compared: lower case, without the brackets of an IPv6 address.
fn normal(host: &str) -> String {
    let h = host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(h);
    h.to_ascii_lowercase()
}

impl AllowedHosts {
    /// Any PostgreSQL host.
    pub fn any(process: &'static str) -> Self {
        Self::only(process, &[])
    }

    /// Only PostgreSQL hosts `hosts`; none given: any.
    pub fn only(process: &'static str, hosts: &[String]) -> Self {
        Self::of(HostKind::Postgres, process, hosts)
    }

    /// Only the hosts `hosts` of `kind`; none given: any.
    pub fn of(kind: HostKind, process: &'static str, hosts: &[String]) -> Self {
        let hosts: Vec<String> = hosts
            .iter()
            .map(|h| normal(h))
            .filter(|h| !h.is_empty())
            .collect();
        Self {
            process,
            kind,
            hosts: (!hosts.is_empty()).then_some(hosts),
        }
    }

    /// Whether every host is allowed.
    pub fn is_any(&self) -> bool {
        self.hosts.is_none()
    }

    /// Checks every host a connection would go to (names, addresses or socket directories).
    pub fn check<'a>(&self, targets: impl IntoIterator<Item = &'a str>) -> Result<(), HostRefused> {
        let Some(allowed) = &self.hosts else {
            return Ok(());
        };
        for t in targets {
            if !allowed.contains(&normal(t)) {
                return Err(HostRefused {
                    host: t.to_string(),
                    process: self.process,
                    allowed: allowed.join(", "),
                    kind: self.kind,
                });
            }
        }
        Ok(())
    }
}
