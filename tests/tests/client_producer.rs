//! strom's own producer (`strom_client::Producer`) end to end: numbered records produced with
//! the idempotent producer, read back with librdkafka, and checked record by record: none
//! missing, none twice, each at the offset its delivery future returned. Against the real strom
//! binary (every codec), against librdkafka's mock cluster (so the producer is not tuned to
//! strom alone), and on a 3-node strom cluster whose partition leader is SIGKILLed mid-run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use strom_client::producer::{
    Delivered, DeliveryFuture, GroupMetadata, Producer, Record, key_partition,
};
use strom_client::{ClientError, Properties};
use strom_e2e::{Cluster, Strom, client_config, consumer_config, payload};

const VALUE_BYTES: usize = 64;

/// The value of record `n`: its number, then bytes that depend on it.
fn value(n: u64) -> Vec<u8> {
    let mut v = n.to_be_bytes().to_vec();
    v.extend(payload(n, VALUE_BYTES));
    v
}

fn number_of(value: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&value[..8]);
    let n = u64::from_be_bytes(b);
    assert_eq!(
        &value[8..],
        &payload(n, VALUE_BYTES)[..],
        "record {n}: value"
    );
    n
}

fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> Producer {
    let mut p = Properties::default()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", 5)
        .set("batch.size", 65536);
    for (k, v) in extra {
        p = p.set(k, v);
    }
    Producer::new(p).expect("producer")
}

/// Sends records `0..records` (keyless: the sticky partitioner spreads them) and waits for
/// each delivery. Returns what each future resolved to.
async fn produce_numbered(
    producer: &Producer,
    topic: &str,
    records: u64,
) -> Vec<Result<Delivered, ClientError>> {
    let mut futures: Vec<DeliveryFuture> = Vec::with_capacity(records as usize);
    for n in 0..records {
        let f = producer
            .send(Record::new(topic, value(n)))
            .await
            .unwrap_or_else(|e| panic!("send {n}: {e}"));
        futures.push(f);
    }
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        out.push(f.await);
    }
    out
}

