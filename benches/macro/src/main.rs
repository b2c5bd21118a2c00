//! Macro benchmark: starts the release `strom` binary on a free loopback port with a temporary
//! data directory and drives it with librdkafka (rdkafka); drives librdkafka's in-process mock
//! cluster with the same load in the same run; prints both and their ratio.
//!
//! Scenarios: produce acks=1 (no compression), produce acks=all, consume from the start of the
//! acks=all topic (the acks=1 one when acks=all did not run). For the broker process it records CPU time (utime + stime from /proc/PID/stat)
//! and peak RSS (VmHWM from /proc/PID/status, reset before each scenario) and reports CPU
//! seconds per GiB of payload ingested or served.
//!
//!   cargo build --release -p strom -p strom-macro-bench
//!   target/release/strom-macro-bench                    # 5,000,000 records of 100 bytes
//!   target/release/strom-macro-bench --records 20000000 --partitions 16
//!
//! The idle-consumers scenario (not in the default list) measures what parked fetches cost:
//! a producer at a fixed rate while 0, 200 and 1,000 consumers long-poll partitions nobody
//! writes to, each on its own connection; it reports broker CPU-s per GiB produced and the
//! ratio to the run without idle consumers:
//!
//!   target/release/strom-macro-bench --scenarios idle-consumers --idle-consumers 0,200,1000
//!
//! The clients scenario (not in the default list) compares strom-client with librdkafka
//! against the same strom broker: produce acks=1 and acks=all, consume, and the client's CPU
//! seconds per GiB (this process's CPU time; the broker is another process):
//!
//!   target/release/strom-macro-bench --scenarios clients

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use strom_macro_bench::{Broker, cpu_seconds, create_topic, reset_peak_rss, status_kib, strom_bin};

mod clients;
mod idle;

#[derive(Parser, Debug)]
#[command(about = "strom vs librdkafka's mock cluster under the same librdkafka load")]
struct Args {
    /// Records per produce scenario
    #[arg(long, default_value_t = 5_000_000)]
    records: u64,
    /// Bytes of each record's value
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Partitions of each topic
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// linger.ms of the producer
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// batch.size of the producer
    #[arg(long, default_value_t = 1_048_576)]
    batch_size: usize,
    /// max.partition.fetch.bytes of the consumer (librdkafka's mock cluster returns nothing when
    /// the next batch is larger than this, so keep it above batch.size)
    #[arg(long, default_value_t = 2 * 1_048_576)]
    fetch_partition_max_bytes: usize,
    /// The strom binary (default: `strom` next to this program, i.e. target/release/strom)
    #[arg(long)]
    strom_bin: Option<PathBuf>,
    /// Only run against strom
    #[arg(long)]
    skip_mock: bool,
    /// Idle consumers of the idle-consumers scenario: one run per count
    #[arg(long, value_delimiter = ',', default_value = "0,200,1000")]
    idle_consumers: Vec<usize>,
    /// Records per second of the idle-consumers scenario's producer
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Seconds each idle-consumers run produces for
    #[arg(long, default_value_t = 10)]
    rate_seconds: u64,
    /// Scenarios to run (produce-acks1, produce-acksall, consume, idle-consumers, clients)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "produce-acks1,produce-acksall,consume"
    )]
    scenarios: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// load

#[derive(Default)]
struct Delivery {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for &'static Delivery {}

impl ProducerContext for &'static Delivery {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

fn base_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("log_level", "3");
    if let Ok(debug) = std::env::var("RDKAFKA_DEBUG") {
        c.set("debug", debug).set("log_level", "7");
    }
    c
}

/// Runs one scenario against a bootstrap address.
type Runner = Box<dyn Fn(&str) -> Measured>;

/// What one run measured.
struct Measured {
    records: u64,
    seconds: f64,
    payload_bytes: u64,
}

impl Measured {
    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
    fn mib_per_sec(&self) -> f64 {
        self.payload_bytes as f64 / (1024.0 * 1024.0) / self.seconds.max(1e-9)
    }
    fn gib(&self) -> f64 {
        self.payload_bytes as f64 / (1024.0 * 1024.0 * 1024.0)
    }
}

