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
