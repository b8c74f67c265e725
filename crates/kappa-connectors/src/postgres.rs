//! PostgreSQL upsert sink: rows are buffered by id (the rendered key, the last change wins) and
//! written in one transaction per flush as `INSERT … ON CONFLICT (id) DO UPDATE`, batched by UNNEST;
//! a change stream's deleted ids go first as one `DELETE … WHERE id = ANY(…)` per chunk.
//! Its connection (`connect`) and error texts serve the upgrade's table operations too.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::kernels::cast::{CastOptions, can_cast_types, cast_with_options};
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, TimeUnit};
use kappa_job::plan::{POSTGRES_ID, redact_url};
use kappa_job::postgres_tls::split;
use kappa_job::secret::Secret;
use kappa_job::template::KeyTemplate;
use kappa_runtime::TaskError;
use kappa_runtime::error::with_causes;
use kappa_runtime::io::Sink;
use postgres::config::Host;
use postgres::types::ToSql;
use postgres::{Client, Config, Statement};

use crate::key::render_keys;
use crate::postgres_tls;

/// Buffered rows that make `write` flush on its own (between checkpoints).
const FLUSH_ROWS: usize = 10_000;
/// The oldest buffered row is written within this long even without a checkpoint, as Flink's
/// JDBC sink does (`sink.buffer-flush.interval`), so jobs without checkpoints show results.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Rows per INSERT statement (one transaction holds all statements of a flush).
const CHUNK_ROWS: usize = 5_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the table column takes, by its PostgreSQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Int,
    Number,
    Text,
    Bool,
    Timestamp,
    Timestamptz,
    /// Anything else: sent as text and cast by PostgreSQL (numeric input syntax, dates, uuid…).
    Other,
}

impl Target {
    fn of(type_name: &str) -> Self {
        match type_name {
            "int2" | "int4" | "int8" => Self::Int,
            "float4" | "float8" | "numeric" => Self::Number,
            "text" | "varchar" | "bpchar" | "name" => Self::Text,
            "bool" => Self::Bool,
            "timestamp" => Self::Timestamp,
            "timestamptz" => Self::Timestamptz,
            _ => Self::Other,
        }
    }
}

/// How values travel: the element type of the array parameter of the column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// Integers; timestamps as epoch milliseconds.
    Int8,
    Float8,
    Text,
    Bool,
    /// Timestamps or integer epoch milliseconds, as `timestamp`.
    Timestamp,
    /// Timestamps or integer epoch milliseconds, as `timestamptz`.
    Timestamptz,
}

impl Wire {
    fn array_type(self) -> &'static str {
        match self {
            Self::Int8 => "int8[]",
            Self::Float8 => "float8[]",
            Self::Text => "text[]",
            Self::Bool => "bool[]",
            Self::Timestamp => "timestamp[]",
            Self::Timestamptz => "timestamptz[]",
        }
    }

    /// How an Arrow column of type `from` reaches a table column of type `to`, if it can.
    fn choose(from: &DataType, to: Target) -> Option<Self> {
        let timestamp = matches!(from, DataType::Timestamp(_, _));
        let epoch_ms = matches!(from, DataType::Int64 | DataType::Int32) || timestamp;
        Some(match to {
            Target::Int if from.is_integer() || timestamp => Self::Int8,
            Target::Number if from.is_integer() => Self::Int8,
            Target::Number if from.is_floating() => Self::Float8,
            Target::Bool if *from == DataType::Boolean => Self::Bool,
            Target::Timestamp if epoch_ms => Self::Timestamp,
            Target::Timestamptz if epoch_ms => Self::Timestamptz,
            Target::Text | Target::Other if can_cast_types(from, &DataType::Utf8) => Self::Text,
            _ => return None,
        })
    }
}

/// One value of a buffered row.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Time(SystemTime),
}

/// An output column written to the table column of the same name.
#[derive(Debug, Clone)]
struct Column {
    /// Index in the output batches.
    index: usize,
    name: String,
    wire: Wire,
}

