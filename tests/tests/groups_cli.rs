//! `strom groups` against the real broker, with librdkafka group consumers: list, describe
//! (members, committed offsets, lag), reset-offsets (refused while the group is active; dry run;
//! --execute seen by a new librdkafka consumer), delete-offsets and delete.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use strom_e2e::{Strom, client_config, strom_bin};

const TOPIC: &str = "gcli";
const GROUP: &str = "gcli-group";
const PARTITIONS: i32 = 3;
/// Records per partition.
const PER_PARTITION: i64 = 30;
/// What the first consumer commits per partition.
const COMMITTED: i64 = 10;

fn strom_cli(strom: &Strom, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(strom_bin())
        .args(args)
        .env("STROM_BOOTSTRAP_SERVER", strom.bootstrap())
        .env("STROM_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli_ok(strom: &Strom, args: &[&str]) -> String {
    let (ok, out, err) = strom_cli(strom, args);
    assert!(ok, "strom {args:?} failed:\n{err}\n{out}");
    out
}

fn cli_err(strom: &Strom, args: &[&str]) -> String {
    let (ok, out, err) = strom_cli(strom, args);
    assert!(!ok, "strom {args:?} should fail, printed:\n{out}");
    err
}

/// Committed offset, log end offset and lag of one partition.
type OffsetRow = (Option<i64>, Option<i64>, Option<i64>);

/// Committed offset, log end offset and lag by partition from `groups describe` (table), with
/// "-" as None.
fn described_offsets(strom: &Strom) -> HashMap<i32, OffsetRow> {
    let out = cli_ok(strom, &["groups", "describe", GROUP]);
    let num = |s: &str| s.parse::<i64>().ok();
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() >= 5 && cols[0] == TOPIC)
        .map(|cols| {
            (
                cols[1].parse().unwrap(),
                (num(cols[2]), num(cols[3]), num(cols[4])),
            )
        })
        .collect()
}

fn committed(strom: &Strom) -> Vec<Option<i64>> {
    let rows = described_offsets(strom);
    (0..PARTITIONS)
        .map(|p| rows.get(&p).and_then(|r| r.0))
        .collect()
}

