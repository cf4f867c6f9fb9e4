//! Integration tests of the controller quorum (one binary: one link).

mod admin;
mod brokers;
mod grpc_cluster;
mod router;
mod sim;
