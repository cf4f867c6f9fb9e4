//! DescribeConfigs (key 32): effective topic configs (override or broker default) and the
//! broker's own (static) configs.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::create_topics::{SOURCE_DEFAULT, SOURCE_STATIC_BROKER, SOURCE_TOPIC};
use super::{Reply, RequestContext, str_bytes};
use crate::config::BrokerConfig;
use crate::error::{self, BrokerError};
use crate::topic_config::{self, ConfigKind};

/// Served versions.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 4 };

/// Kafka `ConfigResource.Type` ids.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

/// Broker properties shown for a broker resource, with their type.
fn broker_entries(c: &BrokerConfig) -> Vec<(&'static str, String, ConfigKind)> {
    vec![
        ("node.id", c.node_id.to_string(), ConfigKind::Int),
        (
            "num.partitions",
            c.num_partitions.to_string(),
            ConfigKind::Int,
        ),
        (
            "auto.create.topics.enable",
            c.auto_create_topics_enable.to_string(),
            ConfigKind::List,
        ),
        (
            "default.replication.factor",
            c.default_replication_factor.to_string(),
            ConfigKind::Int,
        ),
        (
            "delete.topic.enable",
            c.delete_topic_enable.to_string(),
            ConfigKind::List,
        ),
        (
            "socket.request.max.bytes",
            c.socket_request_max_bytes.to_string(),
            ConfigKind::Int,
        ),
        (
            "connections.max.idle.ms",
            c.connections_max_idle_ms.to_string(),
            ConfigKind::Long,
        ),
        (
            "log.retention.ms",
            c.log_retention_ms.to_string(),
            ConfigKind::Long,
        ),
        (
            "log.retention.bytes",
            c.log_retention_bytes.to_string(),
            ConfigKind::Long,
        ),
        (
            "log.segment.bytes",
            c.log_segment_bytes.to_string(),
            ConfigKind::Int,
        ),
        (
            "log.retention.check.interval.ms",
            c.log_retention_check_interval_ms.to_string(),
            ConfigKind::Long,
        ),
        (
            "message.max.bytes",
            c.message_max_bytes.to_string(),
            ConfigKind::Int,
        ),
        (
            "min.insync.replicas",
            c.min_insync_replicas.to_string(),
            ConfigKind::Int,
        ),
        (
            "log.message.timestamp.type",
            crate::config::timestamp_type_name(c.log_message_timestamp_type).to_string(),
            ConfigKind::String,
        ),
        (
            "log.message.timestamp.before.max.ms",
            c.log_message_timestamp_before_max_ms.to_string(),
            ConfigKind::Long,
        ),
        (
            "log.message.timestamp.after.max.ms",
            c.log_message_timestamp_after_max_ms.to_string(),
            ConfigKind::Long,
        ),
    ]
}

/// Null or empty key lists mean "all configs", as in Kafka.
fn wanted(keys: &Option<Vec<StrBytes>>, name: &str) -> bool {
    keys.as_ref()
        .is_none_or(|k| k.is_empty() || k.iter().any(|k| k.as_str() == name))
}

fn describe_topic(
    ctx: &RequestContext,
    name: &str,
    keys: &Option<Vec<StrBytes>>,
    synonyms: bool,
    docs: bool,
) -> Result<Vec<DescribeConfigsResourceResult>, BrokerError> {
    let topic = ctx
        .broker
        .topic(name)
        .ok_or_else(|| BrokerError::UnknownTopicOrPartition {
            topic: name.to_string(),
            partition: -1,
        })?;
    let config = ctx.broker.config();
    let mut out = Vec::new();
    for def in topic_config::TOPIC_CONFIGS
        .iter()
        .filter(|d| wanted(keys, d.name))
    {
        let default = topic_config::broker_default(config, def.name);
        let default_source = if topic_config::broker_default_is_static(config, def.name) {
            SOURCE_STATIC_BROKER
        } else {
            SOURCE_DEFAULT
        };
        let (value, source) = match topic.configs.get(def.name) {
            Some(v) => (v.clone(), SOURCE_TOPIC),
            None => (default.clone(), default_source),
        };
        let mut entry = DescribeConfigsResourceResult::default()
            .with_name(str_bytes(def.name))
            .with_value(Some(str_bytes(value.clone())))
            .with_config_source(source)
            .with_config_type(def.kind.type_id());
        if synonyms {
            let mut syn = Vec::new();
            if source == SOURCE_TOPIC {
                syn.push(
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(def.name))
                        .with_value(Some(str_bytes(value)))
                        .with_source(SOURCE_TOPIC),
                );
            }
            syn.push(
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(def.broker_key))
                    .with_value(Some(str_bytes(default)))
                    .with_source(default_source),
            );
            entry.synonyms = syn;
        }
        if docs {
            entry.documentation = Some(str_bytes(def.doc));
        }
        out.push(entry);
    }
    Ok(out)
}

fn describe_broker(
    ctx: &RequestContext,
    name: &str,
    keys: &Option<Vec<StrBytes>>,
) -> Result<Vec<DescribeConfigsResourceResult>, BrokerError> {
    let config = ctx.broker.config();
    if !name.is_empty() && name != config.node_id.to_string() {
        return Err(BrokerError::InvalidRequest(format!(
            "unknown broker {name:?}; this is broker {}",
            config.node_id
        )));
    }
    let defaults = broker_entries(&BrokerConfig::default());
    Ok(broker_entries(config)
        .into_iter()
        .zip(defaults)
        .filter(|((k, _, _), _)| wanted(keys, k))
        .map(|((k, v, kind), (_, d, _))| {
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(k))
                .with_value(Some(str_bytes(v.clone())))
                .with_read_only(true)
                .with_config_source(if v == d {
                    SOURCE_DEFAULT
                } else {
                    SOURCE_STATIC_BROKER
                })
                .with_config_type(kind.type_id())
        })
        .collect())
}

/// Handles DescribeConfigs.
pub async fn handle(
    ctx: &RequestContext,
    req: DescribeConfigsRequest,
) -> Reply<DescribeConfigsResponse> {
    let docs = ctx.api_version >= 3 && req.include_documentation;
    let mut results = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let outcome = match r.resource_type {
            RESOURCE_TOPIC => describe_topic(
                ctx,
                &r.resource_name,
                &r.configuration_keys,
                req.include_synonyms,
                docs,
            ),
            RESOURCE_BROKER => describe_broker(ctx, &r.resource_name, &r.configuration_keys),
            other => Err(BrokerError::InvalidRequest(format!(
                "resource type {other} is not supported"
            ))),
        };
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        match outcome {
            Ok(configs) => result.configs = configs,
            Err(e) => {
                result.error_code = error::code(&e);
                result.error_message = Some(str_bytes(error::message(&e)));
            }
        }
        results.push(result);
    }
    Reply::Respond(DescribeConfigsResponse::default().with_results(results))
}
