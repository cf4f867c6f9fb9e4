//! JoinGroup (key 11): joins (or rejoins) a group; the answer waits until the rebalance
//! completes or the rebalance timeout passes (see [`crate::group::coordinator`]).

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext, str_bytes};
use crate::error;
use crate::group::coordinator::Unanswered;
use crate::group::state::{Event, JoinRequest, JoinResponse, Protocol, Reply as GroupReply};
use crate::group::{self, GroupCoordinator, GroupError};

/// Served versions: 0-9 (v4+ KIP-394 member ids, v5+ static membership, v9 skip assignment).
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 9 };

fn error_response(member_id: String, e: GroupError) -> JoinResponse {
    JoinResponse {
        error: Some(e),
        member_id,
        generation_id: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        skip_assignment: false,
        members: Vec::new(),
    }
}

fn encode(version: i16, r: JoinResponse) -> JoinGroupResponse {
    // Before v7 the protocol name is not nullable; Kafka sends "" there.
    let protocol_name = match r.protocol_name {
        None if version < 7 => Some(String::new()),
        other => other,
    };
    JoinGroupResponse::default()
        .with_error_code(error::group_code(r.error.as_ref()))
        .with_generation_id(r.generation_id)
        .with_protocol_type(r.protocol_type.map(str_bytes))
        .with_protocol_name(protocol_name.map(str_bytes))
        .with_leader(str_bytes(r.leader))
        .with_skip_assignment(version >= 9 && r.skip_assignment)
        .with_member_id(str_bytes(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(
                            m.group_instance_id.filter(|_| version >= 5).map(str_bytes),
                        )
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}

/// Handles JoinGroup.
pub async fn handle(ctx: &RequestContext, req: JoinGroupRequest) -> Reply<JoinGroupResponse> {
    let v = ctx.api_version;
    let group_id = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let coordinator = ctx.broker.groups();
    let early = if group_id.is_empty() {
        Some(GroupError::InvalidGroupId)
    } else if let Err(e) = coordinator
        .group_config()
        .check_session_timeout(req.session_timeout_ms)
    {
        Some(e)
    } else {
        group::ready(&ctx.broker).await.err()
    };
    if let Some(e) = early {
        return Reply::Respond(encode(v, error_response(member_id, e)));
    }
    let client_id = ctx.client_id.clone().unwrap_or_default();
    let instance = req.group_instance_id.as_ref().map(|i| i.to_string());
    let prefix = instance.clone().unwrap_or_else(|| client_id.clone());
    let request = JoinRequest {
        req: 0,
        member_id: member_id.clone(),
        fresh_member_id: GroupCoordinator::member_id(&prefix),
        group_instance_id: instance,
        client_id,
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout bounds the rebalance.
        rebalance_timeout_ms: if v >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| Protocol {
                name: p.name.to_string(),
                metadata: p.metadata,
            })
            .collect(),
        require_known_member_id: v >= 4,
        supports_skip_assignment: v >= 9,
    };
    // A known member id in an unknown group is rejected; a new member creates the group.
    let create = member_id.is_empty();
    let reply = coordinator
        .submit(&ctx.shutdown, &group_id, create, |id| {
            Event::Join(JoinRequest { req: id, ..request })
        })
        .await;
    let resp = match reply {
        Ok(GroupReply::Join(j)) => j,
        Ok(_) => error_response(member_id, GroupError::CoordinatorNotAvailable),
        Err(Unanswered::NoGroup) => error_response(member_id, GroupError::UnknownMemberId),
        Err(Unanswered::Interrupted) => error_response(member_id, GroupError::NotCoordinator),
        Err(Unanswered::Refused(e)) => error_response(member_id, e),
    };
    Reply::Respond(encode(v, resp))
}