/// A table column as the catalog describes it.
#[derive(Debug, Clone)]
struct TableColumn {
    name: String,
    /// pg_type.typname, e.g. `int8`, `timestamptz`.
    type_name: String,
    /// format_type(), e.g. `bigint`, `character varying(20)`.
    formatted: String,
}

/// Upserts the rows of one sink subtask into an existing table by id.
pub struct PostgresSink {
    client: Client,
    /// `host:port/database`, for messages (never the password).
    target: String,
    /// The table as the job names it, for messages.
    table: String,
    statement: Statement,
    /// Deletes the rows of ids (a change stream's deleted keys).
    delete: Statement,
    key: KeyTemplate,
    columns: Vec<Column>,
    /// Rows by id since the last flush, None where the id is deleted; a later change of an
    /// id replaces the earlier one.
    buffer: BTreeMap<String, Option<Vec<Value>>>,
    /// When the oldest row of `buffer` arrived.
    oldest: Option<Instant>,
}

impl PostgresSink {
    /// Connects, checks that `table` exists with an `id` primary key and a column for every
    /// output column of a compatible type, and prepares the upsert. `password` (resolved)
    /// is the sink's `password`, when the url has none.
    pub fn open(
        url: &str,
        password: Option<&Secret>,
        table: &str,
        key: KeyTemplate,
        output: &SchemaRef,
    ) -> Result<Self, TaskError> {
        let (mut client, target) = connect(url, password)?;
        let catalog = |e: postgres::Error| {
            db_error(
                &format!("reading the catalog of postgres at {target} for table `{table}`"),
                &e,
            )
        };
        let found = client
            .query_opt(
                "SELECT c.oid, c.oid::regclass::text, c.relkind::text FROM pg_catalog.pg_class c \
                 WHERE c.oid = pg_catalog.to_regclass($1)",
                &[&table],
            )
            .map_err(catalog)?;
        let Some(row) = found else {
            return Err(TaskError::Data(format!(
                "table `{table}` does not exist in postgres at {target}: the postgres sink writes into an existing table; create it with `id` as its primary key, e.g. {}",
                create_table_hint(table, output)
            )));
        };
        let (oid, qualified, kind): (u32, String, String) = (
            row.try_get(0).map_err(catalog)?,
            row.try_get(1).map_err(catalog)?,
            row.try_get(2).map_err(catalog)?,
        );
        if kind != "r" && kind != "p" {
            return Err(TaskError::Data(format!(
                "`{table}` in postgres at {target} is not a table (relkind `{kind}`): the postgres sink upserts into a table"
            )));
        }
        let table_columns: Vec<TableColumn> = client
            .query(
                "SELECT a.attname::text, t.typname::text, pg_catalog.format_type(a.atttypid, a.atttypmod) \
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&oid],
            )
            .map_err(catalog)?
            .iter()
            .map(|r| {
                Ok(TableColumn {
                    name: r.try_get(0)?,
                    type_name: r.try_get(1)?,
                    formatted: r.try_get(2)?,
                })
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(catalog)?;
        let unique_id: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a \
                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                 WHERE i.indrelid = $1 AND i.indisunique AND i.indnkeyatts = 1 \
                 AND i.indpred IS NULL AND a.attname = $2",
                &[&oid as &(dyn ToSql + Sync), &POSTGRES_ID],
            )
            .map_err(catalog)?
            .try_get(0)
            .map_err(catalog)?;
        let planned = plan_upsert(table, &qualified, &table_columns, output, unique_id > 0)
            .map_err(|e| TaskError::Data(format!("{e} (postgres at {target})")))?;
        let prepare = |client: &mut Client, sql: &str, what: &str| {
            client.prepare(sql).map_err(|e| {
                db_error(
                    &format!("preparing the {what} `{table}` in postgres at {target}"),
                    &e,
                )
            })
        };
        let statement = prepare(&mut client, &planned.upsert, "upsert into")?;
        let delete = prepare(&mut client, &planned.delete, "delete from")?;
        let columns = planned.columns;
        tracing::info!(%target, table = %qualified, "postgres sink ready");
        Ok(Self {
            client,
            target,
            table: table.to_string(),
            statement,
            delete,
            key,
            columns,
            buffer: BTreeMap::new(),
            oldest: None,
        })
    }

    fn due(&self) -> bool {
        self.buffer.len() >= FLUSH_ROWS
            || self.oldest.is_some_and(|t| t.elapsed() >= FLUSH_INTERVAL)
    }
}

impl PostgresSink {
    /// Buffers the rows of `batch` by id, those `deletes` marks as deletes of their id.
    fn buffer(
        &mut self,
        batch: &RecordBatch,
        deletes: Option<&BooleanArray>,
    ) -> Result<(), TaskError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ids = render_keys(&self.key, batch).map_err(|e| TaskError::Data(e.to_string()))?;
        let values = self
            .columns
            .iter()
            .map(|c| column_values(batch.column(c.index), c))
            .collect::<Result<Vec<_>, _>>()?;
        for (row, id) in ids.into_iter().enumerate() {
            let deleted = deletes.is_some_and(|d| d.value(row));
            let row_values = (!deleted).then(|| values.iter().map(|v| v[row].clone()).collect());
            self.buffer.insert(id, row_values);
        }
        self.oldest.get_or_insert_with(Instant::now);
        if self.due() {
            self.flush()?;
        }
        Ok(())
    }
}

