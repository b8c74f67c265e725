//! The plan of an upgrade (`kappactl upgrade <job> <file> --dry-run`): what changed between
//! the running job (v1) and the new file (v2), whether v2 can start from a savepoint of v1 or
//! must recompute history, the shadow sinks v2 would write beside the live ones, the backlog a
//! replay reads and how long it should take, and what makes a cut-over impossible. Pure: the
//! caller gathers the Kafka facts and the measured replay rate.

use std::collections::BTreeMap;

use kappa_connectors::kafka::history::phase::Held;
use kappa_job::JobPlan;
use kappa_job::changes::{Part, SpecChange};
use kappa_job::plan::SinkKind;
use serde::Serialize;

use super::retention;
pub use super::retention::SinkHistory;

/// The longest PostgreSQL identifier (longer ones are cut silently by the server).
const POSTGRES_NAME_MAX: usize = 63;
/// The longest Kafka topic name.
const KAFKA_TOPIC_MAX: usize = 249;

/// The retained range of one partition of a topic v2 reads, and where v1 started in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionFacts {
    pub partition: i32,
    /// The earliest offset still in the partition.
    pub low: i64,
    /// The offset the next record will get.
    pub high: i64,
    /// The offset v1 started reading at, when it is known (an explicit start).
    pub v1_started_at: Option<i64>,
    /// The offsets v2's history archive holds of the partition (`history` on its source).
    pub archived: Option<Held>,
}

impl PartitionFacts {
    /// The first offset a replay reads: the archive's first when the archive reaches as far
    /// back as the topic (what the source's reader does), else the topic's.
    pub fn first_offset(&self) -> i64 {
        match self.archived {
            Some(a) if a.first <= self.low => a.first,
            _ => self.low,
        }
    }

    /// Offsets a replay reads from the archive.
    pub fn from_archive(&self) -> i64 {
        match self.archived {
            Some(a) if a.first <= self.low => (a.last + 1 - a.first).max(0),
            _ => 0,
        }
    }
}

/// A Kafka source of v2 and its topic's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFacts {
    pub source: String,
    pub topic: String,
    pub partitions: Vec<PartitionFacts>,
    /// The event time (ms) from which on every partition still holds its records (the latest
    /// of their first records'), when known.
    pub oldest_event_ms: Option<i64>,
}

/// What the plan is made from.
pub struct PlanInputs<'a> {
    /// Names the shadow sinks.
    pub upgrade_id: &'a str,
    pub v1: &'a JobPlan,
    /// v1's state (RUNNING, FAILED…).
    pub v1_state: &'a str,
    pub v2: &'a JobPlan,
    pub topics: &'a [TopicFacts],
    /// Events per second a replay reached on this cluster, and how that was measured.
    pub replay_rate: Option<(f64, String)>,
    /// Why the jobmanager cannot cut over a file sink's directory, by the directory (the
    /// jobmanager renames it: it must see it, and may write beside it).
    pub unusable_dirs: &'a BTreeMap<String, String>,
    /// How far back the windows of v1's sinks go.
    pub oldest_windows: &'a [SinkHistory],
}

/// How v2 starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UpgradeStart {
    /// From a savepoint of v1 (its state fits v2 and nothing it computed changed); otherwise
    /// v2 replays its topics from the earliest retained offsets.
    pub from_savepoint: bool,
    pub why: String,
}

/// A live sink and the shadow v2 writes instead until the cut-over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ShadowSink {
    pub sink: String,
    /// postgres | kafka | file
    pub connector: String,
    /// The live table, topic or directory.
    pub live: String,
    /// Its shadow: `<table>__<upgrade>`, `<topic>.<upgrade>`, `<directory>.<upgrade>`.
    pub shadow: String,
}

/// What a replay reads of one source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SourceBacklog {
    pub source: String,
    pub topic: String,
    /// Records a replay reads (from the first offsets the topic or its archive holds to the
    /// ends).
    pub events: u64,
    /// Of those, the records read from the source's history archive.
    pub from_archive: u64,
    /// The event time (ms) from which on the topic holds every partition's records (the
    /// latest of the partitions' first records'), when known.
    pub oldest_event_ms: Option<i64>,
}

