//! SQL expressions of a job (filters, projections, keys, aggregate arguments) planned with
//! DataFusion into physical expressions that evaluate on Arrow batches.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion_common::DFSchema;
use datafusion_common::config::ConfigOptions;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::planner::{ContextProvider, ExprPlanner};
use datafusion_expr::simplify::SimplifyContext;
use datafusion_expr::{AggregateUDF, Expr, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};
use datafusion_optimizer::simplify_expressions::ExprSimplifier;
use datafusion_physical_expr::execution_props::ExecutionProps;
use datafusion_physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion_sql::planner::{ParserOptions, PlannerContext, SqlToRel};
use datafusion_sql::sqlparser::ast::{
    DuplicateTreatment, Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments,
    SelectItem,
};
use datafusion_sql::sqlparser::dialect::GenericDialect;
use datafusion_sql::sqlparser::parser::Parser;
use datafusion_sql::sqlparser::tokenizer::Token;

/// A planned expression ready to evaluate on batches of its input schema.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    /// The text the user wrote.
    pub text: String,
    /// The output column name (alias, or the column it reads).
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    pub expr: Arc<dyn PhysicalExpr>,
}

/// The aggregate functions windows offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFunction {
    Count,
    /// `count(DISTINCT x)`: the exact number of distinct non-null values.
    CountDistinct,
    /// `approx_count_distinct(x)`: the number of distinct non-null values, estimated with a
    /// HyperLogLog sketch (about 0.8% standard error).
    ApproxCountDistinct,
    Sum,
    Min,
    Max,
    Avg,
    /// `first_value(x)`: x of the row with the smallest event time (the first to arrive
    /// among equal times).
    FirstValue,
    /// `last_value(x)`: x of the row with the largest event time (the last to arrive among
    /// equal times).
    LastValue,
}

impl AggregateFunction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::CountDistinct => "count_distinct",
            Self::ApproxCountDistinct => "approx_count_distinct",
            Self::Sum => "sum",
            Self::Min => "min",
            Self::Max => "max",
            Self::Avg => "avg",
            Self::FirstValue => "first_value",
            Self::LastValue => "last_value",
        }
    }

    /// Whether the result is a count (Int64, never null: 0 for no values).
    pub fn is_count(self) -> bool {
        matches!(
            self,
            Self::Count | Self::CountDistinct | Self::ApproxCountDistinct
        )
    }

    /// Whether the argument may be any type with a value encoding ([`is_value_type`]), not
    /// only a number.
    fn takes_any_value(self) -> bool {
        matches!(
            self,
            Self::CountDistinct | Self::ApproxCountDistinct | Self::FirstValue | Self::LastValue
        )
    }
}

/// A parsed aggregate call such as `count(*)` or `sum(price * qty)`.
#[derive(Debug, Clone)]
pub struct AggregateCall {
    pub function: AggregateFunction,
    /// None for `count(*)`.
    pub argument: Option<CompiledExpr>,
}

/// Everything DataFusion's SQL planner may look up: the built-in scalar functions.
pub(crate) struct Functions {
    scalar: HashMap<String, Arc<ScalarUDF>>,
    planners: Vec<Arc<dyn ExprPlanner>>,
    options: Arc<ConfigOptions>,
}

pub(crate) static FUNCTIONS: LazyLock<Functions> = LazyLock::new(|| {
    let mut scalar = HashMap::new();
    for f in datafusion_functions::all_default_functions() {
        let f = match f.name() {
            "to_char" => Arc::new(crate::to_char::ToChar::wrapping(f)),
            _ => f,
        };
        for alias in f.aliases() {
            scalar.insert(alias.to_lowercase(), Arc::clone(&f));
        }
        scalar.insert(f.name().to_lowercase(), f);
    }
    let planners: Vec<Arc<dyn ExprPlanner>> = vec![
        Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
        Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
        Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
    ];
    Functions {
        scalar,
        planners,
        options: Arc::new(ConfigOptions::default()),
    }
});

