//! Consumer groups with librdkafka, under the classic protocol and the consumer protocol
//! (KIP-848, `group.protocol=consumer`): members share a topic's partitions, groups are
//! independent, committed offsets survive restarts and SIGKILL, static members come back
//! without a rebalance.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use strom_e2e::{Strom, client_config};

/// Broker settings that keep group tests quick: no initial rebalance delay.
const FAST_GROUPS: &[&str] = &["group.initial.rebalance.delay.ms=0"];

/// Broker settings for consumer protocol groups: frequent heartbeats, short sessions.
const FAST_CONSUMER_GROUPS: &[&str] = &[
    "group.consumer.heartbeat.interval.ms=300",
    "group.consumer.session.timeout.ms=10000",
];

/// Client setting that selects the consumer protocol (KIP-848).
const CONSUMER_PROTOCOL: (&str, &str) = ("group.protocol", "consumer");

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

fn produce(bootstrap: &str, topic: &str, partitions: i32, count: u64) {
    let p: BaseProducer = client_config(bootstrap)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for n in 0..count {
        let key = n.to_string();
        let rec = BaseRecord::to(topic)
            .partition((n % partitions as u64) as i32)
            .key(&key)
            .payload(&key);
        strom_e2e::send_queued(&p, rec);
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// Ownership events per partition: (consumer, start, end) intervals.
type Ownership = Arc<Mutex<HashMap<i32, Vec<(usize, Instant, Option<Instant>)>>>>;

struct Tracking {
    id: usize,
    owned: Ownership,
    rebalances: Arc<AtomicUsize>,
}

impl ClientContext for Tracking {}
impl ConsumerContext for Tracking {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let now = Instant::now();
            let mut owned = self.owned.lock().unwrap();
            for e in tpl.elements() {
                if let Some(v) = owned.get_mut(&e.partition()) {
                    for iv in v.iter_mut().filter(|iv| iv.0 == self.id && iv.2.is_none()) {
                        iv.2 = Some(now);
                    }
                }
            }
        }
    }
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.rebalances.fetch_add(1, Ordering::SeqCst);
            let now = Instant::now();
            let mut owned = self.owned.lock().unwrap();
            for e in tpl.elements() {
                owned
                    .entry(e.partition())
                    .or_default()
                    .push((self.id, now, None));
            }
        }
    }
}

fn group_consumer(
    bootstrap: &str,
    group: &str,
    id: usize,
    owned: Ownership,
    extra: &[(&str, &str)],
) -> (BaseConsumer<Tracking>, Arc<AtomicUsize>) {
    let rebalances = Arc::new(AtomicUsize::new(0));
    let mut cfg = client_config(bootstrap);
    cfg.set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200");
    if !extra.contains(&CONSUMER_PROTOCOL) {
        // Under the consumer protocol the coordinator sets these.
        cfg.set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500");
    }
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    let c: BaseConsumer<Tracking> = cfg
        .create_with_context(Tracking {
            id,
            owned,
            rebalances: rebalances.clone(),
        })
        .unwrap();
    (c, rebalances)
}

fn committed_total(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> HashMap<i32, i64> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    got.elements()
        .iter()
        .map(|e| {
            (
                e.partition(),
                match e.offset() {
                    Offset::Offset(o) => o,
                    _ => -1,
                },
            )
        })
        .collect()
}

#[test]
fn three_members_share_partitions_and_survive_a_departure() {
    // A short initial delay lets all three members into the first generation.
    share_partitions(&["group.initial.rebalance.delay.ms=2000"], &[]);
}

#[test]
fn consumer_protocol_members_share_partitions_and_survive_a_departure() {
    share_partitions(FAST_CONSUMER_GROUPS, &[CONSUMER_PROTOCOL]);
}

