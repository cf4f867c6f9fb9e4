//! The broker's link to the controller quorum: the metadata plane of a cluster.
//!
//! ```text
//! controller ──WatchMetadata──▶ watch task: apply records/snapshots to a local MetadataImage
//!                                  │ (MetadataImage::apply, the controller's own code)
//!                                  ▼
//!                               Broker::apply_image: reconcile::plan(image, local) → actions
//!                                  │ open/delete logs, topic configs, topic map,
//!                                  ▼ Broker::apply_assignment for every changed partition
//!                               image published on the broker's watch (Metadata API reads it)
//! heartbeat task ──Heartbeat(applied offset)──▶ controller (unfences once caught up)
//! admin requests ──CreateTopic/DeleteTopic/...──▶ controller leader, then wait for the offset
//! ```
//!
//! # Layout
//! - [`QuorumConfig`] and [`start`]: register, open the broker, follow the stream until caught
//!   up and unfenced, then hand back a [`QuorumBroker`] (the broker plus its owned tasks).
//! - [`link`]: [`link::QuorumLink`], the [`crate::cluster::ClusterLink`] of a cluster member
//!   (broker epoch, replication endpoints from the image, AlterPartition), and the heartbeat
//!   loop (re-registration on a stale epoch, controlled shutdown).
//! - [`watch`]: the metadata stream follower (reconnects to any voter).
//! - [`reconcile`]: the pure image → actions planner and the partition-state → assignment map.
//! - [`QuorumMetadata`]: admin forwarding (topics, partitions, configs, producer ids) and the
//!   one mapping of controller refusals to [`BrokerError`]s ([`to_broker_error`]).

pub mod link;
pub mod reconcile;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gregor_controller::client::{ClientError, ControllerClient};
use gregor_controller::metadata::MetadataImage;
use gregor_proto::controller::v1 as pb;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::producer_ids::{BLOCK_SIZE, ProducerIdAllocator, ProducerIdError};

/// Endpoint name of the Kafka listener in a broker registration.
pub const PLAINTEXT: &str = "PLAINTEXT";
/// Endpoint name of the replication (gRPC) listener in a broker registration.
pub const REPLICATION: &str = "REPLICATION";

/// How long an admin call may take at the controller (Kafka's default `request.timeout.ms`).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a broker waits for its own image to reach a write it just made.
pub const IMAGE_WAIT: Duration = Duration::from_secs(10);
/// How long startup waits to catch up with the metadata and be unfenced.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long startup waits, at most, for the controller to re-elect this broker where it is the
/// only ISR member left (see [`start`]).
pub const LEADERSHIP_SETTLE: Duration = Duration::from_secs(5);

/// What the broker needs to join a quorum (from `controller.quorum.voters`, `cluster.id` and
/// `broker.heartbeat.interval.ms`).
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// The voters' `host:port` addresses.
    pub voters: Vec<String>,
    /// The cluster id; `None` asks the quorum (`DescribeCluster`).
    pub cluster_id: Option<String>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// The rack, if any.
    pub rack: Option<String>,
}

/// Admin forwarding to the controller, for the broker's blocking admin methods.
#[derive(Debug)]
pub struct QuorumMetadata {
    client: Arc<ControllerClient>,
    runtime: Handle,
    node_id: i32,
    epoch: Arc<std::sync::atomic::AtomicU64>,
}

/// The one mapping of controller errors to broker errors (Kafka codes are then chosen by
/// [`crate::error::error_code`]). `subject` names the topic or request for messages.
pub fn to_broker_error(e: ClientError, subject: &str) -> BrokerError {
    let message = e.to_string();
    match e.kind() {
        Some("topic-exists") => BrokerError::TopicAlreadyExists(subject.to_string()),
        Some("unknown-topic") => BrokerError::UnknownTopicOrPartition {
            topic: subject.to_string(),
            partition: -1,
        },
        Some("invalid-replication-factor") => BrokerError::InvalidReplicationFactor(message),
        Some("invalid-partitions") => BrokerError::InvalidPartitions(message),
        Some("invalid-topic") => BrokerError::InvalidTopic {
            name: subject.to_string(),
            reason: "refused by the controller",
        },
        Some("invalid-request") => BrokerError::InvalidRequest(message),
        Some("stale-broker-epoch" | "unknown-broker") => BrokerError::StaleBrokerEpoch(message),
        Some("fenced-leader-epoch") => BrokerError::IsrChangeRefused {
            reason: crate::error::IsrRefusal::FencedLeaderEpoch,
            message,
        },
        Some("stale-partition-epoch") => BrokerError::IsrChangeRefused {
            reason: crate::error::IsrRefusal::StalePartitionEpoch,
            message,
        },
        Some("not-leader") => BrokerError::IsrChangeRefused {
            reason: crate::error::IsrRefusal::NotLeader,
            message,
        },
        Some("ineligible-replica") => BrokerError::IsrChangeRefused {
            reason: crate::error::IsrRefusal::IneligibleReplica,
            message,
        },
        _ => BrokerError::Controller(e),
    }
}

