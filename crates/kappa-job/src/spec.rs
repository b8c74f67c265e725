//! The job.toml format as serde types: exactly what a user may write, nothing more.
//! Unknown keys and wrong types are rejected by the parser with their line and field path.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::ordered_map::OrderedMap;
use crate::secret::Secret;

/// A whole job.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: Spanned<String>,
    /// Number of parallel subtasks of every operator.
    pub parallelism: Option<Spanned<u32>>,
    /// Number of key groups; bounds the parallelism a job can ever be rescaled to.
    pub max_parallelism: Option<Spanned<u32>>,
    /// The single source; or several in `sources`.
    pub source: Option<SourceSpec>,
    /// Named sources, unioned into one stream in name order (same columns and types).
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSpec>,
    /// Event time of the single `[source]` (named sources have their own).
    pub event_time: Option<EventTimeSpec>,
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// The single window; or several in `windows`.
    pub window: Option<WindowSpec>,
    /// Windows applied in order, each aggregating the rows of the one before.
    #[serde(default)]
    pub windows: Vec<WindowSpec>,
    /// The single sink; or several in `sinks`.
    pub sink: Option<SinkSpec>,
    /// Named sinks: each receives the whole result, except those named by a window's
    /// `late_output`, which receive its late events.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkSpec>,
    pub restart: Option<RestartSpec>,
    pub checkpoints: Option<CheckpointSpec>,
    /// When the job counts as catching up with its Kafka sources (a replay from far behind).
    pub catch_up: Option<CatchUpSpec>,
    pub limits: Option<LimitsSpec>,
    /// Where keyed state lives (default `rocksdb`).
    #[serde(default)]
    pub state_backend: StateBackend,
    /// The job's logic in SQL (instead of `steps` and `window`): views and `INSERT INTO`
    /// a sink, in order.
    #[serde(default)]
    pub queries: Vec<QuerySpec>,
}

/// One `[[queries]]` table: SQL statements (`CREATE VIEW … AS …`, `INSERT INTO <sink> …`)
/// separated by `;`, and the settings of the windows they aggregate in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    pub sql: Spanned<String>,
    /// Names the state of its windows in savepoints (default: the view or sink it defines).
    pub name: Option<Spanned<String>>,
    /// How long after a window's end its late events still update it (default 0).
    #[serde(default)]
    pub allowed_lateness: HumanDuration,
    /// A sink that receives the events its windows drop as late.
    pub late_output: Option<Spanned<String>>,
    /// How long an aggregate without a window keeps a key whose latest event is this far
    /// behind the watermark (default: forever). An expired key is forgotten — a later event
    /// starts it from nothing — and its events older than this are dropped as late; the row
    /// the sink holds for it stays as it was.
    pub state_ttl: Option<Spanned<HumanDuration>>,
}

/// What the job may hold, so that one job cannot exhaust a taskmanager shared with others.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// The most window state the job may keep in the memory of one taskmanager, e.g.
    /// "2GiB" (default: the jobmanager's `--job-state-limit`). Beyond it the job fails with
    /// the reason instead of the process running out of memory.
    pub state_memory: Option<Spanned<HumanSize>>,
}

/// Where a job's keyed state lives (Flink's state backends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackend {
    /// Windows keep a cache in memory (`[limits] state_memory` and the taskmanager's
    /// `--state-memory`) and the rest in RocksDB on local disk: state may outgrow memory.
    #[default]
    Rocksdb,
    /// Everything in memory (faster for small state); a job beyond `[limits] state_memory`
    /// fails with the reason.
    Heap,
}

/// Periodic checkpoints of the job (they need a checkpoint directory on the cluster). Without
/// this table a job is checkpointed at the cluster's default interval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// `false` turns periodic checkpoints off (savepoints on request still work).
    pub enabled: Option<bool>,
    /// Time between the starts of two checkpoints (default: the cluster's).
    pub interval: Option<Spanned<HumanDuration>>,
    /// A checkpoint not complete after this long is aborted (default 10 minutes).
    pub timeout: Option<HumanDuration>,
    /// Least time between the end of one checkpoint and the start of the next (default 0).
    pub min_pause: Option<HumanDuration>,
    /// Completed checkpoints kept (default 3).
    pub retained: Option<Spanned<u32>>,
    /// Fail the job after this many failed checkpoints in a row (default: never).
    pub tolerable_failures: Option<u32>,
    /// Time between checkpoints while the job catches up with its sources (Flink's
    /// `interval-during-backlog`; default: ten times `interval`, at least a minute).
    pub interval_during_catch_up: Option<Spanned<HumanDuration>>,
}

