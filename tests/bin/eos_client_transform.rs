//! Exactly-once consume-transform-produce worker built on strom-client: reads `input` in group
//! `group` (read_committed), writes each record to `output` as `<value>:t` with the same key,
//! and commits the consumed offsets in the same transaction. Exits 0 once it has caught up
//! with the whole input.
//!
//! Usage: eos-client-transform BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID PARTITIONS

use std::time::{Duration, Instant};

use strom_client::consumer::{Consumer, TopicPartition};
use strom_client::producer::{Producer, Record};
use strom_client::{Client, Properties, offset_spec};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, input, output, group, txn_id, partitions] = &args[..] else {
        eprintln!(
            "usage: eos-client-transform BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID PARTITIONS"
        );
        std::process::exit(2);
    };
    let partitions: i32 = partitions.parse().expect("partition count");
    let mut consumer = Consumer::new(
        Properties::default()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("group.instance.id", format!("{txn_id}-member"))
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("max.poll.records", "2000"),
    )
    .expect("consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    let producer = Producer::new(
        Properties::default()
            .set("bootstrap.servers", bootstrap)
            .set("transactional.id", txn_id)
            .set("transaction.timeout.ms", "20000")
            .set("linger.ms", "5"),
    )
    .expect("producer");
    producer
        .init_transactions()
        .await
        .expect("init_transactions");
    let client = Client::new(bootstrap).expect("client");

    let mut idle_since = Instant::now();
    let mut transactions = 0u64;
    loop {
        let batch = consumer
            .poll(Duration::from_millis(300))
            .await
            .expect("poll");
        if batch.is_empty() {
            if idle_since.elapsed() > Duration::from_secs(2)
                && caught_up(&mut consumer, &client, input, partitions).await
            {
                println!("caught up after {transactions} transactions");
                producer.close().await.expect("close");
                return;
            }
            continue;
        }
        idle_since = Instant::now();
        producer.begin_transaction().await.expect("begin");
        let mut deliveries = Vec::with_capacity(batch.len());
        for r in &batch {
            let mut out = r.value.as_deref().unwrap_or_default().to_vec();
            out.extend_from_slice(b":t");
            let mut record = Record::new(output, out);
            if let Some(k) = &r.key {
                record = record.key(k.clone());
            }
            deliveries.push(producer.send(record).await.expect("send"));
        }
        let positions: Vec<(String, i32, i64)> = {
            let mut out = Vec::new();
            for tp in consumer.assignment() {
                let at = consumer.position(&tp).await.expect("position");
                out.push((tp.topic.clone(), tp.partition, at));
            }
            out
        };
        let metadata = consumer.group_metadata().expect("group metadata");
        producer
            .send_offsets_to_transaction(&positions, &metadata)
            .await
            .expect("send offsets");
        producer.commit_transaction().await.expect("commit");
        for d in deliveries {
            d.await.expect("delivery");
        }
        transactions += 1;
    }
}

/// Whether every partition of `topic` is assigned and committed up to its high watermark.
async fn caught_up(consumer: &mut Consumer, client: &Client, topic: &str, partitions: i32) -> bool {
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    if consumer.assignment().len() != partitions as usize {
        return false;
    }
    let Ok(committed) = consumer.committed(&tps).await else {
        return false;
    };
    for tp in &tps {
        let Ok((high, _)) = client
            .list_offsets(topic, tp.partition, offset_spec::LATEST)
            .await
        else {
            return false;
        };
        if committed.get(tp).is_none_or(|&c| c < high) {
            return false;
        }
    }
    true
}