impl QuorumMetadata {
    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        self.client.cluster_id()
    }

    /// How many controller voters there are.
    pub fn voter_count(&self) -> usize {
        self.client.voters().len()
    }

    /// Runs a controller call from a blocking thread (the broker's admin methods run on the
    /// blocking pool, see `Broker::blocking`).
    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    /// Waits (bounded by [`IMAGE_WAIT`]) until `image` reached `offset`. Blocking.
    pub fn await_offset(
        &self,
        mut image: tokio::sync::watch::Receiver<Arc<MetadataImage>>,
        offset: u64,
    ) -> Result<()> {
        self.block_on(async move {
            let reached = image.wait_for(|i| i.offset >= offset);
            match tokio::time::timeout(IMAGE_WAIT, reached).await {
                Ok(Ok(_)) => Ok(()),
                _ => Err(BrokerError::MetadataLag { offset }),
            }
        })
    }

    /// CreateTopic at the controller: the new topic's id and the write's offset.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<(Uuid, u64)> {
        let req = pb::CreateTopicRequest {
            cluster_id: String::new(),
            name: name.to_string(),
            partitions: u32::try_from(partitions).unwrap_or(0),
            replication_factor: u32::try_from(replication_factor).unwrap_or(0),
            configs: configs.clone().into_iter().collect(),
        };
        let reply = self
            .block_on(self.client.create_topic(req, ADMIN_TIMEOUT))
            .map_err(|e| to_broker_error(e, name))?;
        let id = Uuid::parse_str(&reply.topic_id).map_err(|e| {
            BrokerError::InvalidRequest(format!(
                "controller sent topic id {:?}: {e}",
                reply.topic_id
            ))
        })?;
        Ok((id, reply.offset))
    }

    /// DeleteTopic at the controller: the write's offset.
    pub fn delete_topic(&self, name: &str) -> Result<u64> {
        let reply = self
            .block_on(self.client.delete_topic(name, ADMIN_TIMEOUT))
            .map_err(|e| to_broker_error(e, name))?;
        Ok(reply.offset)
    }

    /// CreatePartitions at the controller: the write's offset.
    pub fn create_partitions(&self, name: &str, total: i32) -> Result<u64> {
        let total = u32::try_from(total).unwrap_or(0);
        let reply = self
            .block_on(self.client.create_partitions(name, total, ADMIN_TIMEOUT))
            .map_err(|e| to_broker_error(e, name))?;
        Ok(reply.offset)
    }

    /// AlterConfigs of a topic at the controller: the write's offset.
    pub fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> Result<u64> {
        let req = pb::AlterConfigsRequest {
            cluster_id: String::new(),
            resource_type: pb::alter_configs_request::ResourceType::Topic as i32,
            resource_name: name.to_string(),
            changes: changes
                .into_iter()
                .map(|(key, value)| pb::ConfigChange { key, value })
                .collect(),
        };
        let reply = self
            .block_on(self.client.alter_configs(req, ADMIN_TIMEOUT))
            .map_err(|e| to_broker_error(e, name))?;
        Ok(reply.offset)
    }
}

/// Producer ids in blocks of [`BLOCK_SIZE`] from the controller's `AllocateProducerIds`
/// (KIP-730), like Kafka's `RPCProducerIdManager`. A block is never reused: the controller's
/// image records the next free id.
#[derive(Debug)]
pub struct ControllerProducerIds {
    quorum: Arc<QuorumMetadata>,
    /// `[next, end)` of the current block.
    block: Mutex<(i64, i64)>,
}

impl ControllerProducerIds {
    /// An allocator asking the quorum behind `quorum`.
    pub fn new(quorum: Arc<QuorumMetadata>) -> Self {
        Self {
            quorum,
            block: Mutex::new((0, 0)),
        }
    }
}

