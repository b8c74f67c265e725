//! The iceberg sink (`connector = "iceberg"`): result rows appended to an Apache Iceberg table
//! of a SQL catalog (SQLite or PostgreSQL), exactly-once.
//!
//! Each writer (a subtask) writes Parquet data files — with Kappa's Parquet writer, the
//! parquet sink's settings, and each column's Iceberg field id — under the table's
//! `data/` directory (`kappa-{job}-sink-{subtask}-{attempt}-{n}-{uuid}.parquet`), closing one after `file_size`
//! bytes and at every checkpoint barrier. The barrier of checkpoint n keeps the closed files'
//! descriptions (path, counts, bounds; Iceberg's JSON form of a data file) in the checkpoint;
//! when n completes, the writer appends them as one snapshot whose summary names the writer
//! and n (`kappa.writer`, `kappa.checkpoint`). A restored writer appends the files of the
//! checkpoint it restores unless a snapshot of the table already says that writer committed
//! that checkpoint or a later one, and iceberg-rust refuses a file appended twice. Files are
//! invisible until their snapshot commits; those of an attempt that failed before are never
//! committed (they stay as orphans for Iceberg's orphan-file removal).
//!
//! Tables are created when missing (format 2, every column optional, the job's columns in
//! order, partitioned as `partition_by` says); an output column an existing table lacks is
//! added to it (optional), one it has must have the same type.

