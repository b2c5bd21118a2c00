use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use strom_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    if !broker.authorize_cluster(ctx, Operation::DescribeConfigs) {
        return DescribeClientQuotasResponse::default()
            .with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED)
            .with_entries(None);
    }
    let image = broker.image();
    let matches = |entity: &crate::quota::Entity| {
        req.components.iter().all(|c| {
            let found = entity.iter().find(|(t, _)| t == c.entity_type.as_str());
            match (c.match_type, found) {
                (_, None) => false,
                (MATCH_EXACT, Some((_, name))) => {
                    name.as_deref() == c._match.as_ref().map(|m| m.as_str())
                }
                (MATCH_DEFAULT, Some((_, name))) => name.is_none(),
                (_, Some(_)) => true,
            }
        }) && (!req.strict
            || entity
                .iter()
                .all(|(t, _)| req.components.iter().any(|c| c.entity_type.as_str() == t)))
    };
    let entries = image
        .client_quotas
        .iter()
        .filter(|(entity, _)| matches(entity))
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity
                        .iter()
                        .map(|(t, n)| {
                            EntityData::default()
                                .with_entity_type(str_bytes(t.clone()))
                                .with_entity_name(n.clone().map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(k, v)| {
                            ValueData::default()
                                .with_key(str_bytes(k.clone()))
                                .with_value(*v)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

/// The DescribeClientQuotas API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DescribeClientQuotas;

impl Api for DescribeClientQuotas {
    const KEY: ApiKey = ApiKey::DescribeClientQuotas;
    const VERSIONS: (i16, i16) = (0, 1);
    type Request = DescribeClientQuotasRequest;
    type Response = DescribeClientQuotasResponse;

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
