//! `strom bench`: load generator and measuring tool for any Kafka-compatible broker, in the
//! spirit of kafka-producer-perf-test and kafka-consumer-perf-test in one tool.
//!
//! - `produce`: several pipelined producers, records batched per partition up to --batch-size
//!   or --linger-ms, optionally paced to --rate; throughput and acknowledgement latency.
//! - `consume`: the tool assigns every partition itself (no consumer group), one fetch in
//!   flight per fetcher connection; throughput and fetch latency.
//! - `e2e`: produce at a fixed rate with the send time in each value while consuming, and
//!   measure produce-to-consume latency.
//!
//! The work runs on a multi-threaded runtime of its own (the other subcommands use a
//! single-threaded one), so producers and fetchers use every core.

mod consume;
mod e2e;
mod produce;
mod report;

use std::time::Duration;

use anyhow::Context;
use strom_client::Client;

use super::common::{ConnectArgs, Output, friendly};
use super::produce::Compression;

pub const LONG_ABOUT: &str = "Measure a Kafka-compatible broker: produce, consume or end-to-end.

Works against any broker that speaks the Kafka protocol (strom, Apache Kafka, Redpanda...).
A live progress line goes to standard error; the summary (records/s, MiB/s of payload, latency
percentiles from an HDR histogram) goes to standard output as a table or, with --output json,
as one JSON document.

Examples:
  strom bench produce --topic perf --partitions 8 --records 5000000 --acks 1
  strom bench produce --topic perf --duration-secs 30 --rate 100000 --compression lz4
  strom bench consume --topic perf --from-beginning
  strom bench e2e --topic latency --rate 10000 --duration-secs 20 --acks -1";

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Write records as fast as possible (or at --rate) and report throughput and ack latency
    Produce(produce::ProduceArgs),
    /// Read a topic's partitions (assigned by the tool) and report throughput
    Consume(consume::ConsumeArgs),
    /// Produce at a fixed rate while consuming; report produce-to-consume latency
    E2e(e2e::E2eArgs),
}

/// Options common to every bench mode.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchCommon {
    /// Print the summary as a table or as JSON
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Worker threads of the bench's runtime (default: one per core)
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs a bench to completion on a multi-threaded runtime of its own.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let threads = match &cmd {
        BenchCommand::Produce(a) => a.common.threads,
        BenchCommand::Consume(a) => a.common.threads,
        BenchCommand::E2e(a) => a.common.threads,
    };
    tokio::task::spawn_blocking(move || {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = threads {
            builder.worker_threads(n.max(1));
        }
        let rt = builder.enable_all().build()?;
        rt.block_on(async move {
            match cmd {
                BenchCommand::Produce(a) => produce::run(a).await,
                BenchCommand::Consume(a) => consume::run(a).await,
                BenchCommand::E2e(a) => e2e::run(a).await,
            }
        })
    })
    .await
    .context("the bench runtime failed")?
}

/// Parses --acks: -1 or all, 0, 1.
pub fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("acks must be -1 (or all), 0 or 1, not {s:?}")),
    }
}

/// Parses a duration in seconds (fractions allowed).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("not a number of seconds: {s:?}"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("the duration must be positive, not {s}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Creates `topic` with `partitions` partitions when it does not exist yet; returns the
/// number of partitions it has.
pub async fn ensure_topic(
    client: &Client,
    topic: &str,
    partitions: Option<i32>,
) -> anyhow::Result<usize> {
    let md = client
        .metadata(Some(vec![topic.to_string()]))
        .await
        .map_err(friendly)?;
    let existing = md
        .topic(topic)
        .filter(|t| t.error_code == 0 && !t.partitions.is_empty())
        .map(|t| t.partitions.len());
    match (existing, partitions) {
        (Some(n), _) => Ok(n),
        (None, Some(p)) => {
            client
                .create_topic(topic, p, -1, Vec::new())
                .await
                .map_err(friendly)
                .with_context(|| format!("creating topic {topic:?}"))?;
            // Leaders are elected at once on strom; elsewhere give it a moment.
            for _ in 0..50 {
                let md = client
                    .metadata(Some(vec![topic.to_string()]))
                    .await
                    .map_err(friendly)?;
                if let Some(t) = md.topic(topic)
                    && t.error_code == 0
                    && t.partitions.len() == p as usize
                    && t.partitions.iter().all(|p| p.leader >= 0)
                {
                    return Ok(p as usize);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::bail!("topic {topic:?} was created but its leaders did not appear")
        }
        (None, None) => {
            anyhow::bail!("topic {topic:?} does not exist; pass --partitions N to create it")
        }
    }
}

/// Partition leaders of a topic: (partition, broker address), sorted by partition.
pub async fn leaders(client: &Client, topic: &str) -> anyhow::Result<Vec<(i32, String)>> {
    let md = client
        .metadata(Some(vec![topic.to_string()]))
        .await
        .map_err(friendly)?;
    let t = md
        .topic(topic)
        .with_context(|| format!("no metadata for topic {topic:?}"))?;
    if t.error_code != 0 {
        anyhow::bail!(
            "topic {topic:?}: {}",
            strom_client::error_description(t.error_code)
        );
    }
    let mut out = Vec::with_capacity(t.partitions.len());
    for p in &t.partitions {
        let addr = md
            .brokers
            .iter()
            .find(|b| b.id == p.leader)
            .map(|b| b.address())
            .with_context(|| {
                format!(
                    "partition {} of {topic:?} has no leader (leader id {})",
                    p.index, p.leader
                )
            })?;
        out.push((p.index, addr));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_and_durations_parse() {
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert_eq!(parse_acks("1").unwrap(), 1);
        assert!(parse_acks("2").is_err());
        assert_eq!(parse_secs("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("x").is_err());
    }
}
