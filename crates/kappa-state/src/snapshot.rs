//! Snapshots of keyed state in object storage: a RocksDB checkpoint's files are uploaded,
//! immutable SST files only once (later snapshots reference them), and downloaded to restore.

use std::collections::HashMap;
use std::path::Path;

use kappa_job::confine::{BadName, names};
use xxhash_rust::xxh3::xxh3_64;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::backend::LocalFile;
use crate::error::StateError;
use crate::location::Location;

/// One file of a snapshot in object storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Its name in the RocksDB directory.
    pub name: String,
    /// Its object path, relative to the store root.
    pub object: String,
    pub size: u64,
    /// XXH3-64 of its bytes, checked when it is downloaded (absent in snapshots of earlier
    /// releases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xxh3: Option<u64>,
}

/// Everything needed to restore one snapshot of one subtask's state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StateHandle {
    pub files: Vec<StoredFile>,
}

impl StateHandle {
    /// Size of the whole snapshot (the full state).
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Checks that every file name is a plain name: a handle read back from storage or
    /// received from a peer must not place a file outside the directory it is restored into.
    pub fn check_names(&self) -> Result<(), BadName> {
        self.files
            .iter()
            .try_for_each(|f| names::plain_file_name(&f.name))
    }
}

/// Uploads the snapshots of one state instance, remembering which SSTs are already stored.
pub struct Uploader {
    location: Location,
    /// Where immutable files go, e.g. `{job}/shared/{instance}`.
    shared: ObjectPath,
    uploaded: HashMap<String, StoredFile>,
}

/// The result of one upload.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub handle: StateHandle,
    /// Bytes sent for this snapshot (the incremental size).
    pub bytes: u64,
}

impl Uploader {
    pub fn new(location: Location, shared: ObjectPath) -> Self {
        Self {
            location,
            shared,
            uploaded: HashMap::new(),
        }
    }

    /// Treats the SSTs of a restored snapshot as uploaded (they are in the store already).
    pub fn adopt(&mut self, handle: &StateHandle) {
        for f in handle.files.iter().filter(|f| f.name.ends_with(".sst")) {
            self.uploaded.insert(f.name.clone(), f.clone());
        }
    }

    /// Uploads the files of a local checkpoint in `dir`; mutable files go under `private`.
    pub async fn upload(
        &mut self,
        dir: &Path,
        files: &[LocalFile],
        private: &ObjectPath,
    ) -> Result<Uploaded, StateError> {
        let mut handle = StateHandle::default();
        let mut bytes = 0;
        for f in files {
            if f.is_immutable()
                && let Some(done) = self.uploaded.get(&f.name).filter(|d| d.size == f.size)
            {
                handle.files.push(done.clone());
                continue;
            }
            let object = if f.is_immutable() {
                self.shared.clone().join(f.name.as_str())
            } else {
                private.clone().join(f.name.as_str())
            };
            let path = dir.join(&f.name);
            let data = tokio::fs::read(&path)
                .await
                .map_err(|e| StateError::io(&path, e))?;
            let xxh3 = Some(xxh3_64(&data));
            self.location
                .store
                .put(&object, PutPayload::from(data))
                .await
                .map_err(|e| StateError::store(self.location.show(&object), e))?;
            bytes += f.size;
            let stored = StoredFile {
                name: f.name.clone(),
                object: object.to_string(),
                size: f.size,
                xxh3,
            };
            if f.is_immutable() {
                self.uploaded.insert(f.name.clone(), stored.clone());
            }
            handle.files.push(stored);
        }
        Ok(Uploaded { handle, bytes })
    }
}

/// Files of a snapshot downloaded at a time: a restore of large state is bound by the
/// store's latency per object, not by one connection's bandwidth.
const PARALLEL_DOWNLOADS: usize = 4;

/// Downloads the files of `handle` into `dir` (new), several at a time, checking each one's
/// size and checksum, so that `dir` can be opened as a RocksDB database.
pub async fn download(
    location: &Location,
    handle: &StateHandle,
    dir: &Path,
) -> Result<(), StateError> {
    handle.check_names()?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| StateError::io(dir, e))?;
    let mut files = handle.files.iter().cloned();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < PARALLEL_DOWNLOADS
            && let Some(f) = files.next()
        {
            let path = dir.join(&f.name);
            running.spawn(download_file(location.clone(), f, path));
        }
        match running.join_next().await {
            None => return Ok(()),
            Some(Ok(done)) => done?,
            Some(Err(e)) => return Err(StateError::io(dir, std::io::Error::other(e))),
        }
    }
}

