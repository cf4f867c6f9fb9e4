//! Controller errors and their single mapping to gRPC statuses.

use crate::metadata::{DecodeError, Rejection};
use crate::planner::PlanError;
use crate::raft_types::NodeId;
use crate::store::StoreError;

/// Everything that can go wrong in the controller outside openraft's own storage/network types.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The data directory, or a peer, belongs to another cluster.
    #[error("cluster id mismatch: expected {expected}, found {found}")]
    ClusterIdMismatch {
        /// Ours.
        expected: String,
        /// Theirs.
        found: String,
    },
    /// The data directory was formatted for another node.
    #[error("node id mismatch: configured {configured}, data directory has {found}")]
    NodeIdMismatch {
        /// From the configuration.
        configured: NodeId,
        /// From `meta.properties`.
        found: NodeId,
    },
    /// A file in the data directory is malformed.
    #[error("malformed {file}: {reason}")]
    MalformedMeta {
        /// Which file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// An invalid configuration value.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// I/O on the data directory or a socket.
    #[error("{context}")]
    Io {
        /// What we were doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Raft storage failed to open.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// openraft failed fatally or could not start.
    #[error("raft: {0}")]
    Raft(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// This controller is not the leader; the caller should retry at `leader`.
    #[error("not the controller leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's id and address, when known.
        leader: Option<(NodeId, String)>,
    },
    /// A command was rejected by apply.
    #[error("rejected: {0}")]
    Rejected(#[from] Rejection),
    /// A request could not be planned.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// Bytes from a peer did not decode.
    #[error("malformed payload: {0}")]
    Payload(String),
    /// A metadata record or image did not decode.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// The server is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

impl ControllerError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
    pub(crate) fn raft(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Raft(Box::new(e))
    }
}

/// Metadata key carrying the leader's address on a `NotLeader` status.
pub const LEADER_HINT_KEY: &str = "x-gregor-leader";

/// Metadata key carrying a stable, machine-readable kind of a refusal (see [`error_kind`]), so
/// clients (brokers mapping to Kafka error codes) need not parse messages.
pub const ERROR_KIND_KEY: &str = "x-gregor-error";

/// The stable kind name of an error, sent in [`ERROR_KIND_KEY`]. `None` for errors whose gRPC
/// code says everything (unavailable, internal).
pub fn error_kind(e: &ControllerError) -> Option<&'static str> {
    Some(match e {
        ControllerError::ClusterIdMismatch { .. } => "cluster-id-mismatch",
        ControllerError::Rejected(r) => match r {
            Rejection::TopicExists(_) | Rejection::TopicIdInUse(_) => "topic-exists",
            Rejection::UnknownBroker(_) => "unknown-broker",
            Rejection::UnknownTopic(_) | Rejection::UnknownPartition { .. } => "unknown-topic",
            Rejection::StaleBrokerEpoch { .. } => "stale-broker-epoch",
            Rejection::StalePartitionEpoch { .. } => "stale-partition-epoch",
            Rejection::FencedLeaderEpoch { .. } => "fenced-leader-epoch",
            Rejection::NotLeader(_) => "not-leader",
            Rejection::IneligibleReplica(_) => "ineligible-replica",
            Rejection::Invalid(_) => "invalid-request",
        },
        ControllerError::Plan(p) => match p {
            PlanError::TopicExists(_) => "topic-exists",
            PlanError::UnknownTopic(_) => "unknown-topic",
            PlanError::UnknownBroker(_) => "unknown-broker",
            PlanError::StaleBrokerEpoch { .. } => "stale-broker-epoch",
            PlanError::InvalidReplicationFactor { .. } => "invalid-replication-factor",
            PlanError::InvalidPartitions(_) => "invalid-partitions",
            PlanError::InvalidTopicName(_) => "invalid-topic",
            PlanError::InvalidRequest(_) => "invalid-request",
        },
        ControllerError::Payload(_) | ControllerError::Decode(_) => "invalid-request",
        _ => return None,
    })
}

/// The one place where controller errors become gRPC statuses.
pub fn to_status(e: &ControllerError) -> tonic::Status {
    use tonic::Code;
    let code = match e {
        ControllerError::ClusterIdMismatch { .. } | ControllerError::NodeIdMismatch { .. } => {
            Code::FailedPrecondition
        }
        ControllerError::NotLeader { .. } | ControllerError::ShuttingDown => Code::Unavailable,
        ControllerError::Rejected(r) => match r {
            Rejection::TopicExists(_) | Rejection::TopicIdInUse(_) => Code::AlreadyExists,
            Rejection::UnknownBroker(_)
            | Rejection::UnknownTopic(_)
            | Rejection::UnknownPartition { .. } => Code::NotFound,
            Rejection::StaleBrokerEpoch { .. }
            | Rejection::StalePartitionEpoch { .. }
            | Rejection::FencedLeaderEpoch { .. }
            | Rejection::NotLeader(_)
            | Rejection::IneligibleReplica(_) => Code::FailedPrecondition,
            Rejection::Invalid(_) => Code::InvalidArgument,
        },
        ControllerError::Plan(p) => match p {
            PlanError::TopicExists(_) => Code::AlreadyExists,
            PlanError::UnknownTopic(_) | PlanError::UnknownBroker(_) => Code::NotFound,
            PlanError::StaleBrokerEpoch { .. } => Code::FailedPrecondition,
            PlanError::InvalidReplicationFactor { .. }
            | PlanError::InvalidPartitions(_)
            | PlanError::InvalidTopicName(_)
            | PlanError::InvalidRequest(_) => Code::InvalidArgument,
        },
        ControllerError::Payload(_) | ControllerError::Decode(_) => Code::InvalidArgument,
        ControllerError::InvalidConfig(_)
        | ControllerError::MalformedMeta { .. }
        | ControllerError::Io { .. }
        | ControllerError::Store(_)
        | ControllerError::Raft(_) => Code::Internal,
    };
    let mut status = tonic::Status::new(code, e.to_string());
    if let Some(kind) = error_kind(e) {
        status.metadata_mut().insert(
            ERROR_KIND_KEY,
            tonic::metadata::MetadataValue::from_static(kind),
        );
    }
    if let ControllerError::NotLeader {
        leader: Some((_, addr)),
    } = e
        && let Ok(v) = addr.parse()
    {
        status.metadata_mut().insert(LEADER_HINT_KEY, v);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_mapped_by_kind() {
        let cases: Vec<(ControllerError, tonic::Code)> = vec![
            (
                ControllerError::ClusterIdMismatch {
                    expected: "a".into(),
                    found: "b".into(),
                },
                tonic::Code::FailedPrecondition,
            ),
            (
                Rejection::TopicExists("t".into()).into(),
                tonic::Code::AlreadyExists,
            ),
            (
                Rejection::UnknownTopic("t".into()).into(),
                tonic::Code::NotFound,
            ),
            (
                Rejection::StalePartitionEpoch { current: 2, got: 1 }.into(),
                tonic::Code::FailedPrecondition,
            ),
            (
                PlanError::InvalidPartitions(0).into(),
                tonic::Code::InvalidArgument,
            ),
            (
                ControllerError::Payload("x".into()),
                tonic::Code::InvalidArgument,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(to_status(&e).code(), code, "{e}");
        }
    }

    #[test]
    fn refusals_carry_a_stable_kind() {
        let kind = |e: ControllerError| {
            to_status(&e)
                .metadata()
                .get(ERROR_KIND_KEY)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(
            kind(
                PlanError::InvalidReplicationFactor {
                    replication_factor: 3,
                    active: 1
                }
                .into()
            )
            .as_deref(),
            Some("invalid-replication-factor")
        );
        assert_eq!(
            kind(PlanError::InvalidPartitions(0).into()).as_deref(),
            Some("invalid-partitions")
        );
        assert_eq!(
            kind(Rejection::TopicExists("t".into()).into()).as_deref(),
            Some("topic-exists")
        );
        assert_eq!(
            kind(
                Rejection::StaleBrokerEpoch {
                    broker_id: 1,
                    current: 2,
                    got: 1
                }
                .into()
            )
            .as_deref(),
            Some("stale-broker-epoch")
        );
        assert_eq!(kind(ControllerError::NotLeader { leader: None }), None);
    }

    #[test]
    fn not_leader_carries_the_leader_address() {
        let s = to_status(&ControllerError::NotLeader {
            leader: Some((2, "127.0.0.1:9093".into())),
        });
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(
            s.metadata()
                .get(LEADER_HINT_KEY)
                .and_then(|v| v.to_str().ok()),
            Some("127.0.0.1:9093")
        );
    }
}
