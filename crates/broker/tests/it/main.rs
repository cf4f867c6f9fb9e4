//! Integration tests of the broker over real sockets: every API at every advertised version,
//! the bad-input matrix (reliability.md §6.4), the request-decoder fuzz fallback, and real
//! Kafka clients (kcat, confluent-kafka, kafka-python) run as child processes.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod bad_input;
mod cluster;
mod common;
mod decode_fuzz;
mod fetch;
mod groups;
mod idempotence;
mod kcat;
mod lifecycle;
mod listeners;
mod python;