/// Downloads one file of a snapshot to `path`, checking its size and checksum.
async fn download_file(
    location: Location,
    f: StoredFile,
    path: std::path::PathBuf,
) -> Result<(), StateError> {
    let object = ObjectPath::parse(&f.object).map_err(|e| StateError::store(&f.object, e))?;
    let where_ = location.show(&object);
    let bytes = location
        .store
        .get(&object)
        .await
        .map_err(|e| StateError::store(&where_, e))?
        .bytes()
        .await
        .map_err(|e| StateError::store(&where_, e))?;
    if bytes.len() as u64 != f.size {
        return Err(StateError::store(
            &where_,
            format!(
                "has {} bytes, the snapshot recorded {}",
                bytes.len(),
                f.size
            ),
        ));
    }
    if let Some(expected) = f.xxh3
        && xxh3_64(&bytes) != expected
    {
        return Err(StateError::store(
            &where_,
            "does not hold the bytes the snapshot recorded (checksum mismatch): it was changed or damaged since",
        ));
    }
    tokio::fs::write(&path, &bytes)
        .await
        .map_err(|e| StateError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RocksState;
    use kappa_runtime::state::KeyedState;

    #[tokio::test]
    async fn snapshots_upload_ssts_once_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::parse(&dir.path().join("store").display().to_string()).unwrap();
        let mut state = RocksState::open(&dir.path().join("db")).unwrap();
        let mut up = Uploader::new(location.clone(), location.child(&["job", "shared", "a"]));
        for i in 0..1000u32 {
            state.put(i % 128, &i.to_be_bytes(), &[7; 100]);
        }
        state.commit().unwrap();
        let files = state.checkpoint(&dir.path().join("chk-1")).unwrap();
        let first = up
            .upload(
                &dir.path().join("chk-1"),
                &files,
                &location.child(&["job", "chk-1", "0"]),
            )
            .await
            .unwrap();
        assert_eq!(
            first.bytes,
            first.handle.size(),
            "the first snapshot is full"
        );

        state.put(3, b"new", b"value");
        state.commit().unwrap();
        let files = state.checkpoint(&dir.path().join("chk-2")).unwrap();
        let second = up
            .upload(
                &dir.path().join("chk-2"),
                &files,
                &location.child(&["job", "chk-2", "0"]),
            )
            .await
            .unwrap();
        let old_ssts: u64 = first
            .handle
            .files
            .iter()
            .filter(|f| f.name.ends_with(".sst"))
            .map(|f| f.size)
            .sum();
        assert!(
            second.bytes < second.handle.size(),
            "incremental: {} of {}",
            second.bytes,
            second.handle.size()
        );
        assert!(
            second.handle.size() - second.bytes >= old_ssts,
            "old SSTs referenced, not re-uploaded"
        );

        let restored = dir.path().join("restored");
        download(&location, &second.handle, &restored)
            .await
            .unwrap();
        let back = RocksState::open(&restored).unwrap();
        let mut n = 0;
        back.scan(0..=127, &mut |_, _, _| {
            n += 1;
            true
        })
        .unwrap();
        assert_eq!(n, 1001);

        let mut broken = second.handle.clone();
        broken.files[0].object.push_str(".missing");
        let e = download(&location, &broken, &dir.path().join("broken"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(".missing"), "{e}");

        // One flipped byte in a stored SST of the right size is refused, naming the object.
        let sst = second
            .handle
            .files
            .iter()
            .find(|f| f.name.ends_with(".sst"))
            .expect("an SST");
        let object = ObjectPath::parse(&sst.object).unwrap();
        let mut bytes = location
            .store
            .get(&object)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        location
            .store
            .put(&object, PutPayload::from(bytes))
            .await
            .unwrap();
        let e = download(&location, &second.handle, &dir.path().join("flipped"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("checksum mismatch") && e.contains(&sst.name),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_handle_naming_a_file_outside_the_restore_directory_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::parse(&dir.path().join("store").display().to_string()).unwrap();
        let object = location.child(&["job", "shared", "x"]);
        location
            .store
            .put(&object, PutPayload::from(b"attacker's bytes".to_vec()))
            .await
            .unwrap();
        let restore = dir.path().join("a").join("b").join("restore");
        for name in [
            "../../escaped",
            "/tmp/kappa-escaped-by-a-snapshot",
            "",
            "..",
        ] {
            let handle = StateHandle {
                files: vec![StoredFile {
                    name: name.into(),
                    object: object.to_string(),
                    size: 16,
                    xxh3: None,
                }],
            };
            let e = download(&location, &handle, &restore).await.unwrap_err();
            assert!(
                matches!(e, StateError::Name(_)) && e.to_string().contains("not a plain file name"),
                "{name:?}: {e}"
            );
        }
        assert!(!dir.path().join("a").join("escaped").exists());
        assert!(!std::path::Path::new("/tmp/kappa-escaped-by-a-snapshot").exists());
        assert!(!restore.exists(), "refused before anything is created");
    }
}
