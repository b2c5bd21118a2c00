//! Observability through the admin listener, with librdkafka as the client: counters move by
//! exactly what was produced and consumed, consumer lag computed by the broker drops to zero
//! when a group catches up, per-request latency histograms count every request, health
//! endpoints report not-ready while a large log is recovered after SIGKILL, log levels change
//! at run time, `--log-format json` writes JSON lines, and the log cleaner's work shows in the
//! metrics and in `strom topics describe --admin`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use strom_e2e::{Strom, client_config, metric_value, strom_bin};

fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    create_topic_with(bootstrap, name, partitions, &[]);
}

fn create_topic_with(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let r = admin
            .create_topics(&[topic], &AdminOptions::new())
            .await
            .unwrap();
        assert!(r[0].is_ok(), "{:?}", r[0]);
    });
}

/// Produces `count` records round-robin over `partitions`, `len` bytes each; every record must
/// be acknowledged.
fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: u64,
    len: usize,
    extra: &[(&str, &str)],
) {
    let mut config = client_config(bootstrap);
    config
        .set("linger.ms", "5")
        .set("acks", "all")
        .set("queue.buffering.max.messages", "1000000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let p: BaseProducer = config.create().unwrap();
    for n in 0..count {
        let key = n.to_string();
        let value = strom_e2e::payload(n, len);
        let rec = BaseRecord::to(topic)
            .partition((n % partitions as u64) as i32)
            .key(&key)
            .payload(&value);
        strom_e2e::send_queued(&p, rec);
    }
    p.flush(Duration::from_secs(120)).unwrap();
    assert_eq!(p.in_flight_count(), 0);
}

fn scrape(s: &Strom) -> String {
    let (status, body) = s.admin_get("/metrics").expect("admin listener answers");
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with("# EOF\n"), "exposition must be complete");
    body
}

/// Polls the group's consumer until `want` records arrived (60 s at most); returns them by
/// partition as (partition -> next offset to consume).
fn consume(c: &BaseConsumer, want: usize) -> HashMap<i32, i64> {
    let mut next = HashMap::new();
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < want {
        assert!(
            Instant::now() < deadline,
            "consumed {got} of {want} within 60 s"
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            next.insert(m.partition(), m.offset() + 1);
            got += 1;
        }
    }
    next
}

