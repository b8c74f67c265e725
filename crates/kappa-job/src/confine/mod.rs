//! Confined jobs: what a job may touch on the process that runs or checks it — the file paths
//! of its file connectors and savepoints ([`AllowedPaths`], the `--allow-path` roots), the
//! PostgreSQL hosts of its sinks ([`AllowedHosts`]), and the names read back from storage or
//! received from peers that become parts of paths ([`names`]). The jobmanager checks a job at
//! submission; every taskmanager checks again where it opens a connector or restores.

mod hosts;
pub mod names;
mod paths;
#[cfg(test)]
mod tests;

pub use hosts::{AllowedHosts, HostKind, HostRefused};
pub use names::BadName;
pub use paths::{AllowedPaths, PathRefused, RootError, resolved};
pub(crate) use paths::{Place, parse as parse_location};

/// Why a job may not do something here; no restart changes that.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Path(#[from] PathRefused),
    #[error(transparent)]
    Host(#[from] HostRefused),
    #[error(transparent)]
    Name(#[from] BadName),
}
