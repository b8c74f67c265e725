//! Validation and planning: a parsed [`JobSpec`] becomes a [`JobPlan`] — typed schemas, compiled
//! SQL expressions, the window and sink — or every located error found on the way.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use toml::Spanned;

use crate::error::{Locator, SpecError, SpecErrors};
use crate::kafka::KafkaConnection;
use crate::keygroup::DEFAULT_MAX_PARALLELISM;
use crate::parse::parse_job;
use crate::secret::Secret;
use crate::spec::{
    CatchUpSpec, Delivery, JobSpec, OnError, RestartSpec, RestartStrategyKind, SinkConnector,
    SinkPartitioner, SinkSpec, SourceConnector, SourceSpec, WindowKind, WindowSpec,
};
use crate::sql::{self, AggregateCall, AggregateFunction, CompiledExpr};
use crate::start::StartPosition;
use crate::template::KeyTemplate;
use formats::RecordFormat;

mod dataflow;
mod elasticsearch;
pub mod formats;
pub mod iceberg;
mod join;
mod kafka;
mod kafka_source;
pub mod nexmark;
pub mod parquet;
mod queries;
mod rank;
pub mod redis;
mod secrets;
mod topology;

pub use self::join::{JoinKind, JoinPlan};
pub use self::kafka_source::KafkaMetadata;
pub use self::rank::{RankKind, RankOrder, RankPlan};
use self::topology::pipeline;
pub use self::topology::{Output, PlanEdge, StagePlan, late_schema};

/// The longest duration a job may give (window sizes, gaps, lateness, out-of-orderness): 100
/// years, so event-time arithmetic on epoch milliseconds cannot overflow.
pub const MAX_DURATION_MS: i64 = 100 * 365 * 24 * 3_600_000;

/// The most windows a sliding window puts one record into (size / slide).
pub const MAX_WINDOWS_PER_RECORD: i64 = 1_000;

/// The largest job file planned; a larger one is refused before it is parsed.
pub const MAX_JOB_FILE_BYTES: usize = 1 << 20;

/// The most `[[steps]]` a job may have.
pub const MAX_STEPS: usize = 1_000;

/// The most sources, windows or sinks a job may have.
pub const MAX_TABLES: usize = 100;

/// A duration in milliseconds, saturating instead of wrapping.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The largest `max_parallelism` (number of key groups) a job may ask for.
pub const MAX_KEY_GROUPS: u32 = 32768;

/// Settings given at submission that override the job file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub start: Option<StartPosition>,
    pub parallelism: Option<u32>,
    /// Plan a file whose literal secrets were redacted (`***`), to list a job that will not
    /// run; otherwise a redacted secret is an error.
    pub allow_redacted_secrets: bool,
}

/// A validated job, ready to deploy.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub name: String,
    /// The start position given at submission, overriding every source's own.
    pub start_override: Option<StartPosition>,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// The sources (in name order).
    pub sources: Vec<SourcePlan>,
    /// Stateless steps.
    pub stages: Vec<StagePlan>,
    /// Keyed event-time windows.
    pub windows: Vec<WindowPlan>,
    /// Joins of two streams.
    pub joins: Vec<JoinPlan>,
    /// Keyed rankings (Top-N per window, deduplication) of SQL queries.
    pub rankings: Vec<RankPlan>,
    pub sinks: Vec<SinkPlan>,
    /// Which operator output feeds which operator (see [`JobPlan::inputs`]).
    pub edges: Vec<PlanEdge>,
    /// The job's own restart strategy; None: the cluster's default.
    pub restart: Option<RestartPlan>,
    /// Periodic checkpoints as the job file asks for them (the cluster resolves defaults).
    pub checkpoints: Checkpointing,
    /// `[limits] state_memory`: the most window state, in bytes, the job may hold in one
    /// taskmanager's memory; None: the cluster's default.
    pub state_limit: Option<u64>,
    /// Where its keyed state lives.
    pub state_backend: crate::spec::StateBackend,
    /// The job catches up while its Kafka lag is worth more than this much reading; None:
    /// never (see [`crate::spec::CatchUpSpec`]).
    pub catch_up: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct SourcePlan {
    /// The name in the job file (`source` for the single `[source]` table).
    pub name: String,
    /// Stable id of its offsets in checkpoints and savepoints.
    pub uid: String,
    pub kind: SourceKind,
    pub format: RecordFormat,
    /// Schema of decoded records.
    pub schema: SchemaRef,
    pub start: StartPosition,
    pub on_error: OnError,
    pub event_time: Option<EventTimePlan>,
}

impl SourcePlan {
    /// The columns its format decodes: the schema without the Kafka metadata columns.
    pub fn payload_schema(&self) -> SchemaRef {
        let metadata = match &self.kind {
            SourceKind::Kafka(k) => k.metadata.len(),
            SourceKind::File { .. } | SourceKind::Nexmark(_) => 0,
        };
        match metadata {
            0 => Arc::clone(&self.schema),
            n => {
                let fields = &self.schema.fields()[..self.schema.fields().len() - n];
                Arc::new(Schema::new(fields.to_vec()))
            }
        }
    }

    /// Whether its records are changes (inserts and deletes of rows): they then carry the
    /// change column after [`SourcePlan::schema`]'s columns.
    pub fn changelog(&self) -> bool {
        self.format == RecordFormat::DebeziumJson
    }

    /// The event-time column's index among the decoded columns, if it is one of them.
    pub fn payload_event_time(&self) -> Option<usize> {
        let index = self.event_time.as_ref()?.source_index;
        (index < self.payload_schema().fields().len()).then_some(index)
    }
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    Kafka(KafkaSourcePlan),
    /// JSON-lines files: one file, or every regular file of a directory.
    File {
        path: PathBuf,
    },
    /// The built-in Nexmark generator.
    Nexmark(nexmark::NexmarkSourcePlan),
}

