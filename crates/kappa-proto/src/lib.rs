//! Code generated from `proto/kappa/v1/cluster.proto` (tonic/prost): the messages and the
//! client and server stubs of the jobmanager, taskmanager and data-exchange services.

/// The gRPC metadata key of a standby jobmanager's refusal that carries the leader's gRPC
/// URL, so a taskmanager follows it without reading the error text.
pub const LEADER_METADATA_KEY: &str = "kappa-leader";

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("kappa.v1");
}
