//! Configs of topics and brokers: DescribeConfigs and IncrementalAlterConfigs.

use strom_protocol::messages::{
    describe_configs_request::{DescribeConfigsRequest, DescribeConfigsResource},
    incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
    },
};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, str_bytes};

use super::{Admin, Route};
use crate::client::{ConfigEntry, config_source, missing, unexpected, versions};
use crate::error::{ClientError, check_resource};

/// Kafka's config resource types.
pub mod resource_type {
    pub const TOPIC: i8 = 2;
    pub const BROKER: i8 = 4;
    pub const BROKER_LOGGER: i8 = 8;
}

/// What a config belongs to: a topic, or a broker (by id; the empty name is the default of
/// every broker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigResource {
    /// One of [`resource_type`].
    pub resource_type: i8,
    pub name: String,
}

impl ConfigResource {
    pub fn topic(name: &str) -> ConfigResource {
        ConfigResource {
            resource_type: resource_type::TOPIC,
            name: name.to_string(),
        }
    }

    pub fn broker(id: i32) -> ConfigResource {
        ConfigResource {
            resource_type: resource_type::BROKER,
            name: id.to_string(),
        }
    }

    /// The cluster-wide default of every broker's dynamic configs.
    pub fn broker_default() -> ConfigResource {
        ConfigResource {
            resource_type: resource_type::BROKER,
            name: String::new(),
        }
    }

    /// How errors name it: `topic "orders"`, `broker 1`, `the broker default`.
    pub fn subject(&self) -> String {
        match self.resource_type {
            resource_type::TOPIC => format!("topic {:?}", self.name),
            _ if self.name.is_empty() => "the broker default".to_string(),
            resource_type::BROKER => format!("broker {}", self.name),
            _ => format!("logger of broker {}", self.name),
        }
    }

    /// Broker resources go to that broker; topics and the broker default to the controller
    /// (for alterations) or any broker (for descriptions).
    fn route(&self, alter: bool) -> Route {
        match self.name.parse::<i32>() {
            Ok(id) if self.resource_type != resource_type::TOPIC => Route::Broker(id),
            _ if alter => Route::Controller,
            _ => Route::Any,
        }
    }
}

/// One change of an IncrementalAlterConfigs request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterConfigOp {
    pub name: String,
    /// 0 SET, 1 DELETE (back to the default), 2 APPEND, 3 SUBTRACT (list configs).
    pub op: i8,
    pub value: Option<String>,
}

impl AlterConfigOp {
    pub fn set(name: &str, value: &str) -> AlterConfigOp {
        AlterConfigOp {
            name: name.to_string(),
            op: 0,
            value: Some(value.to_string()),
        }
    }

    pub fn delete(name: &str) -> AlterConfigOp {
        AlterConfigOp {
            name: name.to_string(),
            op: 1,
            value: None,
        }
    }

    pub fn append(name: &str, value: &str) -> AlterConfigOp {
        AlterConfigOp {
            op: 2,
            ..AlterConfigOp::set(name, value)
        }
    }

    pub fn subtract(name: &str, value: &str) -> AlterConfigOp {
        AlterConfigOp {
            op: 3,
            ..AlterConfigOp::set(name, value)
        }
    }
}

impl Admin {
    /// Every config of a topic or broker with its value and source, sorted by name.
    pub async fn describe_configs(
        &self,
        resource: &ConfigResource,
    ) -> Result<Vec<ConfigEntry>, ClientError> {
        let subject = resource.subject();
        self.call(
            resource.route(false),
            ApiKey::DescribeConfigs,
            versions::DESCRIBE_CONFIGS,
            |_| {
                let mut r = DescribeConfigsResource::default();
                r.resource_type = resource.resource_type;
                r.resource_name = str_bytes(resource.name.as_str());
                r.configuration_keys = None;
                let mut req = DescribeConfigsRequest::default();
                req.resources = vec![r];
                Ok(RequestKind::DescribeConfigs(req))
            },
            |_, response, _| {
                let ResponseKind::DescribeConfigs(response) = response else {
                    return Err(unexpected("DescribeConfigs", &response));
                };
                let result = response
                    .results
                    .iter()
                    .find(|r| r.resource_name.as_str() == resource.name)
                    .ok_or_else(|| missing(subject.clone()))?;
                check_resource(result.error_code, &subject, result.error_message.as_deref())?;
                let mut entries: Vec<ConfigEntry> = result
                    .configs
                    .iter()
                    .map(|c| ConfigEntry {
                        name: c.name.to_string(),
                        value: c.value.as_ref().map(|v| v.to_string()),
                        read_only: c.read_only,
                        source: c.config_source,
                        is_default: c.config_source == config_source::DEFAULT_CONFIG,
                        sensitive: c.is_sensitive,
                    })
                    .collect();
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(entries)
            },
        )
        .await
    }

    /// Applies config changes to a topic or broker in one IncrementalAlterConfigs request
    /// (all or nothing). An unknown config name or a bad value fails with INVALID_CONFIG.
    pub async fn incremental_alter_configs(
        &self,
        resource: &ConfigResource,
        ops: &[AlterConfigOp],
    ) -> Result<(), ClientError> {
        if ops.is_empty() {
            return Ok(());
        }
        let subject = resource.subject();
        self.call(
            resource.route(true),
            ApiKey::IncrementalAlterConfigs,
            versions::INCREMENTAL_ALTER_CONFIGS,
            |_| {
                let mut r = AlterConfigsResource::default();
                r.resource_type = resource.resource_type;
                r.resource_name = str_bytes(resource.name.as_str());
                r.configs = ops
                    .iter()
                    .map(|op| {
                        let mut c = AlterableConfig::default();
                        c.name = str_bytes(op.name.as_str());
                        c.config_operation = op.op;
                        c.value = op.value.as_deref().map(str_bytes);
                        c
                    })
                    .collect();
                let mut req = IncrementalAlterConfigsRequest::default();
                req.resources = vec![r];
                Ok(RequestKind::IncrementalAlterConfigs(req))
            },
            |_, response, _| {
                let ResponseKind::IncrementalAlterConfigs(response) = response else {
                    return Err(unexpected("IncrementalAlterConfigs", &response));
                };
                let result = response
                    .responses
                    .iter()
                    .find(|r| r.resource_name.as_str() == resource.name)
                    .ok_or_else(|| missing(subject.clone()))?;
                check_resource(result.error_code, &subject, result.error_message.as_deref())
            },
        )
        .await
    }

    /// Sets and removes topic config overrides in one request (a shorthand of
    /// [`Admin::incremental_alter_configs`]).
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        set: Vec<(String, String)>,
        delete: Vec<String>,
    ) -> Result<(), ClientError> {
        let ops: Vec<AlterConfigOp> = set
            .iter()
            .map(|(k, v)| AlterConfigOp::set(k, v))
            .chain(delete.iter().map(|k| AlterConfigOp::delete(k)))
            .collect();
        self.incremental_alter_configs(&ConfigResource::topic(name), &ops)
            .await
    }
}
