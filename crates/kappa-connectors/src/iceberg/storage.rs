//! Iceberg's file I/O on Kappa's object storage: iceberg-rust reads and writes table metadata,
//! manifest lists and manifests through its `Storage` trait; this implements it over
//! [`Location`] (kappa-state's, the one place a path or URI becomes a store, S3 credentials
//! and endpoint from the AWS_* environment), so the catalog's files and the sink's data files
//! go through the same stores. Paths are full: `s3://bucket/key`, `file:///dir/file` or
//! `/dir/file`.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind};
use kappa_state::Location;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// Where an iceberg path is: the store of its bucket (or of `/`) and the object's path in it.
pub(crate) fn resolve(
    stores: &Mutex<HashMap<String, Location>>,
    path: &str,
) -> iceberg::Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    let (base, key) = split(path).ok_or_else(|| {
        Error::new(
            ErrorKind::FeatureUnsupported,
            format!(
                "`{path}`: Kappa's iceberg storage takes s3://bucket/key, file:///path or /path"
            ),
        )
    })?;
    let object = ObjectPath::parse(key).map_err(|e| {
        Error::new(
            ErrorKind::DataInvalid,
            format!("`{path}` is not a valid object path"),
        )
        .with_source(e)
    })?;
    let mut known = stores.lock();
    if let Some(l) = known.get(base) {
        return Ok((Arc::clone(&l.store), object));
    }
    let location = Location::parse(base).map_err(|e| {
        Error::new(
            ErrorKind::Unexpected,
            format!("opening the store of `{path}`"),
        )
        .with_source(e)
    })?;
    let store = Arc::clone(&location.store);
    known.insert(base.to_string(), location);
    Ok((store, object))
}

/// `(base, key)`: `("s3://bucket", "a/b")`, `("/", "dir/file")`.
fn split(path: &str) -> Option<(&str, &str)> {
    if let Some(rest) = path
        .strip_prefix("s3://")
        .or_else(|| path.strip_prefix("s3a://"))
    {
        let (bucket, key) = rest.split_once('/')?;
        let scheme_and_bucket = &path[..path.len() - rest.len() + bucket.len()];
        return (!bucket.is_empty()).then_some((scheme_and_bucket, key));
    }
    let local = path
        .strip_prefix("file://")
        .or_else(|| path.strip_prefix("file:"))
        .unwrap_or(path);
    local.strip_prefix('/').map(|key| ("/", key))
}

/// A store failure as iceberg reports it; a retry may help.
fn failed(what: &str, path: &str, e: object_store::Error) -> Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => ErrorKind::DataInvalid,
        _ => ErrorKind::Unexpected,
    };
    Error::new(kind, format!("{what} {path}"))
        .with_retryable(kind == ErrorKind::Unexpected)
        .with_source(e)
}

/// Builds [`ObjectStorage`] for any catalog (no settings: stores come from the paths).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObjectStorageFactory;

#[typetag::serde]
impl StorageFactory for ObjectStorageFactory {
    fn build(&self, _config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        Ok(Arc::new(ObjectStorage::default()))
    }
}

/// Iceberg's storage over object_store, one store per bucket (or the local file system).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ObjectStorage {
    #[serde(skip)]
    stores: Arc<Mutex<HashMap<String, Location>>>,
}

impl ObjectStorage {
    fn at(&self, path: &str) -> iceberg::Result<(Arc<dyn ObjectStore>, ObjectPath)> {
        resolve(&self.stores, path)
    }

    fn shared(&self) -> Arc<dyn Storage> {
        Arc::new(Self {
            stores: Arc::clone(&self.stores),
        })
    }
}

