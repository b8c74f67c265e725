//! Streaming SQL: the `[[queries]]` of a job — `CREATE VIEW <name> AS <query>` and
//! `INSERT INTO <sink> <query>` — parsed by sqlparser, planned by DataFusion's SQL planner
//! against the job's sources and views, and translated into the plan's operators. Windows are
//! the table functions TUMBLE, HOP and SESSION (see [`tvf`]); `ROW_NUMBER() OVER (…)` bounded
//! by a filter is a Top-N per window or a deduplication (see [`rank`]).

mod catalog;
#[cfg(test)]
mod changelog_tests;
mod join;
mod rank;
#[cfg(test)]
mod tests;
mod translate;
pub(crate) mod tvf;
mod versioned;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::DFSchema;
use datafusion_sql::planner::{ParserOptions, SqlToRel};
use datafusion_sql::sqlparser::ast::{Query, Statement, TableObject};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::parser::{Parser, ParserError};

use self::catalog::Catalog;
pub(crate) use self::translate::{Dataflow, Stream};
use self::translate::{Pending, Translator};
use self::tvf::WINDOW_TABLE_PREFIX;
use self::versioned::VERSIONED_TABLE_PREFIX;
use crate::graph::OperatorKind;
use crate::plan::{Output, SourcePlan};

/// How queries are planned: identifiers keep their case (columns are named as in the job's
/// schemas), strings are Utf8 as the sources decode them.
pub(crate) fn parser_options() -> ParserOptions {
    ParserOptions::new()
        .with_enable_ident_normalization(false)
        .with_map_string_types_to_utf8view(false)
}

/// A problem in a query, at a line and column of its SQL when the parser knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryError {
    pub message: String,
    /// 1-based (line, column) in the query's SQL.
    pub at: Option<(usize, usize)>,
}

impl From<String> for QueryError {
    fn from(message: String) -> Self {
        Self { message, at: None }
    }
}

