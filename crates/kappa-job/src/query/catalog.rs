//! What a SQL query can name: the job's sources and views as tables (and the tables the window
//! functions are rewritten to), DataFusion's scalar, aggregate and window functions (the last
//! for `ROW_NUMBER() OVER (…)`, which only the ranking patterns of [`super::rank`] translate).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, SchemaRef};
use datafusion_common::TableReference;
use datafusion_common::config::ConfigOptions;
use datafusion_expr::logical_plan::builder::LogicalTableSource;
use datafusion_expr::planner::{ContextProvider, ExprPlanner};
use datafusion_expr::{AggregateUDF, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};

use crate::query::tvf::WINDOW_TABLE_PREFIX;
use crate::sql::FUNCTIONS;

/// DataFusion's aggregate functions by every name and alias, lowercase.
static AGGREGATES: LazyLock<BTreeMap<String, Arc<AggregateUDF>>> = LazyLock::new(|| {
    let mut all = BTreeMap::new();
    for f in datafusion_functions_aggregate::all_default_aggregate_functions() {
        for alias in f.aliases() {
            all.insert(alias.to_lowercase(), Arc::clone(&f));
        }
        all.insert(f.name().to_lowercase(), f);
    }
    all
});

/// DataFusion's window functions by name, lowercase.
static WINDOW_FUNCTIONS: LazyLock<BTreeMap<String, Arc<WindowUDF>>> = LazyLock::new(|| {
    datafusion_functions_window::all_default_window_functions()
        .into_iter()
        .map(|f| (f.name().to_lowercase(), f))
        .collect()
});

/// The tables of one statement, by the name a query uses.
#[derive(Default)]
pub(crate) struct Catalog {
    tables: BTreeMap<String, SchemaRef>,
}

impl Catalog {
    pub fn insert(&mut self, name: &str, schema: SchemaRef) {
        self.tables.insert(name.to_string(), schema);
    }

    /// The names a user may write (sources and views), for messages.
    pub fn names(&self) -> Vec<&str> {
        self.tables
            .keys()
            .map(String::as_str)
            .filter(|n| !n.starts_with(WINDOW_TABLE_PREFIX))
            .collect()
    }
}

impl ContextProvider for Catalog {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion_common::Result<Arc<dyn TableSource>> {
        if let TableReference::Bare { table } = &name
            && let Some(schema) = self.tables.get(table.as_ref())
        {
            return Ok(Arc::new(LogicalTableSource::new(Arc::clone(schema))));
        }
        datafusion_common::plan_err!(
            "unknown table `{name}`: the tables are {}",
            self.names().join(", ")
        )
    }
    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        FUNCTIONS.get_expr_planners()
    }
    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        FUNCTIONS.get_function_meta(name)
    }
    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }
    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        AGGREGATES.get(&name.to_lowercase()).cloned()
    }
    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        WINDOW_FUNCTIONS.get(&name.to_lowercase()).cloned()
    }
    fn get_variable_type(&self, _names: &[String]) -> Option<DataType> {
        None
    }
    fn options(&self) -> &ConfigOptions {
        FUNCTIONS.options()
    }
    fn udf_names(&self) -> Vec<String> {
        FUNCTIONS.udf_names()
    }
    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn udaf_names(&self) -> Vec<String> {
        AGGREGATES.keys().cloned().collect()
    }
    fn udwf_names(&self) -> Vec<String> {
        WINDOW_FUNCTIONS.keys().cloned().collect()
    }
}
