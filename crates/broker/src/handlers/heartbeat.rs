use std::sync::Arc;

use crate::handlers::Api;
use crate::security::acl::Operation;
use crate::security::acl::ResourceType;
use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;
use crate::registry::RequestContext;

pub async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    req: HeartbeatRequest,
) -> HeartbeatResponse {
    let code = broker.groups.heartbeat(
        req.group_id.as_str(),
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
        req.generation_id,
    );
    HeartbeatResponse::default().with_error_code(code)
}

/// Heartbeat: its key, the versions strom advertises, and its handler.
pub struct Heartbeat;

impl Api for Heartbeat {
    const KEY: ApiKey = ApiKey::Heartbeat;
    const VERSIONS: (i16, i16) = (0, 4);
    type Request = strom_protocol::messages::HeartbeatRequest;
    type Response = strom_protocol::messages::HeartbeatResponse;

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
        let allowed = broker.authorize(ctx, Operation::Read, ResourceType::Group, &req.group_id);
        (!allowed)
            .then(|| Self::error_response(req, ctx.api_version, ec::GROUP_AUTHORIZATION_FAILED))
            .flatten()
    }

    fn route(broker: &Broker, ctx: &RequestContext, req: &Self::Request) -> Option<Self::Response> {
        (!broker.groups.owns(broker, &req.group_id))
            .then(|| Self::error_response(req, ctx.api_version, ec::NOT_COORDINATOR))
            .flatten()
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        count(r.error_code);
    }
}
