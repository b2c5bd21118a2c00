//! The `strom` CLI against the real broker, cross-checked with librdkafka: what `strom produce`
//! writes, librdkafka reads, and what librdkafka writes, `strom consume` prints.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use strom_e2e::{Strom, client_config, consumer_config, strom_bin};

fn strom_cli(strom: &Strom, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(strom_bin())
        .args(args)
        .env("STROM_BOOTSTRAP_SERVER", strom.bootstrap())
        .env("STROM_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn topics_produce_consume_round_trip() {
    let strom = Strom::start(&[]);
    let (ok, _, err) = strom_cli(
        &strom,
        &[
            "topics",
            "create",
            "cli",
            "--partitions",
            "2",
            "--config",
            "retention.ms=3600000",
        ],
        None,
    );
    assert!(ok, "create: {err}");
    let (ok, _, err) = strom_cli(&strom, &["topics", "create", "cli"], None);
    assert!(!ok, "creating twice must fail");
    assert!(
        err.contains("TOPIC_ALREADY_EXISTS"),
        "clear error expected, got: {err}"
    );

    let (ok, out, err) = strom_cli(&strom, &["topics", "list", "--output", "json"], None);
    assert!(ok, "list: {err}");
    assert!(out.contains("\"cli\""), "list shows the topic: {out}");
    let (ok, out, err) = strom_cli(&strom, &["topics", "describe", "cli"], None);
    assert!(ok, "describe: {err}");
    assert!(
        out.contains("retention.ms") && out.contains("3600000"),
        "describe shows the override: {out}"
    );

    // strom produce -> librdkafka reads it.
    let lines: String = (0..50).map(|i| format!("k{i}|value {i}\n")).collect();
    let (ok, _, err) = strom_cli(
        &strom,
        &[
            "produce",
            "--topic",
            "cli",
            "--partition",
            "1",
            "--key-separator",
            "|",
            "--header",
            "src=cli",
            "--compression",
            "zstd",
        ],
        Some(&lines),
    );
    assert!(ok, "produce: {err}");
    let c: BaseConsumer = consumer_config(&strom.bootstrap()).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("cli", 1, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    for i in 0..50 {
        let m = loop {
            if let Some(m) = c.poll(Duration::from_secs(5)) {
                break m.unwrap();
            }
        };
        assert_eq!(m.offset(), i);
        assert_eq!(m.key(), Some(format!("k{i}").as_bytes()));
        assert_eq!(m.payload(), Some(format!("value {i}").as_bytes()));
        let h = m.headers().unwrap().get(0);
        assert_eq!((h.key, h.value), ("src", Some(&b"cli"[..])));
    }

    // librdkafka writes -> strom consume prints.
    let p: BaseProducer = client_config(&strom.bootstrap()).create().unwrap();
    for i in 0..5 {
        p.send(
            BaseRecord::to("cli")
                .partition(0)
                .key(&format!("rk{i}"))
                .payload(&format!("rv{i}")),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
    let (ok, out, err) = strom_cli(
        &strom,
        &[
            "consume",
            "--topic",
            "cli",
            "--partition",
            "0",
            "--from-beginning",
            "--max-messages",
            "5",
            "--format",
            "{offset}:{key}={value}",
        ],
        None,
    );
    assert!(ok, "consume: {err}");
    let expected: Vec<String> = (0..5).map(|i| format!("{i}:rk{i}=rv{i}")).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);

    let (ok, _, err) = strom_cli(
        &strom,
        &["topics", "alter", "cli", "--partitions", "4"],
        None,
    );
    assert!(ok, "alter: {err}");
    let md = c
        .fetch_metadata(Some("cli"), Duration::from_secs(10))
        .unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 4);
    let (ok, _, err) = strom_cli(&strom, &["topics", "delete", "cli"], None);
    assert!(ok, "delete: {err}");
    let (ok, _, err) = strom_cli(
        &strom,
        &[
            "consume",
            "--topic",
            "cli",
            "--from-beginning",
            "--max-messages",
            "1",
        ],
        None,
    );
    assert!(
        !ok && err.contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "consume of a deleted topic: {err}"
    );
}

/// `strom topics describe big | head -1`: the tool stops quietly once its reader has gone
/// (status 141, as after SIGPIPE), without a panic report.
#[test]
fn output_into_a_closed_pipe_stops_quietly() {
    use std::io::{BufRead, BufReader};
    let strom = Strom::start(&[]);
    // A table of far more than a pipe holds (64 KiB), so that printing meets the closed pipe.
    let (ok, _, err) = strom_cli(
        &strom,
        &["topics", "create", "pipe", "--partitions", "1500"],
        None,
    );
    assert!(ok, "create: {err}");
    let mut child = Command::new(strom_bin())
        .args(["topics", "describe", "pipe"])
        .env("STROM_BOOTSTRAP_SERVER", strom.bootstrap())
        .env("STROM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty(), "a first line");
    // The reader (and with it the pipe) is gone here.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "status; stderr: {err}");
    assert!(!err.contains("panicked"), "no panic report: {err}");
}

/// One refused start-up: server flags, an environment variable, words the error must say.
type Case<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>, &'a [&'a str]);

/// A misspelt or mistyped broker property stops start-up with a message that names it, from a
/// flag, the environment and a configuration file alike; nothing is left listening.
#[test]
fn server_refuses_a_misspelt_or_mistyped_property() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("strom.toml");
    std::fs::write(&file, "\"log.retention.ms\" = \"a week\"\n").unwrap();
    let port = strom_e2e::free_port().to_string();
    let cases: [Case; 4] = [
        (
            &["--set", "log.retention.mss=5"],
            None,
            &["log.retention.mss", "unknown property"],
        ),
        (
            &["--set", "num.partitions=three"],
            None,
            &["num.partitions", "three", "number"],
        ),
        (
            &[],
            Some(("STROM_AUTO_CREATE_TOPICS_ENABLE", "yes")),
            &["auto.create.topics.enable", "yes", "true or false"],
        ),
        (
            &["--config", file.to_str().unwrap()],
            None,
            &["log.retention.ms", "a week"],
        ),
    ];
    for (args, env, expected) in cases {
        let mut cmd = Command::new(strom_bin());
        cmd.args(["server", "--data-dir"])
            .arg(data.path().join("d"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--set",
                "admin.listener=",
                "--set",
                "schema.registry.listener=",
            ])
            .args(args)
            .env("STROM_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("strom server {args:?} {env:?} started instead of refusing the property");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!status.success(), "{args:?} {env:?}: exit {status}");
        for word in expected {
            assert!(
                stderr.contains(word),
                "{args:?} {env:?}: the error does not say {word:?}: {stderr}"
            );
        }
    }
}
