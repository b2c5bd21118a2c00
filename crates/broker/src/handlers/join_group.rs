use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::join_group_response::JoinGroupResponseMember;
use strom_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::group::{JoinRequest, state::JoinResult};
use crate::handlers::Api;
use crate::request::RequestContext;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    let v = ctx.api_version;
    let result = match broker.groups.ensure_offsets_topic(&**broker).await {
        Err(code) => JoinResult::error(code, req.member_id.as_str()),
        Ok(()) => {
            let member_id = req.member_id.as_str().to_string();
            let join = JoinRequest {
                group_id: req.group_id.as_str().to_string(),
                member_id: member_id.clone(),
                instance_id: req
                    .group_instance_id
                    .as_ref()
                    .map(|s| s.as_str().to_string()),
                client_id: ctx
                    .header
                    .client_id
                    .as_ref()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                client_host: format!("/{}", ctx.peer.ip()),
                session_timeout_ms: req.session_timeout_ms,
                // v0 has no rebalance timeout: it equals the session timeout.
                rebalance_timeout_ms: if v >= 1 {
                    req.rebalance_timeout_ms
                } else {
                    req.session_timeout_ms
                },
                protocol_type: req.protocol_type.as_str().to_string(),
                protocols: req
                    .protocols
                    .into_iter()
                    .map(|p| (p.name.as_str().to_string(), p.metadata))
                    .collect(),
                require_known_member_id: v >= 4,
            };
            let reply = broker.groups.join(join);
            let waiting = std::time::Instant::now();
            let result = reply
                .wait(|| JoinResult::error(ec::UNKNOWN_MEMBER_ID, &member_id))
                .await;
            ctx.remote.add(waiting.elapsed());
            result
        }
    };
    let mut resp = JoinGroupResponse::default()
        .with_error_code(result.error_code)
        .with_generation_id(result.generation)
        .with_protocol_name(Some(str_bytes(result.protocol.clone().unwrap_or_default())))
        .with_leader(str_bytes(result.leader))
        .with_member_id(str_bytes(result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(|(id, instance, meta)| {
                    let m = JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(id))
                        .with_metadata(meta);
                    if v >= 5 {
                        m.with_group_instance_id(instance.map(str_bytes))
                    } else {
                        m
                    }
                })
                .collect(),
        );
    if v >= 7 {
        resp = resp.with_protocol_type(result.protocol_type.map(str_bytes));
        if result.protocol.is_none() {
            resp = resp.with_protocol_name(None);
        }
    }
    resp
}

/// The JoinGroup API: its versions, handler and the rest of its story (see [`Api`]).
pub struct JoinGroup;

impl Api for JoinGroup {
    const KEY: ApiKey = ApiKey::JoinGroup;
    const VERSIONS: (i16, i16) = (0, 9);
    type Request = JoinGroupRequest;
    type Response = JoinGroupResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_response(req: &Self::Request, _version: i16, code: i16) -> Option<Self::Response> {
        Some(
            Self::Response::default()
                .with_error_code(code)
                .with_member_id(req.member_id.clone()),
        )
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
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
