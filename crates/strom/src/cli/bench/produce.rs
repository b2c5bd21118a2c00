//! `strom bench produce` and the producer engine shared with `e2e`.
//!
//! Each producer task owns one pipelined connection per partition leader. Records go into a
//! per-partition accumulator; a batch is sent when the next record would take it over
//! --batch-size, or when its first record has waited --linger-ms. Without keys a producer is
//! sticky: it fills one partition's batch, then moves on to the next partition (as Kafka's and
//! librdkafka's default partitioners do); with --keys, a key's partition is murmur2(key) as in
//! Kafka. Up to --max-in-flight produce requests are outstanding per connection.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::json;
use strom_client::{
    Client, Codec, PipelinedConnection, ProducerRecord, error_description, versions,
};
use strom_protocol::messages::TopicName;
use strom_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, records, str_bytes};
use tokio::task::JoinSet;

use super::report::{Progress, Side, Stats, print_summary};
use super::{BenchCommon, Compression, ensure_topic, leaders, parse_acks, parse_secs};
use crate::cli::common::friendly;

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
    let prepared = prepare(&client, &plan).await?;
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
    anyhow::ensure!(errors == 0, "{errors} produce requests failed");
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

/// Kafka's murmur2, as its default partitioner hashes keys.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a key.
pub fn partition_for_key(key: &[u8], partitions: usize) -> usize {
    ((murmur2(key) & 0x7fff_ffff) as usize) % partitions
}

