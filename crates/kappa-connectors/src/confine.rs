//! Confined jobs in the connectors: the file paths (an Elasticsearch sink's `ca_file` too),
//! file names and PostgreSQL hosts of a job checked against what this process allows — at
//! submission, each refusal located in the job file (the jobmanager), and again where a
//! taskmanager opens each connector (it does not trust the jobmanager's check: its roots
//! may differ).

use std::path::{Path, PathBuf};

use kappa_job::confine::{AllowedHosts, AllowedPaths, HostKind, PathRefused, Refused, names};
use kappa_job::error::Locator;
use kappa_job::plan::iceberg::{CatalogDatabase, IcebergSinkPlan};
use kappa_job::plan::{JobPlan, SinkKind, SinkPlan, SourceKind, SourcePlan};
use kappa_job::postgres_tls;
use kappa_job::secret::SecretSources;
use kappa_job::spec::JobSpec;
use kappa_job::{SpecError, SpecErrors};
use kappa_runtime::io::FilePosition;
use postgres::config::Host;

use crate::service_hosts;

/// What the jobs of one process may touch.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// Where file connectors read and write, and savepoints go.
    pub paths: AllowedPaths,
    /// The PostgreSQL servers sinks connect to.
    pub postgres_hosts: AllowedHosts,
    /// The other servers jobs connect to by url: Redis, Elasticsearch, schema registries.
    pub service_hosts: AllowedHosts,
    /// The files and environment variables secret references read.
    pub secrets: SecretSources,
}

impl Confinement {
    /// Anything: a single user's own process (`kappa local` without roots).
    pub fn any(process: &'static str) -> Self {
        Self {
            paths: AllowedPaths::any(process),
            postgres_hosts: AllowedHosts::any(process),
            service_hosts: AllowedHosts::of(HostKind::Service, process, &[]),
            secrets: SecretSources::any(process),
        }
    }

    /// No file paths and no secret references, any host: a cluster process started without
    /// roots.
    pub fn no_files(process: &'static str) -> Self {
        Self {
            paths: AllowedPaths::none(process),
            postgres_hosts: AllowedHosts::any(process),
            service_hosts: AllowedHosts::of(HostKind::Service, process, &[]),
            secrets: SecretSources::none(process),
        }
    }

