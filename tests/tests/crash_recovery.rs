//! SIGKILL in the middle of an acks=1 produce stream: after a restart every acknowledged record
//! is there at the offset it was acknowledged with, and the log takes new writes densely.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use strom_e2e::{Strom, client_config, consumer_config, payload};

const PARTITIONS: i32 = 4;
const TOPIC: &str = "crash";

type Acked = Arc<Mutex<Vec<(i32, i64, u64)>>>;

struct AckContext(Acked);
impl ClientContext for AckContext {}
impl ProducerContext for AckContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            let n: u64 = std::str::from_utf8(m.key().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            self.0.lock().unwrap().push((m.partition(), m.offset(), n));
        }
    }
}

fn read_all(bootstrap: &str) -> HashMap<(i32, i64), (u64, Vec<u8>)> {
    let consumer: BaseConsumer = consumer_config(bootstrap).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for p in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
            .unwrap();
        remaining += high - low;
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while remaining > 0 {
        assert!(
            Instant::now() < deadline,
            "{remaining} records not read back"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            let n: u64 = std::str::from_utf8(m.key().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            out.insert(
                (m.partition(), m.offset()),
                (n, m.payload().unwrap().to_vec()),
            );
            remaining -= 1;
        }
    }
    out
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let mut strom = Strom::start(&[]);
    let bootstrap = strom.bootstrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> = client_config(&bootstrap).create().unwrap();
        let r = admin
            .create_topics(
                &[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .unwrap();
        assert!(r[0].is_ok());
    });

    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producer_thread = {
        let acked = acked.clone();
        let stop = stop.clone();
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            let producer: BaseProducer<AckContext> = client_config(&bootstrap)
                .set("acks", "1")
                .set("linger.ms", "2")
                .set("message.timeout.ms", "3000")
                .set("retries", "0")
                .create_with_context(AckContext(acked))
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = n.to_string();
                let value = payload(n, 200);
                let rec = BaseRecord::to(TOPIC)
                    .partition((n % PARTITIONS as u64) as i32)
                    .key(&key)
                    .payload(&value);
                if producer.send(rec).is_ok() {
                    n += 1;
                }
                if n.is_multiple_of(64) {
                    producer.poll(Duration::from_millis(1));
                }
            }
            let _ = producer.flush(Duration::from_secs(5));
        })
    };
    // Let a good stream build up, then pull the plug mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 100_000 {
        assert!(Instant::now() < deadline, "producer made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    strom.kill9();
    stop.store(true, Ordering::Relaxed);
    producer_thread.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 100_000);

    strom.restart();
    let stored = read_all(&bootstrap);
    for (p, offset, n) in &acked {
        let (stored_n, value) = stored.get(&(*p, *offset)).unwrap_or_else(|| {
            panic!("acknowledged record {n} at partition {p} offset {offset} is lost")
        });
        assert_eq!(
            stored_n, n,
            "partition {p} offset {offset} holds another record"
        );
        assert_eq!(value, &payload(*n, 200));
    }
    // Offsets are dense from zero in every partition.
    for p in 0..PARTITIONS {
        let count = stored.keys().filter(|(sp, _)| *sp == p).count() as i64;
        for o in 0..count {
            assert!(
                stored.contains_key(&(p, o)),
                "partition {p} has a hole at {o}"
            );
        }
    }

    // The recovered log takes new writes right after what it kept.
    let producer: BaseProducer = client_config(&bootstrap)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let before = stored.keys().filter(|(p, _)| *p == 0).count() as i64;
    for i in 0..10 {
        producer
            .send(
                BaseRecord::to(TOPIC)
                    .partition(0)
                    .key("after")
                    .payload(&format!("after-{i}")),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let consumer: BaseConsumer = client_config(&bootstrap).create().unwrap();
    let (_, high) = consumer
        .fetch_watermarks(TOPIC, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(high, before + 10);
    eprintln!(
        "acknowledged {} records before SIGKILL; all found after restart",
        acked.len()
    );
}
