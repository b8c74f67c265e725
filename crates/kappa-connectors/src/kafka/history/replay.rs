//! One partition's archived records read back in offset order from an offset on: its
//! segments in order of their first offsets, each row group filtered to the partition and to
//! offsets not yet given (an archive written twice over the same offsets gives each once).

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, RecordBatch, UInt32Array,
};
use arrow::compute::{filter_record_batch, take};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMillisecondType};
use futures::StreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::{ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;

use super::archive::{Archive, ArchiveError, KEY, OFFSET, ObjectReader, PARTITION, Segment};
use super::archive::{TIMESTAMP, VALUE};

/// Rows per batch read from a row group.
const BATCH_ROWS: usize = 8192;

/// Archived records of one partition, in offset order.
#[derive(Debug)]
pub struct Archived {
    pub offsets: Int64Array,
    pub values: BinaryArray,
    /// Record timestamps (milliseconds; null where the record had none), if asked for.
    pub timestamps: Option<Vec<Option<i64>>>,
    /// Record keys, if asked for.
    pub keys: Option<BinaryArray>,
}

impl Archived {
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// What a replay reads besides offsets and values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    pub timestamps: bool,
    pub keys: bool,
}

/// Reads one partition of an archive.
pub struct Replay {
    partition: i32,
    extras: Extras,
    /// Segments not yet read, by first offset.
    pending: VecDeque<Segment>,
    /// The segment being read and its rows.
    reading: Option<(Segment, ParquetRecordBatchStream<ObjectReader>)>,
    /// The next offset to give: rows before it are skipped (none: from the first archived).
    next: Option<i64>,
}

impl Replay {
    /// Reads `partition` of `archive` from offset `from` (none: from its first record).
    pub fn new(archive: &Archive, partition: i32, from: Option<i64>, extras: Extras) -> Self {
        Self {
            partition,
            extras,
            pending: archive.segments(partition).iter().copied().collect(),
            reading: None,
            next: from,
        }
    }

    /// The offset after the last record given, or where the replay started.
    pub fn next_offset(&self) -> Option<i64> {
        self.next
    }

    /// The next records, at most one batch of a row group; none once the archive holds no
    /// more of the partition.
    pub async fn read(&mut self, archive: &Archive) -> Result<Option<Archived>, ArchiveError> {
        loop {
            let Some((segment, stream)) = &mut self.reading else {
                let Some(segment) = self.pending.pop_front() else {
                    return Ok(None);
                };
                if self.next.is_some_and(|n| segment.last < n) {
                    continue;
                }
                let stream = self.open(archive, segment)?;
                self.reading = Some((segment, stream));
                continue;
            };
            let file = segment.file;
            let read = |source: ParquetError| ArchiveError::Read {
                file: archive.show(file),
                source,
            };
            let Some(batch) = stream.next().await.transpose().map_err(read)? else {
                self.reading = None;
                continue;
            };
            let invalid = |problem: String| ArchiveError::Invalid {
                file: archive.show(file),
                problem,
            };
            if let Some(records) = self.take(&batch).map_err(invalid)? {
                return Ok(Some(records));
            }
        }
    }

    /// The stream of the rows of `segment` in the columns this replay reads.
    fn open(
        &self,
        archive: &Archive,
        segment: Segment,
    ) -> Result<ParquetRecordBatchStream<ObjectReader>, ArchiveError> {
        let file = &archive.files[segment.file];
        let reader = ObjectReader::new(
            Arc::clone(&archive.location.store),
            file.path.clone(),
            file.size,
        );
        let mut names = vec![PARTITION, OFFSET, VALUE];
        if self.extras.timestamps {
            names.push(TIMESTAMP);
        }
        if self.extras.keys {
            names.push(KEY);
        }
        let descr = file.metadata.metadata().file_metadata().schema_descr();
        let leaves = descr
            .columns()
            .iter()
            .enumerate()
            .filter(|(_, c)| names.contains(&c.path().parts()[0].as_str()))
            .map(|(i, _)| i);
        let mask = ProjectionMask::leaves(descr, leaves);
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader, file.metadata.clone())
            .with_row_groups(vec![segment.row_group])
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|source| ArchiveError::Read {
                file: archive.show(segment.file),
                source,
            })
    }

    /// The rows of `batch` of this partition at or after the next offset, in offset order;
    /// none if there are none.
    fn take(&mut self, batch: &RecordBatch) -> Result<Option<Archived>, String> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("no column `{name}`"))
        };
        let partitions = column(PARTITION)?
            .as_primitive_opt::<Int32Type>()
            .ok_or("`partition` is not int32")?;
        let offsets = column(OFFSET)?
            .as_primitive_opt::<Int64Type>()
            .ok_or("`offset` is not int64")?;
        if partitions.null_count() > 0 || offsets.null_count() > 0 {
            return Err("a row without partition or offset".into());
        }
        let next = self.next;
        let keep: BooleanArray = partitions
            .values()
            .iter()
            .zip(offsets.values())
            .map(|(&p, &o)| Some(p == self.partition && next.is_none_or(|n| o >= n)))
            .collect();
        let kept = filter_record_batch(batch, &keep).map_err(|e| e.to_string())?;
        if kept.num_rows() == 0 {
            return Ok(None);
        }
        // In offset order, each offset once.
        let offsets = kept
            .column_by_name(OFFSET)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or("`offset` is not int64")?;
        let mut order: Vec<u32> = (0..kept.num_rows() as u32).collect();
        order.sort_by_key(|&i| offsets.value(i as usize));
        order.dedup_by_key(|i| offsets.value(*i as usize));
        let order = UInt32Array::from(order);
        let taken = |name: &str| -> Result<ArrayRef, String> {
            let c = kept
                .column_by_name(name)
                .ok_or_else(|| format!("no column `{name}`"))?;
            take(c, &order, None).map_err(|e| e.to_string())
        };
        let offsets = taken(OFFSET)?.as_primitive::<Int64Type>().clone();
        let values = taken(VALUE)?
            .as_binary_opt::<i32>()
            .ok_or("`value` is not binary")?
            .clone();
        let timestamps = match self.extras.timestamps {
            false => None,
            true => Some(
                taken(TIMESTAMP)?
                    .as_primitive_opt::<TimestampMillisecondType>()
                    .ok_or("`timestamp` is not a timestamp in milliseconds")?
                    .iter()
                    .collect(),
            ),
        };
        let keys = match self.extras.keys {
            false => None,
            true => Some(
                taken(KEY)?
                    .as_binary_opt::<i32>()
                    .ok_or("`key` is not binary")?
                    .clone(),
            ),
        };
        self.next = offsets.values().last().map(|&o| o + 1);
        Ok(Some(Archived {
            offsets,
            values,
            timestamps,
            keys,
        }))
    }
}
