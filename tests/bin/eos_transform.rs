//! Exactly-once consume-transform-produce worker (librdkafka): reads `input` in group `group`,
//! writes each record to `output` as `<value>:t` with the same key, and commits the consumed
//! offsets in the same transaction. Exits 0 once it has caught up with the whole input.
//!
//! Usage: eos-transform BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID PARTITIONS

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, input, output, group, txn_id, partitions] = &args[..] else {
        eprintln!("usage: eos-transform BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID PARTITIONS");
        std::process::exit(2);
    };
    let partitions: i32 = partitions.parse().expect("partition count");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", group)
        .set("group.instance.id", format!("{txn_id}-member"))
        .set("session.timeout.ms", "6000")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("log_level", "3")
        .create()
        .expect("consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("transactional.id", txn_id)
        .set("transaction.timeout.ms", "20000")
        .set("linger.ms", "5")
        .set("log_level", "3")
        .create()
        .expect("producer");
    producer
        .init_transactions(Duration::from_secs(60))
        .expect("init_transactions");

    let mut idle_since = Instant::now();
    let mut transactions = 0u64;
    loop {
        // Up to 2,000 records or 100 ms of quiet.
        let mut batch = Vec::new();
        let started = Instant::now();
        while batch.len() < 2000 && started.elapsed() < Duration::from_millis(300) {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => batch.push((
                    m.key().map(|k| k.to_vec()),
                    m.payload().map(|v| v.to_vec()).unwrap_or_default(),
                )),
                Some(Err(e)) => panic!("consume failed: {e}"),
                None if !batch.is_empty() => break,
                None => {}
            }
        }
        if batch.is_empty() {
            if idle_since.elapsed() > Duration::from_secs(2)
                && caught_up(&consumer, input, partitions)
            {
                println!("caught up after {transactions} transactions");
                return;
            }
            continue;
        }
        idle_since = Instant::now();
        producer.begin_transaction().expect("begin");
        for (key, value) in &batch {
            let mut out = value.clone();
            out.extend_from_slice(b":t");
            let mut record = BaseRecord::<Vec<u8>, Vec<u8>>::to(output).payload(&out);
            if let Some(k) = key {
                record = record.key(k);
            }
            let mut record = record;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
        }
        let mut positions = TopicPartitionList::new();
        for e in consumer.position().expect("position").elements() {
            if let Offset::Offset(o) = e.offset() {
                positions
                    .add_partition_offset(e.topic(), e.partition(), Offset::Offset(o))
                    .unwrap();
            }
        }
        producer
            .send_offsets_to_transaction(
                &positions,
                &consumer.group_metadata().expect("group metadata"),
                Duration::from_secs(30),
            )
            .expect("send offsets");
        producer
            .commit_transaction(Duration::from_secs(30))
            .expect("commit");
        transactions += 1;
    }
}

/// Whether every partition of `topic` is assigned and consumed up to its high watermark.
fn caught_up(consumer: &BaseConsumer, topic: &str, partitions: i32) -> bool {
    let Ok(assignment) = consumer.assignment() else {
        return false;
    };
    if assignment.count() != partitions as usize {
        return false;
    }
    let Ok(committed) = consumer.committed(Duration::from_secs(10)) else {
        return false;
    };
    (0..partitions).all(|p| {
        let Ok((_, high)) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) else {
            return false;
        };
        committed
            .find_partition(topic, p)
            .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= high))
    })
}
