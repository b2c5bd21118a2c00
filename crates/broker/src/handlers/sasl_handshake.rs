use std::sync::Arc;

use strom_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use strom_protocol::str_bytes;

use crate::broker::Broker;
use crate::registry::RequestContext;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let code = ctx
        .session
        .sasl_handshake(&broker.sasl, req.mechanism.as_str());
    SaslHandshakeResponse::default()
        .with_error_code(code)
        .with_mechanisms(
            broker
                .sasl
                .mechanisms
                .iter()
                .map(|m| str_bytes(m.clone()))
                .collect(),
        )
}