/// Every record of `topic` (partitions 0..`partitions`) as (partition, offset, number), read
/// with librdkafka until `expected` records arrived (or 120 s passed) and then until quiet.
fn read_back(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<(i32, i64, u64)> {
    read_back_isolated(bootstrap, topic, partitions, expected, "read_committed")
}

fn read_back_isolated(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
    isolation: &str,
) -> Vec<(i32, i64, u64)> {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        if out.len() >= expected && quiet_since.elapsed() > Duration::from_secs(1) {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let n = number_of(m.payload().expect("a value"));
                out.push((m.partition(), m.offset(), n));
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    out
}

/// Checks the log against the deliveries: every acknowledged record is in the log once, at
/// the partition and offset its future returned; no record is in the log twice; per partition
/// offsets are dense from 0 and records appear in the order they were sent. With `all_acked`,
/// every record must have been acknowledged.
fn verify(log: &[(i32, i64, u64)], deliveries: &[Result<Delivered, ClientError>], all_acked: bool) {
    let mut at: HashMap<u64, (i32, i64)> = HashMap::new();
    let mut per_partition: HashMap<i32, Vec<(i64, u64)>> = HashMap::new();
    for &(p, o, n) in log {
        assert!(
            at.insert(n, (p, o)).is_none(),
            "record {n} is in the log twice"
        );
        assert!((n as usize) < deliveries.len(), "record {n} was never sent");
        per_partition.entry(p).or_default().push((o, n));
    }
    for (p, records) in &mut per_partition {
        records.sort_unstable();
        for (i, (o, _)) in records.iter().enumerate() {
            assert_eq!(*o, i as i64, "partition {p}: offsets must be dense");
        }
        assert!(
            records.windows(2).all(|w| w[0].1 < w[1].1),
            "partition {p}: records out of send order"
        );
    }
    let mut failed = 0;
    for (n, d) in deliveries.iter().enumerate() {
        match d {
            Ok(d) => assert_eq!(
                at.get(&(n as u64)),
                Some(&(d.partition, d.offset)),
                "record {n}: acknowledged at {d:?}"
            ),
            Err(e) => {
                assert!(!all_acked, "record {n} failed: {e}");
                failed += 1;
            }
        }
    }
    if all_acked {
        assert_eq!(log.len(), deliveries.len(), "records in the log");
    }
    eprintln!(
        "{} records in the log over {} partitions; {} acknowledged, {failed} failed",
        log.len(),
        per_partition.len(),
        deliveries.len() - failed
    );
}

fn create_topic(strom: &Strom, topic: &str, partitions: i32) {
    let p = partitions.to_string();
    let (ok, out, err) = strom.cli(&["topics", "create", topic, "--partitions", &p]);
    assert!(ok, "topics create: {out}{err}");
}

fn round_trip(codec: &str, records: u64) {
    let strom = Strom::start(&[]);
    let topic = format!("client-producer-{codec}");
    create_topic(&strom, &topic, 6);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let deliveries = rt.block_on(async {
        let p = producer(&strom.bootstrap(), &[("compression.type", codec)]);
        assert!(p.config().idempotence, "idempotence is on by default");
        let d = produce_numbered(&p, &topic, records).await;
        p.close().await.expect("close");
        d
    });
    let produced = started.elapsed();
    let log = read_back(&strom.bootstrap(), &topic, 6, records as usize);
    verify(&log, &deliveries, true);
    let partitions: std::collections::BTreeSet<i32> = log.iter().map(|r| r.0).collect();
    assert!(
        partitions.len() > 1,
        "the sticky partitioner used one partition only"
    );
    eprintln!(
        "{codec}: {records} records produced in {produced:.1?} ({:.0} records/s, debug build)",
        records as f64 / produced.as_secs_f64()
    );
}

#[test]
fn numbered_records_uncompressed() {
    round_trip("none", 100_000);
}

#[test]
fn numbered_records_gzip() {
    round_trip("gzip", 20_000);
}

#[test]
fn numbered_records_snappy() {
    round_trip("snappy", 20_000);
}

#[test]
fn numbered_records_lz4() {
    round_trip("lz4", 20_000);
}

#[test]
fn numbered_records_zstd() {
    round_trip("zstd", 20_000);
}

/// Keyed records land on Kafka's murmur2 partition: the same partition librdkafka's
/// Java-compatible partitioner (`murmur2_random`) picks, and for the published murmur2 test
/// keys the partition computed by hand from Kafka's test vectors.
#[test]
fn keyed_records_land_on_the_murmur2_partition() {
    const PARTITIONS: i32 = 7;
    let strom = Strom::start(&[]);
    create_topic(&strom, "keyed", PARTITIONS);
    create_topic(&strom, "keyed-rdkafka", PARTITIONS);
    let mut keys: Vec<String> = (0..500).map(|i| format!("customer-{i}")).collect();
    // (key, partition of 7) from Kafka's murmur2 test vectors: (hash & 0x7fffffff) % 7.
    let known = [
        ("21", 3),
        ("foobar", 0),
        ("a-little-bit-long-string", 1),
        ("abc", 4),
        ("1", 2),
        ("12", 4),
    ];
    keys.extend(known.iter().map(|(k, _)| k.to_string()));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ours: HashMap<String, i32> = rt.block_on(async {
        let p = producer(&strom.bootstrap(), &[]);
        let mut futures = Vec::new();
        for k in &keys {
            futures.push((
                k.clone(),
                p.send(Record::new("keyed", "v").key(k.clone()))
                    .await
                    .expect("send"),
            ));
        }
        let mut out = HashMap::new();
        for (k, f) in futures {
            out.insert(k, f.await.expect("delivered").partition);
        }
        p.close().await.expect("close");
        out
    });
    for (k, expected) in known {
        assert_eq!(ours[k], expected, "key {k:?}");
    }
    // librdkafka with the Java client's partitioner.
    let rdk: BaseProducer = client_config(&strom.bootstrap())
        .set("partitioner", "murmur2_random")
        .create()
        .expect("rdkafka producer");
    for k in &keys {
        rdk.send(
            BaseRecord::to("keyed-rdkafka")
                .key(k.as_str())
                .payload(k.as_str()),
        )
        .expect("rdkafka send");
    }
    rdk.flush(Duration::from_secs(30)).expect("flush");
    let consumer: BaseConsumer = consumer_config(&strom.bootstrap())
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset("keyed-rdkafka", p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut theirs = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while theirs.len() < keys.len() && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let k = String::from_utf8(m.key().expect("key").to_vec()).expect("utf-8");
            theirs.insert(k, m.partition());
        }
    }
    assert_eq!(theirs.len(), keys.len(), "librdkafka's records read back");
    for k in &keys {
        assert_eq!(
            ours[k], theirs[k],
            "key {k:?}: strom's producer vs librdkafka"
        );
        assert_eq!(ours[k], key_partition(k.as_bytes(), PARTITIONS));
    }
}

/// The same numbered produce against librdkafka's mock cluster (3 brokers).
#[test]
fn numbered_records_against_librdkafkas_mock_cluster() {
    const RECORDS: u64 = 20_000;
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic("mocked", 4, 3).expect("mock topic");
    let bootstrap = mock.bootstrap_servers();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let deliveries = rt.block_on(async {
        let p = producer(&bootstrap, &[("compression.type", "lz4")]);
        let d = produce_numbered(&p, "mocked", RECORDS).await;
        p.close().await.expect("close");
        d
    });
    let log = read_back(&bootstrap, "mocked", 4, RECORDS as usize);
    verify(&log, &deliveries, true);
}

/// Configuration contradictions are refused before anything is sent.
#[test]
fn contradicting_settings_are_refused() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let e = Producer::new(
            Properties::default()
                .set("bootstrap.servers", "127.0.0.1:1")
                .set("enable.idempotence", "true")
                .set("acks", "1"),
        )
        .expect_err("refused");
        assert!(
            matches!(&e, ClientError::Config { property, .. } if property == "acks"),
            "{e}"
        );
        let e = Producer::new(
            Properties::default()
                .set("bootstrap.servers", "127.0.0.1:1")
                .set("linger.mss", "1"),
        )
        .expect_err("refused");
        assert!(e.to_string().contains("linger.mss"), "{e}");
    });
}

