//! Kappa's keyed state: a RocksDB instance per stateful subtask with key-group-prefixed keys,
//! and its snapshots in object storage (local or S3), uploaded incrementally.

mod backend;
mod error;
mod local_recovery;
mod location;
mod snapshot;
mod wire;

pub use backend::{LocalFile, RocksState};
pub use error::StateError;
pub use local_recovery::LocalRecovery;
pub use location::Location;
pub use snapshot::{StateHandle, StoredFile, Uploaded, Uploader, download};
pub use wire::{
    figures_from_proto, figures_to_proto, file_from_proto, file_to_proto, nexmark_from_proto,
    nexmark_to_proto, positions_to_proto,
};
