//! Errors of the state backend and of snapshot storage, each naming what it was doing and on
//! which file or object.

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("RocksDB at {path}: {message}")]
    RocksDb { path: String, message: String },
    #[error("object storage {location}: {message}")]
    Store { location: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("invalid state location `{0}`: {1}")]
    Location(String, String),
    /// A snapshot names a file that would not stay in the directory it is restored into.
    #[error("the snapshot is refused: {0}")]
    Name(#[from] kappa_job::confine::BadName),
}

impl StateError {
    pub(crate) fn rocks(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self::RocksDb {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    pub(crate) fn store(location: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        Self::Store {
            location: location.to_string(),
            message: e.to_string(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Self::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}
