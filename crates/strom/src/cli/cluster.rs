//! `strom cluster describe|quorum`: the brokers of a cluster and its metadata quorum, like
//! Kafka's `kafka-cluster.sh` and `kafka-metadata-quorum.sh describe --status|--replication`.

use std::collections::BTreeMap;

use serde_json::json;
use strom_client::{
    BrokerMetadata, ClientError, ClusterDescription, ClusterMetadata, QuorumDescription,
    QuorumReplica,
};

use super::common::{ConnectArgs, Output, friendly, print_json, table};

pub const LONG_ABOUT: &str = "\
Show a cluster: its id, the active controller and the brokers (`describe`), or the metadata
quorum that orders every metadata change (`quorum`). Both use Kafka's own APIs
(DescribeCluster, Metadata, DescribeQuorum) and work against a single node too (a quorum of
one).

Examples:
  strom cluster describe
  strom cluster describe --bootstrap-server 127.0.0.1:19092 --output json
  strom cluster quorum
  strom cluster quorum --output json | jq .leader_id";

pub const DESCRIBE_LONG_ABOUT: &str = "\
Show the cluster id, the active controller and every registered broker with its address,
rack, status (controller, live, or fenced: it stopped heartbeating and leads nothing), how many
partition replicas it holds and how many partitions it leads (from Metadata of all topics). Offline partitions (no leader) and under-replicated ones (ISR smaller than the
replicas) are counted below the table.

Examples:
  strom cluster describe
  strom cluster describe --output json";

pub const QUORUM_LONG_ABOUT: &str = "\
Show the metadata quorum (the `__cluster_metadata` log, replicated by Raft among the voters of
controller.quorum.voters): its leader (the active controller), the leader epoch, the high
watermark (what is committed) and each voter's log end offset and lag behind the leader. The
question goes to the active controller's broker, which knows every voter's progress; if it
cannot be reached, a bootstrap server answers with what it knows (unknown offsets show as -).

Examples:
  strom cluster quorum
  strom cluster quorum --output json";

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the cluster id, the controller and the brokers
    #[command(long_about = DESCRIBE_LONG_ABOUT)]
    Describe(Args),
    /// Show the metadata quorum: leader, epoch, high watermark, voters and their lag
    #[command(long_about = QUORUM_LONG_ABOUT)]
    Quorum(Args),
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How to print the description
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Describe(a) => describe(a).await,
        ClusterCommand::Quorum(a) => quorum(a).await,
    }
}

/// Replicas held and partitions led per broker; offline and under-replicated partitions.
#[derive(Default, Debug, PartialEq, Eq)]
struct Load {
    replicas: BTreeMap<i32, usize>,
    leaders: BTreeMap<i32, usize>,
    partitions: usize,
    offline: usize,
    under_replicated: usize,
}

fn load(md: &ClusterMetadata) -> Load {
    let mut l = Load::default();
    for t in md.topics.iter().filter(|t| t.error_code == 0) {
        for p in &t.partitions {
            l.partitions += 1;
            for r in &p.replicas {
                *l.replicas.entry(*r).or_default() += 1;
            }
            if p.leader >= 0 {
                *l.leaders.entry(p.leader).or_default() += 1;
            } else {
                l.offline += 1;
            }
            if p.isr.len() < p.replicas.len() {
                l.under_replicated += 1;
            }
        }
    }
    l
}

async fn describe(a: Args) -> anyhow::Result<()> {
    let admin = a.connect.admin()?;
    let md = admin.metadata(None).await.map_err(friendly)?;
    let cluster = match admin.describe_cluster_with(true).await {
        Ok(c) => c,
        // A broker without DescribeCluster: Metadata says the same.
        Err(ClientError::UnsupportedVersion { .. }) => ClusterDescription {
            cluster_id: md.cluster_id.clone().unwrap_or_default(),
            controller_id: md.controller_id,
            brokers: md.brokers.clone(),
            fenced: Vec::new(),
        },
        Err(e) => return Err(friendly(e)),
    };
    let load = load(&md);
    let count = |m: &BTreeMap<i32, usize>, id: i32| m.get(&id).copied().unwrap_or(0);
    let controller = cluster
        .brokers
        .iter()
        .find(|b| b.id == cluster.controller_id);
    match a.output {
        Output::Json => print_json(&json!({
            "cluster_id": cluster.cluster_id,
            "controller_id": cluster.controller_id,
            "brokers": cluster.brokers.iter().map(|b| json!({
                "id": b.id,
                "host": b.host,
                "port": b.port,
                "rack": b.rack,
                "is_controller": b.id == cluster.controller_id,
                "fenced": cluster.fenced.contains(&b.id),
                "replicas": count(&load.replicas, b.id),
                "leaders": count(&load.leaders, b.id),
            })).collect::<Vec<_>>(),
            "partitions": load.partitions,
            "offline_partitions": load.offline,
            "under_replicated_partitions": load.under_replicated,
        }))?,
        Output::Table => {
            println!("Cluster id:  {}", cluster.cluster_id);
            println!(
                "Controller:  {}",
                match controller {
                    Some(b) => format!("{} ({})", b.id, b.address()),
                    None if cluster.controller_id < 0 => "none (an election is under way)".into(),
                    None => cluster.controller_id.to_string(),
                }
            );
            println!();
            let mut t = table(vec![
                "ID", "HOST", "PORT", "RACK", "REPLICAS", "LEADERS", "STATUS",
            ]);
            for b in &cluster.brokers {
                t.add_row(broker_row(b, &load, &cluster));
            }
            println!("{t}");
            println!();
            println!(
                "{} partitions, {} offline, {} under-replicated",
                load.partitions, load.offline, load.under_replicated
            );
        }
    }
    Ok(())
}

