//! ACLs and the built-in authorizer. ACLs are metadata records (principal, host, operation,
//! allow/deny on a resource pattern); the authorizer checks a principal's operation on a
//! resource against them. A matching DENY wins over any ALLOW; `super.users` skip the check;
//! a resource with no matching ACL at all is open only with `allow.everyone.if.no.acl.found`.

use std::collections::BTreeSet;

use strom_metadata::AclBinding;

use crate::config::BrokerConfig;

/// The name of the one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// Resource types, with Kafka's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ResourceType {
    Any = 1,
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

/// Operations, with Kafka's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum Operation {
    Any = 1,
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
}

pub const PATTERN_ANY: i8 = 1;
pub const PATTERN_MATCH: i8 = 2;
pub const PATTERN_LITERAL: i8 = 3;
pub const PATTERN_PREFIXED: i8 = 4;
pub const PERMISSION_ANY: i8 = 1;
pub const PERMISSION_DENY: i8 = 2;
pub const PERMISSION_ALLOW: i8 = 3;

impl ResourceType {
    pub fn from_code(code: i8) -> Option<ResourceType> {
        Some(match code {
            1 => ResourceType::Any,
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            6 => ResourceType::DelegationToken,
            7 => ResourceType::User,
            _ => return None,
        })
    }
}

impl ResourceType {
    /// The operations that apply to a resource of this type: what an authorized-operations
    /// field reports on.
    pub fn supported_operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            ResourceType::Any => &[],
        }
    }
}

/// An authorized-operations field that was not asked for.
pub const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// The bit set of an authorized-operations field: bit `code` for each operation.
pub fn operations_bits(ops: impl IntoIterator<Item = Operation>) -> i32 {
    ops.into_iter()
        .fold(0u32, |bits, op| bits | (1u32 << (op as u8 as u32))) as i32
}

impl Operation {
    pub fn from_code(code: i8) -> Option<Operation> {
        Some(match code {
            1 => Operation::Any,
            2 => Operation::All,
            3 => Operation::Read,
            4 => Operation::Write,
            5 => Operation::Create,
            6 => Operation::Delete,
            7 => Operation::Alter,
            8 => Operation::Describe,
            9 => Operation::ClusterAction,
            10 => Operation::DescribeConfigs,
            11 => Operation::AlterConfigs,
            12 => Operation::IdempotentWrite,
            13 => Operation::CreateTokens,
            14 => Operation::DescribeTokens,
            _ => return None,
        })
    }

    /// Whether an ACL for `granted` allows this operation: ALL allows everything, and DESCRIBE
    /// (DESCRIBE_CONFIGS) comes with READ, WRITE, DELETE and ALTER (ALTER_CONFIGS).
    fn allowed_by(self, granted: i8) -> bool {
        let g = granted;
        g == Operation::All as i8
            || g == self as i8
            || (self == Operation::Describe
                && [
                    Operation::Read,
                    Operation::Write,
                    Operation::Delete,
                    Operation::Alter,
                ]
                .iter()
                .any(|o| *o as i8 == g))
            || (self == Operation::DescribeConfigs && g == Operation::AlterConfigs as i8)
    }
}

/// The authorizer settings.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    pub enabled: bool,
    super_users: Vec<String>,
    allow_if_no_acl: bool,
}

/// Whether an ACL's resource pattern covers a resource.
fn pattern_covers(b: &AclBinding, resource_type: ResourceType, name: &str) -> bool {
    b.resource_type == resource_type as i8
        && match b.pattern_type {
            PATTERN_LITERAL => b.resource_name == name || b.resource_name == "*",
            PATTERN_PREFIXED => name.starts_with(b.resource_name.as_str()),
            _ => false,
        }
}

impl Authorizer {
    pub fn from_config(config: &BrokerConfig) -> Authorizer {
        Authorizer {
            enabled: !config.get("authorizer.class.name").trim().is_empty(),
            super_users: config
                .get("super.users")
                .split(';')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            allow_if_no_acl: config.settings().allow_everyone_if_no_acl_found,
        }
    }

    /// Whether `principal` connecting from `host` may do `operation` on the resource.
    pub fn authorize(
        &self,
        acls: &BTreeSet<AclBinding>,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if !self.enabled || self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let mut any_acl = false;
        let mut allowed = false;
        for b in acls
            .iter()
            .filter(|b| pattern_covers(b, resource_type, name))
        {
            any_acl = true;
            let who = (b.principal == principal || b.principal == "User:*")
                && (b.host == "*" || b.host == host);
            if !who {
                continue;
            }
            if b.permission_type == PERMISSION_DENY
                && (b.operation == Operation::All as i8 || b.operation == operation as i8)
            {
                return false;
            }
            if b.permission_type == PERMISSION_ALLOW && operation.allowed_by(b.operation) {
                allowed = true;
            }
        }
        allowed || (!any_acl && self.allow_if_no_acl)
    }
}

/// A filter of DescribeAcls / DeleteAcls; `None` fields match anything.
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let resource_type =
            self.resource_type == ResourceType::Any as i8 || self.resource_type == b.resource_type;
        let pattern = match (self.pattern_type, &self.resource_name) {
            (PATTERN_ANY, None) => true,
            (PATTERN_ANY, Some(n)) => &b.resource_name == n,
            (PATTERN_MATCH, None) => true,
            (PATTERN_MATCH, Some(n)) => match b.pattern_type {
                PATTERN_LITERAL => &b.resource_name == n || b.resource_name == "*",
                PATTERN_PREFIXED => n.starts_with(b.resource_name.as_str()),
                _ => false,
            },
            (p, name) => b.pattern_type == p && name.as_ref().is_none_or(|n| &b.resource_name == n),
        };
        let principal = self.principal.as_ref().is_none_or(|p| &b.principal == p);
        let host = self.host.as_ref().is_none_or(|h| &b.host == h);
        let operation = self.operation == Operation::Any as i8 || self.operation == b.operation;
        let permission =
            self.permission_type == PERMISSION_ANY || self.permission_type == b.permission_type;
        resource_type && pattern && principal && host && operation && permission
    }
}

