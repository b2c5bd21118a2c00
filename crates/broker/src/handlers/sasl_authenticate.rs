use std::sync::Arc;

use strom_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use strom_protocol::str_bytes;

use crate::broker::Broker;
use crate::registry::RequestContext;

use super::since;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    let image = broker.image();
    let reauth_ms = broker.config.settings().connections_max_reauth_ms;
    match ctx
        .session
        .sasl_authenticate(&broker.sasl, &image, &req.auth_bytes, reauth_ms)
    {
        Ok((reply, lifetime_ms)) => SaslAuthenticateResponse::default()
            .with_auth_bytes(reply.into())
            .with_session_lifetime_ms(since(ctx.api_version, 1, lifetime_ms)),
        Err((code, message)) => SaslAuthenticateResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message))),
    }
}
