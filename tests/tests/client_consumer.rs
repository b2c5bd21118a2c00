//! strom's own consumer (`strom_client::consumer`) end to end: records written by librdkafka
//! are read back by hand-assigned consumers and by consumer groups under both group protocols,
//! against the real strom binary and, so that the consumer is not tuned to strom, against
//! librdkafka's mock cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use strom_client::Properties;
use strom_client::consumer::{Consumer, RebalanceListener, TopicPartition};
use strom_e2e::{Strom, client_config};

/// Broker settings that keep group tests quick.
const FAST_GROUPS: &[&str] = &[
    "group.initial.rebalance.delay.ms=0",
    "group.consumer.heartbeat.interval.ms=300",
    "group.consumer.session.timeout.ms=10000",
];

fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
        let r = admin
            .create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .unwrap();
        assert!(r[0].is_ok(), "{:?}", r[0]);
    });
}

/// Writes records `from..to` to `topic`, record n to partition n % partitions, key and value
/// "topic:n".
fn produce(bootstrap: &str, topic: &str, partitions: i32, from: u64, to: u64) {
    let p: BaseProducer = client_config(bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for n in from..to {
        let v = format!("{topic}:{n}");
        let rec = BaseRecord::to(topic)
            .partition((n % partitions as u64) as i32)
            .key(&v)
            .payload(&v);
        strom_e2e::send_queued(&p, rec);
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

fn props(bootstrap: &str, pairs: &[(&str, &str)]) -> Properties {
    let mut p = Properties::default()
        .set("bootstrap.servers", bootstrap)
        .set("auto.offset.reset", "earliest");
    for (k, v) in pairs {
        p = p.set(k, v);
    }
    p
}

fn tps(topic: &str, partitions: i32) -> Vec<TopicPartition> {
    (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect()
}

/// Polls until `want` records arrived or `within` passed; returns (topic, partition, offset,
/// value) of each.
async fn read_n(
    c: &mut Consumer,
    want: usize,
    within: Duration,
) -> Vec<(String, i32, i64, String)> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        for r in c.poll(Duration::from_millis(200)).await.unwrap() {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            out.push((r.topic, r.partition, r.offset, v));
        }
    }
    out
}

/// Checks that `got` holds records 0..n of `topic`, each once, in offset order per partition.
fn check_all_once(got: &[(String, i32, i64, String)], topic: &str, partitions: i32, n: u64) {
    let values: Vec<&str> = got.iter().map(|r| r.3.as_str()).collect();
    let distinct: BTreeSet<&str> = values.iter().copied().collect();
    assert_eq!(values.len(), distinct.len(), "duplicates in {values:?}");
    for i in 0..n {
        assert!(
            distinct.contains(format!("{topic}:{i}").as_str()),
            "record {i} missing"
        );
    }
    for p in 0..partitions {
        let offsets: Vec<i64> = got.iter().filter(|r| r.1 == p).map(|r| r.2).collect();
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, expected, "partition {p} out of order");
    }
}

async fn assign_poll_seek_pause(bootstrap: &str, topic: &str, extra: &[(&str, &str)]) {
    const N: u64 = 300;
    let mut c = Consumer::new(props(bootstrap, extra)).unwrap();
    c.assign(&tps(topic, 3)).unwrap();
    let got = read_n(&mut c, N as usize, Duration::from_secs(30)).await;
    check_all_once(&got, topic, 3, N);
    // Nothing more arrives.
    assert!(
        read_n(&mut c, 1, Duration::from_millis(800))
            .await
            .is_empty()
    );
    let p0 = TopicPartition::new(topic, 0);
    assert_eq!(c.position(&p0).await.unwrap(), 100);

    // seek: partition 0 again from offset 95.
    c.seek(&p0, 95).unwrap();
    let again = read_n(&mut c, 5, Duration::from_secs(10)).await;
    assert_eq!(
        again.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>(),
        (95..100).map(|o| (0, o)).collect::<Vec<_>>()
    );

    // pause: records of a paused partition wait until it is resumed.
    c.seek_to_beginning(std::slice::from_ref(&p0))
        .await
        .unwrap();
    c.pause(std::slice::from_ref(&p0)).unwrap();
    assert!(
        read_n(&mut c, 1, Duration::from_millis(800))
            .await
            .is_empty()
    );
    c.resume(std::slice::from_ref(&p0)).unwrap();
    let resumed = read_n(&mut c, 100, Duration::from_secs(10)).await;
    assert_eq!(resumed.len(), 100);
    assert!(resumed.iter().all(|r| r.1 == 0));

    // seek_to_end, then the stream sees only what is written next.
    c.seek_to_end(&tps(topic, 3)).await.unwrap();
    let bootstrap2 = bootstrap.to_string();
    let topic2 = topic.to_string();
    tokio::task::spawn_blocking(move || produce(&bootstrap2, &topic2, 3, N, N + 3))
        .await
        .unwrap();
    let mut stream = c.stream();
    let mut tail = BTreeSet::new();
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("stream record in time")
            .unwrap();
        tail.insert(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
    }
    let want: BTreeSet<String> = (N..N + 3).map(|n| format!("{topic}:{n}")).collect();
    assert_eq!(tail, want);
    c.close().await.unwrap();
}

#[test]
fn assign_and_poll_read_everything() {
    let strom = Strom::start(&[]);
    let b = strom.bootstrap();
    create_topic(&b, "manual", 3);
    produce(&b, "manual", 3, 0, 300);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(assign_poll_seek_pause(
        &b,
        "manual",
        &[("max.poll.records", "7")],
    ));
}

#[test]
fn out_of_range_positions_are_reset_and_unknown_properties_refused() {
    let strom = Strom::start(&[]);
    let b = strom.bootstrap();
    create_topic(&b, "oor", 1);
    produce(&b, "oor", 1, 0, 10);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = Consumer::new(props(&b, &[])).unwrap();
        let tp = TopicPartition::new("oor", 0);
        c.assign(std::slice::from_ref(&tp)).unwrap();
        c.seek(&tp, 1_000).unwrap();
        // Out of range: auto.offset.reset=earliest starts over.
        let got = read_n(&mut c, 10, Duration::from_secs(15)).await;
        assert_eq!(got.len(), 10);
        assert_eq!(got[0].2, 0);

        let mut none = Consumer::new(props(&b, &[("auto.offset.reset", "none")])).unwrap();
        none.assign(std::slice::from_ref(&tp)).unwrap();
        none.seek(&tp, 1_000).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut failed = None;
        while failed.is_none() && Instant::now() < deadline {
            if let Err(e) = none.poll(Duration::from_millis(200)).await {
                failed = Some(e.to_string());
            }
        }
        let e = failed.expect("poll fails with auto.offset.reset=none");
        assert!(e.contains("OFFSET_OUT_OF_RANGE"), "{e}");
    });
    let e = Consumer::new(props(&b, &[("fetch.max.wait", "10")]))
        .err()
        .expect("unknown property refused")
        .to_string();
    assert!(e.contains("fetch.max.wait"), "{e}");
}

