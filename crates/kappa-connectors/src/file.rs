//! File connectors: a bounded JSON-lines source (one split per file, read round-robin) and
//! JSON-lines file and stdout sinks.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::RecordBatch;
use kappa_runtime::TaskError;
use kappa_runtime::io::{Sink, SourceReader, SourceStatus, SplitBatch};

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
    path: PathBuf,
    reader: Option<BufReader<File>>,
    line_no: u64,
    done: bool,
}

/// Reads JSON-lines files; each file is a split with its own watermark.
pub struct FileReader {
    files: Vec<OpenFile>,
    decoder: JsonDecoder,
    policy: BadRecordPolicy,
}

impl FileReader {
    pub fn new(paths: Vec<PathBuf>, decoder: JsonDecoder, policy: BadRecordPolicy) -> Self {
        let files = paths
            .into_iter()
            .map(|path| OpenFile {
                path,
                reader: None,
                line_no: 0,
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
            let file = File::open(&f.path)
                .map_err(|e| TaskError::Io(format!("opening {}: {e}", f.path.display())))?;
            f.reader = Some(BufReader::with_capacity(1 << 20, file));
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
                .map_err(|e| TaskError::Io(format!("reading {}: {e}", f.path.display())))?;
            if n == 0 {
                break;
            }
            f.line_no += 1;
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines.push(line);
            numbers.push(f.line_no);
        }
        if lines.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let (batch, bad) = self
            .decoder
            .decode(&refs)
            .map_err(|e| TaskError::Data(e.to_string()))?;
        let path = self.files[split].path.display().to_string();
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

impl SourceReader for FileReader {
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

/// Writes JSON lines: a part file per subtask (`{dir}/part-{subtask}.jsonl`, truncated when the
/// subtask starts, so a restarted attempt rewrites it instead of appending duplicates), or
/// standard output.
pub struct LineSink {
    target: LineTarget,
}

enum LineTarget {
    File(BufWriter<File>),
    Stdout,
}

impl LineSink {
    /// The part file of `subtask` in directory `dir` (created if missing).
    pub fn part_file(dir: &Path, subtask: u32) -> Result<Self, ConnectorError> {
        let io = |e: std::io::Error| ConnectorError::Io(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let f = File::create(dir.join(format!("part-{subtask}.jsonl"))).map_err(io)?;
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

impl Sink for LineSink {
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