/// Where a parser error is, from its text (`… at Line: 2, Column: 7`).
fn parser_position(e: &ParserError) -> Option<(usize, usize)> {
    let text = e.to_string();
    let number = |key: &str| -> Option<usize> {
        let rest = &text[text.rfind(key)? + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((number("Line: ")?, number("Column: ")?))
}

/// One `INSERT INTO` a sink.
#[derive(Debug, Clone)]
pub(crate) struct Insert {
    pub sink: String,
    pub stream: Stream,
}

/// What one `[[queries]]` table made.
#[derive(Debug, Default)]
pub(crate) struct Planned {
    pub inserts: Vec<Insert>,
    /// The windows its statements made: index, and the columns of their input.
    pub windows: Vec<(usize, SchemaRef)>,
}

/// Plans the queries of a job in order; each sees the views of those before it.
pub(crate) struct QueryPlanner {
    pub flow: Dataflow,
    tables: BTreeMap<String, Stream>,
    window_calls: usize,
    /// `FOR SYSTEM_TIME AS OF` tables, by the name they were renamed to.
    versioned: BTreeMap<String, versioned::VersionedCall>,
}

impl QueryPlanner {
    /// A planner whose tables are `sources`, by name.
    pub fn new(sources: &[SourcePlan]) -> Result<Self, String> {
        let mut tables = BTreeMap::new();
        for (i, s) in sources.iter().enumerate() {
            let schema = DFSchema::try_from(Arc::clone(&s.schema)).map_err(|e| e.to_string())?;
            tables.insert(
                s.name.clone(),
                Stream {
                    outputs: vec![Output::result(OperatorKind::Source(i))],
                    schema: Arc::new(schema),
                    time: s.event_time.as_ref().map(|e| e.column.clone()),
                    window: None,
                    updating: false,
                    windowed: None,
                    changelog: s.changelog(),
                },
            );
        }
        Ok(Self {
            flow: Dataflow::default(),
            tables,
            window_calls: 0,
            versioned: BTreeMap::new(),
        })
    }

    /// Plans the statements of one `[[queries]]` table; `name` prefixes the uids of its
    /// operators (default: the view or sink each statement defines).
    pub fn plan(
        &mut self,
        sql: &str,
        name: Option<&str>,
        lateness_ms: i64,
        ttl_ms: i64,
    ) -> Result<Planned, QueryError> {
        let parse_error = |e: ParserError| QueryError {
            at: parser_position(&e),
            message: e.to_string(),
        };
        let (tokens, versioned) =
            versioned::rewrite(sql, self.versioned.len()).map_err(parse_error)?;
        for call in versioned {
            let name = format!("{VERSIONED_TABLE_PREFIX}{}", self.versioned.len());
            self.versioned.insert(name, call);
        }
        let statements = Parser::new(&GenericDialect {})
            .with_tokens_with_locations(tokens)
            .parse_statements()
            .map_err(parse_error)?;
        if statements.is_empty() {
            return Err(
                "no statement: write INSERT INTO <sink> SELECT … or CREATE VIEW <name> AS SELECT …"
                    .to_string()
                    .into(),
            );
        }
        let mut planned = Planned::default();
        for statement in statements {
            let (target, query, view) = target(statement)?;
            let stream = self.statement(
                *query,
                name.unwrap_or(&target),
                (lateness_ms, ttl_ms),
                &mut planned,
            )?;
            self.flow.seal();
            match view {
                true => {
                    if self.tables.contains_key(&target) {
                        return Err(format!("`{target}` is already a source or a view").into());
                    }
                    self.tables.insert(target, stream);
                }
                false => planned.inserts.push(Insert {
                    sink: target,
                    stream,
                }),
            }
        }
        Ok(planned)
    }

    /// Plans one query: its window calls become tables, DataFusion plans it, the translation
    /// makes its operators.
    fn statement(
        &mut self,
        query: Query,
        name: &str,
        (lateness_ms, ttl_ms): (i64, i64),
        planned: &mut Planned,
    ) -> Result<Stream, String> {
        let mut statement = Statement::Query(Box::new(query));
        let calls = tvf::rewrite(&mut statement, self.window_calls)?;
        let mut tables = self.tables.clone();
        for (name, call) in &self.versioned {
            if let Some(base) = self.tables.get(&call.table) {
                tables.insert(name.clone(), base.clone());
            }
        }
        for call in calls {
            let table = format!("{WINDOW_TABLE_PREFIX}{}", self.window_calls);
            self.window_calls += 1;
            let stream = self.window_table(call)?;
            tables.insert(table, stream);
        }
        let mut catalog = Catalog::default();
        for (name, stream) in &tables {
            catalog.insert(name, stream.arrow());
        }
        let logical = SqlToRel::new_with_options(&catalog, parser_options())
            .sql_statement_to_plan(statement)
            .map_err(|e| e.strip_backtrace().replace('\n', " "))?;
        let mut translator = Translator {
            flow: &mut self.flow,
            tables: &tables,
            name,
            lateness_ms,
            ttl_ms,
            versioned: &self.versioned,
            windows: Vec::new(),
        };
        let stream = translator.plan(&logical)?;
        planned.windows.extend(translator.windows);
        Ok(stream)
    }

    /// The table of a window call: the rows of its table with `window_start` and
    /// `window_end`, computed when they are aggregated.
    fn window_table(&self, call: tvf::WindowCall) -> Result<Stream, String> {
        let text = call.text.clone();
        let Some(input) = self.tables.get(&call.table) else {
            let names: Vec<&str> = self.tables.keys().map(String::as_str).collect();
            return Err(format!(
                "`{text}`: unknown table `{}`: the tables are {}",
                call.table,
                names.join(", ")
            ));
        };
        if input.updating {
            return Err(format!(
                "`{text}`: `{}` is an updating result (an aggregate without a window): windows need rows that are never updated",
                call.table
            ));
        }
        input.refuse_changes(&format!("`{text}`: a window"))?;
        if input.window.is_some() {
            return Err(format!(
                "`{text}`: `{}` is itself a window table function: aggregate it first",
                call.table
            ));
        }
        match &input.time {
            Some(t) if *t == call.time_column => {}
            Some(t) => {
                return Err(format!(
                    "`{text}`: windows are in event time, and the watermarks of `{}` are on `{t}`: window on `{t}`",
                    call.table
                ));
            }
            None => {
                return Err(format!(
                    "`{text}`: `{}` has no event time: give the source an event_time, e.g. event_time = {{ column = \"{}\" }}",
                    call.table, call.time_column
                ));
            }
        }
        let arrow = input.arrow();
        let time_index = arrow
            .index_of(&call.time_column)
            .map_err(|_| format!("`{text}`: no column `{}`", call.time_column))?;
        let mut fields: Vec<Field> = arrow.fields().iter().map(|f| f.as_ref().clone()).collect();
        for c in ["window_start", "window_end"] {
            if arrow.index_of(c).is_ok() {
                return Err(format!(
                    "`{text}`: `{}` already has a column `{c}`: rename it (in a view of windows, e.g. `{c} AS hour_{}`) and window on that",
                    call.table,
                    c.trim_start_matches("window_")
                ));
            }
            fields.push(Field::new(c, DataType::Int64, false));
        }
        let schema = DFSchema::try_from(Schema::new(fields)).map_err(|e| e.to_string())?;
        Ok(Stream {
            outputs: input.outputs.clone(),
            schema: Arc::new(schema),
            time: input.time.clone(),
            window: Some(Pending {
                call,
                time_index,
                input_len: arrow.fields().len(),
            }),
            updating: false,
            windowed: None,
            changelog: false,
        })
    }
}

/// What a statement defines: (the sink or view, its query, whether it is a view).
fn target(statement: Statement) -> Result<(String, Box<Query>, bool), String> {
    match statement {
        Statement::Insert(insert) => {
            let TableObject::TableName(name) = &insert.table else {
                return Err("INSERT INTO names a sink of the job".into());
            };
            if !insert.columns.is_empty() || insert.overwrite || insert.on.is_some() {
                return Err(format!(
                    "INSERT INTO {name}: write INSERT INTO <sink> SELECT …; the sink takes the query's columns by name (no column list, OVERWRITE or ON CONFLICT)"
                ));
            }
            let Some(query) = insert.source else {
                return Err(format!("INSERT INTO {name} needs a query: INSERT INTO {name} SELECT …"));
            };
            Ok((name.to_string(), query, false))
        }
        Statement::CreateView(view) => {
            if view.materialized || !view.columns.is_empty() {
                return Err(format!(
                    "CREATE VIEW {}: write CREATE VIEW <name> AS SELECT … (name the columns in the SELECT)",
                    view.name
                ));
            }
            Ok((view.name.to_string(), view.query, true))
        }
        Statement::Query(_) => Err(
            "a query alone has nowhere to go: write INSERT INTO <sink> SELECT … or CREATE VIEW <name> AS SELECT …"
                .into(),
        ),
        other => Err(format!(
            "only CREATE VIEW and INSERT INTO are supported, not `{}`",
            other.to_string().chars().take(60).collect::<String>()
        )),
    }
}
