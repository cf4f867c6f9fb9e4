//! OffsetDelete (key 47): deletes a group's committed offsets for partitions of topics it does
//! not consume (GROUP_SUBSCRIBED_TO_TOPIC otherwise).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::error::{self, BrokerError};
use crate::group::{self, GroupError};

/// Served versions: 0.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

/// Handles OffsetDelete.
pub async fn handle(ctx: &RequestContext, req: OffsetDeleteRequest) -> Reply<OffsetDeleteResponse> {
    let group_id = req.group_id.0.to_string();
    let broker = &ctx.broker;
    let group_error = |source| BrokerError::Group {
        group: group_id.clone(),
        source,
    };
    if group_id.is_empty() {
        let e = group_error(GroupError::InvalidGroupId);
        return Reply::Respond(OffsetDeleteResponse::default().with_error_code(error::code(&e)));
    }
    if let Err(e) = group::ready(broker).await {
        let e = group_error(e);
        return Reply::Respond(OffsetDeleteResponse::default().with_error_code(error::code(&e)));
    }
    // Partitions of unknown topics fail on their own; the rest go to the group.
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        for p in &t.partitions {
            match broker.partition(&name, p.partition_index) {
                Ok(_) => known.push((name.clone(), p.partition_index)),
                Err(e) => unknown.push(((name.clone(), p.partition_index), error::code(&e))),
            }
        }
    }
    let results = match broker
        .groups()
        .delete_offsets(&ctx.shutdown, &group_id, known)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return Reply::Respond(
                OffsetDeleteResponse::default().with_error_code(error::code(&e)),
            );
        }
    };
    let code_of = |tp: &(String, i32)| -> i16 {
        results
            .iter()
            .find(|(k, _)| k == tp)
            .map(|(_, e)| error::group_code(e.as_ref()))
            .or_else(|| unknown.iter().find(|(k, _)| k == tp).map(|(_, c)| *c))
            .unwrap_or(0)
    };
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code_of(&(name.clone(), p.partition_index)))
                        })
                        .collect(),
                )
        })
        .collect();
    Reply::Respond(OffsetDeleteResponse::default().with_topics(topics))
}
