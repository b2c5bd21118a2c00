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
use strom_e2e::{AckContext, Acked, Cluster, client_config, consumer_config};

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
    cluster.create_topic("replicated", 3, 3, &["min.insync.replicas=2"]);

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
            cluster.wait_in_sync("replicated", 3, Duration::from_secs(90));
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
    cluster.wait_in_sync("replicated", 3, Duration::from_secs(60));

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
            assert!(
                n > prev,
                "partition {} out of order: {prev} then {n}",
                m.partition()
            );
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

/// Counts acknowledged and failed deliveries.
#[derive(Default, Clone)]
struct Counts(Arc<Mutex<(usize, usize)>>);
impl ClientContext for Counts {}
impl ProducerContext for Counts {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut c = self.0.lock().unwrap();
        match result {
            Ok(_) => c.0 += 1,
            Err(_) => c.1 += 1,
        }
    }
}

/// Sends `count` values `{prefix}-{i}` to partition 0 of `topic` through `bootstrap` only,
/// with `acks` and no retries; returns (acknowledged, failed) once every delivery is decided.
fn produce_some(
    bootstrap: &str,
    topic: &str,
    acks: &str,
    prefix: &str,
    count: usize,
    timeout_ms: u32,
) -> (usize, usize) {
    let counts = Counts::default();
    let producer: ThreadedProducer<Counts> = client_config(bootstrap)
        .set("acks", acks)
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", timeout_ms.to_string())
        .set("request.timeout.ms", timeout_ms.to_string())
        .set("retries", "0")
        .set("linger.ms", "0")
        .create_with_context(counts.clone())
        .unwrap();
    for i in 0..count {
        let value = format!("{prefix}-{i}");
        producer
            .send(BaseRecord::<(), _>::to(topic).partition(0).payload(&value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let _ = producer.flush(Duration::from_millis(u64::from(timeout_ms) + 10_000));
    *counts.0.lock().unwrap()
}

/// The values of partition 0 of `topic`, read from the start through `bootstrap`.
fn read_values(bootstrap: &str, topic: &str, expected: usize) -> Vec<String> {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .set("group.id", "read-values")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < expected && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    // Anything past what is expected would show up within a short wait.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    out
}

#[test]
fn an_isolated_leader_cannot_acknowledge_and_drops_its_divergent_tail_when_healed() {
    let mut props = PROPS.to_vec();
    props.push("fault.injection.enable=true");
    let mut cluster = Cluster::start(3, &props);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("split", 1, 3, &["min.insync.replicas=2"]);
    assert_eq!(
        produce_some(&bootstrap, "split", "all", "before", 100, 10_000),
        (100, 0)
    );

    // Cut the leader off from the other two brokers; clients still reach it.
    let old = partitions(&bootstrap, "split")[0].0;
    let isolated = cluster.node(old).bootstrap();
    let (status, _) = cluster
        .node(old)
        .admin_put("/v1/fault/network", "isolate")
        .unwrap();
    assert_eq!(status, 200);
    // Follower fetches already waiting at the leader finish within replica.fetch.wait.max.ms;
    // after that nothing reaches the followers.
    std::thread::sleep(Duration::from_millis(1000));
    // acks=1 writes land on the isolated leader only: a tail the others never see.
    let (acked, _) = produce_some(&isolated, "split", "1", "divergent", 20, 5_000);
    assert_eq!(acked, 20, "the isolated leader takes acks=1 writes");
    // acks=all writes cannot be acknowledged: its followers no longer fetch.
    let (acked, failed) = produce_some(&isolated, "split", "all", "unacknowledgeable", 10, 4_000);
    assert_eq!(
        (acked, failed),
        (0, 10),
        "an isolated leader acknowledged acks=all writes"
    );

    // The majority fences it and elects a leader among themselves.
    let majority = cluster.bootstrap_without(old);
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        let (leader, _) = partitions(&majority, "split")[0].clone();
        if leader > 0 && leader != old {
            break leader;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader on the majority side"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        produce_some(&majority, "split", "all", "after", 50, 10_000),
        (50, 0)
    );

    // Heal: the old leader learns it was replaced, truncates its tail and catches up.
    let (status, _) = cluster
        .node(old)
        .admin_put("/v1/fault/network", "heal")
        .unwrap();
    assert_eq!(status, 200);
    cluster.wait_in_sync("split", 3, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = log_bytes(cluster.node(old).data_dir(), "split", 0);
        let b = log_bytes(cluster.node(new).data_dir(), "split", 0);
        if a == b {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "old leader's log ({} bytes) never matched the new leader's ({} bytes)",
            a.len(),
            b.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let values = read_values(&bootstrap, "split", 150);
    let expected: Vec<String> = (0..100)
        .map(|i| format!("before-{i}"))
        .chain((0..50).map(|i| format!("after-{i}")))
        .collect();
    let first_difference = values.iter().zip(&expected).position(|(a, b)| a != b);
    assert!(
        values == expected,
        "read {} records, expected {}; first difference at {first_difference:?}: {:?}",
        values.len(),
        expected.len(),
        first_difference.map(|i| (&values[i], &expected[i]))
    );
}

/// Replicas of each partition of `topic`, in partition order.
fn replicas(bootstrap: &str, topic: &str) -> Vec<Vec<i32>> {
    let producer: BaseProducer = client_config(bootstrap).create().unwrap();
    let md = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let t = md.topics().iter().find(|t| t.name() == topic).unwrap();
    let mut out: Vec<(i32, Vec<i32>)> = t
        .partitions()
        .iter()
        .map(|p| (p.id(), p.replicas().to_vec()))
        .collect();
    out.sort();
    out.into_iter().map(|(_, r)| r).collect()
}

#[test]
fn reassignment_moves_replicas_under_load_without_loss_or_duplicates() {
    const N: u64 = 150_000;
    let mut cluster = Cluster::start(4, PROPS);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("moving", 1, 3, &["min.insync.replicas=2"]);
    assert_eq!(replicas(&bootstrap, "moving"), vec![vec![1, 2, 3]]);

    let acked: Acked = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let producer: ThreadedProducer<AckContext> = client_config(&bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create_with_context(AckContext(acked.clone(), errors.clone()))
        .unwrap();
    let plan = cluster.nodes[0].data_dir().join("plan.json");
    std::fs::write(
        &plan,
        r#"{"version":1,"partitions":[{"topic":"moving","partition":0,"replicas":[2,3,4]}]}"#,
    )
    .unwrap();
    let plan = plan.to_str().unwrap().to_string();
    for n in 0..N {
        let key = n.to_string();
        loop {
            match producer.send(
                BaseRecord::to("moving")
                    .partition(0)
                    .key(&key)
                    .payload(&key),
            ) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        if n == N / 3 {
            let (ok, out, err) = cluster.nodes[1].cli(&[
                "partitions",
                "reassign",
                "--execute",
                "--reassignment-json-file",
                &plan,
            ]);
            assert!(ok && out.contains("started"), "{out}{err}");
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, N);

    // The move completes: replicas {2,3,4}, all in sync; broker 1 no longer holds the log.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, _) = cluster.nodes[1].cli(&[
            "partitions",
            "reassign",
            "--verify",
            "--reassignment-json-file",
            &plan,
        ]);
        if ok && out.contains("1 of 1 moves complete") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reassignment never completed: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(replicas(&bootstrap, "moving"), vec![vec![2, 3, 4]]);
    cluster.wait_in_sync("moving", 3, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.nodes[0].data_dir().join("moving-0").exists() {
        assert!(
            Instant::now() < deadline,
            "broker 1 kept the moved partition"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let values = read_values(&bootstrap, "moving", N as usize);
    let numbers: Vec<u64> = values.iter().map(|v| v.parse().unwrap()).collect();
    assert_eq!(
        numbers,
        (0..N).collect::<Vec<_>>(),
        "lost, duplicated or reordered records"
    );
    let logs: Vec<Vec<u8>> = (2..=4)
        .map(|id| log_bytes(cluster.node(id).data_dir(), "moving", 0))
        .collect();
    assert!(logs[0] == logs[1] && logs[1] == logs[2], "replicas differ");
}

#[test]
fn controlled_shutdown_moves_leadership_and_preferred_election_brings_it_back() {
    let mut cluster = Cluster::start(3, PROPS);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("led", 3, 3, &[]);
    assert_eq!(partitions(&bootstrap, "led")[0].0, 1);
    // A clean stop hands leadership over before the process exits.
    assert!(cluster.node(1).stop());
    let others = format!(
        "{},{}",
        cluster.nodes[1].bootstrap(),
        cluster.nodes[2].bootstrap()
    );
    let leaders: Vec<i32> = partitions(&others, "led").iter().map(|p| p.0).collect();
    assert!(
        !leaders.contains(&1) && !leaders.contains(&-1),
        "{leaders:?}"
    );
    cluster.node(1).restart();
    cluster.wait_in_sync("led", 3, Duration::from_secs(60));
    assert_ne!(partitions(&bootstrap, "led")[0].0, 1);
    let (ok, out, err) = cluster.nodes[0].cli(&["leaders", "elect", "--all-topic-partitions"]);
    assert!(ok && out.contains("elected"), "{out}{err}");
    assert_eq!(partitions(&bootstrap, "led")[0].0, 1);

    // New partitions of a replicated topic get three replicas, led by different brokers.
    let (ok, out, err) = cluster.nodes[2].cli(&["topics", "alter", "led", "--partitions", "6"]);
    assert!(ok, "{out}{err}");
    cluster.wait_in_sync("led", 3, Duration::from_secs(30));
    let parts = partitions(&bootstrap, "led");
    assert_eq!(parts.len(), 6);
    let new_leaders: std::collections::BTreeSet<i32> = parts[3..].iter().map(|p| p.0).collect();
    assert_eq!(new_leaders.len(), 3, "{parts:?}");
}

/// Java's `String.hashCode`, as Kafka maps a group to its `__consumer_offsets` partition.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

#[test]
fn committed_offsets_survive_the_loss_of_the_group_coordinator() {
    use rdkafka::consumer::CommitMode;
    let mut props = PROPS.to_vec();
    props.extend([
        "offsets.topic.replication.factor=3",
        "offsets.topic.num.partitions=3",
    ]);
    let mut cluster = Cluster::start(3, &props);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("work", 3, 3, &[]);
    let producer: BaseProducer = client_config(&bootstrap)
        .set("acks", "all")
        .create()
        .unwrap();
    for n in 0..3000u32 {
        let v = n.to_string();
        producer
            .send(
                BaseRecord::<(), _>::to("work")
                    .partition((n % 3) as i32)
                    .payload(&v),
            )
            .unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let group = "survivors";
    let consume = |bootstrap: &str, want: usize| -> Vec<u32> {
        let consumer: BaseConsumer = consumer_config(bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // A member whose leave was lost with the coordinator expires quickly.
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        consumer.subscribe(&["work"]).unwrap();
        let mut got = Vec::new();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < want && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                got.push(
                    std::str::from_utf8(m.payload().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap(),
                );
                next.insert(m.partition(), m.offset() + 1);
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &next {
            tpl.add_partition_offset("work", *p, Offset::Offset(*o))
                .unwrap();
        }
        if !next.is_empty() {
            consumer.commit(&tpl, CommitMode::Sync).unwrap();
        }
        got
    };
    let first = consume(&bootstrap, 1500);
    assert_eq!(first.len(), 1500);

    // The coordinator leads the group's partition of __consumer_offsets; SIGKILL it.
    let partition = (java_hash(group) & 0x7fff_ffff) % 3;
    let coordinator = partitions(&bootstrap, "__consumer_offsets")[partition as usize].0;
    assert!(coordinator > 0);
    cluster.node(coordinator).kill9();
    let rest = cluster.bootstrap_without(coordinator);
    // A new coordinator takes over with the committed offsets: the group resumes after them.
    let second = consume(&rest, 1500);
    let mut all: Vec<u32> = first.iter().chain(&second).copied().collect();
    all.sort_unstable();
    let dups = all.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(dups, 0, "{dups} records read twice");
    assert_eq!(all.len(), 3000, "records never read");
}

/// Values of every partition of `topic` read from the start with `isolation`.
fn read_all_values(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<String> {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .set("group.id", "read-all")
        .set("enable.auto.commit", "false")
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
    let mut idle = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Read until nothing new arrives for 3 s.
    while idle.elapsed() < Duration::from_secs(3) && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            idle = Instant::now();
        }
    }
    out
}

#[test]
fn transactions_span_brokers_and_survive_the_loss_of_their_coordinator() {
    let mut props = PROPS.to_vec();
    props.extend([
        "offsets.topic.replication.factor=3",
        "offsets.topic.num.partitions=3",
        "transaction.state.log.replication.factor=3",
        "transaction.state.log.num.partitions=3",
        "transaction.state.log.min.isr=2",
    ]);
    let mut cluster = Cluster::start(3, &props);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("tx", 3, 3, &["min.insync.replicas=2"]);
    // The three partitions have three different leaders: markers cross brokers.
    let leaders: std::collections::BTreeSet<i32> =
        partitions(&bootstrap, "tx").iter().map(|p| p.0).collect();
    assert_eq!(leaders.len(), 3);

    let id = "spanning";
    let producer =
        |bootstrap: &str| -> ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
            let p: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
                client_config(bootstrap)
                    .set("transactional.id", id)
                    .set("transaction.timeout.ms", "30000")
                    .create()
                    .unwrap();
            p.init_transactions(Duration::from_secs(30)).unwrap();
            p
        };
    let run = |p: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
               txn: usize,
               commit: bool| {
        p.begin_transaction().unwrap();
        for i in 0..30 {
            let v = format!("txn{txn}-{i}");
            loop {
                match p.send(BaseRecord::<(), _>::to("tx").partition(i % 3).payload(&v)) {
                    Ok(()) => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
        // Delivered before the end, so that aborted records are in the logs too.
        p.flush(Duration::from_secs(30)).unwrap();
        if commit {
            p.commit_transaction(Duration::from_secs(30)).unwrap();
        } else {
            p.abort_transaction(Duration::from_secs(30)).unwrap();
        }
    };
    let first = producer(&bootstrap);
    for txn in 0..6 {
        run(&first, txn, txn % 2 == 0);
    }
    drop(first);

    // The coordinator leads the id's partition of __transaction_state; SIGKILL it.
    let partition = (java_hash(id) & 0x7fff_ffff) % 3;
    let coordinator = partitions(&bootstrap, "__transaction_state")[partition as usize].0;
    assert!(coordinator > 0);
    cluster.node(coordinator).kill9();
    let rest = cluster.bootstrap_without(coordinator);
    let second = producer(&rest);
    run(&second, 6, true);
    drop(second);

    let committed = read_all_values(&rest, "tx", 3, "read_committed");
    let mut expected: Vec<String> = [0, 2, 4, 6]
        .iter()
        .flat_map(|t| (0..30).map(move |i| format!("txn{t}-{i}")))
        .collect();
    let mut got = committed.clone();
    got.sort();
    expected.sort();
    assert_eq!(
        got.len(),
        expected.len(),
        "read_committed saw {} records",
        got.len()
    );
    assert!(
        got == expected,
        "read_committed saw records of aborted transactions"
    );
    let all = read_all_values(&rest, "tx", 3, "read_uncommitted");
    assert_eq!(all.len(), 7 * 30);
}

#[test]
fn controllers_and_brokers_in_separate_processes() {
    // Three controller-only nodes (1-3) hold the metadata quorum; three brokers (4-6) follow
    // it as observers and hold the data.
    let mut cluster = Cluster::start_roles(3, 3, PROPS);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("split-roles", 3, 3, &["min.insync.replicas=2"]);
    for r in replicas(&bootstrap, "split-roles") {
        let mut r = r.clone();
        r.sort_unstable();
        assert_eq!(r, vec![4, 5, 6], "controllers hold no replicas");
    }
    let write = |bootstrap: &str, prefix: &str| {
        let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> =
            client_config(bootstrap)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("message.timeout.ms", "60000")
                .create()
                .unwrap();
        for i in 0..300 {
            let v = format!("{prefix}-{i}");
            producer
                .send(
                    BaseRecord::<(), _>::to("split-roles")
                        .partition(i % 3)
                        .payload(&v),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(60)).unwrap();
    };
    write(&bootstrap, "a");

    // The active controller goes away: another takes over, and still fails over a broker.
    let producer: BaseProducer = client_config(&bootstrap).create().unwrap();
    let controller = producer
        .client()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap()
        .orig_broker_id();
    drop(producer);
    let _ = controller;
    let (ok, out, _) = cluster.nodes[3].cli(&["cluster", "describe", "--output", "json"]);
    let active: i32 = if ok {
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["controller_id"]
            .as_i64()
            .unwrap_or(1) as i32
    } else {
        1
    };
    assert!((1..=3).contains(&active), "controller {active}");
    cluster.node(active).kill9();
    let leader = partitions(&bootstrap, "split-roles")[0].0;
    cluster.node(leader).kill9();
    let rest: Vec<String> = (4..=6)
        .filter(|id| *id != leader)
        .map(|id| cluster.nodes[id as usize - 1].bootstrap())
        .collect();
    let rest = rest.join(",");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let parts = partitions(&rest, "split-roles");
        if parts.iter().all(|(l, _)| *l > 0 && *l != leader) {
            break;
        }
        assert!(Instant::now() < deadline, "no failover: {parts:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    write(&rest, "b");
    let values = read_all_values(&rest, "split-roles", 3, "read_uncommitted");
    assert_eq!(values.len(), 600);
}
