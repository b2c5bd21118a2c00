//! A consume-transform-produce loop with transactions: reads records from an input topic as a
//! consumer group member, writes each value upper-cased to an output topic, and commits the
//! records written and the input offsets consumed in one transaction. Every input record shows
//! up in the output exactly once for read_committed readers, even if the loop dies mid-way
//! (a restart fences the old producer and resumes from the committed offsets).
//!
//! ```text
//! cargo run -p strom-client --example transactional -- [BOOTSTRAP] [INPUT] [OUTPUT] [GROUP] [IDLE_SECS]
//! ```
//!
//! Defaults: `$STROM_BOOTSTRAP` or `127.0.0.1:9092`, `input`, `output`, `transformer`, and 0
//! (run until Ctrl-C). With IDLE_SECS > 0 the loop also stops after that many seconds without
//! input (10 s more before the first record, while the group forms). The `transactional.id` is the group name with `-txn` appended.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strom_client::Properties;
use strom_client::consumer::{Consumer, TopicPartition};
use strom_client::producer::{GroupMetadata, Producer, Record};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args
        .next()
        .or_else(|| std::env::var("STROM_BOOTSTRAP").ok())
        .unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let input = args.next().unwrap_or_else(|| "input".to_string());
    let output = args.next().unwrap_or_else(|| "output".to_string());
    let group = args.next().unwrap_or_else(|| "transformer".to_string());
    let idle_secs: u64 = args.next().map_or(Ok(0), |s| s.parse())?;

    let mut consumer = Consumer::new(
        Properties::default()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed"),
    )?;
    consumer.subscribe(&[input.as_str()])?;
    let producer = Producer::new(
        Properties::default()
            .set("bootstrap.servers", &bootstrap)
            .set("transactional.id", format!("{group}-txn")),
    )?;
    producer.init_transactions().await?;
    eprintln!("transforming {input} into {output} as group {group}; Ctrl-C stops");

    let (mut records, mut transactions) = (0u64, 0u64);
    let mut last_input = Instant::now();
    // Until the first record, the group may still be forming: allow 10 s more.
    let mut started = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let grace = if started { 0 } else { 10 };
        if idle_secs > 0 && last_input.elapsed() >= Duration::from_secs(idle_secs + grace) {
            eprintln!("no input for {idle_secs} s");
            break;
        }
        let polled = tokio::select! {
            _ = &mut ctrl_c => break,
            polled = consumer.poll(Duration::from_millis(500)) => polled?,
        };
        if polled.is_empty() {
            continue;
        }
        last_input = Instant::now();
        started = true;

        // One transaction per poll: the transformed records and the next input offsets.
        producer.begin_transaction().await?;
        let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for r in &polled {
            let value = r
                .value
                .as_deref()
                .map(|v| String::from_utf8_lossy(v).to_uppercase())
                .unwrap_or_default();
            let mut out = Record::new(&output, value);
            if let Some(k) = &r.key {
                out = out.key(k.clone());
            }
            producer.send(out).await?;
            first
                .entry((r.topic.clone(), r.partition))
                .or_insert(r.offset);
            next.insert((r.topic.clone(), r.partition), r.offset + 1);
        }
        let offsets: Vec<(String, i32, i64)> =
            next.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect();
        let committed = async {
            producer
                .send_offsets_to_transaction(&offsets, &GroupMetadata::new(&group))
                .await?;
            producer.commit_transaction().await
        }
        .await;
        match committed {
            Ok(()) => {
                records += polled.len() as u64;
                transactions += 1;
            }
            Err(e) => {
                // Nothing of the transaction is visible: abort it and read the batch again.
                eprintln!("transaction failed, aborting: {e}");
                producer.abort_transaction().await?;
                for ((t, p), o) in first {
                    consumer.seek(&TopicPartition::new(&t, p), o)?;
                }
            }
        }
    }
    consumer.close().await?;
    producer.close().await?;
    println!("transformed {records} records in {transactions} transactions");
    Ok(())
}
