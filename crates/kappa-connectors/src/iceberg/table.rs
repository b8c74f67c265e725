//! The iceberg sink's table: the SQL catalog opened (SQLite or PostgreSQL through sqlx, as
//! iceberg-rust's `SqlCatalog` keeps it: the tables Java's JDBC catalog and pyiceberg's
//! `SqlCatalog` read), the namespace and table created when missing, output columns the table
//! lacks added, and the columns the job writes matched to the table's by name — each with its field id, which goes into the data
//! files' Parquet schema so that readers find columns by id. Appends carry, in their snapshot
//! summary, the writer and the checkpoint they commit, so a restored writer can tell whether
//! a commit of a pending checkpoint already happened.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema as ArrowSchema, SchemaRef};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{
    SQL_CATALOG_PROP_BIND_STYLE, SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE, SqlBindStyle,
    SqlCatalog, SqlCatalogBuilder,
};
use kappa_job::plan::iceberg::{CatalogDatabase, IcebergSinkPlan, IcebergType};
use kappa_job::secret::Secret;
use kappa_runtime::TaskError;
use kappa_runtime::error::with_causes;
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;

use super::partitions::transform;
use super::storage::ObjectStorageFactory;

/// The snapshot summary property naming the writer that committed it.
pub(super) const WRITER_PROPERTY: &str = "kappa.writer";
/// The snapshot summary property naming the checkpoint whose files it appended.
pub(super) const CHECKPOINT_PROPERTY: &str = "kappa.checkpoint";

/// An iceberg failure while doing `what`: a restart may help when iceberg says a retry can
/// (a commit conflict, storage), or the catalog could not be reached; otherwise it is the
/// table or the data.
pub(super) fn failed(what: &str, e: &iceberg::Error) -> TaskError {
    let text = format!("{what}: {}", with_causes(e));
    match e.retryable()
        || matches!(
            e.kind(),
            iceberg::ErrorKind::Unexpected | iceberg::ErrorKind::CatalogCommitConflicts
        ) {
        true => TaskError::Io(text),
        false => TaskError::Data(text),
    }
}

/// The catalog url sqlx connects to: a SQLite file is created when missing, a PostgreSQL
/// password given apart is put in.
fn connect_url(plan: &IcebergSinkPlan, password: Option<&Secret>) -> Result<String, TaskError> {
    match (&plan.database, password) {
        (CatalogDatabase::Sqlite(_), _) if plan.url.contains('?') => Ok(plan.url.clone()),
        (CatalogDatabase::Sqlite(_), _) => Ok(format!("{}?mode=rwc", plan.url)),
        (CatalogDatabase::Postgres, None) => Ok(plan.url.clone()),
        (CatalogDatabase::Postgres, Some(p)) => {
            let mut url = url::Url::parse(&plan.url).map_err(|e| {
                TaskError::Data(format!("the iceberg catalog url is not a url: {e}"))
            })?;
            url.set_password(Some(p.value("sink.password")?))
                .map_err(|()| {
                    TaskError::Data("the iceberg catalog url takes no password".into())
                })?;
            Ok(url.to_string())
        }
    }
}

/// Opens the catalog of `plan` (run on a tokio runtime).
pub(super) async fn catalog(
    plan: &IcebergSinkPlan,
    password: Option<&Secret>,
) -> Result<SqlCatalog, TaskError> {
    let bind = match plan.database {
        CatalogDatabase::Sqlite(_) => SqlBindStyle::QMark,
        CatalogDatabase::Postgres => SqlBindStyle::DollarNumeric,
    };
    let props = HashMap::from([
        (
            SQL_CATALOG_PROP_URI.to_string(),
            connect_url(plan, password)?,
        ),
        (
            SQL_CATALOG_PROP_WAREHOUSE.to_string(),
            plan.warehouse.trim_end_matches('/').to_string(),
        ),
        (SQL_CATALOG_PROP_BIND_STYLE.to_string(), bind.to_string()),
    ]);
    SqlCatalogBuilder::default()
        .with_storage_factory(Arc::new(ObjectStorageFactory))
        .load(&plan.catalog, props)
        .await
        .map_err(|e| {
            // The url may hold a password: name the catalog, not the url.
            failed(&format!("opening iceberg catalog `{}`", plan.catalog), &e)
        })
}

/// The Iceberg type of a column type.
fn primitive(t: IcebergType) -> PrimitiveType {
    match t {
        IcebergType::Boolean => PrimitiveType::Boolean,
        IcebergType::Int => PrimitiveType::Int,
        IcebergType::Long => PrimitiveType::Long,
        IcebergType::Float => PrimitiveType::Float,
        IcebergType::Double => PrimitiveType::Double,
        IcebergType::Date => PrimitiveType::Date,
        IcebergType::Timestamp => PrimitiveType::Timestamp,
        IcebergType::TimestampTz => PrimitiveType::Timestamptz,
        IcebergType::String => PrimitiveType::String,
        IcebergType::Binary => PrimitiveType::Binary,
        IcebergType::Decimal { precision, scale } => PrimitiveType::Decimal {
            precision: u32::from(precision),
            scale: u32::try_from(scale).unwrap_or(0),
        },
    }
}