/// One value that differs between v1's and v2's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChangeView {
    /// sources | schema | logic | keys | sinks | settings
    pub part: String,
    pub path: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl From<SpecChange> for ChangeView {
    fn from(c: SpecChange) -> Self {
        Self {
            part: c.part.to_string(),
            path: c.path,
            old: c.old,
            new: c.new,
        }
    }
}

/// The plan of an upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UpgradePlan {
    pub changes: Vec<ChangeView>,
    pub start: UpgradeStart,
    pub shadows: Vec<ShadowSink>,
    /// With a replay: what it reads.
    pub backlog: Vec<SourceBacklog>,
    pub backlog_events: u64,
    /// With a replay: how long it should take at the measured rate.
    pub expected_ms: Option<u64>,
    /// Where the expected duration comes from (or why there is none).
    pub rate_basis: String,
    pub warnings: Vec<String>,
    /// How far back the windows of the live sinks go (sinks with a `window_start` column).
    pub oldest_windows: Vec<SinkHistory>,
    /// Whether a replay recomputes everything v1 read (false when the topic no longer holds
    /// some of it: the cut-over then keeps the rows only v1 has).
    pub history_complete: bool,
    /// Why the upgrade cannot be cut over; empty when it can.
    pub refusals: Vec<String>,
}

/// Plans the upgrade of `inputs.v1` to `inputs.v2`, whose files differ by `changes`.
pub fn plan(inputs: &PlanInputs<'_>, changes: Vec<SpecChange>) -> UpgradePlan {
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();
    if inputs.v1_state != "RUNNING" {
        refusals.push(format!(
            "the job is {}: only a running job can be upgraded",
            inputs.v1_state
        ));
    }
    let shadows = shadow_sinks(inputs, &mut refusals);
    if changes.is_empty() {
        warnings.push(
            "nothing changed: the upgrade would recompute the same results (kappactl audit checks a job against its own logic)"
                .into(),
        );
    }
    let start = start(inputs, &changes);
    let backlog: Vec<SourceBacklog> = match start.from_savepoint {
        true => Vec::new(),
        false => inputs
            .topics
            .iter()
            .map(|t| SourceBacklog {
                source: t.source.clone(),
                topic: t.topic.clone(),
                events: t
                    .partitions
                    .iter()
                    .map(|p| (p.high - p.first_offset()).max(0) as u64)
                    .sum(),
                from_archive: t.partitions.iter().map(|p| p.from_archive() as u64).sum(),
                oldest_event_ms: t.oldest_event_ms,
            })
            .collect(),
    };
    let mut history_complete = true;
    if !start.from_savepoint {
        let lost = retention::warnings(inputs.topics, inputs.oldest_windows);
        history_complete = lost.is_empty();
        warnings.extend(lost);
        if inputs
            .v2
            .sources
            .iter()
            .any(|s| !matches!(s.kind, kappa_job::plan::SourceKind::Kafka(_)))
        {
            refusals.push(
                "a source of v2 is not Kafka: an upgrade recomputes history from Kafka topics"
                    .into(),
            );
        }
    }
    let backlog_events: u64 = backlog.iter().map(|b| b.events).sum();
    let (expected_ms, rate_basis) = match (&inputs.replay_rate, start.from_savepoint) {
        (_, true) => (None, "no replay: v2 starts from a savepoint of v1".into()),
        (Some((rate, basis)), false) if *rate > 0.0 => (
            Some((backlog_events as f64 / rate * 1000.0).ceil() as u64),
            format!("{rate:.0} events/s: {basis}"),
        ),
        _ => (
            None,
            "no replay was measured on this cluster yet (a job that caught up with its sources measures one)".into(),
        ),
    };
    UpgradePlan {
        changes: changes.into_iter().map(ChangeView::from).collect(),
        start,
        shadows,
        backlog,
        backlog_events,
        expected_ms,
        rate_basis,
        warnings,
        oldest_windows: inputs.oldest_windows.to_vec(),
        history_complete,
        refusals,
    }
}

