//! Quotas seen in the protocol: `request_percentage` throttles a client that keeps the broker
//! busy (throttle_time_ms in its responses, its connection muted for that long, the request
//! throttle metric growing) while another client doing the same work is not; a Fetch from a
//! client over its `consumer_byte_rate` answers without records; a client over its
//! `controller_mutation_rate` gets THROTTLING_QUOTA_EXCEEDED for further topics.
//!
//! Assertions are on throttle fields and metrics, not on measured speeds.

use std::time::{Duration, Instant};

use strom_client::{Connection, ConnectionConfig};
use strom_e2e::{Strom, metric_value};
use strom_protocol::messages::create_topics_request::CreatableTopic;
use strom_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use strom_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, MetadataRequest,
    TopicName,
};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, str_bytes};

async fn connect(strom: &Strom, client_id: &str) -> Connection {
    let config = ConnectionConfig {
        client_id: client_id.to_string(),
        ..ConnectionConfig::default()
    };
    Connection::connect(&strom.bootstrap(), config)
        .await
        .unwrap()
}

/// A Metadata request for every topic; returns its throttle_time_ms.
async fn metadata_throttle(c: &mut Connection) -> i32 {
    let ResponseKind::Metadata(r) = c
        .send(
            ApiKey::Metadata,
            12,
            RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
        )
        .await
        .unwrap()
    else {
        panic!("not a Metadata response")
    };
    r.throttle_time_ms
}

fn quota(strom: &Strom, client_id: &str, setting: &str) {
    let (ok, out, err) = strom.cli(&["quotas", "set", "--client-id", client_id, "--add", setting]);
    assert!(ok, "{out}{err}");
}

