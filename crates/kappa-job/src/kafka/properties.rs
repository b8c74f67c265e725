//! What a Kafka connector's `properties` may set: librdkafka's tuning and client settings, by
//! name. Everything else is refused with the reason: settings that load code, run commands or
//! touch files on the jobmanager and every taskmanager, TLS and SASL (the `security` table),
//! the settings Kappa's guarantees rest on, and those that would have no effect.

/// Every librdkafka setting `properties` may hold.
pub const ALLOWED: &[&str] = &[
    // The client and its connections.
    "client.id",
    "client.rack",
    "client.dns.lookup",
    "broker.address.family",
    "broker.address.ttl",
    "connections.max.idle.ms",
    "socket.timeout.ms",
    "socket.connection.setup.timeout.ms",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "socket.keepalive.enable",
    "socket.nagle.disable",
    "socket.max.fails",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "log.connection.close",
    "enable.metrics.push",
    // Protocol and metadata.
    "api.version.request",
    "api.version.request.timeout.ms",
    "api.version.fallback.ms",
    "broker.version.fallback",
    "allow.auto.create.topics",
    "metadata.max.age.ms",
    "metadata.recovery.strategy",
    "metadata.recovery.rebootstrap.trigger.ms",
    "topic.metadata.refresh.interval.ms",
    "topic.metadata.refresh.fast.interval.ms",
    "topic.metadata.refresh.sparse",
    "topic.metadata.propagation.max.ms",
    // Sizes of requests and records.
    "message.max.bytes",
    "message.copy.max.bytes",
    "receive.message.max.bytes",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    // Consumers (sources).
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.error.backoff.ms",
    "fetch.queue.backoff.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "check.crcs",
    // Producers (sinks, dead-letter topics).
    "linger.ms",
    "queue.buffering.max.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "queue.buffering.backpressure.threshold",
    "batch.num.messages",
    "batch.size",
    "compression.type",
    "compression.codec",
    "compression.level",
    "message.send.max.retries",
    "retries",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
];

/// Why a setting may not be in `properties`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Loads code, runs a command or reads or writes files on the cluster's machines.
    #[error(
        "{0} on the jobmanager and every taskmanager: no job may set it (only tuning and client settings are allowed)"
    )]
    Dangerous(&'static str),
    /// TLS and SASL: the `security` table sets them.
    #[error(
        "TLS and SASL are set in the connector's `security` table (protocol, sasl_mechanism, username, password, ca_location, certificate_location, key_location, key_password, endpoint_identification, oauth_*), not in `properties`"
    )]
    Security,
    /// Kappa sets it; another value would break what Kappa relies on.
    #[error("set by Kappa: {0}")]
    SetByKappa(&'static str),
    /// A consumer-group setting: Kappa assigns partitions itself.
    #[error(
        "Kappa assigns partitions to its readers itself, without a consumer group: this setting would have no effect"
    )]
    ConsumerGroup,
    /// Logging of librdkafka, which goes to the log every job of the process shares.
    #[error(
        "librdkafka logs into the log of the jobmanager and taskmanagers every job shares: set the level there (KAPPA_LOG), not per job"
    )]
    Logging,
    /// Not a setting on the allow-list.
    #[error(
        "not one of the librdkafka settings `properties` may hold: client, connection, socket, backoff, metadata, fetch, batching, buffering, compression and timeout settings (the README lists them)"
    )]
    NotAllowed,
}

/// Whether `properties` may set `key`; the reason when not.
pub fn check(key: &str) -> Result<(), Refusal> {
    if ALLOWED.contains(&key) {
        return Ok(());
    }
    Err(refusal(key))
}