mod data_file;
mod partitions;
mod storage;
mod table;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use iceberg::Catalog;
use iceberg::spec::{
    DataFile, Struct, deserialize_data_file_from_json, serialize_data_file_to_json,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg_catalog_sql::SqlCatalog;
use kappa_job::plan::iceberg::{IcebergSinkPlan, IcebergType};
use kappa_job::secret::Secret;
use kappa_runtime::TaskError;
use kappa_runtime::error::with_causes;
use kappa_runtime::io::{PendingCommit, Sink};
use kappa_state::Location;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use parquet::arrow::AsyncArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::runtime::Runtime;

use self::partitions::{Part, Partitioner};
use self::table::{CHECKPOINT_PROPERTY, WRITER_PROPERTY, failed, last_committed};
use crate::parquet::writer_properties;
use crate::prepared::Prepared;

/// A data file being written.
struct OpenFile {
    /// The partition its rows are in.
    value: Struct,
    /// Its full path, as the table records it.
    path: String,
    store: Arc<dyn ObjectStore>,
    object: ObjectPath,
    writer: AsyncArrowWriter<BufWriter>,
}

/// Appends to an iceberg table as described in the module documentation.
pub struct IcebergSink {
    runtime: Runtime,
    catalog: SqlCatalog,
    /// The table as last loaded or committed.
    table: Table,
    /// `namespace.table`, for messages.
    name: String,
    /// The writer's name in checkpoints (`kappa-{job}-sink-{subtask}`, what its pending
    /// commits carry): it labels the snapshots it commits and begins its files' names.
    writer: String,
    attempt: u32,
    /// The Iceberg type of each column the job writes.
    columns: Vec<IcebergType>,
    /// The data files' schema: the columns as Iceberg types them, with field ids.
    file_schema: SchemaRef,
    properties: WriterProperties,
    file_bytes: u64,
    /// The store of each bucket (or of `/`) data files are written to.
    stores: Mutex<HashMap<String, Location>>,
    partitioner: Partitioner,
    /// The open file of each partition directory.
    open: BTreeMap<String, OpenFile>,
    /// Files closed since the last barrier.
    closed: Vec<DataFile>,
    /// Files this attempt opened so far (numbers their names).
    opened: u64,
    /// The files closed at each barrier, by checkpoint id, waiting for it to complete.
    prepared: Prepared<Vec<DataFile>>,
}

impl IcebergSink {
    /// The sink of `writer` in attempt `attempt` of the job, appending rows of `schema` to the
    /// table of `plan`, its catalog's `password` (resolved) when the url has none.
    pub fn open(
        plan: &IcebergSinkPlan,
        password: Option<&Secret>,
        schema: &SchemaRef,
        (writer, attempt): (&str, u32),
    ) -> Result<Self, TaskError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TaskError::Io(format!("starting the iceberg sink's I/O: {e}")))?;
        let name = plan.table_name();
        let (catalog, table) = runtime.block_on(async {
            let catalog = table::catalog(plan, password).await?;
            let table = table::load_or_create(&catalog, plan, schema).await?;
            // Refused before the table is changed.
            table::check_spec(&table, &name, plan)?;
            table::check_columns(&table, &name, schema, &plan.columns)?;
            let table =
                table::add_missing_columns(&catalog, table, &name, schema, &plan.columns).await?;
            Ok::<_, TaskError>((catalog, table))
        })?;
        let file_schema = table::file_schema(&table, &name, schema, &plan.columns)?;
        let partitioner = Partitioner::new(&table, &name, &file_schema, &plan.columns)?;
        Ok(Self {
            runtime,
            catalog,
            table,
            name,
            writer: writer.to_string(),
            attempt,
            columns: plan.columns.clone(),
            file_schema,
            properties: writer_properties(&plan.files),
            file_bytes: plan.files.file_bytes,
            stores: Mutex::new(HashMap::new()),
            partitioner,
            open: BTreeMap::new(),
            closed: Vec::new(),
            opened: 0,
            prepared: Prepared::default(),
        })
    }

    /// Where the table keeps its files (its data files are written under `data/`).
    pub fn location(&self) -> &str {
        self.table.metadata().location()
    }

    /// `batch`'s columns as the data files hold them.
    fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch, TaskError> {
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(self.file_schema.fields())
            .map(|(c, f)| match c.data_type() == f.data_type() {
                true => Ok(Arc::clone(c)),
                false => cast(c, f.data_type()).map_err(|e| {
                    TaskError::Data(format!(
                        "column `{}` as Iceberg's {}: {e}",
                        f.name(),
                        f.data_type()
                    ))
                }),
            })
            .collect::<Result<_, _>>()?;
        RecordBatch::try_new(Arc::clone(&self.file_schema), columns)
            .map_err(|e| TaskError::Data(format!("rows for iceberg table `{}`: {e}", self.name)))
    }

    /// Opens the next data file, of partition `value` in directory `dir` under `data/`.
    fn open_file(&mut self, dir: &str, value: Struct) -> Result<OpenFile, TaskError> {
        let path = format!(
            "{}/data/{dir}{}{}-{}-{}-{}.parquet",
            self.table.metadata().location().trim_end_matches('/'),
            if dir.is_empty() { "" } else { "/" },
            self.writer,
            self.attempt,
            self.opened,
            uuid::Uuid::new_v4()
        );
        self.opened += 1;
        let (store, object) = storage::resolve(&self.stores, &path)
            .map_err(|e| failed(&format!("opening {path}"), &e))?;
        let upload = BufWriter::new(Arc::clone(&store), object.clone());
        let writer = AsyncArrowWriter::try_new(
            upload,
            Arc::clone(&self.file_schema),
            Some(self.properties.clone()),
        )
        .map_err(|e| TaskError::Data(format!("writing {path}: {}", with_causes(&e))))?;
        Ok(OpenFile {
            value,
            path,
            store,
            object,
            writer,
        })
    }

    /// Closes every open data file.
    fn close_all(&mut self) -> Result<(), TaskError> {
        let dirs: Vec<String> = self.open.keys().cloned().collect();
        for dir in &dirs {
            self.close(dir)?;
        }
        Ok(())
    }

    /// Closes the open data file of `dir`, if any: its footer written and the upload
    /// completed.
    fn close(&mut self, dir: &str) -> Result<(), TaskError> {
        let Some(file) = self.open.remove(dir) else {
            return Ok(());
        };
        let OpenFile {
            value,
            path,
            store,
            object,
            writer,
        } = file;
        let (meta, size) = self.runtime.block_on(async {
            let meta = writer
                .close()
                .await
                .map_err(|e| TaskError::Io(format!("writing {path}: {}", with_causes(&e))))?;
            let head = store.head(&object).await.map_err(|e| {
                TaskError::Io(format!("reading the size of {path}: {}", with_causes(&e)))
            })?;
            Ok::<_, TaskError>((meta, head.size))
        })?;
        let described = data_file::describe(
            path,
            size,
            &meta,
            (&self.file_schema, &self.columns),
            (value, self.partitioner.spec_id()),
        )?;
        self.closed.push(described);
        Ok(())
    }

    /// Appends `files` as the snapshot of `writer`'s checkpoint `n`, unless the table says
    /// that writer committed n or a later checkpoint already.
    fn append(&mut self, files: Vec<DataFile>, writer: &str, n: u64) -> Result<(), TaskError> {
        if files.is_empty() {
            return Ok(());
        }
        let name = self.name.clone();
        let table = self.runtime.block_on(async {
            let current = self
                .catalog
                .load_table(self.table.identifier())
                .await
                .map_err(|e| failed(&format!("loading iceberg table `{name}`"), &e))?;
            if last_committed(&current, writer).is_some_and(|done| done >= n) {
                return Ok(current);
            }
            let properties = HashMap::from([
                (WRITER_PROPERTY.to_string(), writer.to_string()),
                (CHECKPOINT_PROPERTY.to_string(), n.to_string()),
            ]);
            let tx = Transaction::new(&current);
            let tx = tx
                .fast_append()
                .add_data_files(files)
                .set_snapshot_properties(properties)
                .apply(tx)
                .map_err(|e| failed(&format!("appending to iceberg table `{name}`"), &e))?;
            match tx.commit(&self.catalog).await {
                Ok(table) => Ok(table),
                Err(e) => {
                    // Another committer of this writer's checkpoint (an attempt still
                    // winding down) was quicker: its files are in, refused here as added twice.
                    let now = self.catalog.load_table(current.identifier()).await;
                    match now {
                        Ok(t) if last_committed(&t, writer).is_some_and(|done| done >= n) => Ok(t),
                        _ => Err(failed(
                            &format!("committing checkpoint {n} to iceberg table `{name}`"),
                            &e,
                        )),
                    }
                }
            }
        })?;
        self.table = table;
        Ok(())
    }

    /// The checkpoint's description of `files`.
    fn describe_pending(&self, files: &[DataFile]) -> Result<Vec<u8>, TaskError> {
        let metadata = self.table.metadata();
        let listed: Vec<String> = files
            .iter()
            .map(|f| {
                serialize_data_file_to_json(
                    f.clone(),
                    metadata.default_partition_type(),
                    metadata.format_version(),
                )
                .map_err(|e| failed("describing an iceberg data file", &e))
            })
            .collect::<Result<_, _>>()?;
        serde_json::to_vec(&listed)
            .map_err(|e| TaskError::Data(format!("describing iceberg data files: {e}")))
    }

    /// The files a restored checkpoint lists for `p`'s writer.
    fn restored_files(&self, p: &PendingCommit) -> Result<Vec<DataFile>, TaskError> {
        let corrupt = |why: String| {
            TaskError::Data(format!(
                "the restored checkpoint's iceberg data files of `{}` are corrupt: {why}",
                p.writer
            ))
        };
        let listed: Vec<String> =
            serde_json::from_slice(&p.data).map_err(|e| corrupt(e.to_string()))?;
        let metadata = self.table.metadata();
        listed
            .iter()
            .map(|json| {
                deserialize_data_file_from_json(
                    json,
                    metadata.default_partition_spec_id(),
                    metadata.default_partition_type(),
                    metadata.current_schema(),
                )
                .map_err(|e| corrupt(with_causes(&e)))
            })
            .collect()
    }
}

