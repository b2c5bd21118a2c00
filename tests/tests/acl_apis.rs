//! ACL checks of the group, transaction and describe APIs, request by request, with the
//! authorized-operations fields, and the audit log of admin operations. Clients log in over
//! SASL PLAIN and speak the protocol through `strom-client` (so each answer's fields can be
//! checked); the plaintext listener's anonymous principal is a super user that sets things up
//! with librdkafka and the `strom` CLI.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use strom_client::{ClientSecurity, Connection, ConnectionConfig, SaslLogin};
use strom_e2e::{Strom, client_config};
use strom_protocol::messages::*;
use strom_protocol::{ApiKey, RequestKind, ResponseKind, StrBytes, str_bytes};

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const TXN_DENIED: i16 = 53;

/// Bits of authorized-operations fields (1 << operation code).
const READ: i32 = 1 << 3;
const WRITE: i32 = 1 << 4;
const DELETE: i32 = 1 << 6;
const DESCRIBE: i32 = 1 << 8;
const NOT_REQUESTED: i32 = i32::MIN;

fn start(extra: &[&str]) -> Strom {
    let mut props = vec![
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS;User:admin",
        "sasl.plain.users=alice:alice-pw,bob:bob-pw,admin:admin-pw",
        "connection.failed.authentication.delay.ms=10",
    ];
    props.extend_from_slice(extra);
    Strom::start_listeners(&["PLAINTEXT", "SASL_PLAINTEXT"], &props)
}

fn cli(strom: &Strom, args: &[&str]) -> String {
    let (ok, out, err) = strom.cli(args);
    assert!(ok, "strom {args:?}: {out}{err}");
    out
}

fn acl(strom: &Strom, args: &[&str]) {
    let mut all = vec!["acls", "add"];
    all.extend_from_slice(args);
    cli(strom, &all);
}

/// A protocol connection logged in as `user` (or anonymous over plaintext for `None`).
async fn login(strom: &Strom, user: Option<&str>) -> Connection {
    let mut config = ConnectionConfig::default();
    let addr = match user {
        Some(name) => {
            config.security = ClientSecurity {
                tls: None,
                sasl: Some(SaslLogin {
                    mechanism: "PLAIN".into(),
                    username: name.into(),
                    password: format!("{name}-pw"),
                }),
            };
            strom.listener("SASL_PLAINTEXT")
        }
        None => strom.bootstrap(),
    };
    Connection::connect(&addr, config).await.unwrap()
}

macro_rules! call {
    ($conn:expr, $api:ident, $version:expr, $req:expr) => {{
        match $conn
            .send(ApiKey::$api, $version, RequestKind::$api($req))
            .await
            .unwrap()
        {
            ResponseKind::$api(r) => r,
            other => panic!("unexpected response {other:?}"),
        }
    }};
}

fn s(v: &str) -> StrBytes {
    str_bytes(v.to_string())
}

fn topic(name: &str) -> TopicName {
    TopicName(s(name))
}

fn group(name: &str) -> GroupId {
    GroupId(s(name))
}

/// Commits offset `offset` of partition 0 of each topic for `group_id` (as the super user).
fn commit(strom: &Strom, group_id: &str, topics: &[&str], offset: i64) {
    let c: BaseConsumer = client_config(&strom.bootstrap())
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        tpl.add_partition_offset(t, 0, Offset::Offset(offset))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

/// One committed transaction of `id` writing to each topic (as the super user).
fn transaction(strom: &Strom, id: &str, topics: &[&str]) {
    let p: BaseProducer = client_config(&strom.bootstrap())
        .set("transactional.id", id)
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(10)).unwrap();
    p.begin_transaction().unwrap();
    for t in topics {
        p.send(BaseRecord::<(), _>::to(t).payload("v")).unwrap();
    }
    p.commit_transaction(Duration::from_secs(10)).unwrap();
}

