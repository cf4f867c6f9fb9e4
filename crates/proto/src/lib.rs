//! gRPC messages and services of the Gregor cluster, generated from `proto/controller.proto` and
//! `proto/replication.proto`.
//!
//! # Layout
//! - [`controller::v1`]: the `Raft` service (controller to controller: openraft messages in a
//!   `bytes` payload) and the `BrokerLifecycle` service (broker registration, heartbeats and the
//!   ordered metadata stream) and the `ControllerAdmin` service (describe the quorum; topic,
//!   partition, config and producer-id writes executed by the leader controller).
//! - [`replication::v1`]: the `Replication` service (follower to leader: long-poll pull of
//!   record batches with epoch fencing and divergence detection; leader progress for tools).
//!
//! This is the only crate with a build script; `protoc` is vendored so building needs no system
//! package. Everything else depends on the generated types through this crate.

/// `gregor.controller.v1`.
pub mod controller {
    /// Generated code for the `gregor.controller.v1` package.
    #[allow(missing_docs, clippy::all, missing_debug_implementations)]
    pub mod v1 {
        tonic::include_proto!("gregor.controller.v1");
    }
}

/// `gregor.replication.v1`.
pub mod replication {
    /// Generated code for the `gregor.replication.v1` package.
    #[allow(missing_docs, clippy::all, missing_debug_implementations)]
    pub mod v1 {
        tonic::include_proto!("gregor.replication.v1");
    }
}
