//! `strom acls add|list|remove`: access control lists, like Kafka's kafka-acls.sh.

use serde_json::json;
use strom_client::{Acl, AclFilterSpec};

use super::common::{ConnectArgs, Output, friendly, print_json, table};

pub const LONG_ABOUT: &str = "\
Manage ACLs (needs a broker with authorizer.class.name set). An ACL allows or denies a
principal an operation on a resource (a topic, group, transactional id or the cluster), named
literally or by prefix. A matching DENY always wins.

Operations: All, Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs,
AlterConfigs, IdempotentWrite.

Examples:
  strom acls add --principal User:alice --operation Write --operation Describe --topic orders
  strom acls add --principal User:alice --operation Read --group billing --prefixed
  strom acls add --principal User:* --operation Read --topic public- --prefixed
  strom acls add --principal User:mallory --operation All --topic orders --deny
  strom acls list --topic orders
  strom acls remove --principal User:alice --topic orders";

#[derive(clap::Subcommand, Debug)]
pub enum AclsCommand {
    /// Add ACLs: one per --operation
    Add(AclArgs),
    /// List ACLs matching the given resource and principal (all by default)
    List(ListArgs),
    /// Remove the ACLs matching the given resource, principal and operations
    Remove(AclArgs),
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ResourceArgs {
    /// A topic (or topic name prefix with --prefixed; * for every topic)
    #[arg(long, group = "resource")]
    pub topic: Option<String>,
    /// A consumer group
    #[arg(long, group = "resource")]
    pub group: Option<String>,
    /// A transactional id
    #[arg(long, group = "resource")]
    pub transactional_id: Option<String>,
    /// The cluster
    #[arg(long, group = "resource")]
    pub cluster: bool,
    /// The name is a prefix (PREFIXED pattern) rather than a literal name
    #[arg(long)]
    pub prefixed: bool,
}

#[derive(clap::Args, Debug)]
pub struct AclArgs {
    #[command(flatten)]
    pub resource: ResourceArgs,
    /// The principal, e.g. User:alice, User:CN=alice,O=example, or User:*
    #[arg(long)]
    pub principal: Option<String>,
    /// Operations (repeatable or comma-separated)
    #[arg(long, value_delimiter = ',')]
    pub operation: Vec<String>,
    /// The client host the ACL applies to
    #[arg(long, default_value = "*")]
    pub host: String,
    /// Deny instead of allow
    #[arg(long)]
    pub deny: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub resource: ResourceArgs,
    /// Only ACLs of this principal
    #[arg(long)]
    pub principal: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

const OPERATIONS: &[(&str, i8)] = &[
    ("All", 2),
    ("Read", 3),
    ("Write", 4),
    ("Create", 5),
    ("Delete", 6),
    ("Alter", 7),
    ("Describe", 8),
    ("ClusterAction", 9),
    ("DescribeConfigs", 10),
    ("AlterConfigs", 11),
    ("IdempotentWrite", 12),
    ("CreateTokens", 13),
    ("DescribeTokens", 14),
];
const RESOURCE_TYPES: &[(&str, i8)] = &[
    ("Topic", 2),
    ("Group", 3),
    ("Cluster", 4),
    ("TransactionalId", 5),
    ("DelegationToken", 6),
    ("User", 7),
];

fn operation(name: &str) -> anyhow::Result<i8> {
    let flat = name.replace(['_', '-'], "");
    OPERATIONS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&flat))
        .map(|(_, c)| *c)
        .ok_or_else(|| anyhow::anyhow!("unknown operation {name:?}"))
}

