//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on single configs.

use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use strom_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::alter_configs::not_dynamic;
use super::{RESOURCE_TOPIC, message};
use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::audit;
use crate::topics::{self, ApiError};

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let _guard = broker.controller.lock().await;
    let responses = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.as_str().to_string();
            let outcome = if let Some(e) =
                super::alter_configs::alter_denied(broker, ctx, r.resource_type, &name)
            {
                Err(e)
            } else if r.resource_type != RESOURCE_TOPIC {
                Err(not_dynamic(r.resource_type))
            } else {
                let image = broker.image();
                let overrides = image
                    .topic(&name)
                    .map(|t| t.configs.clone())
                    .unwrap_or_default();
                let mut changes = Vec::new();
                let mut bad = None;
                for c in &r.configs {
                    let key = c.name.as_str().to_string();
                    let value = c.value.as_ref().map(|v| v.as_str().to_string());
                    let current = broker
                        .config
                        .topic_value(&overrides, &key)
                        .unwrap_or_default();
                    let list = |s: &str| -> Vec<String> {
                        s.split(',')
                            .map(|x| x.trim().to_string())
                            .filter(|x| !x.is_empty())
                            .collect()
                    };
                    match c.config_operation {
                        SET => changes.push((key, value)),
                        DELETE => changes.push((key, None)),
                        APPEND | SUBTRACT => {
                            let mut items = list(&current);
                            for v in list(value.as_deref().unwrap_or("")) {
                                if c.config_operation == APPEND {
                                    if !items.contains(&v) {
                                        items.push(v);
                                    }
                                } else {
                                    items.retain(|x| *x != v);
                                }
                            }
                            changes.push((key, Some(items.join(","))));
                        }
                        op => {
                            bad = Some(ApiError::new(
                                ec::INVALID_REQUEST,
                                format!("unknown config operation {op}"),
                            ))
                        }
                    }
                }
                match bad {
                    Some(e) => Err(e),
                    None => topics::alter_topic_configs(broker, &name, changes, req.validate_only),
                }
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The IncrementalAlterConfigs API: its versions, handler and the rest of its story (see [`Api`]).
pub struct IncrementalAlterConfigs;

impl Api for IncrementalAlterConfigs {
    const KEY: ApiKey = ApiKey::IncrementalAlterConfigs;
    const VERSIONS: (i16, i16) = (0, 1);
    type Request = IncrementalAlterConfigsRequest;
    type Response = IncrementalAlterConfigsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        r.responses.iter().for_each(|x| count(x.error_code))
    }

    fn audit(r: &Self::Request) -> Option<Vec<(String, String)>> {
        let mut items: Vec<(String, String)> = Vec::new();
        for c in &r.resources {
            let ops = c
                .configs
                .iter()
                .map(|c| {
                    let op = match c.config_operation {
                        0 => "SET",
                        1 => "DELETE",
                        2 => "APPEND",
                        3 => "SUBTRACT",
                        _ => "?",
                    };
                    format!("{op} {}", c.name.as_str())
                })
                .collect::<Vec<_>>()
                .join(", ");
            items.push((
                audit::config_resource(c.resource_type, c.resource_name.as_str()),
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
        (r.responses.iter().map(|c| c.error_code).collect(), 0)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
