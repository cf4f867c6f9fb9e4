//! IncrementalAlterConfigs (key 44): SET/DELETE/APPEND/SUBTRACT on topic configs. Each resource
//! is validated as a whole and then applied atomically; broker configs are static.

use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::VersionRange;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{Reply, RequestContext, str_bytes};
use crate::error::{self, BrokerError, Result};
use crate::topic_config::{self, ConfigKind};

/// Served versions.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Applies the resource's operations to the topic's current overrides.
fn apply(
    ctx: &RequestContext,
    r: &AlterConfigsResource,
) -> Result<(String, BTreeMap<String, String>)> {
    let name = r.resource_name.to_string();
    let topic = ctx
        .broker
        .topic(&name)
        .ok_or_else(|| BrokerError::UnknownTopicOrPartition {
            topic: name.clone(),
            partition: -1,
        })?;
    let mut configs = topic.configs.clone();
    for c in &r.configs {
        let key = c.name.as_str();
        let def = topic_config::def(key).ok_or_else(|| {
            BrokerError::InvalidConfig(format!("{key}: unknown or unsupported topic config"))
        })?;
        match c.config_operation {
            OP_SET => {
                let v = topic_config::validate(key, c.value.as_deref())?;
                configs.insert(key.to_string(), v);
            }
            OP_DELETE => {
                configs.remove(key);
            }
            OP_APPEND | OP_SUBTRACT => {
                if def.kind != ConfigKind::List {
                    return Err(BrokerError::InvalidConfig(format!(
                        "{key}: APPEND/SUBTRACT only apply to list configs"
                    )));
                }
                let current = configs
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| topic_config::broker_default(ctx.broker.config(), key));
                let mut items: Vec<String> = current
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                let given: Vec<String> = c
                    .value
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if c.config_operation == OP_APPEND {
                    for g in given {
                        if !items.contains(&g) {
                            items.push(g);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                let v = topic_config::validate(key, Some(&items.join(",")))?;
                configs.insert(key.to_string(), v);
            }
            other => {
                return Err(BrokerError::InvalidRequest(format!(
                    "unknown config operation {other}"
                )));
            }
        }
    }
    Ok((name, configs))
}

/// Handles IncrementalAlterConfigs.
pub async fn handle(
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> Reply<IncrementalAlterConfigsResponse> {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let outcome = match r.resource_type {
            RESOURCE_TOPIC => match apply(ctx, &r) {
                Ok((name, configs)) => {
                    let only = req.validate_only;
                    ctx.broker
                        .blocking(move |b| b.set_topic_configs(&name, configs, only))
                        .await
                }
                Err(e) => Err(e),
            },
            RESOURCE_BROKER => Err(BrokerError::InvalidRequest(
                "broker configs are static; change the config file and restart".into(),
            )),
            other => Err(BrokerError::InvalidRequest(format!(
                "resource type {other} is not supported"
            ))),
        };
        let mut result = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        if let Err(e) = outcome {
            result.error_code = error::code(&e);
            result.error_message = Some(str_bytes(error::message(&e)));
        }
        responses.push(result);
    }
    Reply::Respond(IncrementalAlterConfigsResponse::default().with_responses(responses))
}
