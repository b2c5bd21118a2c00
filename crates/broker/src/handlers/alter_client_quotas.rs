use std::sync::Arc;

use strom_metadata::MetadataRecord;
use strom_protocol::ApiKey;
use strom_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use strom_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::quota::{
    CONSUMER_BYTE_RATE, CONTROLLER_MUTATION_RATE, ENTITY_CLIENT_ID, ENTITY_USER,
    PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE,
};
use crate::request::RequestContext;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let allowed = broker.authorize_cluster(ctx, Operation::AlterConfigs);
    let _guard = broker.controller.lock().await;
    let mut results = Vec::new();
    for e in req.entries {
        let echo: Vec<EntityData> = e
            .entity
            .iter()
            .map(|d| {
                EntityData::default()
                    .with_entity_type(d.entity_type.clone())
                    .with_entity_name(d.entity_name.clone())
            })
            .collect();
        let result = |code: i16, message: Option<String>| {
            EntryData::default()
                .with_error_code(code)
                .with_error_message(message.map(str_bytes))
                .with_entity(echo.clone())
        };
        if !allowed {
            results.push(result(ec::CLUSTER_AUTHORIZATION_FAILED, None));
            continue;
        }
        let mut entity: Vec<(String, Option<String>)> = e
            .entity
            .iter()
            .map(|d| {
                (
                    d.entity_type.to_string(),
                    d.entity_name.as_ref().map(|n| n.to_string()),
                )
            })
            .collect();
        entity.sort();
        let bad_entity = entity.is_empty()
            || entity
                .iter()
                .any(|(t, _)| t != ENTITY_USER && t != ENTITY_CLIENT_ID)
            || entity.windows(2).any(|w| w[0].0 == w[1].0);
        if bad_entity {
            results.push(result(
                ec::INVALID_REQUEST,
                Some("entities are user, client-id or both, each once".into()),
            ));
            continue;
        }
        let mut records = Vec::new();
        let mut error = None;
        for op in &e.ops {
            let key = op.key.to_string();
            let known = [
                PRODUCER_BYTE_RATE,
                CONSUMER_BYTE_RATE,
                REQUEST_PERCENTAGE,
                CONTROLLER_MUTATION_RATE,
            ];
            if !known.contains(&key.as_str()) {
                error = Some(format!("unknown quota {key:?}"));
                break;
            }
            let valid = op.value > 0.0 && op.value.is_finite();
            if !op.remove && !valid {
                error = Some(format!("quota {key} must be a positive number"));
                break;
            }
            records.push(MetadataRecord::ClientQuota {
                entity: entity.clone(),
                key,
                value: (!op.remove).then_some(op.value),
            });
        }
        if let Some(message) = error {
            results.push(result(ec::INVALID_REQUEST, Some(message)));
            continue;
        }
        if req.validate_only || records.is_empty() {
            results.push(result(ec::NONE, None));
            continue;
        }
        match broker.commit_metadata(records) {
            Ok(_) => {
                tracing::info!(target: "strom::audit", principal = %ctx.session.principal(), entity = ?entity, "client quotas changed");
                results.push(result(ec::NONE, None));
            }
            Err(err) => results.push(result(ec::UNKNOWN_SERVER_ERROR, Some(err.to_string()))),
        }
    }
    AlterClientQuotasResponse::default().with_entries(results)
}

/// The AlterClientQuotas API: its versions, handler and the rest of its story (see [`Api`]).
pub struct AlterClientQuotas;

impl Api for AlterClientQuotas {
    const KEY: ApiKey = ApiKey::AlterClientQuotas;
    const VERSIONS: (i16, i16) = (0, 1);
    type Request = AlterClientQuotasRequest;
    type Response = AlterClientQuotasResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn audit(r: &Self::Request) -> Option<Vec<(String, String)>> {
        let mut items: Vec<(String, String)> = Vec::new();
        for e in &r.entries {
            let entity = e
                .entity
                .iter()
                .map(|d| {
                    format!(
                        "{}={}",
                        d.entity_type.as_str(),
                        d.entity_name.as_ref().map_or("<default>", |n| n.as_str())
                    )
                })
                .collect::<Vec<_>>()
                .join(",");
            let ops = e
                .ops
                .iter()
                .map(|o| {
                    if o.remove {
                        format!("remove {}", o.key.as_str())
                    } else {
                        format!("set {}={}", o.key.as_str(), o.value)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            items.push((
                format!("quota:{entity}"),
                format!(
                    "alter [{ops}]{}",
                    if r.validate_only {
                        " validate_only"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Some(items)
    }

    fn audit_results(r: &Self::Response) -> (Vec<i16>, i16) {
        (r.entries.iter().map(|c| c.error_code).collect(), 0)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