impl Sink for PostgresSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        self.buffer(batch, None)
    }

    fn write_changes(
        &mut self,
        batch: &RecordBatch,
        deletes: &BooleanArray,
    ) -> Result<(), TaskError> {
        self.buffer(batch, Some(deletes))
    }

    /// Writes every buffered row in one transaction and commits: durable when this returns.
    fn flush(&mut self) -> Result<(), TaskError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let rows: Vec<(&String, &Vec<Value>)> = self
            .buffer
            .iter()
            .filter_map(|(id, row)| Some((id, row.as_ref()?)))
            .collect();
        let deleted: Vec<&String> = self
            .buffer
            .iter()
            .filter_map(|(id, row)| row.is_none().then_some(id))
            .collect();
        let failed = |e: postgres::Error| {
            db_error(
                &format!(
                    "upserting {} rows into `{}`{} in postgres at {}",
                    rows.len(),
                    self.table,
                    match deleted.len() {
                        0 => String::new(),
                        n => format!(" (and deleting {n})"),
                    },
                    self.target
                ),
                &e,
            )
        };
        let mut tx = self.client.transaction().map_err(failed)?;
        for chunk in deleted.chunks(CHUNK_ROWS) {
            tx.execute(&self.delete, &[&chunk]).map_err(failed)?;
        }
        for chunk in rows.chunks(CHUNK_ROWS) {
            let params = params(&self.columns, chunk);
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
            tx.execute(&self.statement, &refs).map_err(failed)?;
        }
        tx.commit().map_err(failed)?;
        tracing::debug!(table = %self.table, rows = rows.len(), deleted = deleted.len(), "postgres sink flushed");
        self.buffer.clear();
        self.oldest = None;
        Ok(())
    }

    /// Writes rows buffered longer than the flush interval while the task waits for input.
    fn check(&mut self) -> Result<(), TaskError> {
        if self.due() { self.flush() } else { Ok(()) }
    }
}

