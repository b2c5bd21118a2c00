//! `strom topics create|list|describe|alter|delete`.

use anyhow::bail;
use serde_json::json;
use strom_client::admin::{ConfigResource, NewTopic, OffsetSpec};
use strom_client::{Admin, config_source, error_name};

use super::common::{
    ConnectArgs, Output, admin_get_json, friendly, parse_key_value, print_json, table,
};

#[derive(clap::Subcommand, Debug)]
pub enum TopicsCommand {
    /// Create a topic
    #[command(
        long_about = "Create a topic.\n\nExample:\n  strom topics create orders --partitions 3 --config retention.ms=86400000"
    )]
    Create(CreateArgs),
    /// List all topics
    List(ListArgs),
    /// Show a topic's partitions, offsets and config overrides
    Describe(DescribeArgs),
    /// Add partitions to a topic or change its configs
    #[command(
        long_about = "Add partitions to a topic or change its configs.\n\nExamples:\n  strom topics alter orders --partitions 6\n  strom topics alter orders --config retention.ms=3600000 --delete-config cleanup.policy"
    )]
    Alter(AlterArgs),
    /// Delete a topic and all its records
    Delete(DeleteArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Name of the topic to create
    pub name: String,
    /// Number of partitions
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Number of replicas of each partition (-1: the broker's default.replication.factor)
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub replication_factor: i16,
    /// A topic config override as key=value, e.g. retention.ms=86400000 (repeatable)
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// How to print the list
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// Name of the topic to describe
    pub name: String,
    /// How to print the description
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// A strom broker's admin listener (host:port, its `admin.listener`): adds each
    /// partition's size, segments and, for compacted topics, dirty ratio and last cleaning
    #[arg(long, value_name = "HOST:PORT", env = "STROM_ADMIN")]
    pub admin: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
pub struct AlterArgs {
    /// Name of the topic to alter
    pub name: String,
    /// New total number of partitions (can only grow)
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Set a topic config override as key=value (repeatable)
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
    /// Remove a topic config override, going back to the broker default (repeatable)
    #[arg(long = "delete-config", value_name = "KEY")]
    pub delete_configs: Vec<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// Name of the topic to delete
    pub name: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(cmd: TopicsCommand) -> anyhow::Result<()> {
    match cmd {
        TopicsCommand::Create(a) => create(a).await,
        TopicsCommand::List(a) => list(a).await,
        TopicsCommand::Describe(a) => describe(a).await,
        TopicsCommand::Alter(a) => alter(a).await,
        TopicsCommand::Delete(a) => delete(a).await,
    }
}

async fn create(a: CreateArgs) -> anyhow::Result<()> {
    if a.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    let admin = a.connect.admin()?;
    let topic = NewTopic::new(&a.name, a.partitions, a.replication_factor).configs(a.configs);
    let id = admin.create_topic(topic).await.map_err(friendly)?;
    if id.is_zero() {
        println!("Created topic {}.", a.name);
    } else {
        println!("Created topic {} (id {id}).", a.name);
    }
    Ok(())
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let admin = a.connect.admin()?;
    let all = admin.list_topics().await.map_err(friendly)?;
    match a.output {
        Output::Json => {
            let topics: Vec<_> = all
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name,
                        "id": t.id.to_string(),
                        "partitions": t.partitions.len(),
                        "replication_factor": replication_factor(t),
                        "internal": t.is_internal,
                    })
                })
                .collect();
            print_json(&json!(topics))
        }
        Output::Table => {
            if all.is_empty() {
                eprintln!("No topics.");
                return Ok(());
            }
            let mut t = table(vec!["TOPIC", "PARTITIONS", "REPLICATION FACTOR", "ID"]);
            for topic in &all {
                t.add_row(vec![
                    topic.name.clone(),
                    topic.partitions.len().to_string(),
                    replication_factor(topic).to_string(),
                    topic.id.to_string(),
                ]);
            }
            println!("{t}");
            Ok(())
        }
    }
}

fn replication_factor(t: &strom_client::TopicMetadata) -> usize {
    t.partitions
        .iter()
        .map(|p| p.replicas.len())
        .max()
        .unwrap_or(0)
}

fn join_ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Log start and end offset of a partition; errors become None so one bad partition does not
/// hide the others.
async fn offsets(admin: &Admin, topic: &str, partition: i32) -> (Option<i64>, Option<i64>) {
    let start = admin
        .list_offset(topic, partition, OffsetSpec::Earliest)
        .await;
    let end = admin
        .list_offset(topic, partition, OffsetSpec::Latest)
        .await;
    (start.ok().map(|o| o.0), end.ok().map(|o| o.0))
}

