//! The archive of a topic: its Parquet files under the location (names ending `.parquet`,
//! none under a directory whose name starts with `_` or `.`, where writers stage theirs), each
//! footer checked for the columns a replay reads, and every row group indexed by the
//! partitions and offsets its statistics give.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, TimeUnit};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use kappa_state::Location;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;

use super::phase::Held;

/// The columns of an archive file: the record's partition (int32), offset (int64) and value
/// (binary); its timestamp (timestamp in milliseconds) and key (binary) where written.
pub const PARTITION: &str = "partition";
pub const OFFSET: &str = "offset";
pub const VALUE: &str = "value";
pub const TIMESTAMP: &str = "timestamp";
pub const KEY: &str = "key";

/// A row group of this many partitions or more is refused: an archive is partitioned by
/// Kafka partition, and a statistics range this wide is no index.
const MAX_PARTITIONS_PER_ROW_GROUP: i64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("listing the archive {location}")]
    List {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("reading archive file {file}")]
    Read {
        file: String,
        #[source]
        source: ParquetError,
    },
    #[error("archive file {file}: {problem}")]
    Invalid { file: String, problem: String },
}

impl ArchiveError {
    /// Whether trying again can help: storage may answer later; a file that does not fit
    /// stays so.
    pub fn retriable(&self) -> bool {
        match self {
            Self::List { .. } => true,
            Self::Read { source, .. } => matches!(source, ParquetError::External(_)),
            Self::Invalid { .. } => false,
        }
    }
}

/// Rows of one row group that may belong to a partition, and the offsets its statistics give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index into [`Archive::files`].
    pub file: usize,
    pub row_group: usize,
    pub first: i64,
    pub last: i64,
    /// The latest record timestamp in it, when its statistics give one.
    pub latest: Option<i64>,
}

/// One file of the archive.
pub struct ArchiveFile {
    pub path: ObjectPath,
    pub size: u64,
    /// Its footer and Arrow schema.
    pub metadata: ArrowReaderMetadata,
}

/// The archive at a location, indexed.
pub struct Archive {
    pub location: Location,
    pub files: Vec<ArchiveFile>,
    /// Per partition: the segments that may hold its records, by first offset.
    segments: BTreeMap<i32, Vec<Segment>>,
}

/// Reads byte ranges of one object for the Parquet reader.
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    size: u64,
}

impl ObjectReader {
    pub fn new(store: Arc<dyn ObjectStore>, path: ObjectPath, size: u64) -> Self {
        Self { store, path, size }
    }
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Whether `path` (relative to the archive) names a committed archive file.
fn is_archive_file(path: &ObjectPath) -> bool {
    let parts: Vec<_> = path.parts().collect();
    let Some((name, dirs)) = parts.split_last() else {
        return false;
    };
    name.as_ref().ends_with(".parquet")
        && !name.as_ref().starts_with(['.', '_'])
        && dirs.iter().all(|d| !d.as_ref().starts_with(['.', '_']))
}

impl Archive {
    /// Lists the archive at `location` and reads every file's footer.
    pub async fn open(location: Location) -> Result<Self, ArchiveError> {
        let listed: Vec<_> = location
            .store
            .list(Some(&location.root))
            .try_collect()
            .await
            .map_err(|source| ArchiveError::List {
                location: location.text.clone(),
                source,
            })?;
        let root_len = location.root.parts().count();
        let mut objects: Vec<(ObjectPath, u64)> = listed
            .into_iter()
            .filter(|o| is_archive_file(&ObjectPath::from_iter(o.location.parts().skip(root_len))))
            .map(|o| (o.location, o.size))
            .collect();
        objects.sort();
        let mut files = Vec::with_capacity(objects.len());
        for (path, size) in objects {
            let file = location.show(&path);
            let mut reader = ObjectReader::new(Arc::clone(&location.store), path.clone(), size);
            let read = |source| ArchiveError::Read {
                file: file.clone(),
                source,
            };
            let footer = reader.get_metadata(None).await.map_err(read)?;
            let metadata =
                ArrowReaderMetadata::try_new(footer, ArrowReaderOptions::new()).map_err(read)?;
            files.push(ArchiveFile {
                path,
                size,
                metadata,
            });
        }
        let segments = index(&files).map_err(|(i, problem)| ArchiveError::Invalid {
            file: location.show(&files[i].path),
            problem,
        })?;
        Ok(Self {
            location,
            files,
            segments,
        })
    }

    /// The segments that may hold records of `partition`, by first offset.
    pub fn segments(&self, partition: i32) -> &[Segment] {
        self.segments.get(&partition).map_or(&[], Vec::as_slice)
    }

    /// The partitions the archive may hold records of.
    pub fn partitions(&self) -> impl Iterator<Item = i32> + '_ {
        self.segments.keys().copied()
    }

    /// The offsets the archive holds of `partition`, if any.
    pub fn held(&self, partition: i32) -> Option<Held> {
        let s = self.segments(partition);
        Some(Held {
            first: s.iter().map(|s| s.first).min()?,
            last: s.iter().map(|s| s.last).max()?,
        })
    }

    /// Whether every file has column `name` (timestamp, key), which metadata columns need.
    pub fn has(&self, name: &str) -> bool {
        self.files
            .iter()
            .all(|f| f.metadata.schema().column_with_name(name).is_some())
    }

    /// File `file` as a user finds it, for messages.
    pub fn show(&self, file: usize) -> String {
        self.location.show(&self.files[file].path)
    }
}