/// A job whose Kafka lag, at the rate it reads, is worth more than `threshold` is catching
/// up (a replay from far behind): it checkpoints less often and its updating aggregates
/// hold updates back until a checkpoint, sources take larger batches, and the job detail
/// shows the time left. Below a tenth of the threshold it is live again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatchUpSpec {
    /// `false`: the job never counts as catching up.
    pub enabled: Option<bool>,
    /// Default 30s.
    pub threshold: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceConnector {
    Kafka,
    File,
    /// The built-in Nexmark generator (persons, auctions, bids).
    Nexmark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkConnector {
    Kafka,
    File,
    Stdout,
    /// Upserts into a PostgreSQL table by id.
    Postgres,
    /// Discards every row (counted in the metrics): Flink's name, for benchmarks.
    Blackhole,
    /// Indexes every row by id into Elasticsearch or OpenSearch (the `_bulk` API).
    Elasticsearch,
    /// Parquet files in object storage (S3 or a directory), committed per checkpoint.
    Parquet,
    /// Writes every row under its key to a Redis server (SET or HSET).
    Redis,
    /// Appends to an Apache Iceberg table (Parquet data files), one snapshot per checkpoint.
    Iceberg,
}

/// How the redis sink stores a row under its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RedisCommand {
    /// `SET key <the row as JSON>`.
    #[default]
    Set,
    /// `HSET key column value …`: a hash of the row's non-null columns.
    Hset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    #[default]
    Json,
    /// The record value as one Utf8 column (it must be UTF-8).
    String,
    /// The record value as one Binary column, bytes as they are.
    Raw,
    /// Avro binary: bare with `avro_schema`, in the Confluent wire format with
    /// `schema_registry`.
    Avro,
    /// Debezium's JSON change events (a source only): each record an insert, update or
    /// delete of a row of `schema`, read as a change stream by `[[queries]]`.
    DebeziumJson,
}

/// A Confluent-compatible schema registry (`format = "avro"` of a kafka connector).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistrySpec {
    /// The registry's base URL, `http://registry:8081`.
    pub url: Spanned<String>,
    /// The subject whose latest schema is the reader's (source) or under which the sink's
    /// schema is registered, e.g. `clicks-value`.
    pub subject: Spanned<String>,
    /// Basic authentication (with `password`).
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<Secret>>,
}