#[test]
fn metrics_follow_produce_consume_and_lag() {
    let s = Strom::start(&["group.initial.rebalance.delay.ms=0"]);
    let bootstrap = s.bootstrap();
    const TOPIC: &str = "obs";
    const PARTITIONS: i32 = 3;
    const COUNT: u64 = 3_000;
    create_topic(&bootstrap, TOPIC, PARTITIONS);

    let before = scrape(&s);
    assert_eq!(
        metric_value(
            &before,
            "strom_topic_messages_in_total",
            &[("topic", TOPIC)]
        ),
        Some(0.0),
        "a created topic has its counters at 0"
    );
    assert_eq!(
        metric_value(&before, "strom_under_replicated_partitions", &[]),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&before, "strom_offline_partitions", &[]),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&before, "strom_partitions", &[]),
        Some(PARTITIONS as f64)
    );

    produce(&bootstrap, TOPIC, PARTITIONS, COUNT, 100, &[]);
    let m = scrape(&s);
    let t = [("topic", TOPIC)];
    assert_eq!(
        metric_value(&m, "strom_topic_messages_in_total", &t),
        Some(COUNT as f64),
        "messages in must equal messages produced"
    );
    // Every appended byte is in the log: bytes in equals the partitions' size.
    let bytes_in = metric_value(&m, "strom_topic_in_bytes_total", &t).unwrap();
    assert!(bytes_in > (COUNT * 100) as f64);
    assert_eq!(
        metric_value(&m, "strom_partition_size_bytes", &t),
        Some(bytes_in)
    );
    assert_eq!(
        metric_value(&m, "strom_partition_log_end_offset", &t),
        Some(COUNT as f64)
    );
    for p in 0..PARTITIONS {
        let l = [("topic", TOPIC), ("partition", &p.to_string())];
        assert_eq!(
            metric_value(&m, "strom_partition_log_end_offset", &l),
            Some((COUNT / PARTITIONS as u64) as f64)
        );
        assert_eq!(
            metric_value(&m, "strom_partition_log_start_offset", &l),
            Some(0.0)
        );
        assert_eq!(metric_value(&m, "strom_partition_segments", &l), Some(1.0));
    }
    // Every Produce request went through every latency stage, and none failed.
    let produces = metric_value(&m, "strom_requests_total", &[("request", "Produce")]).unwrap();
    assert!(produces >= 1.0);
    for h in [
        "strom_request_queue_time_seconds_count",
        "strom_request_local_time_seconds_count",
        "strom_request_remote_time_seconds_count",
        "strom_response_queue_time_seconds_count",
        "strom_response_send_time_seconds_count",
        "strom_request_total_time_seconds_count",
    ] {
        assert_eq!(
            metric_value(&m, h, &[("request", "Produce")]),
            Some(produces),
            "{h}"
        );
    }
    let none = metric_value(
        &m,
        "strom_request_errors_total",
        &[("request", "Produce"), ("error", "NONE")],
    );
    assert!(
        none.unwrap_or(0.0) >= produces,
        "every partition of every produce answered NONE"
    );
    assert_eq!(
        metric_value(&m, "strom_topic_failed_produce_requests_total", &t),
        Some(0.0)
    );

    // A group consumes a third, commits, and the broker reports the rest as lag.
    std::thread::sleep(Duration::from_millis(1_200));
    let c: BaseConsumer = client_config(&bootstrap)
        .set("group.id", "obs-group")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[TOPIC]).unwrap();
    let partial = consume(&c, (COUNT / 2) as usize);
    // Commit where the group is on every partition (0 where it has read nothing yet).
    let mut commit = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let next = partial.get(&p).copied().unwrap_or(0);
        commit
            .add_partition_offset(TOPIC, p, rdkafka::Offset::Offset(next))
            .unwrap();
    }
    c.commit(&commit, CommitMode::Sync).unwrap();
    let m = scrape(&s);
    let per_partition = COUNT as i64 / PARTITIONS as i64;
    let mut lagging = 0;
    let mut total_lag = 0.0;
    for p in 0..PARTITIONS {
        let committed = partial.get(&p).copied().unwrap_or(0);
        let part = p.to_string();
        let l = [
            ("group", "obs-group"),
            ("topic", TOPIC),
            ("partition", part.as_str()),
        ];
        assert_eq!(
            metric_value(&m, "strom_consumer_group_committed_offset", &l),
            Some(committed as f64)
        );
        let lag = metric_value(&m, "strom_consumer_group_lag", &l).unwrap();
        assert_eq!(
            lag,
            (per_partition - committed) as f64,
            "lag of partition {part}"
        );
        total_lag += lag;
        let lag_seconds = metric_value(&m, "strom_consumer_group_lag_seconds", &l).unwrap();
        if lag > 0.0 {
            lagging += 1;
            assert!(
                (1.0..120.0).contains(&lag_seconds),
                "records waited >= 1.2 s, lag_seconds = {lag_seconds}"
            );
        } else {
            assert_eq!(lag_seconds, 0.0);
        }
    }
    assert_eq!(total_lag, (COUNT - COUNT / 2) as f64);
    assert!(
        lagging > 0,
        "some partition still lags after a partial read: {partial:?}"
    );
    assert_eq!(
        metric_value(&m, "strom_groups", &[("state", "Stable")]),
        Some(1.0),
        "the group is stable"
    );
    assert!(metric_value(&m, "strom_connections", &[("listener", "PLAINTEXT")]).unwrap() >= 1.0);
    assert!(metric_value(&m, "strom_topic_out_bytes_total", &t).unwrap() > 0.0);

    // Catch up: lag drops to zero on every partition.
    let rest = consume(&c, (COUNT - COUNT / 2) as usize);
    let mut commit = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let next = rest.get(&p).or(partial.get(&p)).copied().unwrap_or(0);
        commit
            .add_partition_offset(TOPIC, p, rdkafka::Offset::Offset(next))
            .unwrap();
    }
    c.commit(&commit, CommitMode::Sync).unwrap();
    let m = scrape(&s);
    for p in 0..PARTITIONS {
        let part = p.to_string();
        let l = [
            ("group", "obs-group"),
            ("topic", TOPIC),
            ("partition", part.as_str()),
        ];
        assert_eq!(
            metric_value(&m, "strom_consumer_group_lag", &l),
            Some(0.0),
            "partition {p}"
        );
        assert_eq!(
            metric_value(&m, "strom_consumer_group_lag_seconds", &l),
            Some(0.0)
        );
        assert_eq!(
            metric_value(&m, "strom_consumer_group_committed_offset", &l),
            Some(per_partition as f64)
        );
    }
    // Every byte fetched was counted at least once (a consumer may fetch a batch twice).
    assert!(metric_value(&m, "strom_topic_out_bytes_total", &t).unwrap() >= bytes_in);
    // A caught-up consumer long-polls: its fetches wait (librdkafka's fetch.wait.max.ms is 500 ms)
    // and that wait is the Fetch remote time.
    let idle_until = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < idle_until {
        assert!(
            c.poll(Duration::from_millis(100)).is_none(),
            "nothing more to read"
        );
    }
    let m = scrape(&s);
    let fetch_remote = metric_value(
        &m,
        "strom_request_remote_time_seconds_sum",
        &[("request", "Fetch")],
    )
    .unwrap();
    assert!(
        fetch_remote >= 0.4,
        "long-poll fetches waited {fetch_remote} s"
    );
    drop(c);

    // Status and per-partition views.
    let (code, status) = s.admin_get("/v1/status").unwrap();
    assert_eq!(code, 200);
    assert!(
        status.contains("\"partitions_led\": 3")
            || status.contains(&format!("\"partitions_led\": {}", PARTITIONS + 50)),
        "{status}"
    );
    assert!(
        status.contains("\"under_replicated_partitions\": 0"),
        "{status}"
    );
    assert!(
        status.contains(&format!("127.0.0.1:{}", s.port)),
        "{status}"
    );
    let (code, parts) = s
        .admin_get(&format!("/v1/partitions?topic={TOPIC}"))
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        parts.matches("\"topic\": \"obs\"").count(),
        PARTITIONS as usize,
        "{parts}"
    );
}

