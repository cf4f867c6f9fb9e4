//! ListGroups (key 16): every group this node coordinates, with its state (v4+) and type (v5+).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::VersionRange;

use super::{Reply, RequestContext, str_bytes};

/// Served versions: 0-5 (v4 states filter, v5 types filter).
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// All groups here speak the classic protocol.
const GROUP_TYPE: &str = "classic";

/// Handles ListGroups.
pub async fn handle(ctx: &RequestContext, req: ListGroupsRequest) -> Reply<ListGroupsResponse> {
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_string()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_string()).collect();
    let groups = ctx
        .broker
        .groups()
        .list()
        .into_iter()
        .filter(|(_, _, state)| {
            states.is_empty()
                || states
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(state.as_str()))
        })
        .filter(|_| types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case(GROUP_TYPE)))
        .map(|(id, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(protocol_type))
                .with_group_state(str_bytes(state.as_str()))
                .with_group_type(str_bytes(GROUP_TYPE))
        })
        .collect();
    Reply::Respond(ListGroupsResponse::default().with_groups(groups))
}