/// Connects to the PostgreSQL server of connection string `url`, with `password` (resolved)
/// when the url has none. Also returns the server as `host:port/database` for messages (never
/// the password). A bad url or TLS setting is a data error, an unreachable server an I/O error.
pub(crate) fn connect(url: &str, password: Option<&Secret>) -> Result<(Client, String), TaskError> {
    let invalid = |why: String| {
        TaskError::Data(format!(
            "sink.url: invalid postgres connection string `{}`: {why}",
            redact_url(url),
        ))
    };
    let settings = split(url).map_err(|e| invalid(e.to_string()))?;
    let mut config = settings
        .connection
        .parse::<Config>()
        .map_err(|e| invalid(redact_url(&error_text(&e))))?;
    if let Some(p) = password {
        config.password(p.value("sink.password")?);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let mode = settings.tls.mode;
    config.ssl_mode(postgres_tls::client_mode(mode));
    let target = describe(&config);
    let tls = postgres_tls::connector(&settings.tls)
        .map_err(|e| TaskError::Data(format!("postgres at {target}: {}", with_causes(&e))))?;
    let password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let client = config.connect(tls).map_err(|e| {
        let mut msg = redact_url(&error_text(&e));
        if let Some(p) = password.as_deref().filter(|p| !p.is_empty()) {
            msg = msg.replace(p, "***");
        }
        match postgres_tls::final_connect_error(&e, mode) {
            Some(why) => TaskError::Data(format!(
                "cannot connect to postgres at {target}: {why}: {msg}"
            )),
            None => TaskError::Io(format!("cannot connect to postgres at {target}: {msg}")),
        }
    })?;
    Ok((client, target))
}

/// `host:port/database` of a connection config.
fn describe(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_string()
    } else {
        hosts.join(",")
    };
    format!(
        "{hosts}/{}",
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres")
    )
}

/// The text of a PostgreSQL error: the server's message, SQLSTATE, detail and hint, or the
/// client's error with its causes.
pub(crate) fn error_text(e: &postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return with_causes(e);
    };
    let mut msg = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(d) = db.detail() {
        let _ = write!(msg, "; {d}");
    }
    if let Some(h) = db.hint() {
        let _ = write!(msg, "; hint: {h}");
    }
    msg
}

/// A task error from a PostgreSQL error: bad data, SQL or schema (classes 22, 23, 42, …) fail
/// the job; what [`retriable`] says may pass is retried.
fn db_error(what: &str, e: &postgres::Error) -> TaskError {
    let msg = format!("{what}: {}", error_text(e));
    if retriable(e) {
        TaskError::Io(msg)
    } else {
        TaskError::Data(msg)
    }
}

/// Whether an operation that failed with `e` may succeed when tried again: lost connections,
/// shutdowns, deadlocks, lock timeouts and resource shortages, not bad data, SQL or schema.
pub(crate) fn retriable(e: &postgres::Error) -> bool {
    e.as_db_error().is_none_or(|db| {
        matches!(
            db.code().code().get(..2),
            Some("08" | "40" | "53" | "55" | "57" | "58" | "XX")
        )
    })
}

/// `"name"` with its quotes doubled: an identifier for SQL text.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQL type a table column for an output column of type `t` would have.
fn sql_type(t: &DataType) -> &'static str {
    match t {
        t if t.is_integer() => "bigint",
        t if t.is_floating() => "double precision",
        DataType::Boolean => "boolean",
        DataType::Timestamp(_, _) => "timestamptz",
        _ => "text",
    }
}

fn create_table_hint(table: &str, output: &SchemaRef) -> String {
    let mut columns = vec![format!("{POSTGRES_ID} text PRIMARY KEY")];
    columns.extend(
        output
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), sql_type(f.data_type()))),
    );
    format!("CREATE TABLE {table} ({})", columns.join(", "))
}

/// Matches the output columns with the table's and builds the upsert:
/// The statements of a postgres sink.
#[derive(Debug)]
struct Planned {
    /// The table columns the output columns go to, in output order.
    columns: Vec<Column>,
    /// `INSERT INTO t (id, c…) SELECT … FROM UNNEST($1::text[], …) ON CONFLICT (id) DO
    /// UPDATE SET c = EXCLUDED.c, …`.
    upsert: String,
    /// `DELETE FROM t WHERE id = ANY($1::text[])`, the ids cast to the id column's type.
    delete: String,
}

