//! Topic administration and the error codes clients rely on, driven by librdkafka's admin API,
//! producer and consumer: create/describe/alter/grow/delete, DeleteRecords, ListOffsets by
//! timestamp, LogAppendTime, retention, MESSAGE_TOO_LARGE, auto-creation.

use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use strom_e2e::{Strom, client_config, consumer_config};

fn admin(strom: &Strom) -> AdminClient<DefaultClientContext> {
    client_config(&strom.bootstrap()).create().unwrap()
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

async fn create(
    a: &AdminClient<DefaultClientContext>,
    topic: NewTopic<'_>,
) -> Result<String, RDKafkaErrorCode> {
    a.create_topics(&[topic], &opts())
        .await
        .unwrap()
        .remove(0)
        .map_err(|(_, e)| e)
}

async fn config_value(
    a: &AdminClient<DefaultClientContext>,
    topic: &str,
    name: &str,
) -> (Option<String>, String) {
    let r = a
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts())
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let e = r
        .get(name)
        .unwrap_or_else(|| panic!("{name} not described"));
    (e.value.clone(), format!("{:?}", e.source))
}

fn partition_count(bootstrap: &str, topic: &str) -> Option<usize> {
    let c: BaseConsumer = client_config(bootstrap).create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let t = &md.topics()[0];
    t.error().is_none().then(|| t.partitions().len())
}

fn produce_sync(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    records: &[(Option<i64>, Vec<u8>)],
) -> Vec<Result<i64, KafkaError>> {
    let (bootstrap, topic, records) = (bootstrap.to_string(), topic.to_string(), records.to_vec());
    std::thread::spawn(move || produce_on_own_runtime(&bootstrap, &topic, partition, &records))
        .join()
        .unwrap()
}

fn produce_on_own_runtime(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    records: &[(Option<i64>, Vec<u8>)],
) -> Vec<Result<i64, KafkaError>> {
    let p: FutureProducer = client_config(bootstrap)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut out = Vec::new();
        for (ts, value) in records {
            let mut rec = FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(value);
            if let Some(ts) = ts {
                rec = rec.timestamp(*ts);
            }
            out.push(
                p.send(rec, Duration::from_secs(10))
                    .await
                    .map(|d| d.offset)
                    .map_err(|(e, _)| e),
            );
        }
        out
    })
}

fn consumer_at(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offset: Offset,
    extra: &[(&str, &str)],
) -> BaseConsumer {
    let mut cfg: ClientConfig = consumer_config(bootstrap);
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    let c: BaseConsumer = cfg.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, offset).unwrap();
    c.assign(&tpl).unwrap();
    c
}

fn poll_one(c: &BaseConsumer) -> rdkafka::message::OwnedMessage {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "no record arrived");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            return m.expect("consume error").detach();
        }
    }
}

#[test]
fn topic_lifecycle_and_configs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(topic_lifecycle_and_configs_body());
}

