use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use strom_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use strom_protocol::str_bytes;

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let g = DescribedGroup::default()
                .with_authorized_operations(crate::security::acl::OPERATIONS_NOT_REQUESTED);
            if !broker.authorize(
                ctx,
                crate::security::acl::Operation::Describe,
                crate::security::acl::ResourceType::Group,
                id.as_str(),
            ) {
                return g
                    .with_group_id(id)
                    .with_error_code(strom_protocol::error_code::GROUP_AUTHORIZATION_FAILED);
            }
            if !broker.groups.owns(&**broker, id.as_str()) {
                return g
                    .with_group_id(id)
                    .with_error_code(strom_protocol::error_code::NOT_COORDINATOR);
            }
            let g = if req.include_authorized_operations {
                g.with_authorized_operations(broker.authorized_operations(
                    ctx,
                    crate::security::acl::ResourceType::Group,
                    id.as_str(),
                ))
            } else {
                g
            };
            match broker.groups.describe(id.as_str()) {
                // An unknown group is described as Dead with no members, as Kafka does.
                None => g.with_group_id(id).with_group_state(str_bytes("Dead")),
                Some(view) => g
                    .with_group_id(id)
                    .with_group_state(str_bytes(view.state))
                    .with_protocol_type(str_bytes(view.protocol_type))
                    .with_protocol_data(str_bytes(view.protocol))
                    .with_members(
                        view.members
                            .into_iter()
                            .map(|m| {
                                let member = DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment);
                                if ctx.api_version >= 4 {
                                    member.with_group_instance_id(m.instance_id.map(str_bytes))
                                } else {
                                    member
                                }
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// The DescribeGroups API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DescribeGroups;

impl Api for DescribeGroups {
    const KEY: ApiKey = ApiKey::DescribeGroups;
    const VERSIONS: (i16, i16) = (0, 5);
    type Request = DescribeGroupsRequest;
    type Response = DescribeGroupsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        r.groups.iter().for_each(|g| count(g.error_code));
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