impl ContextProvider for Functions {
    fn get_table_source(
        &self,
        name: datafusion_common::TableReference,
    ) -> datafusion_common::Result<Arc<dyn TableSource>> {
        datafusion_common::plan_err!("tables cannot be used in job expressions (`{name}`)")
    }
    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.planners
    }
    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.scalar.get(&name.to_lowercase()).cloned()
    }
    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }
    fn get_aggregate_meta(&self, _name: &str) -> Option<Arc<AggregateUDF>> {
        None
    }
    fn get_window_meta(&self, _name: &str) -> Option<Arc<WindowUDF>> {
        None
    }
    fn get_variable_type(&self, _names: &[String]) -> Option<DataType> {
        None
    }
    fn options(&self) -> &ConfigOptions {
        &self.options
    }
    fn udf_names(&self) -> Vec<String> {
        self.scalar.keys().cloned().collect()
    }
    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn udaf_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// An expression as error messages quote it: at most 100 characters.
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
}

fn parser(text: &str) -> Result<Parser<'static>, String> {
    static DIALECT: GenericDialect = GenericDialect {};
    Parser::new(&DIALECT)
        .try_with_sql(text)
        .map_err(|e| format!("invalid SQL expression `{}`: {e}", shown(text)))
}

fn expect_end(p: &mut Parser<'_>, text: &str) -> Result<(), String> {
    let next = p.peek_token();
    if next.token == Token::EOF {
        Ok(())
    } else {
        Err(format!(
            "invalid SQL expression `{}`: unexpected `{}` after the expression",
            shown(text),
            next.token
        ))
    }
}

fn parse_expr(text: &str) -> Result<SqlExpr, String> {
    let mut p = parser(text)?;
    let e = p
        .parse_expr()
        .map_err(|e| format!("invalid SQL expression `{}`: {e}", shown(text)))?;
    expect_end(&mut p, text)?;
    Ok(e)
}

/// Plans a sqlparser expression against `schema` into a physical expression.
fn plan(
    text: &str,
    sql: SqlExpr,
    schema: &SchemaRef,
) -> Result<(Expr, Arc<dyn PhysicalExpr>, DFSchema), String> {
    let df_schema = DFSchema::try_from(Arc::clone(schema)).map_err(|e| e.to_string())?;
    let options = ParserOptions::new()
        .with_enable_ident_normalization(false)
        .with_map_string_types_to_utf8view(false);
    let planner = SqlToRel::new_with_options(&*FUNCTIONS, options);
    let fail = |e: datafusion_common::DataFusionError| {
        format!("in `{text}`: {}", e.strip_backtrace().replace('\n', " "))
    };
    let expr = planner
        .sql_to_expr(sql, &df_schema, &mut PlannerContext::new())
        .map_err(fail)?;
    let (expr, physical) = physical(text, expr, &df_schema)?;
    Ok((expr, physical, df_schema))
}

/// Type-coerces a logical expression over `df_schema` and plans it into a physical one that
/// evaluates on batches of that schema's columns, in order.
pub(crate) fn physical(
    text: &str,
    expr: Expr,
    df_schema: &DFSchema,
) -> Result<(Expr, Arc<dyn PhysicalExpr>), String> {
    let fail = |e: datafusion_common::DataFusionError| {
        format!("in `{text}`: {}", e.strip_backtrace().replace('\n', " "))
    };
    let ctx = SimplifyContext::builder()
        .with_schema(Arc::new(df_schema.clone()))
        .with_config_options(Arc::clone(&FUNCTIONS.options))
        .build();
    let simplifier = ExprSimplifier::new(ctx);
    let expr = simplifier.coerce(expr, df_schema).map_err(fail)?;
    let physical = create_physical_expr(
        &expr,
        df_schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )
    .map_err(fail)?;
    Ok((expr, physical))
}

