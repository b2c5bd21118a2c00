//! `strom bench consume` and the fetch engine shared with `e2e`.
//!
//! The tool assigns partitions itself (consumer groups are not needed): the partitions of each
//! leader are split over --fetchers strom-client consumers, each assigned its share by hand and
//! polled in a loop (the consumer keeps a fetch ahead of the application per broker).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use strom_client::consumer::{Consumer, ConsumerConfig, TopicPartition};
use strom_client::{Client, Properties, offset_spec};
use tokio::task::JoinSet;

use super::report::{Progress, Side, Stats, print_summary};
use super::{BenchCommon, leaders, parse_secs};
use crate::cli::common::{ConnectArgs, friendly};

#[derive(clap::Args, Debug, Clone)]
pub struct FetchOptions {
    /// Most bytes in one fetch response (fetch.max.bytes)
    #[arg(long, value_name = "BYTES", default_value_t = 52_428_800)]
    pub fetch_max_bytes: i32,
    /// Most bytes per partition in one fetch response (max.partition.fetch.bytes)
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    pub partition_max_bytes: i32,
    /// How long the broker may hold a fetch waiting for data (fetch.max.wait.ms)
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub max_wait_ms: i32,
    /// Fetch connections per broker; each takes a share of that broker's partitions
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub fetchers: usize,
}

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// Topic to read
    #[arg(long, short = 't')]
    pub topic: String,
    /// Stop after this many records (default: at the end offsets seen at the start)
    #[arg(long, value_name = "N")]
    pub records: Option<u64>,
    /// Stop after this many seconds
    #[arg(long, value_name = "S", value_parser = parse_secs)]
    pub duration_secs: Option<Duration>,
    /// Start at the earliest offsets (default: the latest, waiting for new records)
    #[arg(long)]
    pub from_beginning: bool,
    #[command(flatten)]
    pub fetch: FetchOptions,
    #[command(flatten)]
    pub common: BenchCommon,
}

/// How a fetch engine run ends and what it measures.
#[derive(Clone)]
pub struct FetchPlan {
    pub topic: String,
    /// Start offset of each partition.
    pub start: Vec<i64>,
    /// Stop each partition at this offset (exclusive), when set.
    pub end: Option<Vec<i64>>,
    /// Stop when this many records were read in total.
    pub records: Option<u64>,
    /// Stop at this instant.
    pub deadline: Option<Instant>,
    /// Set: decode records and measure produce-to-consume latency from the time stamped in
    /// each value (nanoseconds since this instant); unset: measure fetch round trips.
    pub stamped_origin: Option<Instant>,
}

pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = args.common.connect.client()?;
    let layout = leaders(&client, &args.topic).await?;
    let spec = if args.from_beginning {
        offset_spec::EARLIEST
    } else {
        offset_spec::LATEST
    };
    let start = offsets(&client, &args.topic, layout.len(), spec).await?;
    let end = match (args.records, args.duration_secs) {
        (None, None) if args.from_beginning => {
            Some(offsets(&client, &args.topic, layout.len(), offset_spec::LATEST).await?)
        }
        (None, None) => anyhow::bail!(
            "without --from-beginning, give --records or --duration-secs (there is nothing to read yet)"
        ),
        _ => None,
    };
    let total = match (&end, args.records) {
        (_, Some(n)) => Some(n),
        (Some(end), None) => Some(
            end.iter()
                .zip(&start)
                .map(|(e, s)| (e - s).max(0) as u64)
                .sum(),
        ),
        _ => None,
    };
    let connections = connect(&args.common.connect, &layout, &args.fetch).await?;
    let stats = Arc::new(Stats::new());
    let progress = Progress::start(args.common.output, total, vec![("consumed", stats.clone())]);
    let begin = Instant::now();
    let plan = FetchPlan {
        topic: args.topic.clone(),
        start,
        end,
        records: args.records,
        deadline: args.duration_secs.map(|d| begin + d),
        stamped_origin: None,
    };
    let result = run_fetchers(
        connections,
        plan,
        stats.clone(),
        Arc::new(AtomicBool::new(false)),
    )
    .await;
    progress.finish();
    let elapsed = result?;
    let side = Side::from_stats("consume", &stats, elapsed, "keys and values", "poll");
    let errors = side.errors;
    print_summary(
        args.common.output,
        "consume",
        &args.topic,
        json!({
            "from_beginning": args.from_beginning,
            "fetch_max_bytes": args.fetch.fetch_max_bytes,
            "partition_max_bytes": args.fetch.partition_max_bytes,
            "max_wait_ms": args.fetch.max_wait_ms,
            "fetchers": args.fetch.fetchers,
            "records": args.records,
            "duration_secs": args.duration_secs.map(|d| d.as_secs_f64()),
        }),
        &[side],
    )?;
    anyhow::ensure!(errors == 0, "{errors} fetch errors");
    Ok(())
}

/// The offset of every partition for `spec` (earliest or latest).
pub async fn offsets(
    client: &Client,
    topic: &str,
    partitions: usize,
    spec: i64,
) -> anyhow::Result<Vec<i64>> {
    let mut out = Vec::with_capacity(partitions);
    for p in 0..partitions {
        let (offset, _) = client
            .list_offsets(topic, p as i32, spec)
            .await
            .map_err(friendly)?;
        out.push(offset);
    }
    Ok(out)
}

/// One fetcher: a strom-client [`Consumer`] and the partitions assigned to it.
pub struct Fetcher {
    consumer: Consumer,
    partitions: Vec<i32>,
}

