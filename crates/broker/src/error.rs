//! The broker's error type and the one place where errors become Kafka error codes.

use std::io;

use kafka_protocol::ResponseError;

use crate::config::ConfigError;
use crate::group::GroupError;
use crate::metadata_store::MetadataStoreError;
use crate::producer_ids::ProducerIdError;

/// Everything that can go wrong while the broker serves a request or manages its state.
///
/// Request-level variants (one topic or partition failed) become a Kafka error code through
/// [`error_code`]; nothing else in the crate picks error codes.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The topic or partition does not exist on this broker.
    #[error("unknown topic or partition {topic}-{partition}")]
    UnknownTopicOrPartition {
        /// Topic name.
        topic: String,
        /// Partition index (-1 when the whole topic is unknown).
        partition: i32,
    },
    /// No topic has this id.
    #[error("unknown topic id {0}")]
    UnknownTopicId(uuid::Uuid),
    /// The topic name breaks Kafka's naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// CreateTopics for a name that is taken.
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    /// A partition count that is below 1 or not above the current count.
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    /// A single node can only hold replication factor 1.
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    /// A manual replica assignment that does not name exactly this node.
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    /// A topic config key or value the broker does not accept.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// Well-formed on the wire but not acceptable (duplicate names, bad resource types, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A produce payload that is not exactly one record batch (checked before storage sees it).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// Produce `acks` outside {-1, 0, 1}.
    #[error("invalid required acks {0}")]
    InvalidRequiredAcks(i16),
    /// acks=all while the committed ISR is smaller than `min.insync.replicas`; checked before
    /// the append, so nothing was written (a definite failure).
    #[error("not enough replicas: ISR size {isr} < min.insync.replicas {min_isr}")]
    NotEnoughReplicas {
        /// Current ISR size.
        isr: i32,
        /// Required minimum.
        min_isr: i32,
    },
    /// acks=all: the batch was appended, but the committed ISR shrank below
    /// `min.insync.replicas` while the request waited. Indeterminate: the batch is in the log.
    #[error(
        "not enough replicas after append: ISR size {isr} < min.insync.replicas {min_isr}; the \
         batch is in the log and may still be committed"
    )]
    NotEnoughReplicasAfterAppend {
        /// Committed ISR size when the wait ended.
        isr: i32,
        /// Required minimum.
        min_isr: i32,
    },
    /// This broker is not the partition's leader (or, for a replica fetch, the caller is not one
    /// of its replicas). After an append (acks=all waiting when leadership moved) the outcome is
    /// indeterminate: the batch is in the old leader's log and may or may not survive.
    #[error("not the leader or follower of {topic}-{partition}")]
    NotLeaderOrFollower {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// acks=all: the high watermark did not reach the batch within the request's `timeout_ms`.
    /// Indeterminate: the batch is in the log.
    #[error("request timed out after {0} ms waiting for replication")]
    RequestTimedOut(i64),
    /// ListOffsets on a new leader whose high watermark is still below the start of its epoch
    /// (Kafka's rule): the answer could go backwards, so the client retries.
    #[error(
        "offset not available: high watermark {high_watermark} is below the leader epoch start {epoch_start}"
    )]
    OffsetNotAvailable {
        /// The leader's high watermark.
        high_watermark: i64,
        /// Where the current leader epoch starts.
        epoch_start: i64,
    },
    /// A CreateTime batch whose header timestamps fall outside the topic's
    /// `message.timestamp.before.max.ms` / `message.timestamp.after.max.ms` window.
    #[error(
        "timestamp {timestamp} of the record batch is out of range; the timestamp should be \
         within [{min}, {max}]"
    )]
    InvalidTimestamp {
        /// The offending header timestamp (base or max).
        timestamp: i64,
        /// Earliest accepted timestamp (`now - before.max.ms`).
        min: i64,
        /// Latest accepted timestamp (`now + after.max.ms`).
        max: i64,
    },
    /// A fetch or list-offsets for an offset outside [log start, log end].
    #[error("offset {offset} out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: i64,
        /// First offset in the log.
        log_start: i64,
        /// Next offset to be written.
        log_end: i64,
    },
    /// The caller's leader epoch is newer than the partition's (this broker has not seen the
    /// change yet).
    #[error("unknown leader epoch {0}")]
    UnknownLeaderEpoch(i32),
    /// The client's leader epoch is older than ours.
    #[error("fenced leader epoch {0}")]
    FencedLeaderEpoch(i32),
    /// An incremental fetch for a session the broker never created (it creates none).
    #[error("fetch session {0} not found")]
    FetchSessionIdNotFound(i32),
    /// DescribeCluster asked for an endpoint type other than brokers.
    #[error("unsupported endpoint type {0}")]
    UnsupportedEndpointType(i8),
    /// A consumer-group protocol error (membership, generation, coordinator).
    #[error("group {group}: {source}")]
    Group {
        /// The group id.
        group: String,
        /// What went wrong.
        #[source]
        source: GroupError,
    },
    /// A transactional request (InitProducerId with a `transactional.id`): this broker has no
    /// transaction coordinator, which Kafka clients see as COORDINATOR_NOT_AVAILABLE, the same
    /// answer FindCoordinator gives for transaction keys.
    #[error("no transaction coordinator: {0}")]
    TransactionsUnsupported(String),
    /// No producer id could be allocated.
    #[error("producer id allocation failed")]
    ProducerIds(#[from] ProducerIdError),
    /// The topic metadata file could not be read or written.
    #[error("topic metadata store failed")]
    MetadataStore(#[from] MetadataStoreError),
    /// The partition log failed.
    #[error("storage error")]
    Storage(#[from] gregor_storage::StorageError),
    /// Configuration rejected at startup.
    #[error("invalid broker configuration")]
    Config(#[from] ConfigError),
    /// Socket or filesystem error outside the storage engine.
    #[error("i/o error: {context}")]
    Io {
        /// What the broker was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A replication call from another cluster.
    #[error("cluster id mismatch: this broker is in {ours:?}, the caller in {theirs:?}")]
    ClusterIdMismatch {
        /// This broker's cluster id.
        ours: String,
        /// The caller's.
        theirs: String,
    },
    /// The replication transport (gRPC server or client) failed.
    #[error("replication transport: {0}")]
    Replication(String),
    /// A blocking task panicked or was cancelled.
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The controller quorum did not answer in time, or refused for a reason with no Kafka
    /// counterpart.
    #[error("controller request failed")]
    Controller(#[source] gregor_controller::client::ClientError),
    /// This broker's registration is not the current one (it must register again).
    #[error("stale broker epoch: {0}")]
    StaleBrokerEpoch(String),
    /// The controller refused an ISR change (AlterPartition, KIP-497); nothing changed.
    #[error("ISR change refused ({reason:?}): {message}")]
    IsrChangeRefused {
        /// Why.
        reason: IsrRefusal,
        /// The controller's message.
        message: String,
    },
    /// A partition without a leader (offline, or between leaders).
    #[error("partition {topic}-{partition} has no leader")]
    LeaderNotAvailable {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// The broker's metadata image did not reach an offset in time (after a controller write,
    /// or at startup).
    #[error("metadata did not reach offset {offset} in time")]
    MetadataLag {
        /// The offset waited for.
        offset: u64,
    },
}

/// Why the controller refused an AlterPartition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsrRefusal {
    /// The leader epoch in the request is not the partition's.
    FencedLeaderEpoch,
    /// The partition epoch in the request is not the partition's (refresh and retry).
    StalePartitionEpoch,
    /// The requester is not the partition leader.
    NotLeader,
    /// A replica to add is fenced or unregistered.
    IneligibleReplica,
}

/// Result alias for the broker.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

/// Maps a broker error to the Kafka error code a client sees. The only place that does so.
pub fn error_code(err: &BrokerError) -> ResponseError {
    use gregor_storage::StorageError as S;
    match err {
        BrokerError::UnknownTopicOrPartition { .. } => ResponseError::UnknownTopicOrPartition,
        BrokerError::UnknownTopicId(_) => ResponseError::UnknownTopicId,
        BrokerError::InvalidTopic { .. } => ResponseError::InvalidTopicException,
        BrokerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        BrokerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        BrokerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        BrokerError::InvalidConfig(_) => ResponseError::InvalidConfig,
        BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        BrokerError::InvalidRecord(_) => ResponseError::InvalidRecord,
        BrokerError::InvalidRequiredAcks(_) => ResponseError::InvalidRequiredAcks,
        BrokerError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        BrokerError::NotEnoughReplicasAfterAppend { .. } => {
            ResponseError::NotEnoughReplicasAfterAppend
        }
        BrokerError::NotLeaderOrFollower { .. } => ResponseError::NotLeaderOrFollower,
        BrokerError::RequestTimedOut(_) => ResponseError::RequestTimedOut,
        BrokerError::OffsetNotAvailable { .. } => ResponseError::OffsetNotAvailable,
        BrokerError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        BrokerError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        BrokerError::UnknownLeaderEpoch(_) => ResponseError::UnknownLeaderEpoch,
        BrokerError::FencedLeaderEpoch(_) => ResponseError::FencedLeaderEpoch,
        BrokerError::FetchSessionIdNotFound(_) => ResponseError::FetchSessionIdNotFound,
        BrokerError::UnsupportedEndpointType(_) => ResponseError::UnsupportedEndpointType,
        BrokerError::TransactionsUnsupported(_) => ResponseError::CoordinatorNotAvailable,
        BrokerError::Group { source, .. } => group_error_code(source),
        BrokerError::Storage(s) => match s {
            S::CorruptMessage { .. } => ResponseError::CorruptMessage,
            S::InvalidRecord { .. } => ResponseError::InvalidRecord,
            S::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
            S::RecordListTooLarge { .. } => ResponseError::RecordListTooLarge,
            S::UnsupportedCompression { .. } => ResponseError::UnsupportedCompressionType,
            S::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            S::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            S::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            S::Io { .. }
            | S::CorruptCheckpoint { .. }
            | S::CorruptSegment { .. }
            | S::LogOffline { .. }
            | S::Closed { .. } => ResponseError::KafkaStorageError,
            // `StorageError` is non-exhaustive; anything new is a server-side failure until
            // it is mapped here.
            _ => ResponseError::UnknownServerError,
        },
        BrokerError::StaleBrokerEpoch(_) => ResponseError::StaleBrokerEpoch,
        BrokerError::LeaderNotAvailable { .. } => ResponseError::LeaderNotAvailable,
        BrokerError::IsrChangeRefused { reason, .. } => match reason {
            IsrRefusal::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
            IsrRefusal::StalePartitionEpoch => ResponseError::InvalidUpdateVersion,
            IsrRefusal::NotLeader => ResponseError::NotLeaderOrFollower,
            IsrRefusal::IneligibleReplica => ResponseError::IneligibleReplica,
        },
        // Kafka answers an admin request whose controller round trip timed out with
        // REQUEST_TIMED_OUT (retriable).
        BrokerError::Controller(gregor_controller::client::ClientError::Unavailable { .. })
        | BrokerError::MetadataLag { .. } => ResponseError::RequestTimedOut,
        BrokerError::ClusterIdMismatch { .. } => ResponseError::InconsistentClusterId,
        BrokerError::Controller(_)
        | BrokerError::MetadataStore(_)
        | BrokerError::Replication(_)
        | BrokerError::ProducerIds(_)
        | BrokerError::Config(_)
        | BrokerError::Io { .. }
        | BrokerError::Task(_) => ResponseError::UnknownServerError,
    }
}

/// Maps a broker error that fails a whole gRPC call (`Replication` service) to its status. The
/// only place that chooses gRPC statuses in this crate; per-partition failures travel as Kafka
/// error codes from [`error_code`] instead.
pub fn to_status(err: &BrokerError) -> tonic::Status {
    use tonic::Code;
    let code = match err {
        BrokerError::ClusterIdMismatch { .. } => Code::FailedPrecondition,
        BrokerError::InvalidRequest(_) => Code::InvalidArgument,
        BrokerError::UnknownTopicOrPartition { .. } => Code::NotFound,
        BrokerError::NotLeaderOrFollower { .. } => Code::FailedPrecondition,
        _ => Code::Internal,
    };
    tonic::Status::new(code, message(err))
}

/// The Kafka code of a group protocol error.
pub fn group_error_code(err: &GroupError) -> ResponseError {
    match err {
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
    }
}

/// `error_code` for a group error as a plain `i16` (0 for `None`).
pub fn group_code(err: Option<&GroupError>) -> i16 {
    err.map_or(0, |e| group_error_code(e).code())
}

/// The numeric code, for response fields that are plain `i16`.
pub fn code(err: &BrokerError) -> i16 {
    error_code(err).code()
}

/// The message shown to clients in `error_message` fields: the error and its sources.
pub fn message(err: &BrokerError) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