/// The live target of a sink (table, topic, directory) and its connector, if it has one.
pub(crate) fn target(kind: &SinkKind) -> Option<(&'static str, String)> {
    match kind {
        SinkKind::Postgres { table, .. } => Some(("postgres", table.clone())),
        SinkKind::Kafka { topic, .. } => Some(("kafka", topic.clone())),
        // Without a trailing `/`: the shadow and the backup are beside it, not in it.
        SinkKind::File { path } => {
            Some(("file", path.components().as_path().display().to_string()))
        }
        SinkKind::Redis(_)
        | SinkKind::Elasticsearch(_)
        | SinkKind::Parquet(_)
        | SinkKind::Iceberg(_)
        | SinkKind::Stdout
        | SinkKind::Blackhole => None,
    }
}

/// The store a sink writes that an upgrade has no shadow of, if it writes one.
fn not_cut_over(kind: &SinkKind) -> Option<&'static str> {
    match kind {
        SinkKind::Redis(_) => Some("redis"),
        SinkKind::Elasticsearch(_) => Some("elasticsearch"),
        SinkKind::Parquet(_) => Some("parquet files"),
        SinkKind::Iceberg(_) => Some("iceberg tables"),
        _ => None,
    }
}

/// The shadow of the live table, topic or directory `live` of a `kind` sink in upgrade
/// `upgrade`.
pub(crate) fn shadow_name(kind: &str, live: &str, upgrade: &str) -> String {
    match kind {
        "postgres" => format!("{live}__{upgrade}"),
        _ => format!("{live}.{upgrade}"),
    }
}

/// Whether two sinks of one kind connect to the same server the same way.
fn same_server(a: &SinkKind, b: &SinkKind) -> bool {
    match (a, b) {
        (
            SinkKind::Postgres {
                url: u1,
                password: p1,
                ..
            },
            SinkKind::Postgres {
                url: u2,
                password: p2,
                ..
            },
        ) => u1 == u2 && p1 == p2,
        (SinkKind::Kafka { connection: c1, .. }, SinkKind::Kafka { connection: c2, .. }) => {
            c1 == c2
        }
        _ => true,
    }
}

