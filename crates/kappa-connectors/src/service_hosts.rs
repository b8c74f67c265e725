//! The servers a job connects to by url besides Kafka and PostgreSQL — Redis and
//! Elasticsearch sinks, the schema registries of Avro sources and sinks — as the hosts
//! `--allow-service-host` is checked against.

use kappa_job::plan::formats::RecordFormat;
use kappa_job::plan::{SinkKind, SinkPlan, SourcePlan};

/// The host of a url; None for one without (a Unix socket) or one that does not parse (its
/// connector refuses it when it opens).
fn host(url: &str) -> Option<String> {
    url::Url::parse(url.trim())
        .ok()?
        .host_str()
        .map(str::to_string)
}

/// The hosts of a format's schema registry.
fn of_format(format: &RecordFormat) -> Vec<String> {
    match format {
        RecordFormat::Avro(a) => a.registry.iter().filter_map(|r| host(&r.url)).collect(),
        _ => Vec::new(),
    }
}

/// The hosts a sink connects to by url, and the field of the job file that names each.
pub fn of_sink(sink: &SinkPlan) -> Vec<(String, &'static str)> {
    let urls: Vec<String> = match &sink.kind {
        SinkKind::Redis(r) => host(&r.url).into_iter().collect(),
        SinkKind::Elasticsearch(es) => es.nodes.iter().filter_map(|n| host(n)).collect(),
        _ => Vec::new(),
    };
    let registries = of_format(&sink.format);
    urls.into_iter()
        .map(|h| (h, "url"))
        .chain(registries.into_iter().map(|h| (h, "schema_registry")))
        .collect()
}

/// The hosts a source connects to by url (its schema registry).
pub fn of_source(source: &SourcePlan) -> Vec<String> {
    of_format(&source.format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_from_urls_and_sockets_have_none() {
        assert_eq!(
            host("redis://:pw@cache.internal:6379/0").as_deref(),
            Some("cache.internal")
        );
        assert_eq!(host("https://[::1]:9200").as_deref(), Some("[::1]"));
        assert_eq!(host("unix:///run/redis.sock"), None);
        assert_eq!(host("not a url"), None);
    }
}
