//! strom-client against a three-node strom cluster with replication factor 3 while partition
//! leaders are SIGKILLed and restarted in the middle of the run:
//!
//! - an idempotent producer writes numbered records: none twice, none missing, and every
//!   acknowledged record at the offset it was given (read back by librdkafka);
//! - three group members read them, under the consumer protocol and under classic
//!   cooperative-sticky, while one member leaves and another joins: every record is processed,
//!   the committed offsets reach the end, and no partition has two owners at once (from the
//!   rebalance listeners' timestamped callbacks);
//! - a transactional consume-transform-produce worker (a process of its own) is SIGKILLed twice
//!   and still writes every input exactly once as read_committed sees it.
//!
//! `STROM_CLIENT_CLUSTER_RECORDS` sets the number of records of the first two (default
//! 500,000), `STROM_CLIENT_CLUSTER_EOS_RECORDS` that of the third (default 100,000).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use strom_client::Properties;
use strom_client::consumer::{Consumer, RebalanceListener, TopicPartition};
use strom_client::producer::{Producer, Record};
use strom_e2e::{Cluster, client_config, consumer_config};

/// Brokers of the tests: heartbeats and fencing fast enough that a failover takes seconds, and
/// groups that rebalance without delay.
const PROPS: &[&str] = &[
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=300",
    "replica.lag.time.max.ms=5000",
    "replica.fetch.wait.max.ms=200",
    "group.initial.rebalance.delay.ms=0",
    "group.consumer.heartbeat.interval.ms=500",
    "group.consumer.session.timeout.ms=10000",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms=500",
    "offsets.topic.replication.factor=3",
    "offsets.topic.num.partitions=3",
    "transaction.state.log.replication.factor=3",
    "transaction.state.log.num.partitions=3",
    "transaction.state.log.min.isr=2",
];

const PARTITIONS: i32 = 6;

fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The leader of `partition` of `topic` as the cluster reports it (-1: none).
fn leader(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    let producer: BaseProducer = client_config(bootstrap).create().unwrap();
    let md = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let t = md.topics().iter().find(|t| t.name() == topic).unwrap();
    t.partitions()
        .iter()
        .find(|p| p.id() == partition)
        .map_or(-1, |p| p.leader())
}

/// SIGKILLs the leader of `partition` of `topic`, keeps it down for `down`, starts it again
/// and waits until every partition is fully replicated again; returns the broker's id.
fn kill_leader(cluster: &mut Cluster, topic: &str, partition: i32, down: Duration) -> i32 {
    let bootstrap = cluster.bootstrap();
    let id = leader(&bootstrap, topic, partition);
    assert!(id > 0, "{topic}-{partition} has no leader");
    cluster.node(id).kill9();
    eprintln!("killed broker {id}, the leader of {topic}-{partition}");
    std::thread::sleep(down);
    cluster.node(id).restart();
    cluster.wait_in_sync(topic, 3, Duration::from_secs(90));
    eprintln!("broker {id} is back in sync");
    id
}

/// The high watermark of each partition of `topic`.
fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = consumer_config(bootstrap).create().unwrap();
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

/// The offsets `group` committed for each partition of `topic` (-1: none), as librdkafka reads
/// them.
fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = consumer_config(bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    match c.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(list) => (0..partitions)
            .map(
                |p| match list.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => -1,
                },
            )
            .collect(),
        Err(_) => vec![-1; partitions as usize],
    }
}

/// Every record of `topic` read from the beginning by librdkafka: (partition, offset) → the
/// record's key as a number. Fails on a key seen twice or a partition out of order.
fn read_back(bootstrap: &str, topic: &str, partitions: i32, n: u64) -> BTreeMap<(i32, i64), u64> {
    let consumer: BaseConsumer = consumer_config(bootstrap)
        .set("group.id", "read-back")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut at = BTreeMap::new();
    let mut last: HashMap<i32, u64> = HashMap::new();
    let mut seen = vec![0u8; n as usize];
    let deadline = Instant::now() + Duration::from_secs(180);
    while (at.len() as u64) < n && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.unwrap();
        let k: u64 = std::str::from_utf8(m.key().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        if let Some(prev) = last.insert(m.partition(), k) {
            assert!(
                k > prev,
                "partition {} out of order: {prev} then {k}",
                m.partition()
            );
        }
        assert!(k < n, "record {k} was never sent");
        seen[k as usize] += 1;
        at.insert((m.partition(), m.offset()), k);
    }
    // Anything past what was sent would show within a short wait.
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            panic!(
                "a record past the {n} sent: {}/{}",
                m.partition(),
                m.offset()
            );
        }
    }
    let dups: Vec<usize> = (0..n as usize).filter(|&i| seen[i] > 1).take(10).collect();
    let missing: Vec<usize> = (0..n as usize).filter(|&i| seen[i] == 0).take(10).collect();
    assert!(dups.is_empty(), "written more than once: {dups:?}");
    assert!(missing.is_empty(), "never written: {missing:?}");
    at
}

