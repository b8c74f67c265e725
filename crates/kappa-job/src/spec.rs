//! The job.toml format as serde types: exactly what a user may write, nothing more.
//! Unknown keys and wrong types are rejected by the parser with their line and field path.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::ordered_map::OrderedMap;

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
    pub limits: Option<LimitsSpec>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceConnector {
    Kafka,
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkConnector {
    Kafka,
    File,
    Stdout,
    /// Upserts into a PostgreSQL table by id.
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    #[default]
    Json,
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
    #[serde(default)]
    pub format: Format,
    /// earliest | latest | timestamp:<epoch-ms>; `kappactl submit --start` overrides it.
    pub start: Option<Spanned<String>>,
    pub schema: Spanned<OrderedMap<Spanned<String>>>,
    #[serde(default)]
    pub on_error: OnError,
    pub dead_letter_topic: Option<Spanned<String>>,
    /// Extra librdkafka properties, e.g. `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Event time of a named source (the single `[source]` has a top-level `[event_time]`).
    pub event_time: Option<EventTimeSpec>,
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
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub format: Format,
    /// Record key template, e.g. `{item_id}-{window_end}`; the row id of the postgres sink.
    pub key: Option<Spanned<String>>,
    /// PostgreSQL connection string: `postgres://user:pw@host:5432/db` or `host=… user=…`.
    pub url: Option<Spanned<String>>,
    /// The PostgreSQL table to upsert into, optionally schema-qualified (`analytics.clicks`).
    pub table: Option<Spanned<String>>,
    /// Which Kafka partition a record goes to.
    pub partitioner: Option<Spanned<SinkPartitioner>>,
    /// What the sink guarantees across failures.
    pub delivery: Option<Spanned<Delivery>>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
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
