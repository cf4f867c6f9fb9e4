//! Metadata (key 3): brokers, cluster id, topics with ids and partition leadership. Creates
//! missing topics when the client allows it and `auto.create.topics.enable` is on.

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
use crate::broker::{LEADER_EPOCH, Topic};
use crate::error::{self, BrokerError};

/// Served versions. v13 (top-level error code only) is left out until a client needs it.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 12 };

/// The response for one existing topic.
pub(crate) fn topic_entry(node_id: i32, topic: &Topic) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions.len() as i32)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(BrokerId(node_id))
                .with_leader_epoch(LEADER_EPOCH)
                .with_replica_nodes(vec![BrokerId(node_id)])
                .with_isr_nodes(vec![BrokerId(node_id)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(topic.name.clone())))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name == crate::group::OFFSETS_TOPIC)
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
    let node_id = broker.config().node_id;
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
        None => broker
            .topics()
            .iter()
            .map(|t| topic_entry(node_id, t))
            .collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                let entry = match t.name {
                    Some(name) => {
                        let name = name.0.to_string();
                        let found = match broker.topic(&name) {
                            Some(topic) => Ok(topic),
                            None if auto_create => {
                                let n = name.clone();
                                broker.blocking(move |b| b.ensure_topic(&n)).await
                            }
                            None => Err(BrokerError::UnknownTopicOrPartition {
                                topic: name.clone(),
                                partition: -1,
                            }),
                        };
                        match found {
                            Ok(topic) => topic_entry(node_id, &topic),
                            Err(e) => error_entry(Some(name), Uuid::nil(), &e),
                        }
                    }
                    None => match broker.topic_by_id(t.topic_id) {
                        Some(topic) => topic_entry(node_id, &topic),
                        None => {
                            error_entry(None, t.topic_id, &BrokerError::UnknownTopicId(t.topic_id))
                        }
                    },
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
    let endpoint = broker.advertised_for(&ctx.listener);
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(node_id))
                .with_host(str_bytes(endpoint.host.clone()))
                .with_port(endpoint.port as i32),
        ])
        .with_cluster_id(Some(str_bytes(broker.cluster_id())))
        .with_controller_id(BrokerId(node_id))
        .with_topics(topics);
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
    }
    Reply::Respond(resp)
}