/// Writes records 0..n with strom-client's idempotent producer (record k to partition
/// k % partitions, key k in decimal, an 8-byte value) while the leaders of two partitions are
/// SIGKILLed and restarted; returns each acknowledgement as (partition, offset, k).
fn produce_through_leader_kills(
    cluster: &mut Cluster,
    topic: &str,
    n: u64,
) -> Vec<(i32, i64, u64)> {
    let rt = runtime();
    let bootstrap = cluster.bootstrap();
    let acked = Arc::new(AtomicU64::new(0));
    let producer = rt.block_on(async {
        Producer::new(
            Properties::default()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", "all")
                .set("linger.ms", "5")
                .set("delivery.timeout.ms", "180000")
                .set("request.timeout.ms", "10000")
                // A small buffer paces the sends, so that the kills land while records are
                // still being handed over.
                .set("buffer.memory", "1048576"),
        )
        .unwrap()
    });
    let producer = Arc::new(producer);
    let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
    let sending = {
        let producer = producer.clone();
        let topic = topic.to_string();
        rt.spawn(async move {
            for k in 0..n {
                let record = Record::new(&topic, k.to_le_bytes().to_vec())
                    .key(k.to_string().into_bytes())
                    .partition((k % PARTITIONS as u64) as i32);
                let delivery = producer.send(record).await.expect("send");
                tx.send((k, delivery)).await.unwrap();
            }
        })
    };
    let collecting = {
        let acked = acked.clone();
        rt.spawn(async move {
            let mut out = Vec::new();
            let mut errors = Vec::new();
            while let Some((k, delivery)) = rx.recv().await {
                match delivery.await {
                    Ok(d) => out.push((d.partition, d.offset, k)),
                    Err(e) => errors.push(format!("record {k}: {e}")),
                }
                acked.fetch_add(1, Ordering::Relaxed);
            }
            (out, errors)
        })
    };
    // SIGKILL the leader of partition 0 at a third; the second stays down longer than
    // broker.session.timeout.ms so that the controller fences it.
    for (at, partition, down) in [(n / 3, 0, 1500), (2 * n / 3, 1, 4500)] {
        let deadline = Instant::now() + Duration::from_secs(300);
        while acked.load(Ordering::Relaxed) < at {
            assert!(
                Instant::now() < deadline,
                "only {} records acknowledged",
                acked.load(Ordering::Relaxed)
            );
            assert!(!collecting.is_finished(), "deliveries ended early");
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} acknowledged", acked.load(Ordering::Relaxed));
        kill_leader(cluster, topic, partition, Duration::from_millis(down));
    }
    rt.block_on(sending).unwrap();
    let (acks, errors) = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(240), collecting)
            .await
            .expect("deliveries did not finish")
            .unwrap()
    });
    assert!(
        errors.is_empty(),
        "{} delivery errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    rt.block_on(producer.close()).unwrap();
    let stats = producer.stats();
    eprintln!("producer: {stats:?}");
    acks
}

/// One callback of a member's rebalance listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Assigned,
    Revoked,
    Lost,
}

/// Every callback of every member, in the order they happened (the log is appended under its
/// lock, so its order is the order in time).
type ChangeLog = Arc<Mutex<Vec<(Instant, usize, TopicPartition, Change)>>>;

/// Writes the callbacks into the shared log and keeps the member's owned set.
struct Tracker {
    member: usize,
    log: ChangeLog,
    owned: Arc<Mutex<BTreeSet<TopicPartition>>>,
}

impl Tracker {
    fn note(&self, partitions: &[TopicPartition], change: Change) {
        let mut log = self.log.lock().unwrap();
        let mut owned = self.owned.lock().unwrap();
        for tp in partitions {
            match change {
                Change::Assigned => owned.insert(tp.clone()),
                Change::Revoked | Change::Lost => owned.remove(tp),
            };
            log.push((Instant::now(), self.member, tp.clone(), change));
        }
    }
}

