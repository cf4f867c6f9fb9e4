//! CreatePartitions (key 37): grows a topic's partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext, str_bytes};
use crate::error::{self, BrokerError};

/// Served versions.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

/// Handles CreatePartitions.
pub async fn handle(
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> Reply<CreatePartitionsResponse> {
    let node_id = ctx.broker.config().node_id;
    let mut results = Vec::with_capacity(req.topics.len());
    for topic in req.topics {
        let name = topic.name.0.to_string();
        let current = ctx.broker.topic(&name).map(|t| t.partition_count);
        // Clients send an empty list as often as null for "no manual assignment".
        let assignments = topic.assignments.as_ref().filter(|a| !a.is_empty());
        let check = match (assignments, current) {
            (Some(a), Some(cur)) if a.len() as i32 != topic.count - cur => {
                Err(BrokerError::InvalidReplicaAssignment(format!(
                    "{} assignments given for {} new partitions",
                    a.len(),
                    topic.count - cur
                )))
            }
            (Some(_), _) if ctx.broker.in_cluster() => Err(BrokerError::InvalidReplicaAssignment(
                "manual replica assignments are not supported in a cluster yet".into(),
            )),
            (Some(a), _)
                if a.iter()
                    .any(|x| x.broker_ids.len() != 1 || x.broker_ids[0].0 != node_id) =>
            {
                Err(BrokerError::InvalidReplicaAssignment(format!(
                    "every new partition must be assigned to exactly broker {node_id}"
                )))
            }
            _ => Ok(()),
        };
        let outcome = match check {
            Ok(()) => {
                let (n, count, only) = (name.clone(), topic.count, req.validate_only);
                ctx.broker
                    .blocking(move |b| b.create_partitions(&n, count, only))
                    .await
            }
            Err(e) => Err(e),
        };
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name);
        if let Err(e) = outcome {
            result.error_code = error::code(&e);
            result.error_message = Some(str_bytes(error::message(&e)));
        }
        results.push(result);
    }
    Reply::Respond(CreatePartitionsResponse::default().with_results(results))
}
