//! Integration tests of the controller quorum (one binary: one link).

mod grpc_cluster;
mod router;
mod sim;
