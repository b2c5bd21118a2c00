use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use strom_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use strom_protocol::str_bytes;

use crate::broker::Broker;
use crate::handlers::Api;
use crate::registry::APIS;
use crate::request::RequestContext;

/// The registry's APIs and versions, as ApiVersions lists them.
pub fn api_list() -> Vec<ApiVersion> {
    APIS.iter()
        .map(|s| {
            ApiVersion::default()
                .with_api_key(s.key as i16)
                .with_min_version(s.min)
                .with_max_version(s.max)
        })
        .collect()
}

/// The features strom supports, with the range of levels: (name, min, max).
const SUPPORTED_FEATURES: &[(&str, i16, i16)] = &[("transaction.version", 0, 2)];

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    _req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    let resp = ApiVersionsResponse::default().with_api_keys(api_list());
    // Features are tagged fields of v3+.
    if ctx.api_version < 3 {
        return resp;
    }
    let supported = SUPPORTED_FEATURES
        .iter()
        .map(|(name, min, max)| {
            SupportedFeatureKey::default()
                .with_name(str_bytes(*name))
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    let tv = broker.txns.config().version;
    let finalized = if tv > 0 {
        vec![
            FinalizedFeatureKey::default()
                .with_name(str_bytes("transaction.version"))
                .with_min_version_level(tv)
                .with_max_version_level(tv),
        ]
    } else {
        Vec::new()
    };
    resp.with_supported_features(supported)
        .with_finalized_features_epoch(if tv > 0 { 1 } else { -1 })
        .with_finalized_features(finalized)
}

/// The ApiVersions API: its versions, handler and the rest of its story (see [`Api`]).
pub struct ApiVersions;

impl Api for ApiVersions {
    const KEY: ApiKey = ApiKey::ApiVersions;
    const VERSIONS: (i16, i16) = (0, 4);
    type Request = ApiVersionsRequest;
    type Response = ApiVersionsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        count(r.error_code);
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