async fn topic_lifecycle_and_configs_body() {
    let strom = Strom::start(&[]);
    let a = admin(&strom);
    let t = NewTopic::new("orders", 2, TopicReplication::Fixed(1)).set("retention.ms", "12345");
    assert_eq!(create(&a, t).await, Ok("orders".into()));
    assert_eq!(partition_count(&strom.bootstrap(), "orders"), Some(2));

    let (v, source) = config_value(&a, "orders", "retention.ms").await;
    assert_eq!(v.as_deref(), Some("12345"));
    assert_eq!(source, "DynamicTopic");
    let (v, source) = config_value(&a, "orders", "cleanup.policy").await;
    assert_eq!(v.as_deref(), Some("delete"));
    assert_eq!(source, "Default");

    let alter = AlterConfig::new(ResourceSpecifier::Topic("orders"))
        .set("retention.ms", "999")
        .set("segment.bytes", "1048576");
    let r = a.alter_configs(&[alter], &opts()).await.unwrap();
    assert!(r[0].is_ok(), "{:?}", r[0]);
    assert_eq!(
        config_value(&a, "orders", "retention.ms")
            .await
            .0
            .as_deref(),
        Some("999")
    );
    assert_eq!(
        config_value(&a, "orders", "segment.bytes")
            .await
            .0
            .as_deref(),
        Some("1048576")
    );

    let r = a
        .create_partitions(&[NewPartitions::new("orders", 5)], &opts())
        .await
        .unwrap();
    assert!(r[0].is_ok(), "{:?}", r[0]);
    assert_eq!(partition_count(&strom.bootstrap(), "orders"), Some(5));
    // New partitions take writes.
    assert!(produce_sync(&strom.bootstrap(), "orders", 4, &[(None, b"x".to_vec())])[0].is_ok());

    let r = a.delete_topics(&["orders"], &opts()).await.unwrap();
    assert!(r[0].is_ok(), "{:?}", r[0]);
    let c: BaseConsumer = client_config(&strom.bootstrap()).create().unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    assert!(md.topics().iter().all(|t| t.name() != "orders"));

    // The name can be used again, and the new topic starts empty.
    let t = NewTopic::new("orders", 1, TopicReplication::Fixed(1));
    assert_eq!(create(&a, t).await, Ok("orders".into()));
    let (low, high) = c
        .fetch_watermarks("orders", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, 0));

    // Topics and their configs survive a restart.
    let mut strom = strom;
    let a2 = NewTopic::new("kept", 3, TopicReplication::Fixed(1)).set("retention.ms", "4242");
    assert!(create(&a, a2).await.is_ok());
    assert!(strom.stop(), "clean shutdown");
    strom.restart();
    let a = admin(&strom);
    assert_eq!(partition_count(&strom.bootstrap(), "kept"), Some(3));
    assert_eq!(
        config_value(&a, "kept", "retention.ms").await.0.as_deref(),
        Some("4242")
    );
}

#[test]
fn admin_error_codes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(admin_error_codes_body());
}

async fn admin_error_codes_body() {
    let strom = Strom::start(&[]);
    let a = admin(&strom);
    assert!(
        create(&a, NewTopic::new("t", 1, TopicReplication::Fixed(1)))
            .await
            .is_ok()
    );
    assert_eq!(
        create(&a, NewTopic::new("t", 1, TopicReplication::Fixed(1))).await,
        Err(RDKafkaErrorCode::TopicAlreadyExists)
    );
    assert_eq!(
        create(&a, NewTopic::new("zero", 0, TopicReplication::Fixed(1))).await,
        Err(RDKafkaErrorCode::InvalidPartitions)
    );
    assert_eq!(
        create(&a, NewTopic::new("rf3", 1, TopicReplication::Fixed(3))).await,
        Err(RDKafkaErrorCode::InvalidReplicationFactor)
    );
    assert_eq!(
        create(
            &a,
            NewTopic::new("bad-value", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon")
        )
        .await,
        Err(RDKafkaErrorCode::InvalidConfig)
    );
    assert_eq!(
        create(
            &a,
            NewTopic::new("bad-name", 1, TopicReplication::Fixed(1)).set("no.such.config", "1")
        )
        .await,
        Err(RDKafkaErrorCode::InvalidConfig)
    );
    assert_eq!(
        create(
            &a,
            NewTopic::new("no/slashes", 1, TopicReplication::Fixed(1))
        )
        .await,
        Err(RDKafkaErrorCode::InvalidTopic)
    );
    let r = a.delete_topics(&["missing"], &opts()).await.unwrap();
    assert_eq!(
        r[0],
        Err(("missing".into(), RDKafkaErrorCode::UnknownTopicOrPartition))
    );
    let r = a
        .create_partitions(&[NewPartitions::new("t", 1)], &opts())
        .await
        .unwrap();
    assert_eq!(r[0], Err(("t".into(), RDKafkaErrorCode::InvalidPartitions)));
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("t")).set("message.timestamp.type", "Sometimes");
    // librdkafka reports no per-resource error for AlterConfigs; the value must simply not change.
    let _ = a.alter_configs(&[alter], &opts()).await.unwrap();
    assert_eq!(
        config_value(&a, "t", "message.timestamp.type")
            .await
            .0
            .as_deref(),
        Some("CreateTime")
    );
    // Nothing of the failed creations exists.
    let c: BaseConsumer = client_config(&strom.bootstrap())
        .set("allow.auto.create.topics", "false")
        .create()
        .unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
    assert_eq!(names, vec!["t"]);
}