    /// Checks every file path, file sink name, PostgreSQL host and secret reference of
    /// `plan` (planned from `text`, the file `file`); each refusal names its place in the file.
    pub fn check_job(&self, file: &str, text: &str, plan: &JobPlan) -> Result<(), SpecErrors> {
        // The plan keeps no spans: the fields are found again in the parsed file.
        let spec = kappa_job::parse::parse_job(file, text).ok();
        let loc = Locator::new(file, text);
        let mut errors: Vec<SpecError> = spec
            .as_ref()
            .map(|s| self.secrets.check_spec(s, &loc))
            .unwrap_or_default();
        for s in &plan.sources {
            for host in service_hosts::of_source(s) {
                if let Err(e) = self.service_hosts.check([host.as_str()]) {
                    let field = format!("{}.schema_registry", s.uid);
                    errors.push(loc.at(None, &field, e.to_string()));
                }
            }
            if let SourceKind::File { path } = &s.kind
                && let Err(e) = self.paths.check_path(path)
            {
                let span = spec
                    .as_ref()
                    .and_then(|j| source_table(j, &s.uid)?.path.as_ref());
                errors.push(loc.at(
                    span.map(|s| s.span()),
                    &format!("{}.path", s.uid),
                    e.to_string(),
                ));
            }
            if let SourceKind::Kafka(k) = &s.kind
                && let Some(Err(e)) = k.history.as_ref().map(|h| self.paths.check_store(h))
            {
                let span = spec
                    .as_ref()
                    .and_then(|j| source_table(j, &s.uid)?.history.as_ref());
                errors.push(loc.at(
                    span.map(|s| s.span()),
                    &format!("{}.history", s.uid),
                    e.to_string(),
                ));
            }
        }
        for s in &plan.sinks {
            let table = spec.as_ref().and_then(|j| sink_spans(j, &s.uid));
            for (host, field) in service_hosts::of_sink(s) {
                if let Err(e) = self.service_hosts.check([host.as_str()]) {
                    let span = table
                        .as_ref()
                        .and_then(|t| t.url.clone())
                        .filter(|_| field == "url");
                    errors.push(loc.at(span, &format!("{}.{field}", s.uid), e.to_string()));
                }
            }
            match &s.kind {
                SinkKind::File { path } => {
                    if let Err(e) = self.paths.check_path(path) {
                        let span = table.as_ref().and_then(|t| t.path.clone());
                        errors.push(loc.at(span, &format!("{}.path", s.uid), e.to_string()));
                    }
                    if let Err(e) = names::plain_file_name(&s.uid) {
                        let why = format!("a file sink's name becomes part of its file names: {e}");
                        let span = table.as_ref().and_then(|t| t.path.clone());
                        errors.push(loc.at(span, &s.uid, why));
                    }
                }
                SinkKind::Postgres { url, .. } => {
                    if let Err(e) = self.check_postgres(url) {
                        let span = table.as_ref().and_then(|t| t.url.clone());
                        errors.push(loc.at(span, &format!("{}.url", s.uid), e.to_string()));
                    }
                }
                SinkKind::Elasticsearch(es) => {
                    if let Some(Err(e)) = es.ca_file.as_ref().map(|f| self.paths.check_path(f)) {
                        let span = table.as_ref().and_then(|t| t.ca_file.clone());
                        errors.push(loc.at(span, &format!("{}.ca_file", s.uid), e.to_string()));
                    }
                }
                SinkKind::Parquet(p) => {
                    if let Err(e) = self.paths.check_store(&p.location) {
                        let span = table.as_ref().and_then(|t| t.path.clone());
                        errors.push(loc.at(span, &format!("{}.path", s.uid), e.to_string()));
                    }
                }
                SinkKind::Iceberg(i) => {
                    if let Err(e) = self.paths.check_store(&i.warehouse) {
                        let span = table.as_ref().and_then(|t| t.path.clone());
                        errors.push(loc.at(span, &format!("{}.path", s.uid), e.to_string()));
                    }
                    if let Err(e) = self.check_iceberg_catalog(i) {
                        let span = table.as_ref().and_then(|t| t.url.clone());
                        errors.push(loc.at(span, &format!("{}.url", s.uid), e.to_string()));
                    }
                }
                SinkKind::Kafka { .. }
                | SinkKind::Redis(_)
                | SinkKind::Stdout
                | SinkKind::Blackhole => {}
            }
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(SpecErrors(errors)),
        }
    }

    /// Checks the path of a file source and every file a subtask of it was assigned, a Kafka
    /// source's history archive, and the host of a source's schema registry.
    pub fn check_source(&self, source: &SourcePlan, files: &[FilePosition]) -> Result<(), Refused> {
        for host in service_hosts::of_source(source) {
            self.service_hosts.check([host.as_str()])?;
        }
        match &source.kind {
            SourceKind::File { path } => {
                self.paths.check_path(path)?;
            }
            SourceKind::Kafka(k) => {
                if let Some(h) = &k.history {
                    self.paths.check_store(h)?;
                }
            }
            SourceKind::Nexmark(_) => {}
        }
        for f in files {
            self.paths.check_path(&f.path)?;
        }
        Ok(())
    }

    /// The directory a file sink writes to, resolved; checks a PostgreSQL sink's hosts and
    /// an Elasticsearch sink's CA file, a parquet sink's directory or S3 prefix.
    pub fn check_sink(&self, sink: &SinkPlan) -> Result<Option<PathBuf>, Refused> {
        for (host, _) in service_hosts::of_sink(sink) {
            self.service_hosts.check([host.as_str()])?;
        }
        match &sink.kind {
            SinkKind::File { path } => Ok(Some(self.paths.check_path(path)?)),
            SinkKind::Parquet(p) => {
                self.paths.check_store(&p.location)?;
                Ok(None)
            }
            SinkKind::Iceberg(i) => {
                self.paths.check_store(&i.warehouse)?;
                self.check_iceberg_catalog(i)?;
                Ok(None)
            }
            SinkKind::Postgres { url, .. } => {
                self.check_postgres(url)?;
                Ok(None)
            }
            SinkKind::Elasticsearch(es) => {
                if let Some(f) = &es.ca_file {
                    self.paths.check_path(f)?;
                }
                Ok(None)
            }
            SinkKind::Kafka { .. }
            | SinkKind::Redis(_)
            | SinkKind::Stdout
            | SinkKind::Blackhole => Ok(None),
        }
    }