async fn describe(a: DescribeArgs) -> anyhow::Result<()> {
    let admin = a.connect.admin()?;
    let described = admin
        .describe_topics(&[a.name.as_str()])
        .await
        .map_err(friendly)?;
    let Some(topic) = described.first() else {
        bail!(
            "topic {:?} does not exist (UNKNOWN_TOPIC_OR_PARTITION)",
            a.name
        );
    };
    let configs = admin
        .describe_configs(&ConfigResource::topic(&a.name))
        .await
        .map_err(friendly)?;
    let overrides: Vec<_> = configs
        .iter()
        .filter(|c| c.source != config_source::DEFAULT_CONFIG)
        .collect();
    let mut partitions = Vec::with_capacity(topic.partitions.len());
    for p in &topic.partitions {
        let (start, end) = offsets(&admin, &a.name, p.index).await;
        partitions.push((p, start, end));
    }
    let show = |o: Option<i64>| o.map_or_else(|| "-".to_string(), |o| o.to_string());
    let cleanup_policy = configs
        .iter()
        .find(|c| c.name == "cleanup.policy")
        .and_then(|c| c.value.clone())
        .unwrap_or_else(|| "delete".into());
    // Per-partition storage state from the broker's admin listener, by partition.
    let storage: std::collections::HashMap<i64, serde_json::Value> = match &a.admin {
        Some(admin) => {
            admin_get_json(admin, &format!("/v1/partitions?topic={}", a.name)).await?["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p["partition"].as_i64()?, p.clone())))
                .collect()
        }
        None => Default::default(),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);

    match a.output {
        Output::Json => {
            let parts: Vec<_> = partitions
                .iter()
                .map(|(p, start, end)| {
                    let mut row = json!({
                        "partition": p.index,
                        "leader": p.leader,
                        "leader_epoch": p.leader_epoch,
                        "replicas": p.replicas,
                        "isr": p.isr,
                        "offline_replicas": p.offline_replicas,
                        "error": (p.error_code != 0).then(|| error_name(p.error_code)),
                        "log_start_offset": start,
                        "log_end_offset": end,
                    });
                    if let Some(st) = storage.get(&(p.index as i64)) {
                        for k in ["size_bytes", "segments", "dirty_ratio", "last_clean_ms"] {
                            if !st[k].is_null() {
                                row[k] = st[k].clone();
                            }
                        }
                    }
                    row
                })
                .collect();
            let cfgs: serde_json::Map<String, serde_json::Value> = overrides
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        json!({
                            "value": if c.sensitive { None } else { c.value.clone() },
                            "source": config_source::name(c.source),
                            "read_only": c.read_only,
                            "sensitive": c.sensitive,
                        }),
                    )
                })
                .collect();
            print_json(&json!({
                "name": topic.name,
                "id": topic.id.to_string(),
                "internal": topic.is_internal,
                "cleanup_policy": cleanup_policy,
                "partitions": parts,
                "configs": cfgs,
            }))
        }
        Output::Table => {
            println!(
                "Topic: {}  Id: {}  Partitions: {}  Replication factor: {}  Cleanup policy: {}",
                topic.name,
                topic.id,
                topic.partitions.len(),
                replication_factor(topic),
                cleanup_policy
            );
            println!();
            let mut header = vec![
                "PARTITION",
                "LEADER",
                "REPLICAS",
                "ISR",
                "LOG START OFFSET",
                "LOG END OFFSET",
            ];
            let compacted = cleanup_policy.contains("compact");
            if !storage.is_empty() {
                header.extend(["SIZE", "SEGMENTS"]);
                if compacted {
                    header.extend(["DIRTY RATIO", "LAST CLEANED"]);
                }
            }
            let mut t = table(header);
            for (p, start, end) in &partitions {
                let leader = if p.leader < 0 {
                    "none".to_string()
                } else {
                    p.leader.to_string()
                };
                let mut row = vec![
                    p.index.to_string(),
                    leader,
                    join_ids(&p.replicas),
                    join_ids(&p.isr),
                    show(*start),
                    show(*end),
                ];
                if !storage.is_empty() {
                    let st = storage.get(&(p.index as i64));
                    let field = |k: &str| st.map(|s| s[k].clone()).unwrap_or_default();
                    row.push(
                        field("size_bytes")
                            .as_u64()
                            .map_or("-".into(), |b| b.to_string()),
                    );
                    row.push(
                        field("segments")
                            .as_u64()
                            .map_or("-".into(), |n| n.to_string()),
                    );
                    if compacted {
                        row.push(
                            field("dirty_ratio")
                                .as_f64()
                                .map_or("-".into(), |r| format!("{r:.2}")),
                        );
                        row.push(match field("last_clean_ms").as_i64() {
                            Some(ms) if ms >= 0 => {
                                format!("{} s ago", (now_ms - ms).max(0) / 1000)
                            }
                            Some(_) => "never".into(),
                            None => "-".into(),
                        });
                    }
                }
                t.add_row(row);
            }
            println!("{t}");
            println!();
            if overrides.is_empty() {
                println!("Configs: all defaults");
            } else {
                let mut t = table(vec!["CONFIG", "VALUE", "SOURCE"]);
                for c in &overrides {
                    let value = if c.sensitive {
                        "(sensitive)".to_string()
                    } else {
                        c.value.clone().unwrap_or_else(|| "null".into())
                    };
                    t.add_row(vec![
                        c.name.clone(),
                        value,
                        config_source::name(c.source).to_string(),
                    ]);
                }
                println!("{t}");
            }
            Ok(())
        }
    }
}

async fn alter(a: AlterArgs) -> anyhow::Result<()> {
    if a.partitions.is_none() && a.configs.is_empty() && a.delete_configs.is_empty() {
        bail!("nothing to change: pass --partitions, --config or --delete-config");
    }
    let admin = a.connect.admin()?;
    if let Some(n) = a.partitions {
        admin
            .create_partitions(&a.name, n, None)
            .await
            .map_err(friendly)?;
        println!("Topic {} now has {n} partitions.", a.name);
    }
    if !a.configs.is_empty() || !a.delete_configs.is_empty() {
        let (set, removed) = (a.configs.len(), a.delete_configs.len());
        admin
            .alter_topic_configs(&a.name, a.configs, a.delete_configs)
            .await
            .map_err(friendly)?;
        println!(
            "Updated configs of topic {} ({set} set, {removed} removed).",
            a.name
        );
    }
    Ok(())
}

async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let admin = a.connect.admin()?;
    admin.delete_topic(&a.name).await.map_err(friendly)?;
    println!("Deleted topic {}.", a.name);
    Ok(())
}
