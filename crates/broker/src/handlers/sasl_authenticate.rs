use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use strom_protocol::str_bytes;

use crate::broker::Broker;
use crate::handlers::{Api, Quota};
use crate::request::RequestContext;

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

/// The SaslAuthenticate API: its versions, handler and the rest of its story (see [`Api`]).
pub struct SaslAuthenticate;

impl Api for SaslAuthenticate {
    const KEY: ApiKey = ApiKey::SaslAuthenticate;
    const VERSIONS: (i16, i16) = (0, 2);
    const QUOTA: Quota = Quota::Exempt;
    type Request = SaslAuthenticateRequest;
    type Response = SaslAuthenticateResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }
}
