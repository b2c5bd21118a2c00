//! Log compaction end to end, with librdkafka: the latest value per key survives cleaning,
//! tombstones go after delete.retention.ms, keyless records are refused with INVALID_RECORD,
//! and SIGKILL at random points during cleaning never loses a surviving record.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use strom_e2e::{Strom, client_config, consumer_config};

fn create_topic(bootstrap: &str, topic: &str, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
    let mut new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        admin
            .create_topics(
                &[new],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap()
            .remove(0)
    });
    result.unwrap();
}

fn producer(bootstrap: &str, compression: &str) -> BaseProducer {
    client_config(bootstrap)
        .set("linger.ms", "5")
        .set("compression.type", compression)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap()
}

/// Sends (key, value) records (`None` value: a tombstone) and waits until all are acknowledged.
fn produce(p: &BaseProducer, topic: &str, records: &[(String, Option<String>)]) {
    for (key, value) in records {
        let mut rec = BaseRecord::<String, String>::to(topic).key(key);
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        strom_e2e::send_queued(p, rec);
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Every record of partition 0 from the beginning to the end: (offset, key, value).
fn read_all(bootstrap: &str, topic: &str) -> Vec<(i64, String, Option<String>)> {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "did not reach the end of {topic}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("consume error: {e}"),
            Some(Ok(m)) => out.push((
                m.offset(),
                String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap(),
                m.payload().map(|v| String::from_utf8(v.to_vec()).unwrap()),
            )),
        }
    }
}

/// The cleaner's first dirty offset of partition 0 (everything below it was cleaned).
fn cleaned_up_to(data_dir: &Path, topic: &str) -> i64 {
    std::fs::read_to_string(
        data_dir
            .join(format!("{topic}-0"))
            .join("cleaner-checkpoint"),
    )
    .ok()
    .and_then(|text| text.lines().nth(1)?.split_whitespace().next()?.parse().ok())
    .unwrap_or(-1)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last record per key, as a consumer that reads everything ends up seeing.
fn last_per_key(records: &[(i64, String, Option<String>)]) -> BTreeMap<String, Option<String>> {
    records
        .iter()
        .map(|(_, k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn compacted_topic_keeps_the_latest_value_per_key() {
    const KEYS: usize = 1_000;
    const UPDATES: usize = 100_000;
    const TOPIC: &str = "compacted";
    let strom = Strom::start(&["log.cleaner.backoff.ms=200"]);
    let bootstrap = strom.bootstrap();
    create_topic(
        &bootstrap,
        TOPIC,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "32768"),
            ("segment.ms", "2000"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "1000"),
        ],
    );
    let p = producer(&bootstrap, "lz4");
    let mut expected: BTreeMap<String, Option<String>> = BTreeMap::new();
    let updates: Vec<(String, Option<String>)> = (0..UPDATES)
        .map(|i| {
            let key = format!("key-{:04}", (i * 7919) % KEYS);
            (key, Some(format!("value-{i}")))
        })
        .collect();
    for (k, v) in &updates {
        expected.insert(k.clone(), v.clone());
    }
    produce(&p, TOPIC, &updates);

    // A record after segment.ms rolls the active segment, making everything before cleanable.
    let roll = |p: &BaseProducer, n: usize| -> i64 {
        std::thread::sleep(Duration::from_millis(2100));
        produce(p, TOPIC, &[("marker".into(), Some(format!("marker-{n}")))]);
        read_all(&bootstrap, TOPIC).last().unwrap().0
    };
    let marker = roll(&p, 1);
    assert_eq!(marker, UPDATES as i64);
    expected.insert("marker".into(), Some("marker-1".into()));
    wait_for(
        "cleaning through the marker",
        Duration::from_secs(60),
        || cleaned_up_to(strom.data_dir(), TOPIC) >= marker,
    );
    let records = read_all(&bootstrap, TOPIC);
    assert_eq!(
        records.len(),
        KEYS + 1,
        "a fresh consumer gets exactly one record per key"
    );
    assert!(records.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(last_per_key(&records), expected);

    // Tombstones: present once cleaned, gone after delete.retention.ms.
    let deleted: Vec<(String, Option<String>)> =
        (0..100).map(|k| (format!("key-{k:04}"), None)).collect();
    produce(&p, TOPIC, &deleted);
    let marker = roll(&p, 2);
    expected.insert("marker".into(), Some("marker-2".into()));
    wait_for(
        "cleaning through the tombstones",
        Duration::from_secs(60),
        || cleaned_up_to(strom.data_dir(), TOPIC) >= marker,
    );
    for (k, _) in &deleted {
        expected.remove(k);
    }
    wait_for("tombstones to go", Duration::from_secs(60), || {
        let records = read_all(&bootstrap, TOPIC);
        records.iter().all(|r| r.2.is_some())
    });
    let records = read_all(&bootstrap, TOPIC);
    // The first marker stays: the second one is in the active segment, which is never cleaned
    // nor part of the key map.
    assert_eq!(records.len(), KEYS - 100 + 2);
    assert_eq!(last_per_key(&records), expected);

    // A record without a key is refused with INVALID_RECORD.
    let (tx, rx) = std::sync::mpsc::channel();
    let sender: BaseProducer<_> = client_config(&bootstrap)
        .set("linger.ms", "0")
        .set("message.timeout.ms", "10000")
        .create_with_context(DeliveryTo(std::sync::Mutex::new(tx)))
        .unwrap();
    sender
        .send(BaseRecord::<(), str>::to(TOPIC).payload("no key"))
        .map_err(|(e, _)| e)
        .unwrap();
    sender.flush(Duration::from_secs(10)).unwrap();
    let result = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        result,
        Err(KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidRecord
        ))
    );
    assert_eq!(last_per_key(&read_all(&bootstrap, TOPIC)), expected);
}

/// Forwards delivery results to a channel.
struct DeliveryTo(std::sync::Mutex<std::sync::mpsc::Sender<Result<i64, KafkaError>>>);
impl rdkafka::ClientContext for DeliveryTo {}
impl rdkafka::producer::ProducerContext for DeliveryTo {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        let r = result
            .as_ref()
            .map(|m| m.offset())
            .map_err(|(e, _)| e.clone());
        let _ = self.0.lock().unwrap().send(r);
    }
}

