//! Joins in SQL: an inner join of two streams must bound its state in event time. Either both
//! sides are window table functions of the same windows, joined on `window_start` and
//! `window_end` (a window join), or the ON clause bounds one side's event time by the
//! other's (`l.ts BETWEEN r.ts - INTERVAL … AND r.ts + INTERVAL …`, an interval join). The
//! equalities between the sides are the join keys; what else the ON clause says filters the
//! joined rows.

use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};
use datafusion_common::{Column, DFSchema, ScalarValue};
use datafusion_expr::logical_plan::{Join, JoinType, LogicalPlan};
use datafusion_expr::utils::split_conjunction;
use datafusion_expr::{Between, BinaryExpr, Expr, ExprSchemable, Operator};

use super::translate::{Stream, Translator, shown};
use crate::graph::OperatorKind;
use crate::plan::{JoinKind, JoinPlan, Output, PlanEdge, StepPlan, WindowAssigner};
use crate::sql::{self, CompiledExpr};

/// Which side of the join an expression reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
    Both,
    Neither,
}

fn side_of(e: &Expr, left: &DFSchema, right: &DFSchema) -> Side {
    let (mut l, mut r) = (false, false);
    for c in e.column_refs() {
        l |= left.index_of_column(c).is_ok();
        r |= right.index_of_column(c).is_ok();
    }
    match (l, r) {
        (true, true) => Side::Both,
        (true, false) => Side::Left,
        (false, true) => Side::Right,
        (false, false) => Side::Neither,
    }
}

/// A constant interval in milliseconds (no months).
pub(crate) fn interval_ms(v: &ScalarValue) -> Option<i64> {
    let ms = match v {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            i128::from(v.days) * 86_400_000 + i128::from(v.nanoseconds) / 1_000_000
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            i128::from(v.days) * 86_400_000 + i128::from(v.milliseconds)
        }
        _ => return None,
    };
    i64::try_from(ms).ok()
}

