//! Splits of a source and their assignment to source subtasks: each Kafka partition or file
//! goes to exactly one subtask, round-robin, with the offset it starts at.

use std::path::PathBuf;
use std::time::Duration;

use kappa_job::plan::{SourceKind, SourcePlan};
use serde::{Deserialize, Serialize};

use crate::ConnectorError;
use crate::file::list_files;
use crate::kafka::PartitionStart;
use crate::kafka::admin::TopicAdmin;

/// What one source subtask reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceAssignment {
    Kafka(Vec<PartitionStart>),
    Files(Vec<PathBuf>),
}

impl SourceAssignment {
    /// Human-readable list of the splits, e.g. `partitions 0, 2` or `files a.jsonl`.
    pub fn describe(&self) -> String {
        match self {
            Self::Kafka(p) if p.is_empty() => "no partitions".into(),
            Self::Kafka(p) => format!(
                "partitions {}",
                p.iter()
                    .map(|p| p.partition.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Files(f) if f.is_empty() => "no files".into(),
            Self::Files(f) => format!(
                "files {}",
                f.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

fn round_robin<T: Clone>(items: &[T], parallelism: u32) -> Vec<Vec<T>> {
    let mut out = vec![Vec::new(); parallelism as usize];
    for (i, item) in items.iter().enumerate() {
        out[i % parallelism as usize].push(item.clone());
    }
    out
}

/// Looks up the splits of a source and assigns them to `parallelism` subtasks.
pub fn assign_splits(
    source: &SourcePlan,
    parallelism: u32,
    timeout: Duration,
) -> Result<Vec<SourceAssignment>, ConnectorError> {
    match &source.kind {
        SourceKind::Kafka(k) => {
            let admin = TopicAdmin::new(&k.bootstrap_servers, &k.properties, timeout)?;
            let partitions = admin.partitions(&k.topic)?;
            let starts = admin.start_offsets(&k.topic, &partitions, source.start)?;
            Ok(round_robin(&starts, parallelism)
                .into_iter()
                .map(SourceAssignment::Kafka)
                .collect())
        }
        SourceKind::File { path } => {
            let files = list_files(path)?;
            Ok(round_robin(&files, parallelism)
                .into_iter()
                .map(SourceAssignment::Files)
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_gives_each_item_to_one_subtask() {
        let parts = round_robin(&[0, 1, 2, 3, 4, 5, 6, 7], 3);
        assert_eq!(parts, vec![vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
    }
}
