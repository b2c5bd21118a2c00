//! The audit log of admin operations (`strom.audit.admin.operations.enable`): one line per
//! resource an admin request touched (topic, config resource, ACL, SCRAM user, quota entity,
//! partition, group) with the principal, its address, the API, the resource, what was asked
//! (`request`) and the result (an error name, NONE for success), on the tracing target
//! `strom::audit`. Config values and credentials are never written; config
//! names are.

use strom_protocol::error_code;

use super::acl::{self, Operation, ResourceType};

/// What an admin request asks, resource by resource, in the order its response answers.
/// Each admin API names its resources itself ([`crate::handlers::Api::audit`]).
pub struct AdminRequest {
    items: Vec<(String, String)>,
}

impl AdminRequest {
    /// The resources an admin request names, each with what is asked of it.
    pub fn new(items: Vec<(String, String)>) -> Self {
        AdminRequest { items }
    }
}

/// `configs=[a,b]` for the config names of a request.
pub fn configs(names: Vec<String>) -> String {
    format!("configs=[{}]", names.join(","))
}

pub fn scram_mechanism(code: i8) -> String {
    match code {
        1 => "SCRAM-SHA-256".into(),
        2 => "SCRAM-SHA-512".into(),
        other => format!("SCRAM mechanism {other}"),
    }
}

pub fn resource_type_name(code: i8) -> String {
    ResourceType::from_code(code).map_or_else(|| code.to_string(), |t| format!("{t:?}"))
}

pub fn operation_name(code: i8) -> String {
    Operation::from_code(code).map_or_else(|| code.to_string(), |o| format!("{o:?}"))
}

pub fn pattern_name(code: i8) -> &'static str {
    match code {
        acl::PATTERN_ANY => "ANY",
        acl::PATTERN_MATCH => "MATCH",
        acl::PATTERN_LITERAL => "LITERAL",
        acl::PATTERN_PREFIXED => "PREFIXED",
        _ => "UNKNOWN",
    }
}

pub fn permission_name(code: i8) -> &'static str {
    match code {
        acl::PERMISSION_ANY => "ANY",
        acl::PERMISSION_DENY => "DENY",
        acl::PERMISSION_ALLOW => "ALLOW",
        _ => "UNKNOWN",
    }
}

/// `topic:NAME`, `broker:ID`, ... for a config resource type code.
pub fn config_resource(resource_type: i8, name: &str) -> String {
    let kind = match resource_type {
        2 => "topic",
        4 => "broker",
        8 => "broker-logger",
        16 => "client-metrics",
        32 => "group",
        _ => "config-resource",
    };
    format!("{kind}:{name}")
}

/// Who sent an admin request: its principal, address and API.
pub struct Requester<'a> {
    pub principal: &'a dyn std::fmt::Display,
    pub host: std::net::IpAddr,
    pub api_key: i16,
}

/// Writes the audit lines of an admin request once its response is known: `codes` holds the
/// response's error code per resource, in request order, and `whole` the code of the request as a
/// whole (non-zero when everything failed).
pub fn log_admin(who: &Requester<'_>, request: AdminRequest, (codes, whole): (Vec<i16>, i16)) {
    let principal = who.principal;
    let host = who.host;
    let api = strom_protocol::ApiKey::try_from(who.api_key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| who.api_key.to_string());
    for (i, (resource, detail)) in request.items.into_iter().enumerate() {
        let code = if whole != 0 {
            whole
        } else {
            codes.get(i).copied().unwrap_or(whole)
        };
        tracing::info!(
            target: "strom::audit",
            %principal,
            %host,
            %api,
            %resource,
            request = %detail,
            result = %error_code::name(code),
            "admin operation"
        );
    }
}
