//! `strom transactions list|describe` and `strom producers describe`: what transactional and
//! idempotent producers are doing, like Kafka's kafka-transactions.sh.

use serde_json::json;
use strom_client::{Admin, TransactionDescription};

use super::common::{ConnectArgs, Output, friendly, print_json, table};

pub const LONG_ABOUT: &str = "\
Show transactional ids and their transactions: state, producer id and epoch, timeout, when the
open transaction started and which partitions it wrote to.

Examples:
  strom transactions list
  strom transactions list --state Ongoing
  strom transactions describe payments-tx
  strom transactions describe payments-tx --output json";

pub const PRODUCERS_LONG_ABOUT: &str = "\
Show the idempotent and transactional producers a partition knows: producer id and epoch, the
last sequence number written, when it last wrote, and the first offset of its open transaction
(which holds back the last stable offset that read_committed consumers read up to).

Examples:
  strom producers describe --topic orders --partition 0
  strom producers describe --topic orders --partition 0 --output json";

#[derive(clap::Subcommand, Debug)]
pub enum TransactionsCommand {
    /// List transactional ids with their state and producer id
    #[command(
        long_about = "List every transactional id the cluster knows, with its state and producer id.\n\nStates: Empty (no transaction yet), Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort.\n\nExamples:\n  strom transactions list\n  strom transactions list --state Ongoing,PrepareCommit --output json"
    )]
    List(ListArgs),
    /// Show a transactional id: state, producer, timeout, start time, partitions
    #[command(
        long_about = "Show one transactional id at its coordinator: state, producer id and epoch, transaction timeout, the start time of the open transaction and the partitions it has written to (or committed offsets for).\n\nExample:\n  strom transactions describe payments-tx"
    )]
    Describe(DescribeArgs),
}

#[derive(clap::Subcommand, Debug)]
pub enum ProducersCommand {
    /// Show the producers of one partition
    #[command(long_about = PRODUCERS_LONG_ABOUT)]
    Describe(ProducersArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only transactions in these states (comma-separated or repeated), e.g. Ongoing
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
    /// The transactional id
    pub transactional_id: String,
    /// How to print the description
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Args, Debug)]
pub struct ProducersArgs {
    /// The topic
    #[arg(long)]
    pub topic: String,
    /// The partition
    #[arg(long)]
    pub partition: i32,
    /// How to print the producers
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

pub async fn run(cmd: TransactionsCommand) -> anyhow::Result<()> {
    match cmd {
        TransactionsCommand::List(a) => list(a).await,
        TransactionsCommand::Describe(a) => describe(a).await,
    }
}

pub async fn run_producers(cmd: ProducersCommand) -> anyhow::Result<()> {
    match cmd {
        ProducersCommand::Describe(a) => producers(a).await,
    }
}

fn admin(connect: &ConnectArgs) -> anyhow::Result<Admin> {
    connect.admin()
}

/// A wall-clock time in milliseconds as RFC 3339 UTC, or "-" for -1.
fn time(ms: i64) -> String {
    if ms < 0 {
        return "-".to_string();
    }
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let admin = admin(&a.connect)?;
    let txns = admin.list_transactions(&a.state).await.map_err(friendly)?;
    match a.output {
        Output::Json => print_json(&json!(
            txns.iter()
                .map(|t| json!({
                    "transactional_id": t.transactional_id,
                    "producer_id": t.producer_id,
                    "state": t.state,
                    "coordinator": t.coordinator,
                }))
                .collect::<Vec<_>>()
        )),
        Output::Table => {
            if txns.is_empty() {
                println!("no transactional ids");
                return Ok(());
            }
            let mut t = table(vec![
                "TRANSACTIONAL ID",
                "PRODUCER ID",
                "STATE",
                "COORDINATOR",
            ]);
            for x in &txns {
                t.add_row(vec![
                    x.transactional_id.clone(),
                    x.producer_id.to_string(),
                    x.state.clone(),
                    x.coordinator.clone(),
                ]);
            }
            println!("{t}");
            Ok(())
        }
    }
}

fn describe_json(d: &TransactionDescription) -> serde_json::Value {
    json!({
        "transactional_id": d.transactional_id,
        "state": d.state,
        "producer_id": d.producer_id,
        "producer_epoch": d.producer_epoch,
        "transaction_timeout_ms": d.timeout_ms,
        "transaction_start_time_ms": d.start_time_ms,
        "partitions": d.partitions,
        "coordinator": d.coordinator,
    })
}

async fn describe(a: DescribeArgs) -> anyhow::Result<()> {
    let admin = admin(&a.connect)?;
    let d = admin
        .describe_transaction(&a.transactional_id)
        .await
        .map_err(|e| match e.kafka_code() {
            Some(105) => {
                anyhow::anyhow!("{e}\nhint: `strom transactions list` shows the transactional ids")
            }
            _ => friendly(e),
        })?;
    match a.output {
        Output::Json => print_json(&describe_json(&d)),
        Output::Table => {
            let mut t = table(vec![
                "TRANSACTIONAL ID",
                "STATE",
                "PRODUCER ID",
                "EPOCH",
                "TIMEOUT MS",
                "STARTED",
                "COORDINATOR",
            ]);
            t.add_row(vec![
                d.transactional_id.clone(),
                d.state.clone(),
                d.producer_id.to_string(),
                d.producer_epoch.to_string(),
                d.timeout_ms.to_string(),
                time(d.start_time_ms),
                d.coordinator.clone(),
            ]);
            println!("{t}");
            if !d.partitions.is_empty() {
                println!();
                let mut p = table(vec!["TOPIC", "PARTITIONS"]);
                for (topic, ps) in &d.partitions {
                    p.add_row(vec![
                        topic.clone(),
                        ps.iter().map(i32::to_string).collect::<Vec<_>>().join(","),
                    ]);
                }
                println!("{p}");
            }
            Ok(())
        }
    }
}

async fn producers(a: ProducersArgs) -> anyhow::Result<()> {
    let admin = admin(&a.connect)?;
    let ps = admin
        .describe_producers(&a.topic, a.partition)
        .await
        .map_err(friendly)?;
    match a.output {
        Output::Json => print_json(&json!(
            ps.iter()
                .map(|p| json!({
                    "producer_id": p.producer_id,
                    "producer_epoch": p.producer_epoch,
                    "last_sequence": p.last_sequence,
                    "last_timestamp": p.last_timestamp,
                    "coordinator_epoch": p.coordinator_epoch,
                    "current_transaction_start_offset": p.current_txn_start_offset,
                }))
                .collect::<Vec<_>>()
        )),
        Output::Table => {
            if ps.is_empty() {
                println!("no producers on {}-{}", a.topic, a.partition);
                return Ok(());
            }
            let mut t = table(vec![
                "PRODUCER ID",
                "EPOCH",
                "LAST SEQUENCE",
                "LAST TIMESTAMP",
                "COORDINATOR EPOCH",
                "TXN START OFFSET",
            ]);
            for p in &ps {
                t.add_row(vec![
                    p.producer_id.to_string(),
                    p.producer_epoch.to_string(),
                    p.last_sequence.to_string(),
                    time(p.last_timestamp),
                    p.coordinator_epoch.to_string(),
                    if p.current_txn_start_offset < 0 {
                        "-".to_string()
                    } else {
                        p.current_txn_start_offset.to_string()
                    },
                ]);
            }
            println!("{t}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_as_utc() {
        assert_eq!(super::time(-1), "-");
        assert_eq!(super::time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::time(1_795_430_096_000), "2026-11-23T10:34:56Z");
        assert_eq!(super::time(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
