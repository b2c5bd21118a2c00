//! Sends numbered records to a topic with strom's producer and prints where they landed.
//!
//! ```text
//! cargo run -p strom-client --example producer -- [BOOTSTRAP] [TOPIC] [COUNT] [KEY=VALUE...]
//! ```
//!
//! BOOTSTRAP defaults to `$STROM_BOOTSTRAP`, else `127.0.0.1:9092`; TOPIC to `example`; COUNT to
//! 1000. Extra `KEY=VALUE` arguments are producer properties (`compression.type=zstd`,
//! `linger.ms=20`, `acks=1`, ...). The topic must exist (`strom topics create example`).

use std::time::Instant;

use strom_client::Properties;
use strom_client::producer::{Producer, Record};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args
        .next()
        .or_else(|| std::env::var("STROM_BOOTSTRAP").ok())
        .unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let topic = args.next().unwrap_or_else(|| "example".to_string());
    let count: u64 = args.next().map_or(Ok(1000), |c| c.parse())?;
    let mut properties = Properties::default().set("bootstrap.servers", &bootstrap);
    for extra in args {
        let (k, v) = extra
            .split_once('=')
            .ok_or_else(|| format!("expected KEY=VALUE, got {extra:?}"))?;
        properties = properties.set(k, v);
    }
    let producer = Producer::new(properties)?;

    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(count as usize);
    for n in 0..count {
        let record = Record::new(&topic, format!("record {n}")).key(format!("key-{}", n % 16));
        deliveries.push(producer.send(record).await?);
    }
    let mut per_partition = std::collections::BTreeMap::new();
    let mut failed = 0;
    for d in deliveries {
        match d.await {
            Ok(d) => *per_partition.entry(d.partition).or_insert(0u64) += 1,
            Err(e) => {
                failed += 1;
                eprintln!(
                    "failed ({}): {e}",
                    if e.is_retriable() {
                        "retriable"
                    } else {
                        "fatal"
                    }
                );
            }
        }
    }
    producer.close().await?;
    let elapsed = started.elapsed();
    println!(
        "{count} records to {topic} on {bootstrap} in {elapsed:.2?} ({:.0} records/s), {failed} failed",
        count as f64 / elapsed.as_secs_f64()
    );
    for (p, n) in per_partition {
        println!("  partition {p}: {n} records");
    }
    Ok(())
}