impl ProducerIdAllocator for ControllerProducerIds {
    fn next_id(&self) -> std::result::Result<i64, ProducerIdError> {
        let mut block = self.block.lock();
        if block.0 >= block.1 {
            let q = &self.quorum;
            let epoch = q.epoch.load(std::sync::atomic::Ordering::Acquire);
            let count = u32::try_from(BLOCK_SIZE).unwrap_or(1000);
            let reply = q
                .block_on(
                    q.client
                        .allocate_producer_ids(q.node_id, epoch, count, ADMIN_TIMEOUT),
                )
                .map_err(|e| ProducerIdError::Controller(e.to_string()))?;
            let end = reply
                .first
                .checked_add(i64::from(reply.count))
                .ok_or(ProducerIdError::Exhausted)?;
            *block = (reply.first, end);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}

/// A broker that is a member of a cluster, with the tasks that keep it one.
#[derive(Debug)]
pub struct QuorumBroker {
    /// The broker (serve it with [`crate::run`]).
    pub broker: Arc<Broker>,
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

impl QuorumBroker {
    /// Stops following the quorum: asks to be fenced (controlled shutdown) and waits for the
    /// heartbeat and watch tasks. Call after the Kafka listener stopped.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Joins the quorum: registers (`kafka` is the advertised Kafka address's bound listener,
/// `replication` the bound replication listener), opens the broker, follows the metadata until
/// this broker caught up with its own registration and is unfenced (bounded by
/// [`STARTUP_TIMEOUT`]), and loads the consumer groups. The returned tasks stop on `shutdown`
/// (after a controlled shutdown heartbeat).
pub async fn start(
    config: BrokerConfig,
    quorum: QuorumConfig,
    kafka: SocketAddr,
    replication: SocketAddr,
    shutdown: CancellationToken,
) -> Result<QuorumBroker> {
    let cluster_id = match quorum.cluster_id.clone() {
        Some(id) => id,
        None => {
            let probe = ControllerClient::new(quorum.voters.clone(), "")
                .map_err(|e| to_broker_error(e, "cluster"))?;
            probe
                .describe_cluster(STARTUP_TIMEOUT)
                .await
                .map_err(|e| to_broker_error(e, "cluster"))?
                .cluster_id
        }
    };
    let client = Arc::new(
        ControllerClient::new(quorum.voters.clone(), cluster_id)
            .map_err(|e| to_broker_error(e, "cluster"))?,
    );
    // Every Kafka listener is registered under its name, so each broker answers Metadata with
    // the endpoints of the listener a request arrived on (Kafka's rule for multiple listeners).
    let advertised = config.advertised_endpoints(kafka);
    let inter_broker_host = advertised
        .iter()
        .find(|l| Some(l.name.as_str()) == config.inter_broker_listener_name.as_deref())
        .or_else(|| advertised.first())
        .map_or_else(|| kafka.ip().to_string(), |l| l.endpoint.host.clone());
    let mut endpoints: Vec<pb::Endpoint> = advertised
        .iter()
        .map(|l| pb::Endpoint {
            name: l.name.clone(),
            host: l.endpoint.host.clone(),
            port: u32::from(l.endpoint.port),
        })
        .collect();
    endpoints.push(pb::Endpoint {
        name: REPLICATION.to_string(),
        // A wildcard bind is reached at the inter-broker listener's host.
        host: if replication.ip().is_unspecified() {
            inter_broker_host
        } else {
            replication.ip().to_string()
        },
        port: u32::from(replication.port()),
    });
    let mut registration = pb::RegisterBrokerRequest {
        cluster_id: String::new(),
        clean_shutdown: false,
        broker_id: config.node_id,
        incarnation_id: Uuid::new_v4().to_string(),
        endpoints,
        rack: quorum.rack.clone().unwrap_or_default(),
    };
    let (image_tx, image_rx) = tokio::sync::watch::channel(Arc::new(MetadataImage::default()));
    let link = Arc::new(link::QuorumLink::new(
        config.node_id,
        Arc::clone(&client),
        image_rx.clone(),
    ));
    let metadata = Arc::new(QuorumMetadata {
        client: Arc::clone(&client),
        runtime: Handle::current(),
        node_id: config.node_id,
        epoch: link.epoch_cell(),
    });
    let producer_ids = Box::new(ControllerProducerIds::new(Arc::clone(&metadata)));
    let cluster_link: Arc<dyn crate::cluster::ClusterLink> = link.clone();
    // The logs are opened (and recovered) before registering: the registration tells the
    // controller whether the previous shutdown was clean (KIP-966: a broker that may have lost
    // unflushed data must leave every ELR).
    let broker = {
        let metadata = Arc::clone(&metadata);
        tokio::task::spawn_blocking(move || {
            Broker::open_cluster(
                config,
                kafka,
                metadata,
                producer_ids,
                cluster_link,
                image_tx,
            )
        })
        .await??
    };
    registration.clean_shutdown = broker.previous_shutdown_clean();
    let epoch = link
        .register(&registration, STARTUP_TIMEOUT)
        .await
        .map_err(|e| to_broker_error(e, "RegisterBroker"))?;
    tracing::info!(
        node_id = broker.config().node_id,
        epoch,
        clean_shutdown = registration.clean_shutdown,
        "registered with the controller quorum"
    );
    let broker = Arc::new(broker);
    // Every record before the registration is committed at or below its offset.
    broker.set_catch_up_offset(epoch);
    let stop = shutdown.child_token();
    let mut tasks = JoinSet::new();
    tasks.spawn(watch::run(
        Arc::clone(&client),
        Arc::clone(&broker),
        stop.clone(),
    ));
    tasks.spawn(link::run_heartbeats(
        Arc::clone(&link),
        registration,
        quorum.heartbeat_interval,
        stop.clone(),
    ));
    tasks.spawn(link::run_session(
        Arc::clone(&link),
        quorum.heartbeat_interval,
        stop.clone(),
    ));
    let node = broker.config().node_id;
    let mut ready = image_rx;
    let caught_up = ready
        .wait_for(|i| i.offset >= link.epoch() && i.brokers.get(&node).is_some_and(|b| !b.fenced));
    let waited = tokio::select! {
        r = tokio::time::timeout(STARTUP_TIMEOUT, caught_up) => r.ok().and_then(|r| r.ok()).is_some(),
        () = shutdown.cancelled() => false,
    };
    if !waited {
        stop.cancel();
        while tasks.join_next().await.is_some() {}
        return Err(BrokerError::MetadataLag {
            offset: link.epoch(),
        });
    }
    // A restarted broker's partitions were left without a leader when it went away (it was
    // their last ISR member); the controller elects it again a planner tick after unfencing.
    // Serving before that would answer LEADER_NOT_AVAILABLE for no lasting reason, so wait a
    // little (bounded, not fatal: Kafka clients retry anyway).
    let settled = ready.wait_for(|i| !awaits_election(i, node));
    let _ = tokio::time::timeout(LEADERSHIP_SETTLE, settled).await;
    // Consumer groups are rebuilt from the local `__consumer_offsets` logs once the topics
    // are known.
    broker.blocking(|b| b.groups().load(b)).await?;
    Ok(QuorumBroker {
        broker,
        tasks,
        stop,
    })
}

/// Whether some partition has no leader although `node`, live, is in its ISR (the controller
/// is about to elect it).
pub fn awaits_election(image: &MetadataImage, node: i32) -> bool {
    image.is_active(node)
        && image.topics.values().flat_map(|t| &t.partitions).any(|p| {
            // The controller's election order (KIP-966): an ISR member, else an ELR member,
            // else the last known leader.
            p.leader.is_none()
                && (p.isr.contains(&node)
                    || (p.isr.is_empty() && p.elr.contains(&node))
                    || (p.isr.is_empty() && p.elr.is_empty() && p.last_known_leader == Some(node)))
        })
}

#[cfg(test)]
mod tests {
    use gregor_controller::metadata::{BrokerRegistration, PartitionState, TopicImage};

    use super::*;

    #[test]
    fn a_leaderless_partition_with_this_broker_in_its_isr_awaits_election() {
        let mut image = MetadataImage::default();
        image.brokers.insert(
            1,
            BrokerRegistration {
                id: 1,
                epoch: 3,
                incarnation: Uuid::nil(),
                endpoints: Vec::new(),
                rack: None,
                fenced: false,
            },
        );
        let p = |leader, isr: &[i32]| PartitionState {
            replicas: vec![1, 2],
            isr: isr.to_vec(),
            leader,
            leader_epoch: 1,
            partition_epoch: 1,
            elr: Vec::new(),
            last_known_leader: None,
        };
        image.topics.insert(
            "t".into(),
            TopicImage {
                id: Uuid::from_u128(1),
                partitions: vec![p(Some(1), &[1]), p(None, &[2])],
                configs: BTreeMap::new(),
            },
        );
        assert!(!awaits_election(&image, 1), "led, or not in the ISR");
        image.topics.get_mut("t").unwrap().partitions[1].isr = vec![1, 2];
        assert!(awaits_election(&image, 1));
        image.brokers.get_mut(&1).unwrap().fenced = true;
        assert!(
            !awaits_election(&image, 1),
            "a fenced broker is not elected"
        );
    }

    #[test]
    fn controller_refusals_map_to_kafka_errors_in_one_place() {
        let refused = |kind: &str| ClientError::Refused {
            code: tonic::Code::InvalidArgument,
            kind: Some(kind.into()),
            message: "m".into(),
        };
        let code = |kind: &str| crate::error::code(&to_broker_error(refused(kind), "t"));
        assert_eq!(code("topic-exists"), 36);
        assert_eq!(code("invalid-partitions"), 37);
        assert_eq!(code("invalid-replication-factor"), 38);
        assert_eq!(code("invalid-topic"), 17);
        assert_eq!(code("unknown-topic"), 3);
        assert_eq!(code("stale-broker-epoch"), 77);
        assert_eq!(code("fenced-leader-epoch"), 74);
        assert_eq!(code("stale-partition-epoch"), 95);
        assert_eq!(code("ineligible-replica"), 107);
        let unavailable = ClientError::Unavailable {
            waited: Duration::from_secs(1),
            last: "x".into(),
        };
        assert_eq!(crate::error::code(&to_broker_error(unavailable, "t")), 7);
    }
}
