//! FindCoordinator (key 10): every group's coordinator is this node (it leads every partition
//! of `__consumer_offsets`, which the first lookup creates, as Kafka's does). v4+ batches keys.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext, str_bytes};
use crate::error::{self, BrokerError};
use crate::group::{self, GroupError};

/// Served versions (v6 adds share-group keys, which are not supported).
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// `key_type` of consumer groups.
const GROUP_KEY: i8 = 0;
/// `key_type` of transactional ids.
const TRANSACTION_KEY: i8 = 1;

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
    let endpoint = ctx.broker.advertised_for(&ctx.listener);
    let node_id = ctx.broker.config().node_id;
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            let result = match req.key_type {
                GROUP_KEY => ready.clone().map_err(|e| BrokerError::Group {
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
                Ok(()) => c
                    .with_node_id(BrokerId(node_id))
                    .with_host(str_bytes(endpoint.host.clone()))
                    .with_port(i32::from(endpoint.port)),
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
