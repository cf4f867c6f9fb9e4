//! DescribeCluster (key 60): the cluster id, controller and the one broker.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::VersionRange;

use super::{CLUSTER_AUTHORIZED_OPERATIONS, Reply, RequestContext, str_bytes};
use crate::error::{self, BrokerError};

/// Served versions (v1 adds endpoint types, v2 fenced brokers).
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// Endpoint type "brokers" (KIP-919); "controllers" (2) is not served by this broker.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

/// Handles DescribeCluster.
pub async fn handle(
    ctx: &RequestContext,
    req: DescribeClusterRequest,
) -> Reply<DescribeClusterResponse> {
    let broker = &ctx.broker;
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(broker.cluster_id()))
        .with_controller_id(BrokerId(broker.config().node_id));
    if ctx.api_version >= 1 {
        resp.endpoint_type = req.endpoint_type;
        if req.endpoint_type != ENDPOINT_TYPE_BROKERS {
            let err = BrokerError::UnsupportedEndpointType(req.endpoint_type);
            resp.error_code = error::code(&err);
            resp.error_message = Some(str_bytes(error::message(&err)));
            return Reply::Respond(resp);
        }
    }
    if req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = CLUSTER_AUTHORIZED_OPERATIONS;
    }
    let endpoint = broker.advertised_for(&ctx.listener);
    resp.brokers = vec![
        DescribeClusterBroker::default()
            .with_broker_id(BrokerId(broker.config().node_id))
            .with_host(str_bytes(endpoint.host.clone()))
            .with_port(endpoint.port as i32),
    ];
    Reply::Respond(resp)
}
