//! Connection limits: max.connections.per.ip closes connections beyond the limit at once;
//! max.connections makes further clients wait until a connection closes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use strom_e2e::Strom;

/// An ApiVersions v0 request (header v1, no client id) with correlation id `id`.
fn api_versions(id: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// Sends ApiVersions and returns whether an answer with its correlation id came within
/// `wait`; an error or end of stream counts as no answer.
fn answers(s: &mut TcpStream, id: i32, wait: Duration) -> bool {
    if s.write_all(&api_versions(id)).is_err() {
        return false;
    }
    s.set_read_timeout(Some(wait)).unwrap();
    read_response(s).is_ok_and(|correlation_id| correlation_id == id)
}

/// Reads one whole response frame; returns its correlation id.
fn read_response(s: &mut TcpStream) -> std::io::Result<i32> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size)?;
    let mut frame = vec![0u8; i32::from_be_bytes(size).max(4) as usize];
    s.read_exact(&mut frame)?;
    Ok(i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]))
}

fn connect(strom: &Strom) -> TcpStream {
    TcpStream::connect(("127.0.0.1", strom.port)).unwrap()
}

#[test]
fn per_ip_limit_closes_extra_connections() {
    let strom = Strom::start(&["max.connections.per.ip=2"]);
    // Start-up probing by the test support may still hold a slot for a moment.
    std::thread::sleep(Duration::from_millis(300));
    let mut a = connect(&strom);
    let mut b = connect(&strom);
    assert!(answers(&mut a, 1, Duration::from_secs(5)));
    assert!(answers(&mut b, 2, Duration::from_secs(5)));
    let mut c = connect(&strom);
    assert!(
        !answers(&mut c, 3, Duration::from_secs(2)),
        "a third connection is refused"
    );
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    let mut d = connect(&strom);
    assert!(
        answers(&mut d, 4, Duration::from_secs(5)),
        "a freed slot is usable again"
    );
    assert!(answers(&mut b, 5, Duration::from_secs(5)));
}

#[test]
fn idle_connections_are_closed() {
    let strom = Strom::start(&["connections.max.idle.ms=500"]);
    let mut idle = connect(&strom);
    let mut busy = connect(&strom);
    for i in 0..8 {
        std::thread::sleep(Duration::from_millis(150));
        assert!(
            answers(&mut busy, i, Duration::from_secs(5)),
            "a busy connection stays"
        );
    }
    assert!(
        !answers(&mut idle, 99, Duration::from_secs(2)),
        "the idle one was closed"
    );
}

#[test]
fn max_connections_makes_new_clients_wait() {
    let strom = Strom::start(&["max.connections=2"]);
    std::thread::sleep(Duration::from_millis(300));
    let mut a = connect(&strom);
    let mut b = connect(&strom);
    assert!(answers(&mut a, 1, Duration::from_secs(5)));
    assert!(answers(&mut b, 2, Duration::from_secs(5)));
    let mut c = connect(&strom);
    assert!(
        !answers(&mut c, 3, Duration::from_secs(1)),
        "the third waits"
    );
    drop(a);
    // Once a slot frees, the waiting connection is accepted and its request answered.
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_response(&mut c).unwrap(), 3);
}

