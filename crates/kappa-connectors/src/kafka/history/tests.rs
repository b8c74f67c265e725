//! The archive read back from real Parquet files in a directory (object_store's local file
//! system, as an `s3://` location would be read): which files count, offsets archived twice,
//! partitions in their own files, a replay from an offset, a file that does not fit; and the
//! Kafka reader handing a partition over from its archive to librdkafka's mock cluster.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{BinaryArray, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use kappa_runtime::io::SplitPosition;
use parquet::arrow::ArrowWriter;

use super::{History, Read, summarize};
use crate::kafka::history::phase::Held;
use crate::kafka::history::replay::Extras;

/// Writes `rows` (partition, offset, value) as a Parquet file at `dir/name`.
fn write(dir: &Path, name: &str, rows: &[(i32, i64, String)]) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("value", DataType::Binary, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(BinaryArray::from_iter_values(
                rows.iter().map(|r| r.2.as_bytes()),
            )),
        ],
    )
    .unwrap();
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Reads split 0 (partition `partition` from `from`) to the archive's end: (offset, value)
/// and where the topic takes over.
fn replay(
    history: &mut History,
    partition: i32,
    from: Option<i64>,
) -> (Vec<(i64, String)>, Option<i64>) {
    history.begin(0, partition, from);
    let mut out = Vec::new();
    loop {
        let Read { records, ended } = history.read(1_000).unwrap();
        for (_, _, r) in records {
            for (o, v) in r.offsets.values().iter().zip(r.values.iter()) {
                out.push((*o, String::from_utf8_lossy(v.unwrap()).to_string()));
            }
        }
        if let Some((_, _, next)) = ended.first() {
            return (out, *next);
        }
    }
}

#[test]
fn an_archive_is_read_in_offset_order_each_offset_once_from_committed_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows = |p: i32, offsets: std::ops::Range<i64>| -> Vec<(i32, i64, String)> {
        offsets.map(|o| (p, o, format!("v{o}"))).collect()
    };
    // Partition 0 in two files whose names sort against their offsets, overlapping at 3..5
    // (an archive job run twice over those offsets).
    write(d, "partition=0/b.parquet", &rows(0, 3..8));
    write(d, "partition=0/a.parquet", &rows(0, 0..5));
    write(
        d,
        "partition=1/c.parquet",
        &[(1, 10, "x".into()), (1, 12, "y".into())],
    );
    // Not committed archive files: staged, hidden, another extension.
    write(d, "_staging/s.parquet", &rows(0, 100..102));
    write(d, "partition=0/.h.parquet", &rows(0, 200..202));
    write(d, "partition=0/p.pending", &rows(0, 300..302));

    let location = d.to_str().unwrap();
    let mut history = History::open(location, Extras::default()).unwrap();
    assert_eq!(history.held(0), Some(Held { first: 0, last: 7 }));
    assert_eq!(
        history.held(1),
        Some(Held {
            first: 10,
            last: 12
        })
    );
    assert_eq!(history.held(2), None);

    let (read, next) = replay(&mut history, 0, None);
    let want: Vec<(i64, String)> = (0..8).map(|o| (o, format!("v{o}"))).collect();
    assert_eq!(read, want);
    assert_eq!(
        next,
        Some(8),
        "the topic takes over after the last archived offset"
    );
    let (read, next) = replay(&mut history, 0, Some(4));
    assert_eq!(read, want[4..]);
    assert_eq!(next, Some(8));
    let (read, next) = replay(&mut history, 1, None);
    assert_eq!(read, [(10, "x".to_string()), (12, "y".to_string())]);
    assert_eq!(next, Some(13));
    // Past the archive: nothing read, and the topic goes on at the offset asked for.
    let (read, next) = replay(&mut history, 1, Some(20));
    assert!(read.is_empty());
    assert_eq!(next, Some(20));

    let summary = summarize(location).unwrap();
    assert_eq!(summary[&0].first_value.as_deref(), Some(&b"v0"[..]));
    assert_eq!(
        summary[&1].held,
        Held {
            first: 10,
            last: 12
        }
    );
}

#[test]
fn an_archive_file_without_the_columns_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "offset",
        DataType::Int64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(Int64Array::from_iter_values([1]))],
    )
    .unwrap();
    let path = dir.path().join("partition=0/x.parquet");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let Err(e) = History::open(dir.path().to_str().unwrap(), Extras::default()) else {
        panic!("an archive without `partition` opened");
    };
    let text = e.to_string();
    assert!(
        text.contains("partition=0/x.parquet") && text.contains("no column `partition`"),
        "{text}"
    );
    // A source asking for keys of an archive without them.
    write(dir.path(), "partition=0/x.parquet", &[(0, 1, "v".into())]);
    let keys = Extras {
        timestamps: false,
        keys: true,
    };
    let Err(e) = History::open(dir.path().to_str().unwrap(), keys) else {
        panic!("an archive without keys opened for a source with a key column");
    };
    assert!(e.to_string().contains("has column `key`"), "{e}");
}

