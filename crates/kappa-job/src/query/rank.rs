//! `ROW_NUMBER() OVER (PARTITION BY … ORDER BY …)` bounded by the filter above it — the only
//! use of OVER a stream can compute — becomes a keyed ranking operator ([`RankPlan`]):
//!
//! - Top-N per window: PARTITION BY the window_start and window_end of a windowed aggregate,
//!   or of a TUMBLE or HOP table function's rows (the ranking assigns their windows), and any
//!   other columns; ORDER BY anything; `WHERE rownum <= N` (or `< N`, `= 1`).
//! - Deduplication (keep the first row per key): PARTITION BY keys, ORDER BY the stream's
//!   event time ASC, `WHERE rownum = 1`.
//!
//! DataFusion plans the pattern as Filter(bound) over Projection(columns, row number) over
//! Window(ROW_NUMBER); anything else with OVER is refused with the reason.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion_common::ScalarValue;
use datafusion_expr::expr::WindowFunction;
use datafusion_expr::logical_plan::{Filter, Projection, Window};
use datafusion_expr::{BinaryExpr, Expr, LogicalPlan, Operator};

use super::translate::{Pending, Stream, Translator, shown};
use crate::graph::OperatorKind;
use crate::plan::{Output, PlanEdge, RankKind, RankOrder, RankPlan, WindowAssigner};
use crate::sql::{self, is_value_type};

/// The most rows a Top-N keeps per partition.
pub const MAX_TOP_N: usize = 10_000;

/// The projection naming the row number and the window computing it, under `plan`.
fn over_window(plan: &LogicalPlan) -> Option<(&Projection, &Window)> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => over_window(&a.input),
        LogicalPlan::Projection(p) => match p.input.as_ref() {
            LogicalPlan::Window(w) => Some((p, w)),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `f` filters the row numbers of a window function (a ranking, see [`rank`]).
///
/// [`rank`]: Translator::rank
pub(super) fn is_ranking(f: &Filter) -> bool {
    over_window(&f.input).is_some()
}

/// Why a window function that is not a bounded ranking cannot run on a stream.
pub(super) fn refused(w: &Window) -> String {
    let text: Vec<String> = w.window_expr.iter().map(shown).collect();
    let text = text.join(", ");
    let row_number = w.window_expr.iter().all(
        |e| matches!(e.clone().unalias(), Expr::WindowFunction(f) if f.fun.name() == "row_number"),
    );
    match row_number {
        true => format!(
            "`{text}`: an unbounded ranking keeps every row: filter it in a query over it, e.g. SELECT * FROM (SELECT *, ROW_NUMBER() OVER (…) AS rownum FROM …) WHERE rownum <= 3"
        ),
        false => format!(
            "`{text}`: of the OVER (…) window functions only ROW_NUMBER() is supported, filtered to its first rows (Top-N per window, or rownum = 1 to deduplicate)"
        ),
    }
}

/// What a ranking is, the PARTITION BY keys its input is hashed by, and the windows it
/// assigns itself (see [`RankPlan::assign`]).
type Shape = (RankKind, Vec<Expr>, Option<(WindowAssigner, usize)>);

/// A Top-N of a window table function's rows (TUMBLE or HOP, not aggregated): the windows
/// are assigned in the ranking, so the rows are hashed by the other PARTITION BY keys.
/// Returns the ranking, the keys besides the window and the windows to assign.
fn tvf_top_n(
    text: &str,
    pending: &Pending,
    input: &Stream,
    partition_by: &[Expr],
    keep: i64,
) -> Result<Shape, String> {
    let call = &pending.call.text;
    if matches!(pending.call.assigner, WindowAssigner::Session { .. }) {
        return Err(format!(
            "`{text}`: the rows of `{call}` are ranked per window as they arrive, and a session window changes as it grows: aggregate the sessions first (GROUP BY window_start, window_end, …) and rank the aggregate"
        ));
    }
    // Which columns of the stream are its windows' (window_start, then window_end).
    let window_column = |e: &Expr| match e {
        Expr::Column(c) => input
            .schema
            .index_of_column(c)
            .ok()
            .filter(|at| *at >= pending.input_len),
        _ => None,
    };
    let reads_window = |e: &Expr| {
        e.column_refs()
            .into_iter()
            .any(|c| window_column(&Expr::Column(c.clone())).is_some())
    };
    let mut found = [false; 2];
    let mut keys = Vec::new();
    for e in partition_by {
        match window_column(e) {
            Some(at) => found[at - pending.input_len] = true,
            None if reads_window(e) => {
                return Err(format!(
                    "`{text}`: partition by window_start and window_end as they are"
                ));
            }
            None => keys.push(e.clone()),
        }
    }
    if found != [true, true] {
        return Err(format!(
            "`{text}`: rank the rows of `{call}` per window: PARTITION BY window_start, window_end (and any keys)"
        ));
    }
    if keys.is_empty() {
        // Rows are hashed before their windows are known: without other keys, every row goes
        // to one subtask (one key group), whose partitions are the windows.
        keys.push(Expr::Literal(ScalarValue::Int64(Some(0)), None));
    }
    let limit = top_n_limit(text, keep)?;
    let kind = RankKind::TopN {
        limit,
        end_index: pending.input_len + 1,
    };
    Ok((
        kind,
        keys,
        Some((pending.call.assigner, pending.time_index)),
    ))
}

/// How many rows a Top-N keeps, within [`MAX_TOP_N`].
fn top_n_limit(text: &str, keep: i64) -> Result<usize, String> {
    let limit = usize::try_from(keep).unwrap_or(usize::MAX);
    if limit > MAX_TOP_N {
        return Err(format!(
            "`{text}`: keeps {keep} rows per window; at most {MAX_TOP_N}"
        ));
    }
    Ok(limit)
}

/// The bound of `predicate` on column `rownum`: how many rows it keeps.
fn bound(predicate: &Expr, rownum: &str) -> Result<i64, String> {
    let text = shown(predicate);
    let refuse = || {
        format!(
            "`{text}`: filter the row number alone with rownum <= N, rownum < N or rownum = 1 (filter other columns in a query over this one)"
        )
    };
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = predicate else {
        return Err(refuse());
    };
    let is_rownum = |e: &Expr| matches!(e, Expr::Column(c) if c.name == rownum);
    let number = |e: &Expr| match e {
        Expr::Literal(v, _) => match v.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(Some(n))) => Some(n),
            _ => None,
        },
        _ => None,
    };
    let (op, n) = match (is_rownum(left), is_rownum(right)) {
        (true, false) => (*op, number(right)),
        (false, true) => (op.swap().ok_or_else(refuse)?, number(left)),
        _ => return Err(refuse()),
    };
    let n = n.ok_or_else(refuse)?;
    let keep = match op {
        Operator::LtEq => n,
        Operator::Lt => n.saturating_sub(1),
        Operator::Eq if n == 1 => 1,
        _ => return Err(refuse()),
    };
    if keep < 1 {
        return Err(format!("`{text}` keeps no row"));
    }
    Ok(keep)
}