#[derive(Debug, Clone)]
pub struct KafkaSourcePlan {
    /// Brokers, TLS and SASL, allow-listed settings: of every client of the source.
    pub connection: KafkaConnection,
    pub topic: String,
    pub dead_letter_topic: Option<String>,
    /// The record fields carried as the last columns of the source's schema, in order.
    pub metadata: Vec<KafkaMetadata>,
    /// The topic's archive, read where the topic no longer holds the offsets wanted.
    pub history: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EventTimePlan {
    pub column: String,
    /// Index of the column in the source schema.
    pub source_index: usize,
    pub max_out_of_orderness: Duration,
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub enum StepPlan {
    Filter(CompiledExpr),
    Select {
        exprs: Vec<CompiledExpr>,
        schema: SchemaRef,
    },
}

/// Which windows an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAssigner {
    Tumbling {
        size_ms: i64,
    },
    Sliding {
        size_ms: i64,
        slide_ms: i64,
    },
    Session {
        gap_ms: i64,
    },
    /// An updating aggregate: one group per key over all time, emitted (an upsert by key)
    /// whenever a batch changes it. Its window_start is 0 and its window_end the latest event
    /// time of the key. With `ttl_ms > 0` a key whose latest event is `ttl_ms` behind the
    /// watermark is forgotten, and its late events are dropped; 0 keeps every key.
    Global {
        ttl_ms: i64,
    },
    /// Windows the rows carry: rows of windowed results, aggregated per their own window
    /// (`start` and `end` are the indexes of their window_start and window_end).
    Carried {
        start: usize,
        end: usize,
    },
}

#[derive(Debug, Clone)]
pub struct WindowPlan {
    /// Stable id of the window's state in savepoints.
    pub uid: String,
    pub assigner: WindowAssigner,
    pub allowed_lateness_ms: i64,
    pub keys: Vec<CompiledExpr>,
    /// Index of the event-time column in [`JobPlan::steps_schema`].
    pub time_index: usize,
    pub aggregates: Vec<(String, AggregateCall)>,
    /// Schema of the rows it emits (keys, window_start, window_end, aggregates).
    pub output_schema: SchemaRef,
    /// Index in [`JobPlan::sinks`] of the sink that receives the events beyond allowed lateness.
    pub late_output: Option<usize>,
    /// An updating aggregate of a change stream: the index of the change column in its
    /// input, whose deleted rows are retracted. Its last aggregate then counts the rows of
    /// each key (a key without rows is deleted), and its output ends with the change column.
    pub retract: Option<usize>,
}

impl WindowPlan {
    /// Its aggregate functions as text, in order: the layout of its saved accumulators.
    pub fn aggregate_names(&self) -> Vec<String> {
        self.aggregates
            .iter()
            .map(|(n, c)| format!("{n}={}", c.function.name()))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct SinkPlan {
    /// The name in the job file (`sink` for the single `[sink]` table).
    pub name: String,
    /// Stable id of its uncommitted output in checkpoints and savepoints.
    pub uid: String,
    /// Schema of the records it receives.
    pub schema: SchemaRef,
    pub kind: SinkKind,
    pub format: RecordFormat,
    pub key: Option<KeyTemplate>,
    pub delivery: Delivery,
    /// Its records are changes: the change column follows `schema`'s columns, and a deleted
    /// row deletes its key.
    pub changes: bool,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Kafka {
        connection: KafkaConnection,
        topic: String,
        partitioner: SinkPartitioner,
    },
    File {
        path: PathBuf,
    },
    Stdout,
    /// Discards every row; the sink operator still counts them.
    Blackhole,
    /// Writes every row under its rendered key to a Redis server.
    Redis(redis::RedisSinkPlan),
    /// Parquet files in object storage, per checkpoint.
    Parquet(parquet::ParquetSinkPlan),
    /// Appends to an Iceberg table, a snapshot per checkpoint.
    Iceberg(iceberg::IcebergSinkPlan),
    /// Upserts every row by its id (the rendered key) into an existing table.
    Postgres {
        /// Connection string; it may hold a password: show it through [`redact_url`] only.
        url: String,
        /// The password, when not in `url` (a reference, usually).
        password: Option<Secret>,
        /// Table name as written, optionally schema-qualified.
        table: String,
    },
    /// Indexes every row under its id (the rendered key) with the `_bulk` API.
    Elasticsearch(Box<crate::elasticsearch::ElasticsearchTarget>),
}

/// The column the postgres sink writes a row's key to; the table's primary key.
pub const POSTGRES_ID: &str = "id";

/// The column a change stream's records carry last (see [`change_field`]): true where the
/// row is deleted (retracted), false where it is inserted or upserted. Never a user's column.
pub const CHANGE_COLUMN: &str = "_kappa_delete";

/// The change column's field.
pub fn change_field() -> Field {
    Field::new(CHANGE_COLUMN, DataType::Boolean, false)
}

/// `schema` with the change column after its columns: the records of a change stream.
pub fn with_change_column(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<FieldRef> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(change_field()));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A connection string with its password replaced by `***`, for messages and logs: both the
/// URL form (`postgres://user:pw@host/db`, `?password=pw`) and the key-value form
/// (`host=h password=pw`, `password='p w'`).
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    for r in url_password_ranges(url).into_iter().rev() {
        out.replace_range(r, crate::secret::REDACTED);
    }
    out
}

/// Where the passwords of a connection string are, in order: the URL form's user info
/// (`postgres://user:pw@host/db`) and every `password=…` (a query string or the key-value
/// form, any case, spaces around `=`, quoted or not).
pub fn url_password_ranges(url: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    if let Some(scheme_end) = url.find("://") {
        let rest = scheme_end + 3;
        let end = url[rest..].find(['?', '#']).map_or(url.len(), |i| rest + i);
        if let Some(at) = url[rest..end].rfind('@') {
            let userinfo = &url[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.push(rest + colon + 1..rest + at);
            }
        }
    }
    let lower = url.to_ascii_lowercase();
    let bytes = url.as_bytes();
    let mut from = 0;
    while let Some(i) = lower[from..].find("password") {
        let mut j = from + i + "password".len();
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        if j >= bytes.len() || bytes[j] != b'=' {
            from = j;
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        let start = j;
        if bytes.get(j) == Some(&b'\'') {
            j += 1;
            while j < bytes.len() && bytes[j] != b'\'' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            j = (j + 1).min(bytes.len());
        } else {
            while j < bytes.len() && !matches!(bytes[j], b' ' | b'&' | b'#') {
                j += 1;
            }
        }
        while !url.is_char_boundary(j) {
            j += 1;
        }
        // A `password=` inside the user info is part of the password found there.
        if out
            .last()
            .is_none_or(|last: &Range<usize>| last.end <= start)
        {
            out.push(start..j);
        }
        from = j.max(start + 1).min(bytes.len());
    }
    out
}

/// How often and how patiently a job is checkpointed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPlan {
    pub interval: Duration,
    /// The interval while the job catches up with its sources.
    pub interval_during_catch_up: Duration,
    pub timeout: Duration,
    pub min_pause: Duration,
    pub retained: u32,
    pub tolerable_failures: Option<u32>,
}

/// Whether a job is checkpointed periodically, as its file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpointing {
    /// No `[checkpoints]` table: the cluster's default interval, when it has one.
    ClusterDefault,
    /// `enabled = false`: no periodic checkpoints (savepoints on request still work).
    Off,
    /// The job's own settings; an interval of None is the cluster's default.
    Job {
        interval: Option<Duration>,
        /// None: ten times the interval, at least [`MIN_DEFAULT_CATCH_UP_INTERVAL`].
        interval_during_catch_up: Option<Duration>,
        timeout: Duration,
        min_pause: Duration,
        retained: u32,
        tolerable_failures: Option<u32>,
    },
}

/// The least checkpoint interval while catching up, unless the job sets one.
pub const MIN_DEFAULT_CATCH_UP_INTERVAL: Duration = Duration::from_secs(60);

/// The checkpoint interval while catching up, for jobs that do not set it.
fn default_catch_up_interval(interval: Duration) -> Duration {
    interval
        .saturating_mul(10)
        .max(MIN_DEFAULT_CATCH_UP_INTERVAL)
}

impl Checkpointing {
    /// The periodic checkpoints of the job on a cluster whose default interval is `default`
    /// (None: the cluster checkpoints nothing by default).
    pub fn resolve(&self, default: Option<Duration>) -> Option<CheckpointPlan> {
        match *self {
            Self::Off => None,
            Self::ClusterDefault => default.map(|interval| CheckpointPlan {
                interval,
                interval_during_catch_up: default_catch_up_interval(interval),
                timeout: DEFAULT_CHECKPOINT_TIMEOUT,
                min_pause: Duration::ZERO,
                retained: DEFAULT_RETAINED,
                tolerable_failures: None,
            }),
            Self::Job {
                interval,
                interval_during_catch_up,
                timeout,
                min_pause,
                retained,
                tolerable_failures,
            } => interval.or(default).map(|interval| CheckpointPlan {
                interval,
                interval_during_catch_up: interval_during_catch_up
                    .unwrap_or_else(|| default_catch_up_interval(interval)),
                timeout,
                min_pause,
                retained,
                tolerable_failures,
            }),
        }
    }
}

/// A job catches up while its lag is worth more than this much reading, unless it says
/// otherwise.
pub const DEFAULT_CATCH_UP_THRESHOLD: Duration = Duration::from_secs(30);

/// A checkpoint not complete after this long is aborted, unless the job says otherwise.
const DEFAULT_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(600);
/// Completed checkpoints kept, unless the job says otherwise.
const DEFAULT_RETAINED: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPlan {
    pub strategy: RestartStrategyKind,
    pub delay: Duration,
    pub max_delay: Duration,
    pub max_attempts: Option<u32>,
    /// An attempt that ran this long starts the restarts in a row over.
    pub reset_after: Duration,
}

/// An attempt that ran this long starts the restarts in a row over, unless the job says
/// otherwise (Flink's default `reset-backoff-threshold`).
pub const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(3600);

impl JobPlan {
    /// Where the sources start, as text (one position, or each source's).
    pub fn start(&self) -> String {
        let mut starts: Vec<String> = self.sources.iter().map(|s| s.start.to_string()).collect();
        starts.dedup();
        match starts.as_slice() {
            [one] => one.clone(),
            _ => self
                .sources
                .iter()
                .map(|s| format!("{}: {}", s.name, s.start))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

impl Default for RestartPlan {
    fn default() -> Self {
        Self {
            strategy: RestartStrategyKind::ExponentialBackoff,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: None,
            reset_after: DEFAULT_RESET_AFTER,
        }
    }
}

impl RestartPlan {
    /// The delay before restart number `attempt` (1-based), or None to give up.
    pub fn delay_before(&self, attempt: u32) -> Option<Duration> {
        if self.strategy == RestartStrategyKind::None
            || self.max_attempts.is_some_and(|m| attempt > m)
        {
            return None;
        }
        Some(match self.strategy {
            RestartStrategyKind::ExponentialBackoff => {
                let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
                self.delay.saturating_mul(factor).min(self.max_delay)
            }
            _ => self.delay,
        })
    }
}

/// Parses and plans a job file in one go.
pub fn plan_job(file: &str, text: &str, overrides: &Overrides) -> Result<JobPlan, SpecErrors> {
    check_size(file, text)?;
    let spec = parse_job(file, text)?;
    Planner {
        loc: Locator::new(file, text),
        errors: Vec::new(),
        allow_redacted: overrides.allow_redacted_secrets,
    }
    .plan(&spec, overrides)
}

/// Refuses a job file larger than [`MAX_JOB_FILE_BYTES`] before anything reads it.
pub(crate) fn check_size(file: &str, text: &str) -> Result<(), SpecErrors> {
    if text.len() <= MAX_JOB_FILE_BYTES {
        return Ok(());
    }
    let loc = Locator::new(file, "");
    let why = format!(
        "the job file has {} bytes; at most {MAX_JOB_FILE_BYTES} are planned",
        text.len()
    );
    Err(SpecErrors(vec![loc.at(None, "", why)]))
}

/// The operators of a plan besides its sources, and the edges between them all.
#[derive(Default)]
struct Operators {
    stages: Vec<StagePlan>,
    windows: Vec<WindowPlan>,
    joins: Vec<JoinPlan>,
    rankings: Vec<RankPlan>,
    sinks: Vec<SinkPlan>,
    edges: Vec<PlanEdge>,
}

struct Planner<'a> {
    loc: Locator<'a>,
    errors: Vec<SpecError>,
    /// Redacted secrets are no error (see [`Overrides::allow_redacted_secrets`]).
    allow_redacted: bool,
}

fn span<T>(s: &Spanned<T>) -> Option<Range<usize>> {
    Some(s.span())
}

impl Planner<'_> {
    fn err(&mut self, span: Option<Range<usize>>, field: &str, msg: impl Into<String>) {
        self.errors.push(self.loc.at(span, field, msg));
    }

    fn required(&mut self, v: &Option<Spanned<String>>, field: &str, why: &str) -> String {
        match v {
            Some(s) if !s.get_ref().trim().is_empty() => s.get_ref().trim().to_string(),
            Some(s) => {
                self.err(span(s), field, "must not be empty");
                String::new()
            }
            None => {
                self.err(None, field, format!("missing: {why}"));
                String::new()
            }
        }
    }

    fn forbid<T>(&mut self, v: &Option<Spanned<T>>, field: &str, why: &str) {
        if let Some(s) = v {
            self.err(span(s), field, why.to_string());
        }
    }

    fn plan(mut self, spec: &JobSpec, overrides: &Overrides) -> Result<JobPlan, SpecErrors> {
        // Bounds first: a job past them is refused before any planning work.
        let counts = [
            ("steps", spec.steps.len(), MAX_STEPS),
            ("sources", spec.sources.len(), MAX_TABLES),
            ("windows", spec.windows.len(), MAX_TABLES),
            ("sinks", spec.sinks.len(), MAX_TABLES),
        ];
        for (what, n, max) in counts {
            if n > max {
                self.err(None, what, format!("{n} given; at most {max}"));
            }
        }
        if !self.errors.is_empty() {
            return Err(SpecErrors(self.errors));
        }
        let name = spec.name.get_ref().trim().to_string();
        if name.is_empty() {
            self.err(span(&spec.name), "name", "must not be empty");
        }
        let max_parallelism = match &spec.max_parallelism {
            Some(m) if *m.get_ref() == 0 || *m.get_ref() > MAX_KEY_GROUPS => {
                self.err(
                    span(m),
                    "max_parallelism",
                    format!("must be between 1 and {MAX_KEY_GROUPS}"),
                );
                DEFAULT_MAX_PARALLELISM
            }
            Some(m) => *m.get_ref(),
            None => DEFAULT_MAX_PARALLELISM,
        };
        let parallelism = overrides
            .parallelism
            .or(spec.parallelism.as_ref().map(|p| *p.get_ref()))
            .unwrap_or(1);
        if parallelism == 0 || parallelism > max_parallelism {
            let s = spec.parallelism.as_ref().and_then(span);
            self.err(
                s,
                "parallelism",
                format!(
                    "must be between 1 and max_parallelism ({max_parallelism}), got {parallelism}"
                ),
            );
        }
        let sources = self.sources(spec, overrides);
        let Operators {
            stages,
            windows,
            joins,
            rankings,
            sinks,
            edges,
        } = match spec.queries.is_empty() {
            true => self.table_form(spec, &sources),
            false => self.sql_form(spec, &sources),
        };
        self.unique_uids(&sources, &windows, &sinks);
        let restart = self.restart(spec.restart.as_ref());
        let checkpoints = match &spec.checkpoints {
            None => Checkpointing::ClusterDefault,
            Some(c) if c.enabled == Some(false) => Checkpointing::Off,
            Some(c) => {
                if let Some(i) = &c.interval
                    && i.get_ref().0 < Duration::from_millis(100)
                {
                    self.err(span(i), "checkpoints.interval", "must be at least 100ms");
                }
                let retained = c
                    .retained
                    .as_ref()
                    .map_or(DEFAULT_RETAINED, |r| *r.get_ref());
                if retained == 0 {
                    self.err(
                        c.retained.as_ref().and_then(span),
                        "checkpoints.retained",
                        "must keep at least one checkpoint",
                    );
                }
                if let Some(i) = &c.interval_during_catch_up
                    && i.get_ref().0 < Duration::from_millis(100)
                {
                    self.err(
                        span(i),
                        "checkpoints.interval_during_catch_up",
                        "must be at least 100ms",
                    );
                }
                Checkpointing::Job {
                    interval: c.interval.as_ref().map(|i| i.get_ref().0),
                    interval_during_catch_up: c
                        .interval_during_catch_up
                        .as_ref()
                        .map(|i| i.get_ref().0),
                    timeout: c.timeout.map_or(DEFAULT_CHECKPOINT_TIMEOUT, |d| d.0),
                    min_pause: c.min_pause.map_or(Duration::ZERO, |d| d.0),
                    retained: retained.max(1),
                    tolerable_failures: c.tolerable_failures,
                }
            }
        };
        let state_limit = spec.limits.as_ref().and_then(|l| l.state_memory.as_ref());
        if let Some(limit) = state_limit
            && limit.get_ref().0 == 0
        {
            self.err(
                span(limit),
                "limits.state_memory",
                "must be more than 0 bytes",
            );
        }
        let catch_up = match &spec.catch_up {
            Some(c) if c.enabled == Some(false) => None,
            Some(CatchUpSpec {
                threshold: Some(t), ..
            }) => {
                if t.get_ref().0 < Duration::from_secs(1) {
                    self.err(span(t), "catch_up.threshold", "must be at least 1s");
                }
                Some(t.get_ref().0)
            }
            _ => Some(DEFAULT_CATCH_UP_THRESHOLD),
        };
        if !self.errors.is_empty() {
            return Err(SpecErrors(self.errors));
        }
        Ok(JobPlan {
            name,
            start_override: overrides.start,
            parallelism,
            max_parallelism,
            sources,
            stages,
            windows,
            joins,
            rankings,
            sinks,
            edges,
            restart,
            checkpoints,
            state_limit: state_limit.map(|l| l.get_ref().0),
            state_backend: spec.state_backend,
            catch_up,
        })
    }

    /// The dataflow of the table form: `[[steps]]`, `[window]` or `[[windows]]`, sinks.
    fn table_form(&mut self, spec: &JobSpec, sources: &[SourcePlan]) -> Operators {
        for changes in sources.iter().filter(|s| s.changelog()) {
            self.err(
                None,
                &format!("{}.format", changes.uid),
                "debezium-json is a change stream (inserts, updates and deletes of rows): read it in [[queries]], e.g. INSERT INTO <sink> SELECT … or an aggregate GROUP BY its keys",
            );
        }
        self.union_schemas(spec, sources);
        let union_schema = sources
            .first()
            .map_or_else(|| Arc::new(Schema::empty()), |s| Arc::clone(&s.schema));
        let (steps, steps_schema) = self.steps(spec, &union_schema);
        let before = self.errors.len();
        let window_specs: Vec<(String, &WindowSpec)> = match (&spec.window, spec.windows.as_slice())
        {
            (Some(w), []) => vec![("window".into(), w)],
            (None, ws) => ws
                .iter()
                .enumerate()
                .map(|(i, w)| (format!("windows[{i}]"), w))
                .collect(),
            (Some(w), _) => {
                self.err(
                    span(&w.kind),
                    "window",
                    "write either one [window] or [[windows]] tables, not both",
                );
                Vec::new()
            }
        };
        // Windows are in event time: the first on the sources' time column, each later one
        // on the start of the windows it aggregates.
        let mut time_column = self.union_time_column(sources, &window_specs);
        let mut windows = Vec::new();
        let mut input = Arc::clone(&steps_schema);
        for (prefix, w) in &window_specs {
            let (plan, out) = self.window(w, prefix, time_column.as_deref(), &input);
            // Later windows cannot be checked against a broken one.
            let Some(mut plan) = plan else {
                input = out;
                break;
            };
            if window_specs.len() > 1 && w.uid.is_none() {
                self.err(span(&w.kind), &format!("{prefix}.uid"), "missing: with several windows each needs a `uid`, the stable id of its state in savepoints");
            }
            plan.late_output = None;
            windows.push((plan, Arc::clone(&input)));
            input = out;
            time_column = Some("window_start".into());
        }
        let output_schema = input;
        // A broken window or step has no trustworthy output schema to check the key against.
        let output_known = self.errors.len() == before && steps.len() == spec.steps.len();
        let (sinks, sink_inputs) = self.sinks(spec, &mut windows, &output_schema, output_known);
        let windows: Vec<WindowPlan> = windows.into_iter().map(|(w, _)| w).collect();
        let (stages, edges) = pipeline(sources, steps, steps_schema, &windows, &sink_inputs);
        Operators {
            stages,
            windows,
            joins: Vec::new(),
            rankings: Vec::new(),
            sinks,
            edges,
        }
    }

    fn source(&mut self, s: &SourceSpec, prefix: &str, overrides: &Overrides) -> SourcePlan {
        let kind = match s.connector {
            SourceConnector::Nexmark => return self.nexmark_source(s, prefix, overrides),
            SourceConnector::Kafka => {
                let bootstrap_servers = self.required(
                    &s.bootstrap_servers,
                    &format!("{prefix}.bootstrap_servers"),
                    "the kafka connector needs the broker addresses, e.g. \"127.0.0.1:9092\"",
                );
                let topic = self.required(
                    &s.topic,
                    &format!("{prefix}.topic"),
                    "the kafka connector needs the topic to read",
                );
                self.forbid(
                    &s.path,
                    &format!("{prefix}.path"),
                    "`path` applies to the file connector only",
                );
                let dead_letter_topic = s
                    .dead_letter_topic
                    .as_ref()
                    .map(|t| t.get_ref().trim().to_string());
                match (s.on_error, &dead_letter_topic) {
                    (OnError::DeadLetter, None) => self.err(None, &format!("{prefix}.dead_letter_topic"), "missing: on_error = \"dead-letter\" needs the topic to write bad records to"),
                    (OnError::DeadLetter, Some(t)) if t.is_empty() => self.err(s.dead_letter_topic.as_ref().and_then(span), &format!("{prefix}.dead_letter_topic"), "must not be empty"),
                    (OnError::Fail | OnError::Skip, Some(_)) => self.err(s.dead_letter_topic.as_ref().and_then(span), &format!("{prefix}.dead_letter_topic"), "only used with on_error = \"dead-letter\""),
                    _ => {}
                }
                SourceKind::Kafka(KafkaSourcePlan {
                    connection: self.kafka_connection(
                        bootstrap_servers,
                        s.security.as_ref(),
                        s.properties.as_ref(),
                        prefix,
                    ),
                    topic,
                    dead_letter_topic,
                    metadata: Vec::new(),
                    history: self.kafka_history(s, prefix),
                })
            }
            SourceConnector::File => {
                let path = self.required(
                    &s.path,
                    &format!("{prefix}.path"),
                    "the file connector needs a JSON-lines file or a directory of them",
                );
                self.forbid(
                    &s.topic,
                    &format!("{prefix}.topic"),
                    "`topic` applies to the kafka connector only",
                );
                self.forbid(
                    &s.bootstrap_servers,
                    &format!("{prefix}.bootstrap_servers"),
                    "`bootstrap_servers` applies to the kafka connector only",
                );
                self.forbid(&s.dead_letter_topic, &format!("{prefix}.dead_letter_topic"), "the file connector has no dead-letter topic: use on_error = \"skip\" or \"fail\"");
                if s.on_error == OnError::DeadLetter {
                    self.err(
                        None,
                        &format!("{prefix}.on_error"),
                        "the file connector supports on_error = \"fail\" or \"skip\"",
                    );
                }
                self.forbid_kafka_settings(s.security.as_ref(), s.properties.as_ref(), prefix);
                self.forbid_kafka_source_options(s, prefix);
                SourceKind::File {
                    path: PathBuf::from(path),
                }
            }
        };
        let start = match (&overrides.start, &s.start) {
            (Some(p), _) => *p,
            (None, Some(text)) => {
                text.get_ref()
                    .parse()
                    .unwrap_or_else(|e: crate::start::StartPositionError| {
                        self.err(span(text), &format!("{prefix}.start"), e.to_string());
                        StartPosition::Earliest
                    })
            }
            (None, None) => StartPosition::Earliest,
        };
        if matches!(kind, SourceKind::File { .. }) && start != StartPosition::Earliest {
            let sp = s.start.as_ref().and_then(span);
            self.err(sp, &format!("{prefix}.start"), format!("the file connector reads its files from the beginning; start `{start}` applies to kafka only"));
        }
        let (format, mut schema) =
            self.source_format(s, prefix, matches!(kind, SourceKind::Kafka(_)));
        let mut kind = kind;
        if let SourceKind::Kafka(k) = &mut kind {
            let (fields, columns) = self.kafka_metadata(s, prefix, &schema);
            k.metadata = fields;
            schema = Schema::new(
                [
                    schema.fields().iter().cloned().collect(),
                    columns.into_iter().map(Arc::new).collect::<Vec<_>>(),
                ]
                .concat(),
            );
        }
        SourcePlan {
            name: "source".into(),
            uid: "source".into(),
            kind,
            format,
            schema: Arc::new(schema),
            start,
            on_error: s.on_error,
            event_time: None,
        }
    }

    fn schema(&mut self, s: &SourceSpec, prefix: &str) -> Schema {
        let Some(schema) = &s.schema else {
            self.err(
                None,
                &format!("{prefix}.schema"),
                "missing: list the fields of a record, e.g. schema = { user_id = \"string\" }",
            );
            return Schema::empty();
        };
        if schema.get_ref().is_empty() {
            self.err(
                span(schema),
                &format!("{prefix}.schema"),
                "must list at least one field, e.g. user_id = \"string\"",
            );
        }
        let mut fields = Vec::new();
        for (name, ty) in schema.get_ref().iter() {
            let text = ty.get_ref().trim();
            let (base, nullable) = match text.strip_suffix('?') {
                Some(b) => (b.trim(), true),
                None => (text, false),
            };
            match field_type(base) {
                Some(dt) => fields.push(Field::new(name, dt, nullable)),
                None => self.err(span(ty), &format!("{prefix}.schema.{name}"), format!(
                    "unknown type `{text}`: use string, int, int32, double, bool, timestamp_ms, timestamp or bytes (append ? for a field that may be missing or null)"
                )),
            }
        }
        Schema::new(fields)
    }

    fn steps(&mut self, spec: &JobSpec, input: &SchemaRef) -> (Vec<StepPlan>, SchemaRef) {
        let mut schema = Arc::clone(input);
        let mut steps = Vec::new();
        for (i, step) in spec.steps.iter().enumerate() {
            let field = format!("steps[{i}]");
            match (&step.filter, &step.select) {
                (Some(f), None) => match sql::compile_filter(f.get_ref(), &schema) {
                    Ok(c) => steps.push(StepPlan::Filter(c)),
                    Err(e) => self.err(span(f), &format!("{field}.filter"), e),
                },
                (None, Some(sel)) => {
                    let mut exprs = Vec::new();
                    for (j, item) in sel.get_ref().iter().enumerate() {
                        match sql::compile_named(item.get_ref(), &schema) {
                            Ok(c) => exprs.push(c),
                            Err(e) => self.err(span(item), &format!("{field}.select[{j}]"), e),
                        }
                    }
                    if sel.get_ref().is_empty() {
                        self.err(
                            span(sel),
                            &format!("{field}.select"),
                            "must list at least one expression",
                        );
                    }
                    if let Some(dup) = first_duplicate(exprs.iter().map(|e| e.name.as_str())) {
                        self.err(
                            span(sel),
                            &format!("{field}.select"),
                            format!("column `{dup}` is selected twice; rename one with AS"),
                        );
                    }
                    if exprs.len() == sel.get_ref().len() && !exprs.is_empty() {
                        let out = Arc::new(sql::schema_of(&exprs));
                        schema = Arc::clone(&out);
                        steps.push(StepPlan::Select { exprs, schema: out });
                    } else {
                        // Later steps cannot be checked against a broken projection.
                        return (steps, schema);
                    }
                }
                _ => self.err(
                    None,
                    &field,
                    "each step has exactly one of `filter` or `select`",
                ),
            }
        }
        (steps, schema)
    }

    fn window(
        &mut self,
        w: &WindowSpec,
        prefix: &str,
        time_column: Option<&str>,
        input: &SchemaRef,
    ) -> (Option<WindowPlan>, SchemaRef) {
        let fallback = Arc::clone(input);
        // Without a time column the error is already reported.
        let Some(column) = time_column else {
            return (None, fallback);
        };
        let Ok(time_index) = input.index_of(column) else {
            self.err(span(&w.kind), prefix, format!("the event-time column `{column}` is dropped by a select step; keep it for the window"));
            return (None, fallback);
        };
        let ms = |d: &Spanned<crate::spec::HumanDuration>| millis(d.get_ref().0);
        let positive = |p: &mut Self,
                        v: &Option<Spanned<crate::spec::HumanDuration>>,
                        field: &str,
                        kind: &str|
         -> i64 {
            match v {
                Some(d) if ms(d) > MAX_DURATION_MS => {
                    p.err(span(d), field, "must be at most 100 years");
                    1
                }
                Some(d) if ms(d) > 0 => ms(d),
                Some(d) => {
                    p.err(span(d), field, "must be at least 1ms");
                    1
                }
                None => {
                    p.err(
                        span(&w.kind),
                        field,
                        format!(
                            "missing: a {kind} window needs `{}`",
                            field.rsplit('.').next().unwrap_or(field)
                        ),
                    );
                    1
                }
            }
        };
        let assigner = match *w.kind.get_ref() {
            WindowKind::Tumbling => {
                self.forbid(
                    &w.slide,
                    &format!("{prefix}.slide"),
                    "`slide` applies to sliding windows only",
                );
                self.forbid(
                    &w.gap,
                    &format!("{prefix}.gap"),
                    "`gap` applies to session windows only",
                );
                WindowAssigner::Tumbling {
                    size_ms: positive(self, &w.size, &format!("{prefix}.size"), "tumbling"),
                }
            }
            WindowKind::Sliding => {
                self.forbid(
                    &w.gap,
                    &format!("{prefix}.gap"),
                    "`gap` applies to session windows only",
                );
                let size_ms = positive(self, &w.size, &format!("{prefix}.size"), "sliding");
                let slide_ms = positive(self, &w.slide, &format!("{prefix}.slide"), "sliding");
                if size_ms % slide_ms != 0 {
                    self.err(
                        w.slide.as_ref().and_then(span),
                        &format!("{prefix}.slide"),
                        "the window size must be a multiple of the slide",
                    );
                } else if size_ms / slide_ms > MAX_WINDOWS_PER_RECORD {
                    self.err(
                        w.slide.as_ref().and_then(span),
                        &format!("{prefix}.slide"),
                        format!(
                            "this puts every record into {} windows (size / slide); at most {MAX_WINDOWS_PER_RECORD}: use a longer slide",
                            size_ms / slide_ms
                        ),
                    );
                }
                WindowAssigner::Sliding { size_ms, slide_ms }
            }
            WindowKind::Session => {
                self.forbid(
                    &w.size,
                    &format!("{prefix}.size"),
                    "session windows have a `gap`, not a `size`",
                );
                self.forbid(
                    &w.slide,
                    &format!("{prefix}.slide"),
                    "`slide` applies to sliding windows only",
                );
                WindowAssigner::Session {
                    gap_ms: positive(self, &w.gap, &format!("{prefix}.gap"), "session"),
                }
            }
        };
        let mut keys = Vec::new();
        if w.key_by.get_ref().is_empty() {
            self.err(
                span(&w.key_by),
                &format!("{prefix}.key_by"),
                "must name at least one key column or expression",
            );
        }
        for (i, k) in w.key_by.get_ref().iter().enumerate() {
            match sql::compile_named(k.get_ref(), input) {
                Ok(c) => keys.push(c),
                Err(e) => self.err(span(k), &format!("{prefix}.key_by[{i}]"), e),
            }
        }
        let mut aggregates = Vec::new();
        let mut fields: Vec<Field> = keys
            .iter()
            .map(|k| Field::new(&k.name, k.data_type.clone(), k.nullable))
            .collect();
        fields.push(Field::new("window_start", DataType::Int64, false));
        fields.push(Field::new("window_end", DataType::Int64, false));
        if w.aggregates.get_ref().is_empty() {
            self.err(
                span(&w.aggregates),
                &format!("{prefix}.aggregates"),
                "must define at least one aggregate, e.g. click_count = \"count(*)\"",
            );
        }
        for (name, text) in w.aggregates.get_ref().iter() {
            let field = format!("{prefix}.aggregates.{name}");
            match sql::compile_aggregate(text.get_ref(), input) {
                Ok(call) => {
                    fields.push(Field::new(
                        name,
                        aggregate_type(&call),
                        !call.function.is_count(),
                    ));
                    aggregates.push((name.clone(), call));
                }
                Err(e) => self.err(span(text), &field, e),
            }
        }
        if let Some(dup) = first_duplicate(fields.iter().map(|f| f.name().as_str())) {
            self.err(span(&w.aggregates), prefix, format!("output column `{dup}` appears twice (keys, window_start, window_end and aggregates must have distinct names)"));
        }
        if millis(w.allowed_lateness.0) > MAX_DURATION_MS {
            self.err(
                None,
                &format!("{prefix}.allowed_lateness"),
                "must be at most 100 years",
            );
        }
        let plan = WindowPlan {
            uid: w
                .uid
                .as_ref()
                .map_or_else(|| "window".to_string(), |u| u.get_ref().trim().to_string()),
            assigner,
            allowed_lateness_ms: millis(w.allowed_lateness.0).min(MAX_DURATION_MS),
            keys,
            time_index,
            aggregates,
            output_schema: Arc::new(Schema::new(fields)),
            late_output: None,
            retract: None,
        };
        let schema = Arc::clone(&plan.output_schema);
        (Some(plan), schema)
    }

    fn sink(
        &mut self,
        s: &SinkSpec,
        prefix: &str,
        output: &SchemaRef,
        output_known: bool,
        checkpoints: bool,
    ) -> SinkPlan {
        if !matches!(
            s.connector,
            SinkConnector::Postgres
                | SinkConnector::Redis
                | SinkConnector::Elasticsearch
                | SinkConnector::Iceberg
        ) {
            self.forbid(
                &s.password,
                &format!("{prefix}.password"),
                "`password` applies to the postgres, redis, elasticsearch and iceberg connectors only (a Kafka password goes in `security`)",
            );
            self.forbid(
                &s.url,
                &format!("{prefix}.url"),
                "`url` applies to the postgres, redis, elasticsearch and iceberg connectors only",
            );
        }
        if s.connector != SinkConnector::Iceberg {
            self.forbid(
                &s.catalog,
                &format!("{prefix}.catalog"),
                "`catalog` applies to the iceberg connector only",
            );
        }
        if s.connector != SinkConnector::Redis {
            self.forbid(
                &s.command,
                &format!("{prefix}.command"),
                "`command` applies to the redis connector only",
            );
            self.forbid(
                &s.ttl,
                &format!("{prefix}.ttl"),
                "`ttl` applies to the redis connector only",
            );
        }
        if s.connector != SinkConnector::Elasticsearch {
            self.forbid_elasticsearch_settings(s, prefix);
        }
        if !matches!(
            s.connector,
            SinkConnector::Postgres | SinkConnector::Iceberg
        ) {
            self.forbid(
                &s.table,
                &format!("{prefix}.table"),
                "`table` applies to the postgres and iceberg connectors only",
            );
        }
        if s.connector != SinkConnector::Kafka {
            self.forbid(
                &s.partitioner,
                &format!("{prefix}.partitioner"),
                "`partitioner` applies to the kafka connector only",
            );
            self.forbid(
                &s.topic,
                &format!("{prefix}.topic"),
                "`topic` applies to the kafka connector only",
            );
            self.forbid(
                &s.bootstrap_servers,
                &format!("{prefix}.bootstrap_servers"),
                "`bootstrap_servers` applies to the kafka connector only",
            );
            self.forbid_kafka_settings(s.security.as_ref(), s.properties.as_ref(), prefix);
        }
        if !matches!(
            s.connector,
            SinkConnector::File | SinkConnector::Parquet | SinkConnector::Iceberg
        ) {
            self.forbid(
                &s.path,
                &format!("{prefix}.path"),
                "`path` applies to the file, parquet and iceberg connectors only",
            );
        }
        if !matches!(s.connector, SinkConnector::Parquet | SinkConnector::Iceberg) {
            self.forbid_parquet_settings(s, prefix);
        }
        let kind = match s.connector {
            SinkConnector::Kafka => {
                let bootstrap_servers = self.required(
                    &s.bootstrap_servers,
                    &format!("{prefix}.bootstrap_servers"),
                    "the kafka connector needs the broker addresses",
                );
                let topic = self.required(
                    &s.topic,
                    &format!("{prefix}.topic"),
                    "the kafka connector needs the topic to write",
                );
                SinkKind::Kafka {
                    connection: self.kafka_connection(
                        bootstrap_servers,
                        s.security.as_ref(),
                        s.properties.as_ref(),
                        prefix,
                    ),
                    topic,
                    partitioner: s
                        .partitioner
                        .as_ref()
                        .map(|p| *p.get_ref())
                        .unwrap_or_default(),
                }
            }
            SinkConnector::Postgres => {
                let url = self.required(
                    &s.url,
                    &format!("{prefix}.url"),
                    "the postgres connector needs a connection string, e.g. \"postgres://user:password@127.0.0.1:5432/db\"",
                );
                if let Some(u) = &s.url
                    && let Err(e) = crate::postgres_tls::split(u.get_ref())
                {
                    self.err(span(u), &format!("{prefix}.url"), e.to_string());
                }
                let table = self.required(
                    &s.table,
                    &format!("{prefix}.table"),
                    "the postgres connector needs the table to upsert into (it must exist, with `id` as its primary key)",
                );
                self.required(
                    &s.key,
                    &format!("{prefix}.key"),
                    "the postgres sink upserts by id: set `key`, e.g. \"{item_id}-{window_end}\"",
                );
                if output_known && output.index_of(POSTGRES_ID).is_ok() {
                    self.err(
                        None,
                        &format!("{prefix}.connector"),
                        "the postgres sink writes the key to column `id`: rename the output column `id` (e.g. `id AS source_id`)",
                    );
                }
                let password = self.url_password(s, prefix);
                SinkKind::Postgres {
                    url,
                    password,
                    table,
                }
            }
            SinkConnector::Redis => self.redis_sink(s, prefix),
            SinkConnector::Elasticsearch => {
                self.elasticsearch_sink(s, prefix, output, output_known)
            }
            SinkConnector::Parquet => {
                SinkKind::Parquet(self.parquet_sink(s, prefix, output, output_known))
            }
            SinkConnector::Iceberg => self.iceberg_sink(s, prefix, output, output_known),
            SinkConnector::File | SinkConnector::Stdout | SinkConnector::Blackhole => {
                // A file sink's key names its rows for the diff of an upgrade.
                if s.connector != SinkConnector::File {
                    self.forbid(
                        &s.key,
                        &format!("{prefix}.key"),
                        "`key` applies to the kafka, postgres, redis, elasticsearch and file connectors only",
                    );
                }
                match s.connector {
                    SinkConnector::File => {
                        let path = self.required(
                            &s.path,
                            &format!("{prefix}.path"),
                            "the file connector needs the directory to write its part files to",
                        );
                        SinkKind::File {
                            path: PathBuf::from(path),
                        }
                    }
                    SinkConnector::Blackhole => SinkKind::Blackhole,
                    _ => SinkKind::Stdout,
                }
            }
        };
        let key = s.key.as_ref().filter(|_| output_known).and_then(|k| {
            match KeyTemplate::parse(k.get_ref(), output) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.err(span(k), &format!("{prefix}.key"), e);
                    None
                }
            }
        });
        let delivery = self.delivery(s, prefix, checkpoints);
        let format = self.sink_format(s, prefix, output, output_known);
        SinkPlan {
            name: "sink".into(),
            uid: "sink".into(),
            schema: Arc::clone(output),
            kind,
            format,
            key,
            delivery,
            changes: false,
        }
    }

