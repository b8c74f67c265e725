//! `--allow-path`, `--allow-postgres-host`, `--allow-service-host`, `--allow-secret-path` and
//! `--allow-secret-env`:
//! what jobs may touch, flags of `kappa jobmanager`, `kappa taskmanager` and `kappa local`.
//! Without roots or names a cluster process lets jobs use no files and read no secret
//! references, while `kappa local` (a single user's own process) lets them use any.

use kappa_connectors::confine::Confinement;
use kappa_job::confine::{AllowedHosts, AllowedPaths, HostKind};
use kappa_job::secret::SecretSources;

/// The flags, flattened into each command's.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConfineArgs {
    /// A directory under which jobs' file connectors may read and write and savepoints may
    /// go, besides the checkpoint directory (repeatable or comma-separated; `s3://bucket/prefix`
    /// for savepoints). Without one a jobmanager or taskmanager lets jobs use no files, and
    /// `kappa local` any.
    #[arg(
        long = "allow-path",
        env = "KAPPA_ALLOW_PATHS",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    pub allow_path: Vec<String>,
    /// A PostgreSQL host (name, address or socket directory) sinks may connect to
    /// (repeatable or comma-separated; none: any).
    #[arg(
        long = "allow-postgres-host",
        env = "KAPPA_ALLOW_POSTGRES_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub allow_postgres_host: Vec<String>,
    /// A host of another server jobs may connect to by url — Redis and Elasticsearch sinks,
    /// schema registries (repeatable or comma-separated; none: any).
    #[arg(
        long = "allow-service-host",
        env = "KAPPA_ALLOW_SERVICE_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub allow_service_host: Vec<String>,
    /// A directory whose files `${file:…}` secret references in jobs may read (repeatable or
    /// comma-separated). Without one a jobmanager or taskmanager lets jobs read no secret
    /// files, and `kappa local` any.
    #[arg(
        long = "allow-secret-path",
        env = "KAPPA_ALLOW_SECRET_PATHS",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    pub allow_secret_path: Vec<String>,
    /// An environment variable `${env:…}` secret references in jobs may read; `PREFIX*` for
    /// every variable starting with PREFIX (repeatable or comma-separated). Without one a
    /// jobmanager or taskmanager lets jobs read no variables, and `kappa local` any.
    #[arg(
        long = "allow-secret-env",
        env = "KAPPA_ALLOW_SECRET_ENV",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub allow_secret_env: Vec<String>,
    /// `kappa local`: without roots, any path.
    #[arg(skip)]
    pub local: bool,
}

impl ConfineArgs {
    /// The same flags, read as `kappa local` reads them.
    pub fn for_local(&self) -> Self {
        Self {
            local: true,
            ..self.clone()
        }
    }

    /// What the jobs of `process` (`jobmanager`, `taskmanager`) may touch.
    pub fn confinement(&self, process: &'static str) -> anyhow::Result<Confinement> {
        let process = if self.local { "kappa local" } else { process };
        let paths = match (self.allow_path.is_empty(), self.local) {
            (true, true) => AllowedPaths::any(process),
            (true, false) => AllowedPaths::none(process),
            (false, _) => AllowedPaths::under(process, &self.allow_path)?,
        };
        let postgres_hosts = AllowedHosts::only(process, &self.allow_postgres_host);
        let service_hosts = AllowedHosts::of(HostKind::Service, process, &self.allow_service_host);
        // `kappa local` without a list: any; a cluster process: only what it lists.
        let secrets = SecretSources::only(
            process,
            listed(&self.allow_secret_path, self.local),
            listed(&self.allow_secret_env, self.local),
        )?;
        tracing::info!(
            process,
            paths = %paths.describe(),
            postgres_hosts = %match postgres_hosts.is_any() {
                true => "any".to_string(),
                false => self.allow_postgres_host.join(", "),
            },
            service_hosts = %match service_hosts.is_any() {
                true => "any".to_string(),
                false => self.allow_service_host.join(", "),
            },
            secrets = %secrets.describe(),
            "what jobs may use (--allow-path, --allow-postgres-host, --allow-service-host, --allow-secret-path, --allow-secret-env)"
        );
        Ok(Confinement {
            paths,
            postgres_hosts,
            service_hosts,
            secrets,
        })
    }
}

/// A list of a flag; None (anything) when `kappa local` is given none.
fn listed(list: &[String], local: bool) -> Option<&[String]> {
    (!(list.is_empty() && local)).then_some(list)
}
