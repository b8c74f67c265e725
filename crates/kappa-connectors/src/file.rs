//! File connectors: a bounded JSON-lines source (one split per file, read round-robin) and
//! JSON-lines file and stdout sinks.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::RecordBatch;
use kappa_runtime::TaskError;
use kappa_runtime::io::{
    FilePosition, Sink, SourceReader, SourceStatus, SplitBatch, SplitPosition,
};

use crate::ConnectorError;
use crate::bad_records::BadRecordPolicy;
use crate::json::{JsonDecoder, encode_rows};

/// Lines read from one file per poll.
const LINES_PER_POLL: usize = 8192;

/// The files a file source reads: the file itself, or the regular files of a directory by name
/// (hidden files skipped).
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>, ConnectorError> {
    let io = |e: std::io::Error| ConnectorError::Io(format!("{}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        // Hidden files are in progress (the exactly-once file sink's uncommitted part files).
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if entry.file_type().map_err(io)?.is_file() && !hidden {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

struct OpenFile {
    /// What was consumed so far (a restored reader starts there).
    at: FilePosition,
    reader: Option<BufReader<File>>,
    done: bool,
}

/// Reads JSON-lines files; each file is a split with its own watermark and its position in
/// the checkpoints.
pub struct FileReader {
    files: Vec<OpenFile>,
    decoder: JsonDecoder,
    policy: BadRecordPolicy,
}

impl FileReader {
    /// Reads each file from its position (the start, or where a checkpoint left it).
    pub fn new(files: Vec<FilePosition>, decoder: JsonDecoder, policy: BadRecordPolicy) -> Self {
        let files = files
            .into_iter()
            .map(|at| OpenFile {
                at,
                reader: None,
                done: false,
            })
            .collect();
        Self {
            files,
            decoder,
            policy,
        }
    }

    fn read_split(&mut self, split: usize) -> Result<Option<RecordBatch>, TaskError> {
        let f = &mut self.files[split];
        if f.reader.is_none() {
            f.reader = Some(open_at(&f.at)?);
        }
        let Some(reader) = f.reader.as_mut() else {
            return Ok(None);
        };
        let mut lines: Vec<Vec<u8>> = Vec::with_capacity(LINES_PER_POLL);
        let mut numbers = Vec::with_capacity(LINES_PER_POLL);
        while lines.len() < LINES_PER_POLL {
            let mut line = Vec::new();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| TaskError::Io(format!("reading {}: {e}", f.at.path.display())))?;
            if n == 0 {
                break;
            }
            f.at.offset += n as u64;
            f.at.line += 1;
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines.push(line);
            numbers.push(f.at.line);
        }
        if lines.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let (batch, bad) = self
            .decoder
            .decode(&refs)
            .map_err(|e| TaskError::Data(e.to_string()))?;
        let path = self.files[split].at.path.display().to_string();
        for b in bad {
            self.policy.handle(
                &format!("file {path} line {}", numbers[b.index]),
                &lines[b.index],
                &b.error,
            )?;
        }
        Ok(Some(batch))
    }
}

/// Opens a file at a position, refusing a file shorter than it: the file changed since the
/// checkpoint, and going on would skip or repeat records.
fn open_at(at: &FilePosition) -> Result<BufReader<File>, TaskError> {
    let path = at.path.display();
    let mut file =
        File::open(&at.path).map_err(|e| TaskError::Io(format!("opening {path}: {e}")))?;
    if at.offset > 0 {
        let len = file
            .metadata()
            .map_err(|e| TaskError::Io(format!("reading {path}: {e}")))?
            .len();
        if len < at.offset {
            return Err(TaskError::Data(format!(
                "{path} has {len} bytes, but the checkpoint read {} bytes ({} lines) of it: \
                 the file changed since",
                at.offset, at.line
            )));
        }
        file.seek(SeekFrom::Start(at.offset))
            .map_err(|e| TaskError::Io(format!("reading {path}: {e}")))?;
    }
    Ok(BufReader::with_capacity(1 << 20, file))
}

impl SourceReader for FileReader {
    fn positions(&self) -> Vec<SplitPosition> {
        self.files
            .iter()
            .map(|f| SplitPosition::File(f.at.clone()))
            .collect()
    }

    fn splits(&self) -> usize {
        self.files.len()
    }

    fn poll(
        &mut self,
        out: &mut Vec<SplitBatch>,
        finished: &mut Vec<usize>,
        _timeout: Duration,
    ) -> Result<SourceStatus, TaskError> {
        let mut any_open = false;
        for split in 0..self.files.len() {
            if self.files[split].done {
                continue;
            }
            match self.read_split(split)? {
                Some(batch) => {
                    any_open = true;
                    if batch.num_rows() > 0 {
                        out.push(SplitBatch { split, batch });
                    }
                }
                None => {
                    self.files[split].done = true;
                    self.files[split].reader = None;
                    finished.push(split);
                }
            }
        }
        Ok(if any_open {
            SourceStatus::Running
        } else {
            SourceStatus::Finished
        })
    }
}

/// Writes JSON lines: a part file per writer (`{dir}/part-{writer}.jsonl`, the writer naming
/// the job, the sink and the subtask, so jobs sharing a directory do not meet), or standard
/// output. A restarted subtask appends: what was written before its checkpoint stays, and
/// what it replays after it may appear twice (at-least-once).
pub struct LineSink {
    target: LineTarget,
}

enum LineTarget {
    File(BufWriter<File>),
    Stdout,
}

impl LineSink {
    /// The part file of `writer` in directory `dir` (both created if missing).
    pub fn part_file(dir: &Path, writer: &str) -> Result<Self, ConnectorError> {
        let path = dir.join(format!("part-{writer}.jsonl"));
        let io = |e: std::io::Error| ConnectorError::Io(format!("{}: {e}", path.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io)?;
        drop_torn_line(&f).map_err(io)?;
        Ok(Self {
            target: LineTarget::File(BufWriter::new(f)),
        })
    }

    pub fn stdout() -> Self {
        Self {
            target: LineTarget::Stdout,
        }
    }
}

fn write_lines(w: &mut dyn Write, rows: &[Vec<u8>]) -> std::io::Result<()> {
    for r in rows {
        w.write_all(r)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// Cuts a line an earlier run left half written (it was written after that run's last
/// checkpoint, so the restarted run writes it again in full).
fn drop_torn_line(f: &File) -> std::io::Result<()> {
    let meta = f.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    f.read_exact_at(&mut last, meta.len() - 1)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Back from the end, a block at a time, to the last complete line.
    let mut end = meta.len();
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        f.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            return f.set_len(start + i as u64 + 1);
        }
        end = start;
    }
    f.set_len(0)
}

impl Sink for LineSink {
    /// A barrier: what was written so far survives a crash of the machine too.
    fn prepare(&mut self, _: u64) -> Result<Option<Vec<u8>>, TaskError> {
        self.flush()?;
        if let LineTarget::File(f) = &self.target
            && f.get_ref().metadata().is_ok_and(|m| m.is_file())
        {
            f.get_ref()
                .sync_data()
                .map_err(|e| TaskError::Io(format!("syncing results: {e}")))?;
        }
        Ok(None)
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        let rows = encode_rows(batch).map_err(|e| TaskError::Data(e.to_string()))?;
        let r = match &mut self.target {
            LineTarget::File(f) => write_lines(f, &rows),
            LineTarget::Stdout => write_lines(&mut std::io::stdout().lock(), &rows),
        };
        r.map_err(|e| TaskError::Io(format!("writing results: {e}")))
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        let r = match &mut self.target {
            LineTarget::File(f) => f.flush(),
            LineTarget::Stdout => std::io::stdout().flush(),
        };
        r.map_err(|e| TaskError::Io(format!("flushing results: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use kappa_job::spec::OnError;

    use super::*;

    fn reader(files: Vec<FilePosition>) -> FileReader {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let policy = BadRecordPolicy::new(OnError::Fail, None, Arc::default());
        FileReader::new(files, JsonDecoder::new(schema), policy)
    }

    /// Everything the reader yields, in order.
    fn read_all(r: &mut FileReader) -> Vec<i64> {
        let (mut out, mut finished) = (Vec::new(), Vec::new());
        while r
            .poll(&mut out, &mut finished, Duration::ZERO)
            .expect("poll")
            == SourceStatus::Running
        {}
        out.iter()
            .flat_map(|b| {
                let col = b.batch.column(0).as_any().downcast_ref::<Int64Array>();
                col.expect("an int64 column").values().to_vec()
            })
            .collect()
    }

    fn file_position(r: &FileReader) -> FilePosition {
        match r.positions().as_slice() {
            [SplitPosition::File(f)] => f.clone(),
            other => panic!("one file position, got {other:?}"),
        }
    }

    #[test]
    fn a_restored_reader_goes_on_after_the_lines_its_checkpoint_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.jsonl");
        let first: String = (0..LINES_PER_POLL as i64)
            .map(|n| format!("{{\"n\":{n}}}\n"))
            .collect();
        std::fs::write(&path, format!("{first}\n{{\"n\":-1}}\r\n{{\"n\":-2}}")).expect("write");
        let mut r = reader(vec![FilePosition::start(path.clone())]);
        let (mut out, mut finished) = (Vec::new(), Vec::new());
        r.poll(&mut out, &mut finished, Duration::ZERO)
            .expect("poll");
        let at = file_position(&r);
        assert_eq!(at.line, LINES_PER_POLL as u64, "one poll's lines");
        assert_eq!(at.offset, first.len() as u64);

        let mut restored = reader(vec![at]);
        assert_eq!(read_all(&mut restored), [-1, -2], "only what came after");
        let end = file_position(&restored);
        let len = std::fs::metadata(&path).expect("metadata").len();
        assert_eq!((end.offset, end.line), (len, LINES_PER_POLL as u64 + 3));
        assert!(
            read_all(&mut reader(vec![end])).is_empty(),
            "a read file stays read"
        );
    }

    #[test]
    fn a_restarted_line_sink_keeps_what_was_written_and_drops_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let batch = |v: i64| {
            let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![v]))])
                .expect("a valid batch")
        };
        let mut a = LineSink::part_file(dir.path(), "job-a-0").expect("open");
        a.write(&batch(1)).expect("write");
        a.prepare(1).expect("barrier");
        drop(a);
        // The earlier run died in the middle of a line written after its checkpoint.
        let path = dir.path().join("part-job-a-0.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(b"{\"v\":").expect("torn write");
        drop(f);
        let mut again = LineSink::part_file(dir.path(), "job-a-0").expect("reopen");
        again.write(&batch(2)).expect("write");
        again.flush().expect("flush");
        // Another job writing into the same directory.
        let mut b = LineSink::part_file(dir.path(), "job-b-0").expect("open");
        b.write(&batch(3)).expect("write");
        b.flush().expect("flush");
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect("read");
        assert_eq!(read("part-job-a-0.jsonl"), "{\"v\":1}\n{\"v\":2}\n");
        assert_eq!(read("part-job-b-0.jsonl"), "{\"v\":3}\n");
    }

    #[test]
    fn a_file_shorter_than_its_checkpoint_position_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "{\"n\":1}\n").expect("write");
        let at = FilePosition {
            path: path.clone(),
            offset: 100,
            line: 7,
        };
        let mut r = reader(vec![at]);
        let (mut out, mut finished) = (Vec::new(), Vec::new());
        let e = r
            .poll(&mut out, &mut finished, Duration::ZERO)
            .expect_err("a changed file");
        let text = e.to_string();
        assert!(
            text.contains(&path.display().to_string()) && text.contains("100 bytes"),
            "{text}"
        );
    }
}
