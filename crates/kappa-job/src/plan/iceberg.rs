//! Planning the iceberg sink: the SQL catalog (`url`: SQLite or PostgreSQL, the password given
//! once), the warehouse new tables are created under (`path`), the table (`namespace.table`),
//! the Parquet file settings it shares with the parquet sink, and the Iceberg type of every
//! output column (a column without one is refused, named). Appends are exactly-once: data files
//! are committed as one snapshot per writer when a checkpoint completes, so checkpoints must be
//! on. Every problem is located.

pub mod partition;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};

use self::partition::IcebergPartition;
use super::parquet::ParquetFiles;
use super::{Planner, SinkKind, span};
use crate::secret::Secret;
use crate::spec::{Delivery, SinkSpec};

/// The catalog a job names when it does not say (`catalog_name` in the catalog's tables).
pub const DEFAULT_CATALOG: &str = "kappa";

/// Where a SQL catalog keeps its tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogDatabase {
    /// A SQLite file (one machine: every writer must see it).
    Sqlite(String),
    /// A PostgreSQL database.
    Postgres,
}

/// The Iceberg type a column is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcebergType {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Date,
    /// Microseconds, without a time zone (Kappa's timestamps are UTC).
    Timestamp,
    /// Microseconds, UTC.
    TimestampTz,
    String,
    Binary,
    Decimal {
        precision: u8,
        scale: i8,
    },
}

impl IcebergType {
    /// The Iceberg type of an Arrow column type, if it has one.
    pub fn of(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Boolean => Self::Boolean,
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::UInt8
            | DataType::UInt16 => Self::Int,
            DataType::Int64 | DataType::UInt32 => Self::Long,
            DataType::Float16 | DataType::Float32 => Self::Float,
            DataType::Float64 => Self::Double,
            DataType::Date32 => Self::Date,
            DataType::Timestamp(_, None) => Self::Timestamp,
            DataType::Timestamp(_, Some(_)) => Self::TimestampTz,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::String,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Self::Binary,
            DataType::Decimal128(p, s) if *p <= 38 && *s >= 0 => Self::Decimal {
                precision: *p,
                scale: *s,
            },
            _ => return None,
        })
    }

    /// The Arrow type of this column in a data file (what Iceberg readers expect).
    pub fn arrow(self) -> DataType {
        match self {
            Self::Boolean => DataType::Boolean,
            Self::Int => DataType::Int32,
            Self::Long => DataType::Int64,
            Self::Float => DataType::Float32,
            Self::Double => DataType::Float64,
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            Self::String => DataType::Utf8,
            Self::Binary => DataType::Binary,
            Self::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        }
    }
}

/// An iceberg sink as planned.
#[derive(Debug, Clone)]
pub struct IcebergSinkPlan {
    /// The SQL catalog's url; its password, if any, is shown only redacted.
    pub url: String,
    pub database: CatalogDatabase,
    /// The catalog's password, when not in `url` (a reference, usually).
    pub password: Option<Secret>,
    /// The catalog's name.
    pub catalog: String,
    /// Where new tables are created: `s3://bucket/prefix`, `file:///dir` or `/dir`.
    pub warehouse: String,
    /// The namespace's levels.
    pub namespace: Vec<String>,
    pub table: String,
    pub files: ParquetFiles,
    /// Each output column's Iceberg type, in order.
    pub columns: Vec<IcebergType>,
    /// The table's partition fields (None: not given; an existing table's spec is used, a
    /// new table is unpartitioned).
    pub partition_by: Option<Vec<IcebergPartition>>,
}

impl IcebergSinkPlan {
    /// `namespace.table`, as a user writes it.
    pub fn table_name(&self) -> String {
        format!("{}.{}", self.namespace.join("."), self.table)
    }
}

/// The database of a catalog url, or why it has none.
fn catalog_database(url: &str) -> Result<CatalogDatabase, String> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap_or_default();
        return match path.starts_with('/') && path.len() > 1 {
            true => Ok(CatalogDatabase::Sqlite(path.to_string())),
            false => Err(
                "a SQLite catalog is an absolute file: \"sqlite:///var/lib/kappa/catalog.db\""
                    .into(),
            ),
        };
    }
    match url.starts_with("postgres://") || url.starts_with("postgresql://") {
        true => Ok(CatalogDatabase::Postgres),
        false => Err("an iceberg catalog url is \"sqlite:///path/catalog.db\" or \"postgres://user@host:5432/db\" (a SQL catalog)".into()),
    }
}