#[async_trait]
#[typetag::serde]
impl Storage for ObjectStorage {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        let (store, object) = self.at(path)?;
        match store.head(&object).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(failed("looking for", path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        let (store, object) = self.at(path)?;
        let meta = store
            .head(&object)
            .await
            .map_err(|e| failed("reading the size of", path, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        let (store, object) = self.at(path)?;
        let got = store
            .get(&object)
            .await
            .map_err(|e| failed("reading", path, e))?;
        got.bytes().await.map_err(|e| failed("reading", path, e))
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        let (store, object) = self.at(path)?;
        Ok(Box::new(ObjectRead {
            store,
            object,
            path: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        let (store, object) = self.at(path)?;
        store
            .put(&object, PutPayload::from(bs))
            .await
            .map(|_| ())
            .map_err(|e| failed("writing", path, e))
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        let (store, object) = self.at(path)?;
        Ok(Box::new(ObjectWrite {
            writer: BufWriter::new(store, object),
            path: path.to_string(),
        }))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        let (store, object) = self.at(path)?;
        match store.delete(&object).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed("deleting", path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        let (store, prefix) = self.at(path)?;
        let mut listed = store.list(Some(&prefix));
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|e| failed("listing", path, e))?;
            match store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(failed("deleting under", path, e)),
            }
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(self.shared(), path.to_string()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(self.shared(), path.to_string()))
    }
}

/// Ranged reads of one object.
struct ObjectRead {
    store: Arc<dyn ObjectStore>,
    object: ObjectPath,
    path: String,
}

#[async_trait]
impl FileRead for ObjectRead {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        self.store
            .get_range(&self.object, range)
            .await
            .map_err(|e| failed("reading", &self.path, e))
    }
}

/// One object written in parts: one put when small, a multipart upload beyond the buffer; it
/// appears whole at `close`.
struct ObjectWrite {
    writer: BufWriter,
    path: String,
}

#[async_trait]
impl FileWrite for ObjectWrite {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        self.writer.write_all(&bs).await.map_err(|e| {
            Error::new(ErrorKind::Unexpected, format!("writing {}", self.path))
                .with_retryable(true)
                .with_source(e)
        })
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        self.writer.shutdown().await.map_err(|e| {
            Error::new(ErrorKind::Unexpected, format!("completing {}", self.path))
                .with_retryable(true)
                .with_source(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_their_store_and_key() {
        assert_eq!(
            split("s3://lake/wh/t/metadata/1.json"),
            Some(("s3://lake", "wh/t/metadata/1.json"))
        );
        assert_eq!(split("s3a://lake/x"), Some(("s3a://lake", "x")));
        assert_eq!(split("file:///tmp/wh/x"), Some(("/", "tmp/wh/x")));
        assert_eq!(split("file:/tmp/x"), Some(("/", "tmp/x")));
        assert_eq!(split("/tmp/x"), Some(("/", "tmp/x")));
        assert_eq!(split("s3:///x"), None);
        assert_eq!(split("relative/x"), None);
        assert_eq!(split("hdfs://nn/x"), None);
    }

    #[test]
    fn files_round_trip_through_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let storage = ObjectStorage::default();
        let path = format!("file://{}/t/metadata/v1.json", dir.path().display());
        rt.block_on(async {
            assert!(!storage.exists(&path).await.unwrap());
            let out = storage.new_output(&path).unwrap();
            let mut w = out.writer().await.unwrap();
            w.write(Bytes::from_static(b"hello ")).await.unwrap();
            w.write(Bytes::from_static(b"iceberg")).await.unwrap();
            w.close().await.unwrap();
            assert!(storage.exists(&path).await.unwrap());
            assert_eq!(storage.metadata(&path).await.unwrap().size, 13);
            assert_eq!(&storage.read(&path).await.unwrap()[..], b"hello iceberg");
            let r = storage.reader(&path).await.unwrap();
            assert_eq!(&r.read(6..13).await.unwrap()[..], b"iceberg");
            storage
                .delete_prefix(&format!("{}/t", dir.path().display()))
                .await
                .unwrap();
            assert!(!storage.exists(&path).await.unwrap());
            storage.delete(&path).await.unwrap();
        });
    }
}
