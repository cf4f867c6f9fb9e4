//! LeaveGroup (key 13): members leave at once instead of waiting for their session to expire.
//! v3+ batches members (and removes static members by instance id).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext, str_bytes};
use crate::error;
use crate::group::coordinator::Unanswered;
use crate::group::state::{Event, LeavingMember, Reply as GroupReply};
use crate::group::{self, GroupError};

/// Served versions: 0-5 (v3+ batched members).
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// Handles LeaveGroup.
pub async fn handle(ctx: &RequestContext, req: LeaveGroupRequest) -> Reply<LeaveGroupResponse> {
    let v = ctx.api_version;
    let group_id = req.group_id.0.to_string();
    let leaving: Vec<LeavingMember> = if v >= 3 {
        req.members
            .iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let outcome: Result<Vec<Option<GroupError>>, GroupError> = if group_id.is_empty() {
        Err(GroupError::InvalidGroupId)
    } else if let Err(e) = group::ready(&ctx.broker).await {
        Err(e)
    } else {
        let members = leaving.clone();
        match ctx
            .broker
            .groups()
            .submit(&ctx.shutdown, &group_id, false, |id| Event::Leave {
                req: id,
                members,
            })
            .await
        {
            Ok(GroupReply::Leave(r)) => r,
            Ok(_) => Err(GroupError::CoordinatorNotAvailable),
            // Unknown group: every member is unknown, the request itself is fine.
            Err(Unanswered::NoGroup) => Ok(vec![Some(GroupError::UnknownMemberId); leaving.len()]),
            Err(Unanswered::Interrupted) => Err(GroupError::NotCoordinator),
            Err(Unanswered::Refused(e)) => Err(e),
        }
    };
    let resp = match outcome {
        Err(e) => LeaveGroupResponse::default().with_error_code(error::group_code(Some(&e))),
        // Before v3 there is one member and its error is the response's.
        Ok(results) if v < 3 => LeaveGroupResponse::default()
            .with_error_code(error::group_code(results.first().and_then(|e| e.as_ref()))),
        Ok(results) => LeaveGroupResponse::default().with_members(
            leaving
                .into_iter()
                .zip(results)
                .map(|(m, e)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(m.group_instance_id.map(str_bytes))
                        .with_error_code(error::group_code(e.as_ref()))
                })
                .collect(),
        ),
    };
    Reply::Respond(resp)
}
