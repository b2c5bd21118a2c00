//! Scale checks of issue 6, ignored by default (they take a while and want a release build):
//! 10,000 partitions, the broker's RSS holding them, and start-up after a clean shutdown;
//! start-up after SIGKILL with 2 GB unflushed in active segments (`STROM_SCALE_DROP_CACHES=1`,
//! as root, restarts with the page cache dropped, so that recovery reads from the disk).
//!
//! ```sh
//! cargo build --release -p strom
//! STROM_BIN=target/release/strom cargo test -p strom-e2e --test scale -- --ignored --nocapture
//! ```

use std::time::{Duration, Instant};

use std::collections::HashMap;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, Producer, ThreadedProducer,
};
use rdkafka::{Offset, TopicPartitionList};
use strom_e2e::{AckContext, Acked, Strom, client_config, consumer_config, payload, send_queued};

const TOPICS: usize = 10;
const PARTITIONS_PER_TOPIC: usize = 1_000;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// Partitions the broker reports in its metadata, or None while it does not answer.
fn partitions_in_metadata(bootstrap: &str) -> Option<usize> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "scale-probe")
        .create()
        .ok()?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(5)).ok()?;
    Some(
        md.topics()
            .iter()
            .filter(|t| t.name().starts_with("scale-"))
            .map(|t| t.partitions().len())
            .sum(),
    )
}