fn produce(bootstrap: &str, topic: &str, acks: &str, args: &Args) -> Measured {
    let delivery: &'static Delivery = Box::leak(Box::default());
    let producer: BaseProducer<&'static Delivery> = base_config(bootstrap)
        .set("acks", acks)
        .set("compression.type", "none")
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_size.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .create_with_context(delivery)
        .expect("producer");
    // Same letters as kafka-producer-perf-test sends.
    let payload: Vec<u8> = (0..args.record_size)
        .map(|i| b'A' + ((i * 7 + 3) % 26) as u8)
        .collect();
    let start = Instant::now();
    for i in 0..args.records {
        let mut record = BaseRecord::<(), [u8], ()>::to(topic).payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("produce failed: {e}"),
            }
        }
        if i % 8192 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .expect("all records delivered within 300 s");
    let seconds = start.elapsed().as_secs_f64();
    let failed = delivery.failed.load(Ordering::Relaxed);
    assert_eq!(
        failed,
        0,
        "{failed} records failed; the first: {:?}",
        delivery.first_error.lock().ok().and_then(|e| e.clone())
    );
    let records = delivery.delivered.load(Ordering::Relaxed);
    Measured {
        records,
        seconds,
        payload_bytes: records * args.record_size as u64,
    }
}

fn consume(bootstrap: &str, topic: &str, expected: u64, args: &Args) -> Measured {
    let partitions = args.partitions;
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", "strom-macro-bench")
        .set(
            "max.partition.fetch.bytes",
            args.fetch_partition_max_bytes.to_string(),
        )
        // librdkafka pauses a partition's fetching for fetch.queue.backoff.ms (1 s by default)
        // whenever its local queue is over queued.min.messages: a bench that drains the queue
        // as fast as it can should not sit out whole seconds.
        .set("fetch.queue.backoff.ms", "5")
        .set("queued.min.messages", "1000000")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    // What the cluster makes visible: librdkafka's mock cluster keeps the high watermark of
    // the last batches of an acks=1 topic behind the log end, so count to the watermarks.
    let mut visible = 0u64;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        visible += (high - low).max(0) as u64;
    }
    if visible < expected {
        eprintln!(
            "note: {bootstrap} shows {visible} of the {expected} records produced; reading those"
        );
    }
    let expected = expected.min(visible);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(600);
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut last_progress = Instant::now();
    while records < expected {
        assert!(
            Instant::now() < deadline,
            "consumed only {records} of {expected} records"
        );
        assert!(
            last_progress.elapsed() < Duration::from_secs(20),
            "no record for 20 s after {records} of {expected} records from {bootstrap}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += m.payload_len() as u64;
                last_progress = Instant::now();
            }
            Some(Err(e)) => panic!("consume failed: {e}"),
            None => {}
        }
    }
    Measured {
        records,
        seconds: start.elapsed().as_secs_f64(),
        payload_bytes: bytes,
    }
}

// ---------------------------------------------------------------------------------------------
// report

