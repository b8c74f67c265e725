//! The parquet sink's object storage: a [`Location`] (kappa-state's, the one place a path or
//! URI becomes a store, with S3 credentials and endpoint from the AWS_* environment) used from
//! the sink's thread through a current-thread tokio runtime of its own. Objects are named
//! relative to the location; a commit moves a staged object to its final name and is
//! idempotent: a final object that exists is a commit done.

use std::future::Future;
use std::sync::Arc;

use kappa_runtime::TaskError;
use kappa_runtime::error::with_causes;
use kappa_state::Location;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use tokio::runtime::Runtime;

/// A store failure while doing `what` (retried by a restart: storage may come back).
pub(super) fn failed(what: &str, e: &dyn std::error::Error) -> TaskError {
    TaskError::Io(format!("{what}: {}", with_causes(e)))
}

/// Where the sink writes, and the runtime its I/O runs on.
pub(super) struct Storage {
    location: Location,
    runtime: Runtime,
}

impl Storage {
    /// The store of `location` (`s3://bucket/prefix`, `file:///dir` or `/dir`, created if
    /// missing).
    pub fn open(location: &str) -> Result<Self, TaskError> {
        let location =
            Location::parse(location).map_err(|e| failed("opening the parquet sink", &e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| failed("starting the parquet sink's I/O", &e))?;
        Ok(Self { location, runtime })
    }

    /// Runs `f` to its end on the sink's runtime.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The full path of `rel`.
    fn path(&self, rel: &ObjectPath) -> ObjectPath {
        ObjectPath::from_iter(self.location.root.parts().chain(rel.parts()))
    }

    /// `rel` as a user would find it (`s3://bucket/prefix/…`, `/dir/…`), for messages.
    pub fn show(&self, rel: &ObjectPath) -> String {
        self.location.show(&self.path(rel))
    }

    /// A writer of object `rel`: one put when it ends small, a multipart upload otherwise;
    /// the object appears whole when the writer is shut down.
    pub fn upload(&self, rel: &ObjectPath) -> BufWriter {
        BufWriter::new(Arc::clone(&self.location.store), self.path(rel))
    }

    /// Whether object `rel` exists.
    pub fn exists(&self, rel: &ObjectPath) -> Result<bool, TaskError> {
        match self.block_on(self.location.store.head(&self.path(rel))) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(failed(&format!("looking for {}", self.show(rel)), &e)),
        }
    }

    /// Deletes object `rel`; one already gone is fine.
    pub fn delete(&self, rel: &ObjectPath) -> Result<(), TaskError> {
        match self.block_on(self.location.store.delete(&self.path(rel))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed(&format!("deleting {}", self.show(rel)), &e)),
        }
    }

    /// Moves `staged` to `committed` unless that happened before (S3 copies, then deletes).
    /// Neither existing is an error: the output is gone.
    pub fn commit(&self, staged: &ObjectPath, committed: &ObjectPath) -> Result<(), TaskError> {
        if self.exists(committed)? {
            return self.delete(staged);
        }
        let moved = self.block_on(
            self.location
                .store
                .rename(&self.path(staged), &self.path(committed)),
        );
        match moved {
            Ok(()) => Ok(()),
            // Another committer (an attempt that is still winding down) was quicker.
            Err(object_store::Error::NotFound { .. }) if self.exists(committed)? => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(TaskError::Io(format!(
                "{} is gone: it cannot be committed as {}",
                self.show(staged),
                self.show(committed)
            ))),
            Err(e) => Err(failed(
                &format!(
                    "committing {} as {}",
                    self.show(staged),
                    self.show(committed)
                ),
                &e,
            )),
        }
    }

    /// The names of the objects directly in directory `dir`.
    pub fn names_in(&self, dir: &ObjectPath) -> Result<Vec<String>, TaskError> {
        let listed = self.block_on(
            self.location
                .store
                .list_with_delimiter(Some(&self.path(dir))),
        );
        let listed = listed.map_err(|e| failed(&format!("listing {}", self.show(dir)), &e))?;
        Ok(listed
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .collect())
    }
}
