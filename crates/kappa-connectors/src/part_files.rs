//! The exactly-once file sink: each checkpoint's output goes to its own part file, hidden
//! while in progress and renamed to its final name when the checkpoint completes.
//!
//! Names in the sink directory, for writer `w` (job, sink and subtask) in attempt `a` of the
//! job: `.part-w.aA.inprogress` while written; at the barrier of checkpoint n it is synced and
//! renamed `.part-w.aA-n.pending`; when n completes it becomes `part-w-n.jsonl` (checkpoint ids
//! are never reused, across attempts too). What a bounded input writes after its last barrier
//! becomes `part-w-aA-end.jsonl` when the input ends.
//!
//! The attempt in the hidden names fences attempts from each other: during a failover the
//! subtask of the old attempt may still be writing while the new one starts. A restarted
//! subtask renames the pending files its restored checkpoint lists (a rename that already
//! happened is recognised by the final file), then deletes the hidden files of its writer from
//! earlier attempts, which no checkpoint will commit; files of later attempts are not its own.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use kappa_runtime::TaskError;
use kappa_runtime::io::{PendingCommit, Sink};
use serde::{Deserialize, Serialize};

use crate::confine::part_file_in;
use crate::json::encode_rows;
use crate::prepared::Prepared;

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
    attempt: u32,
    open: Option<BufWriter<File>>,
    /// Part files closed at a barrier, by checkpoint id, waiting for it to complete.
    prepared: Prepared<PartCommit>,
}

