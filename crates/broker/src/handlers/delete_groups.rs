//! DeleteGroups (key 42): deletes empty groups and their committed offsets (tombstones in
//! `__consumer_offsets`).

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::error::{self, BrokerError};
use crate::group::{self, GroupError};

/// Served versions: 0-2.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// Handles DeleteGroups.
pub async fn handle(ctx: &RequestContext, req: DeleteGroupsRequest) -> Reply<DeleteGroupsResponse> {
    let ready = group::ready(&ctx.broker).await;
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        let group = id.0.to_string();
        let err = |source| BrokerError::Group {
            group: group.clone(),
            source,
        };
        let result = if group.is_empty() {
            Err(err(GroupError::InvalidGroupId))
        } else if let Err(e) = &ready {
            Err(err(e.clone()))
        } else {
            // Answered once the tombstones are replicated.
            ctx.broker
                .groups()
                .delete_group(&ctx.shutdown, &group)
                .await
        };
        let code = match &result {
            Ok(()) => 0,
            Err(e) => {
                tracing::debug!(error = %error::message(e), "delete group rejected");
                error::code(e)
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    Reply::Respond(DeleteGroupsResponse::default().with_results(results))
}
