use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;
use crate::security::acl::ResourceType;

/// Commits or aborts a transaction: the decision is written to `__transaction_state`, then
/// the markers to every partition of the transaction (with transactions v2, under a bumped
/// epoch that the response returns).
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: EndTxnRequest,
) -> EndTxnResponse {
    let result = broker
        .txns
        .end_txn(
            &**broker,
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
            ctx.api_version,
        )
        .await;
    // v5 tells the producer the id and epoch of its next transaction.
    let (code, (pid, epoch)) = match result {
        Ok(next) => (ec::NONE, next),
        Err(code) => (code, (-1, -1)),
    };
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
}

/// The EndTxn API: its versions, handler and the rest of its story (see [`Api`]).
pub struct EndTxn;

impl Api for EndTxn {
    const KEY: ApiKey = ApiKey::EndTxn;
    const VERSIONS: (i16, i16) = (0, 5);
    type Request = EndTxnRequest;
    type Response = EndTxnResponse;

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

    fn authorize(
        broker: &Broker,
        ctx: &RequestContext,
        req: &Self::Request,
    ) -> Option<Self::Response> {
        let allowed = broker.authorize(
            ctx,
            Operation::Write,
            ResourceType::TransactionalId,
            &req.transactional_id,
        );
        (!allowed)
            .then(|| {
                Self::error_response(
                    req,
                    ctx.api_version,
                    ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                )
            })
            .flatten()
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
