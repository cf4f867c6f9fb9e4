//! The Gregor controller quorum: cluster metadata replicated with Raft, like Kafka's KRaft.
//!
//! # Layout
//! - [`metadata`]: the [`metadata::Command`] enum with its stable, versioned binary encoding, the
//!   [`metadata::MetadataImage`] and its deterministic `apply`.
//! - [`planner`]: pure decision functions (placement, elections, fencing) returning commands,
//!   each covered by command-vector tests.

pub mod metadata;
pub mod planner;