/// What a source does with a record that is not valid JSON or does not fit the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Fail the job, naming the topic, partition and offset of the record.
    #[default]
    Fail,
    /// Count the record in the metrics and go on.
    Skip,
    /// Write the raw record and the error to `dead_letter_topic`, count it, go on.
    DeadLetter,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub connector: SourceConnector,
    pub bootstrap_servers: Option<Spanned<String>>,
    pub topic: Option<Spanned<String>>,
    /// File source: a JSON-lines file or a directory of them.
    pub path: Option<Spanned<String>>,
    /// json (the default), string, raw or avro; not for nexmark, whose records are
    /// generated as columns.
    pub format: Option<Spanned<Format>>,
    /// format = "avro": the Avro schema of the records (JSON text); records are bare Avro.
    pub avro_schema: Option<Spanned<String>>,
    /// format = "avro": records in the Confluent wire format, schemas from this registry.
    pub schema_registry: Option<Spanned<SchemaRegistrySpec>>,
    /// earliest | latest | timestamp:<epoch-ms>; `kappactl submit --start` overrides it.
    pub start: Option<Spanned<String>>,
    /// The fields of a record (kafka, file); a nexmark source has its table's fixed schema.
    pub schema: Option<Spanned<OrderedMap<Spanned<String>>>>,
    #[serde(default)]
    pub on_error: OnError,
    pub dead_letter_topic: Option<Spanned<String>>,
    /// Kafka: record fields carried as columns after the decoded ones, by column name:
    /// partition, offset, timestamp or key.
    pub metadata: Option<Spanned<OrderedMap<Spanned<String>>>>,
    /// Kafka: the topic's archive (Parquet files under `s3://bucket/prefix`, `file:///dir` or
    /// a directory), read where the topic no longer holds the offsets wanted.
    pub history: Option<Spanned<String>>,
    /// TLS and SASL of the Kafka connection (kafka).
    pub security: Option<KafkaSecuritySpec>,
    /// librdkafka tuning and client settings, from an allow-list (kafka).
    pub properties: Option<Spanned<KafkaProperties>>,
    /// Event time of a named source (the single `[source]` has a top-level `[event_time]`).
    pub event_time: Option<EventTimeSpec>,
    /// Nexmark: which table it generates (person | auction | bid).
    pub table: Option<Spanned<String>>,
    /// Nexmark: the number of events (of all tables) of a bounded sequence; omitted: unbounded.
    pub events: Option<Spanned<i64>>,
    /// Nexmark: events per second of event time (their `date_time` spacing).
    pub rate: Option<Spanned<i64>>,
    /// Nexmark: wall-clock pacing of the whole source in events per second, or "off".
    pub max_rate: Option<Spanned<IntOrText>>,
    /// Nexmark: seeds every event's random numbers.
    pub seed: Option<Spanned<i64>>,
    /// Nexmark: event time of event 0, RFC 3339 text or epoch milliseconds.
    pub base_time: Option<Spanned<IntOrText>>,
    /// Nexmark generator knobs (the Nexmark suite's defaults when omitted).
    pub hot_auction_ratio: Option<Spanned<i64>>,
    pub hot_sellers_ratio: Option<Spanned<i64>>,
    pub hot_bidders_ratio: Option<Spanned<i64>>,
    pub num_in_flight_auctions: Option<Spanned<i64>>,
    pub num_active_people: Option<Spanned<i64>>,
    pub avg_person_bytes: Option<Spanned<i64>>,
    pub avg_auction_bytes: Option<Spanned<i64>>,
    pub avg_bid_bytes: Option<Spanned<i64>>,
}

/// A value written as an integer or as text (`max_rate = 1000` or `"off"`, `base_time` as
/// epoch milliseconds or RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntOrText {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for IntOrText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = IntOrText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(IntOrText::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(IntOrText::Int)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IntOrText::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSpec {
    pub column: Spanned<String>,
    #[serde(default)]
    pub max_out_of_orderness: HumanDuration,
    pub idle_timeout: Option<HumanDuration>,
}

