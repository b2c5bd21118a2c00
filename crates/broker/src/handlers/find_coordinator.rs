use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::find_coordinator_response::Coordinator;
use strom_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use strom_protocol::{StrBytes, error_code as ec, str_bytes};

use super::message;
use crate::broker::Broker;
use crate::group;
use crate::handlers::Api;
use crate::request::RequestContext;

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
        GROUP => broker.groups.ensure_offsets_topic(&**broker).await,
        TRANSACTION => broker.txns.ensure_txn_topic(&**broker).await,
        _ => Err(ec::INVALID_REQUEST),
    };
    let code = ready.err().unwrap_or(ec::NONE);
    let text = |code: i16| {
        message(
            code,
            match req.key_type {
                _ if code == ec::GROUP_AUTHORIZATION_FAILED
                    || code == ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED =>
                {
                    "DESCRIBE is not allowed".to_string()
                }
                GROUP => "the offsets topic cannot be created".to_string(),
                TRANSACTION => "the transaction state topic cannot be created".to_string(),
                other => format!("unknown coordinator key type {other}"),
            },
        )
    };
    // The coordinator of a key is the leader of its partition of the internal topic.
    let image = broker.image();
    let locate = |key: &str| -> (i32, String, i32, i16) {
        if code != ec::NONE {
            return (-1, String::new(), -1, code);
        }
        let (topic, partition) = match req.key_type {
            TRANSACTION => (crate::txn::TXN_TOPIC, broker.txns.partition_for(key)),
            _ => (
                group::OFFSETS_TOPIC,
                group::store::partition_for(key, broker.groups.config().offsets_partitions),
            ),
        };
        let leader = image
            .topic(topic)
            .and_then(|t| t.partitions.get(partition as usize))
            .map_or(-1, |p| p.leader);
        if leader == broker.node_id {
            return (leader, host.clone(), port, ec::NONE);
        }
        match image.brokers.get(&leader).filter(|b| !b.fenced) {
            Some(b) => (leader, b.host.clone(), i32::from(b.port), ec::NONE),
            None => (-1, String::new(), -1, ec::COORDINATOR_NOT_AVAILABLE),
        }
    };
    // DESCRIBE on the group or transactional id.
    let denied = |key: &str| {
        use crate::security::acl::{Operation, ResourceType};
        match req.key_type {
            GROUP => (!broker.authorize(ctx, Operation::Describe, ResourceType::Group, key))
                .then_some(ec::GROUP_AUTHORIZATION_FAILED),
            TRANSACTION => {
                (!broker.authorize(ctx, Operation::Describe, ResourceType::TransactionalId, key))
                    .then_some(ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            }
            _ => None,
        }
    };
    if ctx.api_version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key: &StrBytes| {
                if let Some(denied) = denied(key.as_str()) {
                    return Coordinator::default()
                        .with_key(key.clone())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(denied)
                        .with_error_message(text(denied));
                }
                let (node, host, port, code) = locate(key.as_str());
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_error_code(code)
                    .with_error_message(text(code))
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    if let Some(denied) = denied(req.key.as_str()) {
        let resp = FindCoordinatorResponse::default()
            .with_error_code(denied)
            .with_node_id(BrokerId(-1))
            .with_port(-1);
        return if ctx.api_version >= 1 {
            resp.with_error_message(text(denied))
        } else {
            resp
        };
    }
    let (node, host, port, code) = locate(req.key.as_str());
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

/// The FindCoordinator API: its versions, handler and the rest of its story (see [`Api`]).
pub struct FindCoordinator;

impl Api for FindCoordinator {
    const KEY: ApiKey = ApiKey::FindCoordinator;
    const VERSIONS: (i16, i16) = (0, 6);
    type Request = FindCoordinatorRequest;
    type Response = FindCoordinatorResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        if r.coordinators.is_empty() {
            count(r.error_code);
        }
        r.coordinators.iter().for_each(|c| count(c.error_code));
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
