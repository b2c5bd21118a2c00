use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::group::{self, state::SyncResult};
use crate::handlers::Api;
use crate::request::RequestContext;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: SyncGroupRequest,
) -> SyncGroupResponse {
    let group_id = req.group_id.as_str().to_string();
    let (reply, persist) = broker.groups.sync(
        &group_id,
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
        req.generation_id,
        req.assignments
            .into_iter()
            .map(|a| (a.member_id.as_str().to_string(), a.assignment))
            .collect(),
    );
    if let Some((g, value)) = persist
        && let Err(code) =
            broker
                .groups
                .persist(&**broker, &g, vec![group::group_record(&g, &value)])
    {
        tracing::warn!(group = %g, code, "group metadata not persisted");
    }
    let waiting = std::time::Instant::now();
    let result = reply
        .wait(|| SyncResult::error(ec::REBALANCE_IN_PROGRESS))
        .await;
    ctx.remote.add(waiting.elapsed());
    let resp = SyncGroupResponse::default()
        .with_error_code(result.error_code)
        .with_assignment(result.assignment);
    if ctx.api_version >= 5 {
        resp.with_protocol_type(result.protocol_type.map(str_bytes))
            .with_protocol_name(result.protocol.map(str_bytes))
    } else {
        resp
    }
}

/// The SyncGroup API: its versions, handler and the rest of its story (see [`Api`]).
pub struct SyncGroup;

impl Api for SyncGroup {
    const KEY: ApiKey = ApiKey::SyncGroup;
    const VERSIONS: (i16, i16) = (0, 5);
    type Request = SyncGroupRequest;
    type Response = SyncGroupResponse;

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
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