/// Partition errors and offsets of an OffsetFetch v8 group, by topic.
fn offsets_of(g: &offset_fetch_response::OffsetFetchResponseGroup) -> Vec<(String, i16, i64)> {
    let mut out: Vec<(String, i16, i64)> = g
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.error_code, p.committed_offset))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn offset_fetch_and_offset_delete_check_groups_and_topics() {
    let strom = start(&[]);
    cli(&strom, &["topics", "create", "visible"]);
    cli(&strom, &["topics", "create", "hidden"]);
    commit(&strom, "g1", &["visible", "hidden"], 1);
    commit(&strom, "g2", &["visible"], 1);
    acl(
        &strom,
        &[
            "--principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "visible",
        ],
    );
    acl(
        &strom,
        &[
            "--principal",
            "User:alice",
            "--operation",
            "Describe",
            "--group",
            "g1",
        ],
    );
    let mut alice = login(&strom, Some("alice")).await;

    // v8: all topics of g1 -> only what alice may describe; g2 -> refused.
    let req = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(group("g1"))
            .with_topics(None),
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(group("g2"))
            .with_topics(None),
    ]);
    let r = call!(alice, OffsetFetch, 8, req);
    assert_eq!(r.groups[0].error_code, 0);
    assert_eq!(offsets_of(&r.groups[0]), vec![("visible".into(), 0, 1)]);
    assert_eq!(r.groups[1].error_code, GROUP_DENIED);

    // v8 naming both topics: the hidden one answers TOPIC_AUTHORIZATION_FAILED, no offset.
    let named = |names: &[&str]| {
        Some(
            names
                .iter()
                .map(|n| {
                    offset_fetch_request::OffsetFetchRequestTopics::default()
                        .with_name(topic(n))
                        .with_partition_indexes(vec![0])
                })
                .collect(),
        )
    };
    let req = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(group("g1"))
            .with_topics(named(&["visible", "hidden"])),
    ]);
    let r = call!(alice, OffsetFetch, 8, req);
    assert_eq!(
        offsets_of(&r.groups[0]),
        vec![
            ("hidden".into(), TOPIC_DENIED, -1),
            ("visible".into(), 0, 1)
        ]
    );

    // v7 (one group): the same per topic, and a refused group at the top level.
    let old_named = Some(vec![
        offset_fetch_request::OffsetFetchRequestTopic::default()
            .with_name(topic("visible"))
            .with_partition_indexes(vec![0]),
        offset_fetch_request::OffsetFetchRequestTopic::default()
            .with_name(topic("hidden"))
            .with_partition_indexes(vec![0]),
    ]);
    let r = call!(
        alice,
        OffsetFetch,
        7,
        OffsetFetchRequest::default()
            .with_group_id(group("g1"))
            .with_topics(old_named.clone())
    );
    assert_eq!(r.error_code, 0);
    let codes: Vec<(String, i16, i64)> = r
        .topics
        .iter()
        .map(|t| {
            (
                t.name.to_string(),
                t.partitions[0].error_code,
                t.partitions[0].committed_offset,
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ("visible".into(), 0, 1),
            ("hidden".into(), TOPIC_DENIED, -1)
        ]
    );
    let r = call!(
        alice,
        OffsetFetch,
        7,
        OffsetFetchRequest::default()
            .with_group_id(group("g2"))
            .with_topics(None)
    );
    assert_eq!(r.error_code, GROUP_DENIED);
    assert!(r.topics.is_empty());

    // OffsetDelete: DELETE on the group, then READ on each topic.
    let delete = |group_id: &str| {
        OffsetDeleteRequest::default()
            .with_group_id(group(group_id))
            .with_topics(
                ["visible", "hidden"]
                    .iter()
                    .map(|n| {
                        offset_delete_request::OffsetDeleteRequestTopic::default()
                            .with_name(topic(n))
                            .with_partitions(vec![
                                offset_delete_request::OffsetDeleteRequestPartition::default()
                                    .with_partition_index(0),
                            ])
                    })
                    .collect(),
            )
    };
    let r = call!(alice, OffsetDelete, 0, delete("g1"));
    assert_eq!(r.error_code, GROUP_DENIED, "Describe is not Delete");
    acl(
        &strom,
        &[
            "--principal",
            "User:alice",
            "--operation",
            "Delete",
            "--group",
            "g1",
        ],
    );
    let r = call!(alice, OffsetDelete, 0, delete("g1"));
    assert_eq!(r.error_code, 0);
    let codes: Vec<(String, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.to_string(), t.partitions[0].error_code))
        .collect();
    assert_eq!(
        codes,
        vec![("visible".into(), 0), ("hidden".into(), TOPIC_DENIED)]
    );
    // The super user sees that only the visible topic's offset went.
    let mut admin = login(&strom, None).await;
    let req = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(group("g1"))
            .with_topics(None),
    ]);
    let r = call!(admin, OffsetFetch, 8, req);
    assert_eq!(offsets_of(&r.groups[0]), vec![("hidden".into(), 0, 1)]);
}

