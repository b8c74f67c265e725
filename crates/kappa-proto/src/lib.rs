//! Code generated from `proto/kappa/v1/cluster.proto` (tonic/prost): the messages and the
//! client and server stubs of the jobmanager, taskmanager and data-exchange services, and the
//! mutual TLS they run over ([`tls`]); and from `secrets.proto`, the sealed literal secrets of
//! a job's record.

/// The gRPC metadata key of a standby jobmanager's refusal that carries the leader's gRPC
/// URL, so a taskmanager follows it without reading the error text.
pub const LEADER_METADATA_KEY: &str = "kappa-leader";

/// The largest message any Kappa gRPC service or client sends or accepts (tonic's default
/// decoding limit is 4 MiB). Record batches are split into frames of at most
/// [`FRAME_TARGET_BYTES`], so only a single row larger than this limit, or a deployment of a
/// job file near it, is refused, with an error that says so.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The size a record frame of the data exchange aims at: larger batches are sent as several.
pub const FRAME_TARGET_BYTES: usize = 1 << 20;

pub mod tls;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("kappa.v1");
}