#[test]
fn read_committed_skips_aborted_transactions() {
    let strom = Strom::start(&[]);
    let b = strom.bootstrap();
    create_topic(&b, "txn", 1);
    let p: BaseProducer = client_config(&b)
        .set("transactional.id", "consumer-e2e")
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(30)).unwrap();
    let send = |v: String| {
        strom_e2e::send_queued(&p, BaseRecord::to("txn").partition(0).key(&v).payload(&v));
    };
    p.begin_transaction().unwrap();
    for i in 0..5 {
        send(format!("committed-a{i}"));
    }
    p.commit_transaction(Duration::from_secs(30)).unwrap();
    p.begin_transaction().unwrap();
    for i in 0..10 {
        send(format!("aborted-{i}"));
    }
    p.flush(Duration::from_secs(30)).unwrap();
    p.abort_transaction(Duration::from_secs(30)).unwrap();
    p.begin_transaction().unwrap();
    for i in 0..5 {
        send(format!("committed-b{i}"));
    }
    p.commit_transaction(Duration::from_secs(30)).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tp = TopicPartition::new("txn", 0);
        let read_all = |level: &'static str| {
            let b = b.clone();
            let tp = tp.clone();
            async move {
                let mut c = Consumer::new(props(&b, &[("isolation.level", level)])).unwrap();
                c.assign(std::slice::from_ref(&tp)).unwrap();
                let mut values = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(20);
                // Until the position passes the last commit marker (offset 22).
                while Instant::now() < deadline && c.position(&tp).await.unwrap() < 23 {
                    for r in c.poll(Duration::from_millis(200)).await.unwrap() {
                        values.push(
                            String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                                .into_owned(),
                        );
                    }
                }
                assert!(
                    c.position(&tp).await.unwrap() >= 23,
                    "did not reach the end"
                );
                values
            }
        };
        let committed = read_all("read_committed").await;
        let want: Vec<String> = (0..5)
            .map(|i| format!("committed-a{i}"))
            .chain((0..5).map(|i| format!("committed-b{i}")))
            .collect();
        assert_eq!(committed, want);
        let uncommitted = read_all("read_uncommitted").await;
        assert_eq!(uncommitted.len(), 20, "{uncommitted:?}");
        assert!(uncommitted.iter().any(|v| v.starts_with("aborted-")));
    });

    // An open transaction: under read_committed the end is the last stable offset (23), where
    // the open transaction starts; under read_uncommitted it is the high watermark.
    p.begin_transaction().unwrap();
    for i in 0..3 {
        send(format!("open-{i}"));
    }
    p.flush(Duration::from_secs(30)).unwrap();
    rt.block_on(async {
        let tp = TopicPartition::new("txn", 0);
        for (level, end) in [("read_committed", 23), ("read_uncommitted", 26)] {
            let mut c = Consumer::new(props(&b, &[("isolation.level", level)])).unwrap();
            c.assign(std::slice::from_ref(&tp)).unwrap();
            c.seek_to_end(std::slice::from_ref(&tp)).await.unwrap();
            assert_eq!(c.position(&tp).await.unwrap(), end, "end under {level}");
        }
    });
    p.abort_transaction(Duration::from_secs(30)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// groups

#[derive(Debug, Clone)]
enum Event {
    Assigned,
    Revoked,
    Lost,
}

type EventLog = Arc<Mutex<Vec<(Instant, String, Event, TopicPartition)>>>;

struct Recorder {
    member: String,
    log: EventLog,
}

impl Recorder {
    fn push(&self, e: Event, tps: &[TopicPartition]) {
        let mut log = self.log.lock().unwrap();
        let now = Instant::now();
        for tp in tps {
            log.push((now, self.member.clone(), e.clone(), tp.clone()));
        }
    }
}

impl RebalanceListener for Recorder {
    fn on_assigned(&mut self, tps: &[TopicPartition]) {
        self.push(Event::Assigned, tps);
    }
    fn on_revoked(&mut self, tps: &[TopicPartition]) {
        self.push(Event::Revoked, tps);
    }
    fn on_lost(&mut self, tps: &[TopicPartition]) {
        self.push(Event::Lost, tps);
    }
}

/// (topic, partition, offset) of every record processed by any member.
type Processed = Arc<Mutex<BTreeSet<(String, i32, i64)>>>;

/// A group member polling on its own task until `stop` is set; then it closes (committing and
/// leaving).
fn spawn_member(
    rt: &tokio::runtime::Runtime,
    name: &str,
    mut props: Properties,
    topics: &[&str],
    log: EventLog,
    processed: Processed,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<(), String>> {
    props = props.set("client.id", name);
    let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let name = name.to_string();
    rt.spawn(async move {
        let mut c = Consumer::new(props).map_err(|e| e.to_string())?;
        c.set_rebalance_listener(Box::new(Recorder {
            member: name.clone(),
            log,
        }));
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        c.subscribe(&names).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let records = c.poll(Duration::from_millis(100)).await.map_err(|e| {
                eprintln!("member {name}: poll failed: {e}");
                format!("{name}: {e}")
            })?;
            let assigned: BTreeSet<TopicPartition> = c.assignment().into_iter().collect();
            if std::env::var("DEBUG_MEMBERS").is_ok() {
                eprintln!("{name}: {} records, assigned {:?}", records.len(), assigned);
            }
            let mut p = processed.lock().unwrap();
            for r in records {
                let tp = TopicPartition::new(&r.topic, r.partition);
                if !assigned.contains(&tp) {
                    return Err(format!(
                        "{name} got a record of {tp}, which it does not own"
                    ));
                }
                p.insert((r.topic, r.partition, r.offset));
            }
        }
        c.close().await.map_err(|e| format!("{name} close: {e}"))
    })
}

/// No partition is owned by two members at once: replaying the callbacks in time order, a
/// partition is assigned only to a member after its previous owner revoked or lost it.
fn check_exclusive_ownership(log: &EventLog) {
    let mut events = log.lock().unwrap().clone();
    events.sort_by_key(|e| e.0);
    let mut owner: HashMap<TopicPartition, String> = HashMap::new();
    for (_, member, event, tp) in &events {
        match event {
            Event::Assigned => {
                if let Some(o) = owner.get(tp) {
                    panic!("{tp} assigned to {member} while {o} owned it; events: {events:?}");
                }
                owner.insert(tp.clone(), member.clone());
            }
            Event::Revoked | Event::Lost => {
                assert_eq!(
                    owner.get(tp),
                    Some(member),
                    "{member} gave up {tp} it did not own"
                );
                owner.remove(tp);
            }
        }
    }
}

/// c gave its partitions up when it left; d got some, taken from a or b; with `incremental`,
/// a and b kept some of theirs through d's arrival.
fn check_rebalances(log: &EventLog, d_start: Instant, stop_at: Instant, incremental: bool) {
    let events = log.lock().unwrap().clone();
    let revoked = |m: &str| {
        events
            .iter()
            .any(|e| e.1 == m && matches!(e.2, Event::Revoked))
    };
    assert!(revoked("c"), "c did not give its partitions up: {events:?}");
    assert!(
        events
            .iter()
            .any(|e| e.1 == "d" && matches!(e.2, Event::Assigned)),
        "d got nothing: {events:?}"
    );
    for m in ["a", "b"] {
        let owned_before: BTreeSet<&TopicPartition> = {
            let mut owned = BTreeSet::new();
            for e in events.iter().filter(|e| e.1 == m && e.0 < d_start) {
                match e.2 {
                    Event::Assigned => owned.insert(&e.3),
                    _ => owned.remove(&e.3),
                };
            }
            owned
        };
        let given_up: BTreeSet<&TopicPartition> = events
            .iter()
            .filter(|e| e.1 == m && e.0 >= d_start && e.0 < stop_at)
            .filter(|e| !matches!(e.2, Event::Assigned))
            .map(|e| &e.3)
            .collect();
        if incremental {
            assert!(
                owned_before.iter().any(|tp| !given_up.contains(tp)),
                "{m} gave up all of {owned_before:?} when d joined: {events:?}"
            );
        }
    }
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three members read three topics; one leaves and another joins half way. Every record is
/// processed, committed offsets reach the end, and no partition has two owners at once.
/// With `incremental`, members that stay keep some of their partitions when another joins.
fn group_scenario(
    bootstrap: &str,
    group: &str,
    member_props: &[(&str, &str)],
    topics_made: bool,
    incremental: bool,
) {
    const TOPICS: [&str; 3] = ["ga", "gb", "gc"];
    const PARTITIONS: i32 = 3;
    const HALF: u64 = 150;
    if !topics_made {
        for t in TOPICS {
            create_topic(bootstrap, t, PARTITIONS);
        }
    }
    for t in TOPICS {
        produce(bootstrap, t, PARTITIONS, 0, HALF);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let log: EventLog = Arc::default();
    let processed: Processed = Arc::default();
    let mut common = vec![
        ("group.id", group),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "300"),
        ("auto.commit.interval.ms", "300"),
    ];
    common.extend_from_slice(member_props);
    let member = |name: &str, stop: &Arc<AtomicBool>| {
        spawn_member(
            &rt,
            name,
            props(bootstrap, &common),
            &TOPICS,
            log.clone(),
            processed.clone(),
            stop.clone(),
        )
    };
    let stops: Vec<Arc<AtomicBool>> = (0..4).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let a = member("a", &stops[0]);
    let b = member("b", &stops[1]);
    let c = member("c", &stops[2]);
    let count = |p: &Processed| p.lock().unwrap().len() as u64;
    let failed = |hs: &[&tokio::task::JoinHandle<Result<(), String>>]| {
        assert!(
            !hs.iter().any(|h| h.is_finished()),
            "a member stopped early; processed {}",
            processed.lock().unwrap().len()
        );
    };
    wait_until("the first half", Duration::from_secs(60), || {
        failed(&[&a, &b, &c]);
        count(&processed) >= 3 * HALF
    });
    // Every member got a share once the group settled.
    wait_until("three owners", Duration::from_secs(30), || {
        let events = log.lock().unwrap();
        let members: BTreeSet<&str> = events.iter().map(|e| e.1.as_str()).collect();
        members.len() == 3
    });
    stops[2].store(true, Ordering::SeqCst);
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), c).await })
        .expect("c closes in time")
        .unwrap()
        .unwrap();
    let d_start = Instant::now();
    let d = member("d", &stops[3]);
    for t in TOPICS {
        produce(bootstrap, t, PARTITIONS, HALF, 2 * HALF);
    }
    wait_until("every record", Duration::from_secs(90), || {
        failed(&[&a, &b, &d]);
        count(&processed) >= 3 * 2 * HALF
    });
    // d takes part.
    wait_until("d assigned", Duration::from_secs(30), || {
        log.lock().unwrap().iter().any(|e| e.1 == "d")
    });
    let stop_at = Instant::now();
    for s in &stops {
        s.store(true, Ordering::SeqCst);
    }
    for h in [a, b, d] {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), h).await })
            .expect("member closes in time")
            .unwrap()
            .unwrap();
    }
    // Every record processed.
    let p = processed.lock().unwrap();
    for t in TOPICS {
        for part in 0..PARTITIONS {
            let per = (2 * HALF) / PARTITIONS as u64;
            for o in 0..per as i64 {
                assert!(
                    p.contains(&(t.to_string(), part, o)),
                    "{t}-{part}@{o} not processed"
                );
            }
        }
    }
    check_exclusive_ownership(&log);
    check_rebalances(&log, d_start, stop_at, incremental);
    // Committed offsets reach the end.
    rt.block_on(async {
        let mut c = Consumer::new(props(bootstrap, &[("group.id", group)])).unwrap();
        let all: Vec<TopicPartition> = TOPICS.iter().flat_map(|t| tps(t, PARTITIONS)).collect();
        let committed: BTreeMap<TopicPartition, i64> = c.committed(&all).await.unwrap();
        for tp in &all {
            assert_eq!(
                committed.get(tp),
                Some(&((2 * HALF / PARTITIONS as u64) as i64)),
                "committed offset of {tp}"
            );
        }
    });
}

