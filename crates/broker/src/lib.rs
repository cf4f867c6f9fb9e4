//! `gregor-broker`: a single-node broker that speaks the Kafka wire protocol, so unmodified Kafka
//! clients (librdkafka/kcat, confluent-kafka, kafka-python, ...) can produce, consume and manage
//! topics.
//!
//! # Layout
//!
//! - [`server`]: the TCP listener. [`server::run`] takes an already bound listener, the shared
//!   [`Broker`] and a shutdown token (mini-redis style); it frames requests (size checked before
//!   allocating), answers each connection's requests in order and drains on shutdown.
//!   [`server::run_listeners`] serves several named listeners (Kafka's `listeners` list); each
//!   request carries its listener's name in [`handlers::RequestContext`], and Metadata,
//!   FindCoordinator and DescribeCluster answer with that listener's advertised endpoints.
//! - [`handlers`]: one module per Kafka API, each declaring the versions it serves. The registry
//!   in [`handlers`] generates the ApiVersions list, body decoding and dispatch from one table.
//!   [`handlers::decode_frame`] is the whole untrusted-input decode path (fuzzed).
//! - [`broker`]: the state shared by all connections: topics (ids, partition counts, config
//!   overrides), one storage log per partition, and a high-watermark watch per partition that
//!   wakes long-polling fetches.
//! - [`cluster`]: the seam between the data plane and the metadata plane: [`cluster::ClusterLink`]
//!   (node id, broker epoch, other brokers' replication endpoints, AlterPartition) and the
//!   per-partition [`cluster::PartitionAssignment`] the metadata path pushes in.
//! - [`group`]: consumer groups: the classic protocol as a pure state machine per group, the
//!   coordinator that drives it (long-polled JoinGroup/SyncGroup, per-group timer tasks) and
//!   the `__consumer_offsets` records it persists and replays at startup.
//! - [`metadata_store`]: the persistence seam for cluster metadata (a checksummed file written
//!   atomically today; a Raft controller later).
//! - [`producer_ids`]: the producer-id allocation seam for InitProducerId (blocks of 1000 in a
//!   checksummed file today; the controller's `AllocateProducerIds` later).
//! - [`topic_config`]: the supported per-topic configs and their validation.
//! - [`config`]: [`BrokerConfig`] with Kafka's property names and defaults, layered
//!   (defaults < TOML < `GREGOR_*` env < CLI overrides) and validated once.
//! - [`error`]: [`BrokerError`] and [`error::error_code`], the only place that chooses Kafka
//!   error codes.
//!
//! Log storage itself (segments, indexes, retention) lives in `gregor-storage`.

pub mod broker;
pub mod cluster;
pub mod config;
pub mod error;
pub mod group;
pub mod handlers;
pub mod metadata_store;
pub mod producer_ids;
pub mod server;
pub mod topic_config;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use error::{BrokerError, Result};
pub use server::run;