#[test]
#[ignore = "scale check: 10,000 partitions; run with --ignored (release build recommended)"]
fn ten_thousand_partitions_fit_in_memory_and_start_quickly() {
    let mut strom = Strom::start(&[]);
    let created = Instant::now();
    for t in 0..TOPICS {
        let (ok, _, err) = strom.cli(&[
            "topics",
            "create",
            &format!("scale-{t}"),
            "--partitions",
            &PARTITIONS_PER_TOPIC.to_string(),
        ]);
        assert!(ok, "create topic: {err}");
    }
    let total = TOPICS * PARTITIONS_PER_TOPIC;
    println!("created {total} partitions in {:.2?}", created.elapsed());

    // One small record in every partition, so that every log has data and indexes.
    let producer: ThreadedProducer<DefaultProducerContext> = client_config(&strom.bootstrap())
        .set("linger.ms", "20")
        .create()
        .unwrap();
    for t in 0..TOPICS {
        let topic = format!("scale-{t}");
        for p in 0..PARTITIONS_PER_TOPIC {
            let mut record = BaseRecord::<(), [u8]>::to(&topic)
                .payload(&b"0123456789"[..])
                .partition(p as i32);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    drop(producer);

    let pid = strom.pid().unwrap();
    let rss = rss_mib(pid);
    println!("RSS with {total} partitions (one record each): {rss:.1} MiB");
    assert!(rss < 300.0, "RSS {rss:.1} MiB with {total} partitions");

    assert!(strom.stop(), "clean shutdown");
    let started = Instant::now();
    strom.restart();
    let listening = started.elapsed();
    let ready = loop {
        if partitions_in_metadata(&strom.bootstrap()) == Some(total) {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not ready");
        std::thread::sleep(Duration::from_millis(10));
    };
    let rss = rss_mib(strom.pid().unwrap());
    println!(
        "restart with {total} partitions: listening after {listening:.2?}, metadata complete \
         after {ready:.2?}; RSS after restart {rss:.1} MiB"
    );
    assert!(ready < Duration::from_secs(2), "ready after {ready:.2?}");
}

const RECOVERY_TOPIC: &str = "unflushed";
const RECOVERY_PARTITIONS: i32 = 8;
const RECOVERY_RECORDS: u64 = 2_000_000;
const RECOVERY_VALUE_BYTES: usize = 1_000;

#[test]
#[ignore = "scale check: 2 GB written, SIGKILL, recovery; run with --ignored (release build)"]
fn two_gigabytes_unflushed_recover_after_sigkill_quickly() {
    // Segments of 1 GiB (the default) and no flush interval: all 2 GB stay in the active
    // segments, written to the page cache and never fsynced by the broker.
    let mut strom = Strom::start(&[]);
    let bootstrap = strom.bootstrap();
    let (ok, _, err) = strom.cli(&[
        "topics",
        "create",
        RECOVERY_TOPIC,
        "--partitions",
        &RECOVERY_PARTITIONS.to_string(),
    ]);
    assert!(ok, "create topic: {err}");

    let acked: Acked = Default::default();
    let errors: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let producer: BaseProducer<AckContext> = client_config(&bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "262144")
        .create_with_context(AckContext(acked.clone(), errors.clone()))
        .unwrap();
    let written = Instant::now();
    for n in 0..RECOVERY_RECORDS {
        let key = n.to_string();
        let value = payload(n, RECOVERY_VALUE_BYTES);
        let record = BaseRecord::to(RECOVERY_TOPIC)
            .partition((n % RECOVERY_PARTITIONS as u64) as i32)
            .key(&key)
            .payload(&value);
        send_queued(&producer, record);
        if n % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    drop(producer);
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );
    assert_eq!(
        acked.len() as u64,
        RECOVERY_RECORDS,
        "every record acknowledged"
    );
    let bytes: u64 = walk_bytes(strom.data_dir());
    println!(
        "wrote {} records ({:.2} GB of log) in {:.2?}",
        acked.len(),
        bytes as f64 / 1e9,
        written.elapsed()
    );
    assert!(bytes >= 2_000_000_000, "only {bytes} bytes of log");

    strom.kill9();
    if std::env::var_os("STROM_SCALE_DROP_CACHES").is_some() {
        // Recovery from the disk rather than the page cache (needs root): write the dirty
        // pages back, then drop every clean page.
        let synced = std::process::Command::new("sync").status();
        assert!(synced.is_ok_and(|s| s.success()), "sync");
        std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches (root)");
    }
    let started = Instant::now();
    strom.restart_nowait();
    let bootstrap = strom.bootstrap();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for (p, offset, _) in &acked {
        let end = ends.entry(*p).or_default();
        *end = (*end).max(offset + 1);
    }
    // Ready: the broker answers ListOffsets for every partition with every acknowledged
    // record below the high watermark.
    let ready = loop {
        if let Ok(consumer) = consumer_config(&bootstrap).create::<BaseConsumer>() {
            let all = (0..RECOVERY_PARTITIONS).all(|p| {
                consumer
                    .fetch_watermarks(RECOVERY_TOPIC, p, Duration::from_millis(500))
                    .is_ok_and(|(_, high)| high >= ends[&p])
            });
            if all {
                break started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not ready after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    println!(
        "ready after SIGKILL with {:.2} GB unflushed: {ready:.2?}",
        bytes as f64 / 1e9
    );

    // Every acknowledged record is there, at the offset it was acknowledged with.
    let expected: HashMap<(i32, i64), u64> = acked.iter().map(|(p, o, n)| ((*p, *o), *n)).collect();
    let consumer: BaseConsumer = consumer_config(&bootstrap)
        .set("fetch.max.bytes", "52428800")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..RECOVERY_PARTITIONS {
        tpl.add_partition_offset(RECOVERY_TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut found = 0u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while found < RECOVERY_RECORDS {
        assert!(Instant::now() < deadline, "read back only {found} records");
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.unwrap();
        let Some(n) = expected.get(&(m.partition(), m.offset())) else {
            continue;
        };
        let key: u64 = std::str::from_utf8(m.key().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(key, *n, "record at {}/{}", m.partition(), m.offset());
        assert!(
            m.payload() == Some(&payload(*n, RECOVERY_VALUE_BYTES)[..]),
            "payload of record {n}"
        );
        found += 1;
    }
    assert!(ready < Duration::from_secs(10), "ready after {ready:.2?}");
}

/// Bytes of all files under a directory.
fn walk_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
