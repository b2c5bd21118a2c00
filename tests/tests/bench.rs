//! `strom bench` against the real broker: produce (acks=1 and acks=0), consume and e2e finish,
//! report what they did, and librdkafka sees exactly the records the bench wrote.

use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use strom_e2e::{Strom, consumer_config, strom_bin};

fn bench(strom: &Strom, args: &[&str]) -> String {
    let out = Command::new(strom_bin())
        .arg("bench")
        .args(args)
        .args(["--output", "json"])
        .env("STROM_BOOTSTRAP_SERVER", strom.bootstrap())
        .env("STROM_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "strom bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn bench_produce_consume_and_e2e() {
    let strom = Strom::start(&[]);
    let out = bench(
        &strom,
        &[
            "produce",
            "--topic",
            "b",
            "--partitions",
            "3",
            "--records",
            "20000",
            "--acks",
            "1",
            "--keys",
            "100",
            "--producers",
            "2",
            "--batch-size",
            "16384",
        ],
    );
    assert!(out.contains("\"records\": 20000"), "{out}");
    assert!(out.contains("\"errors\": 0"), "{out}");
    assert!(out.contains("\"p99\""), "latency percentiles: {out}");
    // acks=0: nothing answers, the bench must still deliver everything before it exits.
    let out = bench(
        &strom,
        &[
            "produce",
            "--topic",
            "b",
            "--records",
            "5000",
            "--acks",
            "0",
            "--compression",
            "lz4",
        ],
    );
    assert!(out.contains("\"records\": 5000"), "{out}");

    let consumer: BaseConsumer = consumer_config(&strom.bootstrap()).create().unwrap();
    let total: i64 = (0..3)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks("b", p, Duration::from_secs(10))
                .unwrap();
            high - low
        })
        .sum();
    assert_eq!(total, 25_000);

    let out = bench(&strom, &["consume", "--topic", "b", "--from-beginning"]);
    assert!(out.contains("\"records\": 25000"), "{out}");

    let out = bench(
        &strom,
        &[
            "e2e",
            "--topic",
            "lat",
            "--partitions",
            "2",
            "--rate",
            "2000",
            "--duration-secs",
            "1",
            "--acks",
            "-1",
        ],
    );
    assert!(out.contains("\"of\": \"produce to consume\""), "{out}");
}
