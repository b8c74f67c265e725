//! DataFusion's logical plan of one statement turned into the job's operators: scans of
//! sources and views become their streams, filters and projections stateless stages, an
//! aggregate over a window table function a keyed window. Every stream's records have exactly
//! the columns (order and types) of the logical node it came from, so the expressions
//! DataFusion planned evaluate on them unchanged. What a stream cannot compute is refused with
//! the reason.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::{Column, DFSchema, DFSchemaRef};
use datafusion_expr::expr::AggregateFunction as AggregateExpr;
use datafusion_expr::logical_plan::{Aggregate, Filter, Projection, Union};
use datafusion_expr::{Expr, ExprSchemable, LogicalPlan, lit, when};

use super::tvf::WindowCall;
use crate::graph::OperatorKind;
use crate::plan::{
    JoinPlan, Output, PlanEdge, StagePlan, StepPlan, WindowAssigner, WindowPlan, aggregate_type,
    change_field, with_change_column,
};
use crate::sql::{self, AggregateCall, AggregateFunction, CompiledExpr};

/// The aggregate an updating aggregate of a change stream counts each key's rows with (the
/// stage after it drops the column).
const ROWS_COLUMN: &str = "_kappa_rows";

/// The operators the queries of a job add to its plan.
#[derive(Debug, Default)]
pub(crate) struct Dataflow {
    pub stages: Vec<StagePlan>,
    pub windows: Vec<WindowPlan>,
    pub joins: Vec<JoinPlan>,
    pub rankings: Vec<crate::plan::RankPlan>,
    pub edges: Vec<PlanEdge>,
    /// Stages of the statement being planned, which a following step may join.
    open: HashSet<usize>,
    uids: HashSet<String>,
}

impl Dataflow {
    /// The statement is planned: its stages may be read by others and stay as they are.
    pub fn seal(&mut self) {
        self.open.clear();
    }

    /// A uid not given yet, `base` or `base#n`.
    pub(super) fn uid(&mut self, base: String) -> String {
        let mut uid = base.clone();
        let mut n = 1;
        while !self.uids.insert(uid.clone()) {
            n += 1;
            uid = format!("{base}#{n}");
        }
        uid
    }
}

/// The records some operator outputs carry, as a table of a statement.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    /// Where the records come from (several for a union).
    pub outputs: Vec<Output>,
    /// The logical columns: the records have these columns, in this order, with these types;
    /// a window table not aggregated yet has two more, `window_start` and `window_end`.
    pub schema: DFSchemaRef,
    /// The column the watermarks bound (an event-time column, or `window_start` of windows).
    pub time: Option<String>,
    /// Set for a window table function's rows: not computed until aggregated.
    pub window: Option<Pending>,
    /// An updating result: rows are upserts by its key (an aggregate without a window).
    pub updating: bool,
    /// Rows of windowed aggregates: the indexes of their window_start and window_end.
    pub windowed: Option<(usize, usize)>,
    /// A change stream: its records carry the change column after the schema's columns.
    /// Not updating, its rows are inserted and deleted (a `debezium-json` source, filtered
    /// and projected); updating, its keys are upserted and deleted.
    pub changelog: bool,
}

/// A window table function waiting for its aggregate.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub call: WindowCall,
    /// Index of the time column in the input's records.
    pub time_index: usize,
    /// Number of columns of the input's records (`window_start` comes next).
    pub input_len: usize,
}

impl Stream {
    /// The Arrow schema of the columns a user sees (unqualified names).
    pub fn arrow(&self) -> SchemaRef {
        Arc::new(self.schema.as_arrow().clone())
    }

    /// The columns of its records: those a user sees, then a change stream's change column.
    pub fn records(&self) -> SchemaRef {
        match self.changelog {
            true => with_change_column(self.schema.as_arrow()),
            false => self.arrow(),
        }
    }

