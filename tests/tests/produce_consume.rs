//! librdkafka (the `rdkafka` crate) produces 1,000,000 records of 100 bytes to 8 partitions
//! with each compression codec, then reads them all back: every record exactly once, in order
//! per partition, byte-identical, keys and headers included.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use strom_e2e::{Strom, client_config, consumer_config, payload};

const PARTITIONS: i32 = 8;
const RECORDS: u64 = 1_000_000;
const RECORD_BYTES: usize = 100;

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

struct CountingContext(Arc<Counts>);
impl ClientContext for CountingContext {}
impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.ok.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                eprintln!("delivery failed: {e}");
                self.0.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

fn key(n: u64) -> String {
    format!("key-{n}")
}

async fn create_topic(bootstrap: &str, name: &str) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
    let res = admin
        .create_topics(
            &[NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    assert!(res[0].is_ok(), "create topic: {:?}", res[0]);
}

fn produce_all(bootstrap: &str, topic: &str, codec: &str, acks: &str) {
    let counts = Arc::new(Counts::default());
    let producer: BaseProducer<CountingContext> = client_config(bootstrap)
        .set("compression.codec", codec)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("acks", acks)
        .create_with_context(CountingContext(counts.clone()))
        .unwrap();
    for n in 0..RECORDS {
        let value = payload(n, RECORD_BYTES);
        let k = key(n);
        let nbytes = n.to_be_bytes();
        let headers = OwnedHeaders::new().insert(Header {
            key: "seq",
            value: Some(&nbytes[..]),
        });
        let record = BaseRecord::to(topic)
            .partition((n % PARTITIONS as u64) as i32)
            .key(&k)
            .payload(&value)
            .headers(headers);
        strom_e2e::send_queued(&producer, record);
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    assert_eq!(
        counts.failed.load(Ordering::Relaxed),
        0,
        "some deliveries failed"
    );
    assert_eq!(counts.ok.load(Ordering::Relaxed), RECORDS);
}

fn consume_and_verify(bootstrap: &str, topic: &str) {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut next_index = vec![0u64; PARTITIONS as usize];
    let mut received = 0u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while received < RECORDS {
        assert!(
            Instant::now() < deadline,
            "only {received} of {RECORDS} records arrived"
        );
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg.expect("consume error");
        let p = msg.partition() as usize;
        let j = next_index[p];
        let n = j * PARTITIONS as u64 + p as u64;
        assert_eq!(
            msg.offset(),
            j as i64,
            "partition {p}: offsets must be dense"
        );
        assert_eq!(
            msg.payload(),
            Some(&payload(n, RECORD_BYTES)[..]),
            "partition {p} offset {j}: payload"
        );
        assert_eq!(
            msg.key(),
            Some(key(n).as_bytes()),
            "partition {p} offset {j}: key"
        );
        let headers = msg.headers().expect("headers");
        assert_eq!(headers.count(), 1);
        let h = headers.get(0);
        assert_eq!(h.key, "seq");
        assert_eq!(h.value, Some(&n.to_be_bytes()[..]));
        next_index[p] += 1;
        received += 1;
    }
    // Nothing beyond what was produced.
    assert!(
        consumer.poll(Duration::from_millis(500)).is_none(),
        "unexpected extra record"
    );
    for (p, n) in next_index.iter().enumerate() {
        assert_eq!(
            *n,
            RECORDS / PARTITIONS as u64,
            "partition {p} record count"
        );
    }
}

fn round_trip(codec: &str) {
    round_trip_with(codec, &[], "1");
}

fn round_trip_with(codec: &str, props: &[&str], acks: &str) {
    let strom = Strom::start(props);
    let topic = format!("stream-{codec}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create_topic(&strom.bootstrap(), &topic));
    let started = Instant::now();
    produce_all(&strom.bootstrap(), &topic, codec, acks);
    let produced = started.elapsed();
    consume_and_verify(&strom.bootstrap(), &topic);
    eprintln!(
        "{codec}: produced {RECORDS} in {:.1?}, consumed in {:.1?}",
        produced,
        started.elapsed() - produced
    );
}

#[test]
fn million_records_uncompressed() {
    round_trip("none");
}

#[test]
fn million_records_gzip() {
    round_trip("gzip");
}

#[test]
fn million_records_snappy() {
    round_trip("snappy");
}

#[test]
fn million_records_lz4() {
    round_trip("lz4");
}

#[test]
fn million_records_zstd() {
    round_trip("zstd");
}

/// fsync before every acknowledgement (flush.messages=1, group-committed) with acks=all.
#[test]
fn million_records_fsync_per_message_acks_all() {
    round_trip_with("none", &["log.flush.interval.messages=1"], "all");
}
