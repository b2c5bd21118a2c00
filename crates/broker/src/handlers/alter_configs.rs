//! AlterConfigs (the legacy, whole-set form): the given configs replace all overrides.

use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use strom_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::{RESOURCE_TOPIC, message};
use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::audit;
use crate::topics::{self, ApiError};

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let _guard = broker.controller.lock().await;
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.as_str().to_string();
            let outcome = if let Some(e) = alter_denied(broker, ctx, r.resource_type, &name) {
                Err(e)
            } else if r.resource_type != RESOURCE_TOPIC {
                Err(not_dynamic(r.resource_type))
            } else {
                let current = broker
                    .image()
                    .topic(&name)
                    .map(|t| t.configs.clone())
                    .unwrap_or_default();
                let mut changes: Vec<(String, Option<String>)> = r
                    .configs
                    .iter()
                    .map(|c| {
                        (
                            c.name.as_str().to_string(),
                            c.value.as_ref().map(|v| v.as_str().to_string()),
                        )
                    })
                    .collect();
                for k in current.keys() {
                    if !changes.iter().any(|(n, _)| n == k) {
                        changes.push((k.clone(), None));
                    }
                }
                topics::alter_topic_configs(broker, &name, changes, req.validate_only)
            };
            let resp = AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match outcome {
                Ok(()) => resp,
                Err(e) => resp
                    .with_error_code(e.code)
                    .with_error_message(message(e.code, e.message)),
            }
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

/// ALTER_CONFIGS on the topic (or on the cluster for other resources), as an error if denied.
pub fn alter_denied(
    broker: &Broker,
    ctx: &RequestContext,
    resource_type: i8,
    name: &str,
) -> Option<ApiError> {
    use crate::security::acl::Operation;
    if resource_type == RESOURCE_TOPIC {
        (!broker.authorize_topic(ctx, Operation::AlterConfigs, name)).then(|| {
            ApiError::new(
                ec::TOPIC_AUTHORIZATION_FAILED,
                "ALTER_CONFIGS on the topic is not allowed",
            )
        })
    } else {
        (!broker.authorize_cluster(ctx, Operation::AlterConfigs)).then(|| {
            ApiError::new(
                ec::CLUSTER_AUTHORIZATION_FAILED,
                "ALTER_CONFIGS on the cluster is not allowed",
            )
        })
    }
}

/// Broker configs are static in strom: set them in the config file and restart.
pub fn not_dynamic(resource_type: i8) -> ApiError {
    ApiError::new(
        ec::INVALID_REQUEST,
        format!(
            "configs of resource type {resource_type} cannot be changed at run time; set broker properties in the config file"
        ),
    )
}

/// The AlterConfigs API: its versions, handler and the rest of its story (see [`Api`]).
pub struct AlterConfigs;

impl Api for AlterConfigs {
    const KEY: ApiKey = ApiKey::AlterConfigs;
    const VERSIONS: (i16, i16) = (0, 2);
    type Request = AlterConfigsRequest;
    type Response = AlterConfigsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        r.responses.iter().for_each(|x| count(x.error_code));
    }

    fn audit(r: &Self::Request) -> Option<Vec<(String, String)>> {
        let mut items: Vec<(String, String)> = Vec::new();
        for c in &r.resources {
            items.push((
                audit::config_resource(c.resource_type, c.resource_name.as_str()),
                format!(
                    "alter (replace) {}{}",
                    audit::configs(c.configs.iter().map(|c| c.name.to_string()).collect()),
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
        (r.responses.iter().map(|c| c.error_code).collect(), 0)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
