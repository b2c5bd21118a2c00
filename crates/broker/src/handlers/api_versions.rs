use std::sync::Arc;

use strom_protocol::messages::api_versions_response::ApiVersion;
use strom_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::broker::Broker;
use crate::registry::{APIS, RequestContext};

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

pub async fn handle(
    _broker: &Arc<Broker>,
    _ctx: &RequestContext,
    _req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_list())
}