/// The table's schema for a job writing `columns` of `schema` (every column optional, ids
/// from 1).
fn new_schema(schema: &SchemaRef, columns: &[IcebergType]) -> Result<Schema, iceberg::Error> {
    let fields = schema
        .fields()
        .iter()
        .zip(columns)
        .zip(1..)
        .map(|((f, t), id)| {
            Arc::new(NestedField::optional(
                id,
                f.name(),
                Type::Primitive(primitive(*t)),
            ))
        });
    Schema::builder().with_fields(fields).build()
}

/// The partition spec of a new table for a job writing `schema` (ids as [`new_schema`]).
fn new_spec(
    schema: &SchemaRef,
    plan: &IcebergSinkPlan,
) -> Result<UnboundPartitionSpec, iceberg::Error> {
    let mut spec = UnboundPartitionSpec::builder();
    for p in plan.partition_by.iter().flatten() {
        let index = schema.index_of(&p.column).map_err(|_| {
            iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!("no column `{}` to partition by", p.column),
            )
        })?;
        let id = i32::try_from(index + 1).unwrap_or(i32::MAX);
        spec = spec.add_partition_field(id, p.name(), transform(p))?;
    }
    Ok(spec.build())
}

/// Refuses an existing table whose partition fields are not those `plan` gives (when it
/// gives them).
pub(super) fn check_spec(
    table: &Table,
    name: &str,
    plan: &IcebergSinkPlan,
) -> Result<(), TaskError> {
    let Some(wanted) = &plan.partition_by else {
        return Ok(());
    };
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    let show = |fields: Vec<(String, String)>| match fields.is_empty() {
        true => "unpartitioned".to_string(),
        false => fields
            .iter()
            .map(|(t, c)| format!("{t}({c})"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let has: Vec<(String, String)> = metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| {
            let column = schema
                .field_by_id(f.source_id)
                .map_or_else(|| f.source_id.to_string(), |c| c.name.clone());
            (f.transform.to_string(), column)
        })
        .collect();
    let wants: Vec<(String, String)> = wanted
        .iter()
        .map(|p| (transform(p).to_string(), p.column.clone()))
        .collect();
    match has == wants {
        true => Ok(()),
        false => Err(TaskError::Data(format!(
            "iceberg table `{name}` is partitioned {}; the job's partition_by says {} (leave partition_by out to write the table's partitions)",
            match has.is_empty() {
                true => "by nothing".to_string(),
                false => format!("by {}", show(has)),
            },
            show(wants)
        ))),
    }
}

/// Loads the table of `plan`, creating its namespace and itself (unpartitioned, format 2)
/// when missing; another writer creating it at the same time is fine.
pub(super) async fn load_or_create(
    catalog: &SqlCatalog,
    plan: &IcebergSinkPlan,
    schema: &SchemaRef,
) -> Result<Table, TaskError> {
    let name = plan.table_name();
    let namespace = NamespaceIdent::from_vec(plan.namespace.clone())
        .map_err(|e| failed(&format!("naming the namespace of `{name}`"), &e))?;
    let ident = TableIdent::new(namespace.clone(), plan.table.clone());
    let exists = catalog
        .table_exists(&ident)
        .await
        .map_err(|e| failed(&format!("looking up iceberg table `{name}`"), &e))?;
    if !exists {
        let ns_exists = catalog
            .namespace_exists(&namespace)
            .await
            .map_err(|e| failed(&format!("looking up the namespace of `{name}`"), &e))?;
        if !ns_exists
            && let Err(e) = catalog.create_namespace(&namespace, HashMap::new()).await
            && !catalog.namespace_exists(&namespace).await.unwrap_or(false)
        {
            return Err(failed(&format!("creating the namespace of `{name}`"), &e));
        }
        let creation = TableCreation::builder()
            .name(plan.table.clone())
            .schema(
                new_schema(schema, &plan.columns)
                    .map_err(|e| failed(&format!("the schema of `{name}`"), &e))?,
            )
            .partition_spec(
                new_spec(schema, plan)
                    .map_err(|e| failed(&format!("the partition spec of `{name}`"), &e))?,
            )
            .build();
        match catalog.create_table(&namespace, creation).await {
            Ok(t) => return Ok(t),
            Err(e) if !catalog.table_exists(&ident).await.unwrap_or(false) => {
                return Err(failed(&format!("creating iceberg table `{name}`"), &e));
            }
            Err(_) => {}
        }
    }
    catalog
        .load_table(&ident)
        .await
        .map_err(|e| failed(&format!("loading iceberg table `{name}`"), &e))
}

/// The output columns of `schema` the table of `table` lacks, with their types.
fn missing_columns<'a>(
    table: &Table,
    schema: &'a SchemaRef,
    columns: &[IcebergType],
) -> Vec<(&'a str, IcebergType)> {
    let current = table.metadata().current_schema();
    schema
        .fields()
        .iter()
        .zip(columns)
        .filter(|(f, _)| current.field_by_name(f.name()).is_none())
        .map(|(f, t)| (f.name().as_str(), *t))
        .collect()
}

/// Adds the output columns the table lacks, as optional columns (rows written before read
/// them as null), and returns the table as it then is. Another writer adding them at the same
/// time is fine.
pub(super) async fn add_missing_columns(
    catalog: &SqlCatalog,
    table: Table,
    name: &str,
    schema: &SchemaRef,
    columns: &[IcebergType],
) -> Result<Table, TaskError> {
    let missing = missing_columns(&table, schema, columns);
    if missing.is_empty() {
        return Ok(table);
    }
    let added: Vec<String> = missing
        .iter()
        .map(|(c, t)| format!("{c} ({})", primitive(*t)))
        .collect();
    let tx = Transaction::new(&table);
    let action = missing.iter().fold(tx.update_schema(), |a, (c, t)| {
        a.add_column(AddColumn::optional(c, Type::Primitive(primitive(*t))))
    });
    let tx = action
        .apply(tx)
        .map_err(|e| failed(&format!("adding columns to `{name}`"), &e))?;
    match tx.commit(catalog).await {
        Ok(t) => {
            tracing::info!(table = name, columns = %added.join(", "), "added the job's new columns to the iceberg table");
            Ok(t)
        }
        Err(e) => {
            let now = catalog
                .load_table(table.identifier())
                .await
                .map_err(|e| failed(&format!("loading iceberg table `{name}`"), &e))?;
            match missing_columns(&now, schema, columns).is_empty() {
                true => Ok(now),
                false => Err(failed(
                    &format!(
                        "adding columns {} to iceberg table `{name}`",
                        added.join(", ")
                    ),
                    &e,
                )),
            }
        }
    }
}

/// Refuses a table with a column the job writes as another type, or a required column the
/// job does not write (columns the table lacks are not refused: they are added).
pub(super) fn check_columns(
    table: &Table,
    name: &str,
    schema: &SchemaRef,
    columns: &[IcebergType],
) -> Result<(), TaskError> {
    let current = table.metadata().current_schema();
    for (f, t) in schema.fields().iter().zip(columns) {
        let wanted = Type::Primitive(primitive(*t));
        match current.field_by_name(f.name()) {
            Some(existing) if *existing.field_type != wanted => {
                return Err(TaskError::Data(format!(
                    "iceberg table `{name}` has column `{}` as {}; the job writes it as {wanted}",
                    f.name(),
                    existing.field_type
                )));
            }
            _ => {}
        }
    }
    match current
        .as_struct()
        .fields()
        .iter()
        .find(|c| c.required && schema.field_with_name(&c.name).is_err())
    {
        Some(missing) => Err(TaskError::Data(format!(
            "iceberg table `{name}` requires column `{}`, which the job does not write",
            missing.name
        ))),
        None => Ok(()),
    }
}

/// The Arrow schema of the data files: the job's columns as the table types them, each with
/// the table's field id (the table checked, its missing columns added).
pub(super) fn file_schema(
    table: &Table,
    name: &str,
    schema: &SchemaRef,
    columns: &[IcebergType],
) -> Result<SchemaRef, TaskError> {
    check_columns(table, name, schema, columns)?;
    let current = table.metadata().current_schema();
    let mut fields = Vec::with_capacity(columns.len());
    for (f, t) in schema.fields().iter().zip(columns) {
        let Some(existing) = current.field_by_name(f.name()) else {
            return Err(TaskError::Data(format!(
                "iceberg table `{name}` has no column `{}`",
                f.name()
            )));
        };
        let metadata = HashMap::from([(
            PARQUET_FIELD_ID_META_KEY.to_string(),
            existing.id.to_string(),
        )]);
        fields.push(Field::new(f.name(), t.arrow(), true).with_metadata(metadata));
    }
    Ok(Arc::new(ArrowSchema::new(fields)))
}

/// The last checkpoint `writer` committed to `table`, by the snapshots' summaries (None: none
/// the table still has).
pub(super) fn last_committed(table: &Table, writer: &str) -> Option<u64> {
    table
        .metadata()
        .snapshots()
        .filter(|s| {
            s.summary()
                .additional_properties
                .get(WRITER_PROPERTY)
                .map(String::as_str)
                == Some(writer)
        })
        .filter_map(|s| {
            s.summary()
                .additional_properties
                .get(CHECKPOINT_PROPERTY)
                .and_then(|n| n.parse().ok())
        })
        .max()
}