/// Compiles a logical expression over `df_schema` into a [`CompiledExpr`] named `name`.
pub(crate) fn compile_logical(
    text: &str,
    name: String,
    expr: Expr,
    df_schema: &DFSchema,
) -> Result<CompiledExpr, String> {
    let (_, expr) = physical(text, expr, df_schema)?;
    typed(text, name, expr, df_schema.as_arrow())
}

fn compiled(
    text: &str,
    name: String,
    sql: SqlExpr,
    schema: &SchemaRef,
) -> Result<CompiledExpr, String> {
    let (_, expr, _) = plan(text, sql, schema)?;
    typed(text, name, expr, schema)
}

/// A physical expression with its output type and nullability over `schema`.
fn typed(
    text: &str,
    name: String,
    expr: Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<CompiledExpr, String> {
    let data_type = expr
        .data_type(schema)
        .map_err(|e| format!("in `{text}`: {e}"))?;
    let nullable = expr
        .nullable(schema)
        .map_err(|e| format!("in `{text}`: {e}"))?;
    Ok(CompiledExpr {
        text: text.to_string(),
        name,
        data_type,
        nullable,
        expr,
    })
}

/// Compiles a boolean filter such as `CAST(split_part(user_id, '_', 2) AS INT) > 50`.
pub fn compile_filter(text: &str, schema: &SchemaRef) -> Result<CompiledExpr, String> {
    let sql = parse_expr(text)?;
    let c = compiled(text, "filter".into(), sql, schema)?;
    if c.data_type != DataType::Boolean {
        return Err(format!(
            "a filter must be a boolean expression; `{text}` is {}",
            c.data_type
        ));
    }
    Ok(c)
}

/// Compiles `expr [AS alias]`; a bare column keeps its name, anything else needs an alias.
pub fn compile_named(text: &str, schema: &SchemaRef) -> Result<CompiledExpr, String> {
    let mut p = parser(text)?;
    let item = p
        .parse_select_item()
        .map_err(|e| format!("invalid SQL expression `{}`: {e}", shown(text)))?;
    expect_end(&mut p, text)?;
    let (sql, name) = match item {
        SelectItem::ExprWithAlias { expr, alias } => (expr, alias.value),
        SelectItem::UnnamedExpr(expr) => {
            let name = match &expr {
                SqlExpr::Identifier(ident) => ident.value.clone(),
                _ => {
                    return Err(format!(
                        "`{text}` needs a name: write `{text} AS some_name`"
                    ));
                }
            };
            (expr, name)
        }
        _ => {
            return Err(format!(
                "`{text}`: wildcards are not supported here; list the columns"
            ));
        }
    };
    compiled(text, name, sql, schema)
}

/// The aggregates [`compile_aggregate`] knows, as its errors list them.
const AGGREGATES: &str = "count(*), count(x), count(DISTINCT x), approx_count_distinct(x), sum(x), min(x), max(x), avg(x), first_value(x) or last_value(x)";

/// Parses and compiles an aggregate call: one of [`AGGREGATES`].
pub fn compile_aggregate(text: &str, schema: &SchemaRef) -> Result<AggregateCall, String> {
    let sql = parse_expr(text)?;
    let SqlExpr::Function(f) = sql else {
        return Err(format!("`{text}` is not an aggregate: use {AGGREGATES}"));
    };
    let fname = f.name.to_string().to_lowercase();
    let mut function = match fname.as_str() {
        "count" => AggregateFunction::Count,
        "approx_count_distinct" | "approx_distinct" => AggregateFunction::ApproxCountDistinct,
        "sum" => AggregateFunction::Sum,
        "min" => AggregateFunction::Min,
        "max" => AggregateFunction::Max,
        "avg" => AggregateFunction::Avg,
        "first_value" => AggregateFunction::FirstValue,
        "last_value" => AggregateFunction::LastValue,
        other => {
            return Err(format!(
                "unknown aggregate function `{other}` in `{text}`: use {AGGREGATES}"
            ));
        }
    };
    let args = match f.args {
        FunctionArguments::List(list) if list.clauses.is_empty() => {
            match list.duplicate_treatment {
                None | Some(DuplicateTreatment::All) => {}
                Some(DuplicateTreatment::Distinct) if function == AggregateFunction::Count => {
                    function = AggregateFunction::CountDistinct;
                }
                Some(DuplicateTreatment::Distinct) => {
                    return Err(format!(
                        "`{text}`: DISTINCT is supported in count(DISTINCT x) only"
                    ));
                }
            }
            list.args
        }
        FunctionArguments::None => Vec::new(),
        _ => {
            return Err(format!(
                "`{text}`: only plain arguments are supported (no ORDER BY, LIMIT or subquery)"
            ));
        }
    };
    if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
        return Err(format!(
            "`{text}`: FILTER, OVER and WITHIN GROUP are not supported"
        ));
    }
    let arg = match args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]
            if function == AggregateFunction::Count =>
        {
            None
        }
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => Some(e.clone()),
        _ => {
            return Err(format!(
                "`{text}`: {fname} takes exactly one argument{}",
                if function == AggregateFunction::Count {
                    " or *"
                } else {
                    ""
                }
            ));
        }
    };
    let argument = match arg {
        None => None,
        Some(e) => {
            let c = compiled(text, fname.clone(), e, schema)?;
            check_argument(text, &fname, function, &c.data_type)?;
            Some(c)
        }
    };
    Ok(AggregateCall { function, argument })
}