#[test]
fn group_consumer_protocol_shares_partitions() {
    let strom = Strom::start(FAST_GROUPS);
    group_scenario(
        &strom.bootstrap(),
        "g-consumer",
        &[("group.protocol", "consumer")],
        false,
        true,
    );
}

#[test]
fn group_classic_cooperative_sticky_shares_partitions() {
    let strom = Strom::start(FAST_GROUPS);
    group_scenario(
        &strom.bootstrap(),
        "g-classic-coop",
        &[(
            "partition.assignment.strategy",
            "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
        )],
        false,
        true,
    );
}

#[test]
fn group_classic_range_shares_partitions() {
    let strom = Strom::start(FAST_GROUPS);
    group_scenario(
        &strom.bootstrap(),
        "g-classic-range",
        &[("partition.assignment.strategy", "range")],
        false,
        false,
    );
}

// ---------------------------------------------------------------------------------------------
// librdkafka's mock cluster

#[test]
fn mock_cluster_assign_and_poll() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let b = mock.bootstrap_servers();
    mock.create_topic("mock-manual", 3, 1).unwrap();
    produce(&b, "mock-manual", 3, 0, 300);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = Consumer::new(props(&b, &[])).unwrap();
        c.assign(&tps("mock-manual", 3)).unwrap();
        let got = read_n(&mut c, 300, Duration::from_secs(30)).await;
        check_all_once(&got, "mock-manual", 3, 300);
        c.close().await.unwrap();
    });
}