/// Acknowledged payload bytes per second of a producer with `client_id` writing 10 KB records
/// as fast as it can, measured over the window (from, to) after it starts, or until
/// `max_bytes` were counted (so a fast producer does not fill the disk).
async fn produce_rate(
    bootstrap: &str,
    client_id: &str,
    topic: &str,
    (from, to): (Duration, Duration),
    max_bytes: usize,
) -> f64 {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use std::collections::VecDeque;
    use std::time::Instant;
    let p: FutureProducer = strom_e2e::client_config(bootstrap)
        .set("client.id", client_id)
        .set("batch.size", "100000")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let payload = vec![7u8; 10_000];
    let start = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut counted = 0usize;
    let mut last = from;
    let mut count = |acked_at: Duration| {
        if acked_at >= from && acked_at < to {
            counted += payload.len();
            last = acked_at;
        }
        counted
    };
    while start.elapsed() < to {
        let f = p.send_result(FutureRecord::<(), _>::to(topic).payload(&payload[..]));
        match f {
            Ok(f) => in_flight.push_back(f),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
        if in_flight.len() >= 200 {
            let f = in_flight.pop_front().unwrap();
            f.await.unwrap().unwrap();
            if count(start.elapsed()) >= max_bytes {
                break;
            }
        }
    }
    let window = if counted >= max_bytes {
        last - from
    } else {
        to - from
    };
    counted as f64 / window.as_secs_f64().max(0.001)
}

#[tokio::test]
async fn produce_quota_throttles_one_client_only() {
    let strom = Strom::start(&[]);
    let (ok, out, err) = strom.cli(&[
        "quotas",
        "set",
        "--client-id",
        "slow",
        "--add",
        "producer_byte_rate=1048576",
    ]);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = strom.cli(&["quotas", "describe"]);
    assert!(
        ok && out.contains("client-id=slow") && out.contains("1048576"),
        "{out}"
    );
    let (ok, _, _) = strom.cli(&["topics", "create", "quota-topic"]);
    assert!(ok);
    let secs = Duration::from_secs_f64;
    // The throttled one from 2 s on, past the burst its first requests may make.
    let slow = produce_rate(
        &strom.bootstrap(),
        "slow",
        "quota-topic",
        (secs(2.0), secs(8.0)),
        usize::MAX,
    )
    .await;
    let fast = produce_rate(
        &strom.bootstrap(),
        "fast",
        "quota-topic",
        (secs(0.2), secs(8.0)),
        30_000_000,
    )
    .await;
    let quota = 1_048_576.0;
    eprintln!("throttled {slow:.0} B/s, unthrottled {fast:.0} B/s");
    assert!(
        (slow - quota).abs() <= 0.2 * quota,
        "throttled producer ran at {slow:.0} B/s against a quota of {quota} B/s"
    );
    assert!(
        fast > 1.5 * quota,
        "unthrottled producer ran at only {fast:.0} B/s"
    );
}

/// Payload bytes per second a consumer with `client_id` reads from partition 0 of `topic`,
/// counted between `from` and `to` after it starts.
fn consume_rate(
    bootstrap: &str,
    client_id: &str,
    topic: &str,
    (from, to): (Duration, Duration),
) -> f64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use std::time::Instant;
    let c: BaseConsumer = strom_e2e::consumer_config(bootstrap)
        .set("client.id", client_id)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let start = Instant::now();
    let mut counted = 0usize;
    while start.elapsed() < to {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let at = start.elapsed();
            if at >= from && at < to {
                counted += m.payload().map_or(0, |p| p.len());
            }
        }
    }
    counted as f64 / (to - from).as_secs_f64()
}

#[tokio::test]
async fn fetch_quota_throttles_one_consumer_only() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let strom = Strom::start(&[]);
    let (ok, out, err) = strom.cli(&[
        "quotas",
        "set",
        "--client-id",
        "slow-reader",
        "--add",
        "consumer_byte_rate=1048576",
    ]);
    assert!(ok, "{out}{err}");
    // 12 MB to read.
    let p: FutureProducer = strom_e2e::client_config(&strom.bootstrap())
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let payload = vec![3u8; 10_000];
    let sends: Vec<_> = (0..1200)
        .map(|_| {
            p.send_result(FutureRecord::<(), _>::to("fetch-quota").payload(&payload[..]))
                .unwrap()
        })
        .collect();
    for s in sends {
        s.await.unwrap().unwrap();
    }
    let secs = Duration::from_secs_f64;
    let bootstrap = strom.bootstrap();
    let (slow, fast) = tokio::task::spawn_blocking(move || {
        let slow = consume_rate(
            &bootstrap,
            "slow-reader",
            "fetch-quota",
            (secs(2.0), secs(7.0)),
        );
        let fast = consume_rate(
            &bootstrap,
            "fast-reader",
            "fetch-quota",
            (secs(0.0), secs(1.0)),
        );
        (slow, fast)
    })
    .await
    .unwrap();
    let quota = 1_048_576.0;
    eprintln!("throttled consumer {slow:.0} B/s, unthrottled {fast:.0} B/s");
    assert!(
        (slow - quota).abs() <= 0.3 * quota,
        "throttled consumer read {slow:.0} B/s against a quota of {quota} B/s"
    );
    assert!(
        fast > 3.0 * quota,
        "unthrottled consumer read only {fast:.0} B/s"
    );
}
