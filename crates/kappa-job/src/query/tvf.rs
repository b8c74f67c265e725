//! The window table functions of Flink SQL and RisingWave — `TUMBLE(t, ts, size)`,
//! `HOP(t, ts, slide, size)`, `SESSION(t, ts, gap)` — in FROM clauses. Flink's spelling
//! `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))` is accepted too. Each call is replaced by a
//! table of its own (the input's columns, `window_start` and `window_end`) before DataFusion
//! plans the statement; the translation turns an aggregate over that table into a window.

use std::ops::ControlFlow;

use datafusion_common::{DFSchema, ScalarValue};
use datafusion_expr::Expr;
use datafusion_expr::simplify::SimplifyContext;
use datafusion_optimizer::simplify_expressions::ExprSimplifier;
use datafusion_sql::planner::{PlannerContext, SqlToRel};
use datafusion_sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName, Statement,
    TableAlias, TableFactor, VisitMut, VisitorMut,
};

use super::catalog::Catalog;
use super::parser_options;
use crate::plan::{MAX_DURATION_MS, MAX_WINDOWS_PER_RECORD, WindowAssigner};

/// Names of the tables window calls are rewritten to: `__window_<n>`.
pub(crate) const WINDOW_TABLE_PREFIX: &str = "__window_";

/// One window table function call of a statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WindowCall {
    /// The table it windows (a source or a view).
    pub table: String,
    /// Its time column.
    pub time_column: String,
    pub assigner: WindowAssigner,
    /// The call as written, for messages and the graph.
    pub text: String,
}

/// Replaces every window call in `statement` with a table `__window_<first + i>`, and returns
/// the calls in that order.
pub(crate) fn rewrite(statement: &mut Statement, first: usize) -> Result<Vec<WindowCall>, String> {
    let mut rewriter = Rewriter {
        first,
        calls: Vec::new(),
    };
    match statement.visit(&mut rewriter) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(rewriter.calls),
    }
}

struct Rewriter {
    first: usize,
    calls: Vec<WindowCall>,
}

/// TUMBLE, HOP or SESSION, by the name of a call.
fn window_function(name: &ObjectName) -> Option<String> {
    let n = name.to_string().to_uppercase();
    matches!(n.as_str(), "TUMBLE" | "HOP" | "SESSION").then_some(n)
}