fn name_of(table: &[(&'static str, i8)], code: i8) -> String {
    table
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| code.to_string())
}

impl ResourceArgs {
    /// (resource type, name) or None when no resource was named.
    fn resource(&self) -> Option<(i8, String)> {
        if let Some(t) = &self.topic {
            Some((2, t.clone()))
        } else if let Some(g) = &self.group {
            Some((3, g.clone()))
        } else if let Some(t) = &self.transactional_id {
            Some((5, t.clone()))
        } else if self.cluster {
            Some((4, "kafka-cluster".into()))
        } else {
            None
        }
    }

    fn pattern(&self) -> i8 {
        if self.prefixed { 4 } else { 3 }
    }

    fn filter(&self, principal: Option<String>) -> AclFilterSpec {
        let (resource_type, resource_name) = match self.resource() {
            Some((t, n)) => (t, Some(n)),
            None => (1, None),
        };
        AclFilterSpec {
            resource_type,
            resource_name,
            pattern_type: if resource_type == 1 {
                1
            } else {
                self.pattern()
            },
            principal,
            host: None,
            operation: 1,
            permission_type: 1,
        }
    }
}

fn print(acls: &[Acl], output: Output) -> anyhow::Result<()> {
    let row = |a: &Acl| {
        (
            name_of(RESOURCE_TYPES, a.resource_type),
            a.resource_name.clone(),
            if a.pattern_type == 4 {
                "PREFIXED"
            } else {
                "LITERAL"
            }
            .to_string(),
            a.principal.clone(),
            a.host.clone(),
            name_of(OPERATIONS, a.operation),
            if a.permission_type == 2 {
                "DENY"
            } else {
                "ALLOW"
            }
            .to_string(),
        )
    };
    match output {
        Output::Json => print_json(&json!(
            acls.iter()
                .map(|a| {
                    let r = row(a);
                    json!({"resource_type": r.0, "resource_name": r.1, "pattern_type": r.2,
                        "principal": r.3, "host": r.4, "operation": r.5, "permission": r.6})
                })
                .collect::<Vec<_>>()
        )),
        Output::Table => {
            let mut t = table(vec![
                "RESOURCE TYPE",
                "NAME",
                "PATTERN",
                "PRINCIPAL",
                "HOST",
                "OPERATION",
                "PERMISSION",
            ]);
            for a in acls {
                let r = row(a);
                t.add_row(vec![r.0, r.1, r.2, r.3, r.4, r.5, r.6]);
            }
            println!("{t}");
            Ok(())
        }
    }
}

pub async fn run(cmd: AclsCommand) -> anyhow::Result<()> {
    match cmd {
        AclsCommand::Add(a) => {
            let (resource_type, resource_name) = a.resource.resource().ok_or_else(|| {
                anyhow::anyhow!(
                    "name a resource: --topic, --group, --transactional-id or --cluster"
                )
            })?;
            let principal = a
                .principal
                .clone()
                .ok_or_else(|| anyhow::anyhow!("--principal is required"))?;
            if a.operation.is_empty() {
                anyhow::bail!("give at least one --operation");
            }
            let mut acls = Vec::new();
            for op in &a.operation {
                acls.push(Acl {
                    resource_type,
                    resource_name: resource_name.clone(),
                    pattern_type: a.resource.pattern(),
                    principal: principal.clone(),
                    host: a.host.clone(),
                    operation: operation(op)?,
                    permission_type: if a.deny { 2 } else { 3 },
                });
            }
            let admin = a.connect.admin()?;
            let results = admin.create_acls(&acls).await.map_err(friendly)?;
            for (acl, r) in acls.iter().zip(results) {
                r.map_err(friendly)?;
                println!(
                    "added: {} {} {} on {} {} ({})",
                    if acl.permission_type == 2 {
                        "deny"
                    } else {
                        "allow"
                    },
                    acl.principal,
                    name_of(OPERATIONS, acl.operation),
                    name_of(RESOURCE_TYPES, acl.resource_type),
                    acl.resource_name,
                    if acl.pattern_type == 4 {
                        "prefixed"
                    } else {
                        "literal"
                    }
                );
            }
        }
        AclsCommand::List(a) => {
            let admin = a.connect.admin()?;
            let acls = admin
                .describe_acls(&a.resource.filter(a.principal.clone()))
                .await
                .map_err(friendly)?;
            print(&acls, a.output)?;
        }
        AclsCommand::Remove(a) => {
            let admin = a.connect.admin()?;
            let mut filter = a.resource.filter(a.principal.clone());
            if a.deny {
                filter.permission_type = 2;
            }
            let ops: Vec<i8> = if a.operation.is_empty() {
                vec![1]
            } else {
                a.operation
                    .iter()
                    .map(|o| operation(o))
                    .collect::<anyhow::Result<_>>()?
            };
            let mut removed = Vec::new();
            for op in ops {
                filter.operation = op;
                removed.extend(admin.delete_acls(&filter).await.map_err(friendly)?);
            }
            println!("removed {} ACL(s)", removed.len());
            print(&removed, Output::Table)?;
        }
    }
    Ok(())
}
