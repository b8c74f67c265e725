//! The parquet sink (`connector = "parquet"`): result rows as Parquet files in object storage
//! (an S3 prefix or a directory), under partition directories rendered from `partition_by`.
//!
//! Each writer (a subtask) keeps one open file per partition directory; a row group ends
//! after `row_group_size` bytes of encoded data (the parquet writer's own byte limit), a
//! file is closed early after `file_size` bytes, and every open file is closed at each
//! checkpoint barrier. Files are uploaded as they are written (object_store's BufWriter: one
//! put for a small file, a multipart upload beyond its buffer).
//!
//! Exactly-once (the default): files are written under staged names (see [`names`]); at the
//! barrier of checkpoint n the writer closes them and the checkpoint keeps the staged → final
//! pairs; when n completes each is moved to its final name, and a restored checkpoint's pairs
//! are moved by the restarted writer — a final object that exists is a move done. A restarted
//! writer then deletes its staged objects of earlier attempts, which no checkpoint will commit.
//! At-least-once: files are written straight to final names and are visible when closed.

mod names;
mod partition;
mod storage;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use kappa_job::path_template::PathTemplate;
use kappa_job::plan::parquet::{ParquetFiles, ParquetSinkPlan};
use kappa_job::spec::ParquetCompression;
use kappa_runtime::TaskError;
use kappa_runtime::error::with_causes;
use kappa_runtime::io::{PendingCommit, Sink};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use self::names::{Naming, STAGING, restored};
use self::storage::{Storage, failed};
use crate::prepared::Prepared;

/// One staged file of a checkpoint and its final name, relative to the sink's location (kept
/// in the checkpoint).
#[derive(Debug, Serialize, Deserialize)]
struct StagedFile {
    staged: String,
    committed: String,
}

/// A file being written.
struct OpenFile {
    object: ObjectPath,
    writer: AsyncArrowWriter<BufWriter>,
}

/// How the parquet writer writes files of `files`' settings: row groups end by encoded bytes.
pub(crate) fn writer_properties(files: &ParquetFiles) -> WriterProperties {
    let compression = match files.compression {
        ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        ParquetCompression::Snappy => Compression::SNAPPY,
        ParquetCompression::None => Compression::UNCOMPRESSED,
    };
    let row_group_bytes = usize::try_from(files.row_group_bytes).unwrap_or(usize::MAX);
    WriterProperties::builder()
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(Some(row_group_bytes.max(1)))
        .set_compression(compression)
        .build()
}

/// Writes parquet files as described in the module documentation.
pub struct ParquetSink {
    storage: Storage,
    naming: Naming,
    schema: SchemaRef,
    properties: WriterProperties,
    file_bytes: u64,
    partition_by: Option<PathTemplate>,
    exactly_once: bool,
    /// The open file of each partition directory.
    open: BTreeMap<ObjectPath, OpenFile>,
    /// Files closed since the last barrier: their directory and the object written.
    closed: Vec<(ObjectPath, ObjectPath)>,
    /// Files this attempt opened so far (numbers their objects).
    opened: u64,
    /// Staged → final names of the files closed at a barrier, by checkpoint id, waiting for
    /// it to complete.
    prepared: Prepared<Vec<(ObjectPath, ObjectPath)>>,
}

impl ParquetSink {
    /// The sink of `writer` in attempt `attempt` of the job, writing rows of `schema` as
    /// `plan` says.
    pub fn open(
        plan: &ParquetSinkPlan,
        schema: SchemaRef,
        (writer, attempt): (&str, u32),
        exactly_once: bool,
    ) -> Result<Self, TaskError> {
        let properties = writer_properties(&plan.files);
        Ok(Self {
            storage: Storage::open(&plan.location)?,
            naming: Naming {
                writer: writer.to_string(),
                attempt,
            },
            schema,
            properties,
            file_bytes: plan.files.file_bytes,
            partition_by: plan.partition_by.clone(),
            exactly_once,
            open: BTreeMap::new(),
            closed: Vec::new(),
            opened: 0,
            prepared: Prepared::default(),
        })
    }

    /// Why writing `object` failed: the store (a restart may help) or the data.
    fn parquet_error(&self, object: &ObjectPath, e: &ParquetError) -> TaskError {
        let what = format!("writing {}", self.storage.show(object));
        match e {
            ParquetError::External(_) => failed(&what, e),
            _ => TaskError::Data(format!("{what}: {}", with_causes(e))),
        }
    }

