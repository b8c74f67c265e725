//! A Kafka source's history beyond the topic's retention (`history = "<archive>"`): an archive
//! of the topic's records with their partitions and offsets in Parquet files on object storage
//! or disk — what the archive job writes: a raw Kafka source with its metadata columns into a
//! parquet sink. Each partition is read from the archive while the topic no longer holds the
//! offsets wanted, then from the topic at the next offset: one stream in offset order, so
//! positions in checkpoints are Kafka offsets in both phases.
//!
//! - [`phase`]: where a partition starts and where it goes on, and the gaps refused (pure);
//! - [`archive`]: the archive's files listed, their footers checked, row groups indexed;
//! - [`replay`]: one partition's records read back in offset order.

pub mod archive;
pub mod phase;
pub mod replay;

use std::collections::BTreeMap;

use kappa_runtime::TaskError;
use kappa_runtime::error::with_causes;
use kappa_state::Location;
use tokio::runtime::Runtime;

use archive::{Archive, ArchiveError, KEY, TIMESTAMP};
use phase::Held;
use replay::{Archived, Extras, Replay};

/// An archive error as the task reports it: storage that may answer later is retried.
fn task_error(e: &ArchiveError) -> TaskError {
    match e.retriable() {
        true => TaskError::Io(with_causes(e)),
        false => TaskError::Data(with_causes(e)),
    }
}

/// The archive of one source subtask's topic and the splits reading it.
pub struct History {
    archive: Archive,
    runtime: Runtime,
    extras: Extras,
    /// Split → its replay, while the split reads the archive.
    replays: BTreeMap<usize, (i32, Replay)>,
}

/// What an archive holds of one partition, for an upgrade's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedPartition {
    pub held: Held,
    /// The value of its first archived record.
    pub first_value: Option<Vec<u8>>,
}

/// What the archive at `location` holds, by partition.
pub fn summarize(location: &str) -> Result<BTreeMap<i32, ArchivedPartition>, TaskError> {
    let history = History::open(location, Extras::default())?;
    let partitions: Vec<i32> = history.archive.partitions().collect();
    let mut out = BTreeMap::new();
    for partition in partitions {
        let Some(held) = history.held(partition) else {
            continue;
        };
        let mut replay = Replay::new(&history.archive, partition, None, Extras::default());
        let first = history
            .runtime
            .block_on(replay.read(&history.archive))
            .map_err(|e| task_error(&e))?;
        let first_value = first.and_then(|r| r.values.iter().next().flatten().map(<[u8]>::to_vec));
        out.insert(partition, ArchivedPartition { held, first_value });
    }
    Ok(out)
}

/// What a poll of the archive gave.
#[derive(Default)]
pub struct Read {
    /// Records per split.
    pub records: Vec<(usize, i32, Archived)>,
    /// Splits whose archive ended, with their partition and the offset after their last
    /// archived record (none: the archive held none of it after the start).
    pub ended: Vec<(usize, i32, Option<i64>)>,
}

impl History {
    /// Opens the archive at `location` and checks it has the columns `extras` needs.
    pub fn open(location: &str, extras: Extras) -> Result<Self, TaskError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TaskError::Io(format!("starting the archive's I/O: {e}")))?;
        let location = Location::parse(location).map_err(|e| {
            TaskError::Data(format!(
                "the history archive {location}: {}",
                with_causes(&e)
            ))
        })?;
        let archive = runtime
            .block_on(Archive::open(location))
            .map_err(|e| task_error(&e))?;
        for (wanted, column) in [(extras.timestamps, TIMESTAMP), (extras.keys, KEY)] {
            if wanted && !archive.has(column) {
                return Err(TaskError::Data(format!(
                    "the source has a `{column}` metadata column, but not every file of the archive {} has column `{column}`",
                    archive.location.text
                )));
            }
        }
        tracing::info!(archive = %archive.location.text, files = archive.files.len(), "history archive opened");
        Ok(Self {
            archive,
            runtime,
            extras,
            replays: BTreeMap::new(),
        })
    }

    /// The offsets the archive holds of `partition`.
    pub fn held(&self, partition: i32) -> Option<Held> {
        self.archive.held(partition)
    }

    /// The first archived offset of `partition` whose record timestamp is at or after `ms`
    /// (Kafka's rule for a start by time), if the archive holds one. Row groups whose
    /// statistics say every timestamp is earlier are not read.
    pub fn first_at_or_after(&self, partition: i32, ms: i64) -> Result<Option<i64>, TaskError> {
        if !self.archive.has(TIMESTAMP) {
            return Err(TaskError::Data(format!(
                "starting at a time needs the records' timestamps, but not every file of the archive {} has column `{TIMESTAMP}` (archive the source's `timestamp` metadata column)",
                self.archive.location.text
            )));
        }
        // Every record before the first row group that may hold a later timestamp is earlier.
        let Some(from) = self
            .archive
            .segments(partition)
            .iter()
            .find(|s| s.latest.is_none_or(|t| t >= ms))
            .map(|s| s.first)
        else {
            return Ok(None);
        };
        let extras = Extras {
            timestamps: true,
            keys: false,
        };
        let mut replay = Replay::new(&self.archive, partition, Some(from), extras);
        while let Some(records) = self
            .runtime
            .block_on(replay.read(&self.archive))
            .map_err(|e| task_error(&e))?
        {
            let times = records.timestamps.as_deref().unwrap_or_default();
            if let Some(i) = times.iter().position(|t| t.is_some_and(|t| t >= ms)) {
                return Ok(Some(records.offsets.value(i)));
            }
        }
        Ok(None)
    }

    /// Split `split` reads `partition` from the archive, from offset `from` on (none: all).
    pub fn begin(&mut self, split: usize, partition: i32, from: Option<i64>) {
        let replay = Replay::new(&self.archive, partition, from, self.extras);
        self.replays.insert(split, (partition, replay));
    }

    /// Whether a split still reads the archive.
    pub fn reading(&self) -> bool {
        !self.replays.is_empty()
    }

    /// Reads about `most` records: a batch from each split still in the archive, in turn.
    pub fn read(&mut self, most: usize) -> Result<Read, TaskError> {
        let mut out = Read::default();
        let mut taken = 0;
        let splits: Vec<usize> = self.replays.keys().copied().collect();
        for split in splits {
            if taken >= most {
                break;
            }
            let Some((partition, replay)) = self.replays.get_mut(&split) else {
                continue;
            };
            let partition = *partition;
            match self
                .runtime
                .block_on(replay.read(&self.archive))
                .map_err(|e| task_error(&e))?
            {
                Some(records) => {
                    taken += records.len();
                    out.records.push((split, partition, records));
                }
                None => {
                    out.ended.push((split, partition, replay.next_offset()));
                    self.replays.remove(&split);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