fn main() {
    let args: &'static Args = Box::leak(Box::new(Args::parse()));
    let bin = strom_bin(args.strom_bin.as_deref());
    assert!(
        bin.exists(),
        "{} not found: cargo build --release -p strom",
        bin.display()
    );
    let self_pid = std::process::id().to_string();
    let broker = Broker::start(&bin);
    let pid = broker.pid().to_string();
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss_mib = status_kib(&pid, "VmRSS:") as f64 / 1024.0;
    let mock = if args.skip_mock {
        None
    } else {
        Some(MockCluster::new(1).expect("mock cluster"))
    };
    let mock_bootstrap = mock.as_ref().map(|m| m.bootstrap_servers());

    println!(
        "strom-macro-bench: {} records of {} bytes, {} partitions, linger.ms={}, batch.size={}",
        args.records, args.record_size, args.partitions, args.linger_ms, args.batch_size
    );
    println!(
        "strom: {} (pid {pid}), idle RSS {idle_rss_mib:.1} MiB",
        bin.display()
    );
    println!();
    println!(
        "| scenario | target | records/s | MiB/s | seconds | broker CPU-s | broker CPU-s/GiB | broker peak RSS MiB | bench process CPU-s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");

    // The consume scenario reads the acks=all topic when it was produced (librdkafka's mock
    // cluster holds back the high watermark of an acks=1 topic), else the acks=1 topic.
    let mut produced: Option<(&str, u64)> = None;
    for scenario in &args.scenarios {
        if scenario == "idle-consumers" {
            idle_consumers(&bin, &broker, args);
            continue;
        }
        if scenario == "clients" {
            clients::run(&bin, &broker.bootstrap(), &pid, args);
            continue;
        }
        let (topic, run): (&str, Runner) = match scenario.as_str() {
            "produce-acks1" => (
                "bench-acks1",
                Box::new(|b: &str| produce(b, "bench-acks1", "1", args)),
            ),
            "produce-acksall" => (
                "bench-acksall",
                Box::new(|b: &str| produce(b, "bench-acksall", "all", args)),
            ),
            "consume" => {
                let (topic, expected) = produced.unwrap_or_else(|| {
                    panic!("the consume scenario reads a produced topic: run a produce one first")
                });
                (
                    topic,
                    Box::new(move |b: &str| consume(b, topic, expected, args)),
                )
            }
            other => panic!("unknown scenario {other}"),
        };
        if scenario.starts_with("produce") {
            create_topic(&bin, &broker.bootstrap(), topic, args.partitions);
            if let Some(m) = &mock {
                m.create_topic(topic, args.partitions, 1)
                    .expect("mock topic");
            }
        }

        reset_peak_rss(&pid);
        let (cpu0, self0) = (cpu_seconds(&pid), cpu_seconds(&self_pid));
        let s = run(&broker.bootstrap());
        let (cpu, own) = (cpu_seconds(&pid) - cpu0, cpu_seconds(&self_pid) - self0);
        let peak = status_kib(&pid, "VmHWM:") as f64 / 1024.0;
        if scenario == "produce-acksall" || (scenario == "produce-acks1" && produced.is_none()) {
            produced = Some((topic, s.records));
        }
        println!(
            "| {scenario} | strom | {:.0} | {:.1} | {:.2} | {cpu:.2} | {:.3} | {peak:.1} | {own:.2} |",
            s.records_per_sec(),
            s.mib_per_sec(),
            s.seconds,
            cpu / s.gib().max(1e-12),
        );
        if let Some(mb) = &mock_bootstrap {
            let self0 = cpu_seconds(&self_pid);
            let m = run(mb);
            let own = cpu_seconds(&self_pid) - self0;
            println!(
                "| {scenario} | mock cluster | {:.0} | {:.1} | {:.2} | (in process) | | | {own:.2} |",
                m.records_per_sec(),
                m.mib_per_sec(),
                m.seconds,
            );
            println!(
                "| {scenario} | strom / mock | {:.2} | | | | | | |",
                s.records_per_sec() / m.records_per_sec().max(1e-9)
            );
        }
    }
    println!();
    println!(
        "broker RSS after the run: {:.1} MiB; data dir usage: see the temp dir while running",
        status_kib(&pid, "VmRSS:") as f64 / 1024.0
    );
    drop(broker);
}

/// The idle-consumers scenario against strom: one table row per idle consumer count.
fn idle_consumers(bin: &std::path::Path, broker: &Broker, args: &Args) {
    let most = args.idle_consumers.iter().copied().max().unwrap_or(0);
    create_topic(bin, &broker.bootstrap(), "bench-rate", args.partitions);
    if most > 0 {
        create_topic(bin, &broker.bootstrap(), "bench-idle", most as i32);
    }
    let pid = broker.pid().to_string();
    let bootstrap = broker.bootstrap();
    let load = idle::RateLoad {
        bootstrap: &bootstrap,
        broker_pid: &pid,
        topic: "bench-rate",
        idle_topic: "bench-idle",
        records_per_sec: args.rate,
        record_size: args.record_size,
        seconds: args.rate_seconds,
        linger_ms: args.linger_ms,
    };
    println!();
    println!(
        "idle-consumers: {} records/s of {} bytes for {} s, {} partitions; idle fetches wait up to 500 ms",
        args.rate, args.record_size, args.rate_seconds, args.partitions
    );
    println!();
    println!(
        "| idle consumers | records/s | MiB/s | broker CPU-s | broker CPU-s/GiB | ratio to 0 idle | idle fetches/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut baseline: Option<f64> = None;
    for &n in &args.idle_consumers {
        let r = idle::run(&load, n);
        let per_gib = r.cpu_per_gib();
        if r.idle_consumers == 0 {
            baseline = Some(per_gib);
        }
        let ratio = baseline.map_or("-".to_string(), |b| {
            format!("{:.2}", per_gib / b.max(1e-12))
        });
        println!(
            "| {} | {:.0} | {:.1} | {:.2} | {per_gib:.3} | {ratio} | {:.0} |",
            r.idle_consumers,
            r.records as f64 / r.seconds.max(1e-9),
            r.payload_bytes as f64 / (1024.0 * 1024.0) / r.seconds.max(1e-9),
            r.broker_cpu_seconds,
            r.idle_fetches as f64 / r.seconds.max(1e-9),
        );
    }
    println!();
}