    /// Writes `rows` into the open file of `dir`, opening one if needed; closes it once it
    /// holds `file_size` bytes.
    fn write_in(&mut self, dir: ObjectPath, rows: &RecordBatch) -> Result<(), TaskError> {
        if !self.open.contains_key(&dir) {
            let object = match self.exactly_once {
                true => self.naming.staged(self.opened),
                false => self.naming.direct(&dir, self.opened),
            };
            self.opened += 1;
            let upload = self.storage.upload(&object);
            let writer = AsyncArrowWriter::try_new(
                upload,
                self.schema.clone(),
                Some(self.properties.clone()),
            )
            .map_err(|e| self.parquet_error(&object, &e))?;
            self.open.insert(dir.clone(), OpenFile { object, writer });
        }
        let Some(file) = self.open.get_mut(&dir) else {
            return Ok(());
        };
        if let Err(e) = self.storage.block_on(file.writer.write(rows)) {
            let object = file.object.clone();
            return Err(self.parquet_error(&object, &e));
        }
        let size = file.writer.bytes_written() + file.writer.in_progress_size();
        match u64::try_from(size).unwrap_or(u64::MAX) >= self.file_bytes {
            true => self.close(&dir),
            false => Ok(()),
        }
    }

    /// Closes the open file of `dir`: its footer is written and the upload completed.
    fn close(&mut self, dir: &ObjectPath) -> Result<(), TaskError> {
        let Some(mut file) = self.open.remove(dir) else {
            return Ok(());
        };
        if let Err(e) = self.storage.block_on(file.writer.finish()) {
            return Err(self.parquet_error(&file.object, &e));
        }
        self.closed.push((dir.clone(), file.object));
        Ok(())
    }

    /// Closes every open file; the files closed since the last barrier, named for checkpoint
    /// `n` (None: the end of the input) — nothing to name at-least-once.
    fn close_all(&mut self, n: Option<u64>) -> Result<Vec<(ObjectPath, ObjectPath)>, TaskError> {
        let dirs: Vec<ObjectPath> = self.open.keys().cloned().collect();
        for dir in &dirs {
            self.close(dir)?;
        }
        let closed = std::mem::take(&mut self.closed);
        if !self.exactly_once {
            return Ok(Vec::new());
        }
        Ok(closed
            .into_iter()
            .enumerate()
            .map(|(i, (dir, staged))| (staged, self.naming.committed(&dir, n, i)))
            .collect())
    }

    /// Deletes this writer's staged objects of earlier attempts.
    fn remove_leftovers(&self) -> Result<(), TaskError> {
        let staging = ObjectPath::from(STAGING);
        for name in self.storage.names_in(&staging)? {
            if self
                .naming
                .attempt_of(&name)
                .is_some_and(|a| a < self.naming.attempt)
            {
                self.storage.delete(&staging.clone().join(name))?;
            }
        }
        Ok(())
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        for (dir, rows) in partition::split(self.partition_by.as_ref(), batch)? {
            self.write_in(dir, &rows)?;
        }
        Ok(())
    }

    fn prepare(&mut self, n: u64) -> Result<Option<Vec<u8>>, TaskError> {
        let files = self.close_all(Some(n))?;
        if files.is_empty() {
            return Ok(None);
        }
        let listed: Vec<StagedFile> = files
            .iter()
            .map(|(staged, committed)| StagedFile {
                staged: staged.to_string(),
                committed: committed.to_string(),
            })
            .collect();
        let data = serde_json::to_vec(&listed)
            .map_err(|e| TaskError::Data(format!("describing staged parquet files: {e}")))?;
        self.prepared.push(n, files);
        Ok(Some(data))
    }

    fn commit(&mut self, n: u64) -> Result<(), TaskError> {
        let due = self.prepared.take_due(n);
        for (staged, committed) in due.iter().flat_map(|(_, files)| files) {
            self.storage.commit(staged, committed)?;
        }
        Ok(())
    }

    fn recover(&mut self, pending: Vec<PendingCommit>) -> Result<(), TaskError> {
        for p in &pending {
            let listed: Vec<StagedFile> = serde_json::from_slice(&p.data).map_err(|e| {
                TaskError::Data(format!(
                    "the restored checkpoint's parquet file entry of `{}` is corrupt: {e}",
                    p.writer
                ))
            })?;
            for f in &listed {
                let (staged, committed) = restored(&f.staged, &f.committed)?;
                self.storage.commit(&staged, &committed)?;
            }
        }
        self.remove_leftovers()
    }

    fn writer(&self) -> String {
        self.naming.writer.clone()
    }

    /// The input ended: everything written becomes visible at once.
    fn flush(&mut self) -> Result<(), TaskError> {
        let files = self.close_all(None)?;
        self.prepared.push(u64::MAX, files);
        self.commit(u64::MAX)
    }
}