/// One step applied to every record in order: exactly one of `filter` or `select`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub filter: Option<Spanned<String>>,
    pub select: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowKind {
    Tumbling,
    Sliding,
    Session,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub kind: Spanned<WindowKind>,
    /// Window length (tumbling, sliding).
    pub size: Option<Spanned<HumanDuration>>,
    /// Distance between window starts (sliding).
    pub slide: Option<Spanned<HumanDuration>>,
    /// Inactivity that closes a session (session).
    pub gap: Option<Spanned<HumanDuration>>,
    /// How long after a window fired late events still update it (each update is emitted again).
    #[serde(default)]
    pub allowed_lateness: HumanDuration,
    pub key_by: Spanned<Vec<Spanned<String>>>,
    pub aggregates: Spanned<OrderedMap<Spanned<String>>>,
    /// Stable id of the window's state in savepoints (default "window"): a changed job
    /// restores the state saved under the same uid.
    pub uid: Option<Spanned<String>>,
    /// The name of a sink in `[sinks]` that receives the events beyond allowed lateness,
    /// with the window they missed (`window_start`, `window_end`).
    pub late_output: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    pub connector: SinkConnector,
    pub bootstrap_servers: Option<Spanned<String>>,
    pub topic: Option<Spanned<String>>,
    /// File: the directory; parquet: `s3://bucket/prefix` or a directory; iceberg: the
    /// warehouse new tables are created under.
    pub path: Option<Spanned<String>>,
    /// Parquet: bytes of encoded data after which a row group ends (default 128MiB).
    pub row_group_size: Option<Spanned<HumanSize>>,
    /// Parquet: bytes after which a file is closed before the next checkpoint (default 512MiB).
    pub file_size: Option<Spanned<HumanSize>>,
    /// Parquet: the directory of a row under `path`, literal text and `{column}` or
    /// `{column:strftime}` (a timestamp or epoch-ms column), e.g. `dt={window_start:%Y-%m-%d}`.
    pub partition_by: Option<Spanned<String>>,
    /// Parquet: zstd (the default), snappy or none.
    pub compression: Option<Spanned<ParquetCompression>>,
    /// json (the default), string, raw or avro (kafka).
    pub format: Option<Spanned<Format>>,
    /// format = "avro": the Avro schema to write (JSON text); derived from the columns when
    /// neither this nor `schema_registry` is given.
    pub avro_schema: Option<Spanned<String>>,
    /// format = "avro": register the schema under a subject and write the Confluent framing.
    pub schema_registry: Option<Spanned<SchemaRegistrySpec>>,
    /// Record key template, e.g. `{item_id}-{window_end}`; the row id of the postgres sink,
    /// the document `_id` of the elasticsearch sink.
    pub key: Option<Spanned<String>>,
    /// PostgreSQL connection string: `postgres://user:pw@host:5432/db` or `host=… user=…`;
    /// Redis: `redis://[user@]host:6379/0` (`rediss://` with TLS); Elasticsearch: the nodes,
    /// `https://es1:9200,https://es2:9200`; Iceberg: the SQL catalog,
    /// `sqlite:///var/lib/kappa/catalog.db` or `postgres://user@host:5432/db`.
    pub url: Option<Spanned<String>>,
    /// PostgreSQL, Redis: the password, when not in `url` (e.g. `${env:PGPASSWORD}`);
    /// Elasticsearch: the password of `username`.
    pub password: Option<Spanned<Secret>>,
    /// Redis: how a row is stored under its key.
    pub command: Option<Spanned<RedisCommand>>,
    /// Redis: how long a key lives after its last write (none: until overwritten).
    pub ttl: Option<Spanned<HumanDuration>>,
    /// The PostgreSQL table to upsert into, optionally schema-qualified (`analytics.clicks`);
    /// Iceberg: the table to append to, `namespace.table`.
    pub table: Option<Spanned<String>>,
    /// Iceberg: the catalog's name (the `catalog_name` of its rows; default `kappa`).
    pub catalog: Option<Spanned<String>>,
    /// Which Kafka partition a record goes to.
    pub partitioner: Option<Spanned<SinkPartitioner>>,
    /// What the sink guarantees across failures.
    pub delivery: Option<Spanned<Delivery>>,
    /// TLS and SASL of the Kafka connection (kafka).
    pub security: Option<KafkaSecuritySpec>,
    /// librdkafka tuning and client settings, from an allow-list (kafka).
    pub properties: Option<Spanned<KafkaProperties>>,
    /// Elasticsearch: the index name, a template: `hourly-{window_start:%Y-%m}`.
    pub index: Option<Spanned<String>>,
    /// Elasticsearch: the user name of basic authentication (with `password`).
    pub username: Option<Spanned<String>>,
    /// Elasticsearch: an API key as Elasticsearch encodes it (instead of a user name).
    pub api_key: Option<Spanned<Secret>>,
    /// Elasticsearch: the CA certificates (PEM) the nodes' certificates are checked against.
    pub ca_file: Option<Spanned<String>>,
    /// Elasticsearch: the name of an index template created at open when missing.
    pub index_template: Option<Spanned<String>>,
    /// Elasticsearch: the `mappings` of that template, a JSON object as text or a table.
    pub mapping: Option<Spanned<toml::Value>>,
    /// Elasticsearch: buffered bytes that make the sink send a bulk request (default 5MiB).
    pub bulk_size: Option<Spanned<HumanSize>>,
}

/// How the parquet sink compresses its column chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ParquetCompression {
    #[default]
    Zstd,
    Snappy,
    None,
}

/// librdkafka settings as written: key = value in document order, each value located.
pub type KafkaProperties = OrderedMap<Spanned<PropertyValue>>;

/// A librdkafka setting's value: a string, or a number or boolean written without quotes
/// (`"linger.ms" = 20`), kept as the text librdkafka takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyValue(pub String);

