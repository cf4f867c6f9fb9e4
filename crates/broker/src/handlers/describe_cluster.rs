//! DescribeCluster (key 60): the cluster id, the `controller_id` Metadata reports (a live
//! broker, see [`super::metadata`]) and the live brokers, all from the broker's metadata image.

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
        .with_controller_id(BrokerId(super::metadata::controller_id(&broker.image())));
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
    resp.brokers = super::metadata::live_brokers(&broker.image(), &ctx.listener)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.map(str_bytes))
        })
        .collect();
    Reply::Respond(resp)
}
