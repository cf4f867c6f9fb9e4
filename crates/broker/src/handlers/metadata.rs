//! Metadata (key 3): brokers, cluster id, topics with ids and partition leadership. Creates
//! missing topics when the client allows it and `auto.create.topics.enable` is on.

use gregor_controller::metadata::{MetadataImage, TopicImage};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::VersionRange;
use uuid::Uuid;

use super::{
    CLUSTER_AUTHORIZED_OPERATIONS, Reply, RequestContext, TOPIC_AUTHORIZED_OPERATIONS, str_bytes,
    topic_name,
};
use crate::error::{self, BrokerError};
use crate::quorum::PLAINTEXT;

/// Served versions. v13 (top-level error code only) is left out until a client needs it.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 12 };

/// A broker clients may use: registered, unfenced, with an endpoint for the listener the request
/// arrived on (Kafka answers with the endpoints of that listener), or `PLAINTEXT` when it
/// registered under no such name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveBroker {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// The unfenced brokers of the image, by id.
pub(crate) fn live_brokers(image: &MetadataImage, listener: &str) -> Vec<LiveBroker> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let e = b
                .endpoints
                .iter()
                .find(|e| e.name == listener)
                .or_else(|| b.endpoints.iter().find(|e| e.name == PLAINTEXT))?;
            Some(LiveBroker {
                id: b.id,
                host: e.host.clone(),
                port: e.port,
                rack: b.rack.clone(),
            })
        })
        .collect()
}

/// The `controller_id` brokers report: a live broker, as KRaft brokers do (clients send admin
/// requests there and the broker forwards them). Gregor picks the lowest live id, so every
/// broker reports the same one; -1 when none is live.
pub(crate) fn controller_id(image: &MetadataImage) -> i32 {
    image
        .brokers
        .values()
        .find(|b| !b.fenced)
        .map_or(-1, |b| b.id)
}

/// The response for one existing topic: leaders, epochs, replicas, ISR and offline replicas
/// (fenced or unregistered) straight from the image.
pub(crate) fn topic_entry(
    image: &MetadataImage,
    name: &str,
    topic: &TopicImage,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let index = i32::try_from(index).unwrap_or(i32::MAX);
            let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
            let offline: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|b| !image.is_active(*b))
                .collect();
            let entry = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(p.leader.unwrap_or(-1)))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline));
            match p.leader {
                Some(_) => entry,
                None => entry.with_error_code(error::code(&BrokerError::LeaderNotAvailable {
                    topic: name.to_string(),
                    partition: index,
                })),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name.to_string())))
        .with_topic_id(topic.id)
        .with_is_internal(name == crate::group::OFFSETS_TOPIC)
        .with_partitions(partitions)
}

fn error_entry(name: Option<String>, id: Uuid, err: &BrokerError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error::code(err))
        .with_name(name.map(topic_name))
        .with_topic_id(id)
}

/// Handles Metadata.
pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> Reply<MetadataResponse> {
    let broker = &ctx.broker;
    let version = ctx.api_version;
    // v0 has no way to say "all topics" but an empty list; v1+ uses null for that.
    let requested = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    // Before v4 the client could not opt out of auto-creation.
    let auto_create =
        broker.config().auto_create_topics_enable && (version < 4 || req.allow_auto_topic_creation);

    let topics: Vec<MetadataResponseTopic> = match requested {
        None => {
            let image = broker.image();
            image
                .topics
                .iter()
                .map(|(name, t)| topic_entry(&image, name, t))
                .collect()
        }
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                let entry = match t.name {
                    Some(name) => {
                        let name = name.0.to_string();
                        let image = broker.image();
                        if let Some(topic) = image.topics.get(&name) {
                            topic_entry(&image, &name, topic)
                        } else {
                            let created = if auto_create {
                                let n = name.clone();
                                broker
                                    .blocking(move |b| b.ensure_topic(&n))
                                    .await
                                    .map(|_| ())
                            } else {
                                Err(BrokerError::UnknownTopicOrPartition {
                                    topic: name.clone(),
                                    partition: -1,
                                })
                            };
                            // The creation waited for this broker's image to have the topic.
                            let image = broker.image();
                            match (created, image.topics.get(&name)) {
                                (Ok(()), Some(topic)) => topic_entry(&image, &name, topic),
                                (Ok(()), None) => error_entry(
                                    Some(name.clone()),
                                    Uuid::nil(),
                                    &BrokerError::LeaderNotAvailable {
                                        topic: name,
                                        partition: -1,
                                    },
                                ),
                                (Err(e), _) => error_entry(Some(name), Uuid::nil(), &e),
                            }
                        }
                    }
                    None => {
                        let image = broker.image();
                        match image
                            .topics
                            .iter()
                            .find(|(_, topic)| topic.id == t.topic_id)
                        {
                            Some((name, topic)) => topic_entry(&image, name, topic),
                            None => error_entry(
                                None,
                                t.topic_id,
                                &BrokerError::UnknownTopicId(t.topic_id),
                            ),
                        }
                    }
                };
                out.push(entry);
            }
            out
        }
    };

    // Authorized operations are reported only when asked for (otherwise Kafka's "not
    // requested" INT32_MIN, which the defaults already hold). The cluster field exists in v8-v10.
    let topics: Vec<MetadataResponseTopic> =
        if version >= 8 && req.include_topic_authorized_operations {
            topics
                .into_iter()
                .map(|t| {
                    if t.error_code == 0 {
                        t.with_topic_authorized_operations(TOPIC_AUTHORIZED_OPERATIONS)
                    } else {
                        t
                    }
                })
                .collect()
        } else {
            topics
        };
    let image = broker.image();
    let brokers = live_brokers(&image, &ctx.listener)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.map(str_bytes))
        })
        .collect();
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(broker.cluster_id())))
        .with_controller_id(BrokerId(controller_id(&image)))
        .with_topics(topics);
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
    }
    Reply::Respond(resp)
}
