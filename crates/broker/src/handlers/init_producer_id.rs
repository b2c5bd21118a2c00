use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;
use crate::security::acl::ResourceType;

/// A producer id for an idempotent producer, or the producer id and a new epoch of a
/// transactional id (fencing its earlier instances).
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let transactional_id = req
        .transactional_id
        .as_ref()
        .map(|t| t.as_str().to_string())
        .filter(|t| !t.is_empty());
    let result = match transactional_id {
        None => broker
            .txns
            .new_producer_id(&**broker)
            .await
            .map(|pid| (pid, 0)),
        Some(id) => {
            let expected =
                (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
            broker
                .txns
                .init_producer_id(
                    &**broker,
                    &id,
                    req.transaction_timeout_ms,
                    expected,
                    ctx.api_version,
                )
                .await
        }
    };
    let resp = InitProducerIdResponse::default();
    match result {
        Ok((pid, epoch)) => resp
            .with_error_code(ec::NONE)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        Err(code) => resp
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}

/// An idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
fn idempotent_write_allowed(broker: &Broker, ctx: &RequestContext) -> bool {
    let image = broker.image();
    let principal = ctx.session.principal();
    let host = ctx.peer.ip().to_string();
    let quiet = |op, rt, name: &str| {
        broker
            .authorizer
            .authorize(&image.acls, &principal, &host, op, rt, name)
    };
    if quiet(
        Operation::IdempotentWrite,
        ResourceType::Cluster,
        crate::security::acl::CLUSTER_NAME,
    ) || image
        .topics
        .keys()
        .any(|t| quiet(Operation::Write, ResourceType::Topic, t))
        || image.acls.iter().any(|b| {
            b.resource_type == ResourceType::Topic as i8
                && b.permission_type == crate::security::acl::PERMISSION_ALLOW
                && (b.operation == Operation::Write as i8 || b.operation == Operation::All as i8)
                && (b.principal == principal || b.principal == "User:*")
                && quiet(Operation::Write, ResourceType::Topic, &b.resource_name)
        })
    {
        return true;
    }
    broker.authorize_cluster(ctx, Operation::IdempotentWrite)
}

/// The InitProducerId API: its versions, handler and the rest of its story (see [`Api`]).
pub struct InitProducerId;

impl Api for InitProducerId {
    const KEY: ApiKey = ApiKey::InitProducerId;
    const VERSIONS: (i16, i16) = (0, 5);
    type Request = InitProducerIdRequest;
    type Response = InitProducerIdResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_response(_req: &Self::Request, _version: i16, code: i16) -> Option<Self::Response> {
        Some(
            Self::Response::default()
                .with_error_code(code)
                .with_producer_id(strom_protocol::messages::ProducerId(-1))
                .with_producer_epoch(-1),
        )
    }

    /// A transactional producer needs WRITE on its transactional id, an idempotent one
    /// IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
    fn authorize(
        broker: &Broker,
        ctx: &RequestContext,
        req: &Self::Request,
    ) -> Option<Self::Response> {
        let (allowed, code) = match &req.transactional_id {
            Some(id) => (
                broker.authorize(ctx, Operation::Write, ResourceType::TransactionalId, id),
                ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            ),
            None => (
                idempotent_write_allowed(broker, ctx),
                ec::CLUSTER_AUTHORIZATION_FAILED,
            ),
        };
        (!allowed)
            .then(|| Self::error_response(req, ctx.api_version, code))
            .flatten()
    }

    fn route(broker: &Broker, ctx: &RequestContext, req: &Self::Request) -> Option<Self::Response> {
        let elsewhere = req
            .transactional_id
            .as_ref()
            .is_some_and(|id| !broker.txns.owns(broker, id));
        elsewhere
            .then(|| Self::error_response(req, ctx.api_version, ec::NOT_COORDINATOR))
            .flatten()
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