/// The statements writing `output` to `table` by id.
fn plan_upsert(
    table: &str,
    qualified: &str,
    table_columns: &[TableColumn],
    output: &SchemaRef,
    unique_id: bool,
) -> Result<Planned, String> {
    let by_name: BTreeMap<&str, &TableColumn> =
        table_columns.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut missing: Vec<String> = Vec::new();
    let id = by_name.get(POSTGRES_ID);
    if id.is_none() {
        missing.push(format!(
            "`{POSTGRES_ID}` (the row id, from the sink's `key`)"
        ));
    }
    let mut columns = Vec::new();
    let mut mismatched = Vec::new();
    for (index, field) in output.fields().iter().enumerate() {
        let Some(tc) = by_name.get(field.name().as_str()) else {
            missing.push(format!(
                "`{}` ({})",
                field.name(),
                sql_type(field.data_type())
            ));
            continue;
        };
        match Wire::choose(field.data_type(), Target::of(&tc.type_name)) {
            Some(wire) => columns.push((
                Column {
                    index,
                    name: field.name().clone(),
                    wire,
                },
                *tc,
            )),
            None => mismatched.push(format!(
                "`{}` is {} but the output column is {}",
                field.name(),
                tc.formatted,
                field.data_type()
            )),
        }
    }
    if !missing.is_empty() {
        let have: Vec<&str> = table_columns.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "table `{table}` has no column {}: the postgres sink writes the row id to `{POSTGRES_ID}` and every output column to the column of its name; the table has {}",
            missing.join(", "),
            if have.is_empty() {
                "no columns".to_string()
            } else {
                have.join(", ")
            }
        ));
    }
    if !mismatched.is_empty() {
        return Err(format!(
            "table `{table}`: column {}",
            mismatched.join("; column ")
        ));
    }
    if !unique_id {
        return Err(format!(
            "table `{table}` needs a primary key (or unique constraint) on `{POSTGRES_ID}` alone: the postgres sink upserts with ON CONFLICT ({POSTGRES_ID})"
        ));
    }
    let id = id
        .copied()
        .ok_or_else(|| format!("table `{table}` has no column `{POSTGRES_ID}`"))?;
    let id_is_text = Target::of(&id.type_name) == Target::Text;
    let mut names = vec![quote(POSTGRES_ID)];
    let mut arrays = vec!["$1::text[]".to_string()];
    let mut selects = vec![if id_is_text {
        "u.c0".to_string()
    } else {
        format!("CAST(u.c0 AS {})", id.formatted)
    }];
    let delete = format!(
        "DELETE FROM {qualified} WHERE {} = ANY({})",
        quote(POSTGRES_ID),
        match id_is_text {
            true => "$1::text[]".to_string(),
            false => format!("CAST($1::text[] AS {}[])", id.formatted),
        }
    );
    let mut updates = Vec::new();
    for (i, (c, tc)) in columns.iter().enumerate() {
        let n = i + 1;
        names.push(quote(&c.name));
        arrays.push(format!("${}::{}", n + 1, c.wire.array_type()));
        selects.push(if Target::of(&tc.type_name) == Target::Other {
            format!("CAST(u.c{n} AS {})", tc.formatted)
        } else {
            format!("u.c{n}")
        });
        updates.push(format!("{0} = EXCLUDED.{0}", quote(&c.name)));
    }
    let aliases: Vec<String> = (0..names.len()).map(|i| format!("c{i}")).collect();
    let sql = format!(
        "INSERT INTO {qualified} ({}) SELECT {} FROM UNNEST({}) AS u({}) ON CONFLICT ({}) DO UPDATE SET {}",
        names.join(", "),
        selects.join(", "),
        arrays.join(", "),
        aliases.join(", "),
        quote(POSTGRES_ID),
        updates.join(", ")
    );
    Ok(Planned {
        columns: columns.into_iter().map(|(c, _)| c).collect(),
        upsert: sql,
        delete,
    })
}

fn cast(array: &ArrayRef, to: &DataType, column: &str) -> Result<ArrayRef, TaskError> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(array, to, &options).map_err(|e| {
        TaskError::Data(format!(
            "postgres sink: column `{column}` ({}) as {to}: {e}",
            array.data_type()
        ))
    })
}