    /// Refuses `what` (e.g. "a window") on a change stream.
    pub fn refuse_changes(&self, what: &str) -> Result<(), String> {
        match self.changelog {
            true => Err(format!(
                "{what} over a change stream (the inserts, updates and deletes of a debezium-json source) is not supported yet: aggregate it without a window (GROUP BY its keys, with count, sum or avg), filter or project it, or write it to a sink with a key"
            )),
            false => Ok(()),
        }
    }
}

/// `exprs` followed, for a change stream, by its change column passed on (the column after
/// the `columns` its records have).
fn with_changes(mut exprs: Vec<CompiledExpr>, input: &Stream, columns: usize) -> Vec<CompiledExpr> {
    if input.changelog {
        exprs.push(sql::change_passthrough(columns));
    }
    exprs
}

/// Translates the logical plans of one `[[queries]]` table.
pub(crate) struct Translator<'a> {
    pub(super) flow: &'a mut Dataflow,
    /// Sources, views and the window tables of the statement, by name.
    pub tables: &'a BTreeMap<String, Stream>,
    /// The prefix of the uids of its operators.
    pub name: &'a str,
    pub lateness_ms: i64,
    /// How long an updating aggregate keeps an idle key (0: forever).
    pub ttl_ms: i64,
    /// `FOR SYSTEM_TIME AS OF` tables, by their renamed table name.
    pub versioned: &'a BTreeMap<String, super::versioned::VersionedCall>,
    /// The windows it made: index, and the columns of their input.
    pub windows: Vec<(usize, SchemaRef)>,
}

/// An expression as SQL, for messages and the graph.
pub(super) fn shown(e: &Expr) -> String {
    match datafusion_sql::unparser::expr_to_sql(e) {
        Ok(sql) => sql.to_string(),
        Err(_) => e.human_display().to_string(),
    }
}

