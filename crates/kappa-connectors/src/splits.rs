//! Splits of a source and their assignment to source subtasks: each Kafka partition, file or
//! Nexmark split goes to exactly one subtask, round-robin, with the position it starts at.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kappa_job::StartPosition;
use kappa_job::plan::{SourceKind, SourcePlan};
use kappa_job::secret::SecretSources;
use kappa_runtime::io::{FilePosition, NexmarkPosition, SplitPosition};
use serde::{Deserialize, Serialize};

use crate::ConnectorError;
use crate::file::list_files;
use crate::kafka::admin::TopicAdmin;
use crate::kafka::history::History;
use crate::kafka::history::phase::by_time;
use crate::kafka::history::replay::Extras;
use crate::kafka::{PartitionStart, StartOffset};
use crate::nexmark;

/// What one source subtask reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceAssignment {
    Kafka(Vec<PartitionStart>),
    Files(Vec<FilePosition>),
    Nexmark(Vec<NexmarkPosition>),
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
                    .map(|p| p.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Nexmark(n) if n.is_empty() => "no nexmark splits".into(),
            Self::Nexmark(n) => format!(
                "nexmark splits {} of {}",
                n.iter()
                    .map(|p| p.split.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                n.first().map_or(0, |p| p.splits)
            ),
        }
    }

    /// How many splits it holds.
    pub fn len(&self) -> usize {
        match self {
            Self::Kafka(p) => p.len(),
            Self::Files(f) => f.len(),
            Self::Nexmark(n) => n.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub(crate) fn round_robin<T: Clone>(items: &[T], parallelism: u32) -> Vec<Vec<T>> {
    let mut out = vec![Vec::new(); parallelism as usize];
    for (i, item) in items.iter().enumerate() {
        out[i % parallelism as usize].push(item.clone());
    }
    out
}

/// Where the next attempt of a job reads one source from.
///
/// Kafka start offsets are fixed by the job's first attempt, by partition: later attempts start
/// there too (until checkpoints record progress), and partitions that appear later start at
/// the beginning. Files start where the restored checkpoint left them, others at their start.
/// Nexmark splits are those of the restored checkpoint, at its positions (none restored: the
/// plan's splits at their start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStarts {
    pub partitions: BTreeMap<i32, StartOffset>,
    pub files: BTreeMap<PathBuf, FilePosition>,
    pub nexmark: Vec<NexmarkPosition>,
    /// Every split of a bounded nexmark source had ended: its subtasks had finished before
    /// the restored checkpoint of the same job, which therefore holds none of its splits.
    pub nexmark_ended: bool,
}

impl SourceStarts {
    /// Takes the positions a checkpoint recorded.
    pub fn restore(&mut self, positions: impl IntoIterator<Item = SplitPosition>) {
        let mut nexmark = Vec::new();
        for p in positions {
            match p {
                SplitPosition::Partition {
                    partition,
                    next_offset,
                } => {
                    let start = next_offset.map_or(StartOffset::Beginning, StartOffset::Offset);
                    self.partitions.insert(partition, start);
                }
                SplitPosition::File(f) => {
                    self.files.insert(f.path.clone(), f);
                }
                SplitPosition::Nexmark(n) => nexmark.push(n),
            }
        }
        // A checkpoint lists all its Nexmark splits: they replace those of an earlier one.
        if !nexmark.is_empty() {
            self.nexmark = nexmark;
            self.nexmark_ended = false;
        }
    }
}

/// A start at time `ms` of partitions of `topic` whose history archive is at `archive`: where
/// the topic's answer is its first record (the time is at or before what retention kept), the
/// archive's first record at or after the time, if it holds an earlier one.
fn earlier_in_archive(
    admin: &TopicAdmin,
    topic: &str,
    archive: &str,
    ms: i64,
    starts: Vec<PartitionStart>,
) -> Result<Vec<PartitionStart>, ConnectorError> {
    let history = History::open(archive, Extras::default())
        .map_err(|e| ConnectorError::Io(format!("the history archive {archive}: {e}")))?;
    starts
        .into_iter()
        .map(|s| {
            let (low, _) = admin.watermarks(topic, s.partition)?;
            let resolved = match s.offset {
                StartOffset::Beginning => None,
                StartOffset::Offset(o) => Some(o),
            };
            let start = by_time(resolved, low, || {
                history
                    .first_at_or_after(s.partition, ms)
                    .map_err(|e| ConnectorError::Io(format!("the history archive {archive}: {e}")))
            })?;
            Ok(PartitionStart {
                partition: s.partition,
                offset: start.map_or(StartOffset::Beginning, StartOffset::Offset),
            })
        })
        .collect()
}

/// Looks up the splits of a source and assigns them to `parallelism` subtasks; Kafka start
/// offsets come from `pinned`, else from the start position (and are added to `pinned`).
/// The metadata client reads the source's secrets from `secrets`.
pub fn assign_splits(
    source: &SourcePlan,
    parallelism: u32,
    timeout: Duration,
    pinned: &mut SourceStarts,
    secrets: &SecretSources,
) -> Result<Vec<SourceAssignment>, ConnectorError> {
    match &source.kind {
        SourceKind::Kafka(k) => {
            let connection = secrets.resolve_kafka(&k.connection, &source.uid)?;
            let admin = TopicAdmin::new(&connection, timeout)?;
            let partitions = admin.partitions(&k.topic)?;
            let new: Vec<i32> = partitions
                .iter()
                .copied()
                .filter(|p| !pinned.partitions.contains_key(p))
                .collect();
            let start = if pinned.partitions.is_empty() {
                source.start
            } else {
                StartPosition::Earliest
            };
            let mut resolved = admin.start_offsets(&k.topic, &new, start)?;
            if let (StartPosition::Timestamp(ms), Some(archive)) = (start, &k.history) {
                resolved = earlier_in_archive(&admin, &k.topic, archive, ms, resolved)?;
            }
            for s in resolved {
                pinned.partitions.insert(s.partition, s.offset);
            }
            let starts: Vec<PartitionStart> = partitions
                .iter()
                .filter_map(|&partition| {
                    pinned
                        .partitions
                        .get(&partition)
                        .map(|&offset| PartitionStart { partition, offset })
                })
                .collect();
            Ok(round_robin(&starts, parallelism)
                .into_iter()
                .map(SourceAssignment::Kafka)
                .collect())
        }
        SourceKind::File { path } => {
            // A file the checkpoint knows goes on from its position; a new one from the start.
            let files: Vec<FilePosition> = list_files(path)?
                .into_iter()
                .map(|f| match pinned.files.get(&f) {
                    Some(at) => at.clone(),
                    None => FilePosition::start(f),
                })
                .collect();
            Ok(round_robin(&files, parallelism)
                .into_iter()
                .map(SourceAssignment::Files)
                .collect())
        }
        SourceKind::Nexmark(_) if pinned.nexmark_ended => {
            Ok(vec![
                SourceAssignment::Nexmark(Vec::new());
                parallelism as usize
            ])
        }
        SourceKind::Nexmark(n) => {
            let splits = nexmark::assign::splits_to_read(n, &pinned.nexmark)
                .map_err(|e| ConnectorError::Format(e.to_string()))?;
            Ok(round_robin(&splits, parallelism)
                .into_iter()
                .map(SourceAssignment::Nexmark)
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

#[cfg(test)]
mod kafka_tests {
    //! Start positions against librdkafka's in-process mock cluster (a unit test of this
    //! component; the end-to-end tests use a real broker process).
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use arrow::datatypes::{DataType, Field, Schema};
    use kappa_job::kafka::KafkaConnection;
    use kappa_job::plan::KafkaSourcePlan;
    use kappa_job::spec::OnError;
    use kappa_runtime::io::SourceReader;
    use rdkafka::ClientConfig;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    use crate::bad_records::BadRecordPolicy;
    use crate::json::JsonDecoder;
    use crate::kafka::source::{KafkaReader, KafkaReaderConfig};

    fn source(bootstrap: &str, start: StartPosition) -> SourcePlan {
        SourcePlan {
            name: "source".into(),
            uid: "source".into(),
            event_time: None,
            kind: SourceKind::Kafka(KafkaSourcePlan {
                connection: KafkaConnection::plaintext(bootstrap),
                topic: "t".into(),
                dead_letter_topic: None,
                metadata: Vec::new(),
                history: None,
            }),
            format: kappa_job::plan::formats::RecordFormat::Json,
            schema: Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)])),
            start,
            on_error: OnError::Fail,
        }
    }

    #[test]
    fn start_positions_resolve_to_offsets_and_stay_pinned() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 1, 1).unwrap();
        let b = cluster.bootstrap_servers();
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .create()
            .unwrap();
        for n in 0..6i64 {
            let payload = format!("{{\"n\":{n}}}");
            p.send(
                BaseRecord::<(), str>::to("t")
                    .partition(0)
                    .payload(&payload)
                    .timestamp(1_000 + n * 100),
            )
            .unwrap();
        }
        p.flush(Duration::from_secs(10)).unwrap();
        let t = Duration::from_secs(10);
        let offset = |start| {
            let mut pinned = SourceStarts::default();
            let any = SecretSources::any("jobmanager");
            let a = assign_splits(&source(&b, start), 1, t, &mut pinned, &any).unwrap();
            (a, pinned.partitions[&0])
        };
        assert_eq!(offset(StartPosition::Earliest).1, StartOffset::Beginning);
        let (assignment, at) = offset(StartPosition::Latest);
        assert_eq!(at, StartOffset::Offset(6));
        // (Lookups by timestamp are not verified here: the mock cluster answers them with the
        // end of the log, and the Tansu broker of the end-to-end tests with offset 0.)

        // A later attempt keeps the first attempt's offsets, whatever arrived since.
        for n in 6..9i64 {
            let payload = format!("{{\"n\":{n}}}");
            p.send(
                BaseRecord::<(), str>::to("t")
                    .partition(0)
                    .payload(&payload),
            )
            .unwrap();
        }
        p.flush(Duration::from_secs(10)).unwrap();
        let mut pinned = SourceStarts {
            partitions: BTreeMap::from([(0, StartOffset::Offset(6))]),
            ..SourceStarts::default()
        };
        let any = SecretSources::any("jobmanager");
        let again =
            assign_splits(&source(&b, StartPosition::Latest), 1, t, &mut pinned, &any).unwrap();
        assert_eq!(again, assignment);

        // The reader starts exactly there.
        let SourceAssignment::Kafka(parts) = &assignment[0] else {
            panic!("kafka assignment")
        };
        let plan = source(&b, StartPosition::Earliest);
        let metrics: Arc<kappa_runtime::metrics::SubtaskMetrics> = Arc::default();
        let (tx, rx) = crossbeam_channel::unbounded();
        let connection = KafkaConnection::plaintext(&b);
        let cfg = KafkaReaderConfig {
            connection: &connection,
            topic: "t",
            group: "g",
            partitions: &[],
            new_splits: Some(rx),
            catching_up: Arc::default(),
            schema: Arc::clone(&plan.schema),
            metadata: &[],
            history: None,
        };
        let policy = BadRecordPolicy::new(OnError::Fail, None, Arc::clone(&metrics));
        let mut reader = KafkaReader::new(
            cfg,
            JsonDecoder::new(plan.schema).into(),
            policy,
            Arc::clone(&metrics),
        )
        .unwrap();
        assert_eq!(reader.splits(), 0);
        // Handed over while running, as partition discovery does.
        tx.send(parts.clone()).unwrap();
        let (mut out, mut fin) = (Vec::new(), Vec::new());
        let deadline = std::time::Instant::now() + t;
        while out
            .iter()
            .map(|b: &kappa_runtime::io::SplitBatch| b.batch.num_rows())
            .sum::<usize>()
            < 3
            && std::time::Instant::now() < deadline
        {
            reader
                .poll(&mut out, &mut fin, Duration::from_millis(200))
                .unwrap();
        }
        let first = out[0]
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(
            first, 6,
            "the first record after the end the job saw at its start"
        );
        assert_eq!(reader.splits(), 1);
        let progress = metrics.partitions.lock().clone();
        assert_eq!(progress[0].partition, 0);
        assert!(progress[0].position > 6, "{progress:?}");
    }
}
