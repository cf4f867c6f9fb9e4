//! A client of the controller quorum for brokers and tools: `BrokerLifecycle` and
//! `ControllerAdmin` calls with leader discovery and bounded retries.
//!
//! * It knows the voters' addresses (`controller.quorum.voters`) and the cluster id (sent on
//!   every request; empty for tools that do not know it).
//! * Leader-only calls go to the last controller that answered one; an `UNAVAILABLE` status with
//!   the leader's address in `x-gregor-leader` ([`crate::broker_service::leader_hint`]) is
//!   followed at once, any other transport failure moves on to the next voter after a backoff
//!   (50 ms doubling to 1 s).
//! * Every call runs inside a caller-given deadline; when it passes, the last failure is
//!   returned. A refusal (any other gRPC code) is returned at once, never retried.
//! * Channels are created once per address (tonic's lazy channels reconnect by themselves) and
//!   shared by all calls.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use gregor_proto::controller::v1 as pb;
use gregor_proto::controller::v1::broker_lifecycle_client::BrokerLifecycleClient;
use gregor_proto::controller::v1::controller_admin_client::ControllerAdminClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::broker_service::leader_hint;
use crate::error::ERROR_KIND_KEY;

/// First pause between attempts that did not follow a leader hint.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest pause between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Time allowed to open a TCP connection to one controller.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A controller answered with a refusal (not a retriable unavailability).
    #[error("controller refused ({code:?}{}): {message}", kind.as_deref().map(|k| format!(", {k}")).unwrap_or_default())]
    Refused {
        /// The gRPC status code.
        code: Code,
        /// The stable kind from `x-gregor-error` ([`crate::error::error_kind`]), when sent.
        kind: Option<String>,
        /// The controller's message.
        message: String,
    },
    /// No controller gave an answer before the deadline.
    #[error("no controller answered within {waited:?}: {last}")]
    Unavailable {
        /// How long the call tried.
        waited: Duration,
        /// The last failure seen.
        last: String,
    },
    /// The client has no voter address, or one is malformed.
    #[error("invalid controller address {0:?}")]
    BadAddress(String),
}

impl ClientError {
    /// The refusal's kind (`topic-exists`, `stale-broker-epoch`, ...), if any.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ClientError::Refused { kind, .. } => kind.as_deref(),
            _ => None,
        }
    }

    fn from_status(status: &Status) -> Self {
        ClientError::Refused {
            code: status.code(),
            kind: status
                .metadata()
                .get(ERROR_KIND_KEY)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            message: status.message().to_owned(),
        }
    }
}

/// Whether a status means "try another controller" rather than "the answer is no".
fn retriable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

/// The next controller to try after `status` came from `current` (pure, for tests): the
/// leader's address when the answer carries it, else the next voter in the list.
pub fn next_target(voters: &[String], current: &str, hint: Option<&str>) -> String {
    if let Some(h) = hint.filter(|h| !h.is_empty() && *h != current) {
        return h.to_owned();
    }
    let i = voters.iter().position(|v| v == current);
    match i {
        Some(i) => voters[(i + 1) % voters.len()].clone(),
        None => voters.first().cloned().unwrap_or_default(),
    }
}

/// A client of the controller quorum. Cheap to share (`Arc`); calls may run concurrently.
#[derive(Debug)]
pub struct ControllerClient {
    voters: Vec<String>,
    cluster_id: String,
    channels: Mutex<HashMap<String, Channel>>,
    /// The controller that last answered a leader-only call: the presumed leader.
    leader: Mutex<Option<String>>,
}

impl ControllerClient {
    /// A client of the voters at `voters` (`host:port`), for cluster `cluster_id` (empty: do
    /// not check).
    pub fn new(voters: Vec<String>, cluster_id: impl Into<String>) -> Result<Self, ClientError> {
        if voters.is_empty() {
            return Err(ClientError::BadAddress(String::new()));
        }
        Ok(Self {
            voters,
            cluster_id: cluster_id.into(),
            channels: Mutex::new(HashMap::new()),
            leader: Mutex::new(None),
        })
    }

    /// The cluster id sent with every request.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The voters' addresses.
    pub fn voters(&self) -> &[String] {
        &self.voters
    }

    fn channel(&self, addr: &str) -> Result<Channel, ClientError> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|_| ClientError::BadAddress(addr.to_owned()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    fn first_target(&self) -> String {
        self.leader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| self.voters[0].clone())
    }