fn throttle_metric(strom: &Strom, quota: &str) -> f64 {
    let (_, text) = strom.admin_get("/metrics").expect("metrics");
    metric_value(
        &text,
        "strom_throttle_time_seconds_total",
        &[("quota", quota)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn request_percentage_throttles_one_client_only() {
    let strom = Strom::start(&[]);
    // Some topics so that a Metadata request has a little work to do.
    for i in 0..20 {
        let (ok, out, err) =
            strom.cli(&["topics", "create", &format!("t{i}"), "--partitions", "4"]);
        assert!(ok, "{out}{err}");
    }
    // 0.01% of one thread: 100 µs of handling per second.
    quota(&strom, "busy", "request_percentage=0.01");
    let (ok, out, _) = strom.cli(&["quotas", "describe"]);
    assert!(ok && out.contains("request_percentage"), "{out}");
    assert_eq!(throttle_metric(&strom, "request"), 0.0);

    let mut busy = connect(&strom, "busy").await;
    let mut sent = 0;
    let mut throttle_ms = 0;
    while throttle_ms == 0 && sent < 2000 {
        throttle_ms = metadata_throttle(&mut busy).await;
        sent += 1;
    }
    assert!(
        throttle_ms > 0,
        "{sent} Metadata requests of client busy never throttled"
    );
    eprintln!("busy throttled {throttle_ms} ms after {sent} requests");
    // The broker holds the connection for that long: the next answer comes no sooner (a lower
    // bound only, less 20 ms for the response's own way to the client: the broker starts
    // waiting when it queues the response).
    let before = Instant::now();
    metadata_throttle(&mut busy).await;
    let waited = before.elapsed();
    assert!(
        waited + Duration::from_millis(20) >= Duration::from_millis(throttle_ms as u64),
        "answered after {waited:?} although throttled for {throttle_ms} ms"
    );
    assert!(throttle_metric(&strom, "request") > 0.0);

    // The same work from a client without the quota is never throttled.
    let mut idle = connect(&strom, "idle").await;
    for _ in 0..sent.max(50) {
        assert_eq!(metadata_throttle(&mut idle).await, 0);
    }
}

fn fetch_request(topic: &str, offset: i64) -> FetchRequest {
    let mut p = FetchPartition::default();
    p.partition = 0;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    p.log_start_offset = -1;
    p.current_leader_epoch = -1;
    let mut t = FetchTopic::default();
    t.topic = TopicName(str_bytes(topic));
    t.partitions = vec![p];
    let mut req = FetchRequest::default();
    req.replica_id = strom_protocol::messages::BrokerId(-1);
    req.max_wait_ms = 0;
    req.min_bytes = 1;
    req.max_bytes = 50 << 20;
    req.session_epoch = -1;
    req.topics = vec![t];
    req
}

async fn fetch(c: &mut Connection, topic: &str, offset: i64) -> FetchResponse {
    let ResponseKind::Fetch(r) = c
        .send(
            ApiKey::Fetch,
            12,
            RequestKind::Fetch(fetch_request(topic, offset)),
        )
        .await
        .unwrap()
    else {
        panic!("not a Fetch response")
    };
    r
}

/// Record bytes in a Fetch response.
fn record_bytes(r: &FetchResponse) -> usize {
    r.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.records.as_ref().map_or(0, |b| b.len()))
        .sum()
}

#[tokio::test]
async fn fetch_over_byte_rate_answers_without_records() {
    let strom = Strom::start(&[]);
    let (ok, out, err) = strom.cli(&["topics", "create", "fq", "--partitions", "1"]);
    assert!(ok, "{out}{err}");
    // 40 batches of one 5 KB record each.
    let client = strom_client::Client::new(&strom.bootstrap()).unwrap();
    let record = strom_client::ProducerRecord {
        value: Some(bytes::Bytes::from(vec![b'x'; 5000])),
        ..Default::default()
    };
    for _ in 0..40 {
        client
            .produce(
                "fq",
                0,
                std::slice::from_ref(&record),
                strom_client::Codec::None,
                -1,
            )
            .await
            .unwrap();
    }
    // 10 KB/s for the reader.
    quota(&strom, "reader", "consumer_byte_rate=10000");

    // Without a quota, one Fetch takes everything, unthrottled.
    // Record bytes the clients received, to compare with what the broker counts as sent.
    let mut received = 0usize;
    let mut free = connect(&strom, "free").await;
    let all = fetch(&mut free, "fq", 0).await;
    received += record_bytes(&all);
    assert_eq!(all.throttle_time_ms, 0);
    assert!(record_bytes(&all) >= 40 * 5000, "{}", record_bytes(&all));

    let mut reader = connect(&strom, "reader").await;
    // First Fetch: at most one second of quota (the response size is capped to it; whole
    // batches, so one 5 KB batch or two).
    let first = fetch(&mut reader, "fq", 0).await;
    let got = record_bytes(&first);
    received += got;
    assert!(got > 0 && got <= 12_000, "first fetch returned {got} bytes");
    // Fetching on at once: over the quota, so the answer carries no records, only the wait.
    let mut empty = None;
    for _ in 0..5 {
        let r = fetch(&mut reader, "fq", 1).await;
        received += record_bytes(&r);
        if r.throttle_time_ms > 0 {
            empty = Some(r);
            break;
        }
    }
    let r = empty.expect("the reader is throttled");
    assert_eq!(r.error_code, 0);
    assert_eq!(record_bytes(&r), 0, "a throttled fetch returns no records");
    assert!(r.responses.is_empty(), "{:?}", r.responses);
    assert!(throttle_metric(&strom, "fetch") > 0.0);
    // Records withheld are not charged: once the wait is over the reader gets data again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = fetch(&mut reader, "fq", 1).await;
        received += record_bytes(&r);
        if record_bytes(&r) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the reader got nothing for 30 s");
    }
    // The client without a quota was never throttled meanwhile.
    let again = fetch(&mut free, "fq", 0).await;
    assert_eq!(again.throttle_time_ms, 0);
    received += record_bytes(&again);
    // Withheld records are not counted as sent.
    let (_, text) = strom.admin_get("/metrics").expect("metrics");
    let out = metric_value(&text, "strom_topic_out_bytes_total", &[("topic", "fq")]).unwrap();
    assert_eq!(out as usize, received);
}

async fn create(c: &mut Connection, topics: &[(&str, i32)]) -> CreateTopicsResponse {
    let req = CreateTopicsRequest::default()
        .with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    CreatableTopic::default()
                        .with_name(TopicName(str_bytes(name.to_string())))
                        .with_num_partitions(*partitions)
                        .with_replication_factor(1)
                })
                .collect(),
        )
        .with_timeout_ms(30_000);
    let ResponseKind::CreateTopics(r) = c
        .send(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req))
        .await
        .unwrap()
    else {
        panic!("not a CreateTopics response")
    };
    r
}

#[tokio::test]
async fn controller_mutation_rate_refuses_topics_beyond_the_burst() {
    let strom = Strom::start(&[]);
    // 2 partitions per second, with a burst of 11 seconds' worth (22).
    quota(&strom, "slow-admin", "controller_mutation_rate=2");
    let mut slow = connect(&strom, "slow-admin").await;
    let r = create(&mut slow, &[("m-a", 20)]).await;
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.throttle_time_ms, 0, "within the burst");
    // m-b takes the client below zero (it is still created); m-c, in the same request, is
    // refused, and the client is told to wait about (10 - 2) / 2 s.
    let r = create(&mut slow, &[("m-b", 10), ("m-c", 1)]).await;
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[1].error_code, 89, "THROTTLING_QUOTA_EXCEEDED");
    assert!(
        r.throttle_time_ms > 0 && r.throttle_time_ms <= 4000,
        "{}",
        r.throttle_time_ms
    );
    assert!(throttle_metric(&strom, "controller_mutation") > 0.0);
    // Another client is not limited.
    let mut other = connect(&strom, "other-admin").await;
    let r = create(&mut other, &[("m-d", 30), ("m-e", 1)]).await;
    assert_eq!((r.topics[0].error_code, r.topics[1].error_code), (0, 0));
    assert_eq!(r.throttle_time_ms, 0);
    let (ok, out, _) = strom.cli(&["topics", "list"]);
    assert!(ok && out.contains("m-b") && !out.contains("m-c"), "{out}");
}