fn broker_row(b: &BrokerMetadata, load: &Load, cluster: &ClusterDescription) -> Vec<String> {
    let count = |m: &BTreeMap<i32, usize>| m.get(&b.id).copied().unwrap_or(0).to_string();
    vec![
        b.id.to_string(),
        b.host.clone(),
        b.port.to_string(),
        b.rack.clone().unwrap_or_else(|| "-".into()),
        count(&load.replicas),
        count(&load.leaders),
        if cluster.fenced.contains(&b.id) {
            "fenced"
        } else if b.id == cluster.controller_id {
            "controller"
        } else {
            "live"
        }
        .to_string(),
    ]
}

/// Kafka's status of a quorum member: Leader, Follower (a voter) or Observer.
fn status(q: &QuorumDescription, r: &QuorumReplica, voter: bool) -> &'static str {
    if r.id == q.leader_id {
        "Leader"
    } else if voter {
        "Follower"
    } else {
        "Observer"
    }
}

fn optional(v: i64) -> serde_json::Value {
    if v < 0 {
        serde_json::Value::Null
    } else {
        json!(v)
    }
}

async fn quorum(a: Args) -> anyhow::Result<()> {
    let admin = a.connect.admin()?;
    let q = admin.describe_quorum().await.map_err(friendly)?;
    let members: Vec<(&QuorumReplica, bool)> = q
        .voters
        .iter()
        .map(|r| (r, true))
        .chain(q.observers.iter().map(|r| (r, false)))
        .collect();
    let max_lag = q
        .voters
        .iter()
        .filter(|r| r.id != q.leader_id)
        .filter_map(|r| q.lag(r))
        .max();
    match a.output {
        Output::Json => {
            let replica = |r: &QuorumReplica, voter: bool| {
                json!({
                    "id": r.id,
                    "log_end_offset": optional(r.log_end_offset),
                    "lag": q.lag(r),
                    "last_fetch_timestamp": optional(r.last_fetch_timestamp),
                    "last_caught_up_timestamp": optional(r.last_caught_up_timestamp),
                    "status": status(&q, r, voter),
                })
            };
            print_json(&json!({
                "leader_id": q.leader_id,
                "leader_epoch": q.leader_epoch,
                "high_watermark": q.high_watermark,
                "max_follower_lag": max_lag,
                "voters": q.voters.iter().map(|r| replica(r, true)).collect::<Vec<_>>(),
                "observers": q.observers.iter().map(|r| replica(r, false)).collect::<Vec<_>>(),
                "answered_by": q.answered_by,
            }))?
        }
        Output::Table => {
            let leader = if q.leader_id < 0 {
                "none (an election is under way)".to_string()
            } else {
                q.leader_id.to_string()
            };
            println!("Leader:            {leader}");
            println!("Leader epoch:      {}", q.leader_epoch);
            println!("High watermark:    {}", q.high_watermark);
            println!(
                "Max follower lag:  {}",
                max_lag.map_or("-".to_string(), |l| l.to_string())
            );
            println!(
                "Voters:            {}",
                q.voters
                    .iter()
                    .map(|r| r.id.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            println!();
            let mut t = table(vec!["NODE", "LOG-END-OFFSET", "LAG", "STATUS"]);
            for (r, voter) in members {
                t.add_row(vec![
                    r.id.to_string(),
                    if r.log_end_offset < 0 {
                        "-".into()
                    } else {
                        r.log_end_offset.to_string()
                    },
                    q.lag(r).map_or("-".into(), |l| l.to_string()),
                    status(&q, r, voter).to_string(),
                ]);
            }
            println!("{t}");
            if q.leader_log_end_offset().is_none() {
                println!();
                println!(
                    "({} is not the quorum leader and knows only its own log end offset)",
                    q.answered_by
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use strom_client::{PartitionMetadata, TopicId, TopicMetadata};

    use super::*;

    #[test]
    fn load_counts_replicas_leaders_offline_and_under_replicated_partitions() {
        let p = |index, leader, replicas: &[i32], isr: &[i32]| PartitionMetadata {
            index,
            leader,
            leader_epoch: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            offline_replicas: vec![],
            error_code: 0,
        };
        let md = ClusterMetadata {
            cluster_id: None,
            controller_id: 1,
            brokers: vec![],
            topics: vec![TopicMetadata {
                name: "t".into(),
                id: TopicId::default(),
                error_code: 0,
                is_internal: false,
                partitions: vec![
                    p(0, 1, &[1, 2, 3], &[1, 2, 3]),
                    p(1, 2, &[2, 3, 1], &[2, 3]),
                    p(2, -1, &[3], &[3]),
                ],
            }],
        };
        let l = load(&md);
        assert_eq!(l.partitions, 3);
        assert_eq!(l.replicas.get(&1), Some(&2));
        assert_eq!(l.replicas.get(&3), Some(&3));
        assert_eq!(l.leaders.get(&1), Some(&1));
        assert_eq!(l.leaders.get(&3), None);
        assert_eq!((l.offline, l.under_replicated), (1, 1));
    }
}