/// Sending to a topic that does not exist gives up after max.block.ms with a retriable error.
#[test]
fn a_missing_topic_blocks_at_most_max_block_ms() {
    let strom = Strom::start(&[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let p = producer(&strom.bootstrap(), &[("max.block.ms", "1500")]);
        let started = Instant::now();
        let e = p
            .send(Record::new("no-such-topic", "x"))
            .await
            .expect_err("no topic");
        assert!(matches!(e, ClientError::MaxBlock { .. }), "{e}");
        assert!(e.is_retriable());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1400) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
    });
}

/// A 3-node cluster, a topic with 3 replicas; the leader of partition 0 is SIGKILLed while the
/// idempotent producer sends. Every acknowledged record is in the log exactly once at its
/// acknowledged offset, and no record is written twice.
#[test]
fn leader_killed_mid_run_loses_and_duplicates_nothing_acknowledged() {
    const RECORDS: u64 = 30_000;
    const PARTITIONS: i32 = 3;
    let mut cluster = Cluster::start(3, &[]);
    cluster.create_topic("failover", PARTITIONS, 3, &["min.insync.replicas=2"]);
    let bootstrap = cluster.bootstrap();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = strom_client::Client::new(&bootstrap).expect("client");
    let leader = rt.block_on(async {
        let md = client
            .metadata(Some(vec!["failover".into()]))
            .await
            .expect("metadata");
        md.topic("failover").expect("topic").partitions[0].leader
    });
    assert!(leader >= 1, "partition 0 has a leader");
    let p = rt.block_on(async {
        producer(
            &bootstrap,
            &[
                ("delivery.timeout.ms", "60000"),
                ("request.timeout.ms", "5000"),
            ],
        )
    });
    // A third of the records, then the kill, then the rest, all with the same producer.
    let deliveries = rt.block_on(async {
        let mut futures = Vec::with_capacity(RECORDS as usize);
        for n in 0..RECORDS {
            if n == RECORDS / 3 {
                // Batches are in flight and queued for partition 0 now.
                cluster.node(leader).kill9();
            }
            let rec = Record::new("failover", value(n)).partition((n % PARTITIONS as u64) as i32);
            match p.send(rec).await {
                Ok(f) => futures.push(f),
                Err(e) => panic!("send {n}: {e}"),
            }
        }
        let mut out = Vec::with_capacity(futures.len());
        for f in futures {
            out.push(f.await);
        }
        out
    });
    rt.block_on(p.close()).expect("close");
    let stats = p.stats();
    eprintln!("{stats:?}");
    // The kill cost requests in flight: they were sent again.
    assert!(stats.retries > 0, "no batch was retried: {stats:?}");
    assert_eq!(stats.producer_ids, 1, "no sequence reset was needed");
    let acked = deliveries.iter().filter(|d| d.is_ok()).count();
    assert!(
        acked as u64 >= RECORDS * 9 / 10,
        "only {acked} of {RECORDS} acknowledged"
    );
    let survivors = strom_client::Client::new(&cluster.bootstrap_without(leader)).expect("client");
    let new_leader = rt.block_on(async {
        let md = survivors
            .metadata(Some(vec!["failover".into()]))
            .await
            .expect("metadata");
        md.topic("failover").expect("topic").partitions[0].leader
    });
    assert!(
        new_leader >= 1 && new_leader != leader,
        "partition 0 moved from broker {leader} (now {new_leader})"
    );
    let log = read_back(
        &cluster.bootstrap_without(leader),
        "failover",
        PARTITIONS,
        acked,
    );
    verify(&log, &deliveries, false);
}