/// The shadow of every sink v1 and v2 share; refusals for sinks that cannot be cut over.
fn shadow_sinks(inputs: &PlanInputs<'_>, refusals: &mut Vec<String>) -> Vec<ShadowSink> {
    let v1: BTreeMap<&str, _> = inputs
        .v1
        .sinks
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    let mut shadows = Vec::new();
    for new in &inputs.v2.sinks {
        let Some(old) = v1.get(new.name.as_str()) else {
            refusals.push(format!(
                "sink `{}` is new in v2: there is nothing of it to cut over (add it after the upgrade)",
                new.name
            ));
            continue;
        };
        if let Some(kind) = not_cut_over(&old.kind).or_else(|| not_cut_over(&new.kind)) {
            refusals.push(format!(
                "sink `{}` writes {kind}, which an upgrade cannot cut over yet (PostgreSQL, Kafka and file sinks can): v2 would write into it beside v1",
                new.name
            ));
            continue;
        }
        let (Some((kind, live)), Some((new_kind, new_live))) =
            (target(&old.kind), target(&new.kind))
        else {
            continue;
        };
        if (kind, &live) != (new_kind, &new_live) {
            refusals.push(format!(
                "sink `{}`: v1 writes {kind} `{live}`, v2 {new_kind} `{new_live}`: an upgrade replaces what a sink holds, it cannot move it",
                new.name
            ));
            continue;
        }
        if !same_server(&old.kind, &new.kind) {
            refusals.push(format!(
                "sink `{}`: v2 connects to another {kind} server than v1: an upgrade replaces what a sink holds, it cannot move it",
                new.name
            ));
        }
        if let Some(why) = inputs.unusable_dirs.get(&live).filter(|_| kind == "file") {
            refusals.push(format!("sink `{}`: {why}", new.name));
        }
        let key = |s: &kappa_job::plan::SinkPlan| s.key.as_ref().map(|k| k.text.clone());
        if key(old) != key(new) {
            refusals.push(format!(
                "sink `{}`: v2 keys its rows by {} instead of {}: the live rows could not be replaced one for one",
                new.name,
                key(new).map_or("nothing".into(), |k| format!("`{k}`")),
                key(old).map_or("nothing".into(), |k| format!("`{k}`"))
            ));
        }
        let columns = |s: &kappa_job::plan::SinkPlan| -> Vec<String> {
            s.schema
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect()
        };
        if columns(old) != columns(new) {
            refusals.push(format!(
                "sink `{}`: v2 writes the columns [{}] instead of [{}]: readers of the live {kind} would see another schema",
                new.name,
                columns(new).join(", "),
                columns(old).join(", ")
            ));
        }
        let shadow = shadow_name(kind, &live, inputs.upgrade_id);
        // A schema-qualified table: the limit is the table name's. v1's rows are kept
        // in a table whose name is longer still.
        let backup = super::sinks::backup_table(&live, inputs.upgrade_id);
        let limited = match kind {
            "postgres" => Some((
                backup.rsplit('.').next().unwrap_or(&backup),
                POSTGRES_NAME_MAX,
            )),
            "kafka" => Some((shadow.as_str(), KAFKA_TOPIC_MAX)),
            _ => None,
        };
        if let Some((name, max)) = limited
            && name.len() > max
        {
            refusals.push(format!(
                "sink `{}`: the {kind} name `{name}` the upgrade needs is longer than {max} characters",
                new.name
            ));
        }
        shadows.push(ShadowSink {
            sink: new.name.clone(),
            connector: kind.to_string(),
            live,
            shadow,
        });
    }
    for old in v1.values() {
        if !inputs.v2.sinks.iter().any(|s| s.name == old.name) {
            refusals.push(format!(
                "sink `{}` of v1 is not in v2: what it holds would stay v1's",
                old.name
            ));
        }
    }
    shadows
}

/// Whether v2 can take v1's state, and why (not).
fn start(inputs: &PlanInputs<'_>, changes: &[SpecChange]) -> UpgradeStart {
    let computed: Vec<&SpecChange> = changes
        .iter()
        .filter(|c| {
            matches!(
                c.part,
                Part::Sources | Part::Schema | Part::Logic | Part::Keys
            )
        })
        .collect();
    if let Some(c) = computed.first() {
        return UpgradeStart {
            from_savepoint: false,
            why: format!(
                "the {} changed ({}{}): history is recomputed from the earliest retained offsets",
                c.part,
                c.path,
                match computed.len() {
                    1 => String::new(),
                    n => format!(" and {} more", n - 1),
                }
            ),
        };
    }
    let keyed = |p: &JobPlan| -> Vec<String> {
        let mut uids: Vec<String> = p
            .graph()
            .operators()
            .filter(|o| o.kind.is_keyed())
            .map(|o| o.uid.clone())
            .collect();
        uids.sort();
        uids
    };
    let layouts = |p: &JobPlan| -> Vec<(String, Vec<String>)> {
        p.windows
            .iter()
            .map(|w| (w.uid.clone(), w.aggregate_names()))
            .collect()
    };
    let (v1, v2) = (inputs.v1, inputs.v2);
    let why_not = if keyed(v1) != keyed(v2) {
        Some("its keyed operators differ".to_string())
    } else if layouts(v1) != layouts(v2) {
        Some("its windows keep other aggregates".to_string())
    } else if v1.max_parallelism != v2.max_parallelism {
        Some(format!(
            "its state is split into {} key groups, v2 asks for {}",
            v1.max_parallelism, v2.max_parallelism
        ))
    } else {
        None
    };
    match why_not {
        Some(why) => UpgradeStart {
            from_savepoint: false,
            why: format!("v1's state does not fit v2 ({why}): history is recomputed"),
        },
        None => UpgradeStart {
            from_savepoint: true,
            why: "nothing v1 computes changed and its state fits v2: v2 starts from a savepoint of v1"
                .into(),
        },
    }
}