impl Planner<'_> {
    /// The kind of an iceberg sink writing rows of `output` (known: not from SQL whose
    /// columns failed to plan), its settings checked.
    pub(super) fn iceberg_sink(
        &mut self,
        s: &SinkSpec,
        prefix: &str,
        output: &SchemaRef,
        output_known: bool,
    ) -> SinkKind {
        self.forbid(
            &s.key,
            &format!("{prefix}.key"),
            "the iceberg sink appends rows: `key` applies to the kafka, postgres, redis, elasticsearch and file connectors only",
        );
        let url = self.required(
            &s.url,
            &format!("{prefix}.url"),
            "the iceberg connector needs its SQL catalog, e.g. \"sqlite:///var/lib/kappa/catalog.db\" or \"postgres://user@host:5432/db\"",
        );
        let database = match (catalog_database(&url), &s.url) {
            (Ok(d), _) => d,
            (Err(why), Some(u)) => {
                self.err(span(u), &format!("{prefix}.url"), why);
                CatalogDatabase::Postgres
            }
            (Err(_), None) => CatalogDatabase::Postgres,
        };
        let password = self.url_password(s, prefix);
        if let (Some(p), CatalogDatabase::Sqlite(_)) = (&s.password, &database) {
            self.err(
                span(p),
                &format!("{prefix}.password"),
                "a SQLite catalog has no password",
            );
        }
        let warehouse = self.store_path(
            s,
            prefix,
            "the iceberg connector needs the warehouse new tables go under: \"s3://bucket/prefix\", \"file:///dir\" or an absolute directory",
        );
        let name = self.required(
            &s.table,
            &format!("{prefix}.table"),
            "the iceberg connector needs the table to append to, `namespace.table` (created when missing)",
        );
        let mut namespace: Vec<String> = name.split('.').map(str::to_string).collect();
        let table = namespace.pop().unwrap_or_default();
        if let Some(t) = &s.table
            && (namespace.is_empty() || namespace.iter().chain([&table]).any(String::is_empty))
        {
            self.err(
                span(t),
                &format!("{prefix}.table"),
                "an iceberg table is named `namespace.table` (e.g. \"analytics.hourly_clicks\")",
            );
        }
        let catalog = match &s.catalog {
            Some(c) if c.get_ref().trim().is_empty() => {
                self.err(span(c), &format!("{prefix}.catalog"), "must not be empty");
                DEFAULT_CATALOG.to_string()
            }
            Some(c) => c.get_ref().clone(),
            None => DEFAULT_CATALOG.to_string(),
        };
        let mut columns = Vec::new();
        for f in output.fields().iter().filter(|_| output_known) {
            match IcebergType::of(f.data_type()) {
                Some(t) => columns.push(t),
                None => self.err(
                    None,
                    &format!("{prefix}.connector"),
                    format!(
                        "column `{}` is {}, which has no Iceberg type: cast it (e.g. to BIGINT, DOUBLE or VARCHAR)",
                        f.name(),
                        f.data_type()
                    ),
                ),
            }
        }
        let partition_by = s.partition_by.as_ref().map(|t| {
            let typed = output_known && columns.len() == output.fields().len();
            if !typed {
                return Vec::new();
            }
            match partition::parse(t.get_ref(), output, &columns) {
                Ok(fields) => fields,
                Err(why) => {
                    self.err(span(t), &format!("{prefix}.partition_by"), why);
                    Vec::new()
                }
            }
        });
        SinkKind::Iceberg(IcebergSinkPlan {
            url,
            database,
            password,
            catalog,
            warehouse,
            namespace,
            table,
            files: self.parquet_files(s, prefix),
            columns,
            partition_by,
        })
    }

    /// The iceberg sink's delivery: exactly-once, at checkpoints.
    pub(super) fn iceberg_delivery(
        &mut self,
        s: &SinkSpec,
        prefix: &str,
        checkpoints: bool,
    ) -> Delivery {
        let field = format!("{prefix}.delivery");
        let at = s.delivery.as_ref().and_then(span);
        if let Some(d) = &s.delivery
            && *d.get_ref() != Delivery::ExactlyOnce
        {
            self.err(
                at.clone(),
                &field,
                "the iceberg sink commits its data files as a snapshot when a checkpoint completes: it is exactly-once only",
            );
        }
        if !checkpoints {
            self.err(
                at,
                &field,
                "the iceberg sink commits a snapshot when a checkpoint completes: checkpoints are off ([checkpoints] enabled = false)",
            );
        }
        Delivery::ExactlyOnce
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::iceberg::{CatalogDatabase, IcebergType};
    use crate::plan::test_jobs::{REFERENCE, errors, line_of, located, with_sink};
    use crate::plan::*;

    #[test]
    fn an_iceberg_sink_plans_its_catalog_table_and_column_types() {
        let text = with_sink(
            "connector = \"iceberg\"\nurl = \"postgres://kappa@127.0.0.1:5432/catalog\"\npassword = \"${env:PGPASSWORD}\"\npath = \"s3://lake/warehouse\"\ntable = \"analytics.hourly\"\nfile_size = \"64MiB\"\npartition_by = \"bucket(8, item_id)\"",
        );
        let plan = plan_job("job.toml", &text, &Overrides::default()).expect("plans");
        let SinkKind::Iceberg(p) = &plan.sinks[0].kind else {
            panic!("{:?}", plan.sinks[0].kind);
        };
        assert_eq!(p.database, CatalogDatabase::Postgres);
        assert_eq!(
            (p.namespace.as_slice(), p.table.as_str()),
            (&["analytics".to_string()][..], "hourly")
        );
        assert_eq!(p.catalog, "kappa");
        let partitions = p.partition_by.as_deref().expect("partition_by");
        assert_eq!(
            (partitions[0].name(), partitions[0].transform.iceberg()),
            ("item_id_bucket".to_string(), "bucket[8]".to_string())
        );
        assert_eq!(p.files.file_bytes, 64 << 20);
        assert_eq!(plan.sinks[0].delivery, Delivery::ExactlyOnce);
        let types: Vec<IcebergType> = plan.sinks[0]
            .schema
            .fields()
            .iter()
            .map(|f| IcebergType::of(f.data_type()).expect("a type"))
            .collect();
        assert_eq!(p.columns, types);
        assert!(p.columns.contains(&IcebergType::Long), "{:?}", p.columns);
        let graph = plan.graph().to_string();
        assert!(
            graph.contains("Sink: iceberg table `analytics.hourly` (catalog `kappa`)"),
            "{graph}"
        );
    }

    #[test]
    fn iceberg_settings_are_checked_and_located() {
        let text = with_sink(
            "connector = \"iceberg\"\nurl = \"sqlite://catalog.db\"\npassword = \"x\"\npath = \"wh\"\ntable = \"hourly\"\nkey = \"{item_id}\"\npartition_by = \"day(item_id)\"\ndelivery = \"at-least-once\"",
        );
        let found = errors(&text);
        let line = |start: &str| line_of(&text, start);
        assert_eq!(
            located(&found),
            [
                ("sink.key", line("key =")),
                ("sink.url", line("url =")),
                ("sink.path", line("path =")),
                ("sink.table", line("table =")),
                ("sink.partition_by", line("partition_by =")),
                ("sink.delivery", line("delivery =")),
            ],
            "{found:?}"
        );
        assert!(found[1].message.contains("absolute file"), "{found:?}");
        assert!(found[3].message.contains("namespace.table"), "{found:?}");
        assert!(
            found[4].message.contains("day does not apply to `item_id`"),
            "{found:?}"
        );
        // A SQLite catalog with a password, and the iceberg settings elsewhere.
        let text = with_sink(
            "connector = \"iceberg\"\nurl = \"sqlite:///var/lib/kappa/c.db\"\npassword = \"x\"\npath = \"/wh\"\ntable = \"a.b\"",
        );
        let e = errors(&text);
        assert!(
            e.len() == 1 && e[0].field == "sink.password" && e[0].message.contains("SQLite"),
            "{e:?}"
        );
        let text = REFERENCE.to_string() + "catalog = \"main\"\n";
        assert_eq!(errors(&text)[0].field, "sink.catalog");
        // No checkpoints.
        let text = with_sink(
            "connector = \"iceberg\"\nurl = \"sqlite:///c.db\"\npath = \"/wh\"\ntable = \"a.b\"",
        ) + "\n[checkpoints]\nenabled = false\n";
        let e = errors(&text);
        assert!(
            e[0].field == "sink.delivery" && e[0].message.contains("checkpoints"),
            "{e:?}"
        );
    }

    #[test]
    fn the_iceberg_example_plans_partitioned_by_the_windows_day() {
        let text = include_str!("../../../../examples/iceberg-hourly-clicks.toml");
        let plan = plan_job("iceberg-hourly-clicks.toml", text, &Overrides::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let SinkKind::Iceberg(p) = &plan.sinks[0].kind else {
            panic!("{:?}", plan.sinks[0].kind);
        };
        assert_eq!(p.columns[1], IcebergType::Timestamp);
        let graph = plan.graph().to_string();
        assert!(
            graph.contains("Sink: iceberg table `analytics.hourly_item_clicks` (catalog `kappa`), partitioned by day(window_start)"),
            "{graph}"
        );
    }

    #[test]
    fn column_types_map_to_iceberg_or_are_refused() {
        use arrow::datatypes::{DataType, TimeUnit};
        assert_eq!(
            IcebergType::of(&DataType::Timestamp(TimeUnit::Millisecond, None)),
            Some(IcebergType::Timestamp)
        );
        assert_eq!(IcebergType::of(&DataType::Int16), Some(IcebergType::Int));
        assert_eq!(IcebergType::of(&DataType::UInt64), None);
        assert_eq!(
            IcebergType::Timestamp.arrow(),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(
            IcebergType::of(&DataType::Decimal128(10, 2)).map(IcebergType::arrow),
            Some(DataType::Decimal128(10, 2))
        );
    }
}