#[test]
fn message_too_large_and_auto_create() {
    let strom = Strom::start(&["num.partitions=3"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = admin(&strom);
    let t = NewTopic::new("small", 1, TopicReplication::Fixed(1)).set("max.message.bytes", "1024");
    assert!(rt.block_on(create(&a, t)).is_ok());
    let r = produce_sync(
        &strom.bootstrap(),
        "small",
        0,
        &[(None, vec![7u8; 4000]), (None, vec![1u8; 100])],
    );
    match &r[0] {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {}
        other => panic!("expected MESSAGE_TOO_LARGE, got {other:?}"),
    }
    assert_eq!(
        r[1].as_ref().ok(),
        Some(&0),
        "the log still takes records that fit"
    );

    // Producing to a topic nobody created creates it with num.partitions.
    let r = produce_sync(&strom.bootstrap(), "fresh", 2, &[(None, b"hello".to_vec())]);
    assert_eq!(r[0].as_ref().ok(), Some(&0));
    assert_eq!(partition_count(&strom.bootstrap(), "fresh"), Some(3));
}

#[test]
fn delete_records_moves_the_log_start() {
    let strom = Strom::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = admin(&strom);
    assert!(
        rt.block_on(create(
            &a,
            NewTopic::new("dr", 1, TopicReplication::Fixed(1))
        ))
        .is_ok()
    );
    let records: Vec<_> = (0..100)
        .map(|i| (None, format!("r{i}").into_bytes()))
        .collect();
    assert!(
        produce_sync(&strom.bootstrap(), "dr", 0, &records)
            .iter()
            .all(|r| r.is_ok())
    );

    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("dr", 0, Offset::Offset(40))
        .unwrap();
    let res = rt.block_on(a.delete_records(&tpl, &opts())).unwrap();
    let e = res.find_partition("dr", 0).unwrap();
    assert!(e.error().is_ok(), "{:?}", e.error());
    assert_eq!(e.offset(), Offset::Offset(40));

    let c: BaseConsumer = client_config(&strom.bootstrap()).create().unwrap();
    assert_eq!(
        c.fetch_watermarks("dr", 0, Duration::from_secs(10))
            .unwrap(),
        (40, 100)
    );

    // A consumer asking for offset 10 gets OFFSET_OUT_OF_RANGE and resets to the earliest.
    let c = consumer_at(
        &strom.bootstrap(),
        "dr",
        0,
        Offset::Offset(10),
        &[("auto.offset.reset", "earliest")],
    );
    let m = poll_one(&c);
    assert_eq!(m.offset(), 40);
    assert_eq!(m.payload(), Some(&b"r40"[..]));

    // Beyond the high watermark is refused.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("dr", 0, Offset::Offset(500))
        .unwrap();
    let res = rt.block_on(a.delete_records(&tpl, &opts()));
    let failed = match res {
        Ok(list) => list.find_partition("dr", 0).unwrap().error().is_err(),
        Err(_) => true,
    };
    assert!(failed, "deleting beyond the high watermark must fail");
}

#[test]
fn list_offsets_by_timestamp() {
    let strom = Strom::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(
        rt.block_on(create(
            &admin(&strom),
            NewTopic::new("ts", 1, TopicReplication::Fixed(1))
        ))
        .is_ok()
    );
    let base = 1_700_000_000_000i64;
    let records: Vec<_> = (0..20)
        .map(|i| (Some(base + i * 1000), format!("t{i}").into_bytes()))
        .collect();
    assert!(
        produce_sync(&strom.bootstrap(), "ts", 0, &records)
            .iter()
            .all(|r| r.is_ok())
    );
    let c: BaseConsumer = client_config(&strom.bootstrap()).create().unwrap();
    let lookup = |ts: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("ts", 0, Offset::Offset(ts))
            .unwrap();
        let r = c.offsets_for_times(tpl, Duration::from_secs(10)).unwrap();
        r.find_partition("ts", 0).unwrap().offset()
    };
    assert_eq!(lookup(base), Offset::Offset(0));
    assert_eq!(lookup(base + 5500), Offset::Offset(6));
    assert_eq!(lookup(base + 19_000), Offset::Offset(19));
    assert_eq!(lookup(base + 19_001), Offset::End, "no record that late");
}

#[test]
fn log_append_time_stamps_the_broker_clock() {
    let strom = Strom::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = NewTopic::new("lat", 1, TopicReplication::Fixed(1))
        .set("message.timestamp.type", "LogAppendTime");
    assert!(rt.block_on(create(&admin(&strom), t)).is_ok());
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        produce_sync(
            &strom.bootstrap(),
            "lat",
            0,
            &[(Some(1000), b"old".to_vec())]
        )[0]
        .is_ok()
    );
    let c = consumer_at(&strom.bootstrap(), "lat", 0, Offset::Beginning, &[]);
    let m = poll_one(&c);
    match m.timestamp() {
        Timestamp::LogAppendTime(ts) => {
            assert!(ts >= before - 1000 && ts < before + 60_000, "ts {ts}")
        }
        other => panic!("expected LogAppendTime, got {other:?}"),
    }
}

