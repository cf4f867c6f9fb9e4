//! `gregor-broker`: a broker that speaks the Kafka wire protocol, so unmodified Kafka
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
//! - [`broker`]: the state shared by all connections: the metadata image (the controller's, or
//!   a single node's synthesized one), topics (ids, partition counts, config overrides), one
//!   storage log per local partition with its replica state, and per partition a
//!   high-watermark watch (wakes fetch long-polls and acks=all waits) and a log-end watch
//!   (wakes replica fetches).
//! - [`replica`]: the replication data plane: each partition's replica state machine (leader /
//!   follower / none, derived from its assignment), the leader's HW and ISR bookkeeping
//!   ([`replica::leader`], pure), acks=all waits, the follower fetchers ([`replica::fetcher`],
//!   one long-poll per leader broker) and the gRPC `Replication` service
//!   ([`replica::service`]). [`replica::serve`] runs the service, the fetchers and ISR
//!   maintenance until shutdown (see `docs/replication.md`).
//! - [`cluster`]: the seam between the data plane and the metadata plane: [`cluster::ClusterLink`]
//!   (node id, broker epoch, other brokers' replication endpoints, AlterPartition) and the
//!   per-partition [`cluster::PartitionAssignment`] the metadata path pushes in.
//! - [`group`]: consumer groups: the classic protocol as a pure state machine per group, the
//!   coordinator that drives it (long-polled JoinGroup/SyncGroup, per-group timer tasks) and
//!   the `__consumer_offsets` records it persists and replays at startup.
//! - [`quorum`]: the broker's link to the controller quorum: registration, heartbeats, the
//!   metadata stream applied to a local image and reconciled into logs and partition
//!   assignments, admin forwarding, controller-allocated producer ids. What `gregor server` runs.
//! - [`metadata_store`]: the single-node seam without a controller ([`Broker::open`], used by
//!   this crate's tests, the interop harness and the benchmarks): a checksummed metadata file.
//! - [`producer_ids`]: the producer-id allocation seam for InitProducerId (blocks of 1000 from
//!   the controller in a cluster, [`quorum::ControllerProducerIds`]; a checksummed file alone).
//! - [`topic_config`]: the supported per-topic configs and their validation.
//! - [`config`]: [`BrokerConfig`] with Kafka's property names and defaults, layered
//!   (defaults < TOML < `GREGOR_*` env < CLI overrides) and validated once.
//! - [`admin`]: the broker's side of the admin HTTP port: readiness, per-API request metrics
//!   (recorded at the single dispatch point in [`server`]) and the scrape-time per-partition
//!   gauges, for the Prometheus `/metrics` that `gregor server` serves on `admin.listener`.
//! - [`error`]: [`BrokerError`], [`error::error_code`] (the only place that chooses Kafka error
//!   codes) and [`error::to_status`] (the only place that chooses gRPC statuses).
//!
//! Log storage itself (segments, indexes, retention) lives in `gregor-storage`.

pub mod admin;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod error;
pub mod group;
pub mod handlers;
pub mod metadata_store;
pub mod producer_ids;
pub mod quorum;
pub mod replica;
pub mod server;
pub mod topic_config;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use error::{BrokerError, Result};
pub use server::run;
