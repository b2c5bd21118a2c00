//! `strom cluster describe|quorum` (DescribeCluster, Metadata, DescribeQuorum) against a
//! three-broker cluster on loopback and a single node, a new quorum leader after SIGKILL of the
//! old one, and `scripts/cluster` start/status/stop.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strom_client::{Connection, ConnectionConfig};
use strom_e2e::{Cluster, Strom, free_ports, strom_bin};
use strom_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use strom_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse, TopicName};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, str_bytes};

/// Brokers of the tests: heartbeats and fencing fast enough that a failover takes seconds.
const PROPS: &[&str] = &[
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=300",
    "replica.fetch.wait.max.ms=200",
];

/// Runs `strom ARGS --output json` against `node` and parses what it prints.
fn json(node: &Strom, args: &[&str]) -> Result<Value, String> {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let (ok, out, err) = node.cli(&all);
    if !ok {
        return Err(format!("strom {args:?} failed: {out}{err}"));
    }
    serde_json::from_str(&out).map_err(|e| format!("strom {args:?}: {e}: {out}"))
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect()
}

/// Polls `strom cluster quorum` on `node` until `done` holds (or `within` passes).
fn quorum_until(node: &Strom, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    let mut last: String;
    loop {
        match json(node, &["cluster", "quorum"]) {
            Ok(q) if done(&q) => return q,
            Ok(q) => last = q.to_string(),
            Err(e) => last = e,
        }
        assert!(
            Instant::now() < deadline,
            "the quorum did not get there within {within:?}; last answer: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn cluster_describe_lists_the_brokers_the_controller_and_their_partitions() {
    let cluster = Cluster::start(3, PROPS);
    let node = &cluster.nodes[0];
    let (ok, out, err) = node.cli(&[
        "topics",
        "create",
        "spread",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
    ]);
    assert!(ok, "{out}{err}");

    // Every broker holds a replica of each partition; the leaders add up to 3.
    let deadline = Instant::now() + Duration::from_secs(20);
    let d = loop {
        let d = json(node, &["cluster", "describe"]).unwrap();
        let leaders: i64 = d["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["leaders"].as_i64().unwrap())
            .sum();
        if d["controller_id"].as_i64().unwrap() > 0 && leaders == 3 {
            break d;
        }
        assert!(Instant::now() < deadline, "cluster never settled: {d}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ids(&d["brokers"]), vec![1, 2, 3], "{d}");
    assert!(!d["cluster_id"].as_str().unwrap().is_empty());
    let controller = d["controller_id"].as_i64().unwrap();
    for (b, s) in d["brokers"].as_array().unwrap().iter().zip(&cluster.nodes) {
        assert_eq!(b["host"], "127.0.0.1");
        assert_eq!(b["port"].as_i64().unwrap(), i64::from(s.port), "{d}");
        assert_eq!(b["replicas"].as_i64().unwrap(), 3, "{d}");
        assert_eq!(
            b["is_controller"].as_bool().unwrap(),
            b["id"].as_i64() == Some(controller)
        );
    }
    assert_eq!(d["partitions"].as_i64().unwrap(), 3);
    assert_eq!(d["offline_partitions"].as_i64().unwrap(), 0);

    // Every broker agrees on the cluster id and the controller.
    for s in &cluster.nodes[1..] {
        let other = json(s, &["cluster", "describe"]).unwrap();
        assert_eq!(other["cluster_id"], d["cluster_id"]);
        assert_eq!(other["controller_id"], d["controller_id"]);
    }

    // The table names the controller and every broker.
    let (ok, out, err) = node.cli(&["cluster", "describe"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("Controller:  {controller} (127.0.0.1:")),
        "{out}"
    );
    for s in &cluster.nodes {
        assert!(out.contains(&s.port.to_string()), "{out}");
    }
}

#[test]
fn cluster_quorum_shows_three_voters_and_a_new_leader_after_sigkill_of_the_old_one() {
    let mut cluster = Cluster::start(3, PROPS);
    // Answered by the leader, which knows every voter's log end offset and lag.
    let q = quorum_until(&cluster.nodes[0], Duration::from_secs(30), |q| {
        q["leader_id"].as_i64().unwrap() > 0
            && q["voters"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["lag"].as_i64().is_some())
    });
    assert_eq!(ids(&q["voters"]), vec![1, 2, 3], "{q}");
    assert_eq!(q["observers"].as_array().unwrap().len(), 0);
    let leader = q["leader_id"].as_i64().unwrap();
    let epoch = q["leader_epoch"].as_i64().unwrap();
    let hw = q["high_watermark"].as_i64().unwrap();
    assert!(epoch >= 1 && hw > 0, "{q}");
    for v in q["voters"].as_array().unwrap() {
        let expected = if v["id"].as_i64() == Some(leader) {
            "Leader"
        } else {
            "Follower"
        };
        assert_eq!(v["status"], expected, "{q}");
        let leo = v["log_end_offset"].as_i64().unwrap();
        let lag = v["lag"].as_i64().unwrap();
        assert!(leo > 0 && lag >= 0, "{q}");
        if expected == "Leader" {
            assert!(leo >= hw && lag == 0, "{q}");
        }
    }
    let (ok, out, err) = cluster.nodes[0].cli(&["cluster", "quorum"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("Leader:            {leader}")),
        "{out}"
    );
    assert!(out.contains("Voters:            1,2,3"), "{out}");

    // SIGKILL the quorum leader: the other two elect one of themselves within seconds.
    cluster.node(leader as i32).kill9();
    let survivor = cluster
        .nodes
        .iter()
        .find(|s| s.pid().is_some())
        .expect("a running broker");
    let killed_at = Instant::now();
    let q = quorum_until(survivor, Duration::from_secs(30), |q| {
        let l = q["leader_id"].as_i64().unwrap();
        l > 0 && l != leader
    });
    // About the election timeout (1-2 s) on an idle machine; generous for a loaded one.
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(20), "election took {took:?}");
    assert!(q["leader_epoch"].as_i64().unwrap() > epoch, "{q}");
    assert_eq!(ids(&q["voters"]), vec![1, 2, 3], "{q}");
    assert!(q["high_watermark"].as_i64().unwrap() >= hw, "{q}");

    // After its session times out the killed broker is fenced; describe still lists it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = json(survivor, &["cluster", "describe"]).unwrap();
        let fenced: Vec<i64> = d["brokers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["fenced"].as_bool().unwrap())
            .map(|b| b["id"].as_i64().unwrap())
            .collect();
        if fenced == vec![leader] {
            assert_eq!(ids(&d["brokers"]), vec![1, 2, 3], "{d}");
            assert_eq!(d["controller_id"], q["leader_id"], "{d}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker {leader} never fenced: {d}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out, err) = survivor.cli(&["cluster", "describe"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("fenced"), "{out}");
}

#[test]
fn a_single_node_is_a_quorum_of_one() {
    let node = Strom::start(&[]);
    let q = json(&node, &["cluster", "quorum"]).unwrap();
    assert_eq!(q["leader_id"].as_i64(), Some(1), "{q}");
    assert_eq!(ids(&q["voters"]), vec![1], "{q}");
    assert_eq!(q["voters"][0]["status"], "Leader");
    assert_eq!(q["voters"][0]["lag"].as_i64(), Some(0));
    let d = json(&node, &["cluster", "describe"]).unwrap();
    assert_eq!(d["controller_id"].as_i64(), Some(1), "{d}");
    assert_eq!(ids(&d["brokers"]), vec![1]);
}

/// DescribeQuorum at `version` for partition `partition` of `topic`, sent raw to `bootstrap`.
fn describe_quorum(
    bootstrap: &str,
    version: i16,
    topic: &str,
    partition: i32,
) -> DescribeQuorumResponse {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Connection::connect(bootstrap, ConnectionConfig::default())
            .await
            .unwrap();
        let req = DescribeQuorumRequest::default().with_topics(vec![
            TopicData::default()
                .with_topic_name(TopicName(str_bytes(topic)))
                .with_partitions(vec![
                    PartitionData::default().with_partition_index(partition),
                ]),
        ]);
        match c
            .send(
                ApiKey::DescribeQuorum,
                version,
                RequestKind::DescribeQuorum(req),
            )
            .await
            .unwrap()
        {
            ResponseKind::DescribeQuorum(r) => r,
            other => panic!("not a DescribeQuorum response: {other:?}"),
        }
    })
}

#[test]
fn describe_quorum_answers_each_version_and_refuses_other_partitions_and_principals() {
    let node = Strom::start(&[]);
    for version in 0..=2 {
        let r = describe_quorum(&node.bootstrap(), version, "__cluster_metadata", 0);
        assert_eq!(r.error_code, 0, "v{version}: {r:?}");
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.leader_id.0), (0, 1), "v{version}: {r:?}");
        assert!(
            p.leader_epoch >= 1 && p.high_watermark > 0,
            "v{version}: {r:?}"
        );
        assert_eq!(p.current_voters.len(), 1);
        assert_eq!(p.current_voters[0].log_end_offset, p.high_watermark);
        assert!(p.observers.is_empty());
        // The leader is caught up now (v1+); v2 names the voters' endpoints.
        assert_eq!(
            p.current_voters[0].last_caught_up_timestamp > 0,
            version >= 1
        );
        assert_eq!(r.nodes.len(), if version >= 2 { 1 } else { 0 });
    }
    let r = describe_quorum(&node.bootstrap(), 2, "__cluster_metadata", 1);
    assert_eq!(r.error_code, 42, "INVALID_REQUEST: {r:?}");
    let r = describe_quorum(&node.bootstrap(), 2, "orders", 0);
    assert_eq!(r.error_code, 42, "INVALID_REQUEST: {r:?}");

    // DESCRIBE on the cluster is required.
    let locked = Strom::start(&["authorizer.class.name=strom", "super.users=User:admin"]);
    let r = describe_quorum(&locked.bootstrap(), 2, "__cluster_metadata", 0);
    assert_eq!(r.error_code, 31, "CLUSTER_AUTHORIZATION_FAILED: {r:?}");
    assert!(r.topics.is_empty());
    let (ok, out, err) = locked.cli(&["cluster", "quorum"]);
    assert!(!ok, "{out}");
    assert!(err.contains("CLUSTER_AUTHORIZATION_FAILED"), "{err}");
}

/// `n` base ports, each with base+1..=base+3 free and no two blocks overlapping.
fn free_port_blocks(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_ports(4)).collect()
}

#[test]
fn scripts_cluster_starts_reports_and_stops_three_nodes() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster");
    let dir = tempfile::tempdir().unwrap();
    let blocks = free_port_blocks(3);
    let (kafka, quorum, admin) = (blocks[0], blocks[1], blocks[2]);
    let run = |args: &[&str]| {
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .env("STROM_BIN", strom_bin())
            .env("KAFKA_PORT_BASE", kafka.to_string())
            .env("QUORUM_PORT_BASE", quorum.to_string())
            .env("ADMIN_PORT_BASE", admin.to_string())
            .env("STROM_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/cluster");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cluster_dir = dir.path().join("c");
    let d = cluster_dir.to_str().unwrap();
    // Whatever happens below, no node outlives the test.
    type Run<'a> = &'a dyn Fn(&[&str]) -> (bool, String, String);
    struct StopOnDrop<'a>(Run<'a>, &'a str);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["stop", self.1]);
        }
    }
    let _guard = StopOnDrop(&run, d);

    let (ok, out, err) = run(&["start", d, "--set", "broker.session.timeout.ms=3000"]);
    assert!(ok, "start: {out}{err}");
    assert!(out.contains("cluster up"), "{out}");
    for n in 1..=3 {
        assert!(cluster_dir.join(format!("node-{n}.log")).exists());
        assert!(cluster_dir.join(format!("node-{n}")).is_dir());
    }

    // status: three running nodes and a quorum with a leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = run(&["status", d]);
        assert!(ok, "status: {out}{err}");
        if out.matches(" running ").count() == 3 && out.contains("Leader ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed the cluster: {out}{err}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // A topic replicated on all three is served through the script's bootstrap addresses.
    let bootstrap = (1..=3)
        .map(|i| format!("127.0.0.1:{}", kafka + i))
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new(strom_bin())
        .args(["topics", "create", "t", "--replication-factor", "3"])
        .args(["--bootstrap-server", &bootstrap])
        .env("STROM_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let started = Instant::now();
    let (ok, out, err) = run(&["stop", d]);
    assert!(ok, "stop: {out}{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stop took {:?}",
        started.elapsed()
    );
    let (ok, out, err) = run(&["status", d]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches(" stopped ").count(), 3, "{out}");
    for n in 1..=3 {
        assert!(!cluster_dir.join(format!("node-{n}.pid")).exists());
    }
}