#[test]
fn sigkill_during_cleaning_loses_no_surviving_record() {
    const TOPIC: &str = "kill";
    const KEYS: usize = 200;
    let mut strom = Strom::start(&["log.cleaner.backoff.ms=20"]);
    let bootstrap = strom.bootstrap();
    create_topic(
        &bootstrap,
        TOPIC,
        &[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "-1"),
            ("segment.bytes", "2048"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "0"),
        ],
    );
    let mut expected: HashMap<String, Option<String>> = HashMap::new();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut cleaned_before_kill = 0;
    let mut serial = 0u64;
    for round in 0..24 {
        let p = producer(
            &strom.bootstrap(),
            ["none", "gzip", "snappy", "lz4", "zstd"][round % 5],
        );
        let updates: Vec<(String, Option<String>)> = (0..600)
            .map(|_| {
                serial += 1;
                let key = format!("k{}", random(KEYS as u64));
                let value = (random(20) != 0).then(|| format!("v{serial}"));
                (key, value)
            })
            .collect();
        produce(&p, TOPIC, &updates);
        drop(p);
        for (k, v) in updates {
            expected.insert(k, v);
        }
        // Let the cleaner start, then kill it at a random point.
        std::thread::sleep(Duration::from_millis(random(60)));
        let before = cleaned_up_to(strom.data_dir(), TOPIC);
        strom.kill9();
        cleaned_before_kill = cleaned_before_kill.max(before);
        strom.restart();

        let records = read_all(&strom.bootstrap(), TOPIC);
        assert!(records.windows(2).all(|w| w[0].0 < w[1].0), "round {round}");
        let got = last_per_key(&records);
        for (k, v) in &expected {
            match (v, got.get(k)) {
                (Some(v), Some(Some(g))) => assert_eq!(g, v, "round {round}: key {k}"),
                // A deleted key may still show its tombstone, or nothing.
                (None, None | Some(None)) => {}
                (v, g) => panic!("round {round}: key {k}: expected {v:?}, read {g:?}"),
            }
        }
        assert!(got.keys().all(|k| expected.contains_key(k)));
    }
    assert!(cleaned_before_kill > 0, "the cleaner never ran");
}
