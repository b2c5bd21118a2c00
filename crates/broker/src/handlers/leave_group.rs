use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::leave_group_response::MemberResponse;
use strom_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::Broker;
use crate::group;
use crate::handlers::Api;
use crate::request::RequestContext;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let group_id = req.group_id.as_str().to_string();
    // v0-v2 name one member; v3+ a batch of (member id, instance id).
    let members: Vec<(String, Option<String>)> = if ctx.api_version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.as_str().to_string(),
                    m.group_instance_id.as_ref().map(|s| s.as_str().to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.as_str().to_string(), None)]
    };
    let (code, codes, persist) = broker.groups.leave(&group_id, members.clone());
    if let Some((g, value)) = persist {
        let _ = broker
            .groups
            .persist(&**broker, &g, vec![group::group_record(&g, &value)]);
    }
    if ctx.api_version >= 3 {
        let responses = members
            .into_iter()
            .zip(codes)
            .map(|((id, instance), c)| {
                MemberResponse::default()
                    .with_member_id(strom_protocol::str_bytes(id))
                    .with_group_instance_id(instance.map(strom_protocol::str_bytes))
                    .with_error_code(c)
            })
            .collect();
        LeaveGroupResponse::default()
            .with_error_code(code)
            .with_members(responses)
    } else {
        LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(code))
    }
}

/// The LeaveGroup API: its versions, handler and the rest of its story (see [`Api`]).
pub struct LeaveGroup;

impl Api for LeaveGroup {
    const KEY: ApiKey = ApiKey::LeaveGroup;
    const VERSIONS: (i16, i16) = (0, 5);
    type Request = LeaveGroupRequest;
    type Response = LeaveGroupResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_response(_req: &Self::Request, _version: i16, code: i16) -> Option<Self::Response> {
        Some(Self::Response::default().with_error_code(code))
    }

    fn authorize(
        broker: &Broker,
        ctx: &RequestContext,
        req: &Self::Request,
    ) -> Option<Self::Response> {
        super::authorize_group::<Self>(broker, ctx, req, &req.group_id)
    }

    fn route(broker: &Broker, ctx: &RequestContext, req: &Self::Request) -> Option<Self::Response> {
        super::route_group::<Self>(broker, ctx, req, &req.group_id)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        count(r.error_code);
        r.members.iter().for_each(|m| count(m.error_code));
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