/// Whether `function` (written `fname` in `text`) can aggregate values of type `t`.
pub(crate) fn check_argument(
    text: &str,
    fname: &str,
    function: AggregateFunction,
    t: &DataType,
) -> Result<(), String> {
    if function.takes_any_value() {
        if !is_value_type(t) {
            return Err(format!(
                "`{text}`: {fname} takes numbers, booleans, strings, binary, dates, times, timestamps, durations and intervals, not {t}"
            ));
        }
    } else if matches!(function, AggregateFunction::Min | AggregateFunction::Max) {
        if !is_numeric(t) && !is_ordered_value(t) {
            return Err(format!(
                "`{text}`: {fname} takes numbers, strings, dates, times, timestamps and durations, not {t}"
            ));
        }
    } else if function != AggregateFunction::Count && !is_numeric(t) {
        return Err(format!(
            "`{text}`: {fname} needs a numeric argument, got {t}"
        ));
    }
    Ok(())
}

/// Integer and floating-point types the window accumulators add up.
pub fn is_numeric(t: &DataType) -> bool {
    t.is_integer() || t.is_floating() || matches!(t, DataType::Decimal128(..))
}

/// Types whose values the window accumulators keep as bytes (distinct counts, first and last
/// values): fixed-width primitives, booleans, strings and binary.
pub fn is_value_type(t: &DataType) -> bool {
    t.is_primitive()
        || matches!(
            t,
            DataType::Boolean
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
        )
}

/// Types besides numbers that min and max take: strings (by code point) and dates, times,
/// timestamps and durations.
pub fn is_ordered_value(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Timestamp(_, _)
            | DataType::Duration(_)
    )
}

/// A schema with one column per compiled expression.
/// The change column of a change stream's records, at `index`, passed on as it is.
pub fn change_passthrough(index: usize) -> CompiledExpr {
    let field = crate::plan::change_field();
    CompiledExpr {
        text: field.name().clone(),
        name: field.name().clone(),
        data_type: field.data_type().clone(),
        nullable: false,
        expr: Arc::new(datafusion_physical_expr::expressions::Column::new(
            field.name(),
            index,
        )),
    }
}