/// Epoch milliseconds of a timestamp or integer column.
fn epoch_ms(array: &ArrayRef, column: &str) -> Result<ArrayRef, TaskError> {
    let ms = match array.data_type() {
        DataType::Timestamp(_, _) => cast(
            array,
            &DataType::Timestamp(TimeUnit::Millisecond, None),
            column,
        )?,
        _ => Arc::clone(array),
    };
    cast(&ms, &DataType::Int64, column)
}

/// Epoch microseconds of a timestamp column, or of an integer column of epoch milliseconds.
fn epoch_us(array: &ArrayRef, column: &str) -> Result<Vec<Option<i64>>, TaskError> {
    if let DataType::Timestamp(_, _) = array.data_type() {
        let us = cast(
            array,
            &DataType::Timestamp(TimeUnit::Microsecond, None),
            column,
        )?;
        let us = cast(&us, &DataType::Int64, column)?;
        return Ok(us.as_primitive::<Int64Type>().iter().collect());
    }
    let ms = cast(array, &DataType::Int64, column)?;
    ms.as_primitive::<Int64Type>()
        .iter()
        .map(|v| {
            v.map(|ms| {
                ms.checked_mul(1000).ok_or_else(|| {
                    TaskError::Data(format!(
                        "postgres sink: column `{column}`: {ms} ms is out of the timestamp range"
                    ))
                })
            })
            .transpose()
        })
        .collect()
}

fn system_time(us: i64) -> SystemTime {
    let d = Duration::from_micros(us.unsigned_abs());
    if us >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

/// The values of one output column, converted for its table column.
fn column_values(array: &ArrayRef, c: &Column) -> Result<Vec<Value>, TaskError> {
    let name = c.name.as_str();
    Ok(match c.wire {
        Wire::Int8 => epoch_ms(array, name)?
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Int))
            .collect(),
        Wire::Float8 => cast(array, &DataType::Float64, name)?
            .as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Float))
            .collect(),
        Wire::Text => cast(array, &DataType::Utf8, name)?
            .as_string::<i32>()
            .iter()
            .map(|v| v.map_or(Value::Null, |s| Value::Text(s.to_string())))
            .collect(),
        Wire::Bool => cast(array, &DataType::Boolean, name)?
            .as_boolean()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Bool))
            .collect(),
        Wire::Timestamp | Wire::Timestamptz => epoch_us(array, name)?
            .into_iter()
            .map(|v| v.map_or(Value::Null, |us| Value::Time(system_time(us))))
            .collect(),
    })
}