impl VisitorMut for Rewriter {
    type Break = String;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<String> {
        let found = match factor {
            TableFactor::Table {
                name,
                alias,
                args: Some(args),
                ..
            } => window_function(name).map(|f| (f, args.args.clone(), alias.take())),
            TableFactor::Function {
                name, args, alias, ..
            } => window_function(name).map(|f| (f, args.clone(), alias.take())),
            TableFactor::TableFunction {
                expr: SqlExpr::Function(call),
                alias,
            } => match (window_function(&call.name), &call.args) {
                (Some(f), FunctionArguments::List(list)) => {
                    Some((f, list.args.clone(), alias.take()))
                }
                _ => None,
            },
            _ => None,
        };
        let Some((function, args, alias)) = found else {
            return ControlFlow::Continue(());
        };
        let text = format!(
            "{function}({})",
            args.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let call = match window_call(&function, &args, &text) {
            Ok(c) => c,
            Err(e) => return ControlFlow::Break(e),
        };
        let name = format!("{WINDOW_TABLE_PREFIX}{}", self.first + self.calls.len());
        // Without an alias, columns are qualified by the windowed table's own name, as the
        // user would write them.
        let alias = alias.or_else(|| {
            Some(TableAlias {
                explicit: false,
                name: call.table.as_str().into(),
                columns: Vec::new(),
                at: None,
            })
        });
        *factor = TableFactor::Table {
            name: ObjectName::from(vec![name.as_str().into()]),
            alias,
            args: None,
            with_hints: Vec::new(),
            version: None,
            with_ordinality: false,
            partitions: Vec::new(),
            json_path: None,
            sample: None,
            index_hints: Vec::new(),
        };
        self.calls.push(call);
        ControlFlow::Continue(())
    }
}

/// The arguments of a window call, in either spelling.
fn window_call(function: &str, args: &[FunctionArg], text: &str) -> Result<WindowCall, String> {
    let usage = match function {
        "TUMBLE" => "TUMBLE(<table>, <time column>, INTERVAL '<size>')",
        "HOP" => "HOP(<table>, <time column>, INTERVAL '<slide>', INTERVAL '<size>')",
        _ => "SESSION(<table>, <time column>, INTERVAL '<gap>')",
    };
    let wants = if function == "HOP" { 4 } else { 3 };
    let exprs: Vec<&SqlExpr> = args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            FunctionArg::Named {
                arg: FunctionArgExpr::Expr(e),
                ..
            } => Some(e),
            _ => None,
        })
        .collect();
    if exprs.len() != args.len() || exprs.len() != wants {
        return Err(format!("`{text}`: write {usage}"));
    }
    let table = match exprs[0] {
        SqlExpr::Identifier(i) => i.value.clone(),
        _ => {
            return Err(format!(
                "`{text}`: the first argument names a table; write {usage}"
            ));
        }
    };
    let time_column = match exprs[1] {
        SqlExpr::Identifier(i) => i.value.clone(),
        SqlExpr::Function(f) if f.name.to_string().eq_ignore_ascii_case("DESCRIPTOR") => {
            match &f.args {
                FunctionArguments::List(l) => match l.args.as_slice() {
                    [FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Identifier(i)))] => {
                        i.value.clone()
                    }
                    _ => return Err(format!("`{text}`: DESCRIPTOR names one column")),
                },
                _ => return Err(format!("`{text}`: DESCRIPTOR names one column")),
            }
        }
        _ => {
            return Err(format!(
                "`{text}`: the second argument names the time column; write {usage}"
            ));
        }
    };
    let mut durations = Vec::new();
    for e in &exprs[2..] {
        durations.push(duration_ms(e).map_err(|why| format!("`{text}`: {why}"))?);
    }
    let assigner = match (function, durations.as_slice()) {
        ("TUMBLE", [size_ms]) => WindowAssigner::Tumbling { size_ms: *size_ms },
        ("HOP", [slide_ms, size_ms]) => {
            if size_ms % slide_ms != 0 {
                return Err(format!(
                    "`{text}`: the window size must be a multiple of the slide"
                ));
            }
            if size_ms / slide_ms > MAX_WINDOWS_PER_RECORD {
                return Err(format!(
                    "`{text}`: this puts every record into {} windows (size / slide); at most {MAX_WINDOWS_PER_RECORD}: use a longer slide",
                    size_ms / slide_ms
                ));
            }
            WindowAssigner::Sliding {
                size_ms: *size_ms,
                slide_ms: *slide_ms,
            }
        }
        (_, [gap_ms]) => WindowAssigner::Session { gap_ms: *gap_ms },
        _ => return Err(format!("`{text}`: write {usage}")),
    };
    Ok(WindowCall {
        table,
        time_column,
        assigner,
        text: text.to_string(),
    })
}

/// A constant interval (`INTERVAL '1' HOUR`, `INTERVAL '90 seconds'`) in milliseconds:
/// positive, at most 100 years, without months (their length varies).
pub(crate) fn duration_ms(e: &SqlExpr) -> Result<i64, String> {
    let empty = DFSchema::empty();
    let catalog = Catalog::default();
    let planner = SqlToRel::new_with_options(&catalog, parser_options());
    let shown = e.to_string();
    let expr = planner
        .sql_to_expr(e.clone(), &empty, &mut PlannerContext::new())
        .map_err(|err| format!("`{shown}`: {}", err.strip_backtrace()))?;
    let simplifier = ExprSimplifier::new(SimplifyContext::builder().build());
    let expr = simplifier
        .simplify(expr)
        .map_err(|err| format!("`{shown}`: {}", err.strip_backtrace()))?;
    let ms = match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            i128::from(v.days) * 86_400_000 + i128::from(v.nanoseconds) / 1_000_000
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            i128::from(v.days) * 86_400_000 + i128::from(v.milliseconds)
        }
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(_)), _)
        | Expr::Literal(ScalarValue::IntervalYearMonth(Some(_)), _) => {
            return Err(format!(
                "`{shown}`: months and years have no fixed length; use days"
            ));
        }
        _ => {
            return Err(format!(
                "`{shown}` is not a constant INTERVAL, e.g. INTERVAL '1' HOUR"
            ));
        }
    };
    if ms <= 0 {
        return Err(format!("`{shown}` must be at least 1 millisecond"));
    }
    if ms > i128::from(MAX_DURATION_MS) {
        return Err(format!("`{shown}` must be at most 100 years"));
    }
    i64::try_from(ms).map_err(|_| format!("`{shown}` must be at most 100 years"))
}