fn heartbeat(
    group_id: &str,
    member: &str,
    epoch: i32,
    names: Option<&[&str]>,
    regex: Option<&str>,
) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group(group_id))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 })
        .with_subscribed_topic_names(names.map(|n| n.iter().map(|t| topic(t)).collect()))
        .with_subscribed_topic_regex(regex.map(s))
        .with_topic_partitions(if epoch == 0 { Some(Vec::new()) } else { None })
}

/// Heartbeats until the member has an assignment; returns its topic ids.
async fn assigned_topics(
    c: &mut Connection,
    group_id: &str,
    member: &str,
    names: Option<&[&str]>,
    regex: Option<&str>,
) -> Vec<String> {
    let r = call!(
        c,
        ConsumerGroupHeartbeat,
        1,
        heartbeat(group_id, member, 0, names, regex)
    );
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let mut epoch = r.member_epoch;
    let mut assignment = r.assignment;
    let deadline = Instant::now() + Duration::from_secs(10);
    while assignment
        .as_ref()
        .is_none_or(|a| a.topic_partitions.is_empty())
    {
        assert!(Instant::now() < deadline, "no assignment for {member}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = call!(
            c,
            ConsumerGroupHeartbeat,
            1,
            heartbeat(group_id, member, epoch, None, None)
        );
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        epoch = r.member_epoch;
        if r.assignment.is_some() {
            assignment = r.assignment;
        }
    }
    let mut ids: Vec<String> = assignment
        .unwrap()
        .topic_partitions
        .iter()
        .map(|t| t.topic_id.to_string())
        .collect();
    ids.sort();
    ids
}

/// Topic ids by name, as the super user sees them.
async fn topic_id(admin: &mut Connection, name: &str) -> String {
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic(name))),
    ]));
    let r = call!(admin, Metadata, 12, req);
    r.topics[0].topic_id.to_string()
}

#[tokio::test]
async fn consumer_groups_check_subscribed_topics_and_report_operations() {
    let strom = start(&[]);
    cli(&strom, &["topics", "create", "visible"]);
    cli(&strom, &["topics", "create", "hidden"]);
    acl(
        &strom,
        &[
            "--principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "visible",
        ],
    );
    acl(
        &strom,
        &[
            "--principal",
            "User:alice",
            "--operation",
            "Read",
            "--group",
            "cg",
            "--prefixed",
        ],
    );
    let mut alice = login(&strom, Some("alice")).await;
    let mut admin = login(&strom, None).await;
    let visible = topic_id(&mut admin, "visible").await;

    // Subscribing by name to a topic alice may not describe: refused, and she is not a member.
    let r = call!(
        alice,
        ConsumerGroupHeartbeat,
        1,
        heartbeat("cg-names", "m-1", 0, Some(&["visible", "hidden"]), None)
    );
    assert_eq!(r.error_code, TOPIC_DENIED);
    // By name, describable topics only: joins and gets them.
    assert_eq!(
        assigned_topics(&mut alice, "cg-names", "m-1", Some(&["visible"]), None).await,
        vec![visible.clone()]
    );
    // By pattern: resolves to the topics alice may describe; hidden is left out.
    assert_eq!(
        assigned_topics(&mut alice, "cg-regex", "m-2", None, Some("visible|hidden")).await,
        vec![visible]
    );
    // The super user's pattern takes both.
    let both = assigned_topics(&mut admin, "cg-admin", "m-3", None, Some("visible|hidden")).await;
    assert_eq!(both.len(), 2);

    // ConsumerGroupDescribe: DESCRIBE on the group; a group using a topic alice may not
    // describe answers TOPIC_AUTHORIZATION_FAILED; authorized operations when asked.
    let describe = |ids: &[&str], ops: bool| {
        ConsumerGroupDescribeRequest::default()
            .with_group_ids(ids.iter().map(|g| group(g)).collect())
            .with_include_authorized_operations(ops)
    };
    let r = call!(
        alice,
        ConsumerGroupDescribe,
        0,
        describe(&["cg-regex", "cg-admin", "other"], true)
    );
    assert_eq!(r.groups[0].error_code, 0, "{:?}", r.groups[0].error_message);
    assert_eq!(r.groups[0].members.len(), 1);
    assert_eq!(r.groups[0].authorized_operations, READ | DESCRIBE);
    assert_eq!(r.groups[1].error_code, TOPIC_DENIED);
    assert_eq!(r.groups[2].error_code, GROUP_DENIED);
    let r = call!(
        alice,
        ConsumerGroupDescribe,
        0,
        describe(&["cg-regex"], false)
    );
    assert_eq!(r.groups[0].authorized_operations, NOT_REQUESTED);

    // DescribeGroups (classic API) reports the same operations.
    let r = call!(
        alice,
        DescribeGroups,
        5,
        DescribeGroupsRequest::default()
            .with_groups(vec![group("cg-regex"), group("other")])
            .with_include_authorized_operations(true)
    );
    assert_eq!(r.groups[0].authorized_operations, READ | DESCRIBE);
    assert_eq!(r.groups[1].error_code, GROUP_DENIED);
    let r = call!(
        admin,
        DescribeGroups,
        5,
        DescribeGroupsRequest::default()
            .with_groups(vec![group("cg-regex")])
            .with_include_authorized_operations(true)
    );
    assert_eq!(r.groups[0].authorized_operations, READ | DESCRIBE | DELETE);
    let r = call!(
        admin,
        DescribeGroups,
        5,
        DescribeGroupsRequest::default().with_groups(vec![group("cg-regex")])
    );
    assert_eq!(r.groups[0].authorized_operations, NOT_REQUESTED);
}

