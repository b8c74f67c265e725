//! The archive read back from real Parquet files in a directory (object_store's local file
//! system, as an `s3://` location would be read): which files count, offsets archived twice,
//! partitions in their own files, a replay from an offset, and a file that does not fit.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{BinaryArray, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
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
