use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::list_groups_response::ListedGroup;
use strom_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use strom_protocol::str_bytes;

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.as_str().to_ascii_lowercase())
        .collect();
    let types: Vec<String> = req
        .types_filter
        .iter()
        .map(|s| s.as_str().to_ascii_lowercase())
        .collect();
    // DESCRIBE on the cluster lists every group; otherwise only the groups one may describe.
    use crate::security::acl::{Operation, ResourceType};
    let all = broker.authorize_quietly(
        ctx,
        Operation::Describe,
        ResourceType::Cluster,
        crate::security::acl::CLUSTER_NAME,
    );
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| {
            all || broker.authorize_quietly(
                ctx,
                Operation::Describe,
                ResourceType::Group,
                &g.group_id,
            )
        })
        .filter(|g| states.is_empty() || states.contains(&g.state.to_ascii_lowercase()))
        .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type))
        .map(|g| {
            let group_type = g.group_type;
            let l = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(g.protocol_type));
            let l = if ctx.api_version >= 4 {
                l.with_group_state(str_bytes(g.state))
            } else {
                l
            };
            if ctx.api_version >= 5 {
                l.with_group_type(str_bytes(group_type))
            } else {
                l
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

/// The ListGroups API: its versions, handler and the rest of its story (see [`Api`]).
pub struct ListGroups;

impl Api for ListGroups {
    const KEY: ApiKey = ApiKey::ListGroups;
    const VERSIONS: (i16, i16) = (0, 5);
    type Request = ListGroupsRequest;
    type Response = ListGroupsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        count(r.error_code);
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