fn signal(strom: &Strom, sig: i32) {
    let pid = strom.pid().expect("broker running");
    // SAFETY: kill(2) on the broker process this test started.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// While the broker does not answer (SIGSTOP), sends fill `buffer.memory`; the next send waits
/// `max.block.ms` and fails with a retriable error. Once the broker runs again every record
/// that was accepted is delivered.
#[test]
fn a_full_buffer_blocks_send_then_fails_after_max_block_ms() {
    let strom = Strom::start(&[]);
    create_topic(&strom, "pressure", 1);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let p = producer(
            &strom.bootstrap(),
            &[
                ("buffer.memory", "65536"),
                ("batch.size", "16384"),
                ("max.request.size", "32768"),
                ("max.block.ms", "1000"),
                ("request.timeout.ms", "60000"),
            ],
        );
        // Connected and with a producer id before the broker stops.
        p.send(Record::new("pressure", value(0)))
            .await
            .expect("send")
            .await
            .expect("first record");
        signal(&strom, libc::SIGSTOP);
        let mut futures = Vec::new();
        let mut refused = None;
        let started = Instant::now();
        for n in 1..10_000u64 {
            match p.send(Record::new("pressure", value(n))).await {
                Ok(f) => futures.push((n, f)),
                Err(e) => {
                    refused = Some((n, e, started.elapsed()));
                    break;
                }
            }
        }
        signal(&strom, libc::SIGCONT);
        let (n, e, waited) = refused.expect("the buffer filled up");
        assert!(matches!(e, ClientError::MaxBlock { .. }), "{e}");
        assert!(e.is_retriable());
        assert!(e.to_string().contains("buffer.memory"), "{e}");
        // 65536 bytes of buffer hold about 650 records of this size.
        assert!((400..1000).contains(&n), "refused at record {n}");
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
        let mut last = 0;
        for (n, f) in futures {
            let d = f.await.unwrap_or_else(|e| panic!("record {n}: {e}"));
            assert!(d.offset > last, "record {n} at {}", d.offset);
            last = d.offset;
        }
        p.close().await.expect("close");
    });
}

/// Records that cannot be delivered within delivery.timeout.ms fail with an error that names
/// the partition and is retriable.
#[test]
fn undeliverable_records_fail_after_delivery_timeout() {
    let strom = Strom::start(&[]);
    create_topic(&strom, "stuck", 2);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let p = producer(
            &strom.bootstrap(),
            &[
                ("delivery.timeout.ms", "2000"),
                ("request.timeout.ms", "1000"),
                ("retry.backoff.ms", "50"),
            ],
        );
        p.send(Record::new("stuck", "warm-up").partition(1))
            .await
            .expect("send")
            .await
            .expect("warm-up record");
        signal(&strom, libc::SIGSTOP);
        let started = Instant::now();
        let f = p
            .send(Record::new("stuck", "lost").partition(1))
            .await
            .expect("send");
        let e = f.await.expect_err("not delivered");
        let waited = started.elapsed();
        assert!(e.is_retriable(), "{e}");
        assert_eq!(e.topic_partition(), Some(("stuck", 1)), "{e}");
        // close gives up on what cannot be delivered.
        let f = p
            .send(Record::new("stuck", "also lost").partition(1))
            .await
            .expect("send");
        let started = Instant::now();
        p.close_with_timeout(Duration::from_millis(300))
            .await
            .expect_err("close timed out");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(f.await, Err(ClientError::Closed(_))));
        signal(&strom, libc::SIGCONT);
        assert!(
            waited >= Duration::from_millis(1500) && waited < Duration::from_secs(15),
            "{waited:?}"
        );
    });
}

