//! Scale checks of issue 6, ignored by default (they take a while and want a release build):
//! 10,000 partitions, the broker's RSS holding them, and start-up after a clean shutdown.
//!
//! ```sh
//! cargo build --release -p strom
//! STROM_BIN=target/release/strom cargo test -p strom-e2e --test scale -- --ignored --nocapture
//! ```

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use strom_e2e::{Strom, client_config};

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
