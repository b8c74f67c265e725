//! Code generated from `proto/kappa/v1/cluster.proto` (tonic/prost): the messages and the
//! client and server stubs of the jobmanager, taskmanager and data-exchange services.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("kappa.v1");
}