impl PartFileSink {
    /// The sink of `writer` in `dir` (created if missing), in attempt `attempt` of the job.
    pub fn open(dir: &Path, writer: &str, attempt: u32) -> Result<Self, TaskError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            writer: writer.to_string(),
            attempt,
            open: None,
            prepared: Prepared::default(),
        })
    }

    fn in_progress(&self) -> PathBuf {
        let (w, a) = (&self.writer, self.attempt);
        self.dir.join(format!(".part-{w}.a{a}.inprogress"))
    }

    /// The names of the output of checkpoint `n`, or of the end of the input.
    fn part(&self, n: Option<u64>) -> PartCommit {
        let (w, a) = (&self.writer, self.attempt);
        let (pending, committed) = match n {
            Some(n) => (
                format!(".part-{w}.a{a}-{n}.pending"),
                format!("part-{w}-{n}.jsonl"),
            ),
            None => (
                format!(".part-{w}.a{a}-end.pending"),
                format!("part-{w}-a{a}-end.jsonl"),
            ),
        };
        PartCommit {
            pending: self.dir.join(pending),
            committed: self.dir.join(committed),
        }
    }

    /// Closes the open part file as the output of checkpoint `n` (None: the end).
    fn close(&mut self, n: Option<u64>) -> Result<Option<PartCommit>, TaskError> {
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

    /// The attempt a hidden file of this writer belongs to (0: named before attempts were).
    fn attempt_of(&self, name: &str) -> Option<u32> {
        let rest = name.strip_prefix(&format!(".part-{}", self.writer))?;
        let Some(rest) = rest.strip_prefix(".a") else {
            // The names of earlier releases: `.part-w.inprogress`, `.part-w-n.pending`.
            let legacy = rest == ".inprogress"
                || rest
                    .strip_prefix('-')
                    .and_then(|r| r.strip_suffix(".pending"))
                    .is_some_and(|n| n.parse::<u64>().is_ok());
            return legacy.then_some(0);
        };
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let (attempt, tail) = rest.split_at(digits);
        let ours = tail == ".inprogress"
            || tail
                .strip_prefix('-')
                .and_then(|r| r.strip_suffix(".pending"))
                .is_some_and(|n| n == "end" || n.parse::<u64>().is_ok());
        if ours { attempt.parse().ok() } else { None }
    }

    /// Deletes the hidden files of this writer left by earlier attempts.
    fn remove_leftovers(&self) -> Result<(), TaskError> {
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let path = entry.map_err(|e| io(&self.dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if self.attempt_of(name).is_some_and(|a| a < self.attempt) {
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
        let Some(part) = self.close(Some(n))? else {
            return Ok(None);
        };
        let data = serde_json::to_vec(&part)
            .map_err(|e| TaskError::Data(format!("describing a part file: {e}")))?;
        self.prepared.push(n, part);
        Ok(Some(data))
    }

    fn commit(&mut self, n: u64) -> Result<(), TaskError> {
        self.prepared
            .take_due(n)
            .iter()
            .try_for_each(|(_, part)| commit_part(part))
    }

    fn recover(&mut self, pending: Vec<PendingCommit>) -> Result<(), TaskError> {
        for p in &pending {
            let named: PartCommit = serde_json::from_slice(&p.data).map_err(|e| {
                TaskError::Data(format!(
                    "the restored checkpoint's part file entry of `{}` is corrupt: {e}",
                    p.writer
                ))
            })?;
            // Its paths were read back from storage: only this sink's own names are taken,
            // in this sink's directory.
            let part = PartCommit {
                pending: part_file_in(&self.dir, &named.pending)?,
                committed: part_file_in(&self.dir, &named.committed)?,
            };
            if !part.committed.exists() && !part.pending.exists() {
                return Err(TaskError::Io(format!(
                    "{} (output of checkpoint {}) is gone: it cannot be committed",
                    part.pending.display(),
                    p.checkpoint
                )));
            }
            commit_part(&part)?;
        }
        self.remove_leftovers()
    }

    fn writer(&self) -> String {
        self.writer.clone()
    }

    /// The input ended: everything written becomes visible at once.
    fn flush(&mut self) -> Result<(), TaskError> {
        if let Some(part) = self.close(None)? {
            self.prepared.push(u64::MAX, part);
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

    fn pending(n: u64, data: &[u8]) -> PendingCommit {
        PendingCommit {
            writer: "j-0".into(),
            checkpoint: n,
            data: data.to_vec(),
        }
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).expect("a committed part file")
    }

    #[test]
    fn part_files_appear_when_their_checkpoint_completes_and_once_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = PartFileSink::open(dir.path(), "j-0", 1).expect("open");
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
        let mut r = PartFileSink::open(dir.path(), "j-0", 2).expect("reopen");
        r.recover(vec![pending(1, &c1), pending(2, &c2)])
            .expect("recover");
        assert_eq!(
            visible(dir.path()),
            ["part-j-0-1.jsonl", "part-j-0-2.jsonl"]
        );
        let hidden = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(hidden, 2, "the uncommitted in-progress file is removed");
        assert_eq!(read(dir.path(), "part-j-0-2.jsonl"), "{\"v\":2}\n");
    }

    #[test]
    fn the_end_of_the_input_after_committed_checkpoints_is_its_own_part_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = PartFileSink::open(dir.path(), "j-0", 1).expect("open");
        s.write(&batch(1)).expect("write");
        s.prepare(1).expect("prepare");
        s.commit(1).expect("commit");
        s.write(&batch(2)).expect("write");
        s.flush().expect("the end");
        assert_eq!(
            visible(dir.path()),
            ["part-j-0-1.jsonl", "part-j-0-a1-end.jsonl"]
        );
        assert_eq!(read(dir.path(), "part-j-0-a1-end.jsonl"), "{\"v\":2}\n");
    }

    #[test]
    fn attempts_keep_to_their_own_files_during_a_failover() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Attempt 2 is still writing (its taskmanager has not heard of the failover) while
        // attempt 3 restores checkpoint 4, which attempt 2 prepared.
        let mut old = PartFileSink::open(dir.path(), "j-0", 2).expect("open");
        old.write(&batch(4)).expect("write");
        let c4 = old.prepare(4).expect("prepare").expect("a part file");
        old.write(&batch(5)).expect("write");
        let mut new = PartFileSink::open(dir.path(), "j-0", 3).expect("open");
        new.recover(vec![pending(4, &c4)]).expect("recover");
        new.write(&batch(50)).expect("write");
        new.prepare(5).expect("prepare").expect("a part file");
        // The old attempt's late writes fail on its removed file or stay hidden; they never
        // reach the new attempt's files.
        let _ = old.prepare(5);
        // A late start of attempt 2 (its recover after attempt 3's) leaves attempt 3's
        // files alone.
        let mut late = PartFileSink::open(dir.path(), "j-0", 2).expect("open");
        late.recover(Vec::new()).expect("recover");
        new.commit(5).expect("commit");
        assert_eq!(
            visible(dir.path()),
            ["part-j-0-4.jsonl", "part-j-0-5.jsonl"]
        );
        assert_eq!(read(dir.path(), "part-j-0-4.jsonl"), "{\"v\":4}\n");
        assert_eq!(read(dir.path(), "part-j-0-5.jsonl"), "{\"v\":50}\n");
    }

    #[test]
    fn a_restored_part_file_entry_naming_files_outside_the_sink_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink_dir = dir.path().join("out");
        let mut s = PartFileSink::open(&sink_dir, "j-0", 1).expect("open");
        s.write(&batch(1)).expect("write");
        let c1 = s.prepare(1).expect("prepare").expect("a part file");
        let real: PartCommit = serde_json::from_slice(&c1).expect("entry");
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "keep me\n").expect("victim");
        let crafted = [
            // Renames this sink's pending file over a file outside the directory.
            PartCommit {
                pending: real.pending.clone(),
                committed: victim.clone(),
            },
            // Renames a file outside into the directory.
            PartCommit {
                pending: victim.clone(),
                committed: real.committed.clone(),
            },
        ];
        for c in crafted {
            let data = serde_json::to_vec(&c).expect("json");
            let mut r = PartFileSink::open(&sink_dir, "j-0", 2).expect("reopen");
            let e = r.recover(vec![pending(1, &data)]).unwrap_err();
            assert!(
                matches!(e, TaskError::Refused(_)) && e.to_string().contains("part file"),
                "{e}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "keep me\n"
        );
        assert!(real.pending.exists());
        // A name of the sink's own behind `..` is taken by its name, in the sink's directory.
        let escaping = PartCommit {
            pending: real.pending.clone(),
            committed: sink_dir.join("../part-j-0-1.jsonl"),
        };
        let data = serde_json::to_vec(&escaping).expect("json");
        let mut r = PartFileSink::open(&sink_dir, "j-0", 2).expect("reopen");
        r.recover(vec![pending(1, &data)])
            .expect("its own names commit");
        assert_eq!(visible(&sink_dir), ["part-j-0-1.jsonl"]);
        assert!(!dir.path().join("part-j-0-1.jsonl").exists());
    }

    #[test]
    fn a_sink_restored_into_its_renamed_directory_commits_the_pending_files_there() {
        // An upgrade's cut-over: v2 wrote into a shadow directory that becomes the live one.
        let dir = tempfile::tempdir().expect("tempdir");
        let (shadow, live) = (dir.path().join("out.u1"), dir.path().join("out"));
        let mut s = PartFileSink::open(&shadow, "j-0", 1).expect("open");
        s.write(&batch(7)).expect("write");
        let c1 = s.prepare(1).expect("prepare").expect("a part file");
        drop(s);
        std::fs::rename(&shadow, &live).expect("the swap");
        let mut r = PartFileSink::open(&live, "j-1", 1).expect("restored");
        r.recover(vec![pending(1, &c1)]).expect("commits");
        assert_eq!(visible(&live), ["part-j-0-1.jsonl"]);
        assert_eq!(read(&live, "part-j-0-1.jsonl"), "{\"v\":7}\n");
    }
}
