//! Cluster metadata: the command enum, its versioned encoding, the image and deterministic apply.

mod codec;
mod command;
mod image;
#[cfg(test)]
mod image_tests;

pub use codec::DecodeError;
pub use command::{Command, ConfigResource};
pub use image::{
    BrokerRegistration, CommandResult, MIN_INSYNC_REPLICAS, MetadataImage, PartitionState,
    Rejection, TopicImage, UNCLEAN_LEADER_ELECTION,
};

/// A broker id (`node.id`), as in Kafka.
pub type BrokerId = i32;

/// A listener a broker advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Listener name, e.g. `PLAINTEXT`.
    pub name: String,
    /// Host clients connect to.
    pub host: String,
    /// Port.
    pub port: u16,
}
