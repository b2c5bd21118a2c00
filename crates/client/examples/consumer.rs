//! A group consumer: joins a group, prints every record it reads, commits as it goes and
//! leaves the group cleanly on Ctrl-C.
//!
//! ```text
//! cargo run -p strom-client --example consumer -- [BOOTSTRAP] [GROUP] [TOPIC,...]
//! ```
//!
//! The broker comes from the first argument, else `STROM_BOOTSTRAP`, else 127.0.0.1:9092.
//! `STROM_GROUP_PROTOCOL=consumer` selects the consumer group protocol.

use std::time::Duration;

use strom_client::Properties;
use strom_client::consumer::{Consumer, RebalanceListener, TopicPartition};

struct Announce;

impl RebalanceListener for Announce {
    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        eprintln!("assigned: {}", list(partitions));
    }
    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        eprintln!("revoked: {}", list(partitions));
    }
    fn on_lost(&mut self, partitions: &[TopicPartition]) {
        eprintln!("lost: {}", list(partitions));
    }
}

fn list(partitions: &[TopicPartition]) -> String {
    partitions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args
        .next()
        .or_else(|| std::env::var("STROM_BOOTSTRAP").ok())
        .unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let group = args.next().unwrap_or_else(|| "example-group".to_string());
    let topics = args.next().unwrap_or_else(|| "example".to_string());
    let protocol = std::env::var("STROM_GROUP_PROTOCOL").unwrap_or_else(|_| "classic".into());

    let props = Properties::default()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("group.protocol", &protocol)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("auto.offset.reset", "earliest");
    let mut consumer = Consumer::new(props)?;
    consumer.set_rebalance_listener(Box::new(Announce));
    let names: Vec<&str> = topics.split(',').map(str::trim).collect();
    consumer.subscribe(&names)?;
    eprintln!(
        "reading {topics} as group {group} from {bootstrap} ({protocol} protocol); Ctrl-C stops"
    );

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            polled = consumer.poll(Duration::from_millis(500)) => {
                for r in polled? {
                    let value = r.value.as_deref().map(String::from_utf8_lossy);
                    println!("{}-{}@{}: {}", r.topic, r.partition, r.offset, value.unwrap_or_default());
                }
            }
        }
    }
    consumer.close().await?;
    Ok(())
}
