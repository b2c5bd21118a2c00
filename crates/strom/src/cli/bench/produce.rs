//! `strom bench produce` and the producer engine shared with `e2e`.
//!
//! Each producer task drives one strom-client [`Producer`] configured from the flags
//! (`batch.size`, `linger.ms`, `acks`, `compression.type`,
//! `max.in.flight.requests.per.connection`): the client batches per partition, picks
//! partitions (sticky without keys, murmur2 of the key with --keys, as Kafka's default
//! partitioner) and follows leaders. A second task per producer awaits each record's delivery
//! in order, counts it and records its time from send to acknowledgement.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::json;
use strom_client::producer::{DeliveryFuture, Producer, ProducerConfig, Record};
use strom_client::{Client, Codec, Properties};
use tokio::task::JoinSet;

use super::report::{Progress, Side, Stats, print_summary};
use super::{BenchCommon, Compression, ensure_topic, leaders, parse_acks, parse_secs};
use crate::cli::common::{ConnectArgs, friendly};

#[derive(clap::Args, Debug, Clone)]
pub struct ProducerOptions {
    /// Topic to write to
    #[arg(long, short = 't')]
    pub topic: String,
    /// Bytes of each record's value (ignored with --payload-file)
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub record_size: usize,
    /// Distinct keys to cycle through at random (default: no keys, sticky partitioning)
    #[arg(long, value_name = "N")]
    pub keys: Option<u64>,
    /// Create the topic with this many partitions if it does not exist
    #[arg(long, value_name = "P")]
    pub partitions: Option<i32>,
    /// Acknowledgements to wait for: -1 (all), 1 (leader) or 0 (none)
    #[arg(long, default_value = "-1", allow_hyphen_values = true, value_parser = parse_acks)]
    pub acks: i16,
    /// Compression codec of the batches
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// How long a batch may wait for more records before it is sent (default: 5 for
    /// `produce`, 0 for `e2e`, which measures latency)
    #[arg(long, value_name = "MS")]
    pub linger_ms: Option<u64>,
    /// Largest batch, in bytes before compression (keep it under the topic's
    /// max.message.bytes, 1048588 by default)
    #[arg(long, value_name = "BYTES", default_value_t = 1_000_000)]
    pub batch_size: usize,
    /// Produce requests outstanding per broker connection
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_in_flight: usize,
    /// Producer tasks, each with its own connections
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub producers: usize,
}

impl ProducerOptions {
    /// --linger-ms as given, else the default of `produce`.
    pub fn linger_ms(&self) -> u64 {
        self.linger_ms.unwrap_or(DEFAULT_LINGER_MS)
    }
}

/// The linger of `strom bench produce` unless --linger-ms says otherwise.
pub const DEFAULT_LINGER_MS: u64 = 5;

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub producer: ProducerOptions,
    /// Records to write in total (default 1000000 unless --duration-secs is given)
    #[arg(long, value_name = "N", conflicts_with = "duration_secs")]
    pub records: Option<u64>,
    /// Write for this many seconds instead of a number of records
    #[arg(long, value_name = "S", value_parser = parse_secs)]
    pub duration_secs: Option<Duration>,
    /// Values to send, one per line, picked at random (instead of --record-size bytes)
    #[arg(long, value_name = "FILE")]
    pub payload_file: Option<PathBuf>,
    /// Records per second over all producers (default: as fast as possible)
    #[arg(long, value_name = "RECORDS_PER_SEC")]
    pub rate: Option<f64>,
    #[command(flatten)]
    pub common: BenchCommon,
}

/// When producers stop.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Records(u64),
    Duration(Duration),
}

/// What each record's value holds.
#[derive(Clone)]
pub enum Payload {
    /// Picked at random from these.
    Fixed(Arc<Vec<Bytes>>),
    /// `size` bytes starting with the send time, in nanoseconds since `origin` (u64 little
    /// endian), for end-to-end latency.
    Stamped { size: usize, origin: Instant },
}

/// Everything a producer engine run needs.
#[derive(Clone)]
pub struct ProducerPlan {
    pub options: ProducerOptions,
    pub limit: Limit,
    pub rate: Option<f64>,
    pub payload: Payload,
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let client = args.common.connect.client()?;
    let payload = match &args.payload_file {
        Some(path) => {
            let text = std::fs::read(path)
                .with_context(|| format!("reading payloads from {}", path.display()))?;
            let lines: Vec<Bytes> = text
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(Bytes::copy_from_slice)
                .collect();
            anyhow::ensure!(!lines.is_empty(), "{} holds no payloads", path.display());
            Payload::Fixed(Arc::new(lines))
        }
        None => Payload::Fixed(Arc::new(vec![random_letters(args.producer.record_size, 1)])),
    };
    let limit = match (args.records, args.duration_secs) {
        (Some(n), _) => Limit::Records(n),
        (None, Some(d)) => Limit::Duration(d),
        (None, None) => Limit::Records(1_000_000),
    };
    let plan = ProducerPlan {
        options: args.producer.clone(),
        limit,
        rate: args.rate,
        payload,
    };
    let stats = Arc::new(Stats::new());
    let total = match limit {
        Limit::Records(n) => Some(n),
        Limit::Duration(_) => None,
    };
    let prepared = prepare(&args.common.connect, &client, &plan).await?;
    let progress = Progress::start(args.common.output, total, vec![("produced", stats.clone())]);
    let elapsed = run_producers(prepared, plan.clone(), stats.clone()).await;
    progress.finish();
    let elapsed = elapsed?;
    let latency = if plan.options.acks == 0 {
        "produce (no acks)"
    } else {
        "produce ack"
    };
    let side = Side::from_stats("produce", &stats, elapsed, "keys and values", latency);
    let errors = side.errors;
    print_summary(
        args.common.output,
        "produce",
        &plan.options.topic,
        settings_json(&plan),
        &[side],
    )?;
    anyhow::ensure!(errors == 0, "{errors} records failed");
    Ok(())
}