    /// The sink's delivery guarantee, checked against what its connector can give.
    fn delivery(&mut self, s: &SinkSpec, prefix: &str, checkpoints: bool) -> Delivery {
        if s.connector == SinkConnector::Parquet {
            return self.parquet_delivery(s, prefix, checkpoints);
        }
        if s.connector == SinkConnector::Iceberg {
            return self.iceberg_delivery(s, prefix, checkpoints);
        }
        let Some(d) = &s.delivery else {
            return Delivery::default();
        };
        let delivery = *d.get_ref();
        let problem = match (s.connector, delivery) {
            (SinkConnector::Blackhole, _) => None,
            (SinkConnector::Stdout, Delivery::ExactlyOnce) => {
                Some("the stdout sink cannot take back what it printed: use at-least-once or none")
            }
            (SinkConnector::Postgres, Delivery::ExactlyOnce) => Some(
                "postgres upserts are idempotent: at-least-once already gives exactly-once results per id (a replay overwrites the same rows)",
            ),
            (SinkConnector::Redis, Delivery::ExactlyOnce) => Some(
                "redis writes are idempotent by key: at-least-once already gives exactly-once results per key (a replay overwrites the same keys)",
            ),
            (SinkConnector::Elasticsearch, Delivery::ExactlyOnce) => Some(
                "elasticsearch indexes each row under its `_id`: at-least-once already gives exactly-once results per id (a replay overwrites the same documents)",
            ),
            (_, Delivery::ExactlyOnce) if !checkpoints => Some(
                "exactly-once output is committed when a checkpoint completes: checkpoints are off ([checkpoints] enabled = false)",
            ),
            _ => None,
        };
        if let Some(p) = problem {
            self.err(span(d), &format!("{prefix}.delivery"), p);
        }
        delivery
    }