    /// Runs `call` against controllers until one answers, a refusal comes back, or `deadline`
    /// passes.
    async fn call<T, F, Fut>(&self, deadline: Duration, call: F) -> Result<T, ClientError>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let start = Instant::now();
        let end = start + deadline;
        let mut target = self.first_target();
        let mut backoff = BACKOFF_MIN;
        loop {
            let channel = self.channel(&target)?;
            let remaining = end.saturating_duration_since(Instant::now());
            let failure = match tokio::time::timeout(remaining, call(channel)).await {
                Ok(Ok(reply)) => {
                    *self.leader.lock().unwrap_or_else(|e| e.into_inner()) = Some(target);
                    return Ok(reply.into_inner());
                }
                Ok(Err(status)) if !retriable(&status) => {
                    return Err(ClientError::from_status(&status));
                }
                Ok(Err(status)) => {
                    let hint = leader_hint(&status);
                    let next = next_target(&self.voters, &target, hint.as_deref());
                    let followed_hint = hint.is_some_and(|h| h == next);
                    let last = format!("{target}: {status}");
                    target = next;
                    if followed_hint {
                        // A controller named the leader: ask it now.
                        backoff = BACKOFF_MIN;
                        if Instant::now() < end {
                            continue;
                        }
                    }
                    last
                }
                Err(_) => format!("{target}: timed out"),
            };
            let now = Instant::now();
            if now >= end {
                return Err(ClientError::Unavailable {
                    waited: now - start,
                    last: failure,
                });
            }
            tracing::debug!(error = %failure, "controller call failed, retrying");
            tokio::time::sleep(backoff.min(end - now)).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn lifecycle(channel: Channel) -> BrokerLifecycleClient<Channel> {
        BrokerLifecycleClient::new(channel)
    }

    fn admin(channel: Channel) -> ControllerAdminClient<Channel> {
        ControllerAdminClient::new(channel)
    }

    /// `RegisterBroker` (leader). Returns the broker epoch.
    pub async fn register_broker(
        &self,
        mut req: pb::RegisterBrokerRequest,
        deadline: Duration,
    ) -> Result<u64, ClientError> {
        req.cluster_id.clone_from(&self.cluster_id);
        let reply = self
            .call(deadline, |c| {
                let req = req.clone();
                async move { Self::lifecycle(c).register_broker(req).await }
            })
            .await?;
        Ok(reply.broker_epoch)
    }

    /// `Heartbeat` (leader).
    pub async fn heartbeat(
        &self,
        mut req: pb::HeartbeatRequest,
        deadline: Duration,
    ) -> Result<pb::HeartbeatReply, ClientError> {
        req.cluster_id.clone_from(&self.cluster_id);
        self.call(deadline, |c| {
            let req = req.clone();
            async move { Self::lifecycle(c).heartbeat(req).await }
        })
        .await
    }

    /// `OpenSession` (leader): the broker's session stream; `deadline` bounds opening it, not
    /// the stream itself. The stream ends when that controller stops leading.
    pub async fn open_session(
        &self,
        mut req: pb::OpenSessionRequest,
        deadline: Duration,
    ) -> Result<tonic::Streaming<pb::SessionEvent>, ClientError> {
        req.cluster_id.clone_from(&self.cluster_id);
        self.call(deadline, |c| {
            let req = req.clone();
            async move { Self::lifecycle(c).open_session(req).await }
        })
        .await
    }

    /// `AlterPartition` (leader).
    pub async fn alter_partition(
        &self,
        mut req: pb::AlterPartitionRequest,
        deadline: Duration,
    ) -> Result<pb::AlterPartitionReply, ClientError> {
        req.cluster_id.clone_from(&self.cluster_id);
        self.call(deadline, |c| {
            let req = req.clone();
            async move { Self::lifecycle(c).alter_partition(req).await }
        })
        .await
    }

    /// `WatchMetadata` from `from_offset` on any controller; `deadline` bounds opening the
    /// stream, not the stream itself.
    pub async fn watch_metadata(
        &self,
        from_offset: u64,
        deadline: Duration,
    ) -> Result<tonic::Streaming<pb::MetadataEvent>, ClientError> {
        let req = pb::WatchMetadataRequest {
            cluster_id: self.cluster_id.clone(),
            from_offset,
        };
        self.call(deadline, |c| {
            let req = req.clone();
            async move { Self::lifecycle(c).watch_metadata(req).await }
        })
        .await
    }

    /// `CreateTopic` (leader).
    pub async fn create_topic(
        &self,
        mut req: pb::CreateTopicRequest,
        deadline: Duration,
    ) -> Result<pb::CreateTopicReply, ClientError> {
        req.cluster_id.clone_from(&self.cluster_id);
        self.call(deadline, |c| {
            let req = req.clone();
            async move { Self::admin(c).create_topic(req).await }
        })
        .await
    }

    /// `DeleteTopic` (leader).
    pub async fn delete_topic(
        &self,
        name: &str,
        deadline: Duration,
    ) -> Result<pb::DeleteTopicReply, ClientError> {
        let req = pb::DeleteTopicRequest {
            cluster_id: self.cluster_id.clone(),
            name: name.to_owned(),
        };
        self.call(deadline, |c| {
            let req = req.clone();
            async move { Self::admin(c).delete_topic(req).await }
        })
        .await
    }

    /// `CreatePartitions` (leader).
    pub async fn create_partitions(
        &self,
        topic: &str,
        total: u32,
        deadline: Duration,
    ) -> Result<pb::CreatePartitionsReply, ClientError> {
        let req = pb::CreatePartitionsRequest {
            cluster_id: self.cluster_id.clone(),
            topic: topic.to_owned(),
            total,
        };
        self.call(deadline, |c| {
            let req = req.clone();
            async move { Self::admin(c).create_partitions(req).await }
        })
        .await
    }

    /// `AlterConfigs` (leader).
    pub async fn alter_configs(
        &self,
        mut req: pb::AlterConfigsRequest,
        deadline: Duration,
    ) -> Result<pb::AlterConfigsReply, ClientError> {
        req.cluster_id.clone_from(&self.cluster_id);
        self.call(deadline, |c| {
            let req = req.clone();
            async move { Self::admin(c).alter_configs(req).await }
        })
        .await
    }

    /// `AllocateProducerIds` (leader).
    pub async fn allocate_producer_ids(
        &self,
        broker_id: i32,
        broker_epoch: u64,
        count: u32,
        deadline: Duration,
    ) -> Result<pb::AllocateProducerIdsReply, ClientError> {
        let req = pb::AllocateProducerIdsRequest {
            cluster_id: self.cluster_id.clone(),
            broker_id,
            broker_epoch,
            count,
        };
        self.call(deadline, |c| {
            let req = req.clone();
            async move { Self::admin(c).allocate_producer_ids(req).await }
        })
        .await
    }

    /// `DescribeCluster` (any controller; a follower forwards it to the leader).
    pub async fn describe_cluster(
        &self,
        deadline: Duration,
    ) -> Result<pb::DescribeClusterReply, ClientError> {
        let req = pb::DescribeClusterRequest {
            cluster_id: self.cluster_id.clone(),
            forwarded: false,
        };
        self.call(deadline, |c| {
            let req = req.clone();
            async move { Self::admin(c).describe_cluster(req).await }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters() -> Vec<String> {
        vec!["a:1".into(), "b:2".into(), "c:3".into()]
    }

    #[test]
    fn a_hint_wins_otherwise_the_next_voter() {
        assert_eq!(next_target(&voters(), "a:1", Some("c:3")), "c:3");
        assert_eq!(next_target(&voters(), "a:1", None), "b:2");
        assert_eq!(next_target(&voters(), "c:3", None), "a:1");
        // A hint naming the controller that just failed is no progress: move on.
        assert_eq!(next_target(&voters(), "b:2", Some("b:2")), "c:3");
        // An address outside the voter list (a learnt leader) restarts at the first voter.
        assert_eq!(next_target(&voters(), "z:9", None), "a:1");
    }

    #[test]
    fn refusals_keep_their_kind() {
        let mut s = Status::already_exists("topic t already exists");
        s.metadata_mut().insert(
            ERROR_KIND_KEY,
            tonic::metadata::MetadataValue::from_static("topic-exists"),
        );
        assert!(!retriable(&s));
        let e = ClientError::from_status(&s);
        assert_eq!(e.kind(), Some("topic-exists"));
        assert!(retriable(&Status::unavailable("x")));
    }

    #[tokio::test]
    async fn an_unreachable_quorum_fails_within_the_deadline() {
        // Port 1 on loopback refuses connections.
        let client = ControllerClient::new(vec!["127.0.0.1:1".into()], "c").unwrap();
        let started = std::time::Instant::now();
        let r = client.describe_cluster(Duration::from_millis(300)).await;
        assert!(matches!(r, Err(ClientError::Unavailable { .. })), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
