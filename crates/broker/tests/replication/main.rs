//! Replication tests: several in-process brokers with real gRPC replication on 127.0.0.1:0 and
//! a fake controller (see `harness`). Every wait is on observable state with a deadline.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acks;
mod epochs;
mod harness;
mod isr;
mod offsets;
mod service;
mod unclean;