/// Three members read a 6-partition topic of 300,000 records; one leaves mid-way and a new
/// one joins after it. Every record is consumed, the committed offsets reach the log end and
/// no partition is owned by two members at once.
fn share_partitions(broker_props: &[&str], client_extra: &[(&str, &str)]) {
    const TOPIC: &str = "shared";
    const PARTITIONS: i32 = 6;
    const RECORDS: u64 = 300_000;
    let strom = Strom::start(broker_props);
    let bootstrap = strom.bootstrap();
    create_topic(&bootstrap, TOPIC, PARTITIONS);
    produce(&bootstrap, TOPIC, PARTITIONS, RECORDS);

    let owned: Ownership = Arc::default();
    let seen: Arc<Mutex<HashSet<(i32, i64)>>> = Arc::default();
    let total = Arc::new(AtomicUsize::new(0));
    let stop_all = Arc::new(AtomicBool::new(false));
    let stop_one = Arc::new(AtomicBool::new(false));
    // Records the member that leaves has consumed: it leaves only once it took part.
    let leaver_count = Arc::new(AtomicUsize::new(0));
    let extra: Vec<(String, String)> = client_extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let spawn = |id: usize| {
        let (bootstrap, owned, seen, total, stop_all, stop_one, extra, leaver_count) = (
            bootstrap.clone(),
            owned.clone(),
            seen.clone(),
            total.clone(),
            stop_all.clone(),
            stop_one.clone(),
            extra.clone(),
            leaver_count.clone(),
        );
        std::thread::spawn(move || {
            // Offsets are stored only after a record is processed: the rdkafka crate drains
            // prefetched records while closing a consumer, and with automatic offset storing
            // those unprocessed records would count as consumed.
            let mut settings = vec![
                ("max.partition.fetch.bytes", "65536"),
                ("enable.auto.offset.store", "false"),
            ];
            settings.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let owned_here = owned.clone();
            let (c, _) = group_consumer(&bootstrap, "g1", id, owned, &settings);
            c.subscribe(&[TOPIC]).unwrap();
            let leaving = id == 0;
            let should_stop =
                || stop_all.load(Ordering::SeqCst) || (leaving && stop_one.load(Ordering::SeqCst));
            while !should_stop() {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                    seen.lock().unwrap().insert((m.partition(), m.offset()));
                    let _ = c.store_offset_from_message(&m);
                    total.fetch_add(1, Ordering::SeqCst);
                    if id == 0 {
                        leaver_count.fetch_add(1, Ordering::SeqCst);
                        // The member that leaves is slower, so it is still there mid-way.
                        std::thread::sleep(Duration::from_micros(20));
                    }
                }
            }
            let _ = c.commit_consumer_state(CommitMode::Sync);
            // The member processes nothing from here on: its ownership ends now, whatever the
            // order in which the client reports revocations while it closes.
            let stopped = Instant::now();
            for v in owned_here.lock().unwrap().values_mut() {
                for iv in v.iter_mut().filter(|iv| iv.0 == id && iv.2.is_none()) {
                    iv.2 = Some(stopped);
                }
            }
            drop(c); // closes: revokes and leaves the group
            // Assignments handed to it while closing were never consumed from.
            for v in owned_here.lock().unwrap().values_mut() {
                v.retain(|iv| iv.0 != id || iv.1 < stopped);
            }
        })
    };
    let mut threads: Vec<_> = (0..3).map(spawn).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    while total.load(Ordering::SeqCst) < (RECORDS / 3) as usize
        || leaver_count.load(Ordering::SeqCst) < 1000
    {
        assert!(Instant::now() < deadline, "consumers made no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_one.store(true, Ordering::SeqCst);
    threads.remove(0).join().unwrap();
    // A new member joins after the departure.
    threads.push(spawn(3));
    while seen.lock().unwrap().len() < RECORDS as usize {
        if Instant::now() > deadline {
            let seen = seen.lock().unwrap();
            let mut per_partition = [0usize; PARTITIONS as usize];
            for (p, _) in seen.iter() {
                per_partition[*p as usize] += 1;
            }
            panic!(
                "only {} of {RECORDS} distinct records consumed; per partition {per_partition:?}; committed {:?}",
                seen.len(),
                committed_total(&bootstrap, "g1", TOPIC, PARTITIONS)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let auto-commit catch up, then stop everyone.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let committed = committed_total(&bootstrap, "g1", TOPIC, PARTITIONS);
        if committed.values().sum::<i64>() == RECORDS as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed offsets never reached the log end: {committed:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_all.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let owned = owned.lock().unwrap();
    let t0 = owned
        .values()
        .flatten()
        .map(|iv| iv.1)
        .min()
        .unwrap_or_else(Instant::now);
    for (p, intervals) in owned.iter() {
        for (i, a) in intervals.iter().enumerate() {
            for b in &intervals[i + 1..] {
                if a.0 == b.0 {
                    continue;
                }
                let a_end = a.2.unwrap_or_else(Instant::now);
                let b_end = b.2.unwrap_or_else(Instant::now);
                assert!(
                    a_end <= b.1 || b_end <= a.1,
                    "partition {p} owned by consumers {} and {} at once: {:?} and {:?} (ms since the first: {:?})",
                    a.0,
                    b.0,
                    (a.1 - t0, a_end - t0),
                    (b.1 - t0, b_end - t0),
                    intervals
                        .iter()
                        .map(|iv| (
                            iv.0,
                            (iv.1 - t0).as_millis(),
                            iv.2.map(|e| (e - t0).as_millis())
                        ))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
    let members: HashSet<usize> = owned.values().flatten().map(|iv| iv.0).collect();
    assert!(
        (0..3).all(|m| members.contains(&m)),
        "every first member got partitions at some point: {members:?}"
    );
}

#[test]
fn two_groups_each_get_every_record() {
    let strom = Strom::start(FAST_GROUPS);
    let bootstrap = strom.bootstrap();
    create_topic(&bootstrap, "bcast", 3);
    produce(&bootstrap, "bcast", 3, 3000);
    for group in ["ga", "gb"] {
        let (c, _) = group_consumer(&bootstrap, group, 0, Arc::default(), &[]);
        c.subscribe(&["bcast"]).unwrap();
        let mut seen = HashSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < 3000 {
            assert!(
                Instant::now() < deadline,
                "group {group} got {} records",
                seen.len()
            );
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                seen.insert((m.partition(), m.offset()));
            }
        }
    }
}

#[test]
fn committed_offsets_survive_restart_and_sigkill() {
    let mut strom = Strom::start(FAST_GROUPS);
    let bootstrap = strom.bootstrap();
    create_topic(&bootstrap, "resume", 1);
    produce(&bootstrap, "resume", 1, 1000);
    let commit_at = |offset: i64| {
        let c: BaseConsumer = client_config(&bootstrap)
            .set("group.id", "gr")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("resume", 0, Offset::Offset(offset))
            .unwrap();
        c.commit(&tpl, CommitMode::Sync).unwrap();
    };
    let first_polled = || {
        let (c, _) = group_consumer(
            &bootstrap,
            "gr",
            0,
            Arc::default(),
            &[("enable.auto.commit", "false")],
        );
        c.subscribe(&["resume"]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "no record after restart");
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                return m.offset();
            }
        }
    };
    commit_at(400);
    assert!(strom.stop(), "clean shutdown");
    strom.restart();
    assert_eq!(committed_total(&bootstrap, "gr", "resume", 1)[&0], 400);
    assert_eq!(first_polled(), 400);

    commit_at(700);
    strom.kill9();
    strom.restart();
    assert_eq!(committed_total(&bootstrap, "gr", "resume", 1)[&0], 700);
    assert_eq!(first_polled(), 700);
}

#[test]
fn static_member_restart_causes_no_rebalance() {
    let strom = Strom::start(FAST_GROUPS);
    let bootstrap = strom.bootstrap();
    create_topic(&bootstrap, "static", 4);
    produce(&bootstrap, "static", 4, 400);
    let owned: Ownership = Arc::default();
    let statik = |id: usize| {
        [
            (
                "group.instance.id",
                if id == 0 { "member-a" } else { "member-b" },
            ),
            ("session.timeout.ms", "30000"),
        ]
    };
    let (a, _) = group_consumer(&bootstrap, "gs", 0, owned.clone(), &statik(0));
    let (b, b_rebalances) = group_consumer(&bootstrap, "gs", 1, owned.clone(), &statik(1));
    a.subscribe(&["static"]).unwrap();
    b.subscribe(&["static"]).unwrap();
    let settled = |c: &BaseConsumer<Tracking>, other: &BaseConsumer<Tracking>| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let _ = c.poll(Duration::from_millis(50));
            let _ = other.poll(Duration::from_millis(50));
            let (na, nb) = (
                c.assignment().unwrap().count(),
                other.assignment().unwrap().count(),
            );
            if na + nb == 4 && na > 0 && nb > 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "group never settled: {na} + {nb}"
            );
        }
    };
    settled(&a, &b);
    let before = b_rebalances.load(Ordering::SeqCst);
    let a_parts: HashSet<i32> = a
        .assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect();
    drop(a); // a static member does not leave the group on close
    let (a2, _) = group_consumer(&bootstrap, "gs", 0, owned.clone(), &statik(0));
    a2.subscribe(&["static"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = a2.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
        if a2.assignment().unwrap().count() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted static member got no partitions"
        );
    }
    let a2_parts: HashSet<i32> = a2
        .assignment()
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect();
    for _ in 0..20 {
        let _ = b.poll(Duration::from_millis(50));
        let _ = a2.poll(Duration::from_millis(50));
    }
    assert_eq!(a2_parts, a_parts, "the static member keeps its partitions");
    assert_eq!(
        b_rebalances.load(Ordering::SeqCst),
        before,
        "the other member saw no rebalance"
    );
}

#[test]
fn consumer_protocol_member_carries_on_across_a_restart() {
    let mut strom = Strom::start(FAST_CONSUMER_GROUPS);
    let bootstrap = strom.bootstrap();
    create_topic(&bootstrap, "carry", 2);
    produce(&bootstrap, "carry", 2, 2000);
    let (c, _) = group_consumer(
        &bootstrap,
        "gc",
        0,
        Arc::default(),
        &[CONSUMER_PROTOCOL, ("enable.auto.offset.store", "false")],
    );
    c.subscribe(&["carry"]).unwrap();
    let mut seen = HashSet::new();
    let mut poll_until = |c: &BaseConsumer<Tracking>, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < n {
            assert!(Instant::now() < deadline, "only {} records", seen.len());
            if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                seen.insert((m.partition(), m.offset()));
                let _ = c.store_offset_from_message(&m);
            }
        }
    };
    poll_until(&c, 1000);
    c.commit_consumer_state(CommitMode::Sync).unwrap();
    let before = committed_total(&bootstrap, "gc", "carry", 2);
    assert!(
        before.values().map(|o| (*o).max(0)).sum::<i64>() >= 1000,
        "{before:?}"
    );
    assert!(strom.stop(), "clean shutdown");
    strom.restart();
    // The offsets are back, and the member goes on where it was.
    assert_eq!(committed_total(&bootstrap, "gc", "carry", 2), before);
    poll_until(&c, 2000);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = c.poll(Duration::from_millis(100));
        let committed = committed_total(&bootstrap, "gc", "carry", 2);
        if committed.values().sum::<i64>() == 2000 {
            break;
        }
        assert!(Instant::now() < deadline, "commits stopped: {committed:?}");
    }
    // SIGKILL: the same again.
    let before = committed_total(&bootstrap, "gc", "carry", 2);
    strom.kill9();
    strom.restart();
    assert_eq!(committed_total(&bootstrap, "gc", "carry", 2), before);
    produce(&bootstrap, "carry", 2, 100);
    poll_until(&c, 2100);
    drop(c);
    // A classic member may take over the group once it is empty, keeping its offsets.
    let (k, _) = group_consumer(&bootstrap, "gc", 1, Arc::default(), &[]);
    k.subscribe(&["carry"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while k.assignment().unwrap().count() < 2 {
        assert!(
            Instant::now() < deadline,
            "the classic member got no partitions"
        );
        assert!(
            k.poll(Duration::from_millis(100)).is_none(),
            "everything was committed"
        );
    }
}

#[test]
fn consumer_protocol_pattern_subscription() {
    let strom = Strom::start(FAST_CONSUMER_GROUPS);
    let bootstrap = strom.bootstrap();
    for t in ["rx-a", "rx-b", "other"] {
        create_topic(&bootstrap, t, 2);
        produce(&bootstrap, t, 2, 100);
    }
    let (c, _) = group_consumer(&bootstrap, "grx", 0, Arc::default(), &[CONSUMER_PROTOCOL]);
    c.subscribe(&["^rx-.*"]).unwrap();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.len() < 200 {
        assert!(Instant::now() < deadline, "only {} records", seen.len());
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            assert!(m.topic().starts_with("rx-"), "{}", m.topic());
            seen.insert((m.topic().to_string(), m.partition(), m.offset()));
        }
    }
    // A topic created later that matches joins the subscription.
    create_topic(&bootstrap, "rx-c", 1);
    produce(&bootstrap, "rx-c", 1, 50);
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 250 {
        assert!(
            Instant::now() < deadline,
            "rx-c not consumed: {}",
            seen.len()
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            assert!(m.topic().starts_with("rx-"), "{}", m.topic());
            seen.insert((m.topic().to_string(), m.partition(), m.offset()));
        }
    }
}