#[test]
fn ready_only_after_recovery_of_a_large_log() {
    let mut s = Strom::start(&[]);
    assert_eq!(s.admin_get("/health/ready").map(|r| r.0), Some(200));
    let bootstrap = s.bootstrap();
    const TOPIC: &str = "big";
    const PARTITIONS: i32 = 8;
    const COUNT: u64 = 400_000;
    create_topic(&bootstrap, TOPIC, PARTITIONS);
    // Small batches make recovery validate many of them.
    produce(
        &bootstrap,
        TOPIC,
        PARTITIONS,
        COUNT,
        200,
        &[("batch.num.messages", "20")],
    );
    s.kill9();

    s.restart_nowait();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let (mut not_ready, mut live_while_not_ready) = (0, 0);
    let ready_after = loop {
        assert!(Instant::now() < deadline, "not ready within 120 s");
        assert!(!s.exited(), "strom exited during recovery");
        match s.admin_get("/health/ready") {
            Some((200, _)) => break started.elapsed(),
            Some((503, body)) => {
                assert!(body.contains("recovering"), "{body}");
                not_ready += 1;
                if s.admin_get("/health/live").map(|r| r.0) == Some(200) {
                    live_while_not_ready += 1;
                }
            }
            Some(other) => panic!("unexpected /health/ready answer {other:?}"),
            None => {} // not listening yet
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    eprintln!("ready after {ready_after:?}; {not_ready} not-ready answers");
    assert!(
        not_ready > 0,
        "/health/ready must say 503 while the log is recovered"
    );
    assert!(
        live_while_not_ready > 0,
        "/health/live answers during recovery"
    );
    // Ready means usable: the Kafka port answers and the whole log is there.
    assert!(std::net::TcpStream::connect(("127.0.0.1", s.port)).is_ok());
    let m = scrape(&s);
    assert_eq!(
        metric_value(&m, "strom_partition_log_end_offset", &[("topic", TOPIC)]),
        Some(COUNT as f64)
    );
}

#[test]
fn log_levels_change_at_run_time_and_the_listener_can_be_off() {
    let s = Strom::start(&[]);
    let (code, body) = s.admin_get("/v1/log-level").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"filter\": \"warn\""), "{body}");
    let (code, body) = s
        .admin_put("/v1/log-level", "info,strom_broker::group=debug")
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let (_, body) = s.admin_get("/v1/log-level").unwrap();
    assert!(body.contains("info,strom_broker::group=debug"), "{body}");
    let (code, _) = s.admin_put("/v1/log-level", "not a [valid filter").unwrap();
    assert_eq!(code, 400);
    assert_eq!(s.admin_get("/nope").unwrap().0, 404);

    let off = Strom::start(&["admin.listener="]);
    assert!(
        off.admin_get("/health/live").is_none(),
        "admin.listener= turns it off"
    );
}

