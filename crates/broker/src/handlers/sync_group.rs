//! SyncGroup (key 14): the leader hands in the assignment; every member waits for its share.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext, str_bytes};
use crate::error;
use crate::group::coordinator::Unanswered;
use crate::group::state::{Event, Reply as GroupReply, SyncRequest};
use crate::group::{self, GroupError};

/// Served versions: 0-5 (v3+ static membership, v5 protocol type/name).
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

fn error_response(e: &GroupError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(error::group_code(Some(e)))
}

/// Handles SyncGroup.
pub async fn handle(ctx: &RequestContext, req: SyncGroupRequest) -> Reply<SyncGroupResponse> {
    let group_id = req.group_id.0.to_string();
    if group_id.is_empty() {
        return Reply::Respond(error_response(&GroupError::InvalidGroupId));
    }
    if let Err(e) = group::ready(&ctx.broker).await {
        return Reply::Respond(error_response(&e));
    }
    let request = SyncRequest {
        req: 0,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|i| i.to_string()),
        generation_id: req.generation_id,
        protocol_type: req.protocol_type.map(|p| p.to_string()),
        protocol_name: req.protocol_name.map(|p| p.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let reply = ctx
        .broker
        .groups()
        .submit(&ctx.shutdown, &group_id, false, |id| {
            Event::Sync(SyncRequest { req: id, ..request })
        })
        .await;
    let resp = match reply {
        Ok(GroupReply::Sync(s)) => SyncGroupResponse::default()
            .with_error_code(error::group_code(s.error.as_ref()))
            .with_protocol_type(s.protocol_type.map(str_bytes))
            .with_protocol_name(s.protocol_name.map(str_bytes))
            .with_assignment(s.assignment),
        Ok(_) => error_response(&GroupError::CoordinatorNotAvailable),
        Err(Unanswered::NoGroup) => error_response(&GroupError::UnknownMemberId),
        Err(Unanswered::Interrupted) => error_response(&GroupError::NotCoordinator),
        Err(Unanswered::Refused(e)) => error_response(&e),
    };
    Reply::Respond(resp)
}