#[test]
fn mock_cluster_classic_group() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let b = mock.bootstrap_servers();
    for t in ["ga", "gb", "gc"] {
        mock.create_topic(t, 3, 1).unwrap();
    }
    group_scenario(
        &b,
        "g-mock",
        &[("partition.assignment.strategy", "cooperative-sticky")],
        true,
        true,
    );
}

// ---------------------------------------------------------------------------------------------
// leader changes, static membership, pattern subscriptions

/// Leader epochs of each partition of `topic`: (leader, partition) pairs by partition.
fn leaders(bootstrap: &str, topic: &str) -> Vec<i32> {
    let producer: BaseProducer = client_config(bootstrap).create().unwrap();
    let md = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let t = md.topics().iter().find(|t| t.name() == topic).unwrap();
    let mut out: Vec<(i32, i32)> = t
        .partitions()
        .iter()
        .map(|p| (p.id(), p.leader()))
        .collect();
    out.sort();
    out.into_iter().map(|(_, l)| l).collect()
}

#[test]
fn reading_follows_a_leader_change() {
    let mut cluster = strom_e2e::Cluster::start(
        3,
        &[
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=300",
            "replica.lag.time.max.ms=5000",
            "replica.fetch.wait.max.ms=200",
        ],
    );
    let all = cluster.bootstrap();
    cluster.create_topic("moving", 1, 3, &["min.insync.replicas=1"]);
    produce(&all, "moving", 1, 0, 100);
    cluster.wait_in_sync("moving", 3, Duration::from_secs(30));
    let old = leaders(&all, "moving")[0];
    assert!(old > 0, "no leader");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut c = Consumer::new(props(&all, &[("retry.backoff.ms", "50")])).unwrap();
    rt.block_on(async {
        c.assign(&tps("moving", 1)).unwrap();
        let got = read_n(&mut c, 100, Duration::from_secs(30)).await;
        check_all_once(&got, "moving", 1, 100);
    });
    cluster.node(old).kill9();
    let rest = cluster.bootstrap_without(old);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = leaders(&rest, "moving")[0];
        if now > 0 && now != old {
            break;
        }
        assert!(Instant::now() < deadline, "no new leader");
        std::thread::sleep(Duration::from_millis(200));
    }
    produce(&rest, "moving", 1, 100, 200);
    rt.block_on(async {
        let got = read_n(&mut c, 100, Duration::from_secs(60)).await;
        let values: Vec<String> = got.iter().map(|r| r.3.clone()).collect();
        let want: Vec<String> = (100..200).map(|n| format!("moving:{n}")).collect();
        assert_eq!(values, want, "records after the leader change");
        assert_eq!(got.first().map(|r| r.2), Some(100));
    });
}