/// `column`, `column + INTERVAL …` or `column - INTERVAL …`: the column and the offset.
fn shifted(e: &Expr) -> Option<(&Column, i64)> {
    match e {
        Expr::Column(c) => Some((c, 0)),
        Expr::Cast(c) => shifted(&c.expr),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let Expr::Literal(v, _) = right.as_ref() else {
                return None;
            };
            let ms = interval_ms(v)?;
            let (c, base) = shifted(left)?;
            match op {
                Operator::Plus => Some((c, base.checked_add(ms)?)),
                Operator::Minus => Some((c, base.checked_sub(ms)?)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Bounds on left time - right time, gathered from the ON clause.
#[derive(Debug, Default)]
struct Bounds {
    lower: Option<i64>,
    upper: Option<i64>,
}

impl Bounds {
    fn lower(&mut self, v: i64) {
        self.lower = Some(self.lower.map_or(v, |l| l.max(v)));
    }
    fn upper(&mut self, v: i64) {
        self.upper = Some(self.upper.map_or(v, |u| u.min(v)));
    }
}

/// The join's inputs and the ON clause, classified.
struct On<'a> {
    left: &'a Stream,
    right: &'a Stream,
    keys: Vec<(Expr, Expr)>,
    window_start: bool,
    window_end: bool,
    bounds: Bounds,
    rest: Vec<Expr>,
}

impl On<'_> {
    /// Whether `c` is the time attribute of the stream.
    fn is_time(s: &Stream, c: &Column) -> bool {
        s.time.as_deref() == Some(c.name()) && s.schema.index_of_column(c).is_ok()
    }

    /// 0 for `c` the window_start, 1 for the window_end of a window table function's or a
    /// windowed aggregate's rows.
    fn window_column(s: &Stream, c: &Column) -> Option<usize> {
        let at = s.schema.index_of_column(c).ok()?;
        match (&s.window, s.windowed) {
            (Some(w), _) => at.checked_sub(w.input_len),
            (None, Some((start, _))) if at == start => Some(0),
            (None, Some((_, end))) if at == end => Some(1),
            _ => None,
        }
    }

    /// `l <op> r` with l on the left side and r on the right (either order in the SQL).
    fn comparison(&mut self, l: &Expr, op: Operator, r: &Expr) -> bool {
        let (ls, rs) = (&self.left.schema, &self.right.schema);
        let (l, op, r) = match (side_of(l, ls, rs), side_of(r, ls, rs)) {
            (Side::Left, Side::Right) => (l, op, r),
            (Side::Right, Side::Left) => match op.swap() {
                Some(swapped) => (r, swapped, l),
                None => return false,
            },
            _ => return false,
        };
        if op == Operator::Eq
            && let (Expr::Column(a), Expr::Column(b)) = (l, r)
            && let (Some(i), Some(j)) = (
                Self::window_column(self.left, a),
                Self::window_column(self.right, b),
            )
        {
            match (i, j) {
                (0, 0) => self.window_start = true,
                (1, 1) => self.window_end = true,
                _ => return false,
            }
            return true;
        }
        if op == Operator::Eq {
            self.keys.push((l.clone(), r.clone()));
            return true;
        }
        let (Some((lc, lo)), Some((rc, ro))) = (shifted(l), shifted(r)) else {
            return false;
        };
        if !Self::is_time(self.left, lc) || !Self::is_time(self.right, rc) {
            return false;
        }
        // l + lo <op> r + ro  ⇔  l - r <op> ro - lo.
        let Some(bound) = ro.checked_sub(lo) else {
            return false;
        };
        match op {
            Operator::GtEq => self.bounds.lower(bound),
            Operator::Gt => self.bounds.lower(bound.saturating_add(1)),
            Operator::LtEq => self.bounds.upper(bound),
            Operator::Lt => self.bounds.upper(bound.saturating_sub(1)),
            _ => return false,
        }
        true
    }

    fn conjunct(&mut self, e: &Expr) {
        let used = match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => self.comparison(left, *op, right),
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                let (ls, rs) = (&self.left.schema, &self.right.schema);
                // Both ends must constrain the same pair; otherwise it filters.
                let before = (self.bounds.lower, self.bounds.upper);
                let ok = self.comparison(expr, Operator::GtEq, low)
                    && self.comparison(expr, Operator::LtEq, high)
                    && side_of(low, ls, rs) == side_of(high, ls, rs);
                if !ok {
                    (self.bounds.lower, self.bounds.upper) = before;
                }
                ok
            }
            _ => false,
        };
        if !used {
            self.rest.push(e.clone());
        }
    }
}

/// The table a plan scans, through aliases.
fn scanned(plan: &LogicalPlan) -> Option<&str> {
    match plan {
        LogicalPlan::TableScan(t) => Some(t.table_name.table()),
        LogicalPlan::SubqueryAlias(a) => scanned(&a.input),
        _ => None,
    }
}