impl IcebergSink {
    /// Writes the rows of one partition into its open file, opening one if needed; closes it
    /// once it holds `file_size` bytes.
    fn write_in(&mut self, part: Part) -> Result<(), TaskError> {
        if !self.open.contains_key(&part.dir) {
            let file = self.open_file(&part.dir, part.value)?;
            self.open.insert(part.dir.clone(), file);
        }
        let Some(file) = self.open.get_mut(&part.dir) else {
            return Ok(());
        };
        if let Err(e) = self.runtime.block_on(file.writer.write(&part.rows)) {
            return Err(TaskError::Io(format!(
                "writing {}: {}",
                file.path,
                with_causes(&e)
            )));
        }
        let size = file.writer.bytes_written() + file.writer.in_progress_size();
        match u64::try_from(size).unwrap_or(u64::MAX) >= self.file_bytes {
            true => self.close(&part.dir),
            false => Ok(()),
        }
    }
}

impl Sink for IcebergSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = self.conform(batch)?;
        for part in self.partitioner.split(&rows)? {
            self.write_in(part)?;
        }
        Ok(())
    }

    fn prepare(&mut self, n: u64) -> Result<Option<Vec<u8>>, TaskError> {
        self.close_all()?;
        let files = std::mem::take(&mut self.closed);
        if files.is_empty() {
            return Ok(None);
        }
        let data = self.describe_pending(&files)?;
        self.prepared.push(n, files);
        Ok(Some(data))
    }

    fn commit(&mut self, n: u64) -> Result<(), TaskError> {
        let due = self.prepared.take_due(n);
        let Some(last) = due.iter().map(|(id, _)| *id).max() else {
            return Ok(());
        };
        let files = due.into_iter().flat_map(|(_, f)| f).collect();
        let writer = self.writer.clone();
        self.append(files, &writer, last)
    }

    fn recover(&mut self, pending: Vec<PendingCommit>) -> Result<(), TaskError> {
        for p in &pending {
            let files = self.restored_files(p)?;
            self.append(files, &p.writer, p.checkpoint)?;
        }
        Ok(())
    }

    fn writer(&self) -> String {
        self.writer.clone()
    }

    /// The input ended: everything written is appended at once.
    fn flush(&mut self) -> Result<(), TaskError> {
        self.close_all()?;
        let files = std::mem::take(&mut self.closed);
        self.prepared.push(u64::MAX, files);
        self.commit(u64::MAX)
    }
}