    fn restart(&mut self, r: Option<&RestartSpec>) -> Option<RestartPlan> {
        let mut plan = RestartPlan::default();
        let r = r?;
        {
            plan.strategy = r.strategy;
            if let Some(d) = r.delay {
                plan.delay = d.0;
            }
            if let Some(d) = r.max_delay {
                plan.max_delay = d.0;
            }
            plan.max_attempts = r.max_attempts;
            if let Some(d) = r.reset_after {
                plan.reset_after = d.0;
            }
            if plan.max_delay < plan.delay {
                self.err(
                    None,
                    "restart.max_delay",
                    "must not be smaller than `delay`",
                );
            }
        }
        Some(plan)
    }
}

fn first_duplicate<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = std::collections::HashSet::new();
    names.into_iter().find(|n| !seen.insert(*n))
}

/// The Arrow type of a schema type name in job.toml.
fn field_type(name: &str) -> Option<DataType> {
    Some(match name {
        "string" | "utf8" => DataType::Utf8,
        "int" | "long" | "bigint" | "int64" => DataType::Int64,
        "int32" | "integer" => DataType::Int32,
        "double" | "float" | "float64" => DataType::Float64,
        "bool" | "boolean" => DataType::Boolean,
        "timestamp_ms" | "timestamp" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "bytes" | "binary" => DataType::Binary,
        _ => return None,
    })
}

fn is_time_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(_, _) | DataType::Int64 | DataType::Int32
    )
}

/// The output type of an aggregate: counts are Int64, averages Float64, first and last values
/// and min/max of strings and times keep their argument's type, sums/min/max of numbers follow
/// their argument (integers as Int64, everything else as Float64).
pub fn aggregate_type(call: &AggregateCall) -> DataType {
    match (call.function, &call.argument) {
        (f, _) if f.is_count() => DataType::Int64,
        (AggregateFunction::Avg, _) => DataType::Float64,
        (AggregateFunction::FirstValue | AggregateFunction::LastValue, Some(arg)) => {
            arg.data_type.clone()
        }
        (AggregateFunction::Min | AggregateFunction::Max, Some(arg))
            if sql::is_ordered_value(&arg.data_type) =>
        {
            arg.data_type.clone()
        }
        (_, Some(arg)) if arg.data_type.is_integer() => DataType::Int64,
        _ => DataType::Float64,
    }
}

#[cfg(test)]
mod test_jobs;
#[cfg(test)]
mod tests;