/// Reads partition 0 of the mock topic `t` (15 records, values `{"n": 2·offset}`) through a
/// reader whose archive holds offsets 0..9 of it with values `{"n": 1000 + offset}`, from
/// `start`, until offset 14 was read: the values read and the reader's position.
fn read_with_archive(start: crate::kafka::StartOffset) -> (Vec<i64>, Vec<SplitPosition>) {
    use crate::bad_records::BadRecordPolicy;
    use crate::json::JsonDecoder;
    use crate::kafka::PartitionStart;
    use crate::kafka::source::{KafkaReader, KafkaReaderConfig};
    use kappa_job::kafka::KafkaConnection;
    use kappa_job::spec::OnError;
    use kappa_runtime::io::SourceReader;
    use kappa_runtime::metrics::SubtaskMetrics;

    let dir = tempfile::tempdir().unwrap();
    let archived: Vec<(i32, i64, String)> = (0..10)
        .map(|o| (0, o, format!("{{\"n\":{}}}", 1000 + o)))
        .collect();
    write(dir.path(), "partition=0/a.parquet", &archived);
    let cluster = crate::kafka::mock_topic(30, |i| format!("{{\"n\":{i}}}"));
    let bootstrap = cluster.bootstrap_servers();
    let connection = KafkaConnection::plaintext(&bootstrap);
    let metrics: Arc<SubtaskMetrics> = Arc::default();
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let partitions = [PartitionStart {
        partition: 0,
        offset: start,
    }];
    let cfg = KafkaReaderConfig {
        connection: &connection,
        topic: "t",
        group: "g",
        partitions: &partitions,
        new_splits: None,
        catching_up: Arc::default(),
        schema: Arc::clone(&schema),
        metadata: &[],
        history: dir.path().to_str(),
    };
    let policy = BadRecordPolicy::new(OnError::Fail, None, Arc::clone(&metrics));
    let decoder = JsonDecoder::new(schema).into();
    let mut reader = KafkaReader::new(cfg, decoder, policy, metrics).unwrap();
    let mut read = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while read.last() != Some(&28) {
        assert!(std::time::Instant::now() < deadline, "{read:?}");
        let (mut out, mut finished) = (Vec::new(), Vec::new());
        let timeout = std::time::Duration::from_millis(100);
        reader.poll(&mut out, &mut finished, timeout).unwrap();
        for b in out {
            let n = b
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            read.extend(n.values());
        }
    }
    (read, reader.positions())
}

#[test]
fn a_reader_with_history_reads_the_archive_then_the_topic_at_the_next_offset() {
    use crate::kafka::StartOffset;
    let at_end = vec![SplitPosition::Partition {
        partition: 0,
        next_offset: Some(15),
    }];
    // From the beginning: offsets 0..9 from the archive, 10..14 from the topic.
    let (read, positions) = read_with_archive(StartOffset::Beginning);
    let mut want: Vec<i64> = (1000..1010).collect();
    want.extend((10..15).map(|o| 2 * o));
    assert_eq!(read, want);
    assert_eq!(positions, at_end);
    // Restored at offset 6 (a checkpoint taken in the archive phase): 6..9 from the archive.
    let (read, _) = read_with_archive(StartOffset::Offset(6));
    assert_eq!(read, want[6..]);
    // Restored at offset 12, past the archive: the topic only.
    let (read, positions) = read_with_archive(StartOffset::Offset(12));
    assert_eq!(read, [24, 26, 28]);
    assert_eq!(positions, at_end);
}

/// Writes `rows` (partition, offset, timestamp) with a `timestamp` column, 10 rows per row
/// group, as a Parquet file at `dir/name`.
fn write_timed(dir: &Path, name: &str, rows: &[(i32, i64, i64)]) {
    use arrow::array::TimestampMillisecondArray;
    use arrow::datatypes::TimeUnit;
    use parquet::file::properties::WriterProperties;
    let schema = Arc::new(Schema::new(vec![
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("value", DataType::Binary, true),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(BinaryArray::from_iter_values(rows.iter().map(|_| b"v"))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
        ],
    )
    .unwrap();
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(10))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn a_start_at_a_time_finds_the_first_archived_record_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    // Offsets 0..100 a second apart from t = 1 000 s, but offset 55 written with an old
    // timestamp (a producer's clock), in row groups of 10.
    let rows: Vec<(i32, i64, i64)> = (0..100)
        .map(|o| (0, o, if o == 55 { 5 } else { 1_000_000 + o * 1000 }))
        .collect();
    write_timed(dir.path(), "partition=0/a.parquet", &rows);
    let history = History::open(&dir.path().display().to_string(), Extras::default()).unwrap();
    let at = |ms: i64| history.first_at_or_after(0, ms).unwrap();
    assert_eq!(at(0), Some(0));
    assert_eq!(at(1_042_000), Some(42));
    assert_eq!(at(1_042_001), Some(43));
    // The old record at 55 is not at or after t; 56 is the next one that is.
    assert_eq!(at(1_055_000), Some(56));
    assert_eq!(at(1_099_000), Some(99));
    assert_eq!(at(1_099_001), None);
    assert_eq!(history.first_at_or_after(7, 0).unwrap(), None);
    // An archive without timestamps cannot say.
    let plain = tempfile::tempdir().unwrap();
    write(plain.path(), "partition=0/a.parquet", &[(0, 0, "x".into())]);
    let history = History::open(&plain.path().display().to_string(), Extras::default()).unwrap();
    let e = history.first_at_or_after(0, 0).unwrap_err().to_string();
    assert!(e.contains("needs the records' timestamps"), "{e}");
}