impl Translator<'_> {
    pub fn plan(&mut self, plan: &LogicalPlan) -> Result<Stream, String> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                let name = scan.table_name.table();
                let table = self
                    .tables
                    .get(name)
                    .ok_or_else(|| format!("unknown table `{name}`"))?;
                if scan.projection.is_some() || !scan.filters.is_empty() || scan.fetch.is_some() {
                    return Err(format!("the scan of `{name}` was rewritten unexpectedly"));
                }
                Ok(Stream {
                    schema: Arc::clone(&scan.projected_schema),
                    ..table.clone()
                })
            }
            LogicalPlan::SubqueryAlias(a) => {
                let input = self.plan(&a.input)?;
                Ok(Stream {
                    schema: Arc::clone(&a.schema),
                    ..input
                })
            }
            LogicalPlan::Filter(f) if super::rank::is_ranking(f) => self.rank(f),
            LogicalPlan::Filter(f) => self.filter(f),
            LogicalPlan::Projection(p) => self.projection(p),
            LogicalPlan::Aggregate(a) => self.aggregate(a),
            LogicalPlan::Union(u) => self.union(u),
            LogicalPlan::Sort(_) => Err("ORDER BY sorts a whole table, and a stream never ends: \
                 to keep the first rows of each window, use \
                 SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, \
                 window_end ORDER BY …) AS rownum FROM …) WHERE rownum <= N"
                .into()),
            LogicalPlan::Limit(_) => {
                Err("LIMIT needs the end of a stream, which never comes: remove it".into())
            }
            LogicalPlan::Distinct(_) => Err("DISTINCT (and UNION without ALL) keeps every row \
                 it has seen: aggregate in a window instead (GROUP BY the columns), or use \
                 UNION ALL"
                .into()),
            LogicalPlan::Join(j) => self.join(j),
            LogicalPlan::Window(w) => Err(super::rank::refused(w)),
            LogicalPlan::Subquery(_) => Err("subqueries in expressions are not supported".into()),
            other => Err(format!(
                "`{}` cannot run on a stream",
                other.display().to_string().trim()
            )),
        }
    }

    /// Adds `step` after every output of `input`: to a stage of this statement that ends
    /// there, or as a new stage.
    pub(super) fn step(
        &mut self,
        input: &Stream,
        step: StepPlan,
        schema: SchemaRef,
    ) -> Vec<Output> {
        let mut outputs = Vec::with_capacity(input.outputs.len());
        for out in &input.outputs {
            if let (OperatorKind::Steps(i), 0) = (out.op, out.port)
                && self.flow.open.contains(&i)
            {
                let stage = &mut self.flow.stages[i];
                stage.steps.push(step.clone());
                stage.schema = Arc::clone(&schema);
                outputs.push(*out);
                continue;
            }
            let uid = self.flow.uid(format!("{}.steps", self.name));
            self.flow.stages.push(StagePlan {
                uid,
                steps: vec![step.clone()],
                schema: Arc::clone(&schema),
            });
            let i = self.flow.stages.len() - 1;
            self.flow.open.insert(i);
            let op = OperatorKind::Steps(i);
            self.flow.edges.push(PlanEdge { from: *out, to: op });
            outputs.push(Output::result(op));
        }
        outputs
    }

    /// Whether `e` reads `window_start` or `window_end` of a window table not aggregated yet.
    fn reads_window(e: &Expr, input: &Stream) -> bool {
        let Some(w) = &input.window else {
            return false;
        };
        e.column_refs().iter().any(|c| {
            input
                .schema
                .index_of_column(c)
                .is_ok_and(|i| i >= w.input_len)
        })
    }

    fn filter(&mut self, f: &Filter) -> Result<Stream, String> {
        let input = self.plan(&f.input)?;
        let text = shown(&f.predicate);
        if Self::reads_window(&f.predicate, &input) {
            return Err(format!(
                "`{text}`: window_start and window_end are known after the aggregation: filter on them in HAVING or in a query over this one"
            ));
        }
        if input.updating {
            return Err(format!(
                "`{text}`: filtering an updating result would leave rows that stop matching in the sink: not supported yet (filter before the aggregate, or aggregate per window)"
            ));
        }
        let c = sql::compile_logical(&text, "filter".into(), f.predicate.clone(), &input.schema)?;
        if c.data_type != DataType::Boolean {
            return Err(format!(
                "a filter must be a boolean expression; `{text}` is {}",
                c.data_type
            ));
        }
        let schema = match &input.window {
            Some(w) => Arc::new(Schema::new(
                input.schema.as_arrow().fields()[..w.input_len].to_vec(),
            )),
            None => input.records(),
        };
        let outputs = self.step(&input, StepPlan::Filter(c), schema);
        Ok(Stream { outputs, ..input })
    }

    fn projection(&mut self, p: &Projection) -> Result<Stream, String> {
        let input = self.plan(&p.input)?;
        let identity = p.expr.len() == input.schema.fields().len()
            && p.expr.iter().enumerate().all(|(i, e)| {
                matches!(e, Expr::Column(c) if input.schema.index_of_column(c).is_ok_and(|at| at == i))
            });
        if identity {
            return Ok(Stream {
                schema: Arc::clone(&p.schema),
                ..input
            });
        }
        if let Some(w) = &input.window {
            return Err(format!(
                "`{}`: a window table function's rows are aggregated: GROUP BY window_start, window_end (and any keys)",
                w.call.text
            ));
        }
        if let Some(renamed) = self.rename_window(&input, p) {
            return Ok(renamed);
        }
        let mut exprs = Vec::with_capacity(p.expr.len());
        let mut time = None;
        let (mut start, mut end) = (None, None);
        for (i, (e, field)) in p.expr.iter().zip(p.schema.fields()).enumerate() {
            let inner = e.clone().unalias();
            if let Expr::Column(c) = &inner {
                if input.time.as_deref() == Some(c.name()) {
                    time = Some(field.name().clone());
                }
                let at = input.schema.index_of_column(c).ok();
                match input.windowed {
                    Some((s, _)) if at == Some(s) => start = Some(i),
                    Some((_, e)) if at == Some(e) => end = Some(i),
                    _ => {}
                }
            }
            let c = sql::compile_logical(&shown(e), field.name().clone(), inner, &input.schema)?;
            exprs.push(c);
        }
        let exprs = with_changes(exprs, &input, input.schema.fields().len());
        let schema = Arc::new(sql::schema_of(&exprs));
        let outputs = self.step(
            &input,
            StepPlan::Select {
                exprs,
                schema: Arc::clone(&schema),
            },
            schema,
        );
        Ok(Stream {
            outputs,
            schema: Arc::clone(&p.schema),
            time,
            window: None,
            updating: input.updating,
            windowed: start.zip(end),
            changelog: input.changelog,
        })
    }

    /// A projection that only renames the columns of a window this statement just made
    /// names the window's columns instead of adding a stage.
    fn rename_window(&mut self, input: &Stream, p: &Projection) -> Option<Stream> {
        let [
            Output {
                op: OperatorKind::Window(w),
                port: 0,
            },
        ] = input.outputs.as_slice()
        else {
            return None;
        };
        if !self.windows.iter().any(|(i, _)| i == w)
            || p.expr.len() != input.schema.fields().len()
            || input.changelog
        {
            return None;
        }
        let in_order = p.expr.iter().enumerate().all(|(i, e)| {
            matches!(e.clone().unalias(), Expr::Column(c) if input.schema.index_of_column(&c).is_ok_and(|at| at == i))
        });
        if !in_order {
            return None;
        }
        let names: Vec<String> = p.schema.fields().iter().map(|f| f.name().clone()).collect();
        let window = &mut self.flow.windows[*w];
        let keys = window.keys.len();
        for (k, name) in window.keys.iter_mut().zip(&names) {
            k.name = name.clone();
        }
        for ((n, _), name) in window.aggregates.iter_mut().zip(&names[keys + 2..]) {
            *n = name.clone();
        }
        let fields: Vec<Field> = window
            .output_schema
            .fields()
            .iter()
            .zip(&names)
            .map(|(f, name)| f.as_ref().clone().with_name(name))
            .collect();
        window.output_schema = Arc::new(Schema::new(fields));
        let time = input.time.as_ref().and_then(|t| {
            let i = input.schema.as_arrow().index_of(t).ok()?;
            names.get(i).cloned()
        });
        Some(Stream {
            outputs: input.outputs.clone(),
            schema: Arc::clone(&p.schema),
            time,
            window: None,
            updating: input.updating,
            windowed: input.windowed,
            changelog: false,
        })
    }

    fn union(&mut self, u: &Union) -> Result<Stream, String> {
        let mut outputs = Vec::new();
        let mut times = Vec::new();
        let mut updating = false;
        let mut changelogs = Vec::new();
        let want = u.schema.as_arrow();
        for input in &u.inputs {
            let s = self.plan(input)?;
            if let Some(w) = &s.window {
                return Err(format!(
                    "`{}`: aggregate a window table function before UNION ALL",
                    w.call.text
                ));
            }
            let types = |schema: &Schema| -> Vec<DataType> {
                schema
                    .fields()
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect()
            };
            if types(s.schema.as_arrow()) != types(want) {
                return Err(
                    "the inputs of UNION ALL have different column types: CAST them alike".into(),
                );
            }
            outputs.extend(s.outputs);
            times.push(s.time);
            updating |= s.updating;
            changelogs.push(s.changelog);
        }
        let changelog = changelogs.iter().any(|c| *c);
        if changelog && !changelogs.iter().all(|c| *c) {
            return Err("UNION ALL of a change stream (a debezium-json source) and a stream of rows that are never deleted is not supported yet: union change streams only".into());
        }
        times.dedup();
        let time = match times.as_slice() {
            [one] => one.clone(),
            _ => None,
        };
        Ok(Stream {
            outputs,
            schema: Arc::clone(&u.schema),
            time,
            window: None,
            updating,
            windowed: None,
            changelog,
        })
    }

    fn aggregate(&mut self, a: &Aggregate) -> Result<Stream, String> {
        let input = self.plan(&a.input)?;
        if input.updating {
            return Err("aggregating an updating result (an aggregate without a window) is not supported yet".into());
        }
        // Rows of windowed results grouped by their window_start and window_end: per window.
        let grouped = |at: usize| {
            a.group_expr.iter().any(|g| {
                matches!(g, Expr::Column(c) if input.schema.index_of_column(c).is_ok_and(|i| i == at))
            })
        };
        let carried = input.windowed.filter(|(s, e)| grouped(*s) && grouped(*e));
        // Which group columns are the window's: (start, end) indexes in the input.
        let window_columns = match (&input.window, carried) {
            (Some(w), _) => Some((w.input_len, w.input_len + 1)),
            (None, carried) => carried,
        };
        // A window table function's rows, windowed rows, or an updating aggregate over all
        // time.
        let (assigner, time_index, input_len, call) = match (&input.window, carried) {
            (Some(w), _) => (
                w.call.assigner,
                w.time_index,
                w.input_len,
                Some(w.call.text.clone()),
            ),
            (None, Some((start, end))) => (
                WindowAssigner::Carried { start, end },
                start,
                input.schema.fields().len(),
                Some("the windows of the rows".to_string()),
            ),
            (None, None) => {
                let arrow = input.arrow();
                let Some(time_index) = input.time.as_ref().and_then(|t| arrow.index_of(t).ok())
                else {
                    return Err("an aggregate without a window needs its input's event time (it bounds the state TTL): give the source an event_time".into());
                };
                let global = WindowAssigner::Global {
                    ttl_ms: self.ttl_ms,
                };
                (global, time_index, arrow.fields().len(), None)
            }
        };
        let fields = a.schema.fields();
        let (mut start, mut end) = (None, None);
        let mut keys: Vec<(usize, CompiledExpr)> = Vec::new();
        for (i, g) in a.group_expr.iter().enumerate() {
            if let Expr::Column(c) = g
                && let Ok(at) = input.schema.index_of_column(c)
                && let Some((s, e)) = window_columns
                && (at == s || at == e)
            {
                match at == s {
                    true => start = Some(i),
                    false => end = Some(i),
                }
                continue;
            }
            if matches!(g, Expr::GroupingSet(_)) {
                return Err("GROUPING SETS, ROLLUP and CUBE are not supported".into());
            }
            if Self::reads_window(g, &input) {
                return Err(format!(
                    "`{}`: group by window_start and window_end as they are",
                    shown(g)
                ));
            }
            let key = sql::compile_logical(
                &shown(g),
                fields[i].name().clone(),
                g.clone(),
                &input.schema,
            )?;
            keys.push((i, key));
        }
        let windowed = match (&call, start, end) {
            (Some(_), Some(start), Some(end)) => Some((start, end)),
            (Some(text), _, _) => {
                return Err(format!(
                    "`{text}`: GROUP BY window_start, window_end (and any keys) to aggregate each window"
                ));
            }
            (None, _, _) => None,
        };
        if windowed.is_none() && keys.is_empty() {
            return Err("an aggregate without GROUP BY and without a window would be one row forever: GROUP BY a key, or aggregate per window with TUMBLE/HOP/SESSION".into());
        }
        let mut aggregates = Vec::with_capacity(a.aggr_expr.len() + 1);
        for (j, e) in a.aggr_expr.iter().enumerate() {
            let name = fields[a.group_expr.len() + j].name().clone();
            aggregates.push((name, aggregate_call(e, &input.schema)?));
        }
        // A change stream's deleted rows are retracted from their key's aggregates; a key
        // whose rows are all deleted is deleted. The rows of each key are counted for that.
        let retract = input.changelog.then_some(input_len);
        if retract.is_some() {
            if let Some((j, _)) = aggregates.iter().enumerate().find(|(_, (_, c))| {
                !matches!(
                    c.function,
                    AggregateFunction::Count | AggregateFunction::Sum | AggregateFunction::Avg
                )
            }) {
                return Err(format!(
                    "`{}`: over a change stream (a debezium-json source) an aggregate must undo what a deleted row added: count, sum and avg can; {} cannot yet",
                    shown(&a.aggr_expr[j]),
                    aggregates[j].1.function.name()
                ));
            }
            aggregates.push((
                ROWS_COLUMN.to_string(),
                AggregateCall {
                    function: AggregateFunction::Count,
                    argument: None,
                },
            ));
        }
        let (start_name, end_name) = match windowed {
            Some((s, e)) => (fields[s].name().clone(), fields[e].name().clone()),
            None => ("window_start".to_string(), "window_end".to_string()),
        };
        // Windows without keys (GROUP BY window_start, window_end only) get one constant key,
        // so all their rows meet in one key group; the conforming stage drops it.
        let constant_key = keys.is_empty();
        if constant_key {
            let key = sql::compile_logical("true", "__all".into(), lit(true), &input.schema)?;
            keys.push((usize::MAX, key));
        }
        let mut out: Vec<Field> = keys
            .iter()
            .map(|(_, k)| Field::new(&k.name, k.data_type.clone(), k.nullable))
            .collect();
        out.push(Field::new(&start_name, DataType::Int64, false));
        out.push(Field::new(&end_name, DataType::Int64, false));
        for (name, call) in &aggregates {
            out.push(Field::new(
                name,
                aggregate_type(call),
                !call.function.is_count(),
            ));
        }
        // What the stream's schema says: the records less their change column.
        let produced_schema = Arc::new(Schema::new(out.clone()));
        if retract.is_some() {
            out.push(change_field());
        }
        let output_schema = Arc::new(Schema::new(out));
        let kind = if windowed.is_some() {
            "window"
        } else {
            "aggregate"
        };
        let uid = self.flow.uid(format!("{}.{kind}", self.name));
        let index = self.flow.windows.len();
        self.flow.windows.push(WindowPlan {
            uid,
            assigner,
            allowed_lateness_ms: if windowed.is_some() {
                self.lateness_ms
            } else {
                0
            },
            keys: keys.iter().map(|(_, k)| k.clone()).collect(),
            time_index,
            aggregates,
            output_schema: Arc::clone(&output_schema),
            late_output: None,
            retract,
        });
        let input_columns = input.schema.as_arrow().fields()[..input_len].to_vec();
        self.windows
            .push((index, Arc::new(Schema::new(input_columns))));
        let op = OperatorKind::Window(index);
        for from in &input.outputs {
            self.flow.edges.push(PlanEdge {
                from: *from,
                to: op,
            });
        }
        // Where each logical column (group expressions, then aggregates) is in the window's
        // rows (keys, window_start, window_end, aggregates).
        let n = keys.len();
        let mut at = Vec::with_capacity(fields.len());
        let mut next_key = usize::from(constant_key);
        for i in 0..a.group_expr.len() {
            at.push(match windowed {
                Some((s, _)) if i == s => n,
                Some((_, e)) if i == e => n + 1,
                _ => {
                    next_key += 1;
                    next_key - 1
                }
            });
        }
        at.extend((0..a.aggr_expr.len()).map(|j| n + 2 + j));
        let produced = Stream {
            outputs: vec![Output::result(op)],
            schema: Arc::new(DFSchema::try_from(produced_schema).map_err(|e| e.to_string())?),
            time: windowed.map(|_| start_name),
            window: None,
            updating: windowed.is_none(),
            windowed: windowed.map(|_| (n, n + 1)),
            changelog: retract.is_some(),
        };
        self.conform(produced, &a.schema, &at)
    }

    /// `stream` rearranged to `target`'s columns: target column i is `stream`'s column
    /// `at[i]`, cast to the target's type. Nothing is added when they already agree.
    fn conform(
        &mut self,
        stream: Stream,
        target: &DFSchemaRef,
        at: &[usize],
    ) -> Result<Stream, String> {
        let have = stream.arrow();
        let same = at
            .iter()
            .enumerate()
            .all(|(i, j)| i == *j && have.field(*j).data_type() == target.field(i).data_type())
            && at.len() == have.fields().len();
        if same {
            return Ok(Stream {
                schema: Arc::clone(target),
                ..stream
            });
        }
        let mut exprs = Vec::with_capacity(at.len());
        for (i, j) in at.iter().enumerate() {
            let field = have.field(*j);
            let column = Expr::Column(Column::new_unqualified(field.name()));
            let want = target.field(i).data_type();
            let e = match field.data_type() == want {
                true => column,
                false => column
                    .cast_to(want, &stream.schema)
                    .map_err(|e| e.to_string())?,
            };
            exprs.push(sql::compile_logical(
                &shown(&e),
                target.field(i).name().clone(),
                e,
                &stream.schema,
            )?);
        }
        let exprs = with_changes(exprs, &stream, have.fields().len());
        let schema = Arc::new(sql::schema_of(&exprs));
        let time = stream.time.clone();
        let outputs = self.step(
            &stream,
            StepPlan::Select {
                exprs,
                schema: Arc::clone(&schema),
            },
            schema,
        );
        Ok(Stream {
            outputs,
            schema: Arc::clone(target),
            time,
            window: None,
            updating: stream.updating,
            changelog: stream.changelog,
            windowed: stream.windowed.and_then(|(s, e)| {
                Some((
                    at.iter().position(|j| *j == s)?,
                    at.iter().position(|j| *j == e)?,
                ))
            }),
        })
    }
}