    /// Checks an iceberg sink's catalog: a SQLite file under the roots, a PostgreSQL server
    /// among the allowed hosts.
    fn check_iceberg_catalog(&self, plan: &IcebergSinkPlan) -> Result<(), Refused> {
        match &plan.database {
            CatalogDatabase::Sqlite(file) => {
                self.paths.check_path(Path::new(file))?;
                Ok(())
            }
            CatalogDatabase::Postgres => self.check_postgres(&plan.url),
        }
    }

    /// Checks the hosts a PostgreSQL connection string connects to and the TLS files it
    /// reads (`sslrootcert`, `sslcert`, `sslkey`: files on this process, under the roots).
    fn check_postgres(&self, url: &str) -> Result<(), Refused> {
        // A string the client cannot read connects nowhere (opening the sink says why).
        let Ok(settings) = postgres_tls::split(url) else {
            return Ok(());
        };
        for file in settings.tls.files() {
            self.paths.check_path(file)?;
        }
        if self.postgres_hosts.is_any() {
            return Ok(());
        }
        let Some(targets) = postgres_targets(&settings.connection) else {
            return Ok(());
        };
        self.postgres_hosts
            .check(targets.iter().map(String::as_str))?;
        Ok(())
    }
}

/// The hosts a PostgreSQL connection string (without its TLS settings) connects to, as the
/// client that connects reads it: each `hostaddr` where given, else the `host` (a name, or a
/// socket directory); None when it does not parse.
fn postgres_targets(url: &str) -> Option<Vec<String>> {
    let config: postgres::Config = url.parse().ok()?;
    let (hosts, addrs) = (config.get_hosts(), config.get_hostaddrs());
    let n = hosts.len().max(addrs.len());
    let targets = (0..n).filter_map(|i| match (addrs.get(i), hosts.get(i)) {
        (Some(addr), _) => Some(addr.to_string()),
        (None, Some(Host::Tcp(name))) => Some(name.clone()),
        (None, Some(Host::Unix(dir))) => Some(dir.display().to_string()),
        (None, None) => None,
    });
    Some(targets.collect())
}

/// Where a source's `path` is written, by the source's uid (`source`, `sources.<name>`).
fn source_table<'a>(spec: &'a JobSpec, uid: &str) -> Option<&'a kappa_job::spec::SourceSpec> {
    match uid.strip_prefix("sources.") {
        Some(name) => spec.sources.get(name),
        None => spec.source.as_ref(),
    }
}

/// Where a sink's `path`, `url` and `ca_file` are written.
struct SinkSpans {
    path: Option<std::ops::Range<usize>>,
    url: Option<std::ops::Range<usize>>,
    ca_file: Option<std::ops::Range<usize>>,
}

fn sink_spans(spec: &JobSpec, uid: &str) -> Option<SinkSpans> {
    let table = match uid.strip_prefix("sinks.") {
        Some(name) => spec.sinks.get(name),
        None => spec.sink.as_ref(),
    }?;
    Some(SinkSpans {
        path: table.path.as_ref().map(|s| s.span()),
        url: table.url.as_ref().map(|s| s.span()),
        ca_file: table.ca_file.as_ref().map(|s| s.span()),
    })
}

/// Checks that the files of writer `writer` stay in their directory: the writer becomes part
/// of their names.
pub fn check_writer(writer: &str) -> Result<(), Refused> {
    names::plain_file_name(writer)?;
    Ok(())
}

