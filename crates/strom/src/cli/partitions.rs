//! `strom partitions reassign` (like kafka-reassign-partitions.sh) and `strom leaders elect`
//! (like kafka-leader-election.sh).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;

use super::common::{ConnectArgs, Output, friendly, print_json, table};

pub const LONG_ABOUT: &str = "\
Move partition replicas between brokers. A reassignment plan is JSON in Kafka's format:
  {\"version\":1,\"partitions\":[{\"topic\":\"orders\",\"partition\":0,\"replicas\":[2,3,4]}]}
--generate proposes a plan that spreads the named topics over the named brokers (keeping each
partition's replication factor); --execute starts the moves of a plan (new replicas copy the
log while clients keep producing; the old ones are dropped once the new ones are in sync);
--verify shows whether each move of a plan is done; --cancel abandons the moves of a plan;
--list shows the moves in progress.

Examples:
  strom partitions reassign --generate --topics orders,payments --brokers 2,3,4 > plan.json
  strom partitions reassign --execute --reassignment-json-file plan.json
  strom partitions reassign --verify --reassignment-json-file plan.json
  strom partitions reassign --list";

pub const LEADERS_LONG_ABOUT: &str = "\
Elect partition leaders. A preferred election gives leadership back to each partition's first
replica when it is alive and in sync (after brokers restarted, leadership piles up on the
others); an unclean election gives a partition without any in-sync replica a leader from the
out-of-sync ones, which loses the records they lack.

Examples:
  strom leaders elect --all-topic-partitions
  strom leaders elect --topic orders --partition 0
  strom leaders elect --type unclean --topic orders --partition 3";

#[derive(clap::Subcommand, Debug)]
pub enum PartitionsCommand {
    /// Generate, execute, verify, cancel or list partition reassignments
    #[command(long_about = LONG_ABOUT)]
    Reassign(ReassignArgs),
}

#[derive(clap::Args, Debug)]
#[group(id = "mode", required = true, multiple = false)]
pub struct Mode {
    /// Propose a plan for --topics over --brokers (printed as JSON)
    #[arg(long, group = "mode")]
    pub generate: bool,
    /// Start the moves of --reassignment-json-file
    #[arg(long, group = "mode")]
    pub execute: bool,
    /// Show whether the moves of --reassignment-json-file are done
    #[arg(long, group = "mode")]
    pub verify: bool,
    /// Abandon the moves of --reassignment-json-file
    #[arg(long, group = "mode")]
    pub cancel: bool,
    /// List the moves in progress
    #[arg(long, group = "mode")]
    pub list: bool,
}

#[derive(clap::Args, Debug)]
pub struct ReassignArgs {
    #[command(flatten)]
    pub mode: Mode,
    /// Topics to move (for --generate), comma-separated
    #[arg(long, value_delimiter = ',')]
    pub topics: Vec<String>,
    /// Brokers to move them onto (for --generate), comma-separated ids
    #[arg(long, value_delimiter = ',')]
    pub brokers: Vec<i32>,
    /// The plan (for --execute, --verify and --cancel)
    #[arg(long, value_name = "FILE")]
    pub reassignment_json_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum LeadersCommand {
    /// Elect preferred (or unclean) leaders
    #[command(long_about = LEADERS_LONG_ABOUT)]
    Elect(ElectArgs),
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

#[derive(clap::Args, Debug)]
pub struct ElectArgs {
    /// preferred: the first replica leads again; unclean: any live replica of a partition
    /// without a leader
    #[arg(long = "type", value_enum, default_value_t = ElectionType::Preferred)]
    pub election_type: ElectionType,
    /// Every partition of every topic
    #[arg(long, conflicts_with = "topic")]
    pub all_topic_partitions: bool,
    /// A topic (all its partitions unless --partition)
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long, requires = "topic")]
    pub partition: Option<i32>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// One move of a plan.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Move {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    #[serde(default = "one")]
    pub version: i32,
    pub partitions: Vec<Move>,
}

fn one() -> i32 {
    1
}

fn read_plan(path: &Option<PathBuf>) -> anyhow::Result<Plan> {
    let Some(path) = path else {
        anyhow::bail!("give the plan with --reassignment-json-file FILE");
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a reassignment plan: {e}", path.display()))
}

/// Spreads each partition's replicas over `brokers` round-robin, starting one broker further
/// for each partition, so that leaders spread too.
pub fn propose(current: &[Move], brokers: &[i32]) -> anyhow::Result<Vec<Move>> {
    let mut brokers = brokers.to_vec();
    brokers.sort_unstable();
    brokers.dedup();
    current
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let rf = m.replicas.len();
            if rf > brokers.len() {
                anyhow::bail!(
                    "{}-{} has {rf} replicas but only {} brokers were given",
                    m.topic,
                    m.partition,
                    brokers.len()
                );
            }
            Ok(Move {
                topic: m.topic.clone(),
                partition: m.partition,
                replicas: (0..rf).map(|r| brokers[(i + r) % brokers.len()]).collect(),
            })
        })
        .collect()
}

