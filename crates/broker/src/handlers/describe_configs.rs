use std::collections::BTreeMap;
use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use strom_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use strom_protocol::{StrBytes, error_code as ec, str_bytes};

use super::{RESOURCE_BROKER, RESOURCE_TOPIC, message};
use crate::broker::Broker;
use crate::config::{self, ConfigDef, ConfigType};
use crate::handlers::Api;
use crate::request::RequestContext;

/// Config sources as DescribeConfigs reports them.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// One described config.
pub struct ConfigEntry {
    pub name: StrBytes,
    pub value: Option<StrBytes>,
    pub read_only: bool,
    pub config_source: i8,
    pub config_type: i8,
    pub documentation: StrBytes,
    /// A secret (passwords, private keys): described without its value.
    pub is_sensitive: bool,
}

fn type_id(kind: ConfigType) -> i8 {
    match kind {
        ConfigType::Bool => 1,
        ConfigType::String | ConfigType::Choice(_) => 2,
        ConfigType::Int { .. } => 3,
        ConfigType::Long { .. } => 5,
        ConfigType::Double { .. } => 6,
        ConfigType::ChoiceList(_) => 7,
    }
}

fn entry(def: &ConfigDef, value: String, read_only: bool, source: i8) -> ConfigEntry {
    let is_sensitive = config::is_sensitive(def.name);
    ConfigEntry {
        is_sensitive,
        name: str_bytes(def.name),
        value: (!is_sensitive).then(|| str_bytes(value)),
        read_only,
        config_source: source,
        config_type: type_id(def.kind),
        documentation: str_bytes(def.doc),
    }
}

/// The effective configs of a topic with these overrides, optionally only the named ones.
pub fn topic_config_entries(
    broker: &Broker,
    overrides: &BTreeMap<String, String>,
    keys: Option<&[String]>,
) -> Vec<ConfigEntry> {
    config::TOPIC_CONFIGS
        .iter()
        .filter(|(d, _)| keys.is_none_or(|k| k.iter().any(|n| n == d.name)))
        .map(|(def, broker_name)| {
            let source = if overrides.contains_key(def.name) {
                SOURCE_DYNAMIC_TOPIC
            } else if broker.config.is_explicit(broker_name) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            let value = broker
                .config
                .topic_value(overrides, def.name)
                .unwrap_or_default();
            entry(def, value, false, source)
        })
        .collect()
}

fn broker_config_entries(broker: &Broker, keys: Option<&[String]>) -> Vec<ConfigEntry> {
    config::BROKER_CONFIGS
        .iter()
        .filter(|d| keys.is_none_or(|k| k.iter().any(|n| n == d.name)))
        .map(|def| {
            let source = if broker.config.is_explicit(def.name) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            entry(def, broker.config.get(def.name).to_string(), true, source)
        })
        .collect()
}

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let keys: Option<Vec<String>> = r
                .configuration_keys
                .as_ref()
                .map(|ks| ks.iter().map(|k| k.as_str().to_string()).collect());
            let name = r.resource_name.as_str().to_string();
            use crate::security::acl::Operation;
            let entries = match r.resource_type {
                RESOURCE_TOPIC
                    if !broker.authorize_topic(ctx, Operation::DescribeConfigs, &name) =>
                {
                    Err((
                        ec::TOPIC_AUTHORIZATION_FAILED,
                        "DESCRIBE_CONFIGS on the topic is not allowed".to_string(),
                    ))
                }
                RESOURCE_BROKER if !broker.authorize_cluster(ctx, Operation::DescribeConfigs) => {
                    Err((
                        ec::CLUSTER_AUTHORIZATION_FAILED,
                        "DESCRIBE_CONFIGS on the cluster is not allowed".to_string(),
                    ))
                }
                RESOURCE_TOPIC => match image.topic(&name) {
                    Some(t) => Ok(topic_config_entries(broker, &t.configs, keys.as_deref())),
                    None => Err((
                        ec::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("topic {name:?} does not exist"),
                    )),
                },
                RESOURCE_BROKER => {
                    if name.is_empty() || name == broker.node_id.to_string() {
                        Ok(broker_config_entries(broker, keys.as_deref()))
                    } else {
                        Err((ec::INVALID_REQUEST, format!("unknown broker {name:?}")))
                    }
                }
                other => Err((
                    ec::INVALID_REQUEST,
                    format!("resource type {other} is not supported"),
                )),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match entries {
                Ok(entries) => result.with_configs(
                    entries
                        .into_iter()
                        .map(|e| {
                            let entry = DescribeConfigsResourceResult::default()
                                .with_name(e.name)
                                .with_value(e.value)
                                .with_read_only(e.read_only)
                                .with_is_sensitive(e.is_sensitive)
                                .with_config_source(e.config_source);
                            if ctx.api_version >= 3 {
                                entry.with_config_type(e.config_type).with_documentation(
                                    req.include_documentation.then_some(e.documentation),
                                )
                            } else {
                                entry
                            }
                        })
                        .collect(),
                ),
                Err((code, text)) => result
                    .with_error_code(code)
                    .with_error_message(message(code, text)),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// The DescribeConfigs API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DescribeConfigs;

impl Api for DescribeConfigs {
    const KEY: ApiKey = ApiKey::DescribeConfigs;
    const VERSIONS: (i16, i16) = (1, 4);
    type Request = DescribeConfigsRequest;
    type Response = DescribeConfigsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        r.results.iter().for_each(|x| count(x.error_code));
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