/// An aggregate expression of a window: one of the functions windows compute, over one
/// argument; `FILTER (WHERE c)` becomes `CASE WHEN c THEN argument END` (aggregates skip
/// nulls).
fn aggregate_call(e: &Expr, schema: &DFSchema) -> Result<AggregateCall, String> {
    let text = shown(e);
    let Expr::AggregateFunction(AggregateExpr { func, params }) = e.clone().unalias() else {
        return Err(format!("`{text}` is not an aggregate function"));
    };
    let name = func.name().to_lowercase();
    if !params.order_by.is_empty() || params.null_treatment.is_some() {
        return Err(format!(
            "`{text}`: ORDER BY and IGNORE/RESPECT NULLS inside an aggregate are not supported"
        ));
    }
    let function = match (name.as_str(), params.distinct) {
        ("count", false) => AggregateFunction::Count,
        ("count", true) => AggregateFunction::CountDistinct,
        ("approx_distinct", _) => AggregateFunction::ApproxCountDistinct,
        ("sum", false) => AggregateFunction::Sum,
        ("min", _) => AggregateFunction::Min,
        ("max", _) => AggregateFunction::Max,
        ("avg" | "mean", false) => AggregateFunction::Avg,
        ("first_value", false) => AggregateFunction::FirstValue,
        ("last_value", false) => AggregateFunction::LastValue,
        (other, distinct) => {
            return Err(format!(
                "`{text}`: {other}{} is not supported; use count, count(DISTINCT …), approx_distinct, sum, min, max, avg, first_value or last_value",
                if distinct { " DISTINCT" } else { "" }
            ));
        }
    };
    let [argument] = params.args.as_slice() else {
        return Err(format!("`{text}`: {name} takes one argument"));
    };
    // count(*) is planned with a wildcard (or, rewritten, count(1)).
    #[allow(deprecated)]
    let star = function == AggregateFunction::Count
        && matches!(argument, Expr::Wildcard { .. } | Expr::Literal(..) if !matches!(argument, Expr::Literal(v, _) if v.is_null()));
    let argument = match (params.filter, star) {
        (None, true) => {
            return Ok(AggregateCall {
                function,
                argument: None,
            });
        }
        (None, false) => argument.clone(),
        (Some(f), true) => when(*f, lit(1i64)).end().map_err(|e| e.to_string())?,
        (Some(f), false) => when(*f, argument.clone())
            .end()
            .map_err(|e| e.to_string())?,
    };
    let c = sql::compile_logical(&text, name.clone(), argument, schema)?;
    sql::check_argument(&text, &name, function, &c.data_type)?;
    Ok(AggregateCall {
        function,
        argument: Some(c),
    })
}