/// The part file a restored checkpoint names, found by its name in `dir`: what a checkpoint
/// read back from storage names is not trusted (only a name of the file sink's own is taken),
/// and the directory may have another path than when the checkpoint was taken (an upgrade's
/// cut-over renames the shadow directory v2 wrote into to the live one).
pub fn part_file_in(dir: &Path, path: &Path) -> Result<PathBuf, Refused> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    names::plain_file_name(name)?;
    if name.starts_with("part-") || name.starts_with(".part-") {
        return Ok(dir.join(name));
    }
    Err(Refused::Path(PathRefused::Invalid {
        path: path.display().to_string(),
        why: format!(
            "the restored checkpoint names a part file that is not one of this sink's in `{}`",
            dir.display()
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa_job::{Overrides, plan_job};

    fn job(root: &Path) -> String {
        format!(
            r#"name = "confined"

[source]
connector = "file"
path = "/etc/passwd"
schema = {{ user_id = "string" }}

[sinks.out]
connector = "file"
path = "{root}/out"

[sinks."x/../../y"]
connector = "file"
path = "{root}/out"

[sinks.pg]
connector = "postgres"
url = "host=db.internal hostaddr=10.9.9.9 user=kappa dbname=analytics"
table = "t"
key = "{{user_id}}"
"#,
            root = root.display()
        )
    }

    fn confinement(root: &Path, hosts: &[&str]) -> Confinement {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        Confinement {
            paths: AllowedPaths::under("jobmanager", &[root.display().to_string()]).expect("root"),
            postgres_hosts: AllowedHosts::only("jobmanager", &hosts),
            service_hosts: AllowedHosts::of(HostKind::Service, "jobmanager", &hosts),
            secrets: SecretSources::none("jobmanager"),
        }
    }

    #[test]
    fn redis_and_schema_registry_hosts_must_be_allowed_service_hosts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = r#"name = "services"

[source]
connector = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "clicks"
format = "avro"
schema_registry = { url = "http://registry.evil:8081", subject = "clicks-value" }
schema = { user_id = "string" }

[sink]
connector = "redis"
url = "redis://cache.internal:6379/0"
key = "{user_id}"
"#;
        let plan = plan_job("job.toml", text, &Overrides::default()).expect("plans");
        let errors = confinement(dir.path(), &["cache.internal"])
            .check_job("job.toml", text, &plan)
            .unwrap_err()
            .0;
        let found: Vec<(&str, Option<usize>)> =
            errors.iter().map(|e| (e.field.as_str(), e.line)).collect();
        assert_eq!(found, [("source.schema_registry", None)], "{errors:?}");
        assert!(
            errors[0].message.contains("registry.evil")
                && errors[0].message.contains("--allow-service-host"),
            "{}",
            errors[0].message
        );
        let refused = confinement(dir.path(), &["registry.evil"])
            .check_job("job.toml", text, &plan)
            .unwrap_err()
            .0;
        assert_eq!(refused[0].field, "sink.url", "{refused:?}");
        assert_eq!(refused[0].line, Some(13), "{refused:?}");
        let c = confinement(dir.path(), &["registry.evil"]);
        assert!(
            c.check_sink(&plan.sinks[0]).is_err(),
            "checked where it opens too"
        );
        assert!(c.check_source(&plan.sources[0], &[]).is_ok());
        assert!(
            Confinement::no_files("taskmanager")
                .check_job("job.toml", text, &plan)
                .is_ok(),
            "none listed: any host"
        );
    }

    #[test]
    fn an_elasticsearch_ca_file_must_lie_under_a_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = |ca: &str| {
            format!(
                "name = \"es\"\n\n[source]\nconnector = \"nexmark\"\ntable = \"bid\"\n\n[sink]\nconnector = \"elasticsearch\"\nurl = \"https://es1:9200\"\nindex = \"bids\"\nkey = \"{{auction}}\"\nca_file = \"{ca}\"\n"
            )
        };
        let confined = confinement(dir.path(), &[]);
        let outside = text("/etc/ssl/es-ca.pem");
        let plan = plan_job("job.toml", &outside, &Overrides::default()).expect("plans");
        let errors = confined
            .check_job("job.toml", &outside, &plan)
            .unwrap_err()
            .0;
        let found: Vec<(&str, Option<usize>)> =
            errors.iter().map(|e| (e.field.as_str(), e.line)).collect();
        assert_eq!(found, [("sink.ca_file", Some(12))], "{errors:?}");
        assert!(errors[0].message.contains("--allow-path"), "{}", errors[0]);
        assert!(confined.check_sink(&plan.sinks[0]).is_err());
        let inside = text(&dir.path().join("ca.pem").display().to_string());
        let plan = plan_job("job.toml", &inside, &Overrides::default()).expect("plans");
        assert_eq!(confined.check_job("job.toml", &inside, &plan), Ok(()));
        assert!(confined.check_sink(&plan.sinks[0]).is_ok());
    }

    #[test]
    fn every_refusal_of_a_job_is_located_in_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = job(dir.path());
        let plan = plan_job("job.toml", &text, &Overrides::default()).expect("plans");
        let errors = confinement(dir.path(), &["db.internal"])
            .check_job("job.toml", &text, &plan)
            .unwrap_err()
            .0;
        let found: Vec<(&str, Option<usize>)> =
            errors.iter().map(|e| (e.field.as_str(), e.line)).collect();
        assert_eq!(
            found,
            [
                ("source.path", Some(5)),
                ("sinks.pg.url", Some(18)),
                ("sinks.x/../../y", Some(14)),
            ],
            "{errors:?}"
        );
        assert!(
            errors[0].message.contains("/etc/passwd") && errors[0].message.contains("--allow-path")
        );
        assert!(
            errors[1].message.contains("10.9.9.9")
                && errors[1].message.contains("--allow-postgres-host"),
            "the address connected to is checked, not the name beside it: {}",
            errors[1].message
        );
        assert!(errors[2].message.contains("file names"));
        // With the address allowed and the source inside, the job is taken but for the sink name.
        let inside = text.replace(
            "/etc/passwd",
            &dir.path().join("in.jsonl").display().to_string(),
        );
        let plan = plan_job("job.toml", &inside, &Overrides::default()).expect("plans");
        let errors = confinement(dir.path(), &["10.9.9.9"])
            .check_job("job.toml", &inside, &plan)
            .unwrap_err()
            .0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            Confinement::any("kappa local")
                .check_job("job.toml", &text, &plan)
                .is_err(),
            "a sink name that leaves its directory is refused everywhere"
        );
    }

    #[test]
    fn a_taskmanager_checks_the_files_it_is_assigned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = job(dir.path()).replace("/etc/passwd", &dir.path().display().to_string());
        let plan = plan_job("job.toml", &text, &Overrides::default()).expect("plans");
        let c = confinement(dir.path(), &[]);
        let inside = FilePosition::start(dir.path().join("a.jsonl"));
        assert!(
            c.check_source(&plan.sources[0], std::slice::from_ref(&inside))
                .is_ok()
        );
        let outside = FilePosition::start(PathBuf::from("/etc/passwd"));
        let e = c
            .check_source(&plan.sources[0], &[inside, outside])
            .unwrap_err();
        assert!(e.to_string().contains("/etc/passwd"), "{e}");
        let none = Confinement::no_files("taskmanager");
        let e = none.check_sink(&plan.sinks[0]).unwrap_err().to_string();
        assert!(
            e.contains("taskmanager") && e.contains("--allow-path"),
            "{e}"
        );
    }

    #[test]
    fn postgres_targets_are_what_the_client_connects_to() {
        assert_eq!(
            postgres_targets("postgres://u:p@db.example:5432/x").expect("url"),
            ["db.example"]
        );
        assert_eq!(
            postgres_targets("host=a,b hostaddr=10.0.0.1,10.0.0.2 user=u").expect("key-value"),
            ["10.0.0.1", "10.0.0.2"]
        );
        assert_eq!(
            postgres_targets("host=/run/postgresql user=u").expect("socket"),
            ["/run/postgresql"]
        );
        assert!(postgres_targets("postgres://[bad").is_none());
    }

    #[test]
    fn postgres_tls_files_are_under_the_roots_and_do_not_hide_the_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = confinement(dir.path(), &["10.9.9.9"]);
        let ca = dir.path().join("ca.pem").display().to_string();
        let ok = format!("host=db hostaddr=10.9.9.9 sslmode=verify-ca sslrootcert={ca}");
        assert!(c.check_postgres(&ok).is_ok());
        let e = c
            .check_postgres("host=db hostaddr=10.9.9.9 sslmode=require sslcert=/etc/kappa/tm.pem sslkey=/etc/kappa/tm-key.pem")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/kappa/tm.pem") && e.contains("--allow-path"),
            "{e}"
        );
        // TLS settings the client library does not know are no way around the host check.
        let e = c
            .check_postgres(&format!("postgres://u@evil.example/x?sslrootcert={ca}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("evil.example"), "{e}");
    }
}