/// Checks the columns of an archive file's schema.
pub fn check_columns(schema: &Schema) -> Result<(), String> {
    let want: [(&str, &[DataType], bool); 5] = [
        (PARTITION, &[DataType::Int32], true),
        (OFFSET, &[DataType::Int64], true),
        (VALUE, &[DataType::Binary], true),
        (
            TIMESTAMP,
            &[DataType::Timestamp(TimeUnit::Millisecond, None)],
            false,
        ),
        (KEY, &[DataType::Binary], false),
    ];
    for (name, types, required) in want {
        match schema.column_with_name(name) {
            None if required => {
                return Err(format!(
                    "no column `{name}`: an archive has columns partition (int32), offset (int64) and value (binary), and may have timestamp and key"
                ));
            }
            None => {}
            Some((_, f)) if !types.contains(f.data_type()) => {
                return Err(format!(
                    "column `{name}` is {}, not {}",
                    f.data_type(),
                    types[0]
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The segments of every file by partition; an error names the file (its index) and why.
fn index(files: &[ArchiveFile]) -> Result<BTreeMap<i32, Vec<Segment>>, (usize, String)> {
    let mut by_partition: BTreeMap<i32, Vec<Segment>> = BTreeMap::new();
    for (file, f) in files.iter().enumerate() {
        let fail = |problem: String| (file, problem);
        check_columns(f.metadata.schema()).map_err(fail)?;
        let parquet = f.metadata.metadata();
        let leaf = |name: &str| {
            parquet
                .file_metadata()
                .schema_descr()
                .columns()
                .iter()
                .position(|c| c.path().parts() == [name])
                .ok_or_else(|| fail(format!("column `{name}` is not a top-level column")))
        };
        let (partition_col, offset_col) = (leaf(PARTITION)?, leaf(OFFSET)?);
        let timestamp_col = leaf(TIMESTAMP).ok();
        for (row_group, rg) in parquet.row_groups().iter().enumerate() {
            if rg.num_rows() == 0 {
                continue;
            }
            let range = |col: usize, name: &str| -> Result<(i64, i64), (usize, String)> {
                let missing = || {
                    fail(format!(
                        "row group {row_group} has no minimum and maximum of `{name}` in its statistics (every archive writer records them)"
                    ))
                };
                match rg.column(col).statistics() {
                    Some(Statistics::Int32(s)) => match (s.min_opt(), s.max_opt()) {
                        (Some(&a), Some(&b)) => Ok((a.into(), b.into())),
                        _ => Err(missing()),
                    },
                    Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                        (Some(&a), Some(&b)) => Ok((a, b)),
                        _ => Err(missing()),
                    },
                    _ => Err(missing()),
                }
            };
            let (p_min, p_max) = range(partition_col, PARTITION)?;
            let (first, last) = range(offset_col, OFFSET)?;
            let latest = timestamp_col.and_then(|c| match rg.column(c).statistics() {
                Some(Statistics::Int64(s)) => s.max_opt().copied(),
                _ => None,
            });
            if p_max - p_min >= MAX_PARTITIONS_PER_ROW_GROUP {
                return Err(fail(format!(
                    "row group {row_group} spans partitions {p_min} to {p_max}: write the archive partitioned by Kafka partition (partition_by = \"partition={{partition}}\")"
                )));
            }
            for partition in p_min..=p_max {
                let Ok(partition) = i32::try_from(partition) else {
                    continue;
                };
                by_partition.entry(partition).or_default().push(Segment {
                    file,
                    row_group,
                    first,
                    last,
                    latest,
                });
            }
        }
    }
    for segments in by_partition.values_mut() {
        segments.sort_by_key(|s| (s.first, s.last, s.file, s.row_group));
    }
    Ok(by_partition)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_committed_parquet_files_are_archive_files() {
        let yes = ["partition=0/part-a-1-0.parquet", "x.parquet"];
        let no = [
            "_staging/part-a.a0-1.pending",
            "_staging/x.parquet",
            "partition=0/.part-a-1-0.parquet",
            "partition=0/_x.parquet",
            ".hidden/x.parquet",
            "partition=0/notes.txt",
        ];
        for p in yes {
            assert!(is_archive_file(&ObjectPath::from(p)), "{p}");
        }
        for p in no {
            assert!(!is_archive_file(&ObjectPath::from(p)), "{p}");
        }
    }

    #[test]
    fn an_archive_schema_needs_partition_offset_and_value_of_their_types() {
        use arrow::datatypes::Field;
        let schema = |fields: Vec<Field>| Schema::new(fields);
        let good = schema(vec![
            Field::new(PARTITION, DataType::Int32, false),
            Field::new(OFFSET, DataType::Int64, false),
            Field::new(VALUE, DataType::Binary, true),
        ]);
        assert_eq!(check_columns(&good), Ok(()));
        let no_value = schema(vec![
            Field::new(PARTITION, DataType::Int32, false),
            Field::new(OFFSET, DataType::Int64, false),
        ]);
        assert!(
            check_columns(&no_value)
                .unwrap_err()
                .starts_with("no column `value`")
        );
        let wrong = schema(vec![
            Field::new(PARTITION, DataType::Int32, false),
            Field::new(OFFSET, DataType::Utf8, false),
            Field::new(VALUE, DataType::Binary, true),
        ]);
        assert_eq!(
            check_columns(&wrong),
            Err("column `offset` is Utf8, not Int64".into())
        );
        let key_text = schema(vec![
            Field::new(PARTITION, DataType::Int32, false),
            Field::new(OFFSET, DataType::Int64, false),
            Field::new(VALUE, DataType::Binary, true),
            Field::new(KEY, DataType::Utf8, true),
        ]);
        assert_eq!(
            check_columns(&key_text),
            Err("column `key` is Utf8, not Binary".into())
        );
    }
}