/// Checks an ACL to be created; the error message when it cannot be stored.
pub fn validate_binding(b: &AclBinding) -> Result<(), String> {
    match ResourceType::from_code(b.resource_type) {
        None | Some(ResourceType::Any) => return Err("invalid resource type".into()),
        Some(ResourceType::Cluster) if b.resource_name != CLUSTER_NAME => {
            return Err(format!("the cluster resource is named {CLUSTER_NAME}"));
        }
        _ => {}
    }
    if b.pattern_type != PATTERN_LITERAL && b.pattern_type != PATTERN_PREFIXED {
        return Err("pattern type must be LITERAL or PREFIXED".into());
    }
    if b.resource_name.is_empty() {
        return Err("resource name must not be empty".into());
    }
    match Operation::from_code(b.operation) {
        None | Some(Operation::Any) => return Err("invalid operation".into()),
        _ => {}
    }
    if b.permission_type != PERMISSION_ALLOW && b.permission_type != PERMISSION_DENY {
        return Err("permission type must be ALLOW or DENY".into());
    }
    if !b.principal.contains(':') {
        return Err(format!("principal {:?} is not Type:name", b.principal));
    }
    if b.host.is_empty() {
        return Err("host must not be empty (use *)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pattern: i8,
        principal: &str,
        op: Operation,
        perm: i8,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt as i8,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op as i8,
            permission_type: perm,
        }
    }

    #[test]
    fn deny_wins_prefixes_match_and_describe_is_implied() {
        let mut c = BrokerConfig::default();
        c.set("authorizer.class.name", "strom").unwrap();
        c.set("super.users", "User:admin;User:CN=ops").unwrap();
        let a = Authorizer::from_config(&c);
        let mut acls = BTreeSet::new();
        acls.insert(acl(
            ResourceType::Topic,
            "orders-",
            PATTERN_PREFIXED,
            "User:alice",
            Operation::Write,
            PERMISSION_ALLOW,
        ));
        acls.insert(acl(
            ResourceType::Topic,
            "orders-secret",
            PATTERN_LITERAL,
            "User:alice",
            Operation::All,
            PERMISSION_DENY,
        ));
        acls.insert(acl(
            ResourceType::Topic,
            "*",
            PATTERN_LITERAL,
            "User:*",
            Operation::Read,
            PERMISSION_ALLOW,
        ));
        let t = |p: &str, op, name: &str| {
            a.authorize(&acls, p, "10.0.0.1", op, ResourceType::Topic, name)
        };
        assert!(t("User:alice", Operation::Write, "orders-eu"));
        assert!(t("User:alice", Operation::Describe, "orders-eu"));
        assert!(!t("User:alice", Operation::Delete, "orders-eu"));
        assert!(!t("User:alice", Operation::Write, "orders-secret"));
        assert!(
            !t("User:alice", Operation::Read, "orders-secret"),
            "deny ALL beats allow READ"
        );
        assert!(!t("User:alice", Operation::Write, "payments"));
        assert!(t("User:bob", Operation::Read, "payments"));
        assert!(t("User:admin", Operation::Delete, "orders-secret"));
        assert!(t("User:CN=ops", Operation::Delete, "x"));
        // No ACL on groups at all: closed unless allow.everyone.if.no.acl.found.
        assert!(!a.authorize(
            &acls,
            "User:bob",
            "h",
            Operation::Read,
            ResourceType::Group,
            "g"
        ));
        c.set("allow.everyone.if.no.acl.found", "true").unwrap();
        let open = Authorizer::from_config(&c);
        assert!(open.authorize(
            &acls,
            "User:bob",
            "h",
            Operation::Read,
            ResourceType::Group,
            "g"
        ));
        assert!(!open.authorize(
            &acls,
            "User:bob",
            "h",
            Operation::Write,
            ResourceType::Topic,
            "x"
        ));
        assert!(Authorizer::from_config(&BrokerConfig::default()).authorize(
            &acls,
            "User:x",
            "h",
            Operation::Write,
            ResourceType::Topic,
            "orders-secret"
        ));
    }

    #[test]
    fn filters() {
        let b = acl(
            ResourceType::Topic,
            "orders-",
            PATTERN_PREFIXED,
            "User:alice",
            Operation::Write,
            PERMISSION_ALLOW,
        );
        let any = AclFilter {
            resource_type: ResourceType::Any as i8,
            resource_name: None,
            pattern_type: PATTERN_ANY,
            principal: None,
            host: None,
            operation: Operation::Any as i8,
            permission_type: PERMISSION_ANY,
        };
        assert!(any.matches(&b));
        let matching = AclFilter {
            resource_name: Some("orders-eu".into()),
            pattern_type: PATTERN_MATCH,
            ..any.clone()
        };
        assert!(matching.matches(&b));
        let literal = AclFilter {
            resource_name: Some("orders-eu".into()),
            pattern_type: PATTERN_LITERAL,
            ..any.clone()
        };
        assert!(!literal.matches(&b));
        let other = AclFilter {
            principal: Some("User:bob".into()),
            ..any
        };
        assert!(!other.matches(&b));
        assert!(validate_binding(&b).is_ok());
        assert!(
            validate_binding(&AclBinding {
                pattern_type: PATTERN_MATCH,
                ..b.clone()
            })
            .is_err()
        );
        assert!(
            validate_binding(&AclBinding {
                principal: "alice".into(),
                ..b
            })
            .is_err()
        );
    }
}
