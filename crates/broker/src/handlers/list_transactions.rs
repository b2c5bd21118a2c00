use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::list_transactions_response::TransactionState;
use strom_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::{Operation, ResourceType};
use crate::txn::store::TxnStatus;

/// Transactional ids, filtered by state, producer id, open duration (v1+) and id pattern
/// (v2+, a regular expression matched against the whole id is not supported: the pattern is
/// matched as a literal substring).
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut unknown = Vec::new();
    let mut states = Vec::new();
    for f in &req.state_filters {
        match TxnStatus::ALL.iter().find(|s| s.name() == f.as_str()) {
            Some(s) => states.push(*s),
            None => unknown.push(f.clone()),
        }
    }
    let now = crate::now_ms();
    let pattern = req
        .transactional_id_pattern
        .as_ref()
        .map(|p| p.as_str().to_string())
        .filter(|p| !p.is_empty() && ctx.api_version >= 2);
    let list = broker
        .txns
        .describe(None)
        .into_iter()
        .filter_map(|(_, v)| v)
        .filter(|v| states.is_empty() || states.contains(&v.status))
        .filter(|v| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.contains(&ProducerId(v.producer_id))
        })
        .filter(|v| {
            req.duration_filter < 0
                || ctx.api_version < 1
                || (v.status == TxnStatus::Ongoing
                    && v.start_ms >= 0
                    && now - v.start_ms >= req.duration_filter)
        })
        .filter(|v| {
            pattern
                .as_ref()
                .is_none_or(|p| v.transactional_id.contains(p.as_str()))
        })
        // Only the ids the principal may describe; the others are left out without a log line.
        .filter(|v| {
            broker.authorize_quietly(
                ctx,
                Operation::Describe,
                ResourceType::TransactionalId,
                &v.transactional_id,
            )
        })
        .map(|v| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(str_bytes(v.transactional_id)))
                .with_producer_id(ProducerId(v.producer_id))
                .with_transaction_state(str_bytes(v.status.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_error_code(ec::NONE)
        .with_unknown_state_filters(unknown)
        .with_transaction_states(list)
}

/// The ListTransactions API: its versions, handler and the rest of its story (see [`Api`]).
pub struct ListTransactions;

impl Api for ListTransactions {
    const KEY: ApiKey = ApiKey::ListTransactions;
    const VERSIONS: (i16, i16) = (0, 2);
    type Request = ListTransactionsRequest;
    type Response = ListTransactionsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
