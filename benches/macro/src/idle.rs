//! The idle-consumers scenario: what parked fetches cost a producing broker.
//!
//! One librdkafka producer writes at a fixed rate to one topic while N idle consumers
//! long-poll N partitions of another topic that nobody writes to, each on its own connection
//! (min_bytes 1, max_wait_ms 500, the Java consumer's defaults). The broker's CPU seconds per
//! GiB produced are compared with the same run with no idle consumer: an append should wake
//! only the fetches waiting on its own partition, so the idle ones should cost only their
//! periodic time-outs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// What one run at a fixed rate measured.
pub struct RateRun {
    pub idle_consumers: usize,
    pub records: u64,
    pub seconds: f64,
    pub payload_bytes: u64,
    pub broker_cpu_seconds: f64,
    /// Fetches the idle consumers completed during the measured window.
    pub idle_fetches: u64,
}

impl RateRun {
    pub fn cpu_per_gib(&self) -> f64 {
        self.broker_cpu_seconds / (self.payload_bytes as f64 / (1u64 << 30) as f64).max(1e-12)
    }
}

/// Settings of the scenario.
pub struct RateLoad<'a> {
    pub bootstrap: &'a str,
    pub broker_pid: &'a str,
    pub topic: &'a str,
    pub idle_topic: &'a str,
    pub records_per_sec: u64,
    pub record_size: usize,
    pub seconds: u64,
    pub linger_ms: u64,
}

/// Idle long-polling consumers, one connection each, on partitions 0..n of `topic`.
struct IdleConsumers {
    runtime: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    fetches: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl IdleConsumers {
    fn start(bootstrap: &str, topic: &str, n: usize) -> IdleConsumers {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let stop = Arc::new(AtomicBool::new(false));
        let fetches = Arc::new(AtomicU64::new(0));
        let ready = Arc::new(AtomicU64::new(0));
        let tasks = (0..n)
            .map(|p| {
                let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
                let (stop, fetches, ready) = (stop.clone(), fetches.clone(), ready.clone());
                runtime.spawn(async move {
                    let client = strom_client::Client::new(&bootstrap).expect("client");
                    let mut first = true;
                    while !stop.load(Ordering::Relaxed) {
                        let r = client.fetch(&topic, p as i32, 0, 1 << 20, 500).await;
                        if let Err(e) = &r {
                            eprintln!("idle consumer {p}: {e}");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        if first {
                            first = false;
                            ready.fetch_add(1, Ordering::Relaxed);
                        } else {
                            fetches.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        // Every consumer has its connection and one fetch behind it before measuring.
        let deadline = Instant::now() + Duration::from_secs(120);
        while ready.load(Ordering::Relaxed) < n as u64 {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} idle consumers started within 120 s",
                ready.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        IdleConsumers {
            runtime,
            stop,
            fetches,
            tasks,
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let IdleConsumers { runtime, tasks, .. } = self;
        runtime.block_on(async {
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

/// Produces at `records_per_sec` for `seconds` with `idle` consumers parked on the idle topic,
/// and measures the broker's CPU over the producing window.
pub fn run(load: &RateLoad<'_>, idle: usize) -> RateRun {
    let consumers = IdleConsumers::start(load.bootstrap, load.idle_topic, idle);
    let producer: BaseProducer = crate::base_config(load.bootstrap)
        .set("acks", "1")
        .set("compression.type", "none")
        .set("linger.ms", load.linger_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let payload: Vec<u8> = (0..load.record_size)
        .map(|i| b'A' + ((i * 7 + 3) % 26) as u8)
        .collect();
    let total = load.records_per_sec * load.seconds;
    let fetches0 = consumers.fetches.load(Ordering::Relaxed);
    let cpu0 = crate::cpu_seconds(load.broker_pid);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        // Keep to the rate: send what is due by now, then sleep a millisecond.
        let due = ((start.elapsed().as_secs_f64() * load.records_per_sec as f64) as u64).min(total);
        while sent < due {
            let mut record = BaseRecord::<(), [u8], ()>::to(load.topic).payload(&payload[..]);
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
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("all records delivered within 120 s");
    let seconds = start.elapsed().as_secs_f64();
    let broker_cpu_seconds = crate::cpu_seconds(load.broker_pid) - cpu0;
    let idle_fetches = consumers.fetches.load(Ordering::Relaxed) - fetches0;
    consumers.stop();
    RateRun {
        idle_consumers: idle,
        records: sent,
        seconds,
        payload_bytes: sent * load.record_size as u64,
        broker_cpu_seconds,
        idle_fetches,
    }
}