/// The array parameters of one INSERT: the ids, then a typed array per column.
fn params(columns: &[Column], rows: &[(&String, &Vec<Value>)]) -> Vec<Box<dyn ToSql + Sync>> {
    let mut out: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(columns.len() + 1);
    out.push(Box::new(
        rows.iter()
            .map(|(id, _)| (*id).clone())
            .collect::<Vec<String>>(),
    ));
    for (i, c) in columns.iter().enumerate() {
        let values = rows.iter().map(|(_, v)| &v[i]);
        out.push(match c.wire {
            Wire::Int8 => Box::new(
                values
                    .map(|v| match v {
                        Value::Int(x) => Some(*x),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            Wire::Float8 => Box::new(
                values
                    .map(|v| match v {
                        Value::Float(x) => Some(*x),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            Wire::Text => Box::new(
                values
                    .map(|v| match v {
                        Value::Text(x) => Some(x.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            Wire::Bool => Box::new(
                values
                    .map(|v| match v {
                        Value::Bool(x) => Some(*x),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            Wire::Timestamp | Wire::Timestamptz => Box::new(
                values
                    .map(|v| match v {
                        Value::Time(x) => Some(*x),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::datatypes::{Field, Schema};

    fn output() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("item_id", DataType::Utf8, false),
            Field::new("window_end", DataType::Int64, false),
            Field::new("click_count", DataType::Int64, false),
        ]))
    }

    fn col(name: &str, type_name: &str, formatted: &str) -> TableColumn {
        TableColumn {
            name: name.into(),
            type_name: type_name.into(),
            formatted: formatted.into(),
        }
    }

    #[test]
    fn the_upsert_unnests_typed_arrays_and_updates_every_output_column() {
        let table = [
            col("id", "text", "text"),
            col("item_id", "varchar", "character varying(32)"),
            col("window_end", "timestamptz", "timestamp with time zone"),
            col("click_count", "numeric", "numeric(20,0)"),
            col("note", "text", "text"),
        ];
        let planned = plan_upsert("clicks", "clicks", &table, &output(), true).unwrap();
        let (columns, sql) = (planned.columns, planned.upsert);
        assert_eq!(
            planned.delete,
            "DELETE FROM clicks WHERE \"id\" = ANY($1::text[])"
        );
        let wires: Vec<_> = columns.iter().map(|c| c.wire).collect();
        assert_eq!(wires, [Wire::Text, Wire::Timestamptz, Wire::Int8]);
        assert_eq!(
            sql,
            "INSERT INTO clicks (\"id\", \"item_id\", \"window_end\", \"click_count\") \
             SELECT u.c0, u.c1, u.c2, u.c3 FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::int8[]) \
             AS u(c0, c1, c2, c3) ON CONFLICT (\"id\") DO UPDATE SET \"item_id\" = EXCLUDED.\"item_id\", \
             \"window_end\" = EXCLUDED.\"window_end\", \"click_count\" = EXCLUDED.\"click_count\""
        );
    }

    #[test]
    fn other_column_types_are_sent_as_text_and_cast() {
        let table = [
            col("id", "uuid", "uuid"),
            col("item_id", "citext", "citext"),
            col("window_end", "int8", "bigint"),
            col("click_count", "int4", "integer"),
        ];
        let planned = plan_upsert("t", "t", &table, &output(), true).unwrap();
        let sql = planned.upsert;
        assert!(
            sql.contains("SELECT CAST(u.c0 AS uuid), CAST(u.c1 AS citext), u.c2, u.c3 FROM"),
            "{sql}"
        );
    }

    #[test]
    fn missing_columns_and_wrong_types_are_named() {
        let table = [
            col("item_id", "text", "text"),
            col("clicks", "int8", "bigint"),
        ];
        let e = plan_upsert("hourly", "hourly", &table, &output(), true).unwrap_err();
        assert!(
            e.starts_with("table `hourly` has no column `id` (the row id, from the sink's `key`), `window_end` (bigint), `click_count` (bigint)"),
            "{e}"
        );
        assert!(e.ends_with("; the table has item_id, clicks"), "{e}");
        let table = [
            col("id", "text", "text"),
            col("item_id", "int8", "bigint"),
            col("window_end", "bool", "boolean"),
            col("click_count", "int8", "bigint"),
        ];
        let e = plan_upsert("hourly", "hourly", &table, &output(), true).unwrap_err();
        assert_eq!(
            e,
            "table `hourly`: column `item_id` is bigint but the output column is Utf8; column `window_end` is boolean but the output column is Int64"
        );
        let table = [
            col("id", "text", "text"),
            col("item_id", "text", "text"),
            col("window_end", "int8", "bigint"),
            col("click_count", "int8", "bigint"),
        ];
        let e = plan_upsert("hourly", "hourly", &table, &output(), false).unwrap_err();
        assert!(e.contains("needs a primary key"), "{e}");
    }

    #[test]
    fn values_are_converted_for_their_table_columns() {
        let c = |wire| Column {
            index: 0,
            name: "x".into(),
            wire,
        };
        let ms: ArrayRef = Arc::new(Int64Array::from(vec![Some(1_500), None, Some(-1)]));
        assert_eq!(
            column_values(&ms, &c(Wire::Timestamptz)).unwrap(),
            [
                Value::Time(UNIX_EPOCH + Duration::from_millis(1_500)),
                Value::Null,
                Value::Time(UNIX_EPOCH - Duration::from_millis(1))
            ]
        );
        let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![7_200_000]));
        assert_eq!(
            column_values(&ts, &c(Wire::Int8)).unwrap(),
            [Value::Int(7_200_000)]
        );
        assert_eq!(
            column_values(&ts, &c(Wire::Timestamp)).unwrap(),
            [Value::Time(UNIX_EPOCH + Duration::from_secs(7_200))]
        );
        let f: ArrayRef = Arc::new(Float64Array::from(vec![1.5]));
        assert_eq!(
            column_values(&f, &c(Wire::Text)).unwrap(),
            [Value::Text("1.5".into())]
        );
        assert_eq!(
            column_values(&f, &c(Wire::Float8)).unwrap(),
            [Value::Float(1.5)]
        );
        let b: ArrayRef = Arc::new(BooleanArray::from(vec![Some(true), None]));
        assert_eq!(
            column_values(&b, &c(Wire::Bool)).unwrap(),
            [Value::Bool(true), Value::Null]
        );
        let s: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        assert_eq!(
            column_values(&s, &c(Wire::Text)).unwrap(),
            [Value::Text("a".into())]
        );
        let big: ArrayRef = Arc::new(arrow::array::UInt64Array::from(vec![u64::MAX]));
        assert!(matches!(
            column_values(&big, &c(Wire::Int8)),
            Err(TaskError::Data(_))
        ));
    }

    #[test]
    fn wires_follow_the_table_column_type() {
        assert_eq!(
            Wire::choose(&DataType::Int32, Target::Int),
            Some(Wire::Int8)
        );
        assert_eq!(
            Wire::choose(&DataType::UInt64, Target::Number),
            Some(Wire::Int8)
        );
        assert_eq!(
            Wire::choose(&DataType::Float64, Target::Number),
            Some(Wire::Float8)
        );
        assert_eq!(Wire::choose(&DataType::Float64, Target::Int), None);
        assert_eq!(Wire::choose(&DataType::Utf8, Target::Timestamptz), None);
        assert_eq!(
            Wire::choose(&DataType::Int64, Target::Text),
            Some(Wire::Text)
        );
        assert_eq!(
            Wire::choose(&DataType::Utf8, Target::Other),
            Some(Wire::Text)
        );
        assert_eq!(Wire::choose(&DataType::Int64, Target::Bool), None);
    }

    #[test]
    fn connection_targets_never_show_the_password() {
        let config: Config = "postgres://kappa:s3cret@db.example:6543/analytics"
            .parse()
            .unwrap();
        assert_eq!(describe(&config), "db.example:6543/analytics");
        let config: Config = "host=/run/pg user=kappa password=s3cret".parse().unwrap();
        assert_eq!(describe(&config), "/run/pg/.s.PGSQL.5432/kappa");
    }

    #[test]
    fn a_bad_connection_string_is_a_data_error_without_the_password() {
        let e = PostgresSink::open(
            "postgres://kappa:s3cret@db:notaport/x",
            None,
            "t",
            KeyTemplate::parse("{item_id}", &output()).unwrap(),
            &output(),
        )
        .err()
        .unwrap();
        let TaskError::Data(msg) = e else {
            panic!("{e:?}")
        };
        assert!(
            msg.starts_with(
                "sink.url: invalid postgres connection string `postgres://kappa:***@db:notaport/x`"
            ),
            "{msg}"
        );
        assert!(msg.ends_with("invalid value for option `port`"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
    }

    #[test]
    fn an_unreachable_server_is_an_io_error_naming_the_host() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!("postgres://kappa:s3cret@127.0.0.1:{port}/analytics");
        let e = PostgresSink::open(
            &url,
            None,
            "t",
            KeyTemplate::parse("{item_id}", &output()).unwrap(),
            &output(),
        )
        .err()
        .unwrap();
        let TaskError::Io(msg) = e else {
            panic!("{e:?}")
        };
        assert!(
            msg.starts_with(&format!(
                "cannot connect to postgres at 127.0.0.1:{port}/analytics: "
            )),
            "{msg}"
        );
        assert!(msg.contains("Connection refused"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
    }
}
