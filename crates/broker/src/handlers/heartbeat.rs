//! Heartbeat (key 12): keeps a member's session alive and tells it about rebalances.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext};
use crate::error;
use crate::group::coordinator::Unanswered;
use crate::group::state::{Event, HeartbeatRequest as Beat, Reply as GroupReply};
use crate::group::{self, GroupError};

/// Served versions: 0-4 (v3+ static membership).
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

/// Handles Heartbeat.
pub async fn handle(ctx: &RequestContext, req: HeartbeatRequest) -> Reply<HeartbeatResponse> {
    let group_id = req.group_id.0.to_string();
    let result = if group_id.is_empty() {
        Some(GroupError::InvalidGroupId)
    } else if let Err(e) = group::ready(&ctx.broker).await {
        Some(e)
    } else {
        let beat = Beat {
            req: 0,
            member_id: req.member_id.to_string(),
            group_instance_id: req.group_instance_id.map(|i| i.to_string()),
            generation_id: req.generation_id,
        };
        match ctx
            .broker
            .groups()
            .submit(&ctx.shutdown, &group_id, false, |id| {
                Event::Heartbeat(Beat { req: id, ..beat })
            })
            .await
        {
            Ok(GroupReply::Heartbeat(e)) => e,
            Ok(_) => Some(GroupError::CoordinatorNotAvailable),
            Err(Unanswered::NoGroup) => Some(GroupError::UnknownMemberId),
            Err(Unanswered::Interrupted) => Some(GroupError::NotCoordinator),
            Err(Unanswered::Refused(e)) => Some(e),
        }
    };
    Reply::Respond(HeartbeatResponse::default().with_error_code(error::group_code(result.as_ref())))
}
