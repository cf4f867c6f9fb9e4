//! CreateTopics (key 19): validates every topic on its own; one bad topic does not fail the
//! others.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext, str_bytes};
use crate::error::{self, BrokerError, Result};
use crate::topic_config;

/// Served versions (v5+ returns the topic's configs, v7 its id).
pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 7 };

/// DescribeConfigs/CreateTopics config source ids.
pub(crate) const SOURCE_TOPIC: i8 = 1;
pub(crate) const SOURCE_STATIC_BROKER: i8 = 4;
pub(crate) const SOURCE_DEFAULT: i8 = 5;

fn validate(ctx: &RequestContext, topic: &CreatableTopic) -> Result<BTreeMap<String, String>> {
    let node_id = ctx.broker.config().node_id;
    if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(BrokerError::InvalidRequest(
                "both a replica assignment and numPartitions/replicationFactor were given".into(),
            ));
        }
        if ctx.broker.in_cluster() {
            return Err(BrokerError::InvalidReplicaAssignment(
                "manual replica assignments are not supported in a cluster yet".into(),
            ));
        }
        for (i, a) in topic.assignments.iter().enumerate() {
            if a.partition_index != i as i32 {
                return Err(BrokerError::InvalidReplicaAssignment(
                    "partitions must be assigned in order 0..n".into(),
                ));
            }
            if a.broker_ids.len() != 1 || a.broker_ids[0].0 != node_id {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "partition {} must be assigned to exactly broker {node_id}",
                    a.partition_index
                )));
            }
        }
    }
    topic_config::validate_all(
        topic
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_deref())),
    )
}

/// The describe-style config list CreateTopics v5+ returns.
fn config_entries(
    ctx: &RequestContext,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    let config = ctx.broker.config();
    topic_config::TOPIC_CONFIGS
        .iter()
        .map(|d| {
            let (value, source) = match overrides.get(d.name) {
                Some(v) => (v.clone(), SOURCE_TOPIC),
                None if topic_config::broker_default_is_static(config, d.name) => (
                    topic_config::broker_default(config, d.name),
                    SOURCE_STATIC_BROKER,
                ),
                None => (topic_config::broker_default(config, d.name), SOURCE_DEFAULT),
            };
            CreatableTopicConfigs::default()
                .with_name(str_bytes(d.name))
                .with_value(Some(str_bytes(value)))
                .with_config_source(source)
        })
        .collect()
}

/// Handles CreateTopics.
pub async fn handle(ctx: &RequestContext, req: CreateTopicsRequest) -> Reply<CreateTopicsResponse> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = if seen.get(&name).copied().unwrap_or(0) > 1 {
            Err(BrokerError::InvalidRequest(format!(
                "topic {name} appears more than once in the request"
            )))
        } else {
            match validate(ctx, &topic) {
                Ok(configs) => {
                    let partitions = if topic.assignments.is_empty() {
                        topic.num_partitions
                    } else {
                        topic.assignments.len() as i32
                    };
                    let (n, rf, only) = (name.clone(), topic.replication_factor, req.validate_only);
                    ctx.broker
                        .blocking(move |b| b.create_topic(&n, partitions, rf, configs, only))
                        .await
                }
                Err(e) => Err(e),
            }
        };
        match outcome {
            Ok(meta) => {
                result.topic_id = meta.id;
                result.num_partitions = meta.partitions;
                result.replication_factor = if topic.replication_factor == -1 {
                    ctx.broker.config().default_replication_factor
                } else {
                    topic.replication_factor
                };
                result.configs = Some(config_entries(ctx, &meta.configs));
            }
            Err(e) => {
                tracing::debug!(topic = %name, error = %error::message(&e), "create topic failed");
                result.error_code = error::code(&e);
                result.error_message = Some(str_bytes(error::message(&e)));
            }
        }
        results.push(result);
    }
    Reply::Respond(CreateTopicsResponse::default().with_topics(results))
}