fn group_state(strom: &Strom) -> String {
    let out = cli_ok(strom, &["groups", "describe", GROUP]);
    let first = out.lines().next().unwrap_or_default().to_string();
    first
        .split("State: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

fn wait_for_state(strom: &Strom, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = group_state(strom);
        if state == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group stayed {state}, expected {want}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn group_consumer(strom: &Strom, client_id: &str) -> BaseConsumer {
    let c: BaseConsumer = client_config(&strom.bootstrap())
        .set("group.id", GROUP)
        .set("client.id", client_id)
        // "latest" shows that a consumer starts from the committed offsets, not the reset policy.
        .set("auto.offset.reset", "latest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    c.subscribe(&[TOPIC]).unwrap();
    c
}

/// Polls until `done` says so, or fails after 30 s.
fn poll_until(c: &BaseConsumer, mut done: impl FnMut(i32, i64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "consumer made no progress");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            if done(m.partition(), m.offset()) {
                return;
            }
        }
    }
}

#[test]
fn groups_list_describe_reset_delete() {
    let strom = Strom::start(&["group.initial.rebalance.delay.ms=0"]);
    cli_ok(
        &strom,
        &[
            "topics",
            "create",
            TOPIC,
            "--partitions",
            &PARTITIONS.to_string(),
        ],
    );
    let p: BaseProducer = client_config(&strom.bootstrap()).create().unwrap();
    for n in 0..PER_PARTITION * PARTITIONS as i64 {
        let key = n.to_string();
        p.send(
            BaseRecord::to(TOPIC)
                .partition((n % PARTITIONS as i64) as i32)
                .key(&key)
                .payload(&key),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();

    // Nothing committed yet: the group does not exist.
    let err = cli_err(&strom, &["groups", "describe", GROUP]);
    assert!(err.contains("GROUP_ID_NOT_FOUND"), "{err}");

    // A group consumer starts from the beginning (no commits: auto.offset.reset=latest would
    // skip everything, so commit 0 first from outside, which the empty group allows).
    cli_ok(
        &strom,
        &[
            "groups",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(committed(&strom), vec![Some(0); PARTITIONS as usize]);
    let c = group_consumer(&strom, "gcli-consumer");
    let mut seen: HashMap<i32, i64> = HashMap::new();
    poll_until(&c, |partition, offset| {
        *seen.entry(partition).or_default() += 1;
        assert!(offset < PER_PARTITION);
        (0..PARTITIONS).all(|p| seen.get(&p).copied().unwrap_or(0) >= COMMITTED)
    });
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Offset(COMMITTED))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
    // Keep the consumer polling briefly so its membership is settled.
    for _ in 0..5 {
        c.poll(Duration::from_millis(100));
    }

    // list: the group, its state and protocol type.
    let out = cli_ok(&strom, &["groups", "list"]);
    let row = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(GROUP))
        .unwrap_or_else(|| panic!("list shows the group: {out}"));
    assert!(row.contains("Stable") && row.contains("consumer"), "{row}");
    let out = cli_ok(&strom, &["groups", "list", "--output", "json"]);
    assert!(out.contains(&format!("\"group\": \"{GROUP}\"")), "{out}");
    let out = cli_ok(&strom, &["groups", "list", "--state", "stable"]);
    assert!(out.contains(GROUP), "state filter keeps the group: {out}");
    let (ok, out, _) = strom_cli(&strom, &["groups", "list", "--state", "Empty"]);
    assert!(
        ok && !out.contains(GROUP),
        "state filter drops the group: {out}"
    );

    // describe: the member, its assignment, committed offsets and lag.
    let out = cli_ok(&strom, &["groups", "describe", GROUP]);
    assert!(out.contains("State: Stable"), "{out}");
    assert!(out.contains("Members: 1"), "{out}");
    assert!(out.contains("gcli-consumer"), "member client id: {out}");
    assert!(out.contains("gcli:0,1,2"), "member assignment: {out}");
    let rows = described_offsets(&strom);
    for p in 0..PARTITIONS {
        assert_eq!(
            rows.get(&p),
            Some(&(
                Some(COMMITTED),
                Some(PER_PARTITION),
                Some(PER_PARTITION - COMMITTED)
            )),
            "partition {p}: {out}"
        );
    }
    let out = cli_ok(&strom, &["groups", "describe", GROUP, "--output", "json"]);
    assert!(out.contains("\"state\": \"Stable\""), "{out}");
    assert!(out.contains("\"client_id\": \"gcli-consumer\""), "{out}");
    assert!(
        out.matches(&format!("\"lag\": {}", PER_PARTITION - COMMITTED))
            .count()
            == PARTITIONS as usize,
        "{out}"
    );

    // While the member is active: no reset, no delete, no offset delete.
    let err = cli_err(
        &strom,
        &[
            "groups",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-earliest",
            "--execute",
        ],
    );
    assert!(err.contains("active member"), "{err}");
    let err = cli_err(&strom, &["groups", "delete", GROUP]);
    assert!(err.contains("NON_EMPTY_GROUP"), "{err}");
    let err = cli_err(
        &strom,
        &["groups", "delete-offsets", GROUP, "--topic", TOPIC],
    );
    assert!(err.contains("GROUP_SUBSCRIBED_TO_TOPIC"), "{err}");
    assert_eq!(
        committed(&strom),
        vec![Some(COMMITTED); PARTITIONS as usize]
    );

    // The consumer leaves: the group is empty and keeps its offsets.
    drop(c);
    wait_for_state(&strom, "Empty");
    assert_eq!(
        committed(&strom),
        vec![Some(COMMITTED); PARTITIONS as usize]
    );

    // A dry run shows the plan and changes nothing.
    let out = cli_ok(
        &strom,
        &[
            "groups",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-earliest",
        ],
    );
    let plan: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() == 5 && c[0] == GROUP)
        .collect();
    assert_eq!(plan.len(), PARTITIONS as usize, "{out}");
    for row in &plan {
        assert_eq!((row[3], row[4]), ("10", "0"), "{out}");
    }
    assert_eq!(
        committed(&strom),
        vec![Some(COMMITTED); PARTITIONS as usize]
    );

    // --execute moves every partition to 0, and a new consumer starts there.
    cli_ok(
        &strom,
        &[
            "groups",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(committed(&strom), vec![Some(0); PARTITIONS as usize]);
    let rows = described_offsets(&strom);
    assert_eq!(rows.get(&0).and_then(|r| r.2), Some(PER_PARTITION), "lag");
    let c = group_consumer(&strom, "gcli-again");
    let mut first: HashMap<i32, i64> = HashMap::new();
    poll_until(&c, |partition, offset| {
        first.entry(partition).or_insert(offset);
        first.len() == PARTITIONS as usize
    });
    for p in 0..PARTITIONS {
        assert_eq!(first[&p], 0, "partition {p} starts at the reset offset");
    }
    drop(c);
    wait_for_state(&strom, "Empty");
    assert_eq!(
        committed(&strom),
        vec![Some(0); PARTITIONS as usize],
        "the second consumer did not commit"
    );

    // --shift-by, clamped into the log.
    let reset = |extra: &[&str]| {
        let mut args = vec!["groups", "reset-offsets", GROUP];
        args.extend_from_slice(extra);
        args.push("--execute");
        cli_ok(&strom, &args);
        committed(&strom)
    };
    assert_eq!(
        reset(&["--all-topics", "--shift-by", "7"]),
        vec![Some(7); 3]
    );
    assert_eq!(
        reset(&["--all-topics", "--shift-by", "-100"]),
        vec![Some(0); 3]
    );
    // --to-offset on one partition; out of range is clamped to the log end.
    assert_eq!(
        reset(&["--topic", "gcli:1", "--to-offset", "25"]),
        vec![Some(0), Some(25), Some(0)]
    );
    assert_eq!(
        reset(&["--topic", "gcli:0,2", "--to-offset", "1000"]),
        vec![Some(30), Some(25), Some(30)]
    );
    // By time: all records are from the last minutes.
    assert_eq!(
        reset(&["--all-topics", "--to-datetime", "2000-01-01T00:00:00Z"]),
        vec![Some(0); 3]
    );
    assert_eq!(
        reset(&["--all-topics", "--to-datetime", "2999-01-01T00:00:00+01:00"]),
        vec![Some(PER_PARTITION); 3]
    );
    assert_eq!(
        reset(&["--all-topics", "--by-duration", "PT1H"]),
        vec![Some(0); 3]
    );
    assert_eq!(
        reset(&["--all-topics", "--to-latest"]),
        vec![Some(PER_PARTITION); 3]
    );
    let err = cli_err(
        &strom,
        &[
            "groups",
            "reset-offsets",
            GROUP,
            "--all-topics",
            "--by-duration",
            "1h",
        ],
    );
    assert!(err.contains("PnDTnHnMnS"), "{err}");

    // delete-offsets, then delete.
    cli_ok(
        &strom,
        &["groups", "delete-offsets", GROUP, "--topic", "gcli:1"],
    );
    assert_eq!(
        committed(&strom),
        vec![Some(PER_PARTITION), None, Some(PER_PARTITION)]
    );
    cli_ok(
        &strom,
        &["groups", "delete-offsets", GROUP, "--topic", TOPIC],
    );
    assert!(described_offsets(&strom).is_empty());
    cli_ok(&strom, &["groups", "delete", GROUP]);
    let err = cli_err(&strom, &["groups", "delete", GROUP]);
    assert!(err.contains("GROUP_ID_NOT_FOUND"), "{err}");
    let (ok, out, _) = strom_cli(&strom, &["groups", "list"]);
    assert!(ok && !out.contains(GROUP), "{out}");
    let err = cli_err(
        &strom,
        &["groups", "delete-offsets", GROUP, "--topic", TOPIC],
    );
    assert!(err.contains("GROUP_ID_NOT_FOUND"), "{err}");
}

#[test]
fn groups_list_and_describe_show_consumer_protocol_groups() {
    let strom = Strom::start(&["group.consumer.heartbeat.interval.ms=300"]);
    cli_ok(&strom, &["topics", "create", "kip848", "--partitions", "4"]);
    let consumer = |id: &str| {
        let c: BaseConsumer = client_config(&strom.bootstrap())
            .set("group.id", "g848")
            .set("client.id", id)
            .set("group.protocol", "consumer")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        c.subscribe(&["kip848"]).unwrap();
        c
    };
    let (a, b) = (consumer("c848-a"), consumer("c848-b"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        a.poll(Duration::from_millis(50));
        b.poll(Duration::from_millis(50));
        let (na, nb) = (
            a.assignment().unwrap().count(),
            b.assignment().unwrap().count(),
        );
        if na == 2 && nb == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no even split: {na} + {nb}");
    }
    let out = cli_ok(&strom, &["groups", "list"]);
    let row = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some("g848"))
        .unwrap_or_else(|| panic!("list shows the group: {out}"));
    assert!(row.contains("consumer") && row.contains("Stable"), "{row}");
    let out = cli_ok(&strom, &["groups", "list", "--output", "json"]);
    assert!(out.contains("\"type\": \"consumer\""), "{out}");
    // describe: type, epochs, members with their epoch, assignment and target.
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        a.poll(Duration::from_millis(50));
        b.poll(Duration::from_millis(50));
        let out = cli_ok(&strom, &["groups", "describe", "g848"]);
        if out.contains("State: Stable") {
            break out;
        }
        assert!(Instant::now() < deadline, "never stable: {out}");
    };
    assert!(out.contains("Type: consumer"), "{out}");
    assert!(out.contains("Protocol: uniform"), "{out}");
    assert!(out.contains("Group epoch: 2"), "{out}");
    assert!(
        out.contains("EPOCH") && out.contains("TARGET-ASSIGNMENT"),
        "{out}"
    );
    assert!(out.contains("c848-a") && out.contains("c848-b"), "{out}");
    let json = cli_ok(&strom, &["groups", "describe", "g848", "--output", "json"]);
    assert!(json.contains("\"member_epoch\": 2"), "{json}");
    // A consumer group with members refuses deletion.
    let err = cli_err(&strom, &["groups", "delete", "g848"]);
    assert!(err.contains("NON_EMPTY_GROUP"), "{err}");
}
