//! Planning the redis sink: the server's url (`redis://`, `rediss://` with TLS, or
//! `unix://`), the password given once, the key every row is written under (required), how a
//! row is stored (`set`: its JSON; `hset`: a hash of its columns) and an optional TTL.

use std::time::Duration;

use super::{Planner, SinkKind, span};
use crate::secret::Secret;
use crate::spec::{RedisCommand, SinkSpec};

/// A redis sink as planned.
#[derive(Debug, Clone)]
pub struct RedisSinkPlan {
    /// The server's url; its password, if any, is shown only redacted.
    pub url: String,
    /// The password, when not in `url` (a reference, usually).
    pub password: Option<Secret>,
    pub command: RedisCommand,
    /// How long a key lives after its last write.
    pub ttl: Option<Duration>,
}

/// The schemes a redis url may have.
const SCHEMES: [&str; 4] = ["redis://", "rediss://", "unix://", "redis+unix://"];

impl Planner<'_> {
    /// The kind of a redis sink, its settings checked.
    pub(super) fn redis_sink(&mut self, s: &SinkSpec, prefix: &str) -> SinkKind {
        let url = self.required(
            &s.url,
            &format!("{prefix}.url"),
            "the redis connector needs the server, e.g. \"redis://127.0.0.1:6379/0\"",
        );
        if !url.is_empty() && !SCHEMES.iter().any(|p| url.starts_with(p)) {
            self.err(
                s.url.as_ref().and_then(span),
                &format!("{prefix}.url"),
                format!(
                    "a redis url starts with {}: e.g. \"redis://127.0.0.1:6379/0\"",
                    SCHEMES.join(", ")
                ),
            );
        }
        self.required(
            &s.key,
            &format!("{prefix}.key"),
            "the redis sink writes each row under its key: set `key`, e.g. \"clicks:{item_id}:{window_end}\"",
        );
        let ttl = s.ttl.as_ref().map(|t| t.get_ref().0);
        if let Some(t) = &s.ttl
            && t.get_ref().0 < Duration::from_millis(1)
        {
            self.err(
                span(t),
                &format!("{prefix}.ttl"),
                "must be at least 1ms (leave it out for keys that live until overwritten)",
            );
        }
        let password = self.url_password(s, prefix);
        SinkKind::Redis(RedisSinkPlan {
            url,
            password,
            command: s.command.as_ref().map(|c| *c.get_ref()).unwrap_or_default(),
            ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::test_jobs::{REFERENCE, errors, line_of, located, with_sink};
    use crate::plan::*;
    use crate::spec::RedisCommand;

    /// The reference job with a redis [sink] of `settings`.
    fn job(settings: &str) -> String {
        with_sink(&format!("connector = \"redis\"\n{settings}"))
    }

    #[test]
    fn a_redis_sink_plans_with_its_key_command_and_ttl() {
        let text = job(
            "url = \"redis://:s3cret@127.0.0.1:6379/0\"\nkey = \"clicks:{item_id}:{window_end}\"\ncommand = \"hset\"\nttl = \"7d\"",
        );
        let plan = plan_job("job.toml", &text, &Overrides::default()).unwrap();
        let SinkKind::Redis(r) = &plan.sinks[0].kind else {
            panic!("{:?}", plan.sinks[0].kind);
        };
        assert_eq!(r.command, RedisCommand::Hset);
        assert_eq!(r.ttl, Some(std::time::Duration::from_secs(7 * 86_400)));
        assert_eq!(plan.sinks[0].delivery, Delivery::AtLeastOnce);
        let graph = plan.graph().to_string();
        assert!(
            graph.contains("Sink: redis HSET by key `clicks:{item_id}:{window_end}`"),
            "{graph}"
        );
        assert!(!graph.contains("s3cret"), "{graph}");
    }

    #[test]
    fn a_redis_sink_refuses_what_it_cannot_do_where_it_is_written() {
        let errs = errors(&job(""));
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["sink.url", "sink.key"], "{errs:?}");
        let text = job(
            "url = \"http://127.0.0.1:6379\"\nkey = \"{item_id}\"\nttl = \"0s\"\ndelivery = \"exactly-once\"\npartitioner = \"fixed\"",
        );
        let errs = errors(&text);
        let at = |start: &str| line_of(&text, start);
        assert_eq!(
            located(&errs),
            [
                ("sink.partitioner", at("partitioner")),
                ("sink.url", at("url")),
                ("sink.ttl", at("ttl")),
                ("sink.delivery", at("delivery")),
            ],
            "{errs:?}"
        );
        assert!(errs[1].message.contains("redis://"), "{errs:?}");
        assert!(errs[3].message.contains("idempotent by key"), "{errs:?}");
        // Another connector refuses the redis settings.
        let kafka = format!("{REFERENCE}command = \"set\"\n");
        let errs = errors(&kafka);
        assert_eq!(errs[0].field, "sink.command", "{errs:?}");
    }
}