impl<'de> Deserialize<'de> for PropertyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PropertyValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(PropertyValue(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(PropertyValue(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(PropertyValue(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(PropertyValue(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(PropertyValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// How a Kafka client connects, as Kafka names it (`security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum SecurityProtocol {
    /// Plain TCP, no authentication.
    #[default]
    #[serde(rename = "PLAINTEXT", alias = "plaintext")]
    Plaintext,
    /// TLS; the client authenticates with a certificate if it has one.
    #[serde(rename = "SSL", alias = "ssl")]
    Ssl,
    /// SASL authentication over plain TCP.
    #[serde(rename = "SASL_PLAINTEXT", alias = "sasl_plaintext")]
    SaslPlaintext,
    /// SASL authentication over TLS.
    #[serde(rename = "SASL_SSL", alias = "sasl_ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    /// The value of librdkafka's `security.protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// A SASL mechanism, as Kafka names it (`sasl.mechanism`). GSSAPI (Kerberos) is not built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// User name and password, sent as they are (protect them with `SASL_SSL`).
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
    /// Salted challenge-response: the password never crosses the network.
    #[serde(rename = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
    /// A bearer token from an OIDC token endpoint (client credentials grant).
    #[serde(rename = "OAUTHBEARER", alias = "oauthbearer")]
    OAuthBearer,
}

impl SaslMechanism {
    /// The value of librdkafka's `sasl.mechanism`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// `security`: TLS and SASL of a Kafka connector's connection. Files are read by the
/// jobmanager and every taskmanager, so they must be there on each, at an absolute path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecuritySpec {
    /// PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL.
    pub protocol: Spanned<SecurityProtocol>,
    /// With a SASL protocol: PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 | OAUTHBEARER.
    pub sasl_mechanism: Option<Spanned<SaslMechanism>>,
    /// PLAIN and SCRAM: the user name and password.
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<Secret>>,
    /// TLS: the CA certificates (PEM) the broker's certificate is checked against; default:
    /// the system's.
    pub ca_location: Option<Spanned<String>>,
    /// TLS: the client's certificate (PEM) and its private key, for brokers that require one.
    pub certificate_location: Option<Spanned<String>>,
    pub key_location: Option<Spanned<String>>,
    /// TLS: the password of an encrypted private key.
    pub key_password: Option<Spanned<Secret>>,
    /// TLS: check that the broker's certificate names the host connected to (default true).
    pub endpoint_identification: Option<Spanned<bool>>,
    /// OAUTHBEARER: the OIDC token endpoint and the client credentials sent to it.
    pub oauth_token_endpoint_url: Option<Spanned<String>>,
    pub oauth_client_id: Option<Spanned<String>>,
    pub oauth_client_secret: Option<Spanned<Secret>>,
    /// OAUTHBEARER: the scope asked for (optional).
    pub oauth_scope: Option<Spanned<String>>,
}

/// How a Kafka sink picks partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SinkPartitioner {
    /// By the hash of the record key (librdkafka's default), so a key always lands in one partition.
    #[default]
    Key,
    /// Sink subtask i writes to partition i mod partitions (Flink's fixed partitioner): one
    /// writer per partition while there are at least as many partitions as subtasks.
    Fixed,
}

/// What a sink guarantees when the job fails and restarts from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Each result is visible once: written in a transaction (Kafka) or a part file (files)
    /// per checkpoint, committed when the checkpoint completes.
    ExactlyOnce,
    /// Everything written before a checkpoint barrier is durable when the checkpoint
    /// completes; after a restore the results since are written again.
    #[default]
    AtLeastOnce,
    /// No flush at checkpoints: results still buffered at a crash may be lost.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartStrategyKind {
    None,
    FixedDelay,
    ExponentialBackoff,
}

/// How a failed job is restarted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartSpec {
    pub strategy: RestartStrategyKind,
    /// fixed-delay: the delay; exponential-backoff: the first delay.
    pub delay: Option<HumanDuration>,
    /// exponential-backoff: the largest delay.
    pub max_delay: Option<HumanDuration>,
    /// Give up after this many restarts in a row (unset: never give up).
    pub max_attempts: Option<u32>,
    /// An attempt that ran this long without failing starts the delays and the count of
    /// restarts in a row over (Flink's `reset-backoff-threshold`; default 1h).
    pub reset_after: Option<HumanDuration>,
}

/// A size in bytes written as text: "512MiB", "4GiB", "64KiB", "1000000".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanSize(pub u64);

impl<'de> Deserialize<'de> for HumanSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| HumanSize(b.as_u64()))
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid size `{text}`: {e} (write e.g. \"512MiB\", \"4GiB\")"
                ))
            })
    }
}

/// A duration written as text: "10s", "1h", "500ms", "1h 30m".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration `{text}`: {e} (write e.g. \"500ms\", \"10s\", \"1h\")"
                ))
            })
    }
}
