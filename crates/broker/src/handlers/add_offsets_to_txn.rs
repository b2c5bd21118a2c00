use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::broker::Broker;
use crate::group::{self, OFFSETS_TOPIC};
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;
use crate::security::acl::ResourceType;

/// Adds a group's `__consumer_offsets` partition to a transaction, so that the producer can
/// commit the group's offsets in it.
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let code = match broker.groups.ensure_offsets_topic(&**broker).await {
        Err(code) => code,
        Ok(()) => {
            let partition = group::store::partition_for(
                req.group_id.as_str(),
                broker.groups.config().offsets_partitions,
            );
            broker
                .txns
                .add_partitions(
                    &**broker,
                    req.transactional_id.as_str(),
                    req.producer_id.0,
                    req.producer_epoch,
                    &[(OFFSETS_TOPIC.to_string(), partition)],
                    ctx.api_version,
                )
                .err()
                .unwrap_or(strom_protocol::error_code::NONE)
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// The AddOffsetsToTxn API: its versions, handler and the rest of its story (see [`Api`]).
pub struct AddOffsetsToTxn;

impl Api for AddOffsetsToTxn {
    const KEY: ApiKey = ApiKey::AddOffsetsToTxn;
    const VERSIONS: (i16, i16) = (0, 4);
    type Request = AddOffsetsToTxnRequest;
    type Response = AddOffsetsToTxnResponse;

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
        let code = if !broker.authorize(
            ctx,
            Operation::Write,
            ResourceType::TransactionalId,
            &req.transactional_id,
        ) {
            ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        } else if !broker.authorize(ctx, Operation::Read, ResourceType::Group, &req.group_id) {
            ec::GROUP_AUTHORIZATION_FAILED
        } else {
            return None;
        };
        Self::error_response(req, ctx.api_version, code)
    }

    fn route(broker: &Broker, ctx: &RequestContext, req: &Self::Request) -> Option<Self::Response> {
        (!broker.txns.owns(broker, &req.transactional_id))
            .then(|| Self::error_response(req, ctx.api_version, ec::NOT_COORDINATOR))
            .flatten()
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
