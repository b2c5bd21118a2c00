use std::sync::Arc;

use strom_protocol::messages::find_coordinator_response::Coordinator;
use strom_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use strom_protocol::{StrBytes, error_code as ec, str_bytes};

use super::message;
use crate::broker::Broker;
use crate::group;
use crate::registry::RequestContext;

/// Coordinator key types.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let (host, port) = broker.endpoint(&ctx.session.listener.name);
    let port = port as i32;
    let ready = match req.key_type {
        GROUP => group::ensure_offsets_topic(broker).await,
        TRANSACTION => crate::txn::ensure_txn_topic(broker).await,
        _ => Err(ec::INVALID_REQUEST),
    };
    let code = ready.err().unwrap_or(ec::NONE);
    let text = |code: i16| {
        message(
            code,
            match req.key_type {
                GROUP => "the offsets topic cannot be created".to_string(),
                TRANSACTION => "the transaction state topic cannot be created".to_string(),
                other => format!("unknown coordinator key type {other}"),
            },
        )
    };
    let (node, host, port) = if code == ec::NONE {
        (broker.node_id, host, port)
    } else {
        (-1, String::new(), -1)
    };
    if ctx.api_version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key: StrBytes| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host.clone()))
                    .with_port(port)
                    .with_error_code(code)
                    .with_error_message(text(code))
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let resp = FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(BrokerId(node))
        .with_host(str_bytes(host))
        .with_port(port);
    if ctx.api_version >= 1 {
        resp.with_error_message(text(code))
    } else {
        resp
    }
}
