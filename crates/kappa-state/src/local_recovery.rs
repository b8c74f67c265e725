//! Local recovery (Flink's): after its upload, the latest checkpoints of each keyed operator
//! instance stay on the taskmanager's disk (`{root}/{job}/{instance}/chk-{n}`), so that a
//! restore on the same taskmanager whose snapshot is one of them copies it — SST files as
//! hard links — instead of downloading it. A copy is used only if its files are exactly the
//! snapshot's (names, sizes, and checksums where the snapshot recorded them); anything else
//! is downloaded as before.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use xxhash_rust::xxh3::Xxh3;

use crate::snapshot::{StateHandle, StoredFile};

/// Checkpoints kept per operator instance: the latest may not complete, the one before did.
const KEPT: usize = 2;

/// The local copies of checkpoints of one taskmanager.
#[derive(Debug, Clone)]
pub struct LocalRecovery {
    root: PathBuf,
}

impl LocalRecovery {
    /// Copies kept under `root` (which only this taskmanager uses).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Keeps `dir`, the uploaded checkpoint `n` of operator instance `instance` of job `job`
    /// (moved, not copied), and drops that instance's older copies but the latest [`KEPT`].
    pub fn keep(&self, job: &str, instance: &str, n: u64, dir: &Path) -> io::Result<()> {
        let home = self.root.join(job).join(instance);
        std::fs::create_dir_all(&home)?;
        std::fs::rename(dir, home.join(format!("chk-{n}")))?;
        let mut kept: BTreeMap<u64, PathBuf> = BTreeMap::new();
        for entry in std::fs::read_dir(&home)? {
            let path = entry?.path();
            let number = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("chk-"))
                .and_then(|n| n.parse().ok());
            if let Some(number) = number {
                kept.insert(number, path);
            }
        }
        let old = kept.len().saturating_sub(KEPT);
        for path in kept.into_values().take(old) {
            std::fs::remove_dir_all(path)?;
        }
        Ok(())
    }

    /// Fills `dir` (new) with the kept copy of job `job` whose files are those of `handle`;
    /// returns where the copy was, or None when there is none.
    pub fn restore(
        &self,
        job: &str,
        handle: &StateHandle,
        dir: &Path,
    ) -> io::Result<Option<PathBuf>> {
        let Some(copy) = self.find(job, handle)? else {
            return Ok(None);
        };
        std::fs::create_dir_all(dir)?;
        for f in &handle.files {
            let (from, to) = (copy.join(&f.name), dir.join(&f.name));
            // SST files never change: a hard link shares them. The others RocksDB may rewrite.
            if !f.name.ends_with(".sst") || std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to)?;
            }
        }
        Ok(Some(copy))
    }

    /// The kept copy of job `job` holding exactly the files of `handle`.
    fn find(&self, job: &str, handle: &StateHandle) -> io::Result<Option<PathBuf>> {
        let wanted: HashSet<(&str, u64)> = handle
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.size))
            .collect();
        let Ok(instances) = std::fs::read_dir(self.root.join(job)) else {
            return Ok(None);
        };
        for instance in instances {
            for copy in std::fs::read_dir(instance?.path())? {
                let copy = copy?.path();
                let mut files = HashSet::new();
                for f in std::fs::read_dir(&copy)? {
                    let f = f?;
                    let name = f.file_name().to_string_lossy().into_owned();
                    files.insert((name, f.metadata()?.len()));
                }
                let same = files.len() == wanted.len()
                    && files
                        .iter()
                        .all(|(n, s)| wanted.contains(&(n.as_str(), *s)));
                if same && verified(&copy, &handle.files)? {
                    return Ok(Some(copy));
                }
            }
        }
        Ok(None)
    }

    /// Drops the copies of jobs not in `running` that nothing touched for `age`: a job that
    /// finished, was cancelled or moved away.
    pub fn sweep(&self, running: &HashSet<String>, age: Duration) -> io::Result<()> {
        let Ok(jobs) = std::fs::read_dir(&self.root) else {
            return Ok(());
        };
        let now = SystemTime::now();
        for job in jobs {
            let job = job?;
            let name = job.file_name().to_string_lossy().into_owned();
            let idle = job
                .metadata()?
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|d| d >= age);
            if !running.contains(&name) && idle {
                std::fs::remove_dir_all(job.path())?;
            }
        }
        Ok(())
    }
}

/// Whether the files in `dir` have the checksums the snapshot recorded for them.
fn verified(dir: &Path, files: &[StoredFile]) -> io::Result<bool> {
    for f in files {
        let Some(expected) = f.xxh3 else {
            continue;
        };
        let mut hasher = Xxh3::new();
        let mut file = std::fs::File::open(dir.join(&f.name))?;
        io::copy(&mut file, &mut HashWriter(&mut hasher))?;
        if hasher.digest() != expected {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Feeds what is written to a hasher.
struct HashWriter<'a>(&'a mut Xxh3);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::xxh3_64;

    fn checkpoint(dir: &Path, files: &[(&str, &[u8])]) -> StateHandle {
        std::fs::create_dir_all(dir).unwrap();
        StateHandle {
            files: files
                .iter()
                .map(|(name, bytes)| {
                    std::fs::write(dir.join(name), bytes).unwrap();
                    StoredFile {
                        name: name.to_string(),
                        object: format!("shared/{name}"),
                        size: bytes.len() as u64,
                        xxh3: Some(xxh3_64(bytes)),
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn a_kept_checkpoint_restores_only_when_its_files_are_the_snapshots() {
        let tmp = tempfile::tempdir().unwrap();
        let local = LocalRecovery::new(tmp.path().join("recovery"));
        let mut handles = Vec::new();
        for n in 1..=3u64 {
            let dir = tmp.path().join(format!("upload-{n}"));
            let sst = format!("00000{n}.sst");
            let content = format!("state {n}");
            handles.push(checkpoint(
                &dir,
                &[(&sst, content.as_bytes()), ("MANIFEST-000001", b"manifest")],
            ));
            local.keep("job", "3-0-1", n, &dir).unwrap();
        }
        // The first was dropped: only the latest two are kept.
        let missing = tmp.path().join("r1");
        assert_eq!(local.restore("job", &handles[0], &missing).unwrap(), None);
        assert_eq!(local.restore("other", &handles[2], &missing).unwrap(), None);
        let to = tmp.path().join("r3");
        let copy = local
            .restore("job", &handles[2], &to)
            .unwrap()
            .expect("kept");
        assert!(copy.ends_with("job/3-0-1/chk-3"), "{copy:?}");
        assert_eq!(std::fs::read(to.join("000003.sst")).unwrap(), b"state 3");
        assert_eq!(
            std::fs::read(to.join("MANIFEST-000001")).unwrap(),
            b"manifest"
        );

        // A kept file changed since (same size): its checksum refuses the copy.
        std::fs::write(copy.join("000003.sst"), b"state X").unwrap();
        let again = tmp.path().join("r3b");
        assert_eq!(local.restore("job", &handles[2], &again).unwrap(), None);

        local
            .sweep(&HashSet::from(["job".to_string()]), Duration::ZERO)
            .unwrap();
        assert!(
            tmp.path().join("recovery/job").exists(),
            "a running job keeps its copies"
        );
        local.sweep(&HashSet::new(), Duration::ZERO).unwrap();
        assert!(!tmp.path().join("recovery/job").exists());
    }
}