/// acks=1 and acks=0 (idempotence off) deliver too; acks=0 reports no offsets.
#[test]
fn acks_one_and_zero() {
    let strom = Strom::start(&[]);
    create_topic(&strom, "acks-one", 3);
    create_topic(&strom, "acks-zero", 1);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (one, zero) = rt.block_on(async {
        let p = producer(&strom.bootstrap(), &[("acks", "1")]);
        assert!(
            !p.config().idempotence,
            "acks=1 turns the default idempotence off"
        );
        let one = produce_numbered(&p, "acks-one", 5_000).await;
        p.close().await.expect("close");
        let p = producer(
            &strom.bootstrap(),
            &[("acks", "0"), ("enable.idempotence", "false")],
        );
        let zero = produce_numbered(&p, "acks-zero", 100).await;
        p.close().await.expect("close");
        (one, zero)
    });
    verify(
        &read_back(&strom.bootstrap(), "acks-one", 3, 5_000),
        &one,
        true,
    );
    assert!(zero.iter().all(|d| matches!(d, Ok(d) if d.offset == -1)));
    let log = read_back(&strom.bootstrap(), "acks-zero", 1, 100);
    assert_eq!(
        log.iter().map(|r| r.2).collect::<Vec<_>>(),
        (0..100).collect::<Vec<u64>>()
    );
}

/// A committed transaction is visible to read_committed consumers with the group offsets it
/// committed; an aborted one is not; a second producer with the same transactional.id fences
/// the first, whose next transactional call fails with a fatal error.
#[test]
fn transactions_v2_commit_abort_offsets_and_fencing() {
    transactions(true);
}

/// The same with the cluster on the classic transaction protocol (`transaction.version=0`):
/// AddPartitionsToTxn, AddOffsetsToTxn, and one epoch for all transactions.
#[test]
fn transactions_classic_commit_abort_offsets_and_fencing() {
    transactions(false);
}

fn transactions(v2: bool) {
    let strom = Strom::start(if v2 { &[] } else { &["transaction.version=0"] });
    create_topic(&strom, "txn-out", 3);
    create_topic(&strom, "txn-in", 1);
    let bootstrap = strom.bootstrap();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let committed = rt.block_on(async {
        let p = producer(&bootstrap, &[("transactional.id", "strom-txn-1")]);
        let e = p
            .send(Record::new("txn-out", value(0)))
            .await
            .expect_err("no transaction yet");
        assert!(!e.is_retriable(), "{e}");
        p.init_transactions().await.expect("init_transactions");
        assert_eq!(p.transactions_v2(), v2, "protocol in use");
        let (pid, epoch) = p.producer_id().expect("producer id");
        // Transactions v2 take the next epoch with every transaction; classic ones keep it.
        let next = |e: i16| if v2 { e + 1 } else { e };

        p.begin_transaction().await.expect("begin");
        let mut futures = Vec::new();
        for n in 0..1_000u64 {
            futures.push(
                p.send(Record::new("txn-out", value(n)))
                    .await
                    .expect("send"),
            );
        }
        p.send_offsets_to_transaction(
            &[("txn-in".to_string(), 0, 42)],
            &GroupMetadata::new("strom-txn-group"),
        )
        .await
        .expect("send_offsets_to_transaction");
        p.commit_transaction().await.expect("commit");
        assert_eq!(p.producer_id(), Some((pid, next(epoch))));
        let mut committed = Vec::new();
        for f in futures {
            committed.push(f.await);
        }

        p.begin_transaction().await.expect("begin");
        let mut aborted = Vec::new();
        for n in 1_000..1_500u64 {
            aborted.push(
                p.send(Record::new("txn-out", value(n)))
                    .await
                    .expect("send"),
            );
        }
        p.flush().await;
        p.abort_transaction().await.expect("abort");
        assert_eq!(p.producer_id(), Some((pid, next(next(epoch)))));
        for f in aborted {
            f.await.expect("written, then aborted");
        }

        // A new producer with the same id fences this one.
        let p2 = producer(&bootstrap, &[("transactional.id", "strom-txn-1")]);
        p2.init_transactions()
            .await
            .expect("second init_transactions");
        p.begin_transaction().await.expect("begin (local)");
        let fenced = match p.send(Record::new("txn-out", value(9_999))).await {
            Err(e) => e,
            Ok(f) => match f.await {
                Err(e) => e,
                Ok(_) => p.commit_transaction().await.expect_err("fenced commit"),
            },
        };
        eprintln!("fenced: {fenced}");
        assert!(!fenced.is_retriable(), "fenced: {fenced}");
        assert!(
            matches!(
                fenced.error_name(),
                Some("PRODUCER_FENCED" | "INVALID_PRODUCER_EPOCH")
            ) || fenced.to_string().contains("PRODUCER_FENCED")
                || fenced.to_string().contains("INVALID_PRODUCER_EPOCH"),
            "{fenced}"
        );
        p2.begin_transaction().await.expect("begin");
        let f = p2
            .send(Record::new("txn-out", value(1_500)))
            .await
            .expect("send");
        p2.commit_transaction().await.expect("commit");
        f.await.expect("delivered");
        committed
    });
    // read_committed: the 1000 committed records and the second producer's one.
    let log = read_back(&bootstrap, "txn-out", 3, 1_001);
    let numbers: std::collections::BTreeSet<u64> = log.iter().map(|r| r.2).collect();
    assert_eq!(log.len(), 1_001, "read_committed records");
    assert!(
        numbers.iter().all(|&n| n < 1_000 || n == 1_500),
        "aborted records visible"
    );
    for (n, d) in committed.iter().enumerate() {
        let d = d.as_ref().expect("committed record delivered");
        assert!(
            log.iter()
                .any(|&(p, o, m)| m == n as u64 && p == d.partition && o == d.offset),
            "record {n} at {d:?}"
        );
    }
    // read_uncommitted also sees the 500 aborted ones.
    let raw = read_back_isolated(&bootstrap, "txn-out", 3, 1_501, "read_uncommitted");
    assert_eq!(raw.len(), 1_501);
    // The offsets committed in the transaction.
    let admin = strom_client::Admin::new(
        strom_client::Properties::default().set("bootstrap.servers", &bootstrap),
    )
    .expect("admin");
    let offsets = rt
        .block_on(admin.fetch_offsets("strom-txn-group", None))
        .expect("fetch offsets");
    assert_eq!(
        offsets.get(&("txn-in".to_string(), 0)),
        Some(&42),
        "committed offsets: {offsets:?}"
    );
}

