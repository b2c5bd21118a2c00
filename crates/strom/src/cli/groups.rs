//! `strom groups list|describe|reset-offsets|delete|delete-offsets`: consumer-group
//! administration, like Kafka's kafka-consumer-groups.sh.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use serde_json::json;
use strom_client::{Admin, ClientError, CommittedOffsets, GroupDescription, error_name};

use super::common::{ConnectArgs, Output, friendly, print_json, table};

pub const LONG_ABOUT: &str = "\
List, describe and manage consumer groups: members, committed offsets and lag, offset resets.

Examples:
  strom groups list
  strom groups list --state Stable,Empty --output json
  strom groups describe billing
  strom groups reset-offsets billing --topic orders --to-earliest            (dry run)
  strom groups reset-offsets billing --topic orders --to-earliest --execute
  strom groups reset-offsets billing --topic orders:0,2 --shift-by -100 --execute
  strom groups reset-offsets billing --all-topics --to-datetime 2026-11-23T10:00:00Z --execute
  strom groups reset-offsets billing --all-topics --by-duration PT1H30M --execute
  strom groups delete-offsets billing --topic orders
  strom groups delete billing";

#[derive(clap::Subcommand, Debug)]
pub enum GroupsCommand {
    /// List consumer groups with their state and protocol type
    #[command(
        long_about = "List consumer groups with their state and protocol type.\n\nExamples:\n  strom groups list\n  strom groups list --state Stable,Empty --output json"
    )]
    List(ListArgs),
    /// Show a group's state, members, committed offsets and lag
    #[command(
        long_about = "Show a group's state, protocol and members (with their assigned partitions), and per partition the committed offset, the log end offset and the lag (log end - committed; \"-\" when nothing is committed).\n\nExamples:\n  strom groups describe billing\n  strom groups describe billing --output json"
    )]
    Describe(DescribeArgs),
    /// Move a group's committed offsets (dry run unless --execute)
    #[command(
        long_about = "Move a group's committed offsets. Without --execute this is a dry run that prints the offsets the reset would commit. The group must be inactive (no running consumers: state Empty or Dead), as Kafka requires. New offsets are clamped into [log start, log end].\n\nExactly one of --topic (repeatable; TOPIC or TOPIC:P1,P2) or --all-topics (every topic the group committed offsets for), and exactly one of:\n  --to-earliest            the log start offset\n  --to-latest              the log end offset\n  --to-offset N            offset N\n  --to-datetime TIME       the first offset at or after an RFC 3339 time, e.g. 2026-11-23T10:00:00Z or 2026-11-23T11:00:00+01:00 (the log end when every record is older)\n  --by-duration DURATION   like --to-datetime for (now - DURATION); DURATION is ISO 8601 PnDTnHnMnS as Kafka takes it, e.g. PT1H30M, P1D, PT45S\n  --shift-by N             the committed offset plus N (N may be negative)\n\nExamples:\n  strom groups reset-offsets billing --topic orders --to-earliest\n  strom groups reset-offsets billing --topic orders --to-earliest --execute\n  strom groups reset-offsets billing --topic orders:0,2 --shift-by -100 --execute\n  strom groups reset-offsets billing --all-topics --to-datetime 2026-11-23T10:00:00Z --execute\n  strom groups reset-offsets billing --all-topics --by-duration PT1H --execute"
    )]
    ResetOffsets(ResetArgs),
    /// Delete an inactive group and its committed offsets
    #[command(
        long_about = "Delete a group and all its committed offsets. The group must have no active members (NON_EMPTY_GROUP otherwise) and must exist (GROUP_ID_NOT_FOUND otherwise).\n\nExample:\n  strom groups delete billing"
    )]
    Delete(DeleteArgs),
    /// Delete a group's committed offsets for a topic
    #[command(
        long_about = "Delete a group's committed offsets for a topic (all its partitions, or TOPIC:P1,P2). Fails with GROUP_SUBSCRIBED_TO_TOPIC while active members consume the topic, and GROUP_ID_NOT_FOUND when the group does not exist.\n\nExamples:\n  strom groups delete-offsets billing --topic orders\n  strom groups delete-offsets billing --topic orders:0,1"
    )]
    DeleteOffsets(DeleteOffsetsArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only groups in these states (comma-separated or repeated; case-insensitive): Empty,
    /// Stable, PreparingRebalance, CompletingRebalance, Dead
    #[arg(long, value_name = "STATE", value_delimiter = ',')]
    pub state: Vec<String>,
    /// How to print the list
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// The group to describe
    pub group: String,
    /// How to print the description
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["topic", "all_topics"])))]
#[command(group(
    clap::ArgGroup::new("spec")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "by_duration", "shift_by"])
))]
pub struct ResetArgs {
    /// The group whose offsets to reset
    pub group: String,
    /// A topic to reset, as TOPIC (all partitions) or TOPIC:P1,P2 (repeatable)
    #[arg(long, value_name = "TOPIC[:PARTITIONS]")]
    pub topic: Vec<String>,
    /// Reset every topic the group has committed offsets for
    #[arg(long)]
    pub all_topics: bool,
    /// To the log start offset
    #[arg(long)]
    pub to_earliest: bool,
    /// To the log end offset
    #[arg(long)]
    pub to_latest: bool,
    /// To this offset
    #[arg(long, value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// To the first offset at or after an RFC 3339 time, e.g. 2026-11-23T10:00:00Z
    #[arg(long, value_name = "TIME", value_parser = parse_rfc3339_ms)]
    pub to_datetime: Option<i64>,
    /// To the first offset at or after (now - DURATION); ISO 8601 PnDTnHnMnS, e.g. PT1H30M
    #[arg(long, value_name = "DURATION", value_parser = parse_iso_duration_ms)]
    pub by_duration: Option<i64>,
    /// Move the committed offset by N (negative: back)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub shift_by: Option<i64>,
    /// Commit the new offsets (without it, only show them)
    #[arg(long)]
    pub execute: bool,
    /// How to print the new offsets
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The group to delete
    pub group: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
pub struct DeleteOffsetsArgs {
    /// The group whose offsets to delete
    pub group: String,
    /// The topic, as TOPIC (all partitions the group committed) or TOPIC:P1,P2
    #[arg(long, value_name = "TOPIC[:PARTITIONS]")]
    pub topic: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(cmd: GroupsCommand) -> anyhow::Result<()> {
    match cmd {
        GroupsCommand::List(a) => list(a).await,
        GroupsCommand::Describe(a) => describe(a).await,
        GroupsCommand::ResetOffsets(a) => reset_offsets(a).await,
        GroupsCommand::Delete(a) => delete(a).await,
        GroupsCommand::DeleteOffsets(a) => delete_offsets(a).await,
    }
}

fn admin(connect: &ConnectArgs) -> anyhow::Result<Admin> {
    connect.admin()
}

/// Turns a client error into a message for the terminal, with hints for the group errors.
fn group_error(e: ClientError, group: &str) -> anyhow::Error {
    let hint = match e.kafka_code() {
        Some(68) => Some(format!(
            "hint: stop the group's consumers first; `strom groups describe {group}` shows them"
        )),
        Some(69) => Some("hint: `strom groups list` shows the groups".to_string()),
        Some(86) => Some(format!(
            "hint: the group's members still consume the topic; stop them first (`strom groups describe {group}`)"
        )),
        _ => None,
    };
    match hint {
        Some(h) => anyhow::anyhow!("{e}\n{h}"),
        None => friendly(e),
    }
}

/// `TOPIC` or `TOPIC:P1,P2`.
fn parse_topic_partitions(s: &str) -> anyhow::Result<(String, Option<Vec<i32>>)> {
    match s.rsplit_once(':') {
        None => {
            if s.is_empty() {
                bail!("empty topic name");
            }
            Ok((s.to_string(), None))
        }
        Some((topic, parts)) => {
            if topic.is_empty() {
                bail!("empty topic name in {s:?}");
            }
            let mut ps = Vec::new();
            for p in parts.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let p: i32 = p
                    .parse()
                    .ok()
                    .filter(|p| *p >= 0)
                    .with_context(|| format!("{p:?} in {s:?} is not a partition number"))?;
                ps.push(p);
            }
            if ps.is_empty() {
                bail!("no partitions after ':' in {s:?}");
            }
            ps.sort_unstable();
            ps.dedup();
            Ok((topic.to_string(), Some(ps)))
        }
    }
}

/// The partitions of a topic from metadata; an error when the topic does not exist.
async fn topic_partitions(admin: &Admin, topic: &str) -> anyhow::Result<Vec<i32>> {
    let md = admin
        .metadata(Some(vec![topic.to_string()]))
        .await
        .map_err(friendly)?;
    match md.topic(topic) {
        Some(t) if t.error_code == 0 => Ok(t.partitions.iter().map(|p| p.index).collect()),
        Some(t) if t.error_code == 3 => {
            bail!("topic {topic:?} does not exist (UNKNOWN_TOPIC_OR_PARTITION)")
        }
        Some(t) => bail!(
            "topic {topic:?} cannot be used: {}",
            error_name(t.error_code)
        ),
        None => bail!("topic {topic:?} does not exist (UNKNOWN_TOPIC_OR_PARTITION)"),
    }
}

fn show(o: Option<i64>) -> String {
    o.map_or_else(|| "-".to_string(), |o| o.to_string())
}

// ---------------------------------------------------------------------------------------------
// list

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let admin = admin(&a.connect)?;
    let states: Vec<String> = a
        .state
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let groups = admin.list_groups(&states).await.map_err(friendly)?;
    match a.output {
        Output::Json => {
            let v: Vec<_> = groups
                .iter()
                .map(|g| {
                    json!({
                        "group": g.group_id,
                        "state": g.state,
                        "protocol_type": g.protocol_type,
                        "type": g.group_type,
                    })
                })
                .collect();
            print_json(&json!(v))
        }
        Output::Table => {
            if groups.is_empty() {
                eprintln!("No groups.");
                return Ok(());
            }
            let mut t = table(vec!["GROUP", "TYPE", "STATE", "PROTOCOL TYPE"]);
            let dash = |s: &str| {
                if s.is_empty() {
                    "-".to_string()
                } else {
                    s.to_string()
                }
            };
            for g in &groups {
                t.add_row(vec![
                    g.group_id.clone(),
                    dash(&g.group_type),
                    g.state.clone(),
                    dash(&g.protocol_type),
                ]);
            }
            println!("{t}");
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// describe

/// One partition row of `describe`.
struct PartitionRow {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    log_end: Option<i64>,
    /// Index into the members of the description.
    owner: Option<usize>,
}

impl PartitionRow {
    fn lag(&self) -> Option<i64> {
        match (self.committed, self.log_end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        }
    }
}

async fn describe(a: DescribeArgs) -> anyhow::Result<()> {
    let admin = admin(&a.connect)?;
    let group = &a.group;
    let desc = admin
        .describe_group(group)
        .await
        .map_err(|e| group_error(e, group))?;
    let committed = admin
        .fetch_offsets(group, None)
        .await
        .map_err(|e| group_error(e, group))?;
    if desc.state == "Dead" && desc.members.is_empty() && committed.is_empty() {
        bail!("group {group:?} does not exist (GROUP_ID_NOT_FOUND)");
    }
    let rows = partition_rows(&admin, &desc, &committed).await;

    match a.output {
        Output::Json => {
            let members: Vec<_> = desc
                .members
                .iter()
                .map(|m| {
                    let assignment: Vec<_> = m
                        .assignment
                        .iter()
                        .map(|(t, ps)| json!({"topic": t, "partitions": ps}))
                        .collect();
                    let target: Vec<_> = m
                        .target_assignment
                        .iter()
                        .map(|(t, ps)| json!({"topic": t, "partitions": ps}))
                        .collect();
                    json!({
                        "member_id": m.member_id,
                        "group_instance_id": m.group_instance_id,
                        "client_id": m.client_id,
                        "host": m.client_host,
                        "member_epoch": m.member_epoch,
                        "assignment": assignment,
                        "target_assignment": target,
                    })
                })
                .collect();
            let offsets: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "topic": r.topic,
                        "partition": r.partition,
                        "committed_offset": r.committed,
                        "log_end_offset": r.log_end,
                        "lag": r.lag(),
                        "member_id": r.owner.map(|i| desc.members[i].member_id.clone()),
                    })
                })
                .collect();
            print_json(&json!({
                "group": desc.group_id,
                "type": desc.group_type,
                "group_epoch": desc.epochs.map(|e| e.0),
                "assignment_epoch": desc.epochs.map(|e| e.1),
                "state": desc.state,
                "protocol_type": desc.protocol_type,
                "protocol": desc.protocol,
                "coordinator": desc.coordinator,
                "members": members,
                "offsets": offsets,
            }))
        }
        Output::Table => {
            let protocol = match (desc.protocol.as_str(), desc.protocol_type.as_str()) {
                ("", "") => "-".to_string(),
                ("", t) => t.to_string(),
                (p, "") => p.to_string(),
                (p, t) => format!("{p} ({t})"),
            };
            let epochs = desc.epochs.map_or(String::new(), |(g, a)| {
                format!("  Group epoch: {g}  Assignment epoch: {a}")
            });
            println!(
                "Group: {}  Type: {}  State: {}  Protocol: {}  Members: {}  Coordinator: {}{}",
                desc.group_id,
                desc.group_type,
                desc.state,
                protocol,
                desc.members.len(),
                desc.coordinator,
                epochs
            );
            println!();
            if rows.is_empty() {
                println!("No committed offsets and no assigned partitions.");
            } else {
                let mut t = table(vec![
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "LOG-END-OFFSET",
                    "LAG",
                    "CONSUMER-ID",
                    "HOST",
                    "CLIENT-ID",
                ]);
                for r in &rows {
                    let owner = r.owner.map(|i| &desc.members[i]);
                    t.add_row(vec![
                        r.topic.clone(),
                        r.partition.to_string(),
                        show(r.committed),
                        show(r.log_end),
                        show(r.lag()),
                        owner.map_or("-".into(), |m| m.member_id.clone()),
                        owner.map_or("-".into(), |m| m.client_host.clone()),
                        owner.map_or("-".into(), |m| m.client_id.clone()),
                    ]);
                }
                println!("{t}");
            }
            if !desc.members.is_empty() {
                println!();
                let consumer = desc.epochs.is_some();
                let mut header = vec!["MEMBER-ID", "CLIENT-ID", "HOST"];
                if consumer {
                    header.push("EPOCH");
                }
                header.push("ASSIGNMENT");
                if consumer {
                    header.push("TARGET-ASSIGNMENT");
                }
                let mut t = table(header);
                let render = |a: &[(String, Vec<i32>)]| {
                    if a.is_empty() {
                        "-".to_string()
                    } else {
                        a.iter()
                            .map(|(t, ps)| {
                                let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                                format!("{t}:{}", ps.join(","))
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    }
                };
                for m in &desc.members {
                    let mut row = vec![
                        m.member_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                    ];
                    if consumer {
                        row.push(m.member_epoch.map_or("-".into(), |e| e.to_string()));
                    }
                    row.push(render(&m.assignment));
                    if consumer {
                        row.push(render(&m.target_assignment));
                    }
                    t.add_row(row);
                }
                println!("{t}");
            }
            Ok(())
        }
    }
}

/// Rows for every partition that is committed or assigned, sorted by topic and partition.
async fn partition_rows(
    admin: &Admin,
    desc: &GroupDescription,
    committed: &CommittedOffsets,
) -> Vec<PartitionRow> {
    let mut owners: BTreeMap<(String, i32), Option<usize>> =
        committed.keys().map(|k| (k.clone(), None)).collect();
    for (i, m) in desc.members.iter().enumerate() {
        for (t, ps) in &m.assignment {
            for p in ps {
                owners.insert((t.clone(), *p), Some(i));
            }
        }
    }
    let mut rows = Vec::with_capacity(owners.len());
    for ((topic, partition), owner) in owners {
        // A partition whose offsets cannot be read shows "-" rather than hiding the others.
        let log_end = admin.log_offsets(&topic, partition).await.ok().map(|o| o.1);
        rows.push(PartitionRow {
            committed: committed.get(&(topic.clone(), partition)).copied(),
            topic,
            partition,
            log_end,
            owner,
        });
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// reset-offsets

/// Where a reset moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetSpec {
    Earliest,
    Latest,
    Offset(i64),
    /// A time in ms since the epoch.
    Time(i64),
    ShiftBy(i64),
}

impl ResetArgs {
    fn spec(&self) -> anyhow::Result<ResetSpec> {
        Ok(if self.to_earliest {
            ResetSpec::Earliest
        } else if self.to_latest {
            ResetSpec::Latest
        } else if let Some(o) = self.to_offset {
            ResetSpec::Offset(o)
        } else if let Some(t) = self.to_datetime {
            ResetSpec::Time(t)
        } else if let Some(d) = self.by_duration {
            ResetSpec::Time(now_ms() - d)
        } else if let Some(n) = self.shift_by {
            ResetSpec::ShiftBy(n)
        } else {
            bail!(
                "pick where to reset to: --to-earliest, --to-latest, --to-offset, --to-datetime, --by-duration or --shift-by"
            )
        })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The new offset of a partition: the target clamped into [log start, log end].
fn new_offset(
    spec: ResetSpec,
    current: Option<i64>,
    start: i64,
    end: i64,
    for_time: Option<i64>,
) -> Result<i64, &'static str> {
    let target = match spec {
        ResetSpec::Earliest => start,
        ResetSpec::Latest => end,
        ResetSpec::Offset(o) => o,
        ResetSpec::Time(_) => for_time.unwrap_or(end),
        ResetSpec::ShiftBy(n) => match current {
            Some(c) => c.saturating_add(n),
            None => return Err("has no committed offset to shift"),
        },
    };
    Ok(target.clamp(start, end.max(start)))
}

async fn reset_offsets(a: ResetArgs) -> anyhow::Result<()> {
    let spec = a.spec()?;
    let admin = admin(&a.connect)?;
    let group = &a.group;
    let desc = admin
        .describe_group(group)
        .await
        .map_err(|e| group_error(e, group))?;
    if !desc.is_inactive() {
        bail!(
            "cannot reset the offsets of group {group:?}: it has {} active member(s) (state {}). \
             Offsets can only be reset while the group is inactive (Empty); stop its consumers first",
            desc.members.len(),
            desc.state
        );
    }
    let committed = admin
        .fetch_offsets(group, None)
        .await
        .map_err(|e| group_error(e, group))?;

    // The partitions to reset.
    let mut targets: BTreeSet<(String, i32)> = BTreeSet::new();
    if a.all_topics {
        targets.extend(committed.keys().cloned());
        if targets.is_empty() {
            bail!(
                "group {group:?} has no committed offsets; name the topics to reset with --topic"
            );
        }
    } else {
        for t in &a.topic {
            let (topic, parts) = parse_topic_partitions(t)?;
            let existing = topic_partitions(&admin, &topic).await?;
            let parts = match parts {
                Some(ps) => {
                    if let Some(p) = ps.iter().find(|p| !existing.contains(p)) {
                        bail!(
                            "topic {topic:?} has no partition {p} (it has {})",
                            existing.len()
                        );
                    }
                    ps
                }
                None => existing,
            };
            targets.extend(parts.into_iter().map(|p| (topic.clone(), p)));
        }
    }

    // (topic, partition, current, new)
    let mut plan: Vec<(String, i32, Option<i64>, i64)> = Vec::with_capacity(targets.len());
    for (topic, partition) in targets {
        let (start, end) = admin
            .log_offsets(&topic, partition)
            .await
            .map_err(friendly)?;
        let for_time = match spec {
            ResetSpec::Time(ts) => admin
                .offset_for_time(&topic, partition, ts)
                .await
                .map_err(friendly)?,
            _ => None,
        };
        let current = committed.get(&(topic.clone(), partition)).copied();
        let new = new_offset(spec, current, start, end, for_time).map_err(|why| {
            anyhow::anyhow!("partition {partition} of topic {topic:?} {why} in group {group:?}")
        })?;
        plan.push((topic, partition, current, new));
    }

    if a.execute {
        let offsets: CommittedOffsets = plan
            .iter()
            .map(|(t, p, _, n)| ((t.clone(), *p), *n))
            .collect();
        admin
            .commit_offsets(group, &offsets)
            .await
            .map_err(|e| group_error(e, group))?;
    }
    match a.output {
        Output::Json => {
            let v: Vec<_> = plan
                .iter()
                .map(|(t, p, c, n)| {
                    json!({"topic": t, "partition": p, "current_offset": c, "new_offset": n})
                })
                .collect();
            print_json(&json!({"group": group, "executed": a.execute, "offsets": v}))?;
        }
        Output::Table => {
            let mut t = table(vec![
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "NEW-OFFSET",
            ]);
            for (topic, p, c, n) in &plan {
                t.add_row(vec![
                    group.clone(),
                    topic.clone(),
                    p.to_string(),
                    show(*c),
                    n.to_string(),
                ]);
            }
            println!("{t}");
        }
    }
    if a.execute {
        eprintln!(
            "Committed new offsets for {} partition(s) of group {group}.",
            plan.len()
        );
    } else {
        eprintln!("Dry run: nothing was committed. Pass --execute to apply these offsets.");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// delete, delete-offsets

async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let admin = admin(&a.connect)?;
    admin
        .delete_group(&a.group)
        .await
        .map_err(|e| group_error(e, &a.group))?;
    println!("Deleted group {}.", a.group);
    Ok(())
}

async fn delete_offsets(a: DeleteOffsetsArgs) -> anyhow::Result<()> {
    let admin = admin(&a.connect)?;
    let group = &a.group;
    let (topic, parts) = parse_topic_partitions(&a.topic)?;
    let partitions = match parts {
        Some(ps) => ps,
        None => {
            // The partitions the group committed for the topic, else all the topic has.
            let committed = admin
                .fetch_offsets(group, None)
                .await
                .map_err(|e| group_error(e, group))?;
            let mine: Vec<i32> = committed
                .keys()
                .filter(|(t, _)| *t == topic)
                .map(|(_, p)| *p)
                .collect();
            if mine.is_empty() {
                match topic_partitions(&admin, &topic).await {
                    Ok(ps) => ps,
                    Err(_) => vec![0],
                }
            } else {
                mine
            }
        }
    };
    admin
        .delete_offsets(group, &topic, &partitions)
        .await
        .map_err(|e| group_error(e, group))?;
    println!(
        "Deleted the committed offsets of group {group} for topic {topic} ({} partition(s)).",
        partitions.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// time parsing

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An RFC 3339 time (`2026-11-23T10:00:00Z`, `2026-11-23T10:00:00.250+01:00`) as ms since the
/// epoch.
fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let err = || {
        format!(
            "{s:?} is not an RFC 3339 time like 2026-11-23T10:00:00Z or 2026-11-23T11:00:00+01:00"
        )
    };
    let b = s.trim().as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = b.get(from..from + len).ok_or_else(err)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(err());
        }
        std::str::from_utf8(part)
            .ok()
            .and_then(|p| p.parse().ok())
            .ok_or_else(err)
    };
    let sep = |at: usize, allowed: &[u8]| -> Result<(), String> {
        match b.get(at) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(err()),
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    sep(13, b":")?;
    sep(16, b":")?;
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(err());
        }
        for k in 0..3 {
            millis = millis * 10
                + if k < digits {
                    i64::from(b[i + k] - b'0')
                } else {
                    0
                };
        }
        i += digits;
    }
    let offset_minutes = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            sep(i + 3, b":")?;
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err(err());
            }
            let m = oh * 60 + om;
            if *sign == b'-' { -m } else { m }
        }
        _ => return Err(err()),
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(err());
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Ok(secs * 1000 + millis)
}