#[test]
#[ignore = "flaky: in about one CI run of three the classic group rebalances when the static member rejoins (s2 sees it); cause not found yet, see issue 17's note. The consumer-protocol variant runs."]
fn static_members_come_back_without_a_rebalance() {
    static_members(&[("partition.assignment.strategy", "range")]);
}

#[test]
fn static_members_come_back_under_the_consumer_protocol() {
    static_members(&[("group.protocol", "consumer")]);
}

fn static_members(protocol: &[(&str, &str)]) {
    let strom = Strom::start(FAST_GROUPS);
    let b = strom.bootstrap();
    create_topic(&b, "static", 4);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log: EventLog = Arc::default();
    type Owned = Arc<Mutex<Vec<TopicPartition>>>;
    // Each member polls on its own task (a join waits for the other members to join too).
    let member = |instance: &str, owned: Owned, stop: Arc<AtomicBool>| {
        let mut settings = vec![
            ("group.id", "g-static"),
            ("group.instance.id", instance),
            ("session.timeout.ms", "20000"),
            ("heartbeat.interval.ms", "300"),
        ];
        settings.extend_from_slice(protocol);
        let props = props(&b, &settings);
        let recorder = Recorder {
            member: instance.to_string(),
            log: log.clone(),
        };
        rt.spawn(async move {
            let mut c = Consumer::new(props).unwrap();
            c.set_rebalance_listener(Box::new(recorder));
            c.subscribe(&["static"]).unwrap();
            let deadline = Instant::now() + Duration::from_secs(90);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                c.poll(Duration::from_millis(50)).await.unwrap();
                *owned.lock().unwrap() = c.assignment();
            }
            c.close().await.unwrap();
        })
    };
    let settled = |a: &Owned, b: &Owned| {
        let (a, b) = (a.lock().unwrap().len(), b.lock().unwrap().len());
        a > 0 && b > 0 && a + b == 4
    };
    let (o1, o2): (Owned, Owned) = (Arc::default(), Arc::default());
    let (stop1, stop2) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let h1 = member("s1", o1.clone(), stop1.clone());
    let h2 = member("s2", o2.clone(), stop2.clone());
    wait_until("two members sharing", Duration::from_secs(30), || {
        settled(&o1, &o2)
    });
    // The group may take a second round right after the first join (a member that joined
    // while the first assignment was being given out): wait until the rebalance log has been
    // quiet for 3 s before taking the baseline.
    let quiet_since = |log: &EventLog| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = log.lock().unwrap().len();
        loop {
            std::thread::sleep(Duration::from_secs(3));
            let now = log.lock().unwrap().len();
            if now == seen {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the group kept rebalancing for 30 s"
            );
            seen = now;
        }
    };
    quiet_since(&log);
    assert!(settled(&o1, &o2));
    let before = o1.lock().unwrap().clone();
    let s2_events = log.lock().unwrap().iter().filter(|e| e.1 == "s2").count();
    // s1 goes away (a static member does not leave the group) and comes back.
    stop1.store(true, Ordering::SeqCst);
    rt.block_on(h1).unwrap();
    let o1b: Owned = Arc::default();
    let stop1b = Arc::new(AtomicBool::new(false));
    let h1b = member("s1", o1b.clone(), stop1b.clone());
    wait_until("s1 back", Duration::from_secs(30), || settled(&o1b, &o2));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        *o1b.lock().unwrap(),
        before,
        "s1 came back to other partitions"
    );
    let s2_after = log.lock().unwrap().iter().filter(|e| e.1 == "s2").count();
    assert_eq!(
        s2_events,
        s2_after,
        "s2 saw a rebalance: {:?}",
        log.lock().unwrap()
    );
    stop1b.store(true, Ordering::SeqCst);
    stop2.store(true, Ordering::SeqCst);
    rt.block_on(h1b).unwrap();
    rt.block_on(h2).unwrap();
}