fn refusal(key: &str) -> Refusal {
    use Refusal::*;
    match key {
        "plugin.library.paths" | "interceptors" => {
            Dangerous("it loads shared libraries into the process")
        }
        "ssl.engine.location" | "ssl.engine.id" | "ssl.providers" | "ssl_engine_callback_data" => {
            Dangerous("it loads an OpenSSL engine or provider into the process")
        }
        "sasl.kerberos.kinit.cmd" => Dangerous("it is a command the client runs"),
        "sasl.kerberos.keytab" | "offset.store.path" | "offset.store.method" => {
            Dangerous("it makes the client read or write files")
        }
        k if k.starts_with("sasl.oauthbearer.assertion.") => {
            Dangerous("it makes the client read key files")
        }
        "bootstrap.servers" | "metadata.broker.list" => {
            SetByKappa("write the brokers in the connector's `bootstrap_servers`")
        }
        "group.id" | "group.instance.id" => SetByKappa(
            "Kappa names its clients' groups itself (per job, and per writer for exactly-once commit markers)",
        ),
        "enable.auto.commit"
        | "auto.commit.enable"
        | "auto.commit.interval.ms"
        | "enable.auto.offset.store"
        | "auto.offset.reset" => SetByKappa(
            "Kappa reads from the offsets of `start` and of its checkpoints, and never commits offsets to Kafka",
        ),
        "enable.partition.eof" => SetByKappa("its readers do not stop at the end of a partition"),
        "isolation.level" => SetByKappa(
            "sources read committed records only (read_committed), so exactly-once output upstream stays exactly-once",
        ),
        "enable.idempotence" | "transactional.id" | "enable.gapless.guarantee" => SetByKappa(
            "a sink's `delivery` chooses (exactly-once writes in transactions under ids Kappa derives)",
        ),
        "acks" | "request.required.acks" => SetByKappa(
            "sinks wait for every in-sync replica (acks=all): at-least-once and exactly-once delivery rest on it",
        ),
        "statistics.interval.ms" => {
            SetByKappa("Kappa reads the consumer lag from librdkafka's statistics")
        }
        "partitioner" => SetByKappa("a sink's `partitioner` field chooses partitions"),
        "session.timeout.ms"
        | "heartbeat.interval.ms"
        | "max.poll.interval.ms"
        | "partition.assignment.strategy"
        | "group.protocol"
        | "group.protocol.type"
        | "group.remote.assignor"
        | "coordinator.query.interval.ms" => ConsumerGroup,
        "debug" | "log_level" | "log.queue" | "log.thread.name" => Logging,
        k if k == "security.protocol"
            || k.starts_with("sasl.")
            || k.starts_with("ssl.")
            || k.starts_with("ssl_")
            || k.starts_with("https.")
            || k == "enable.ssl.certificate.verification"
            || k == "enable.sasl.oauthbearer.unsecure.jwt" =>
        {
            Security
        }
        _ => NotAllowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuning_settings_pass_and_the_rest_is_refused_with_its_reason() {
        for key in [
            "client.id",
            "linger.ms",
            "fetch.max.bytes",
            "compression.type",
        ] {
            assert_eq!(check(key), Ok(()), "{key}");
        }
        let cases = [
            ("plugin.library.paths", "loads shared libraries"),
            ("ssl.engine.location", "OpenSSL engine"),
            ("sasl.kerberos.kinit.cmd", "a command the client runs"),
            (
                "sasl.oauthbearer.assertion.private.key.file",
                "read key files",
            ),
            ("security.protocol", "`security` table"),
            ("sasl.password", "`security` table"),
            ("ssl.ca.location", "`security` table"),
            ("enable.ssl.certificate.verification", "`security` table"),
            ("enable.idempotence", "`delivery`"),
            ("acks", "acks=all"),
            ("isolation.level", "read_committed"),
            ("group.id", "set by Kappa"),
            ("bootstrap.servers", "`bootstrap_servers`"),
            ("session.timeout.ms", "without a consumer group"),
            ("debug", "KAPPA_LOG"),
            ("test.mock.num.brokers", "not one of"),
            // Names are exact: librdkafka's own spelling only.
            ("Client.Id", "not one of"),
            (" linger.ms", "not one of"),
        ];
        for (key, why) in cases {
            let refused = check(key).expect_err(key).to_string();
            assert!(refused.contains(why), "{key}: {refused}");
        }
    }

    #[test]
    fn no_allowed_setting_is_also_a_refused_one() {
        for key in ALLOWED {
            assert_eq!(
                refusal(key),
                Refusal::NotAllowed,
                "{key} is allowed and has a reason to be refused"
            );
        }
    }
}
