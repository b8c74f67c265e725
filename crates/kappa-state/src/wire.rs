//! The one conversion of state handles, state figures and source positions to and from
//! their protobuf messages.

use kappa_proto::v1 as pb;
use kappa_runtime::io::{FilePosition, NexmarkPosition, SplitPosition};
use kappa_runtime::metrics::StateFigures;

/// The state figures of a subtask as sent in its metrics.
pub fn figures_to_proto(f: &StateFigures) -> pb::StateFigures {
    pb::StateFigures {
        keys_in_memory: f.keys_in_memory,
        bytes_in_memory: f.bytes_in_memory,
        bytes_spilled: f.bytes_spilled,
        cache_hits: f.cache_hits,
        cache_loads: f.cache_loads,
        evictions: f.evictions,
    }
}

/// State figures received in a subtask's metrics.
pub fn figures_from_proto(f: &pb::StateFigures) -> StateFigures {
    StateFigures {
        keys_in_memory: f.keys_in_memory,
        bytes_in_memory: f.bytes_in_memory,
        bytes_spilled: f.bytes_spilled,
        cache_hits: f.cache_hits,
        cache_loads: f.cache_loads,
        evictions: f.evictions,
    }
}

use crate::snapshot::{StateHandle, StoredFile};

impl From<&StateHandle> for pb::StateHandle {
    fn from(h: &StateHandle) -> Self {
        pb::StateHandle {
            files: h
                .files
                .iter()
                .map(|f| pb::StoredFile {
                    name: f.name.clone(),
                    object: f.object.clone(),
                    size: f.size,
                    xxh3: f.xxh3,
                })
                .collect(),
        }
    }
}

impl From<pb::StateHandle> for StateHandle {
    fn from(h: pb::StateHandle) -> Self {
        StateHandle {
            files: h
                .files
                .into_iter()
                .map(|f| StoredFile {
                    name: f.name,
                    object: f.object,
                    size: f.size,
                    xxh3: f.xxh3,
                })
                .collect(),
        }
    }
}

/// A file position as its message.
pub fn file_to_proto(f: &FilePosition) -> pb::FilePosition {
    pb::FilePosition {
        path: f.path.display().to_string(),
        offset: f.offset,
        line: f.line,
    }
}

/// A file position from its message.
pub fn file_from_proto(f: &pb::FilePosition) -> FilePosition {
    FilePosition {
        path: f.path.clone().into(),
        offset: f.offset,
        line: f.line,
    }
}

/// A Nexmark split's position as its message.
pub fn nexmark_to_proto(p: &NexmarkPosition) -> pb::NexmarkPosition {
    pb::NexmarkPosition {
        split: p.split,
        splits: p.splits,
        next_event: p.next_event,
    }
}

/// A Nexmark split's position from its message.
pub fn nexmark_from_proto(p: &pb::NexmarkPosition) -> NexmarkPosition {
    NexmarkPosition {
        split: p.split,
        splits: p.splits,
        next_event: p.next_event,
    }
}

/// Where source `uid` is in its splits, as a checkpoint acknowledgement carries it.
pub fn positions_to_proto(uid: &str, positions: &[SplitPosition]) -> pb::SourceOffsets {
    let mut out = pb::SourceOffsets {
        uid: uid.to_string(),
        ..Default::default()
    };
    for p in positions {
        match p {
            SplitPosition::Partition {
                partition,
                next_offset,
            } => out.offsets.push(pb::PartitionOffset {
                partition: *partition,
                next_offset: *next_offset,
            }),
            SplitPosition::File(f) => out.files.push(file_to_proto(f)),
            SplitPosition::Nexmark(n) => out.nexmark.push(nexmark_to_proto(n)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_survive_their_message() {
        let positions = vec![
            SplitPosition::Partition {
                partition: 3,
                next_offset: Some(17),
            },
            SplitPosition::Partition {
                partition: 4,
                next_offset: None,
            },
            SplitPosition::File(FilePosition {
                path: "/data/a.jsonl".into(),
                offset: 1234,
                line: 56,
            }),
            SplitPosition::Nexmark(NexmarkPosition {
                split: 3,
                splits: 128,
                next_event: 131,
            }),
        ];
        let pb = positions_to_proto("clicks", &positions);
        assert_eq!(pb.uid, "clicks");
        let offsets: Vec<(i32, Option<i64>)> = pb
            .offsets
            .iter()
            .map(|o| (o.partition, o.next_offset))
            .collect();
        assert_eq!(offsets, [(3, Some(17)), (4, None)]);
        let files: Vec<FilePosition> = pb.files.iter().map(file_from_proto).collect();
        assert_eq!(
            files,
            [FilePosition {
                path: "/data/a.jsonl".into(),
                offset: 1234,
                line: 56,
            }]
        );
        let nexmark: Vec<NexmarkPosition> = pb.nexmark.iter().map(nexmark_from_proto).collect();
        assert_eq!(
            nexmark,
            [NexmarkPosition {
                split: 3,
                splits: 128,
                next_event: 131,
            }]
        );
    }
}
