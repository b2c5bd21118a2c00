//! strom-client's examples run against the real broker: the producer example writes numbered
//! records, the group consumer example reads every one of them back, and stops cleanly on
//! Ctrl-C (SIGINT). The example binaries are built by `cargo test --workspace` (scripts/test),
//! or by `cargo build -p strom-client --examples`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use strom_e2e::Strom;

/// `target/<profile>/examples/NAME`, next to this test's own directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = profile_dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build -p strom-client --examples` (scripts/test does, through cargo test --workspace)",
        bin.display()
    );
    bin
}

#[test]
fn producer_and_group_consumer_examples_round_trip() {
    let strom = Strom::start(&["num.partitions=3"]);
    let (ok, _, err) = strom.cli(&["topics", "create", "example", "--partitions", "3"]);
    assert!(ok, "topics create: {err}");

    let out = Command::new(example("producer"))
        .args([
            &strom.bootstrap(),
            "example",
            "2000",
            "compression.type=lz4",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run the producer example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "producer example failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2000 records to example") && stdout.contains(", 0 failed"),
        "{stdout}"
    );
    // Keyed records spread over the three partitions.
    assert_eq!(stdout.matches("  partition ").count(), 3, "{stdout}");

    for protocol in ["classic", "consumer"] {
        let group = format!("examples-{protocol}");
        let mut child = Command::new(example("consumer"))
            .args([&strom.bootstrap(), &group, "example"])
            .env("STROM_GROUP_PROTOCOL", protocol)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the consumer example");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Lines look like `example-1@42: value`.
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen.len() < 2000 && Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
                && let Some((position, _)) = line.split_once(": ")
            {
                seen.insert(position.to_string());
            }
        }
        if seen.len() < 2000 {
            let _ = child.kill();
            panic!(
                "{protocol}: the consumer example printed {} of 2000 records within 60 s",
                seen.len()
            );
        }
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{protocol}: the consumer example did not stop within 20 s of Ctrl-C");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "{protocol}: consumer example exited {status}"
        );
    }
}

/// Waits for `child` to exit within `within`, killing it and failing otherwise.
fn wait_exit(
    child: &mut std::process::Child,
    within: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not stop within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every value of `topic` a read_committed reader sees, read until none came for 2 s.
fn read_committed(bootstrap: &str, topic: &str, partitions: i32) -> Vec<String> {
    use strom_client::Properties;
    use strom_client::consumer::{Consumer, TopicPartition};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut consumer = Consumer::new(
            Properties::default()
                .set("bootstrap.servers", bootstrap)
                .set("auto.offset.reset", "earliest")
                .set("isolation.level", "read_committed"),
        )
        .expect("consumer");
        let tps: Vec<TopicPartition> = (0..partitions)
            .map(|p| TopicPartition::new(topic, p))
            .collect();
        consumer.assign(&tps).expect("assign");
        let mut values = Vec::new();
        let mut quiet_since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(60);
        while quiet_since.elapsed() < Duration::from_secs(2) && Instant::now() < deadline {
            let polled = consumer
                .poll(Duration::from_millis(200))
                .await
                .expect("poll");
            if !polled.is_empty() {
                quiet_since = Instant::now();
            }
            for r in polled {
                values.push(
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                );
            }
        }
        consumer.close().await.expect("close");
        values
    })
}

#[test]
fn transactional_and_admin_examples() {
    let strom = Strom::start(&[]);
    let bootstrap = strom.bootstrap();
    for (topic, partitions) in [("tx-in", "3"), ("tx-out", "2")] {
        let (ok, _, err) = strom.cli(&["topics", "create", topic, "--partitions", partitions]);
        assert!(ok, "topics create {topic}: {err}");
    }
    let out = Command::new(example("producer"))
        .args([&bootstrap, "tx-in", "300"])
        .stdin(Stdio::null())
        .output()
        .expect("run the producer example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The consume-transform-produce loop stops after 3 idle seconds.
    let mut child = Command::new(example("transactional"))
        .args([&bootstrap, "tx-in", "tx-out", "tx-group", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the transactional example");
    let status = wait_exit(
        &mut child,
        Duration::from_secs(90),
        "the transactional example",
    );
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "transactional example exited {status}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("transformed 300 records"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // read_committed sees each input upper-cased, exactly once.
    let mut got = read_committed(&bootstrap, "tx-out", 2);
    got.sort();
    let mut want: Vec<String> = (0..300).map(|n| format!("RECORD {n}")).collect();
    want.sort();
    assert_eq!(got, want);

    // Stopped by Ctrl-C with nothing to do, it commits nothing more.
    let mut child = Command::new(example("transactional"))
        .args([&bootstrap, "tx-in", "tx-out", "tx-group"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the transactional example");
    std::thread::sleep(Duration::from_secs(3));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = wait_exit(
        &mut child,
        Duration::from_secs(20),
        "the transactional example after Ctrl-C",
    );
    let out = child.wait_with_output().expect("output");
    assert!(status.success(), "exited {status}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("transformed 0 records"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The admin example: creates, describes, alters and deletes its topic, and lists the
    // group of the transactional example with no lag left.
    let out = Command::new(example("admin"))
        .args([&bootstrap, "adm-example"])
        .stdin(Stdio::null())
        .output()
        .expect("run the admin example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "admin example failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "created adm-example",
        "retention.ms of adm-example is now 3600000",
        "group tx-group (",
        "has 3 committed partitions, lag 0",
        "deleted adm-example",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from: {stdout}");
    }
    assert_eq!(stdout.matches("  partition ").count(), 3, "{stdout}");
    let (ok, topics, err) = strom.cli(&["topics", "list"]);
    assert!(ok, "{err}");
    assert!(!topics.contains("adm-example"), "{topics}");
}