#[test]
fn pattern_subscription_picks_up_new_topics() {
    let strom = Strom::start(FAST_GROUPS);
    let b = strom.bootstrap();
    create_topic(&b, "pat-one", 2);
    create_topic(&b, "other", 1);
    produce(&b, "pat-one", 2, 0, 20);
    produce(&b, "other", 1, 0, 5);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = Consumer::new(props(
            &b,
            &[
                ("group.id", "g-pattern"),
                ("metadata.max.age.ms", "500"),
                ("heartbeat.interval.ms", "300"),
            ],
        ))
        .unwrap();
        c.subscribe_pattern("pat-.*").unwrap();
        let got = read_n(&mut c, 20, Duration::from_secs(30)).await;
        check_all_once(&got, "pat-one", 2, 20);
        let b2 = b.clone();
        tokio::task::spawn_blocking(move || {
            create_topic(&b2, "pat-two", 1);
            produce(&b2, "pat-two", 1, 0, 7);
        })
        .await
        .unwrap();
        let got = read_n(&mut c, 7, Duration::from_secs(30)).await;
        check_all_once(&got, "pat-two", 1, 7);
        assert!(
            read_n(&mut c, 1, Duration::from_millis(800))
                .await
                .is_empty()
        );
        c.close().await.unwrap();
    });
}