#[tokio::test]
async fn metadata_and_cluster_report_authorized_operations() {
    let strom = start(&[]);
    cli(&strom, &["topics", "create", "visible"]);
    acl(
        &strom,
        &[
            "--principal",
            "User:alice",
            "--operation",
            "Read,Write",
            "--topic",
            "visible",
        ],
    );
    acl(
        &strom,
        &[
            "--principal",
            "User:bob",
            "--operation",
            "Describe",
            "--cluster",
        ],
    );
    let mut alice = login(&strom, Some("alice")).await;
    let mut bob = login(&strom, Some("bob")).await;
    let mut admin = login(&strom, None).await;
    let req = |topics: bool, cluster: bool| {
        MetadataRequest::default()
            .with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic("visible"))),
            ]))
            .with_include_topic_authorized_operations(topics)
            .with_include_cluster_authorized_operations(cluster)
    };
    let r = call!(alice, Metadata, 10, req(true, true));
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(
        r.topics[0].topic_authorized_operations,
        READ | WRITE | DESCRIBE
    );
    assert_eq!(r.cluster_authorized_operations, 0);
    let r = call!(alice, Metadata, 12, req(false, false));
    assert_eq!(r.topics[0].topic_authorized_operations, NOT_REQUESTED);
    // Every topic operation for the super user: READ WRITE CREATE DELETE ALTER DESCRIBE
    // DESCRIBE_CONFIGS ALTER_CONFIGS.
    let all_topic_ops = [3, 4, 5, 6, 7, 8, 10, 11]
        .iter()
        .map(|b| 1 << b)
        .sum::<i32>();
    let r = call!(admin, Metadata, 12, req(true, false));
    assert_eq!(r.topics[0].topic_authorized_operations, all_topic_ops);
    // Cluster operations: DESCRIBE for bob (through Metadata v10 and DescribeCluster).
    let r = call!(bob, Metadata, 10, req(false, true));
    assert_eq!(r.cluster_authorized_operations, DESCRIBE);
    let r = call!(
        bob,
        DescribeCluster,
        1,
        DescribeClusterRequest::default()
            .with_include_cluster_authorized_operations(true)
            .with_endpoint_type(1)
    );
    assert_eq!(r.error_code, 0);
    assert_eq!(r.cluster_authorized_operations, DESCRIBE);
    let r = call!(
        bob,
        DescribeCluster,
        1,
        DescribeClusterRequest::default().with_endpoint_type(1)
    );
    assert_eq!(r.cluster_authorized_operations, NOT_REQUESTED);
    let r = call!(
        alice,
        DescribeCluster,
        1,
        DescribeClusterRequest::default()
            .with_include_cluster_authorized_operations(true)
            .with_endpoint_type(1)
    );
    assert_eq!(r.error_code, CLUSTER_DENIED);
    // CREATE CLUSTER_ACTION DESCRIBE_CONFIGS ALTER_CONFIGS IDEMPOTENT_WRITE ALTER DESCRIBE.
    let all_cluster_ops = [5, 9, 10, 11, 12, 7, 8].iter().map(|b| 1 << b).sum::<i32>();
    let r = call!(
        admin,
        DescribeCluster,
        1,
        DescribeClusterRequest::default()
            .with_include_cluster_authorized_operations(true)
            .with_endpoint_type(1)
    );
    assert_eq!(r.cluster_authorized_operations, all_cluster_ops);

    // DescribeLogDirs: DESCRIBE on the cluster. v4 says so; v1 (no error field) lists nothing.
    let r = call!(alice, DescribeLogDirs, 4, DescribeLogDirsRequest::default());
    assert_eq!(r.error_code, CLUSTER_DENIED);
    let r = call!(
        alice,
        DescribeLogDirs,
        1,
        DescribeLogDirsRequest::default().with_topics(None)
    );
    assert!(r.results.is_empty(), "{:?}", r.results);
    let r = call!(
        bob,
        DescribeLogDirs,
        1,
        DescribeLogDirsRequest::default().with_topics(None)
    );
    assert_eq!(r.results.len(), 1);
    assert!(!r.results[0].topics.is_empty());

    // CreateTopics answers with the new topic's configs only to those who may describe them.
    acl(
        &strom,
        &[
            "--principal",
            "User:alice",
            "--operation",
            "Create",
            "--topic",
            "alice-new",
        ],
    );
    let create = |name: &str| {
        CreateTopicsRequest::default()
            .with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(topic(name))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(10_000)
    };
    let r = call!(alice, CreateTopics, 7, create("alice-new"));
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[0].topic_config_error_code, TOPIC_DENIED);
    assert!(r.topics[0].configs.as_ref().is_none_or(|c| c.is_empty()));
    assert_eq!(r.topics[0].num_partitions, 1);
    let r = call!(admin, CreateTopics, 7, create("admin-new"));
    assert_eq!(r.topics[0].topic_config_error_code, 0);
    assert!(r.topics[0].configs.as_ref().is_some_and(|c| !c.is_empty()));
}