impl Translator<'_> {
    /// A filter on the row numbers of `ROW_NUMBER() OVER (…)`: a Top-N per window or a
    /// deduplication, as a keyed ranking operator.
    pub(super) fn rank(&mut self, f: &Filter) -> Result<Stream, String> {
        let Some((p, w)) = over_window(&f.input) else {
            return Err("not a ranking".into());
        };
        // Window specs that differ are planned as one window over another.
        let nested = matches!(w.input.as_ref(), LogicalPlan::Window(_));
        let call = match w.window_expr.as_slice() {
            [e] if !nested => match e.clone().unalias() {
                Expr::WindowFunction(call) if call.fun.name() == "row_number" => call,
                _ => return Err(refused(w)),
            },
            _ => {
                return Err(format!(
                    "`{}`: one ROW_NUMBER() OVER (…) per query: rank in a query over this one",
                    w.window_expr
                        .iter()
                        .map(shown)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        };
        let text = shown(&w.window_expr[0]);
        let WindowFunction { params, .. } = *call;
        if params.filter.is_some() || params.distinct {
            return Err(format!(
                "`{text}`: FILTER and DISTINCT do not apply to ROW_NUMBER()"
            ));
        }
        let input = self.plan(&w.input)?;
        let n = input.schema.fields().len();
        // SELECT *, ROW_NUMBER() … AS rownum: the input's columns in order, then the number
        // (column n of the window's rows) as it is.
        let in_order = p.expr.len() == n + 1
            && p.expr.iter().enumerate().all(|(i, e)| {
                matches!(e.clone().unalias(), Expr::Column(c) if w.schema.index_of_column(&c).is_ok_and(|at| at == i))
            });
        if !in_order {
            return Err(format!(
                "`{text}`: select every column and the row number last: SELECT *, ROW_NUMBER() OVER (…) AS rownum FROM …, and pick columns in a query over it"
            ));
        }
        let rownum = p.schema.field(n).name().clone();
        let keep = bound(&f.predicate, &rownum)?;
        if input.updating {
            return Err(format!(
                "`{text}`: ranking an updating result (an aggregate without a window) is not supported: aggregate per window (TUMBLE, HOP, SESSION) and rank each window"
            ));
        }
        input.refuse_changes(&format!("`{text}`: ranking"))?;
        let arrow = input.arrow();
        if let Some(f) = arrow
            .fields()
            .iter()
            .find(|f| !is_value_type(f.data_type()))
        {
            return Err(format!(
                "`{text}`: a ranking keeps whole rows, and column `{}` is {}: select numbers, booleans, strings, binary, dates, times, timestamps, durations and intervals",
                f.name(),
                f.data_type()
            ));
        }
        let compile = |e: &Expr| {
            let name = match e {
                Expr::Column(c) => c.name.clone(),
                _ => shown(e),
            };
            sql::compile_logical(&shown(e), name, e.clone(), &input.schema)
        };
        let (kind, partition_by, assign) = match &input.window {
            Some(pending) => tvf_top_n(&text, pending, &input, &params.partition_by, keep)?,
            None => {
                let kind =
                    self.rank_kind(&text, &input, &params.partition_by, &params.order_by, keep)?;
                (kind, params.partition_by.clone(), None)
            }
        };
        let partition = partition_by
            .iter()
            .map(compile)
            .collect::<Result<Vec<_>, _>>()?;
        let mut order = Vec::with_capacity(params.order_by.len());
        for s in &params.order_by {
            order.push(RankOrder {
                expr: compile(&s.expr)?,
                descending: !s.asc,
                nulls_first: s.nulls_first,
            });
        }
        let mut fields: Vec<Field> = arrow.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(&rownum, DataType::UInt64, false));
        let what = match kind {
            RankKind::TopN { .. } => "topn",
            RankKind::KeepFirst { .. } => "dedup",
        };
        let uid = self.flow.uid(format!("{}.{what}", self.name));
        let index = self.flow.rankings.len();
        self.flow.rankings.push(RankPlan {
            uid,
            kind,
            partition,
            assign,
            order,
            input_schema: Arc::new(Schema::new(
                arrow.fields()[..input.window.as_ref().map_or(n, |w| w.input_len)].to_vec(),
            )),
            output_schema: Arc::new(Schema::new(fields)),
        });
        let op = OperatorKind::Rank(index);
        for from in &input.outputs {
            self.flow.edges.push(PlanEdge {
                from: *from,
                to: op,
            });
        }
        Ok(Stream {
            outputs: vec![Output::result(op)],
            schema: Arc::clone(f.input.schema()),
            // Rows are emitted before the watermark passing their window's end: their times
            // (the window's start, or the rows' own) stay behind it.
            windowed: input
                .window
                .as_ref()
                .map(|w| (w.input_len, w.input_len + 1))
                .or(input.windowed),
            time: input.time,
            window: None,
            updating: false,
            changelog: false,
        })
    }

    /// Which ranking a window function is: a Top-N when it partitions by a window's start
    /// and end, a deduplication when it orders by the event time; otherwise refused.
    fn rank_kind(
        &self,
        text: &str,
        input: &Stream,
        partition_by: &[Expr],
        order_by: &[datafusion_expr::SortExpr],
        keep: i64,
    ) -> Result<RankKind, String> {
        let Some(time) = &input.time else {
            return Err(format!(
                "`{text}`: a ranking runs in event time: rank the rows of a windowed aggregate, or give the source an event_time to deduplicate"
            ));
        };
        let column = |e: &Expr| match e {
            Expr::Column(c) => Some(c.name.clone()),
            _ => None,
        };
        let names: Vec<Option<String>> = partition_by.iter().map(column).collect();
        // The window's end beside its start (window_end, or renamed alike: hour_end).
        let end = time.replace("start", "end");
        let windowed = *time != end
            && names.iter().flatten().any(|n| n == time)
            && names.iter().flatten().any(|n| *n == end);
        if windowed {
            let limit = top_n_limit(text, keep)?;
            let end_index = input
                .arrow()
                .index_of(&end)
                .map_err(|_| format!("`{text}`: no column `{end}`"))?;
            return Ok(RankKind::TopN { limit, end_index });
        }
        let by_time = match order_by {
            [s] if column(&s.expr).as_deref() == Some(time.as_str()) => Some(s.asc),
            _ => None,
        };
        match by_time {
            Some(true) if partition_by.is_empty() => Err(format!(
                "`{text}`: deduplicate by keys: PARTITION BY the columns whose first row to keep"
            )),
            Some(true) if keep == 1 => {
                let time_index = input
                    .arrow()
                    .index_of(time)
                    .map_err(|_| format!("`{text}`: no column `{time}`"))?;
                Ok(RankKind::KeepFirst {
                    time_index,
                    ttl_ms: self.ttl_ms,
                })
            }
            Some(true) => Err(format!(
                "`{text}`: deduplication keeps one row per key: filter with rownum = 1 (or PARTITION BY {time} and the window's end to rank windows)"
            )),
            Some(false) => Err(format!(
                "`{text}`: keeping the last row of each key (ORDER BY {time} DESC) is an updating result (every later row replaces the one emitted): not supported; keep the first (ORDER BY {time} ASC), or aggregate per window with last_value"
            )),
            None => Err(format!(
                "`{text}`: a ranking is either a Top-N per window (PARTITION BY window_start, window_end of a windowed aggregate) or a deduplication (PARTITION BY keys ORDER BY the event time `{time}` ASC, filtered to rownum = 1)"
            )),
        }
    }
}

#[cfg(test)]
mod tests;
