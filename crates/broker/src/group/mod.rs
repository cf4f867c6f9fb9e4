//! Consumer groups (the classic protocol) and committed offsets.
//!
//! - [`state`]: the pure per-group state machine (events + time in, replies and "persist" out).
//! - [`coordinator`]: [`GroupCoordinator`], the driver: the group registry, waiting requests
//!   (JoinGroup/SyncGroup long polls on oneshot channels), one timer task per group (deadlines
//!   from the state machine, owned by a `JoinSet` and stopped by a `CancellationToken`), and
//!   persistence to `__consumer_offsets`.
//! - [`records`]: Kafka's `__consumer_offsets` key/value formats and the group → partition hash.
//!
//! The coordinator of a group is the leader of its `__consumer_offsets` partition; on one node
//! that is always this node. A broker that becomes leader of an offsets partition rebuilds that
//! partition's groups and offsets from its log (last value per key wins, null values delete), as
//! a new Kafka coordinator does, and drops them when it stops leading.

pub mod coordinator;
pub mod records;
pub mod state;

pub use coordinator::{CoordinatorConfig, GroupCoordinator};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Group protocol failures. [`crate::error::error_code`] maps each to its Kafka code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The group is being deleted, or `__consumer_offsets` is unavailable.
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    /// This node leads the group's `__consumer_offsets` partition but is still loading it.
    #[error("the coordinator is loading the group's offsets partition")]
    CoordinatorLoadInProgress,
    /// This node does not coordinate the group (on one node: only while shutting down).
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    /// Empty group id.
    #[error("invalid group id")]
    InvalidGroupId,
    /// Session timeout outside `group.{min,max}.session.timeout.ms`.
    #[error("session timeout outside the broker's allowed range")]
    InvalidSessionTimeout,
    /// The member is not (or no longer) in the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// KIP-394: rejoin with the member id in this response.
    #[error("the group member needs a member id; rejoin with the one given")]
    MemberIdRequired,
    /// The member's generation is not the group's.
    #[error("illegal generation")]
    IllegalGeneration,
    /// A rebalance is in progress; rejoin.
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// Protocol type or protocols incompatible with the group's.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// Another member with the same `group.instance.id` replaced this one.
    #[error("fenced by a newer member with the same group.instance.id")]
    FencedInstanceId,
    /// No such group.
    #[error("group id not found")]
    GroupIdNotFound,
    /// The group still has members.
    #[error("the group is not empty")]
    NonEmptyGroup,
    /// OffsetDelete on a topic the group still consumes.
    #[error("the group is subscribed to the topic")]
    GroupSubscribedToTopic,
    /// Commit metadata longer than `offset.metadata.max.bytes`.
    #[error("offset metadata is too large")]
    OffsetMetadataTooLarge,
}

/// Makes sure `__consumer_offsets` exists, creating it off the async runtime the first time
/// (it fsyncs topic metadata). Failure is COORDINATOR_NOT_AVAILABLE, as in Kafka while the
/// offsets topic cannot be created.
pub async fn ready(broker: &std::sync::Arc<crate::Broker>) -> Result<(), GroupError> {
    if broker.groups().is_ready() {
        return Ok(());
    }
    match broker
        .blocking(|b| b.groups().ensure_offsets_topic(b).map(|_| ()))
        .await
    {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %crate::error::message(&e), "cannot create {OFFSETS_TOPIC}");
            Err(GroupError::CoordinatorNotAvailable)
        }
    }
}