#[tokio::test]
async fn transaction_and_producer_apis_check_acls() {
    let strom = start(&[]);
    cli(&strom, &["topics", "create", "visible"]);
    cli(&strom, &["topics", "create", "hidden"]);
    transaction(&strom, "tx-a", &["visible", "hidden"]);
    transaction(&strom, "tx-b", &["visible"]);
    acl(
        &strom,
        &[
            "--principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "visible",
        ],
    );
    acl(
        &strom,
        &[
            "--principal",
            "User:alice",
            "--operation",
            "Describe",
            "--transactional-id",
            "tx-a",
            "--prefixed",
        ],
    );
    // A transaction left open over both topics.
    let open: BaseProducer = client_config(&strom.bootstrap())
        .set("transactional.id", "tx-a-open")
        .create()
        .unwrap();
    open.init_transactions(Duration::from_secs(10)).unwrap();
    open.begin_transaction().unwrap();
    for t in ["visible", "hidden"] {
        open.send(BaseRecord::<(), _>::to(t).payload("v")).unwrap();
    }
    open.flush(Duration::from_secs(10)).unwrap();
    let mut alice = login(&strom, Some("alice")).await;

    // DescribeTransactions: DESCRIBE on each transactional id; of an open transaction's
    // partitions only the describable topics are shown.
    let r = call!(
        alice,
        DescribeTransactions,
        0,
        DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s("tx-a-open"))])
    );
    let t = &r.transaction_states[0];
    assert_eq!((t.error_code, t.transaction_state.as_str()), (0, "Ongoing"));
    let names: Vec<String> = t.topics.iter().map(|t| t.topic.to_string()).collect();
    assert_eq!(names, vec!["visible".to_string()]);
    let mut admin = login(&strom, None).await;
    let r = call!(
        admin,
        DescribeTransactions,
        0,
        DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s("tx-a-open"))])
    );
    assert_eq!(r.transaction_states[0].topics.len(), 2);
    let r = call!(
        alice,
        DescribeTransactions,
        0,
        DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(s("tx-a")), TransactionalId(s("tx-b")),])
    );
    assert_eq!(r.transaction_states[0].error_code, 0);
    assert_eq!(
        r.transaction_states[0].transaction_state.as_str(),
        "CompleteCommit"
    );
    assert_eq!(r.transaction_states[1].error_code, TXN_DENIED);

    // ListTransactions: only the ids alice may describe.
    let r = call!(
        alice,
        ListTransactions,
        1,
        ListTransactionsRequest::default().with_duration_filter(-1)
    );
    assert_eq!(r.error_code, 0);
    let mut ids: Vec<String> = r
        .transaction_states
        .iter()
        .map(|t| t.transactional_id.to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["tx-a".to_string(), "tx-a-open".to_string()]);
    let r = call!(
        admin,
        ListTransactions,
        1,
        ListTransactionsRequest::default().with_duration_filter(-1)
    );
    assert_eq!(r.transaction_states.len(), 3);

    // DescribeProducers: READ on the topic.
    let r = call!(
        alice,
        DescribeProducers,
        0,
        DescribeProducersRequest::default().with_topics(
            ["visible", "hidden"]
                .iter()
                .map(|n| {
                    describe_producers_request::TopicRequest::default()
                        .with_name(topic(n))
                        .with_partition_indexes(vec![0])
                })
                .collect()
        )
    );
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(r.topics[0].partitions[0].active_producers.len(), 3);
    assert_eq!(r.topics[1].partitions[0].error_code, TOPIC_DENIED);
    assert!(r.topics[1].partitions[0].active_producers.is_empty());

    // AddPartitionsToTxn v4+ is the brokers' verification form: CLUSTER_ACTION.
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
        add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(s("tx-a")))
            .with_producer_id(ProducerId(0))
            .with_producer_epoch(0)
            .with_verify_only(true)
            .with_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(topic("visible"))
                    .with_partitions(vec![0]),
            ]),
    ]);
    let r = call!(alice, AddPartitionsToTxn, 5, req.clone());
    assert_eq!(r.error_code, CLUSTER_DENIED);
    let r = call!(admin, AddPartitionsToTxn, 5, req);
    assert_eq!(r.error_code, 0);

    // OffsetForLeaderEpoch: DESCRIBE on the topic.
    let r = call!(
        alice,
        OffsetForLeaderEpoch,
        4,
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                ["visible", "hidden"]
                    .iter()
                    .map(|n| {
                        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                            .with_topic(topic(n))
                            .with_partitions(vec![
                                offset_for_leader_epoch_request::OffsetForLeaderPartition::default(
                                )
                                .with_partition(0)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(0),
                            ])
                    })
                    .collect()
            )
    );
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert!(r.topics[0].partitions[0].end_offset >= 2);
    assert_eq!(r.topics[1].partitions[0].error_code, TOPIC_DENIED);
}

