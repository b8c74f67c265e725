//! Planning the SQL form of a job: its `[[queries]]` in order, then every sink from what is
//! inserted into it (the union of its INSERTs) or the late events of the query naming it.
//! A SQL error is located at its line and column in the job file.

use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use super::{
    MAX_DURATION_MS, Operators, PlanEdge, Planner, SinkPlan, SourcePlan, WindowPlan, late_schema,
    millis, span,
};
use crate::graph::{LATE_PORT, OperatorKind};
use crate::plan::Output;
use crate::query::{QueryError, QueryPlanner, Stream};
use crate::spec::{JobSpec, QuerySpec, SinkConnector, SinkSpec};

/// The most `[[queries]]` tables a job may have.
pub const MAX_QUERIES: usize = 100;

/// Where a sink's records come from.
enum Feed {
    Inserts(Vec<Stream>),
    /// The late events of window `window`, whose input has the columns `input`.
    Late {
        window: usize,
        input: SchemaRef,
    },
}

impl Planner<'_> {
    /// The dataflow of the SQL form: `[[queries]]` and sinks (no `[[steps]]` or windows).
    pub(super) fn sql_form(&mut self, spec: &JobSpec, sources: &[SourcePlan]) -> Operators {
        for (present, field) in [
            (!spec.steps.is_empty(), "steps"),
            (spec.window.is_some(), "window"),
            (!spec.windows.is_empty(), "windows"),
        ] {
            if present {
                self.err(None, field, format!("a job with [[queries]] has its logic in SQL: move `{field}` into a query (WHERE, SELECT, TUMBLE/HOP/SESSION … GROUP BY)"));
            }
        }
        if spec.queries.len() > MAX_QUERIES {
            let n = spec.queries.len();
            self.err(None, "queries", format!("{n} given; at most {MAX_QUERIES}"));
            return Operators::default();
        }
        let mut planner = match QueryPlanner::new(sources) {
            Ok(p) => p,
            Err(e) => {
                self.err(None, "sources", e);
                return Operators::default();
            }
        };
        let mut feeds: Vec<(String, Feed)> = Vec::new();
        for (i, q) in spec.queries.iter().enumerate() {
            let field = format!("queries[{i}]");
            let lateness = millis(q.allowed_lateness.0);
            if lateness > MAX_DURATION_MS {
                self.err(
                    None,
                    &format!("{field}.allowed_lateness"),
                    "must be at most 100 years",
                );
            }
            let name = q.name.as_ref().map(|n| n.get_ref().trim());
            let ttl = q.state_ttl.as_ref().map_or(0, |t| millis(t.get_ref().0));
            if let Some(t) = &q.state_ttl
                && !(1..=MAX_DURATION_MS).contains(&ttl)
            {
                self.err(
                    span(t),
                    &format!("{field}.state_ttl"),
                    "must be between 1ms and 100 years",
                );
            }
            let limits = (lateness.min(MAX_DURATION_MS), ttl.clamp(0, MAX_DURATION_MS));
            let planned = match planner.plan(q.sql.get_ref(), name, limits.0, limits.1) {
                Ok(p) => p,
                Err(e) => {
                    // Later queries may read the views of a broken one: stop at the first.
                    self.query_error(q, &field, e);
                    return Operators::default();
                }
            };
            for insert in planned.inserts {
                match feeds.iter_mut().find(|(s, _)| *s == insert.sink) {
                    Some((_, Feed::Inserts(streams))) => streams.push(insert.stream),
                    _ => feeds.push((insert.sink, Feed::Inserts(vec![insert.stream]))),
                }
            }
            if let Some(late) = &q.late_output {
                match planned.windows.as_slice() {
                    [(window, input)] => feeds.push((
                        late.get_ref().trim().to_string(),
                        Feed::Late {
                            window: *window,
                            input: Arc::clone(input),
                        },
                    )),
                    _ => self.err(
                        span(late),
                        &format!("{field}.late_output"),
                        format!(
                            "late events come from one window, and this query has {}",
                            planned.windows.len()
                        ),
                    ),
                }
            }
        }
        let mut flow = planner.flow;
        let sinks = self.query_sinks(spec, &mut flow.windows, &mut flow.edges, feeds);
        Operators {
            stages: flow.stages,
            windows: flow.windows,
            joins: flow.joins,
            rankings: flow.rankings,
            sinks,
            edges: flow.edges,
        }
    }

    /// Every sink, with the schema of what it receives; errors for a sink nothing is
    /// inserted into and for an INSERT into no sink.
    fn query_sinks(
        &mut self,
        spec: &JobSpec,
        windows: &mut [WindowPlan],
        edges: &mut Vec<PlanEdge>,
        mut feeds: Vec<(String, Feed)>,
    ) -> Vec<SinkPlan> {
        let named = self.single_or_named(spec.sink.as_ref(), &spec.sinks, "sink", "writes to");
        let checkpoints = spec
            .checkpoints
            .as_ref()
            .is_none_or(|c| c.enabled != Some(false));
        let mut sinks = Vec::new();
        for (name, prefix, s) in &named {
            let mine: Vec<Feed> = {
                let (mine, rest) = feeds.into_iter().partition(|(n, _)| n == name);
                feeds = rest;
                mine.into_iter().map(|(_, f)| f).collect()
            };
            let k = sinks.len();
            let (schema, froms, changes) = match mine.as_slice() {
                [] => {
                    self.err(None, prefix, format!("nothing is written to sink `{name}`: INSERT INTO {name} SELECT … in a query"));
                    continue;
                }
                [Feed::Late { window, input }] => {
                    let Some(w) = windows.get_mut(*window) else {
                        continue;
                    };
                    w.late_output = Some(k);
                    let from = Output {
                        op: OperatorKind::Window(*window),
                        port: LATE_PORT,
                    };
                    (late_schema(input), vec![from], false)
                }
                feeds if feeds.iter().all(|f| matches!(f, Feed::Inserts(_))) => {
                    let streams: Vec<&Stream> = feeds
                        .iter()
                        .flat_map(|f| match f {
                            Feed::Inserts(s) => s.iter().collect(),
                            Feed::Late { .. } => Vec::new(),
                        })
                        .collect();
                    let schema = streams[0].arrow();
                    if let Some(other) = streams
                        .iter()
                        .find(|s| s.arrow().fields() != schema.fields())
                    {
                        self.err(None, prefix, format!(
                            "the queries inserting into `{name}` give different columns: {} and {}",
                            columns(&schema), columns(&other.arrow())
                        ));
                        continue;
                    }
                    if let Some(w) = streams.iter().find_map(|s| s.window.as_ref()) {
                        self.err(None, prefix, format!("`{}`: aggregate a window table function (GROUP BY window_start, window_end, …) before inserting it", w.call.text));
                        continue;
                    }
                    if let Some(why) = streams
                        .iter()
                        .any(|s| s.updating)
                        .then(|| refuses_updates(s))
                        .flatten()
                    {
                        self.err(None, prefix, format!(
                            "`{name}` receives an updating result (an aggregate without a window: each row is an upsert by its GROUP BY key), and {why}"
                        ));
                        continue;
                    }
                    let changes = streams.iter().filter(|s| s.changelog).count();
                    if changes > 0 && changes < streams.len() {
                        self.err(None, prefix, format!(
                            "`{name}` receives a change stream (of a debezium-json source) and rows that are never deleted: give each a sink of its own"
                        ));
                        continue;
                    }
                    if let Some(why) = (changes > 0).then(|| refuses_deletes(s)).flatten() {
                        self.err(None, prefix, format!(
                            "`{name}` receives a change stream (rows of a debezium-json source, or an aggregate of them, are deleted), and {why}"
                        ));
                        continue;
                    }
                    (
                        schema,
                        streams.iter().flat_map(|s| s.outputs.clone()).collect(),
                        changes > 0,
                    )
                }
                _ => {
                    self.err(None, prefix, format!("sink `{name}` receives late events and query results: give the late events a sink of their own"));
                    continue;
                }
            };
            let mut plan = self.sink(s, prefix, &schema, true, checkpoints);
            plan.changes = changes;
            plan.name = name.clone();
            plan.uid = prefix.to_string();
            edges.extend(froms.into_iter().map(|from| PlanEdge {
                from,
                to: OperatorKind::Sink(k),
            }));
            sinks.push(plan);
        }
        for (name, _) in feeds {
            let names: Vec<&str> = named.iter().map(|(n, _, _)| n.as_str()).collect();
            self.err(
                None,
                "queries",
                format!("no sink `{name}`: the sinks are {}", names.join(", ")),
            );
        }
        sinks
    }

    /// Records a query's error at its place in the file.
    fn query_error(&mut self, q: &QuerySpec, field: &str, e: QueryError) {
        let at = e.at.and_then(|(line, column)| {
            sql_offset(self.loc.text, q.sql.span(), q.sql.get_ref(), line, column)
        });
        let at = at.map(|o| o..o + 1).or_else(|| span(&q.sql));
        self.err(at, &format!("{field}.sql"), e.message);
    }
}

