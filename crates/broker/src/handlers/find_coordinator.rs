//! FindCoordinator (key 10): a group's coordinator is the leader of its `__consumer_offsets`
//! partition (`group::records::partition_for`, the same function the coordinator uses), read
//! from the broker's metadata image; COORDINATOR_NOT_AVAILABLE while that partition has no
//! live leader. The first lookup creates `__consumer_offsets`, as Kafka's does. v4+ batches
//! keys.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::VersionRange;

use super::metadata::{LiveBroker, live_brokers};
use super::{Reply, RequestContext, str_bytes};
use crate::error::{self, BrokerError};
use crate::group::{self, GroupError, OFFSETS_TOPIC, records};
use gregor_controller::metadata::MetadataImage;

/// Served versions (v6 adds share-group keys, which are not supported).
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// `key_type` of consumer groups.
const GROUP_KEY: i8 = 0;
/// `key_type` of transactional ids.
const TRANSACTION_KEY: i8 = 1;

/// The live broker leading `group`'s `__consumer_offsets` partition.
fn coordinator(
    image: &MetadataImage,
    group: &str,
    listener: &str,
) -> Result<LiveBroker, GroupError> {
    let topic = image
        .topics
        .get(OFFSETS_TOPIC)
        .ok_or(GroupError::CoordinatorNotAvailable)?;
    let count = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
    let index = records::partition_for(group, count);
    let leader = usize::try_from(index)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .and_then(|p| p.leader)
        .ok_or(GroupError::CoordinatorNotAvailable)?;
    live_brokers(image, listener)
        .into_iter()
        .find(|b| b.id == leader)
        .ok_or(GroupError::CoordinatorNotAvailable)
}

/// Handles FindCoordinator.
pub async fn handle(
    ctx: &RequestContext,
    req: FindCoordinatorRequest,
) -> Reply<FindCoordinatorResponse> {
    let keys: Vec<String> = if ctx.api_version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let ready = group::ready(&ctx.broker).await;
    let image = ctx.broker.image();
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            let result = match req.key_type {
                GROUP_KEY => ready
                    .clone()
                    .and_then(|()| coordinator(&image, &key, &ctx.listener))
                    .map_err(|e| BrokerError::Group {
                        group: key.clone(),
                        source: e,
                    }),
                // No transaction coordinator yet (transactions are a later issue).
                TRANSACTION_KEY => Err(BrokerError::Group {
                    group: key.clone(),
                    source: GroupError::CoordinatorNotAvailable,
                }),
                other => Err(BrokerError::InvalidRequest(format!(
                    "unknown coordinator key type {other}"
                ))),
            };
            let c = Coordinator::default().with_key(str_bytes(key));
            match result {
                Ok(b) => c
                    .with_node_id(BrokerId(b.id))
                    .with_host(str_bytes(b.host))
                    .with_port(i32::from(b.port)),
                Err(e) => c
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(error::code(&e))
                    .with_error_message(Some(str_bytes(error::message(&e)))),
            }
        })
        .collect();
    let resp = if ctx.api_version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let c = coordinators.into_iter().next().unwrap_or_default();
        FindCoordinatorResponse::default()
            .with_error_code(c.error_code)
            .with_error_message(c.error_message)
            .with_node_id(c.node_id)
            .with_host(c.host)
            .with_port(c.port)
    };
    Reply::Respond(resp)
}
