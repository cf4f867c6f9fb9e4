//! A small async client for the Kafka wire protocol, built on the `kafka-protocol` codec.
//!
//! Gregor's CLI, benchmarks, durability checker and test suites all talk to brokers through it,
//! so the protocol is exercised the same way everywhere. Real Kafka clients (librdkafka,
//! kafka-python, …) are tested separately; this crate is not a replacement for them.
//!
//! # Layout
//! - [`connection`]: one TCP connection — framing, correlation ids, ApiVersions negotiation,
//!   raw frames for bad-input tests, pipelining, and a split into writer and reader halves.
//! - [`client`]: a cluster client — metadata, leader routing, admin, produce, fetch, list offsets.
//! - [`records`]: RecordBatch v2 encoding (all five codecs) and decoding.
//! - [`idempotent`]: an idempotent producer (InitProducerId, per-partition sequences, retries
//!   that re-send the same batch), as Kafka's `enable.idempotence=true`.
//! - [`partitioner`]: Kafka's murmur2 key partitioner.
//! - [`error`]: [`ClientError`], rendered like Kafka's tools (`NOT_ENOUGH_REPLICAS (19): …`).

pub mod client;
pub mod connection;
pub mod error;
pub mod idempotent;
pub mod partitioner;
pub mod records;

pub use client::{Client, ConfigEntry, Fetched, Produced};
pub use connection::{Connection, RequestWriter, ResponseReader};
pub use error::{ClientError, Result};
pub use idempotent::IdempotentProducer;
pub use kafka_protocol;