/// The client configuration of one fetcher: the fetch flags as Kafka consumer properties, no
/// group, TLS and SASL from --command-config.
fn consumer_config(
    connect: &ConnectArgs,
    options: &FetchOptions,
    index: usize,
) -> anyhow::Result<ConsumerConfig> {
    let props = Properties::default()
        .set("bootstrap.servers", &connect.bootstrap_server)
        .set("client.id", format!("strom-bench-{index}"))
        .set("fetch.max.bytes", options.fetch_max_bytes)
        .set("max.partition.fetch.bytes", options.partition_max_bytes)
        .set("fetch.max.wait.ms", options.max_wait_ms.max(0))
        .set("max.poll.records", 10_000);
    let mut config = ConsumerConfig::from_properties(props).map_err(friendly)?;
    config.common.security = connect.connection_config()?.security;
    Ok(config)
}

/// Creates --fetchers consumers per leader and deals that leader's partitions over them.
pub async fn connect(
    connect: &ConnectArgs,
    layout: &[(i32, String)],
    options: &FetchOptions,
) -> anyhow::Result<Vec<Fetcher>> {
    let mut by_leader: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (p, addr) in layout {
        by_leader.entry(addr.as_str()).or_default().push(*p);
    }
    let mut fetchers = Vec::new();
    for partitions in by_leader.into_values() {
        let n = options.fetchers.clamp(1, partitions.len());
        for i in 0..n {
            let mine: Vec<i32> = partitions.iter().copied().skip(i).step_by(n).collect();
            let consumer =
                Consumer::with_config(consumer_config(connect, options, fetchers.len())?)
                    .map_err(friendly)?;
            fetchers.push(Fetcher {
                consumer,
                partitions: mine,
            });
        }
    }
    Ok(fetchers)
}

/// Runs every fetcher until the plan says stop (or `stop` is set); returns the elapsed time.
pub async fn run_fetchers(
    fetchers: Vec<Fetcher>,
    plan: FetchPlan,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Duration> {
    let plan = Arc::new(plan);
    let begin = Instant::now();
    let mut tasks = JoinSet::new();
    for f in fetchers {
        tasks.spawn(fetch_loop(
            f,
            Arc::clone(&plan),
            Arc::clone(&stats),
            Arc::clone(&stop),
        ));
    }
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        let failed = match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(anyhow::anyhow!("fetch task failed: {e}")),
        };
        if let Some(e) = failed {
            stop.store(true, Ordering::Relaxed);
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(begin.elapsed()),
    }
}

/// Polls one consumer until its partitions reach their end offsets or the plan stops.
async fn fetch_loop(
    mut f: Fetcher,
    plan: Arc<FetchPlan>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let tps: Vec<TopicPartition> = f
        .partitions
        .iter()
        .map(|&p| TopicPartition::new(&plan.topic, p))
        .collect();
    f.consumer.assign(&tps).map_err(friendly)?;
    for tp in &tps {
        f.consumer
            .seek(tp, plan.start[tp.partition as usize])
            .map_err(friendly)?;
    }
    // Partitions not at their end offset yet (all of them without an end).
    let mut open: BTreeSet<i32> = f
        .partitions
        .iter()
        .copied()
        .filter(|&p| {
            plan.end
                .as_ref()
                .is_none_or(|end| plan.start[p as usize] < end[p as usize])
        })
        .collect();
    let result = loop {
        if stop.load(Ordering::Relaxed)
            || plan.deadline.is_some_and(|d| Instant::now() >= d)
            || plan.records.is_some_and(|n| stats.records() >= n)
        {
            stop.store(true, Ordering::Relaxed);
            break Ok(());
        }
        if open.is_empty() {
            break Ok(());
        }
        let wait = match plan.deadline {
            // Do not wait past the end of the run.
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
            None => Duration::from_millis(100),
        };
        let polled_at = Instant::now();
        let records = match f.consumer.poll(wait).await {
            Ok(r) => r,
            Err(e) => {
                stats.error(e.to_string());
                break Err(friendly(e));
            }
        };
        if records.is_empty() {
            continue;
        }
        let returned_at = Instant::now();
        let now_ns = plan.stamped_origin.map(|o| o.elapsed().as_nanos() as u64);
        let (mut count, mut bytes) = (0u64, 0u64);
        let mut samples = Vec::new();
        for r in &records {
            if plan
                .end
                .as_ref()
                .is_some_and(|end| r.offset >= end[r.partition as usize])
            {
                continue;
            }
            count += 1;
            let value = r.value.as_deref().unwrap_or_default();
            bytes += (value.len() + r.key.as_ref().map_or(0, |k| k.len())) as u64;
            if let Some(now) = now_ns {
                let sent = match value.get(..8) {
                    Some(stamp) => u64::from_le_bytes(stamp.try_into().unwrap_or([0; 8])),
                    None => now,
                };
                samples.push((Duration::from_nanos(now.saturating_sub(sent)), 1));
            }
        }
        if let Some(end) = &plan.end {
            for p in open.clone() {
                let at = f
                    .consumer
                    .position(&TopicPartition::new(&plan.topic, p))
                    .await
                    .map_err(friendly)?;
                if at >= end[p as usize] {
                    open.remove(&p);
                }
            }
        }
        stats.add(count, bytes);
        if now_ns.is_some() {
            stats.latencies(samples);
        } else if count > 0 {
            stats.latency(returned_at - polled_at, 1);
        }
    };
    let _ = f.consumer.close().await;
    result
}