/// Zigzag varint length of `v`.
fn varlong_len(v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

/// Bytes a record takes in an uncompressed batch (without headers).
fn record_size(
    offset_delta: usize,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: &[u8],
) -> usize {
    let key_len = key.map_or(0, <[u8]>::len);
    let body = 1 // attributes
        + varlong_len(timestamp_delta)
        + varlong_len(offset_delta as i64)
        + varlong_len(key.map_or(-1, |k| k.len() as i64))
        + key_len
        + varlong_len(value.len() as i64)
        + value.len()
        + 1; // header count
    varlong_len(body as i64) + body
}

/// Connections and partition layout, prepared before the clock starts.
pub struct Prepared {
    /// Leader address of each partition, indexed by partition.
    leaders: Vec<String>,
    /// Per producer: connection by leader address.
    connections: Vec<HashMap<String, Arc<PipelinedConnection>>>,
    produce_version: i16,
}

pub async fn prepare(client: &Client, plan: &ProducerPlan) -> anyhow::Result<Prepared> {
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
    let by_partition = leaders(client, &o.topic).await?;
    let count = by_partition.len();
    let mut leaders = vec![String::new(); count];
    for (p, addr) in by_partition {
        let slot = leaders
            .get_mut(p as usize)
            .with_context(|| format!("partition {p} out of range 0..{count}"))?;
        *slot = addr;
    }
    let mut connections = Vec::with_capacity(o.producers);
    let mut produce_version = None;
    for _ in 0..o.producers {
        let mut conns = HashMap::new();
        for addr in &leaders {
            if conns.contains_key(addr) {
                continue;
            }
            let conn = PipelinedConnection::connect(addr, client.config().clone(), o.max_in_flight)
                .await
                .map_err(friendly)?;
            produce_version = Some(
                conn.version(ApiKey::Produce, versions::PRODUCE)
                    .map_err(friendly)?,
            );
            conns.insert(addr.clone(), Arc::new(conn));
        }
        connections.push(conns);
    }
    Ok(Prepared {
        leaders,
        connections,
        produce_version: produce_version.context("the topic has no partitions")?,
    })
}

/// Runs every producer to its limit and waits for the last acknowledgement; returns the time
/// from the first record to the last acknowledgement.
pub async fn run_producers(
    prepared: Prepared,
    plan: ProducerPlan,
    stats: Arc<Stats>,
) -> anyhow::Result<Duration> {
    let producers = plan.options.producers;
    let leaders = Arc::new(prepared.leaders);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (k, connections) in prepared.connections.into_iter().enumerate() {
        let quota = match plan.limit {
            Limit::Records(n) => {
                let base = n / producers as u64;
                Some(base + u64::from((k as u64) < n % producers as u64))
            }
            Limit::Duration(_) => None,
        };
        let producer = Producer {
            index: k,
            plan: plan.clone(),
            leaders: Arc::clone(&leaders),
            connections,
            version: prepared.produce_version,
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
            quota,
            rate: plan.rate.map(|r| r / producers as f64),
            start,
        };
        tasks.spawn(producer.run());
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

/// A batch being filled for one partition.
#[derive(Default)]
struct Accumulator {
    records: Vec<ProducerRecord>,
    /// Uncompressed batch size so far, header included.
    bytes: usize,
    payload_bytes: u64,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    base_timestamp: i64,
}

struct Producer {
    index: usize,
    plan: ProducerPlan,
    leaders: Arc<Vec<String>>,
    connections: HashMap<String, Arc<PipelinedConnection>>,
    version: i16,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    quota: Option<u64>,
    rate: Option<f64>,
    start: Instant,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Producer {
    async fn run(self) -> anyhow::Result<()> {
        let o = self.plan.options.clone();
        let partitions = self.leaders.len();
        let codec: Codec = o.compression.into();
        let linger = Duration::from_millis(o.linger_ms());
        let mut accs: Vec<Accumulator> = (0..partitions).map(|_| Accumulator::default()).collect();
        let mut sticky = self.index % partitions;
        let mut rng = XorShift::new(self.index as u64 + 7);
        let mut in_flight = JoinSet::new();
        // Keys and their partitions, precomputed when there are not too many.
        let key_pool: Option<Vec<(Bytes, usize)>> = o.keys.filter(|&n| n <= 1 << 20).map(|n| {
            (0..n)
                .map(|i| {
                    let k = Bytes::from(format!("key-{i}"));
                    let p = partition_for_key(&k, partitions);
                    (k, p)
                })
                .collect()
        });
        let deadline = match self.plan.limit {
            Limit::Duration(d) => Some(self.start + d),
            Limit::Records(_) => None,
        };
        let mut sent: u64 = 0;
        let mut now = Instant::now();
        let mut timestamp = now_ms();
        loop {
            if self.quota.is_some_and(|q| sent >= q) || self.stop.load(Ordering::Relaxed) {
                break;
            }
            if sent.is_multiple_of(256) {
                now = Instant::now();
                timestamp = now_ms();
                if deadline.is_some_and(|d| now >= d) {
                    break;
                }
                self.flush_lingering(&mut accs, now, linger, codec, &mut in_flight)
                    .await?;
            }
            if let Some(rate) = self.rate {
                now = Instant::now();
                let due = self.start + Duration::from_secs_f64(sent as f64 / rate);
                if due > now {
                    self.flush_lingering(&mut accs, now, linger, codec, &mut in_flight)
                        .await?;
                    let linger_due = accs
                        .iter()
                        .filter_map(|a| a.first_at)
                        .min()
                        .map(|t| t + linger);
                    let wake = linger_due.map_or(due, |l| l.min(due));
                    if let Some(d) = deadline
                        && wake >= d
                    {
                        tokio::time::sleep_until(d.into()).await;
                        continue;
                    }
                    tokio::time::sleep_until(wake.into()).await;
                    continue;
                }
                timestamp = now_ms();
            }
            let (key, keyed_partition) = match (&key_pool, o.keys) {
                (Some(pool), _) => {
                    let (k, p) = &pool[(rng.next() % pool.len() as u64) as usize];
                    (Some(k.clone()), Some(*p))
                }
                (None, Some(n)) => {
                    let k = Bytes::from(format!("key-{}", rng.next() % n));
                    let p = partition_for_key(&k, partitions);
                    (Some(k), Some(p))
                }
                (None, None) => (None, None),
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
            let mut partition = keyed_partition.unwrap_or(sticky);
            let size_in = |acc: &Accumulator| {
                let ts_delta = if acc.records.is_empty() {
                    0
                } else {
                    timestamp - acc.base_timestamp
                };
                record_size(acc.records.len(), ts_delta, key.as_deref(), &value)
            };
            let mut size = size_in(&accs[partition]);
            if !accs[partition].records.is_empty() && accs[partition].bytes + size > o.batch_size {
                let acc = std::mem::take(&mut accs[partition]);
                self.send(partition, acc, codec, &mut in_flight).await?;
                if keyed_partition.is_none() {
                    sticky = (sticky + 1) % partitions;
                    partition = sticky;
                    size = size_in(&accs[partition]);
                }
            }
            let acc = &mut accs[partition];
            if acc.records.is_empty() {
                acc.bytes = records::BATCH_HEADER_BYTES;
                acc.base_timestamp = timestamp;
                acc.first_at = Some(now);
            }
            acc.last_at = Some(now);
            acc.bytes += size;
            acc.payload_bytes += (value.len() + key.as_ref().map_or(0, Bytes::len)) as u64;
            acc.records.push(ProducerRecord {
                key,
                value: Some(value),
                headers: Vec::new(),
                timestamp_ms: timestamp,
            });
            sent += 1;
        }
        for (p, acc) in accs.iter_mut().enumerate() {
            if !acc.records.is_empty() {
                let acc = std::mem::take(acc);
                self.send(p, acc, codec, &mut in_flight).await?;
            }
        }
        while let Some(r) = in_flight.join_next().await {
            r.context("a produce completion task failed")?;
        }
        if o.acks == 0 {
            // Nothing answers acks=0 requests: wait until the broker has read them all.
            for conn in self.connections.values() {
                conn.sync().await.map_err(friendly)?;
            }
        }
        Ok(())
    }

    /// Sends every batch whose first record has waited `linger`.
    async fn flush_lingering(
        &self,
        accs: &mut [Accumulator],
        now: Instant,
        linger: Duration,
        codec: Codec,
        in_flight: &mut JoinSet<()>,
    ) -> anyhow::Result<()> {
        for (p, acc) in accs.iter_mut().enumerate() {
            if acc.first_at.is_some_and(|t| now >= t + linger) {
                let acc = std::mem::take(acc);
                self.send(p, acc, codec, in_flight).await?;
            }
        }
        Ok(())
    }

    /// Encodes one partition's batch and queues it as a produce request; a task waits for the
    /// response and counts it.
    async fn send(
        &self,
        partition: usize,
        acc: Accumulator,
        codec: Codec,
        in_flight: &mut JoinSet<()>,
    ) -> anyhow::Result<()> {
        let o = &self.plan.options;
        let batch = records::encode_batch(&acc.records, codec)?;
        let count = acc.records.len() as u64;
        let mut pd = PartitionProduceData::default();
        pd.index = partition as i32;
        pd.records = Some(batch);
        let mut td = TopicProduceData::default();
        td.name = TopicName(str_bytes(o.topic.clone()));
        td.partition_data = vec![pd];
        let mut req = ProduceRequest::default();
        req.transactional_id = None;
        req.acks = o.acks;
        req.timeout_ms = 30_000;
        req.topic_data = vec![td];
        let body = RequestKind::Produce(req);
        let conn = self
            .connections
            .get(&self.leaders[partition])
            .context("no connection to the partition leader")?;
        if o.acks == 0 {
            conn.send_without_response(ApiKey::Produce, self.version, &body)
                .await
                .map_err(friendly)?;
            self.stats.add(count, acc.payload_bytes);
            return Ok(());
        }
        let response = conn
            .send(ApiKey::Produce, self.version, &body)
            .await
            .map_err(friendly)?;
        let stats = Arc::clone(&self.stats);
        let (first_at, last_at) = (
            acc.first_at.unwrap_or_else(Instant::now),
            acc.last_at.unwrap_or_else(Instant::now),
        );
        let payload_bytes = acc.payload_bytes;
        in_flight.spawn(async move {
            let result = response.await;
            let done = Instant::now();
            match result {
                Ok(ResponseKind::Produce(r)) => {
                    let failed = r
                        .responses
                        .iter()
                        .flat_map(|t| t.partition_responses.iter())
                        .find(|p| p.error_code != 0);
                    if let Some(p) = failed {
                        stats.error(format!(
                            "partition {}: {}{}",
                            p.index,
                            error_description(p.error_code),
                            p.error_message
                                .as_ref()
                                .map(|m| format!(": {m}"))
                                .unwrap_or_default()
                        ));
                        return;
                    }
                    stats.add(count, payload_bytes);
                    // Records joined the batch between first_at and last_at: spread the
                    // samples over that span in 16 steps rather than keep a time per record.
                    const STEPS: u64 = 16;
                    let span = last_at.saturating_duration_since(first_at);
                    stats.latencies((0..STEPS).map(|i| {
                        let enqueued = first_at + span.mul_f64(i as f64 / STEPS as f64);
                        let n = count / STEPS + u64::from(i < count % STEPS);
                        (done.saturating_duration_since(enqueued), n)
                    }));
                }
                Ok(other) => stats.error(format!("unexpected response {other:?}")),
                Err(e) => stats.error(e.to_string()),
            }
        });
        while in_flight.try_join_next().is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from Kafka's own partitioner tests (Utils.murmur2).
    #[test]
    fn murmur2_matches_kafka() {
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn record_sizes_match_the_encoder() {
        let value = Bytes::from(vec![7u8; 100]);
        let key = Bytes::from_static(b"key-1");
        let records: Vec<ProducerRecord> = (0..300)
            .map(|i| ProducerRecord {
                key: (i % 2 == 0).then(|| key.clone()),
                value: Some(value.clone()),
                headers: Vec::new(),
                timestamp_ms: 1_700_000_000_000 + i * 3,
            })
            .collect();
        let expected: usize = records::BATCH_HEADER_BYTES
            + records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    record_size(
                        i,
                        r.timestamp_ms - records[0].timestamp_ms,
                        r.key.as_deref(),
                        r.value.as_deref().unwrap(),
                    )
                })
                .sum::<usize>();
        let batch = records::encode_batch(&records, Codec::None).unwrap();
        assert_eq!(batch.len(), expected);
    }
}
