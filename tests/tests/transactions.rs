//! Idempotent and transactional producers (librdkafka) against the real broker: retries after
//! broker crashes write nothing twice, aborted and abandoned transactions stay invisible to
//! read_committed consumers, a second producer with the same transactional id fences the
//! first, and all of it survives a SIGKILL of the broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use strom_e2e::{AckContext, Acked, Strom, client_config, consumer_config};

fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let res = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap();
    res[0].as_ref().unwrap();
}

/// Every record of `topic` as (partition, offset, key, value), read with the given isolation
/// level until `expected` records came or `within` passed.
fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
    expected: usize,
    within: Duration,
) -> Vec<(i32, i64, String, String)> {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && out.len() < expected {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            out.push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    // Anything beyond `expected` would be a bug too: drain a little longer.
    let extra_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < extra_until {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            out.push((
                m.partition(),
                m.offset(),
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    out
}

fn txn_producer(bootstrap: &str, id: &str, timeout_ms: u32) -> BaseProducer {
    let p: BaseProducer = client_config(bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(30)).unwrap();
    p
}

fn send(p: &BaseProducer, topic: &str, key: &str, value: &str) {
    loop {
        match p.send(BaseRecord::to(topic).key(key).payload(value)) {
            Ok(()) => return,
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                _,
            )) => {
                p.poll(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("send failed: {e}"),
        }
    }
}

#[test]
fn committed_aborted_and_abandoned_transactions() {
    let strom = Strom::start(&[
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=200",
        "group.initial.rebalance.delay.ms=0",
    ]);
    let bootstrap = strom.bootstrap();
    create_topic(&bootstrap, "txn", 3);

    let p1 = txn_producer(&bootstrap, "tx-a", 60_000);
    p1.begin_transaction().unwrap();
    for i in 0..100 {
        send(
            &p1,
            "txn",
            &format!("k{}", i % 10),
            &format!("committed-{i}"),
        );
    }
    p1.commit_transaction(Duration::from_secs(30)).unwrap();

    p1.begin_transaction().unwrap();
    for i in 0..50 {
        send(&p1, "txn", &format!("k{}", i % 10), &format!("aborted-{i}"));
    }
    p1.flush(Duration::from_secs(30)).unwrap();
    p1.abort_transaction(Duration::from_secs(30)).unwrap();

    // A second producer opens a transaction and disappears without ending it.
    let p2 = txn_producer(&bootstrap, "tx-b", 2_000);
    p2.begin_transaction().unwrap();
    for i in 0..30 {
        send(
            &p2,
            "txn",
            &format!("k{}", i % 10),
            &format!("abandoned-{i}"),
        );
    }
    p2.flush(Duration::from_secs(30)).unwrap();
    std::mem::forget(p2);

    p1.begin_transaction().unwrap();
    for i in 0..20 {
        send(&p1, "txn", &format!("k{}", i % 10), &format!("late-{i}"));
    }
    p1.commit_transaction(Duration::from_secs(30)).unwrap();

    // read_committed: the committed 120 only, and only once the abandoned transaction was
    // aborted by its timeout (it holds back the last stable offset until then).
    let committed = read_topic(
        &bootstrap,
        "txn",
        3,
        "read_committed",
        120,
        Duration::from_secs(60),
    );
    let values: Vec<&str> = committed.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(committed.len(), 120, "read_committed saw {values:?}");
    assert!(
        values
            .iter()
            .all(|v| v.starts_with("committed-") || v.starts_with("late-")),
        "{values:?}"
    );
    // Per key, in production order.
    let mut by_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for r in &committed {
        by_key.entry(r.2.as_str()).or_default().push(r.3.as_str());
    }
    for (k, vs) in by_key {
        let n: usize = k[1..].parse().unwrap();
        let expected: Vec<String> = (0..100)
            .filter(|i| i % 10 == n)
            .map(|i| format!("committed-{i}"))
            .chain((0..20).filter(|i| i % 10 == n).map(|i| format!("late-{i}")))
            .collect();
        assert_eq!(vs, expected, "order of key {k}");
    }

    // read_uncommitted sees all 200 data records; the markers are not records.
    let all = read_topic(
        &bootstrap,
        "txn",
        3,
        "read_uncommitted",
        200,
        Duration::from_secs(30),
    );
    assert_eq!(all.len(), 200);
    assert_eq!(
        all.iter().filter(|r| r.3.starts_with("abandoned-")).count(),
        30
    );
    drop(p1);
}

#[test]
fn a_second_producer_fences_the_first() {
    let strom = Strom::start(&["group.initial.rebalance.delay.ms=0"]);
    let bootstrap = strom.bootstrap();
    create_topic(&bootstrap, "fence", 2);
    let zombie = txn_producer(&bootstrap, "tx-z", 60_000);
    zombie.begin_transaction().unwrap();
    for i in 0..10 {
        send(&zombie, "fence", "z", &format!("zombie-{i}"));
    }
    zombie.flush(Duration::from_secs(30)).unwrap();

    let fresh = txn_producer(&bootstrap, "tx-z", 60_000);
    fresh.begin_transaction().unwrap();
    for i in 0..10 {
        send(&fresh, "fence", "f", &format!("fresh-{i}"));
    }
    fresh.commit_transaction(Duration::from_secs(30)).unwrap();

    // The zombie can neither commit nor write any more.
    let err = zombie
        .commit_transaction(Duration::from_secs(10))
        .expect_err("the fenced producer must not commit");
    assert!(
        format!("{err:?}").contains("Fenced") || format!("{err:?}").contains("fenced"),
        "{err:?}"
    );
    let committed = read_topic(
        &bootstrap,
        "fence",
        2,
        "read_committed",
        10,
        Duration::from_secs(30),
    );
    let values: Vec<&str> = committed.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(values.len(), 10, "{values:?}");
    assert!(values.iter().all(|v| v.starts_with("fresh-")), "{values:?}");
}

#[test]
fn idempotent_producer_retries_across_broker_crashes_write_once() {
    const N: u64 = 60_000;
    let mut strom = Strom::start(&[]);
    let bootstrap = strom.bootstrap();
    create_topic(&bootstrap, "idem", 3);
    let acked: Acked = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let producer: ThreadedProducer<AckContext> = client_config(&bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "500")
        .set("message.timeout.ms", "120000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create_with_context(AckContext(acked.clone(), errors.clone()))
        .unwrap();
    let mut crashes = 0;
    for n in 0..N {
        let key = n.to_string();
        let value = format!("v{n}");
        loop {
            match producer.send(BaseRecord::to("idem").key(&key).payload(&value)) {
                Ok(()) => break,
                Err((_, _)) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        // Crash the broker twice while batches are in flight.
        if (n == N / 3 || n == 2 * N / 3) && crashes < 2 {
            std::thread::sleep(Duration::from_millis(30));
            strom.kill9();
            std::thread::sleep(Duration::from_millis(300));
            strom.restart();
            crashes += 1;
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        errors.lock().unwrap().is_empty(),
        "delivery errors: {:?}",
        errors.lock().unwrap()
    );
    assert_eq!(acked.len() as u64, N);

    let records = read_topic(
        &bootstrap,
        "idem",
        3,
        "read_uncommitted",
        N as usize,
        Duration::from_secs(120),
    );
    let mut seen = vec![0u32; N as usize];
    let mut at: HashMap<(i32, i64), u64> = HashMap::new();
    for (p, o, k, _) in &records {
        let n: u64 = k.parse().unwrap();
        seen[n as usize] += 1;
        at.insert((*p, *o), n);
    }
    let dups: Vec<usize> = (0..N as usize).filter(|&i| seen[i] > 1).take(10).collect();
    let missing: Vec<usize> = (0..N as usize).filter(|&i| seen[i] == 0).take(10).collect();
    assert!(dups.is_empty(), "written twice: {dups:?}");
    assert!(missing.is_empty(), "missing: {missing:?}");
    // Each acknowledgement names where the record really is.
    for (p, o, n) in acked {
        assert_eq!(at.get(&(p, o)), Some(&n), "ack of {n} at {p}/{o}");
    }
}

/// Sum of the group's committed offsets on `topic` (what the worker has finished).
fn committed_total(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(c) => c
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum(),
        Err(_) => 0,
    }
}

#[test]
fn consume_transform_produce_survives_sigkill_of_the_worker() {
    const N: u64 = 200_000;
    const PARTITIONS: i32 = 4;
    let strom = Strom::start(&[
        "group.initial.rebalance.delay.ms=0",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=500",
    ]);
    let bootstrap = strom.bootstrap();
    create_topic(&bootstrap, "eos-in", PARTITIONS);
    create_topic(&bootstrap, "eos-out", PARTITIONS);
    {
        let producer: BaseProducer = client_config(&bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "10")
            .create()
            .unwrap();
        for n in 0..N {
            send(
                &producer,
                "eos-in",
                &format!("k{}", n % 1000),
                &n.to_string(),
            );
            if n % 10_000 == 0 {
                producer.poll(Duration::ZERO);
            }
        }
        producer.flush(Duration::from_secs(60)).unwrap();
    }

    let worker = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_eos-transform"))
            .args([
                bootstrap.as_str(),
                "eos-in",
                "eos-out",
                "eos-group",
                "eos-tx",
                &PARTITIONS.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn eos-transform")
    };
    // Kill the worker twice once it has committed some progress.
    for threshold in [N as i64 / 5, N as i64 / 2] {
        let mut child = worker();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                Instant::now() < deadline,
                "worker made no progress to {threshold}"
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("worker exited early: {status}");
            }
            if committed_total(&bootstrap, "eos-group", "eos-in", PARTITIONS) >= threshold {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut child = worker();
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("worker did not finish");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "worker failed: {status}");

    let out = read_topic(
        &bootstrap,
        "eos-out",
        PARTITIONS,
        "read_committed",
        N as usize,
        Duration::from_secs(120),
    );
    let mut seen = vec![0u32; N as usize];
    let mut last_by_key: HashMap<String, u64> = HashMap::new();
    for (_, _, key, value) in &out {
        let n: u64 = value
            .strip_suffix(":t")
            .expect("transformed value")
            .parse()
            .unwrap();
        seen[n as usize] += 1;
        if let Some(prev) = last_by_key.insert(key.clone(), n) {
            assert!(prev < n, "key {key}: {n} after {prev}");
        }
    }
    let dups: Vec<usize> = (0..N as usize).filter(|&i| seen[i] > 1).take(10).collect();
    let missing: Vec<usize> = (0..N as usize).filter(|&i| seen[i] == 0).take(10).collect();
    assert!(dups.is_empty(), "seen twice by read_committed: {dups:?}");
    assert!(missing.is_empty(), "never seen: {missing:?}");
    assert_eq!(out.len() as u64, N);
}

fn cli_json(strom: &Strom, args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = strom.cli(args);
    assert!(ok, "strom {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("strom {args:?}: {e}: {out}"))
}

#[test]
fn transaction_and_producer_state_survive_sigkill_and_show_in_the_cli() {
    let mut strom = Strom::start(&["group.initial.rebalance.delay.ms=0"]);
    let bootstrap = strom.bootstrap();
    create_topic(&bootstrap, "state", 1);
    // An idempotent producer writes 3 batches; a transactional one leaves a transaction open.
    let idem: BaseProducer = client_config(&bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for i in 0..3 {
        send(&idem, "state", "i", &format!("idem-{i}"));
        idem.flush(Duration::from_secs(30)).unwrap();
    }
    let txn = txn_producer(&bootstrap, "tx-state", 60_000);
    txn.begin_transaction().unwrap();
    send(&txn, "state", "t", "open-1");
    txn.flush(Duration::from_secs(30)).unwrap();

    let list = cli_json(
        &strom,
        &[
            "transactions",
            "list",
            "--state",
            "Ongoing",
            "--output",
            "json",
        ],
    );
    assert_eq!(list[0]["transactional_id"], "tx-state", "{list}");
    let d = cli_json(
        &strom,
        &["transactions", "describe", "tx-state", "--output", "json"],
    );
    assert_eq!(d["state"], "Ongoing");
    assert_eq!(d["partitions"]["state"], serde_json::json!([0]));
    let pid = d["producer_id"].as_i64().unwrap();
    let epoch = d["producer_epoch"].as_i64().unwrap();
    let producers = cli_json(
        &strom,
        &[
            "producers",
            "describe",
            "--topic",
            "state",
            "--partition",
            "0",
            "--output",
            "json",
        ],
    );
    let producers = producers.as_array().unwrap().clone();
    assert_eq!(producers.len(), 2, "{producers:?}");
    let txn_entry = producers.iter().find(|p| p["producer_id"] == pid).unwrap();
    assert_eq!(txn_entry["current_transaction_start_offset"], 3);
    let idem_entry = producers.iter().find(|p| p["producer_id"] != pid).unwrap();
    assert_eq!(idem_entry["last_sequence"], 2);
    let (ok, table, _) = strom.cli(&["transactions", "describe", "tx-state"]);
    assert!(
        ok && table.contains("Ongoing") && table.contains("STARTED"),
        "{table}"
    );

    // SIGKILL: the open transaction, its producer and the idempotent producer's sequence are
    // all still known after the restart.
    strom.kill9();
    strom.restart();
    let d = cli_json(
        &strom,
        &["transactions", "describe", "tx-state", "--output", "json"],
    );
    assert_eq!(
        (d["state"].as_str(), d["producer_id"].as_i64()),
        (Some("Ongoing"), Some(pid))
    );
    let after = cli_json(
        &strom,
        &[
            "producers",
            "describe",
            "--topic",
            "state",
            "--partition",
            "0",
            "--output",
            "json",
        ],
    );
    assert_eq!(after.as_array().unwrap(), &producers);

    // The still-running transactional producer commits after the crash.
    txn.commit_transaction(Duration::from_secs(30)).unwrap();
    let d = cli_json(
        &strom,
        &["transactions", "describe", "tx-state", "--output", "json"],
    );
    assert_eq!(d["state"], "CompleteCommit");
    assert_eq!(d["producer_epoch"].as_i64(), Some(epoch));
    // The idempotent producer goes on where it was: no duplicate, no gap.
    send(&idem, "state", "i", "idem-3");
    idem.flush(Duration::from_secs(30)).unwrap();
    let records = read_topic(
        &bootstrap,
        "state",
        1,
        "read_committed",
        5,
        Duration::from_secs(30),
    );
    let values: Vec<&str> = records.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(values, ["idem-0", "idem-1", "idem-2", "open-1", "idem-3"]);
    // A new instance of the transactional id gets the next epoch, after a clean restart too.
    assert!(strom.stop());
    strom.restart();
    drop(txn);
    let again = txn_producer(&bootstrap, "tx-state", 60_000);
    let d = cli_json(
        &strom,
        &["transactions", "describe", "tx-state", "--output", "json"],
    );
    assert_eq!(d["producer_id"].as_i64(), Some(pid));
    assert_eq!(d["producer_epoch"].as_i64(), Some(epoch + 1));
    drop(again);
}