fn ids(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

pub async fn run(cmd: PartitionsCommand) -> anyhow::Result<()> {
    let PartitionsCommand::Reassign(a) = cmd;
    let admin = a.connect.admin()?;
    if a.mode.list {
        let list = admin
            .list_partition_reassignments()
            .await
            .map_err(friendly)?;
        match a.output {
            Output::Json => print_json(&json!(
                list.iter()
                    .map(|r| json!({"topic": r.topic, "partition": r.partition, "replicas": r.replicas, "adding": r.adding, "removing": r.removing}))
                    .collect::<Vec<_>>()
            ))?,
            Output::Table => {
                if list.is_empty() {
                    println!("No reassignment is in progress.");
                } else {
                    let mut t = table(vec!["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"]);
                    for r in &list {
                        t.add_row(vec![
                            r.topic.clone(),
                            r.partition.to_string(),
                            ids(&r.replicas),
                            ids(&r.adding),
                            ids(&r.removing),
                        ]);
                    }
                    println!("{t}");
                }
            }
        }
        return Ok(());
    }
    if a.mode.generate {
        if a.topics.is_empty() || a.brokers.is_empty() {
            anyhow::bail!("--generate needs --topics and --brokers");
        }
        let md = admin
            .metadata(Some(a.topics.clone()))
            .await
            .map_err(friendly)?;
        let mut current = Vec::new();
        for name in &a.topics {
            let t = md
                .topic(name)
                .filter(|t| t.error_code == 0)
                .ok_or_else(|| anyhow::anyhow!("topic {name:?} does not exist"))?;
            for p in &t.partitions {
                current.push(Move {
                    topic: name.clone(),
                    partition: p.index,
                    replicas: p.replicas.clone(),
                });
            }
        }
        let proposed = propose(&current, &a.brokers)?;
        let current = Plan {
            version: 1,
            partitions: current,
        };
        let proposed = Plan {
            version: 1,
            partitions: proposed,
        };
        match a.output {
            Output::Json => print_json(&json!({"current": current, "proposed": proposed}))?,
            Output::Table => {
                eprintln!("Current partition replica assignment (keep it to roll back):");
                eprintln!("{}", serde_json::to_string(&current)?);
                eprintln!("Proposed partition reassignment configuration:");
                println!("{}", serde_json::to_string(&proposed)?);
            }
        }
        return Ok(());
    }
    let plan = read_plan(&a.reassignment_json_file)?;
    if a.mode.execute || a.mode.cancel {
        let moves: Vec<(String, i32, Option<Vec<i32>>)> = plan
            .partitions
            .iter()
            .map(|m| {
                (
                    m.topic.clone(),
                    m.partition,
                    (!a.mode.cancel).then(|| m.replicas.clone()),
                )
            })
            .collect();
        let results = admin
            .alter_partition_reassignments(&moves)
            .await
            .map_err(friendly)?;
        let mut failed = 0;
        let mut t = table(vec!["TOPIC", "PARTITION", "RESULT"]);
        let mut rows = Vec::new();
        for (topic, partition, outcome) in &results {
            let text = match outcome {
                Ok(()) if a.mode.cancel => "cancelled".to_string(),
                Ok(()) => "started".to_string(),
                Err(e) => {
                    failed += 1;
                    e.to_string()
                }
            };
            rows.push(json!({"topic": topic, "partition": partition, "result": text}));
            t.add_row(vec![topic.clone(), partition.to_string(), text]);
        }
        match a.output {
            Output::Json => print_json(&json!(rows))?,
            Output::Table => println!("{t}"),
        }
        if failed > 0 {
            anyhow::bail!("{failed} of {} moves failed", results.len());
        }
        return Ok(());
    }
    // --verify
    let ongoing = admin
        .list_partition_reassignments()
        .await
        .map_err(friendly)?;
    let topics: Vec<String> = plan
        .partitions
        .iter()
        .map(|m| m.topic.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let md = admin.metadata(Some(topics)).await.map_err(friendly)?;
    let mut status: BTreeMap<(String, i32), String> = BTreeMap::new();
    let mut done = 0;
    for m in &plan.partitions {
        let in_progress = ongoing
            .iter()
            .any(|r| r.topic == m.topic && r.partition == m.partition);
        let replicas = md
            .topic(&m.topic)
            .and_then(|t| t.partitions.iter().find(|p| p.index == m.partition))
            .map(|p| p.replicas.clone());
        let text = if in_progress {
            "in progress".to_string()
        } else if replicas.as_ref() == Some(&m.replicas) {
            done += 1;
            "complete".to_string()
        } else {
            format!(
                "not applied (replicas are {})",
                replicas.map_or("unknown".into(), |r| ids(&r))
            )
        };
        status.insert((m.topic.clone(), m.partition), text);
    }
    match a.output {
        Output::Json => print_json(&json!(
            status
                .iter()
                .map(|((t, p), s)| json!({"topic": t, "partition": p, "status": s}))
                .collect::<Vec<_>>()
        ))?,
        Output::Table => {
            let mut t = table(vec!["TOPIC", "PARTITION", "STATUS"]);
            for ((topic, p), s) in &status {
                t.add_row(vec![topic.clone(), p.to_string(), s.clone()]);
            }
            println!("{t}");
            println!("{done} of {} moves complete", plan.partitions.len());
        }
    }
    Ok(())
}

pub async fn run_leaders(cmd: LeadersCommand) -> anyhow::Result<()> {
    let LeadersCommand::Elect(a) = cmd;
    let admin = a.connect.admin()?;
    let partitions: Option<Vec<(String, i32)>> = match (&a.topic, a.partition) {
        _ if a.all_topic_partitions => None,
        (Some(t), Some(p)) => Some(vec![(t.clone(), p)]),
        (Some(t), None) => {
            let md = a
                .connect
                .admin()?
                .metadata(Some(vec![t.clone()]))
                .await
                .map_err(friendly)?;
            let topic = md
                .topic(t)
                .filter(|x| x.error_code == 0)
                .ok_or_else(|| anyhow::anyhow!("topic {t:?} does not exist"))?;
            Some(
                topic
                    .partitions
                    .iter()
                    .map(|p| (t.clone(), p.index))
                    .collect(),
            )
        }
        (None, _) => anyhow::bail!("name --topic (and --partition) or --all-topic-partitions"),
    };
    let results = admin
        .elect_leaders(
            a.election_type == ElectionType::Unclean,
            partitions.as_deref(),
        )
        .await
        .map_err(friendly)?;
    let mut rows = Vec::new();
    let mut t = table(vec!["TOPIC", "PARTITION", "RESULT"]);
    for (topic, partition, outcome) in &results {
        let text = match outcome {
            Ok(()) => "elected".to_string(),
            Err(e) => e.to_string(),
        };
        rows.push(json!({"topic": topic, "partition": partition, "result": text}));
        t.add_row(vec![topic.clone(), partition.to_string(), text]);
    }
    match a.output {
        Output::Json => print_json(&json!(rows))?,
        Output::Table if results.is_empty() => {
            println!("Every partition is led by its preferred replica.")
        }
        Output::Table => println!("{t}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_keep_the_replication_factor_and_rotate_leaders() {
        let current: Vec<Move> = (0..3)
            .map(|p| Move {
                topic: "t".into(),
                partition: p,
                replicas: vec![1, 2, 3],
            })
            .collect();
        let plan = propose(&current, &[4, 2, 3]).unwrap();
        let replicas: Vec<Vec<i32>> = plan.iter().map(|m| m.replicas.clone()).collect();
        assert_eq!(replicas, vec![vec![2, 3, 4], vec![3, 4, 2], vec![4, 2, 3]]);
        assert!(propose(&current, &[1, 2]).is_err());
    }
}
