//! A three-broker cluster on loopback: replication, failover under SIGKILL and recovery, driven
//! by librdkafka clients.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use strom_e2e::{Cluster, client_config, consumer_config};

/// Brokers of the tests: heartbeats and fencing fast enough that a failover takes seconds.
const PROPS: &[&str] = &[
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=300",
    "replica.lag.time.max.ms=5000",
    "replica.fetch.wait.max.ms=200",
    "group.initial.rebalance.delay.ms=0",
];

/// (leader, ISR) of each partition of `topic` as the cluster reports it.
fn partitions(bootstrap: &str, topic: &str) -> Vec<(i32, Vec<i32>)> {
    let producer: BaseProducer = client_config(bootstrap).create().unwrap();
    let md = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let t = md.topics().iter().find(|t| t.name() == topic).unwrap();
    let mut out: Vec<(i32, i32, Vec<i32>)> = t
        .partitions()
        .iter()
        .map(|p| (p.id(), p.leader(), p.isr().to_vec()))
        .collect();
    out.sort();
    out.into_iter().map(|(_, l, isr)| (l, isr)).collect()
}

/// Waits until every partition of `topic` has a leader and all `replicas` in its ISR.
fn wait_in_sync(bootstrap: &str, topic: &str, replicas: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let parts = partitions(bootstrap, topic);
        if !parts.is_empty() && parts.iter().all(|(l, isr)| *l >= 0 && isr.len() == replicas) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "partitions of {topic} not in sync: {parts:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

type Acked = Arc<Mutex<Vec<(i32, i64, u64)>>>;
struct AckContext(Acked, Arc<Mutex<Vec<String>>>);
impl ClientContext for AckContext {}
impl ProducerContext for AckContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let n: u64 = std::str::from_utf8(m.key().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                self.0.lock().unwrap().push((m.partition(), m.offset(), n));
            }
            Err((e, _)) => self.1.lock().unwrap().push(e.to_string()),
        }
    }
}

/// The bytes of a partition's log on one broker: its segments in offset order, concatenated.
fn log_bytes(data_dir: &Path, topic: &str, partition: i32) -> Vec<u8> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for s in segments {
        out.extend(std::fs::read(s).unwrap());
    }
    out
}

#[test]
fn acknowledged_writes_survive_sigkill_of_each_leader_in_turn() {
    const N: u64 = 500_000;
    const PARTITIONS: i32 = 3;
    let mut cluster = Cluster::start(3, PROPS);
    let bootstrap = cluster.bootstrap();
    let (ok, out, err) = cluster.nodes[0].cli(&[
        "topics",
        "create",
        "replicated",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
        "--config",
        "min.insync.replicas=2",
    ]);
    assert!(ok, "{out}{err}");
    wait_in_sync(&bootstrap, "replicated", 3, Duration::from_secs(30));

    let acked: Acked = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let producer: ThreadedProducer<AckContext> = client_config(&bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "2000")
        .set("message.timeout.ms", "180000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create_with_context(AckContext(acked.clone(), errors.clone()))
        .unwrap();
    let mut killed = Vec::new();
    for n in 0..N {
        let key = n.to_string();
        let value = format!("value-{n}");
        let partition = (n % PARTITIONS as u64) as i32;
        loop {
            match producer.send(
                BaseRecord::to("replicated")
                    .partition(partition)
                    .key(&key)
                    .payload(&value),
            ) {
                Ok(()) => break,
                Err((_, _)) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        // Kill the leader of partition k with SIGKILL at each quarter, bring it back, and
        // wait until it is in sync again before the next.
        if n > 0 && n % (N / 4) == 0 && killed.len() < 3 {
            let k = killed.len();
            let leader = partitions(&bootstrap, "replicated")[k].0;
            assert!(leader > 0, "partition {k} has no leader");
            cluster.node(leader).kill9();
            killed.push(leader);
            eprintln!("record {n}: killed broker {leader}, the leader of partition {k}");
            // The second stays down longer than broker.session.timeout.ms: the controller
            // fences it; the others come back first and move leadership by registering.
            let down = if k == 1 { 4500 } else { 1500 };
            std::thread::sleep(Duration::from_millis(down));
            cluster.node(leader).restart();
            wait_in_sync(&bootstrap, "replicated", 3, Duration::from_secs(90));
        }
    }
    producer.flush(Duration::from_secs(180)).unwrap();
    assert!(
        errors.lock().unwrap().is_empty(),
        "delivery errors: {:?}",
        &errors.lock().unwrap()[..errors.lock().unwrap().len().min(10)]
    );
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, N);
    eprintln!("{} records acknowledged", acked.len());
    wait_in_sync(&bootstrap, "replicated", 3, Duration::from_secs(60));

    // Every record once, each partition in production order, and every acknowledgement
    // names where the record is.
    let consumer: BaseConsumer = consumer_config(&bootstrap)
        .set("group.id", "verify")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset("replicated", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut at: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    let mut last: BTreeMap<i32, u64> = BTreeMap::new();
    let mut seen = vec![0u8; N as usize];
    let deadline = Instant::now() + Duration::from_secs(180);
    while (at.len() as u64) < N && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.unwrap();
        let n: u64 = std::str::from_utf8(m.key().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        if let Some(prev) = last.insert(m.partition(), n) {
            assert!(n > prev, "partition {} out of order: {prev} then {n}", m.partition());
        }
        seen[n as usize] += 1;
        at.insert((m.partition(), m.offset()), n);
    }
    let dups: Vec<usize> = (0..N as usize).filter(|&i| seen[i] > 1).take(10).collect();
    let missing: Vec<usize> = (0..N as usize).filter(|&i| seen[i] == 0).take(10).collect();
    assert!(dups.is_empty(), "written twice: {dups:?}");
    assert!(missing.is_empty(), "missing: {missing:?}");
    for (p, o, n) in &acked {
        assert_eq!(at.get(&(*p, *o)), Some(n), "ack of {n} at {p}/{o}");
    }

    // Replicas are byte-identical.
    for p in 0..PARTITIONS {
        let logs: Vec<Vec<u8>> = cluster
            .nodes
            .iter()
            .map(|s| log_bytes(s.data_dir(), "replicated", p))
            .collect();
        assert!(!logs[0].is_empty());
        for (i, l) in logs.iter().enumerate().skip(1) {
            assert!(
                *l == logs[0],
                "partition {p}: replica on node {} differs from node 1 ({} vs {} bytes)",
                i + 1,
                l.len(),
                logs[0].len()
            );
        }
    }
    assert_eq!(killed.len(), 3);
}
