//! The Gregor controller quorum: cluster metadata replicated with Raft, like Kafka's KRaft.
//!
//! # Layout
//! - [`metadata`]: the [`metadata::Command`] enum with its stable, versioned binary encoding, the
//!   [`metadata::MetadataImage`] and its deterministic `apply`.
//! - [`planner`]: pure decision functions (placement, elections, fencing) returning commands,
//!   each covered by command-vector tests.
//! - [`store`]: the Raft log and state machine over the [`store::KvBackend`] trait (sled in
//!   production, memory in simulations); passes `openraft::testing::Suite`.
//! - [`raft_types`]: the openraft type configuration.
//! - [`network`] (client) and [`grpc`] (server): Raft RPCs over the `gregor-proto` services.
//! - [`cluster_id`]: format-once identity of a data directory; peers of other clusters are
//!   refused.
//! - [`broker_service`]: the `BrokerLifecycle` gRPC service (register, heartbeat, ordered
//!   metadata stream with snapshot catch-up) and the leader's planner loop.
//! - [`client`]: [`client::ControllerClient`], the quorum client brokers and tools use (leader
//!   hints, bounded retries inside a deadline, cached channels).
//! - [`admin_service`]: the `ControllerAdmin` gRPC service (describe the quorum; topic,
//!   partition, config and producer-id writes executed by the leader through the planner).
//! - [`config`]: the layered [`config::ControllerConfig`] (Kafka property names, as for the broker)
//!   and [`run`], the controller role of a process.
//! - [`metrics`]: [`metrics::RaftCollector`], the controller's Prometheus gauges (leader, term,
//!   log and applied index) read from openraft's metrics at scrape time.
//! - [`node`]: a running controller ([`node::ControllerNode`]) owning its tasks.
//! - [`error`]: [`error::ControllerError`] and its one mapping to gRPC statuses.

pub mod admin_service;
pub mod broker_service;
pub mod client;
pub mod cluster_id;
pub mod config;
pub mod error;
pub mod grpc;
pub mod metadata;
pub mod metrics;
pub mod network;
pub mod node;
pub mod planner;
pub mod raft_types;
pub mod store;

pub use config::{ControllerConfig, run};