impl RebalanceListener for Tracker {
    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        self.note(partitions, Change::Assigned);
    }
    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        self.note(partitions, Change::Revoked);
    }
    fn on_lost(&mut self, partitions: &[TopicPartition]) {
        self.note(partitions, Change::Lost);
    }
}

/// What the members of one group share with the test.
struct GroupRun {
    processed: Vec<AtomicU8>,
    count: AtomicU64,
    log: ChangeLog,
    /// Records a member was handed for a partition its listener did not hold.
    unowned: Mutex<Vec<String>>,
    errors: Mutex<Vec<String>>,
    /// Records per second each member processes at most (so that the run lasts long enough
    /// for the membership changes and the kill to land in its middle).
    rate: u64,
}

/// One group member: polls and processes (marks) records until `stop`, then closes.
async fn member(
    id: usize,
    props: Properties,
    topic: String,
    run: Arc<GroupRun>,
    stop: Arc<AtomicBool>,
) {
    let owned = Arc::new(Mutex::new(BTreeSet::new()));
    let mut consumer = Consumer::new(props).unwrap();
    consumer.set_rebalance_listener(Box::new(Tracker {
        member: id,
        log: run.log.clone(),
        owned: owned.clone(),
    }));
    consumer.subscribe(&[&topic]).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let batch = match consumer.poll(Duration::from_millis(200)).await {
            Ok(b) => b,
            Err(e) => {
                run.errors
                    .lock()
                    .unwrap()
                    .push(format!("member {id}: poll: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        {
            let owned = owned.lock().unwrap();
            for r in &batch {
                let tp = TopicPartition::new(&r.topic, r.partition);
                if !owned.contains(&tp) {
                    run.unowned
                        .lock()
                        .unwrap()
                        .push(format!("member {id}: {tp} offset {}", r.offset));
                }
                let k: u64 = std::str::from_utf8(r.key.as_deref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                run.processed[k as usize].fetch_add(1, Ordering::Relaxed);
            }
        }
        run.count.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if !batch.is_empty() {
            let pause = Duration::from_secs_f64(batch.len() as f64 / run.rate as f64);
            tokio::time::sleep(pause).await;
        }
    }
    if let Err(e) = consumer.close().await {
        run.errors
            .lock()
            .unwrap()
            .push(format!("member {id}: close: {e}"));
    }
}

/// Checks the listeners' log: a partition assigned to a member while another member holds it
/// (assigned and not yet revoked or lost) is two owners at once.
fn check_single_owner(log: &[(Instant, usize, TopicPartition, Change)]) {
    let mut owner: BTreeMap<&TopicPartition, (usize, Instant)> = BTreeMap::new();
    let mut overlaps = Vec::new();
    for (at, member, tp, change) in log {
        match change {
            Change::Assigned => {
                if let Some((other, since)) = owner.get(tp)
                    && other != member
                {
                    overlaps.push(format!(
                        "{tp}: assigned to member {member} while member {other} held it since \
                         {:?} before",
                        at.duration_since(*since)
                    ));
                }
                owner.insert(tp, (*member, *at));
            }
            Change::Revoked | Change::Lost => {
                if owner.get(tp).is_some_and(|(m, _)| m == member) {
                    owner.remove(tp);
                }
            }
        }
    }
    assert!(overlaps.is_empty(), "two owners at once: {overlaps:#?}");
    assert!(
        owner.is_empty(),
        "partitions still held after every member closed: {owner:?}"
    );
}

/// Three members of `group` read `topic` (records 0..n); at a quarter one leaves, at
/// 45 % another joins, at 60 % the leader of partition 2 is SIGKILLed and restarted. Checks
/// that every record was processed, that the committed offsets reach the end and that no
/// partition had two owners at once.
fn group_through_changes(
    cluster: &mut Cluster,
    topic: &str,
    n: u64,
    group: &str,
    extra: &[(&str, &str)],
) {
    let rt = runtime();
    let bootstrap = cluster.bootstrap();
    let mut props = Properties::default()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("max.poll.records", "500");
    for (k, v) in extra {
        props = props.set(k, v);
    }
    let run = Arc::new(GroupRun {
        processed: (0..n).map(|_| AtomicU8::new(0)).collect(),
        count: AtomicU64::new(0),
        log: Arc::default(),
        unowned: Mutex::default(),
        errors: Mutex::default(),
        // About 30 s for the whole topic with three members.
        rate: (n / 90).max(100),
    });
    let mut members = Vec::new();
    let start = |id: usize| {
        let stop = Arc::new(AtomicBool::new(false));
        let task = rt.spawn(member(
            id,
            props.clone(),
            topic.to_string(),
            run.clone(),
            stop.clone(),
        ));
        (stop, task)
    };
    for id in 0..3 {
        members.push(start(id));
    }
    let wait_for = |fraction: f64| {
        let deadline = Instant::now() + Duration::from_secs(300);
        while (run.count.load(Ordering::Relaxed) as f64) < fraction * n as f64 {
            assert!(
                Instant::now() < deadline,
                "{group}: only {} records processed; errors: {:?}",
                run.count.load(Ordering::Relaxed),
                run.errors.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{group}: {} records processed",
            run.count.load(Ordering::Relaxed)
        );
    };
    wait_for(0.25);
    members[0].0.store(true, Ordering::Relaxed);
    eprintln!("{group}: member 0 leaves");
    wait_for(0.45);
    members.push(start(3));
    eprintln!("{group}: member 3 joins");
    wait_for(0.6);
    kill_leader(cluster, topic, 2, Duration::from_millis(1500));

    // Every record processed and the commits at the end.
    let ends = end_offsets(&bootstrap, topic, PARTITIONS);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = run.processed.iter().all(|p| p.load(Ordering::Relaxed) > 0);
        if done && committed(&bootstrap, group, topic, PARTITIONS) == ends {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{group}: {} of {n} records processed, committed {:?} of {ends:?}; errors: {:?}",
            run.processed
                .iter()
                .filter(|p| p.load(Ordering::Relaxed) > 0)
                .count(),
            committed(&bootstrap, group, topic, PARTITIONS),
            run.errors.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (stop, _) in &members {
        stop.store(true, Ordering::Relaxed);
    }
    for (_, task) in members {
        rt.block_on(task).unwrap();
    }
    assert_eq!(committed(&bootstrap, group, topic, PARTITIONS), ends);
    let twice = run
        .processed
        .iter()
        .filter(|p| p.load(Ordering::Relaxed) > 1)
        .count();
    eprintln!(
        "{group}: {} records processed, {twice} of them more than once",
        run.count.load(Ordering::Relaxed)
    );
    let errors = run.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{group}: errors: {errors:?}");
    let unowned = run.unowned.lock().unwrap().clone();
    assert!(
        unowned.is_empty(),
        "{group}: records of partitions the member did not hold: {:?}",
        &unowned[..unowned.len().min(10)]
    );
    let log = run.log.lock().unwrap().clone();
    eprintln!("{group}: {} listener callbacks", log.len());
    check_single_owner(&log);
    // Every member that stayed until the end held partitions at some point.
    for id in 1..4 {
        assert!(
            log.iter()
                .any(|(_, m, _, c)| *m == id && *c == Change::Assigned),
            "{group}: member {id} was never assigned anything"
        );
    }
}

#[test]
fn idempotent_producer_and_groups_through_leader_kills() {
    let n = env_count("STROM_CLIENT_CLUSTER_RECORDS", 500_000);
    let mut cluster = Cluster::start(3, PROPS);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("numbered", PARTITIONS, 3, &["min.insync.replicas=2"]);

    let started = Instant::now();
    let acks = produce_through_leader_kills(&mut cluster, "numbered", n);
    eprintln!("{n} records produced in {:?}", started.elapsed());
    assert_eq!(acks.len() as u64, n);
    cluster.wait_in_sync("numbered", 3, Duration::from_secs(60));
    let at = read_back(&bootstrap, "numbered", PARTITIONS, n);
    assert_eq!(at.len() as u64, n);
    for (p, o, k) in &acks {
        assert_eq!(*p, (*k % PARTITIONS as u64) as i32, "record {k}");
        assert_eq!(at.get(&(*p, *o)), Some(k), "acknowledged {k} at {p}/{o}");
    }

    let started = Instant::now();
    group_through_changes(
        &mut cluster,
        "numbered",
        n,
        "kip848",
        &[("group.protocol", "consumer")],
    );
    eprintln!("consumer protocol group done in {:?}", started.elapsed());
    let started = Instant::now();
    group_through_changes(
        &mut cluster,
        "numbered",
        n,
        "classic-cooperative",
        &[
            ("group.protocol", "classic"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "500"),
        ],
    );
    eprintln!("classic group done in {:?}", started.elapsed());
}

/// Ignored: the worker now gets past the cross-coordinator offset commits (the group's
/// coordinator no longer looks the transactional id up in its own state) and past the first
/// worker SIGKILL, but it still exits on an error after the output partition's leader is killed
/// and restarted: AddPartitionsToTxn then answers NOT_COORDINATOR for a minute from the broker
/// FindCoordinator names (a disagreement after the coordinator fails over, not understood
/// yet). The worker also stops on any error instead of aborting and resuming from the
/// committed offsets; see issue 17's note.
#[test]
#[ignore = "the strom-client EOS worker exits on an error after an output leader is killed; under investigation"]
fn transactional_transform_survives_worker_and_leader_kills() {
    const EOS_PARTITIONS: i32 = 4;
    let n = env_count("STROM_CLIENT_CLUSTER_EOS_RECORDS", 100_000);
    let mut cluster = Cluster::start(3, PROPS);
    let bootstrap = cluster.bootstrap();
    cluster.create_topic("eos-in", EOS_PARTITIONS, 3, &["min.insync.replicas=2"]);
    cluster.create_topic("eos-out", EOS_PARTITIONS, 3, &["min.insync.replicas=2"]);

    // The input, keyed k<n % 1000>, value n.
    let rt = runtime();
    rt.block_on(async {
        let p = Producer::new(
            Properties::default()
                .set("bootstrap.servers", &bootstrap)
                .set("linger.ms", "10"),
        )
        .unwrap();
        let mut deliveries = Vec::with_capacity(n as usize);
        for k in 0..n {
            let record = Record::new("eos-in", k.to_string().into_bytes())
                .key(format!("k{}", k % 1000).into_bytes());
            deliveries.push(p.send(record).await.unwrap());
        }
        for d in deliveries {
            d.await.unwrap();
        }
        p.close().await.unwrap();
    });

    let worker = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_eos-client-transform"))
            .args([
                bootstrap.as_str(),
                "eos-in",
                "eos-out",
                "eos-group",
                "eos-tx",
                &EOS_PARTITIONS.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn eos-client-transform")
    };
    let committed_total = || -> i64 {
        committed(&bootstrap, "eos-group", "eos-in", EOS_PARTITIONS)
            .iter()
            .map(|&o| o.max(0))
            .sum()
    };
    let wait_committed = |child: &mut std::process::Child, threshold: i64| {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            assert!(
                Instant::now() < deadline,
                "worker made no progress to {threshold}"
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!("worker exited early: {status}");
            }
            if committed_total() >= threshold {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Kill the worker at a fifth and at a half; between them the leader of an output
    // partition is killed under the running worker.
    let mut child = worker();
    wait_committed(&mut child, n as i64 / 5);
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("worker killed at {}", committed_total());
    let mut child = worker();
    wait_committed(&mut child, n as i64 / 3);
    kill_leader(&mut cluster, "eos-out", 0, Duration::from_millis(1500));
    wait_committed(&mut child, n as i64 / 2);
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!("worker killed at {}", committed_total());
    let mut child = worker();
    let deadline = Instant::now() + Duration::from_secs(300);
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

    // read_committed sees every input once, and each key's values in input order.
    let consumer: BaseConsumer = consumer_config(&bootstrap)
        .set("group.id", "eos-check")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..EOS_PARTITIONS {
        tpl.add_partition_offset("eos-out", p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut seen = vec![0u32; n as usize];
    let mut total = 0u64;
    let mut last_by_key: HashMap<String, u64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline && (total < n || quiet_since.elapsed() < Duration::from_secs(2))
    {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        quiet_since = Instant::now();
        let key = String::from_utf8_lossy(m.key().unwrap()).into_owned();
        let value = std::str::from_utf8(m.payload().unwrap()).unwrap();
        let k: u64 = value
            .strip_suffix(":t")
            .expect("transformed value")
            .parse()
            .unwrap();
        seen[k as usize] += 1;
        total += 1;
        if let Some(prev) = last_by_key.insert(key.clone(), k) {
            assert!(prev < k, "key {key}: {k} after {prev}");
        }
    }
    let dups: Vec<usize> = (0..n as usize).filter(|&i| seen[i] > 1).take(10).collect();
    let missing: Vec<usize> = (0..n as usize).filter(|&i| seen[i] == 0).take(10).collect();
    assert!(dups.is_empty(), "seen twice by read_committed: {dups:?}");
    assert!(missing.is_empty(), "never seen: {missing:?}");
    assert_eq!(total, n);
}
