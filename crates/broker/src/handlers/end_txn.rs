use std::sync::Arc;

use strom_protocol::error_code as ec;
use strom_protocol::messages::{EndTxnRequest, EndTxnResponse};

use crate::broker::Broker;
use crate::registry::RequestContext;

/// Commits or aborts a transaction: the decision is written to `__transaction_state`, then
/// the markers to every partition of the transaction.
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: EndTxnRequest,
) -> EndTxnResponse {
    let code = broker
        .txns
        .end_txn(
            broker,
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
            ctx.api_version,
        )
        .err()
        .unwrap_or(ec::NONE);
    EndTxnResponse::default().with_error_code(code)
}
