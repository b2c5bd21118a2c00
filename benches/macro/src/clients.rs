//! The clients scenario: strom-client and librdkafka (through the rdkafka crate) against the
//! same strom broker in one run. For each client: produce (acks=1 and acks=all, no
//! compression, no idempotence, the same linger.ms and batch.size) and consume from the start
//! of the acks=all topic librdkafka wrote. Reports throughput and the CPU time of the client
//! side: this process's utime + stime over the run (the broker is another process), per GiB
//! of payload.
//!
//!   target/release/strom-macro-bench --scenarios clients

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use strom_client::Properties;
use strom_client::consumer::{Consumer, TopicPartition};
use strom_client::producer::{DeliveryFuture, Producer, Record};
use strom_macro_bench::{cpu_seconds, create_topic};

use crate::{Args, Measured};

/// One client's run of one scenario.
struct Row {
    scenario: &'static str,
    client: &'static str,
    measured: Measured,
    client_cpu: f64,
    broker_cpu: f64,
}

impl Row {
    fn print(&self) {
        let m = &self.measured;
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} |",
            self.scenario,
            self.client,
            m.records_per_sec(),
            m.mib_per_sec(),
            m.seconds,
            self.client_cpu,
            self.client_cpu / m.gib().max(1e-12),
            self.broker_cpu / m.gib().max(1e-12),
        );
    }
}

/// Writes `args.records` records of `args.record_size` bytes (no key) with strom-client's
/// producer, awaiting every delivery.
fn strom_produce(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    topic: &str,
    acks: &str,
    args: &Args,
) -> Measured {
    let payload = bytes_payload(args.record_size);
    let n = args.records;
    let topic = topic.to_string();
    let props = Properties::default()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("enable.idempotence", "false")
        .set("compression.type", "none")
        .set("linger.ms", args.linger_ms)
        .set("batch.size", args.batch_size)
        .set("max.request.size", args.batch_size + 64 * 1024)
        // librdkafka queues up to 1,000,000 records here (queue.buffering.max.messages).
        .set("buffer.memory", 256 * 1024 * 1024);
    rt.block_on(async move {
        let producer = Producer::new(props).expect("strom-client producer");
        let delivered = Arc::new(AtomicU64::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<DeliveryFuture>>(4096);
        let counting = {
            let delivered = delivered.clone();
            tokio::spawn(async move {
                while let Some(chunk) = rx.recv().await {
                    for d in chunk {
                        d.await.expect("delivery");
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let start = Instant::now();
        let mut chunk = Vec::with_capacity(256);
        for _ in 0..n {
            let d = producer
                .send(Record::new(&topic, payload.clone()))
                .await
                .expect("send");
            chunk.push(d);
            if chunk.len() == 256 {
                tx.send(std::mem::replace(&mut chunk, Vec::with_capacity(256)))
                    .await
                    .unwrap();
            }
        }
        tx.send(chunk).await.unwrap();
        drop(tx);
        counting.await.unwrap();
        let seconds = start.elapsed().as_secs_f64();
        producer.close().await.expect("close");
        let records = delivered.load(Ordering::Relaxed);
        Measured {
            records,
            seconds,
            payload_bytes: records * args.record_size as u64,
        }
    })
}

/// Reads `expected` records of `topic` from the start with strom-client's consumer (partitions
/// assigned by hand, as the librdkafka consume does).
fn strom_consume(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    topic: &str,
    expected: u64,
    args: &Args,
) -> Measured {
    let props = Properties::default()
        .set("bootstrap.servers", bootstrap)
        .set("auto.offset.reset", "earliest")
        .set("max.partition.fetch.bytes", args.fetch_partition_max_bytes)
        .set("max.poll.records", 10_000);
    let tps: Vec<TopicPartition> = (0..args.partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    rt.block_on(async move {
        let mut consumer = Consumer::new(props).expect("strom-client consumer");
        consumer.assign(&tps).expect("assign");
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
                "no record for 20 s after {records} of {expected} records"
            );
            let batch = consumer
                .poll(Duration::from_millis(100))
                .await
                .expect("poll");
            if !batch.is_empty() {
                last_progress = Instant::now();
            }
            for r in &batch {
                records += 1;
                bytes += r.value.as_ref().map_or(0, |v| v.len()) as u64;
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        consumer.close().await.expect("close");
        Measured {
            records,
            seconds,
            payload_bytes: bytes,
        }
    })
}

/// The same letters as the librdkafka runs send.
fn bytes_payload(size: usize) -> bytes::Bytes {
    (0..size)
        .map(|i| b'A' + ((i * 7 + 3) % 26) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Runs the scenario against the broker and prints its table.
pub fn run(bin: &std::path::Path, bootstrap: &str, broker_pid: &str, args: &Args) {
    let self_pid = std::process::id().to_string();
    // The strom-client runs get a runtime with one worker per core, built before the clock
    // starts; librdkafka runs its own threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let measure = |scenario: &'static str, client: &'static str, run: &dyn Fn() -> Measured| {
        let (cpu0, broker0) = (cpu_seconds(&self_pid), cpu_seconds(broker_pid));
        let measured = run();
        let row = Row {
            scenario,
            client,
            measured,
            client_cpu: cpu_seconds(&self_pid) - cpu0,
            broker_cpu: cpu_seconds(broker_pid) - broker0,
        };
        row.print();
        row
    };
    println!();
    println!(
        "clients: strom-client vs librdkafka against the same strom broker; {} records of {} bytes, {} partitions, linger.ms={}, batch.size={}",
        args.records, args.record_size, args.partitions, args.linger_ms, args.batch_size
    );
    println!();
    println!(
        "| scenario | client | records/s | MiB/s | seconds | client CPU-s | client CPU-s/GiB | broker CPU-s/GiB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut pairs = Vec::new();
    for (scenario, acks) in [("produce-acks1", "1"), ("produce-acksall", "all")] {
        let (rd_topic, st_topic) = (
            format!("clients-rdkafka-{scenario}"),
            format!("clients-strom-{scenario}"),
        );
        create_topic(bin, bootstrap, &rd_topic, args.partitions);
        create_topic(bin, bootstrap, &st_topic, args.partitions);
        let rd = measure(scenario, "librdkafka", &|| {
            crate::produce(bootstrap, &rd_topic, acks, args)
        });
        let st = measure(scenario, "strom-client", &|| {
            strom_produce(&rt, bootstrap, &st_topic, acks, args)
        });
        pairs.push((rd, st));
    }
    // Both read the acks=all topic librdkafka wrote.
    let topic = "clients-rdkafka-produce-acksall";
    let expected = args.records;
    let rd = measure("consume", "librdkafka", &|| {
        crate::consume(bootstrap, topic, expected, args)
    });
    let st = measure("consume", "strom-client", &|| {
        strom_consume(&rt, bootstrap, topic, expected, args)
    });
    pairs.push((rd, st));
    println!();
    println!("| scenario | strom-client / librdkafka: records/s | client CPU-s/GiB |");
    println!("|---|---:|---:|");
    for (rd, st) in &pairs {
        let per_gib = |r: &Row| r.client_cpu / r.measured.gib().max(1e-12);
        println!(
            "| {} | {:.2} | {:.2} |",
            rd.scenario,
            st.measured.records_per_sec() / rd.measured.records_per_sec().max(1e-9),
            per_gib(st) / per_gib(rd).max(1e-12),
        );
    }
    println!();
}