/// The broker's log without terminal colour codes.
fn plain_log(strom: &Strom) -> String {
    let text = strom.log_text();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The lines of the strom::audit target that mention `needle`.
fn audit_lines(strom: &Strom, needle: &str) -> Vec<String> {
    plain_log(strom)
        .lines()
        .filter(|l| l.contains("strom::audit") && l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn admin_operations_are_audited_when_enabled() {
    let props = [
        "authorizer.class.name=strom",
        "super.users=User:ANONYMOUS",
        "sasl.plain.users=alice:alice-pw",
        "strom.audit.admin.operations.enable=true",
    ];
    let strom = Strom::start_logged(
        &["PLAINTEXT", "SASL_PLAINTEXT"],
        &props,
        "warn,strom::audit=info",
    );
    cli(
        &strom,
        &["topics", "create", "audited", "--partitions", "2"],
    );
    cli(
        &strom,
        &[
            "topics",
            "alter",
            "audited",
            "--config",
            "retention.ms=60000",
        ],
    );
    cli(&strom, &["topics", "alter", "audited", "--partitions", "3"]);
    cli(
        &strom,
        &[
            "quotas",
            "set",
            "--client-id",
            "c1",
            "--add",
            "producer_byte_rate=1000",
        ],
    );
    acl(
        &strom,
        &[
            "--principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "audited",
        ],
    );
    // alice may not delete it: audited with the refusal.
    let mut alice_cfg = client_config(&strom.listener("SASL_PLAINTEXT"));
    alice_cfg
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", "alice")
        .set("sasl.password", "alice-pw");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
            alice_cfg.create().unwrap();
        let r = admin
            .delete_topics(
                &["audited"],
                &rdkafka::admin::AdminOptions::new()
                    .operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap();
        assert!(r[0].is_err());
    });
    cli(
        &strom,
        &[
            "users",
            "scram",
            "set",
            "carol",
            "--password",
            "Carol-Secret-42",
        ],
    );
    commit(&strom, "audited-group", &["audited"], 1);
    cli(
        &strom,
        &[
            "groups",
            "delete-offsets",
            "audited-group",
            "--topic",
            "audited",
        ],
    );
    cli(&strom, &["groups", "delete", "audited-group"]);
    cli(&strom, &["topics", "delete", "audited"]);

    // The log is written asynchronously: wait for the last line.
    let deadline = Instant::now() + Duration::from_secs(10);
    while audit_lines(&strom, "principal=User:ANONYMOUS")
        .iter()
        .all(|l| !l.contains("DeleteTopics"))
    {
        assert!(Instant::now() < deadline, "{}", strom.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = plain_log(&strom);
    let has = |parts: &[&str]| {
        audit_lines(&strom, "admin operation")
            .iter()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    };
    assert!(
        has(&[
            "CreateTopics",
            "topic:audited",
            "partitions=2",
            "result=NONE"
        ]),
        "{log}"
    );
    assert!(
        has(&[
            "AlterConfigs",
            "topic:audited",
            "retention.ms",
            "result=NONE"
        ]) || has(&[
            "IncrementalAlterConfigs",
            "topic:audited",
            "retention.ms",
            "result=NONE"
        ]),
        "{log}"
    );
    assert!(
        !log.contains("60000"),
        "config values are not logged: {log}"
    );
    assert!(
        has(&["CreatePartitions", "count=3", "result=NONE"]),
        "{log}"
    );
    assert!(
        has(&[
            "AlterClientQuotas",
            "client-id=c1",
            "producer_byte_rate",
            "result=NONE"
        ]),
        "{log}"
    );
    assert!(has(&["CreateAcls", "User:alice", "result=NONE"]), "{log}");
    assert!(
        has(&[
            "principal=User:alice",
            "DeleteTopics",
            "topic:audited",
            "result=TOPIC_AUTHORIZATION_FAILED"
        ]),
        "{log}"
    );
    assert!(
        has(&[
            "principal=User:ANONYMOUS",
            "DeleteTopics",
            "topic:audited",
            "result=NONE"
        ]),
        "{log}"
    );
    assert!(
        has(&[
            "AlterUserScramCredentials",
            "user:carol",
            "SCRAM-SHA-256",
            "result=NONE"
        ]),
        "{log}"
    );
    assert!(
        !log.contains("Carol-Secret-42"),
        "credentials are not logged: {log}"
    );
    assert!(
        has(&[
            "OffsetDelete",
            "group:audited-group",
            "audited-0",
            "result=NONE"
        ]),
        "{log}"
    );
    assert!(
        has(&["DeleteGroups", "group:audited-group", "result=NONE"]),
        "{log}"
    );
    // Reads are not admin operations.
    assert!(!has(&["Metadata"]), "{log}");
}

#[test]
fn admin_operations_are_not_audited_by_default() {
    let strom = Strom::start_logged(&["PLAINTEXT"], &[], "warn,strom::audit=info");
    cli(&strom, &["topics", "create", "quiet"]);
    cli(&strom, &["topics", "delete", "quiet"]);
    // Give a line that would be written the time to appear.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !strom.log_text().contains("admin operation"),
        "{}",
        strom.log_text()
    );
}