#[test]
fn retention_deletes_old_segments() {
    let strom = Strom::start(&["log.retention.check.interval.ms=200"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = admin(&strom);
    let by_time = NewTopic::new("by-time", 1, TopicReplication::Fixed(1))
        .set("retention.ms", "1000")
        .set("segment.bytes", "1024");
    let by_size = NewTopic::new("by-size", 1, TopicReplication::Fixed(1))
        .set("retention.bytes", "3000")
        .set("segment.bytes", "1024");
    assert!(rt.block_on(create(&a, by_time)).is_ok());
    assert!(rt.block_on(create(&a, by_size)).is_ok());
    let records: Vec<_> = (0..60).map(|i| (None, vec![i as u8; 200])).collect();
    assert!(
        produce_sync(&strom.bootstrap(), "by-time", 0, &records)
            .iter()
            .all(|r| r.is_ok())
    );
    assert!(
        produce_sync(&strom.bootstrap(), "by-size", 0, &records)
            .iter()
            .all(|r| r.is_ok())
    );
    let c: BaseConsumer = client_config(&strom.bootstrap()).create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (low_t, high_t) = c
            .fetch_watermarks("by-time", 0, Duration::from_secs(10))
            .unwrap();
        let (low_s, high_s) = c
            .fetch_watermarks("by-size", 0, Duration::from_secs(10))
            .unwrap();
        if low_t == high_t && low_s > 0 {
            assert_eq!(high_t, 60);
            assert_eq!(high_s, 60);
            // Size retention keeps at least retention.bytes of the newest data.
            assert!(
                high_s - low_s >= 3000 / 270,
                "kept only {} records",
                high_s - low_s
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not run: by-time {low_t}..{high_t}, by-size {low_s}..{high_s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Producing after retention emptied the log continues at the old end.
    let r = produce_sync(
        &strom.bootstrap(),
        "by-time",
        0,
        &[(None, b"later".to_vec())],
    );
    assert_eq!(r[0].as_ref().ok(), Some(&60));
}

#[test]
fn fetch_from_any_offset_starts_at_that_record() {
    let strom = Strom::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = NewTopic::new("seek", 1, TopicReplication::Fixed(1)).set("segment.bytes", "65536");
    assert!(rt.block_on(create(&admin(&strom), t)).is_ok());
    // Batches of many records across many segments.
    let p: rdkafka::producer::BaseProducer = client_config(&strom.bootstrap())
        .set("linger.ms", "20")
        .create()
        .unwrap();
    for i in 0..20_000u32 {
        let v = format!("v{i}");
        loop {
            match p.send(
                rdkafka::producer::BaseRecord::<(), _>::to("seek")
                    .partition(0)
                    .payload(&v),
            ) {
                Ok(()) => break,
                Err(_) => {
                    p.poll(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
    let mut x: u64 = 12345;
    for _ in 0..40 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let offset = (x >> 33) as i64 % 20_000;
        let c = consumer_at(&strom.bootstrap(), "seek", 0, Offset::Offset(offset), &[]);
        let m = poll_one(&c);
        assert_eq!(
            m.offset(),
            offset,
            "a fetch from {offset} must start at {offset}"
        );
        assert_eq!(m.payload(), Some(format!("v{offset}").as_bytes()));
    }
}
