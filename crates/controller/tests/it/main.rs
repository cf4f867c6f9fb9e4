//! Integration tests of the controller quorum (one binary: one link).

mod brokers;
mod grpc_cluster;
mod router;
mod sim;
