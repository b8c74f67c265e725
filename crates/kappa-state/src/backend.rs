//! Keyed state on RocksDB: every key is prefixed with its key group (big-endian u16) so a
//! subtask's key-group range is one contiguous scan, and snapshots are RocksDB checkpoints.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kappa_runtime::state::{KeyedState, ScanFn, StateFailure};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    BlockBasedOptions, Cache, DB, Direction, IteratorMode, LogLevel, Options, WriteBatch,
    WriteOptions,
};

use crate::error::StateError;

/// RocksDB's memtable size per database (two at most): evicted state is written here
/// before it is flushed to an SST.
const WRITE_BUFFER_BYTES: usize = 8 << 20;
/// RocksDB's cache of SST blocks per database.
const BLOCK_CACHE_BYTES: usize = 8 << 20;

/// A file of a local checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub name: String,
    pub size: u64,
}

impl LocalFile {
    /// SST files never change once written: a snapshot may reference an earlier upload.
    pub fn is_immutable(&self) -> bool {
        self.name.ends_with(".sst")
    }
}

/// RocksDB-backed [`KeyedState`]. [`RocksState::handle`] gives another handle on the same
/// database (an operator that spills reads and writes through its own while the checkpoint
/// part keeps the one it checkpoints); each stages its own writes.
pub struct RocksState {
    db: Arc<DB>,
    path: PathBuf,
    /// Writes staged since the last commit, in order: (prefixed key, value or None to delete).
    staged: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn prefixed(key_group: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.extend_from_slice(&(key_group as u16).to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn failure(e: StateError) -> StateFailure {
    StateFailure(e.to_string())
}

impl RocksState {
    /// Opens (or creates) the database in `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // The database is a working copy: a restart restores from a checkpoint, never from
        // what is here, so writes skip the write-ahead log (see `commit`). Its info log only
        // takes fatal messages: a log line after a failed one (a full disk) is an assertion
        // in Debian's RocksDB, which aborts the whole process.
        opts.set_log_level(LogLevel::Fatal);
        // Point reads of keys that are not there (a new key looked up in spilled state) are
        // answered by bloom filters, not by reading blocks.
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        let cache =
            Cache::new_lru_cache(BLOCK_CACHE_BYTES).map_err(|e| StateError::rocks(path, e))?;
        table.set_block_cache(&cache);
        opts.set_block_based_table_factory(&table);
        // What RocksDB itself holds in memory per database is bounded and small: the
        // operator's cache is where state lives in memory.
        opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
        opts.set_max_write_buffer_number(2);
        let db = DB::open(&opts, path).map_err(|e| StateError::rocks(path, e))?;
        Ok(Self {
            db: Arc::new(db),
            path: path.to_path_buf(),
            staged: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Another handle on the same database, with writes staged of its own.
    pub fn handle(&self) -> Self {
        Self {
            db: Arc::clone(&self.db),
            path: self.path.clone(),
            staged: Vec::new(),
        }
    }

    /// Writes a consistent, self-contained copy of the committed state into `dir` (new) and
    /// lists its files.
    pub fn checkpoint(&self, dir: &Path) -> Result<Vec<LocalFile>, StateError> {
        self.db
            .flush()
            .map_err(|e| StateError::rocks(&self.path, e))?;
        Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(|e| StateError::rocks(dir, e))?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| StateError::io(dir, e))? {
            let entry = entry.map_err(|e| StateError::io(dir, e))?;
            let meta = entry
                .metadata()
                .map_err(|e| StateError::io(&entry.path(), e))?;
            if meta.is_file() {
                files.push(LocalFile {
                    name: entry.file_name().to_string_lossy().into_owned(),
                    size: meta.len(),
                });
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }
}

impl RocksState {
    /// Calls `f` for the entries from the prefixed key `from` on, up to the end of key group
    /// `last`, while it returns true.
    fn scan_prefixed(
        &self,
        from: &[u8],
        last: u32,
        f: &mut ScanFn<'_>,
    ) -> Result<(), StateFailure> {
        for item in self
            .db
            .iterator(IteratorMode::From(from, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| failure(StateError::rocks(&self.path, e)))?;
            let Some((kg, key)) = k.split_first_chunk::<2>() else {
                continue;
            };
            let kg = u32::from(u16::from_be_bytes(*kg));
            if kg > last || !f(kg, key, &v) {
                break;
            }
        }
        Ok(())
    }
}

impl KeyedState for RocksState {
    fn put(&mut self, key_group: u32, key: &[u8], value: &[u8]) {
        self.staged
            .push((prefixed(key_group, key), Some(value.to_vec())));
    }

    fn delete(&mut self, key_group: u32, key: &[u8]) {
        self.staged.push((prefixed(key_group, key), None));
    }

    fn commit(&mut self) -> Result<(), StateFailure> {
        // Written in key order (a stable sort: the later of two writes of a key wins): RocksDB
        // inserts ascending keys into its memtable from where the last insert ended, far
        // faster than keys in the order windows were evicted or changed.
        let mut staged = std::mem::take(&mut self.staged);
        staged.sort_by(|a, b| a.0.cmp(&b.0));
        let mut batch = WriteBatch::default();
        for (k, v) in staged {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        // No write-ahead log: a full disk then fails a flush with an error, instead of leaving
        // the log writer in an error state that Debian's RocksDB (built with assertions)
        // aborts the whole process on at its next write.
        let mut no_log = WriteOptions::default();
        no_log.disable_wal(true);
        self.db
            .write_opt(batch, &no_log)
            .map_err(|e| failure(StateError::rocks(&self.path, e)))
    }

    fn scan(&self, groups: RangeInclusive<u32>, f: &mut ScanFn<'_>) -> Result<(), StateFailure> {
        self.scan_prefixed(&prefixed(*groups.start(), &[]), *groups.end(), f)
    }

    fn scan_from(
        &self,
        key_group: u32,
        from: &[u8],
        f: &mut ScanFn<'_>,
    ) -> Result<(), StateFailure> {
        self.scan_prefixed(&prefixed(key_group, from), key_group, f)
    }

    fn get(&self, key_group: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StateFailure> {
        self.db
            .get(prefixed(key_group, key))
            .map_err(|e| failure(StateError::rocks(&self.path, e)))
    }

    /// Its SST files and its memtables not flushed yet.
    fn stored_bytes(&self) -> u64 {
        [
            "rocksdb.total-sst-files-size",
            "rocksdb.cur-size-all-mem-tables",
        ]
        .iter()
        .filter_map(|p| self.db.property_int_value(*p).ok().flatten())
        .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_share_the_database_and_stage_their_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = RocksState::open(&dir.path().join("db")).unwrap();
        let mut b = a.handle();
        a.put(3, b"k1", b"a");
        b.put(3, b"k2", b"b");
        b.put(4, b"k0", b"c");
        assert_eq!(b.get(3, b"k2").unwrap(), None, "staged writes are not read");
        b.commit().unwrap();
        assert_eq!(a.get(3, b"k2").unwrap().as_deref(), Some(&b"b"[..]));
        assert_eq!(
            a.get(3, b"k1").unwrap(),
            None,
            "a's writes wait for a's commit"
        );
        a.commit().unwrap();
        let mut seen = Vec::new();
        a.scan_from(3, b"k2", &mut |kg, k, _| {
            seen.push((kg, k.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![(3, b"k2".to_vec())],
            "from k2, within key group 3"
        );
        let mut first = Vec::new();
        a.scan(0..=10, &mut |kg, k, _| {
            first.push((kg, k.to_vec()));
            false
        })
        .unwrap();
        assert_eq!(first, vec![(3, b"k1".to_vec())], "a scan stops when told");
        assert!(a.stored_bytes() > 0, "in its memtable");
    }

    #[test]
    fn writes_staged_out_of_order_commit_in_order_and_the_last_write_of_a_key_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RocksState::open(&dir.path().join("db")).unwrap();
        s.put(3, b"z", b"first");
        s.put(1, b"a", b"1");
        s.delete(3, b"z");
        s.put(2, b"m", b"old");
        s.put(3, b"z", b"last");
        s.put(2, b"m", b"new");
        s.put(1, b"gone", b"x");
        s.delete(1, b"gone");
        s.commit().unwrap();
        let get = |kg, k: &[u8]| s.get(kg, k).unwrap().map(|v| String::from_utf8(v).unwrap());
        assert_eq!(get(3, b"z").as_deref(), Some("last"));
        assert_eq!(get(2, b"m").as_deref(), Some("new"));
        assert_eq!(get(1, b"a").as_deref(), Some("1"));
        assert_eq!(get(1, b"gone"), None);
    }

    #[test]
    fn key_groups_scan_as_ranges_and_checkpoints_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RocksState::open(&dir.path().join("db")).unwrap();
        for kg in [0u32, 5, 6, 127] {
            s.put(kg, format!("k{kg}").as_bytes(), &kg.to_le_bytes());
        }
        s.put(5, b"a", b"first");
        s.commit().unwrap();
        s.delete(6, b"k6");
        s.commit().unwrap();
        let mut seen = Vec::new();
        s.scan(5..=100, &mut |kg, k, _| {
            seen.push((kg, String::from_utf8_lossy(k).into_owned()));
            true
        })
        .unwrap();
        assert_eq!(seen, vec![(5, "a".to_string()), (5, "k5".to_string())]);

        let chk = dir.path().join("chk-1");
        let files = s.checkpoint(&chk).unwrap();
        assert!(files.iter().any(|f| f.is_immutable()), "{files:?}");
        assert!(files.iter().any(|f| f.name == "CURRENT"));
        s.put(0, b"after", b"x");
        s.commit().unwrap();
        let copy = RocksState::open(&chk).unwrap();
        let mut n = 0;
        copy.scan(0..=127, &mut |_, k, _| {
            assert_ne!(k, b"after", "the checkpoint does not see later writes");
            n += 1;
            true
        })
        .unwrap();
        assert_eq!(n, 4);
    }
}