/// Why a sink cannot apply upserts, if it cannot.
fn refuses_updates(s: &SinkSpec) -> Option<&'static str> {
    match (s.connector, &s.key) {
        (
            SinkConnector::File
            | SinkConnector::Stdout
            | SinkConnector::Parquet
            | SinkConnector::Iceberg,
            _,
        ) => Some(
            "this sink only appends: write it to a kafka sink with a `key` of the GROUP BY columns (a compacted topic keeps the latest per key) or to postgres",
        ),
        (SinkConnector::Kafka, None) => Some(
            "a kafka sink applies upserts by its record key: set `key` to the GROUP BY columns, e.g. key = \"{item_id}\"",
        ),
        _ => None,
    }
}

/// Why a sink cannot apply a change stream's deletes, if it cannot.
fn refuses_deletes(s: &SinkSpec) -> Option<&'static str> {
    match (s.connector, &s.key) {
        (
            SinkConnector::Postgres
            | SinkConnector::Redis
            | SinkConnector::Elasticsearch
            | SinkConnector::Blackhole,
            _,
        ) => None,
        (SinkConnector::Kafka, Some(_)) => None,
        (SinkConnector::Kafka, None) => Some(
            "a kafka sink deletes a key with a tombstone (a record without a value): set `key` to the columns that identify a row, e.g. key = \"{id}\"",
        ),
        _ => Some(
            "this sink only appends: write the changes to postgres, redis, elasticsearch, blackhole or a kafka sink with a `key`",
        ),
    }
}

fn columns(schema: &arrow::datatypes::Schema) -> String {
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    format!("[{}]", names.join(", "))
}

/// The byte offset in the job file of (line, column) of a query's SQL, whose TOML string
/// value spans `span` of `file` (escapes before the place are not accounted for).
fn sql_offset(
    file: &str,
    span: Range<usize>,
    sql: &str,
    line: usize,
    column: usize,
) -> Option<usize> {
    let literal = file.get(span.clone())?;
    let quote = if literal.starts_with("\"\"\"") || literal.starts_with("'''") {
        3
    } else {
        1
    };
    let mut start = span.start + quote;
    // A newline right after the opening delimiter of a multi-line string is not part of it.
    if quote == 3 {
        if file[start..].starts_with("\r\n") {
            start += 2;
        } else if file[start..].starts_with('\n') {
            start += 1;
        }
    }
    let mut offset = 0;
    for (i, l) in sql.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col: usize = l
                .chars()
                .take(column.saturating_sub(1))
                .map(char::len_utf8)
                .sum();
            return Some((start + offset + col).min(span.end));
        }
        offset += l.len();
    }
    None
}