/// An ISO 8601 duration `PnDTnHnMnS` (as Kafka's --by-duration takes it; seconds may have a
/// fraction) in ms.
fn parse_iso_duration_ms(s: &str) -> Result<i64, String> {
    let err =
        || format!("{s:?} is not a duration like PT1H30M, P1D or PT45S (ISO 8601 PnDTnHnMnS)");
    let upper = s.trim().to_ascii_uppercase();
    let rest = upper.strip_prefix('P').ok_or_else(err)?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return Err(err());
            }
            (d, t)
        }
        None => (rest, ""),
    };
    if date.is_empty() && time.is_empty() {
        return Err(err());
    }
    let mut total_ms: f64 = 0.0;
    let mut parse_part = |part: &str, units: &[(char, f64)]| -> Result<(), String> {
        let mut number = String::new();
        let mut next_unit = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let pos = units[next_unit..]
                .iter()
                .position(|(u, _)| *u == c)
                .ok_or_else(err)?;
            let (_, ms) = units[next_unit + pos];
            let n: f64 = number.parse().map_err(|_| err())?;
            if number.contains('.') && c != 'S' {
                return Err(err());
            }
            total_ms += n * ms;
            number.clear();
            next_unit += pos + 1;
        }
        if number.is_empty() {
            Ok(())
        } else {
            Err(err())
        }
    };
    parse_part(date, &[('D', 86_400_000.0)])?;
    parse_part(time, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1000.0)])?;
    if !total_ms.is_finite() || total_ms > i64::MAX as f64 / 2.0 {
        return Err(err());
    }
    Ok(total_ms.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_to_epoch_ms() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_rfc3339_ms("2026-11-23T10:00:00Z").unwrap(),
            1_795_428_000_000
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-23T11:00:00+01:00").unwrap(),
            1_795_428_000_000
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-23T09:30:00.250-00:30").unwrap(),
            1_795_428_000_250
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29t00:00:00z").unwrap(),
            1_709_164_800_000
        );
        for bad in [
            "2026-11-23",
            "2026-11-23T10:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-23T10:00:00+0100",
            "2026-11-23T10:00:00.Z",
            "yesterday",
        ] {
            assert!(parse_rfc3339_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iso_durations_parse_to_ms() {
        assert_eq!(parse_iso_duration_ms("PT1H").unwrap(), 3_600_000);
        assert_eq!(parse_iso_duration_ms("PT1H30M").unwrap(), 5_400_000);
        assert_eq!(parse_iso_duration_ms("P1D").unwrap(), 86_400_000);
        assert_eq!(parse_iso_duration_ms("P1DT2H3M4.5S").unwrap(), 93_784_500);
        assert_eq!(parse_iso_duration_ms("pt45s").unwrap(), 45_000);
        for bad in ["", "P", "PT", "1h30m", "PT1M1H", "P1H", "PT1.5H", "PT5"] {
            assert!(parse_iso_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_partition_lists_parse() {
        assert_eq!(
            parse_topic_partitions("orders").unwrap(),
            ("orders".to_string(), None)
        );
        assert_eq!(
            parse_topic_partitions("orders:2,0,2").unwrap(),
            ("orders".to_string(), Some(vec![0, 2]))
        );
        assert!(parse_topic_partitions("orders:").is_err());
        assert!(parse_topic_partitions("orders:x").is_err());
        assert!(parse_topic_partitions(":1").is_err());
    }

    #[test]
    fn new_offsets_are_clamped_into_the_log() {
        let n = |spec, current, for_time| new_offset(spec, current, 10, 100, for_time);
        assert_eq!(n(ResetSpec::Earliest, Some(50), None), Ok(10));
        assert_eq!(n(ResetSpec::Latest, Some(50), None), Ok(100));
        assert_eq!(n(ResetSpec::Offset(5), None, None), Ok(10));
        assert_eq!(n(ResetSpec::Offset(500), None, None), Ok(100));
        assert_eq!(n(ResetSpec::Offset(42), None, None), Ok(42));
        assert_eq!(n(ResetSpec::ShiftBy(-45), Some(50), None), Ok(10));
        assert_eq!(n(ResetSpec::ShiftBy(20), Some(50), None), Ok(70));
        assert!(n(ResetSpec::ShiftBy(1), None, None).is_err());
        assert_eq!(n(ResetSpec::Time(0), None, Some(30)), Ok(30));
        assert_eq!(n(ResetSpec::Time(0), None, None), Ok(100));
    }
}