/// A broker that stopped answering (SIGSTOP) holds up only its own partitions: records for
/// partitions led by the other brokers are delivered at once, and the stopped broker's records
/// follow once it runs again.
#[test]
fn a_stopped_broker_holds_up_only_its_own_partitions() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.create_topic("spread", 6, 1, &[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = strom_client::Client::new(&cluster.bootstrap()).expect("client");
    let leaders: Vec<i32> = rt.block_on(async {
        let md = client
            .metadata(Some(vec!["spread".into()]))
            .await
            .expect("metadata");
        md.topic("spread")
            .expect("topic")
            .partitions
            .iter()
            .map(|p| p.leader)
            .collect()
    });
    let stopped = leaders[0];
    assert!(
        leaders.iter().any(|&l| l != stopped),
        "every partition on broker {stopped}: {leaders:?}"
    );
    let bootstrap = cluster.bootstrap_without(stopped);
    let p = rt.block_on(async {
        let p = producer(&bootstrap, &[("request.timeout.ms", "30000")]);
        // The producer id first: a broker hands it out from a block the metadata quorum
        // allocates, which may wait for a new quorum leader if the stopped broker led it.
        let running = leaders.iter().position(|&l| l != stopped).unwrap_or(0);
        p.send(Record::new("spread", value(0)).partition(running as i32))
            .await
            .expect("send")
            .await
            .expect("first record");
        p
    });
    signal(cluster.node(stopped), libc::SIGSTOP);
    let result = rt.block_on(async {
        let mut futures = Vec::new();
        for (partition, leader) in leaders.iter().enumerate() {
            for n in 0..100u64 {
                let rec = Record::new("spread", value(n)).partition(partition as i32);
                futures.push((*leader, p.send(rec).await.expect("send")));
            }
        }
        let started = Instant::now();
        let mut held = Vec::new();
        for (leader, f) in futures {
            if leader == stopped {
                held.push(f);
                continue;
            }
            tokio::time::timeout(Duration::from_secs(10), f)
                .await
                .expect("delivered while another broker is stopped")
                .expect("delivered");
        }
        let others = started.elapsed();
        (p, held, others)
    });
    let (p, held, others) = result;
    signal(cluster.node(stopped), libc::SIGCONT);
    eprintln!("records of the running brokers delivered in {others:?}");
    rt.block_on(async {
        for f in held {
            tokio::time::timeout(Duration::from_secs(60), f)
                .await
                .expect("delivered after SIGCONT")
                .expect("delivered");
        }
        p.close().await.expect("close");
    });
}

/// librdkafka's mock cluster refuses produce requests with retriable errors (a moved leader,
/// too few replicas, a timeout, a dropped connection) and moves every partition's leader
/// mid-run: every record is still written once, in order, at the offset its future returned.
///
/// The mock checks sequence numbers only for transactional producers, so pipelined retries are
/// tested with a transactional producer (one transaction around the whole run); the plain
/// idempotent producer runs with one request in flight, where order is the client's alone.
fn chaos_on_the_mock_cluster(transactional: bool) {
    use rdkafka::types::RDKafkaApiKey;
    use rdkafka::types::RDKafkaRespErr::*;
    const RECORDS: u64 = 20_000;
    const PARTITIONS: i32 = 4;
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic("chaos", PARTITIONS, 3)
        .expect("mock topic");
    let bootstrap = mock.bootstrap_servers();
    let injected = [
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR__TRANSPORT,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR__TRANSPORT,
        RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
    ];
    let mut props = vec![("compression.type", "snappy"), ("retry.backoff.ms", "20")];
    if transactional {
        props.push(("transactional.id", "chaos"));
    } else {
        props.push(("max.in.flight.requests.per.connection", "1"));
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (deliveries, stats) = rt.block_on(async {
        let p = producer(&bootstrap, &props);
        if transactional {
            p.init_transactions().await.expect("init_transactions");
            p.begin_transaction().await.expect("begin");
        }
        let mut futures = Vec::with_capacity(RECORDS as usize);
        for n in 0..RECORDS {
            if n == 2_000 {
                mock.request_errors(RDKafkaApiKey::Produce, &injected);
            }
            if n == RECORDS / 2 {
                for partition in 0..PARTITIONS {
                    let leader = 1 + (partition + 1) % 3;
                    mock.partition_leader("chaos", partition, Some(leader))
                        .expect("move leader");
                }
            }
            futures.push(p.send(Record::new("chaos", value(n))).await.expect("send"));
        }
        if transactional {
            p.commit_transaction().await.expect("commit");
        }
        let mut out = Vec::with_capacity(futures.len());
        for f in futures {
            out.push(f.await);
        }
        p.close().await.expect("close");
        (out, p.stats())
    });
    eprintln!("{stats:?}");
    assert!(
        stats.retries >= injected.len() as u64,
        "fewer retries than injected errors: {stats:?}"
    );
    let log = read_back(&bootstrap, "chaos", PARTITIONS, RECORDS as usize);
    verify(&log, &deliveries, true);
}

#[test]
fn injected_errors_and_moved_leaders_on_the_mock_cluster_transactional() {
    chaos_on_the_mock_cluster(true);
}

#[test]
fn injected_errors_and_moved_leaders_on_the_mock_cluster_one_in_flight() {
    chaos_on_the_mock_cluster(false);
}

/// Keys, headers (a null one included), explicit timestamps and explicit partitions arrive as
/// sent.
#[test]
fn keys_headers_and_timestamps_round_trip() {
    use rdkafka::message::Headers;
    let strom = Strom::start(&[]);
    create_topic(&strom, "fields", 2);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sent = rt.block_on(async {
        let p = producer(&strom.bootstrap(), &[("compression.type", "gzip")]);
        let mut futures = Vec::new();
        for n in 0..100u64 {
            let mut rec = Record::new("fields", value(n))
                .key(format!("key-{n}"))
                .header("n", n.to_string())
                .timestamp(1_700_000_000_000 + n as i64)
                .partition((n % 2) as i32);
            rec.headers.push(("empty".into(), None));
            futures.push(p.send(rec).await.expect("send"));
        }
        let mut out = Vec::new();
        for f in futures {
            out.push(f.await.expect("delivered"));
        }
        p.close().await.expect("close");
        out
    });
    let consumer: BaseConsumer = consumer_config(&strom.bootstrap())
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset("fields", p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 100 && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("consume");
        let n = number_of(m.payload().expect("value"));
        assert_eq!(m.key(), Some(format!("key-{n}").as_bytes()));
        assert_eq!(m.partition(), (n % 2) as i32);
        assert_eq!(
            (m.partition(), m.offset()),
            (sent[n as usize].partition, sent[n as usize].offset)
        );
        assert_eq!(
            m.timestamp().to_millis(),
            Some(1_700_000_000_000 + n as i64)
        );
        let h = m.headers().expect("headers");
        assert_eq!(h.count(), 2);
        assert_eq!(h.get(0).key, "n");
        assert_eq!(h.get(0).value, Some(n.to_string().as_bytes()));
        assert_eq!(h.get(1).key, "empty");
        assert_eq!(h.get(1).value, None);
        seen += 1;
    }
    assert_eq!(seen, 100);
}

/// Not a check but a measurement (run with `--ignored --nocapture`): 200,000 records of 100
/// bytes to 6 partitions of one broker, idempotent, acks=all, linger.ms=5, batch.size=65536,
/// lz4, with strom's producer and with librdkafka, one after the other.
#[test]
#[ignore]
fn throughput_next_to_librdkafka() {
    const RECORDS: u64 = 200_000;
    let strom = Strom::start(&[]);
    create_topic(&strom, "ours", 6);
    create_topic(&strom, "theirs", 6);
    let body = payload(7, 100);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    rt.block_on(async {
        let p = producer(&strom.bootstrap(), &[("compression.type", "lz4")]);
        let mut futures = Vec::with_capacity(RECORDS as usize);
        for _ in 0..RECORDS {
            futures.push(
                p.send(Record::new("ours", body.clone()))
                    .await
                    .expect("send"),
            );
        }
        for f in futures {
            f.await.expect("delivered");
        }
        p.close().await.expect("close");
        eprintln!("strom producer: {:?}", p.stats());
    });
    let ours = started.elapsed();
    let rdk: BaseProducer = client_config(&strom.bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "65536")
        .set("compression.codec", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("rdkafka producer");
    let started = Instant::now();
    for _ in 0..RECORDS {
        strom_e2e::send_queued(&rdk, BaseRecord::<(), _>::to("theirs").payload(&body[..]));
    }
    rdk.flush(Duration::from_secs(120)).expect("flush");
    let theirs = started.elapsed();
    let rate = |d: Duration| RECORDS as f64 / d.as_secs_f64();
    eprintln!(
        "strom producer {ours:.2?} ({:.0}/s), librdkafka {theirs:.2?} ({:.0}/s)",
        rate(ours),
        rate(theirs)
    );
}

/// `send_offsets_to_transaction` follows the group coordinator: TxnOffsetCommit answered
/// NOT_COORDINATOR and then COORDINATOR_NOT_AVAILABLE (injected on librdkafka's mock cluster,
/// whose group coordinator moves meanwhile) finds the coordinator again and succeeds there. The
/// mock answers NOT_COORDINATOR itself to a TxnOffsetCommit sent to another broker than the
/// group's coordinator; it validates transactional offsets but does not store them, so they are
/// not read back here (tests/tests/transactions.rs reads them back from strom).
#[test]
fn transactional_offsets_follow_a_moved_group_coordinator() {
    use rdkafka::mocking::MockCoordinator;
    use rdkafka::types::RDKafkaApiKey;
    use rdkafka::types::RDKafkaRespErr::*;
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic("txn-moved", 1, 3).expect("mock topic");
    mock.coordinator(MockCoordinator::Group("moved-group".into()), 1)
        .expect("coordinator");
    let bootstrap = mock.bootstrap_servers();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let p = producer(
            &bootstrap,
            &[
                ("transactional.id", "moved-txn"),
                ("retry.backoff.ms", "20"),
            ],
        );
        p.init_transactions().await.expect("init_transactions");
        p.begin_transaction().await.expect("begin");
        p.send(Record::new("txn-moved", "x"))
            .await
            .expect("send")
            .await
            .expect("delivered");
        mock.coordinator(MockCoordinator::Group("moved-group".into()), 2)
            .expect("move coordinator");
        mock.request_errors(
            RDKafkaApiKey::TxnOffsetCommit,
            &[
                RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            ],
        );
        p.send_offsets_to_transaction(
            &[("txn-moved".to_string(), 0, 7)],
            &GroupMetadata::new("moved-group"),
        )
        .await
        .expect("offsets sent after the coordinator moved");
        p.commit_transaction().await.expect("commit");
        p.close().await.expect("close");
    });
}