#[test]
fn cleaner_state_in_metrics_and_topics_describe() {
    let s = Strom::start(&["log.cleaner.backoff.ms=100"]);
    let bootstrap = s.bootstrap();
    const TOPIC: &str = "obs-compacted";
    create_topic_with(
        &bootstrap,
        TOPIC,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "4096"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let p: BaseProducer = client_config(&bootstrap)
        .set("linger.ms", "5")
        .set("batch.num.messages", "50")
        .create()
        .unwrap();
    for n in 0..2_000u64 {
        let key = format!("key-{}", n % 50);
        let value = format!("value-{n}");
        let rec = BaseRecord::to(TOPIC).partition(0).key(&key).payload(&value);
        strom_e2e::send_queued(&p, rec);
    }
    p.flush(Duration::from_secs(60)).unwrap();

    let t = [("topic", TOPIC), ("partition", "0")];
    let deadline = Instant::now() + Duration::from_secs(60);
    let m = loop {
        let m = scrape(&s);
        // The pass is committed to the log before the cleaner counts it: wait for both.
        if metric_value(&m, "strom_partition_last_clean_timestamp_seconds", &t).is_some()
            && metric_value(&m, "strom_log_cleaner_passes_total", &[]) >= Some(1.0)
        {
            break m;
        }
        assert!(Instant::now() < deadline, "no cleaning pass within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    let read = metric_value(&m, "strom_log_cleaner_read_bytes_total", &[]).unwrap();
    let written = metric_value(&m, "strom_log_cleaner_written_bytes_total", &[]).unwrap();
    assert!(
        read > 0.0 && written < read,
        "read {read}, written {written}"
    );
    assert!(metric_value(&m, "strom_log_cleaner_time_seconds_total", &[]).unwrap() > 0.0);
    let dirty = metric_value(&m, "strom_partition_dirty_ratio", &t).unwrap();
    assert!((0.0..=1.0).contains(&dirty));

    let describe = |output: &str| {
        let out = std::process::Command::new(strom_bin())
            .args(["topics", "describe", TOPIC, "--output", output])
            .args(["--bootstrap-server", &bootstrap])
            .args(["--admin", &format!("127.0.0.1:{}", s.admin_port)])
            .env("STROM_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json = describe("json");
    assert!(json.contains("\"cleanup_policy\": \"compact\""), "{json}");
    assert!(json.contains("\"dirty_ratio\""), "{json}");
    let last_clean = json
        .split("\"last_clean_ms\": ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit() && c != '-').next())
        .and_then(|n| n.parse::<i64>().ok());
    assert!(last_clean.is_some_and(|ms| ms > 0), "{json}");
    let table = describe("table");
    assert!(table.contains("Cleanup policy: compact"), "{table}");
    assert!(
        table.contains("DIRTY RATIO") && table.contains("s ago"),
        "{table}"
    );
}

#[test]
fn json_log_lines() {
    use std::io::Read;
    let data = tempfile::tempdir().unwrap();
    let port = strom_e2e::free_port();
    let mut child = std::process::Command::new(strom_bin())
        .args([
            "server",
            "--log-format",
            "json",
            "--set",
            "admin.listener=",
            "--set",
            "schema.registry.listener=",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("STROM_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log as it comes, and stop the broker once it says it listens (a connection
    // alone could reach another process that took the port meanwhile).
    let mut stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.lock().unwrap().contains("strom broker listening") {
        assert!(
            Instant::now() < deadline,
            "strom did not listen within 30 s: {}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    reader.join().unwrap();
    let err = log.lock().unwrap().clone();
    assert!(child.wait().unwrap().success());
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{err}");
    for line in &lines {
        assert!(
            line.starts_with('{') && line.ends_with('}') && line.contains("\"level\":"),
            "not a JSON log line: {line}"
        );
    }
    assert!(err.contains("\"message\":\"ready\""), "{err}");
    assert!(
        err.contains("\"message\":\"strom broker stopped\""),
        "{err}"
    );
}
