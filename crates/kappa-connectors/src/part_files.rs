//! The exactly-once file sink: each checkpoint's output goes to its own part file, hidden
//! while in progress and renamed to its final name when the checkpoint completes.
//!
//! Names in the sink directory, for writer `w` (job and subtask): `.part-w.inprogress` while
//! written; at the barrier of checkpoint n it is synced and renamed `.part-w-n.pending`; when n
//! completes it becomes `part-w-n.jsonl`. A restarted subtask renames the pending files its
//! restored checkpoint lists (a rename that already happened is recognised by the final file),
//! and deletes the hidden files of its writer that no checkpoint will commit.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use kappa_runtime::TaskError;
use kappa_runtime::io::{PendingCommit, Sink};
use serde::{Deserialize, Serialize};

use crate::json::encode_rows;

/// What committing one checkpoint's part file needs (kept in the checkpoint).
#[derive(Debug, Serialize, Deserialize)]
struct PartCommit {
    pending: PathBuf,
    committed: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> TaskError {
    TaskError::Io(format!("{}: {e}", path.display()))
}

/// Renames a pending part file to its final name, unless that happened before.
fn commit_part(c: &PartCommit) -> Result<(), TaskError> {
    if c.committed.exists() {
        return Ok(());
    }
    std::fs::rename(&c.pending, &c.committed).map_err(|e| io(&c.pending, e))
}

/// Writes a part file per checkpoint as described in the module documentation.
pub struct PartFileSink {
    dir: PathBuf,
    writer: String,
    open: Option<BufWriter<File>>,
    /// Part files closed at a barrier, by checkpoint id, waiting for it to complete.
    prepared: Vec<(u64, PartCommit)>,
}

impl PartFileSink {
    /// The sink of `writer` in `dir` (created if missing).
    pub fn open(dir: &Path, writer: &str) -> Result<Self, TaskError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            writer: writer.to_string(),
            open: None,
            prepared: Vec::new(),
        })
    }

    fn in_progress(&self) -> PathBuf {
        self.dir.join(format!(".part-{}.inprogress", self.writer))
    }

    fn part(&self, n: u64) -> PartCommit {
        PartCommit {
            pending: self.dir.join(format!(".part-{}-{n}.pending", self.writer)),
            committed: self.dir.join(format!("part-{}-{n}.jsonl", self.writer)),
        }
    }

    /// Closes the open part file as the output of checkpoint `n`.
    fn close(&mut self, n: u64) -> Result<Option<PartCommit>, TaskError> {
        let Some(mut w) = self.open.take() else {
            return Ok(None);
        };
        let path = self.in_progress();
        w.flush().map_err(|e| io(&path, e))?;
        let f = w.into_inner().map_err(|e| io(&path, e.into_error()))?;
        f.sync_all().map_err(|e| io(&path, e))?;
        let part = self.part(n);
        std::fs::rename(&path, &part.pending).map_err(|e| io(&path, e))?;
        Ok(Some(part))
    }

    /// Deletes hidden files of this writer that are not listed in `keep`.
    fn remove_leftovers(&self, keep: &[PathBuf]) -> Result<(), TaskError> {
        let prefix = format!(".part-{}", self.writer);
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let path = entry.map_err(|e| io(&self.dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let ours = name.strip_prefix(&prefix).is_some_and(|rest| {
                rest == ".inprogress" || (rest.starts_with('-') && rest.ends_with(".pending"))
            });
            if ours && !keep.contains(&path) {
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
            }
        }
        Ok(())
    }
}

impl Sink for PartFileSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), TaskError> {
        let rows = encode_rows(batch).map_err(|e| TaskError::Data(e.to_string()))?;
        if self.open.is_none() {
            let path = self.in_progress();
            self.open = Some(BufWriter::new(
                File::create(&path).map_err(|e| io(&path, e))?,
            ));
        }
        let path = self.in_progress();
        if let Some(w) = self.open.as_mut() {
            for r in rows {
                w.write_all(&r).map_err(|e| io(&path, e))?;
                w.write_all(b"\n").map_err(|e| io(&path, e))?;
            }
        }
        Ok(())
    }

    fn prepare(&mut self, n: u64) -> Result<Option<Vec<u8>>, TaskError> {
        let Some(part) = self.close(n)? else {
            return Ok(None);
        };
        let data = serde_json::to_vec(&part)
            .map_err(|e| TaskError::Data(format!("describing a part file: {e}")))?;
        self.prepared.push((n, part));
        Ok(Some(data))
    }

    fn commit(&mut self, n: u64) -> Result<(), TaskError> {
        let (due, later) = std::mem::take(&mut self.prepared)
            .into_iter()
            .partition(|(id, _)| *id <= n);
        self.prepared = later;
        due.iter().try_for_each(|(_, part)| commit_part(part))
    }

    fn recover(&mut self, pending: Vec<PendingCommit>) -> Result<(), TaskError> {
        for p in &pending {
            let part: PartCommit = serde_json::from_slice(&p.data).map_err(|e| {
                TaskError::Data(format!(
                    "the restored checkpoint's part file entry of `{}` is corrupt: {e}",
                    p.writer
                ))
            })?;
            if !part.committed.exists() && !part.pending.exists() {
                return Err(TaskError::Io(format!(
                    "{} (output of checkpoint {}) is gone: it cannot be committed",
                    part.pending.display(),
                    p.checkpoint
                )));
            }
            commit_part(&part)?;
        }
        self.remove_leftovers(&[])
    }

    fn writer(&self) -> String {
        self.writer.clone()
    }

    /// The input ended: everything written becomes visible at once.
    fn flush(&mut self) -> Result<(), TaskError> {
        let last = self.prepared.iter().map(|(n, _)| *n).max().unwrap_or(0);
        if let Some(part) = self.close(last + 1)? {
            self.prepared.push((last + 1, part));
        }
        self.commit(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(v: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![v]))])
            .expect("a valid batch")
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn part_files_appear_when_their_checkpoint_completes_and_once_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = PartFileSink::open(dir.path(), "j-0").expect("open");
        s.write(&batch(1)).expect("write");
        let c1 = s.prepare(1).expect("prepare").expect("a part file");
        s.write(&batch(2)).expect("write");
        let c2 = s.prepare(2).expect("prepare").expect("a part file");
        assert!(
            visible(dir.path()).is_empty(),
            "nothing visible before completion"
        );
        s.commit(1).expect("commit");
        assert_eq!(visible(dir.path()), ["part-j-0-1.jsonl"]);
        s.write(&batch(3)).expect("write");
        // Crash here: checkpoint 2 completed but its notification never arrived.
        drop(s);
        let mut r = PartFileSink::open(dir.path(), "j-0").expect("reopen");
        let pending = |n, data: &Vec<u8>| PendingCommit {
            writer: "j-0".into(),
            checkpoint: n,
            data: data.clone(),
        };
        r.recover(vec![pending(1, &c1), pending(2, &c2)])
            .expect("recover");
        assert_eq!(
            visible(dir.path()),
            ["part-j-0-1.jsonl", "part-j-0-2.jsonl"]
        );
        let hidden = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(hidden, 2, "the uncommitted in-progress file is removed");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("part-j-0-2.jsonl")).expect("read"),
            "{\"v\":2}\n"
        );
    }
}
