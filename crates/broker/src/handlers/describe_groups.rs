//! DescribeGroups (key 15): state, protocol and members (with subscription and assignment when
//! Stable, as Kafka shows them). An unknown group is "Dead" before v6 and GROUP_ID_NOT_FOUND
//! from v6, as Kafka 4 answers.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext, acl_op, str_bytes};
use crate::error;
use crate::group::GroupError;

/// Served versions: 0-6.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

/// Operations a client may perform on a group (no ACLs: all that apply to groups).
const GROUP_AUTHORIZED_OPERATIONS: i32 =
    ((1u32 << acl_op::READ) | (1 << acl_op::DELETE) | (1 << acl_op::DESCRIBE)) as i32;

/// Handles DescribeGroups.
pub async fn handle(
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
) -> Reply<DescribeGroupsResponse> {
    let v = ctx.api_version;
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default().with_group_id(id.clone());
            let described = if v >= 3 && req.include_authorized_operations {
                described.with_authorized_operations(GROUP_AUTHORIZED_OPERATIONS)
            } else {
                described
            };
            let fail = |d: DescribedGroup, e: GroupError| {
                let d = d
                    .with_error_code(error::group_code(Some(&e)))
                    .with_group_state(str_bytes("Dead"));
                if v >= 6 {
                    d.with_error_message(Some(str_bytes(e.to_string())))
                } else {
                    d
                }
            };
            if id.0.is_empty() {
                return fail(described, GroupError::InvalidGroupId);
            }
            match ctx.broker.groups().describe(&id.0) {
                Err(e) => fail(described, e),
                Ok(None) if v >= 6 => fail(described, GroupError::GroupIdNotFound),
                Ok(None) => described.with_group_state(str_bytes("Dead")),
                Ok(Some(s)) => described
                    .with_group_state(str_bytes(s.state.as_str()))
                    .with_protocol_type(str_bytes(s.protocol_type))
                    .with_protocol_data(str_bytes(s.protocol))
                    .with_members(
                        s.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(
                                        m.group_instance_id.filter(|_| v >= 4).map(str_bytes),
                                    )
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    Reply::Respond(DescribeGroupsResponse::default().with_groups(groups))
}