pub fn schema_of(exprs: &[CompiledExpr]) -> Schema {
    Schema::new(
        exprs
            .iter()
            .map(|e| arrow::datatypes::Field::new(&e.name, e.data_type.clone(), e.nullable))
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
    use arrow::datatypes::Field;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("item_id", DataType::Utf8, false),
            Field::new("price", DataType::Float64, true),
        ]))
    }

    #[test]
    fn reference_filter_evaluates() {
        let f = compile_filter("CAST(split_part(user_id, '_', 2) AS INT) > 50", &schema()).unwrap();
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec!["user_17", "user_51"])),
                Arc::new(StringArray::from(vec!["item_1", "item_2"])),
                Arc::new(arrow::array::Float64Array::from(vec![Some(1.0), None])),
            ],
        )
        .unwrap();
        let out = f.expr.evaluate(&batch).unwrap().into_array(2).unwrap();
        let out = out.as_any().downcast_ref::<BooleanArray>().unwrap();
        assert_eq!(out, &BooleanArray::from(vec![false, true]));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = compile_filter("nope > 1", &schema()).unwrap_err();
        assert!(e.contains("nope"), "{e}");
        let e = compile_filter("user_id", &schema()).unwrap_err();
        assert!(e.contains("boolean"), "{e}");
        let e = compile_filter("user_id = ", &schema()).unwrap_err();
        assert!(e.contains("invalid SQL"), "{e}");
        let e = compile_named("upper(item_id)", &schema()).unwrap_err();
        assert!(e.contains("AS"), "{e}");
        let e = compile_aggregate("median(price)", &schema()).unwrap_err();
        assert!(e.contains("median"), "{e}");
        let e = compile_aggregate("sum(item_id)", &schema()).unwrap_err();
        assert!(e.contains("numeric"), "{e}");
    }

    #[test]
    fn named_and_aggregates() {
        let n = compile_named("upper(item_id) AS item", &schema()).unwrap();
        assert_eq!((n.name.as_str(), &n.data_type), ("item", &DataType::Utf8));
        let n = compile_named("item_id", &schema()).unwrap();
        assert_eq!(n.name, "item_id");
        let a = compile_aggregate("count(*)", &schema()).unwrap();
        assert!(a.argument.is_none() && a.function == AggregateFunction::Count);
        let a = compile_aggregate("AVG(price * 2)", &schema()).unwrap();
        assert_eq!(a.function, AggregateFunction::Avg);
        assert_eq!(a.argument.unwrap().data_type, DataType::Float64);
    }

    #[test]
    fn distinct_counts_and_first_and_last_values_take_any_value_type() {
        for (text, function) in [
            ("count(DISTINCT item_id)", AggregateFunction::CountDistinct),
            (
                "COUNT(distinct upper(item_id))",
                AggregateFunction::CountDistinct,
            ),
            ("count(ALL item_id)", AggregateFunction::Count),
            (
                "approx_count_distinct(user_id)",
                AggregateFunction::ApproxCountDistinct,
            ),
            (
                "approx_distinct(price)",
                AggregateFunction::ApproxCountDistinct,
            ),
            ("first_value(item_id)", AggregateFunction::FirstValue),
            ("last_value(price)", AggregateFunction::LastValue),
        ] {
            let a = compile_aggregate(text, &schema()).unwrap();
            assert_eq!(a.function, function, "{text}");
            assert!(a.argument.is_some(), "{text}");
        }
        let a = compile_aggregate("max(item_id)", &schema()).unwrap();
        assert_eq!(a.argument.unwrap().data_type, DataType::Utf8);
        assert_eq!(AggregateFunction::CountDistinct.name(), "count_distinct");
        assert!(AggregateFunction::ApproxCountDistinct.is_count());
        assert!(!AggregateFunction::FirstValue.is_count());
        for (text, says) in [
            ("sum(DISTINCT price)", "count(DISTINCT x) only"),
            ("count(DISTINCT *)", "takes exactly one argument"),
            ("first_value(*)", "takes exactly one argument"),
            ("last_value(price, item_id)", "takes exactly one argument"),
            ("first_value(named_struct('a', price))", "not Struct"),
            (
                "median(price)",
                "count(DISTINCT x), approx_count_distinct(x)",
            ),
            ("min(price > 1)", "min takes numbers, strings"),
            ("sum(item_id)", "numeric"),
        ] {
            let e = compile_aggregate(text, &schema()).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