pub fn settings_json(plan: &ProducerPlan) -> serde_json::Value {
    let o = &plan.options;
    json!({
        "acks": o.acks,
        "compression": Codec::from(o.compression).name(),
        "linger_ms": o.linger_ms(),
        "batch_size": o.batch_size,
        "max_in_flight": o.max_in_flight,
        "producers": o.producers,
        "record_size": o.record_size,
        "keys": o.keys,
        "rate": plan.rate,
        "limit": match plan.limit {
            Limit::Records(n) => json!({ "records": n }),
            Limit::Duration(d) => json!({ "seconds": d.as_secs_f64() }),
        },
    })
}

/// `len` pseudo-random upper-case letters, as kafka-producer-perf-test sends.
pub fn random_letters(len: usize, seed: u64) -> Bytes {
    let mut rng = XorShift::new(seed);
    Bytes::from(
        (0..len)
            .map(|_| b'A' + (rng.next() % 26) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// A small fast PRNG; quality is not a concern here.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The bench's producers (strom-client's [`Producer`], one per --producers), created and the
/// topic checked before the clock starts.
pub struct Prepared {
    producers: Vec<Arc<Producer>>,
}

/// The client configuration of one bench producer: the bench's flags as Kafka producer
/// properties, TLS and SASL from --command-config. Idempotence is off (acks=0 and 1 do not
/// allow it, and the bench measures plain writes whatever --acks says).
fn producer_config(
    connect: &ConnectArgs,
    options: &ProducerOptions,
    index: usize,
) -> anyhow::Result<ProducerConfig> {
    let props = Properties::default()
        .set("bootstrap.servers", &connect.bootstrap_server)
        .set("client.id", format!("strom-bench-{index}"))
        .set("acks", options.acks)
        .set("enable.idempotence", "false")
        .set("linger.ms", options.linger_ms())
        .set("batch.size", options.batch_size)
        .set(
            "max.request.size",
            (options.batch_size + 64 * 1024).max(1_048_576),
        )
        .set(
            "max.in.flight.requests.per.connection",
            options.max_in_flight.max(1),
        );
    let mut config = ProducerConfig::from_properties(props).map_err(friendly)?;
    config.codec = options.compression.into();
    config.common.security = connect.connection_config()?.security;
    Ok(config)
}

pub async fn prepare(
    connect: &ConnectArgs,
    client: &Client,
    plan: &ProducerPlan,
) -> anyhow::Result<Prepared> {
    let o = &plan.options;
    anyhow::ensure!(o.producers >= 1, "--producers must be at least 1");
    anyhow::ensure!(o.batch_size >= 64, "--batch-size must be at least 64 bytes");
    if let Some(rate) = plan.rate {
        anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be positive");
    }
    if o.keys == Some(0) {
        anyhow::bail!("--keys must be at least 1");
    }
    ensure_topic(client, &o.topic, o.partitions).await?;
    // Every partition has a leader before the clock starts.
    anyhow::ensure!(
        !leaders(client, &o.topic).await?.is_empty(),
        "the topic has no partitions"
    );
    let mut producers = Vec::with_capacity(o.producers);
    for k in 0..o.producers {
        let producer = Producer::with_config(producer_config(connect, o, k)?).map_err(friendly)?;
        producers.push(Arc::new(producer));
    }
    Ok(Prepared { producers })
}

/// Runs every producer to its limit and waits for the last acknowledgement; returns the time
/// from the first record to the last acknowledgement.
pub async fn run_producers(
    prepared: Prepared,
    plan: ProducerPlan,
    stats: Arc<Stats>,
) -> anyhow::Result<Duration> {
    let producers = plan.options.producers;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (k, producer) in prepared.producers.into_iter().enumerate() {
        let quota = match plan.limit {
            Limit::Records(n) => {
                let base = n / producers as u64;
                Some(base + u64::from((k as u64) < n % producers as u64))
            }
            Limit::Duration(_) => None,
        };
        let task = ProducerTask {
            index: k,
            plan: plan.clone(),
            producer,
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
            quota,
            rate: plan.rate.map(|r| r / producers as f64),
            start,
        };
        tasks.spawn(task.run());
    }
    let mut first_error = None;
    while let Some(result) = tasks.join_next().await {
        let failed = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(anyhow::anyhow!("producer task failed: {e}")),
        };
        if let Some(e) = failed {
            stop.store(true, Ordering::Relaxed);
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(start.elapsed()),
    }
}

/// Deliveries handed from a producer task to its counting task: when the record was sent, its
/// payload bytes and its future.
type Pending = (Instant, u64, DeliveryFuture);

/// How many deliveries a counting task gathers before it updates the shared counters.
const COUNT_EVERY: usize = 1024;

struct ProducerTask {
    index: usize,
    plan: ProducerPlan,
    producer: Arc<Producer>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    quota: Option<u64>,
    rate: Option<f64>,
    start: Instant,
}

impl ProducerTask {
    async fn run(self) -> anyhow::Result<()> {
        let o = self.plan.options.clone();
        let mut rng = XorShift::new(self.index as u64 + 7);
        // Keys precomputed when there are not too many.
        let key_pool: Option<Vec<Bytes>> = o
            .keys
            .filter(|&n| n <= 1 << 20)
            .map(|n| (0..n).map(|i| Bytes::from(format!("key-{i}"))).collect());
        let deadline = match self.plan.limit {
            Limit::Duration(d) => Some(self.start + d),
            Limit::Records(_) => None,
        };
        // Deliveries are awaited in order by a task of their own, which counts them and
        // records each record's time from send to acknowledgement.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Pending>>(1024);
        let stats = Arc::clone(&self.stats);
        let counting = tokio::spawn(async move {
            let mut samples = Vec::with_capacity(COUNT_EVERY);
            let (mut records, mut bytes) = (0u64, 0u64);
            while let Some(chunk) = rx.recv().await {
                for (sent_at, size, delivery) in chunk {
                    match delivery.await {
                        Ok(_) => {
                            records += 1;
                            bytes += size;
                            samples.push((sent_at.elapsed(), 1));
                        }
                        Err(e) => stats.error(e.to_string()),
                    }
                }
                if samples.len() >= COUNT_EVERY || rx.is_empty() {
                    stats.add(records, bytes);
                    stats.latencies(samples.drain(..));
                    (records, bytes) = (0, 0);
                }
            }
            stats.add(records, bytes);
            stats.latencies(samples.drain(..));
        });
        let mut chunk: Vec<Pending> = Vec::with_capacity(64);
        let mut sent: u64 = 0;
        let result = loop {
            if self.quota.is_some_and(|q| sent >= q) || self.stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            if sent.is_multiple_of(256) && deadline.is_some_and(|d| Instant::now() >= d) {
                break Ok(());
            }
            if let Some(rate) = self.rate {
                let now = Instant::now();
                let due = self.start + Duration::from_secs_f64(sent as f64 / rate);
                if due > now {
                    // Hand over what was sent so far before sleeping.
                    if !chunk.is_empty() && tx.send(std::mem::take(&mut chunk)).await.is_err() {
                        break Ok(());
                    }
                    let wake = match deadline {
                        Some(d) if due >= d => d,
                        _ => due,
                    };
                    tokio::time::sleep_until(wake.into()).await;
                    continue;
                }
            }
            let key = match (&key_pool, o.keys) {
                (Some(pool), _) => Some(pool[(rng.next() % pool.len() as u64) as usize].clone()),
                (None, Some(n)) => Some(Bytes::from(format!("key-{}", rng.next() % n))),
                (None, None) => None,
            };
            let value = match &self.plan.payload {
                Payload::Fixed(pool) => {
                    if pool.len() == 1 {
                        pool[0].clone()
                    } else {
                        pool[(rng.next() % pool.len() as u64) as usize].clone()
                    }
                }
                Payload::Stamped { size, origin } => {
                    let mut v = BytesMut::with_capacity((*size).max(8));
                    v.put_u64_le(origin.elapsed().as_nanos() as u64);
                    v.resize((*size).max(8), 0);
                    v.freeze()
                }
            };
            let size = (value.len() + key.as_ref().map_or(0, Bytes::len)) as u64;
            let mut record = Record::new(&o.topic, value);
            if let Some(k) = key {
                record = record.key(k);
            }
            let sent_at = Instant::now();
            let delivery = match self.producer.send(record).await {
                Ok(d) => d,
                Err(e) => break Err(friendly(e)),
            };
            chunk.push((sent_at, size, delivery));
            if chunk.len() >= 64 && tx.send(std::mem::take(&mut chunk)).await.is_err() {
                break Ok(());
            }
            sent += 1;
        };
        if !chunk.is_empty() {
            let _ = tx.send(chunk).await;
        }
        drop(tx);
        counting
            .await
            .context("the delivery counting task failed")?;
        self.producer.close().await.map_err(friendly)?;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_letters_are_upper_case_and_repeatable() {
        let a = random_letters(100, 1);
        assert_eq!(a.len(), 100);
        assert!(a.iter().all(u8::is_ascii_uppercase));
        assert_eq!(a, random_letters(100, 1));
        assert_ne!(a, random_letters(100, 2));
    }
}