impl Translator<'_> {
    /// For a temporal join (its right side `FOR SYSTEM_TIME AS OF` the left's event time), the
    /// indexes of the left and right time columns.
    fn temporal(
        &self,
        j: &Join,
        left: &Stream,
        right: &Stream,
    ) -> Result<Option<(usize, usize)>, String> {
        if scanned(&j.left).is_some_and(|t| self.versioned.contains_key(t)) {
            return Err(
                "FOR SYSTEM_TIME AS OF goes on the right side of the join (the versioned table)"
                    .into(),
            );
        }
        let Some(call) = scanned(&j.right).and_then(|t| self.versioned.get(t)) else {
            return Ok(None);
        };
        if left.window.is_some() || right.window.is_some() {
            return Err("a temporal join reads streams, not window table functions".into());
        }
        let column = Column::from_qualified_name_ignore_case(&call.as_of);
        let at = left.schema.index_of_column(&column).map_err(|_| {
            format!(
                "FOR SYSTEM_TIME AS OF {}: no such column on the left side of the join",
                call.as_of
            )
        })?;
        let left_time = left
            .time
            .as_ref()
            .and_then(|t| left.schema.as_arrow().index_of(t).ok());
        if left_time != Some(at) {
            return Err(format!(
                "FOR SYSTEM_TIME AS OF {}: versions are picked by the left side's event time{}",
                call.as_of,
                left.time
                    .as_ref()
                    .map(|t| format!(", `{t}`"))
                    .unwrap_or_default()
            ));
        }
        let Some(right_time) = right
            .time
            .as_ref()
            .and_then(|t| right.schema.as_arrow().index_of(t).ok())
        else {
            return Err(format!(
                "`{}` has no event time to version it by: give it an event_time",
                call.table
            ));
        };
        Ok(Some((at, right_time)))
    }

    pub(super) fn join(&mut self, j: &Join) -> Result<Stream, String> {
        if j.join_type != JoinType::Inner {
            return Err(format!(
                "{} joins are not supported yet: only inner joins",
                j.join_type
            ));
        }
        let left = self.plan(&j.left)?;
        let right = self.plan(&j.right)?;
        if left.updating || right.updating {
            return Err("joining an updating result is not supported".into());
        }
        left.refuse_changes("a join")?;
        right.refuse_changes("a join")?;
        let mut on = On {
            left: &left,
            right: &right,
            keys: Vec::new(),
            window_start: false,
            window_end: false,
            bounds: Bounds::default(),
            rest: Vec::new(),
        };
        for (l, r) in &j.on {
            on.keys.push((l.clone(), r.clone()));
        }
        if let Some(filter) = &j.filter {
            for c in split_conjunction(filter) {
                on.conjunct(c);
            }
        }
        let On {
            mut keys,
            window_start,
            window_end,
            bounds,
            rest,
            ..
        } = on;
        // Windowed rows joined on their windows alone are keyed by the window.
        if let (true, true, true, Some((ls, _)), Some((rs, _))) = (
            keys.is_empty(),
            window_start,
            window_end,
            left.windowed,
            right.windowed,
        ) {
            let column = |s: &DFSchema, i: usize| Expr::Column(Column::from(s.qualified_field(i)));
            keys.push((column(&left.schema, ls), column(&right.schema, rs)));
        }
        if keys.is_empty() {
            return Err(
                "a join needs an equality between its sides (its key), e.g. ON a.auction = b.id"
                    .into(),
            );
        }
        let temporal = self.temporal(j, &left, &right)?;
        let (kind, left_len, right_len, left_time, right_time) = if let Some((lt, rt)) = temporal {
            let (ll, rl) = (left.schema.fields().len(), right.schema.fields().len());
            (JoinKind::Temporal, ll, rl, lt, rt)
        } else {
            match (&left.window, &right.window) {
                (Some(l), Some(r)) => {
                    if l.call.assigner != r.call.assigner {
                        return Err(format!(
                            "a window join needs the same windows on both sides: `{}` and `{}`",
                            l.call.text, r.call.text
                        ));
                    }
                    if !matches!(
                        l.call.assigner,
                        WindowAssigner::Tumbling { .. } | WindowAssigner::Sliding { .. }
                    ) {
                        return Err(format!(
                            "`{}`: window joins take TUMBLE and HOP windows",
                            l.call.text
                        ));
                    }
                    if !(window_start && window_end) {
                        return Err(format!(
                            "join `{}` and `{}` ON … AND l.window_start = r.window_start AND l.window_end = r.window_end",
                            l.call.text, r.call.text
                        ));
                    }
                    let kind = JoinKind::Window {
                        assigner: l.call.assigner,
                    };
                    (kind, l.input_len, r.input_len, l.time_index, r.time_index)
                }
                (None, None) if window_start && window_end => {
                    let (Some(l), Some(r)) = (left.windowed, right.windowed) else {
                        return Err(
                            "join windowed rows ON both sides' window_start and window_end".into(),
                        );
                    };
                    let kind = JoinKind::WindowRows { left: l, right: r };
                    let (ll, rl) = (left.schema.fields().len(), right.schema.fields().len());
                    (kind, ll, rl, l.0, r.0)
                }
                (None, None) => {
                    let (Some(lower_ms), Some(upper_ms)) = (bounds.lower, bounds.upper) else {
                        return Err("a join of two streams keeps every row unless its time is bounded: \
                             join window table functions ON their window_start and window_end, \
                             or bound the times, e.g. a.ts BETWEEN b.ts - INTERVAL '1' HOUR AND b.ts + INTERVAL '1' HOUR \
                             (both sides' event-time columns)"
                            .into());
                    };
                    if lower_ms > upper_ms {
                        return Err(format!(
                            "the join's time bounds are empty ({lower_ms}ms to {upper_ms}ms)"
                        ));
                    }
                    let time = |s: &Stream| {
                        s.time
                            .as_ref()
                            .and_then(|t| s.schema.as_arrow().index_of(t).ok())
                    };
                    let (Some(lt), Some(rt)) = (time(&left), time(&right)) else {
                        return Err("an interval join bounds both sides' event-time columns".into());
                    };
                    let kind = JoinKind::Interval { lower_ms, upper_ms };
                    let (ll, rl) = (left.schema.fields().len(), right.schema.fields().len());
                    (kind, ll, rl, lt, rt)
                }
                _ => {
                    return Err("join a window table function with another one (a window join), or two streams bounded in time (an interval join)".into());
                }
            }
        };
        let physical = |s: &Stream, len: usize| {
            Arc::new(Schema::new(s.schema.as_arrow().fields()[..len].to_vec()))
        };
        let (left_schema, right_schema) = (physical(&left, left_len), physical(&right, right_len));
        let mut left_keys: Vec<CompiledExpr> = Vec::with_capacity(keys.len());
        let mut right_keys = Vec::with_capacity(keys.len());
        for (i, (l, r)) in keys.into_iter().enumerate() {
            let lk = sql::compile_logical(&shown(&l), format!("key{i}"), l, &left.schema)?;
            let r = match r.get_type(&right.schema).map_err(|e| e.to_string())? {
                t if t == lk.data_type => r,
                _ => r
                    .cast_to(&lk.data_type, &right.schema)
                    .map_err(|e| e.to_string())?,
            };
            let rk = sql::compile_logical(&shown(&r), format!("key{i}"), r, &right.schema)?;
            if rk.data_type != lk.data_type || matches!(lk.data_type, DataType::Null) {
                return Err(format!(
                    "the join keys `{}` and `{}` have different types",
                    lk.text, rk.text
                ));
            }
            left_keys.push(lk);
            right_keys.push(rk);
        }
        let uid = self.flow.uid(format!("{}.join", self.name));
        let index = self.flow.joins.len();
        self.flow.joins.push(JoinPlan {
            uid,
            kind,
            left_keys,
            right_keys,
            left_time,
            right_time,
            left_schema,
            right_schema,
            left_inputs: left.outputs.len(),
            output_schema: Arc::new(j.schema.as_arrow().clone()),
        });
        let op = OperatorKind::Join(index);
        for from in left.outputs.iter().chain(&right.outputs) {
            self.flow.edges.push(PlanEdge {
                from: *from,
                to: op,
            });
        }
        let joined = Stream {
            outputs: vec![Output::result(op)],
            schema: Arc::clone(&j.schema),
            time: match kind {
                // Window rows are emitted before the watermark passes their window.
                JoinKind::Window { .. } => left
                    .window
                    .as_ref()
                    .and_then(|w| j.schema.field(w.input_len).name().clone().into()),
                // Left rows leave when the watermark passes their time.
                JoinKind::Temporal => left.time.clone(),
                JoinKind::Interval { .. } | JoinKind::WindowRows { .. } => None,
            },
            window: None,
            updating: false,
            changelog: false,
            windowed: None,
        };
        // What else the ON clause says filters the joined rows (an inner join).
        let Some(predicate) = rest.into_iter().reduce(Expr::and) else {
            return Ok(joined);
        };
        let text = shown(&predicate);
        let c = sql::compile_logical(&text, "filter".into(), predicate, &joined.schema)?;
        let outputs = self.step(&joined, StepPlan::Filter(c), joined.arrow());
        Ok(Stream { outputs, ..joined })
    }
}
