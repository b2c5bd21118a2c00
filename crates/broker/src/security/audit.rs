//! The audit log of admin operations (`strom.audit.admin.operations.enable`): one line per
//! resource an admin request touched (topic, config resource, ACL, SCRAM user, quota entity,
//! partition, group) with the principal, its address, the API, the resource, what was asked
//! (`request`) and the result (an error name, NONE for success), on the tracing target
//! `strom::audit`. Config values and credentials are never written; config
//! names are.

use strom_protocol::error_code;
use strom_protocol::{RequestKind, ResponseKind};

use super::acl::{self, Operation, ResourceType};
use crate::registry::RequestContext;

/// What an admin request asks, resource by resource, in the order its response answers.
pub struct AdminRequest {
    items: Vec<(String, String)>,
}

/// The resources and details of an admin request; `None` for any other request.
pub fn admin_request(body: &RequestKind) -> Option<AdminRequest> {
    let mut items: Vec<(String, String)> = Vec::new();
    let configs = |names: Vec<String>| format!("configs=[{}]", names.join(","));
    match body {
        RequestKind::CreateTopics(r) => {
            for t in &r.topics {
                items.push((
                    format!("topic:{}", t.name.as_str()),
                    format!(
                        "create partitions={} replication.factor={} {}{}",
                        t.num_partitions,
                        t.replication_factor,
                        configs(t.configs.iter().map(|c| c.name.to_string()).collect()),
                        if r.validate_only {
                            " validate_only"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        RequestKind::DeleteTopics(r) => {
            for n in &r.topic_names {
                items.push((format!("topic:{}", n.as_str()), "delete".into()));
            }
            for t in &r.topics {
                let name = match &t.name {
                    Some(n) => n.to_string(),
                    None => format!("id={}", t.topic_id),
                };
                items.push((format!("topic:{name}"), "delete".into()));
            }
        }
        RequestKind::CreatePartitions(r) => {
            for t in &r.topics {
                items.push((
                    format!("topic:{}", t.name.as_str()),
                    format!(
                        "create partitions count={}{}",
                        t.count,
                        if r.validate_only {
                            " validate_only"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        RequestKind::DeleteRecords(r) => {
            for t in &r.topics {
                for p in &t.partitions {
                    items.push((
                        format!("topic:{}-{}", t.name.as_str(), p.partition_index),
                        format!("delete records before offset {}", p.offset),
                    ));
                }
            }
        }
        RequestKind::AlterConfigs(r) => {
            for c in &r.resources {
                items.push((
                    config_resource(c.resource_type, c.resource_name.as_str()),
                    format!(
                        "alter (replace) {}{}",
                        configs(c.configs.iter().map(|c| c.name.to_string()).collect()),
                        if r.validate_only {
                            " validate_only"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        RequestKind::IncrementalAlterConfigs(r) => {
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
                    config_resource(c.resource_type, c.resource_name.as_str()),
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
        }
        RequestKind::CreateAcls(r) => {
            for a in &r.creations {
                items.push((
                    format!(
                        "acl:{}:{}",
                        resource_type_name(a.resource_type),
                        a.resource_name.as_str()
                    ),
                    format!(
                        "create {} {} from host {} for {} ({})",
                        permission_name(a.permission_type),
                        a.principal.as_str(),
                        a.host.as_str(),
                        operation_name(a.operation),
                        pattern_name(a.resource_pattern_type)
                    ),
                ));
            }
        }
        RequestKind::DeleteAcls(r) => {
            for f in &r.filters {
                let opt = |s: &Option<strom_protocol::StrBytes>| {
                    s.as_ref().map_or("*".to_string(), |s| s.to_string())
                };
                items.push((
                    format!(
                        "acl:{}:{}",
                        resource_type_name(f.resource_type_filter),
                        opt(&f.resource_name_filter)
                    ),
                    format!(
                        "delete matching {} {} from host {} for {} ({})",
                        permission_name(f.permission_type),
                        opt(&f.principal_filter),
                        opt(&f.host_filter),
                        operation_name(f.operation),
                        pattern_name(f.pattern_type_filter)
                    ),
                ));
            }
        }
        RequestKind::AlterUserScramCredentials(r) => {
            for d in &r.deletions {
                items.push((
                    format!("user:{}", d.name.as_str()),
                    format!("delete {} credential", scram_mechanism(d.mechanism)),
                ));
            }
            for u in &r.upsertions {
                items.push((
                    format!("user:{}", u.name.as_str()),
                    format!(
                        "set {} credential iterations={}",
                        scram_mechanism(u.mechanism),
                        u.iterations
                    ),
                ));
            }
        }
        RequestKind::AlterClientQuotas(r) => {
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
        }
        RequestKind::DeleteGroups(r) => {
            for g in &r.groups_names {
                items.push((format!("group:{}", g.as_str()), "delete".into()));
            }
        }
        RequestKind::OffsetDelete(r) => {
            for t in &r.topics {
                for p in &t.partitions {
                    items.push((
                        format!("group:{}", r.group_id.as_str()),
                        format!(
                            "delete committed offset of {}-{}",
                            t.name.as_str(),
                            p.partition_index
                        ),
                    ));
                }
            }
        }
        _ => return None,
    }
    Some(AdminRequest { items })
}

fn scram_mechanism(code: i8) -> String {
    match code {
        1 => "SCRAM-SHA-256".into(),
        2 => "SCRAM-SHA-512".into(),
        other => format!("SCRAM mechanism {other}"),
    }
}

fn resource_type_name(code: i8) -> String {
    ResourceType::from_code(code).map_or_else(|| code.to_string(), |t| format!("{t:?}"))
}

fn operation_name(code: i8) -> String {
    Operation::from_code(code).map_or_else(|| code.to_string(), |o| format!("{o:?}"))
}

fn pattern_name(code: i8) -> &'static str {
    match code {
        acl::PATTERN_ANY => "ANY",
        acl::PATTERN_MATCH => "MATCH",
        acl::PATTERN_LITERAL => "LITERAL",
        acl::PATTERN_PREFIXED => "PREFIXED",
        _ => "UNKNOWN",
    }
}

fn permission_name(code: i8) -> &'static str {
    match code {
        acl::PERMISSION_ANY => "ANY",
        acl::PERMISSION_DENY => "DENY",
        acl::PERMISSION_ALLOW => "ALLOW",
        _ => "UNKNOWN",
    }
}

/// `topic:NAME`, `broker:ID`, ... for a config resource type code.
fn config_resource(resource_type: i8, name: &str) -> String {
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

/// The error code of each resource of an admin response, in the order of the request, and an
/// error code for the whole request where the response has one.
fn result_codes(response: &ResponseKind) -> (Vec<i16>, i16) {
    match response {
        ResponseKind::CreateTopics(r) => (r.topics.iter().map(|t| t.error_code).collect(), 0),
        ResponseKind::DeleteTopics(r) => (r.responses.iter().map(|t| t.error_code).collect(), 0),
        ResponseKind::CreatePartitions(r) => (r.results.iter().map(|t| t.error_code).collect(), 0),
        ResponseKind::DeleteRecords(r) => (
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
            0,
        ),
        ResponseKind::AlterConfigs(r) => (r.responses.iter().map(|c| c.error_code).collect(), 0),
        ResponseKind::IncrementalAlterConfigs(r) => {
            (r.responses.iter().map(|c| c.error_code).collect(), 0)
        }
        ResponseKind::CreateAcls(r) => (r.results.iter().map(|c| c.error_code).collect(), 0),
        ResponseKind::DeleteAcls(r) => (r.filter_results.iter().map(|c| c.error_code).collect(), 0),
        ResponseKind::AlterUserScramCredentials(r) => {
            (r.results.iter().map(|c| c.error_code).collect(), 0)
        }
        ResponseKind::AlterClientQuotas(r) => (r.entries.iter().map(|c| c.error_code).collect(), 0),
        ResponseKind::DeleteGroups(r) => (r.results.iter().map(|g| g.error_code).collect(), 0),
        ResponseKind::OffsetDelete(r) => (
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
            r.error_code,
        ),
        _ => (Vec::new(), 0),
    }
}

/// Writes the audit lines of an admin request once its response is known.
pub fn log_admin(ctx: &RequestContext, request: AdminRequest, response: &ResponseKind) {
    let (codes, whole) = result_codes(response);
    let principal = ctx.session.principal();
    let host = ctx.peer.ip();
    let api = strom_protocol::ApiKey::try_from(ctx.header.request_api_key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| ctx.header.request_api_key.to_string());
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
