//! `strom bench consume` and the fetch engine shared with `e2e`.
//!
//! The tool assigns partitions itself (consumer groups are not needed): the partitions of each
//! leader are split over --fetchers connections, and each connection has one fetch in flight
//! covering all its partitions, as a Kafka consumer does per broker.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use strom_client::{Client, PipelinedConnection, error_description, offset_spec, versions};
use strom_protocol::messages::TopicName;
use strom_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, records, str_bytes};
use tokio::task::JoinSet;

use super::report::{Progress, Side, Stats, print_summary};
use super::{BenchCommon, leaders, parse_secs};
use crate::cli::common::friendly;

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
    pub options: FetchOptions,
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
    let connections = connect(&client, &layout, &args.fetch).await?;
    let stats = Arc::new(Stats::new());
    let progress = Progress::start(args.common.output, total, vec![("consumed", stats.clone())]);
    let begin = Instant::now();
    let plan = FetchPlan {
        topic: args.topic.clone(),
        options: args.fetch.clone(),
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
    let side = Side::from_stats(
        "consume",
        &stats,
        elapsed,
        "record batch bytes",
        "fetch round trip",
    );
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

/// One fetcher: a connection and the partitions it reads.
pub struct Fetcher {
    conn: PipelinedConnection,
    partitions: Vec<i32>,
}

/// Opens --fetchers connections per leader and deals that leader's partitions over them.
pub async fn connect(
    client: &Client,
    layout: &[(i32, String)],
    options: &FetchOptions,
) -> anyhow::Result<Vec<Fetcher>> {
    let mut by_leader: HashMap<&str, Vec<i32>> = HashMap::new();
    for (p, addr) in layout {
        by_leader.entry(addr.as_str()).or_default().push(*p);
    }
    let mut fetchers = Vec::new();
    for (addr, partitions) in by_leader {
        let n = options.fetchers.clamp(1, partitions.len());
        for i in 0..n {
            let mine: Vec<i32> = partitions.iter().copied().skip(i).step_by(n).collect();
            let conn = PipelinedConnection::connect(addr, client.config().clone(), 1)
                .await
                .map_err(friendly)?;
            fetchers.push(Fetcher {
                conn,
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

async fn fetch_loop(
    f: Fetcher,
    plan: Arc<FetchPlan>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let version = f
        .conn
        .version(ApiKey::Fetch, versions::FETCH)
        .map_err(friendly)?;
    let mut position: HashMap<i32, i64> = f
        .partitions
        .iter()
        .map(|&p| (p, plan.start[p as usize]))
        .collect();
    let done = |position: &HashMap<i32, i64>, p: i32| {
        plan.end
            .as_ref()
            .is_some_and(|end| position[&p] >= end[p as usize])
    };
    loop {
        if stop.load(Ordering::Relaxed)
            || plan.deadline.is_some_and(|d| Instant::now() >= d)
            || plan.records.is_some_and(|n| stats.records() >= n)
        {
            stop.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let active: Vec<i32> = f
            .partitions
            .iter()
            .copied()
            .filter(|&p| !done(&position, p))
            .collect();
        if active.is_empty() {
            return Ok(());
        }
        let mut t = FetchTopic::default();
        t.topic = TopicName(str_bytes(plan.topic.clone()));
        t.partitions = active
            .iter()
            .map(|&p| {
                let mut fp = FetchPartition::default();
                fp.partition = p;
                fp.fetch_offset = position[&p];
                fp.partition_max_bytes = plan.options.partition_max_bytes;
                fp
            })
            .collect();
        let mut req = FetchRequest::default();
        req.max_wait_ms = match plan.deadline {
            // Do not wait past the end of the run.
            Some(d) => (d.saturating_duration_since(Instant::now()).as_millis() as i32)
                .clamp(0, plan.options.max_wait_ms),
            None => plan.options.max_wait_ms,
        };
        req.min_bytes = 1;
        req.max_bytes = plan.options.fetch_max_bytes;
        req.isolation_level = 0;
        req.session_id = 0;
        req.session_epoch = -1;
        req.topics = vec![t];
        let sent_at = Instant::now();
        let response = f
            .conn
            .request(ApiKey::Fetch, version, &RequestKind::Fetch(req))
            .await
            .map_err(friendly)?;
        let received_at = Instant::now();
        let ResponseKind::Fetch(response) = response else {
            anyhow::bail!("a fetch was answered with another response type");
        };
        if response.error_code != 0 {
            anyhow::bail!("fetch failed: {}", error_description(response.error_code));
        }
        let mut got = 0u64;
        for p in response.responses.iter().flat_map(|t| t.partitions.iter()) {
            let Some(pos) = position.get_mut(&p.partition_index) else {
                continue;
            };
            if p.error_code != 0 {
                stats.error(format!(
                    "partition {}: {}",
                    p.partition_index,
                    error_description(p.error_code)
                ));
                anyhow::bail!(
                    "fetch from partition {} failed: {}",
                    p.partition_index,
                    error_description(p.error_code)
                );
            }
            let Some(data) = &p.records else { continue };
            let walk = walk_batches(data, *pos);
            if let Some(origin) = plan.stamped_origin {
                let now = origin.elapsed().as_nanos() as u64;
                let consumed = records::decode_batches(data.clone())?;
                stats.latencies(consumed.iter().filter(|r| r.offset >= *pos).map(|r| {
                    let sent = r
                        .value
                        .as_ref()
                        .filter(|v| v.len() >= 8)
                        .map(|v| u64::from_le_bytes(v[..8].try_into().unwrap_or([0; 8])))
                        .unwrap_or(now);
                    (Duration::from_nanos(now.saturating_sub(sent)), 1)
                }));
            }
            stats.add(walk.records, walk.bytes);
            got += walk.records;
            if let Some(next) = walk.next_offset {
                *pos = next.max(*pos);
            }
        }
        if plan.stamped_origin.is_none() && got > 0 {
            stats.latency(received_at - sent_at, 1);
        }
    }
}

/// What a fetch response's records hold for a reader at `fetch_offset`.
#[derive(Debug, PartialEq, Eq)]
pub struct Walk {
    pub records: u64,
    pub bytes: u64,
    /// The offset after the last complete batch.
    pub next_offset: Option<i64>,
}

/// Counts records and bytes of the complete batches in `data` from headers alone (no CRC
/// check, no decompression): records below `fetch_offset` (a fetch may start mid-batch) and
/// control batches are not counted; a truncated batch at the end is ignored.
pub fn walk_batches(data: &[u8], fetch_offset: i64) -> Walk {
    let be_i64 = |at: usize| i64::from_be_bytes(data[at..at + 8].try_into().unwrap_or([0; 8]));
    let be_i32 = |at: usize| i32::from_be_bytes(data[at..at + 4].try_into().unwrap_or([0; 4]));
    let mut walk = Walk {
        records: 0,
        bytes: 0,
        next_offset: None,
    };
    let mut pos = 0usize;
    while data.len() - pos >= records::BATCH_HEADER_BYTES {
        let base = be_i64(pos);
        let length = be_i32(pos + 8);
        if length < 0 {
            break;
        }
        let end = pos + 12 + length as usize;
        if end > data.len() {
            break;
        }
        let attributes = i16::from_be_bytes([data[pos + 21], data[pos + 22]]);
        let last = base + i64::from(be_i32(pos + 23));
        let count = be_i32(pos + 57).max(0) as u64;
        let control = attributes & 0x20 != 0;
        if !control && last >= fetch_offset {
            walk.records += if base >= fetch_offset {
                count
            } else {
                (last - fetch_offset + 1) as u64
            };
            walk.bytes += (end - pos) as u64;
        }
        walk.next_offset = Some(last + 1);
        pos = end;
    }
    walk
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use strom_client::{Codec, ProducerRecord};

    fn batch(base: i64, n: usize) -> Bytes {
        let recs: Vec<ProducerRecord> = (0..n)
            .map(|_| ProducerRecord {
                value: Some(Bytes::from_static(b"v")),
                ..Default::default()
            })
            .collect();
        let mut b = BytesMut::from(&records::encode_batch(&recs, Codec::None).unwrap()[..]);
        b[..8].copy_from_slice(&base.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn walks_whole_batches_and_skips_what_was_read() {
        let mut data = BytesMut::new();
        data.extend_from_slice(&batch(10, 5));
        data.extend_from_slice(&batch(15, 3));
        let full = data.len() as u64;
        // A truncated third batch.
        data.extend_from_slice(&batch(18, 2)[..30]);
        let w = walk_batches(&data, 10);
        assert_eq!(
            w,
            Walk {
                records: 8,
                bytes: full,
                next_offset: Some(18)
            }
        );
        // Starting inside the first batch.
        assert_eq!(walk_batches(&data, 13).records, 5);
        assert_eq!(walk_batches(&[], 0).next_offset, None);
    }
}
