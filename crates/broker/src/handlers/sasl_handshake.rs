use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use strom_protocol::str_bytes;

use crate::broker::Broker;
use crate::handlers::{Api, Quota};
use crate::request::RequestContext;

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

/// The SaslHandshake API: its versions, handler and the rest of its story (see [`Api`]).
pub struct SaslHandshake;

impl Api for SaslHandshake {
    const KEY: ApiKey = ApiKey::SaslHandshake;
    const VERSIONS: (i16, i16) = (1, 1);
    const QUOTA: Quota = Quota::Exempt;
    type Request = SaslHandshakeRequest;
    type Response = SaslHandshakeResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }
}
