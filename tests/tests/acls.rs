//! ACLs end to end: the built-in authorizer (authorizer.class.name set) with ACLs managed by
//! `strom acls`, checked with librdkafka clients logged in over SASL PLAIN. For each operation
//! an allowed principal succeeds and a denied one gets Kafka's error code. The plaintext
//! listener is the administrators' door here: its anonymous principal is a super user.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use strom_e2e::{Strom, client_config};

fn start() -> Strom {
    Strom::start_listeners(
        &["PLAINTEXT", "SASL_PLAINTEXT"],
        &[
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:ANONYMOUS;User:admin",
            "sasl.plain.users=alice:alice-pw,bob:bob-pw,admin:admin-pw",
            "connection.failed.authentication.delay.ms=10",
        ],
    )
}

fn user(strom: &Strom, name: &str) -> ClientConfig {
    let mut c = client_config(&strom.listener("SASL_PLAINTEXT"));
    c.set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", name)
        .set("sasl.password", format!("{name}-pw"));
    c
}

fn acl(strom: &Strom, args: &[&str]) {
    let mut all = vec!["acls"];
    all.extend_from_slice(args);
    let (ok, out, err) = strom.cli(&all);
    assert!(ok, "strom {all:?}: {out}{err}");
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

async fn produce(config: &ClientConfig, topic: &str) -> Result<i64, RDKafkaErrorCode> {
    let mut config = config.clone();
    config.set("message.timeout.ms", "6000");
    let p: FutureProducer = config.create().unwrap();
    p.send(
        FutureRecord::<(), _>::to(topic).payload("v"),
        Duration::from_secs(6),
    )
    .await
    .map(|d| d.offset)
    .map_err(|(e, _)| e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown))
}

/// Reads one record of partition 0 from the start, or the error the consumer reports.
fn fetch_one(config: &ClientConfig, topic: &str) -> Result<(), RDKafkaErrorCode> {
    let mut config = config.clone();
    // librdkafka wants a group even for assigned partitions: everyone may read readers-*.
    config
        .set("group.id", "readers-1")
        .set("enable.auto.commit", "false");
    let c: BaseConsumer = config.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                assert_eq!(m.payload(), Some(&b"v"[..]));
                return Ok(());
            }
            Some(Err(e)) => {
                return Err(e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown));
            }
            None => {}
        }
    }
    Err(RDKafkaErrorCode::RequestTimedOut)
}

fn topic_names(config: &ClientConfig) -> Vec<String> {
    let c: BaseConsumer = config.create().unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(5)).unwrap();
    let mut names: Vec<String> = md
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
        .map(|t| t.name().to_string())
        .collect();
    names.sort();
    names
}

fn commit(config: &ClientConfig, group: &str, topic: &str) -> Result<(), RDKafkaErrorCode> {
    let mut config = config.clone();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    let c: BaseConsumer = config.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(1))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync)
        .map_err(|e| e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown))
}

#[tokio::test]
async fn acl_matrix() {
    let strom = start();
    let admin: AdminClient<DefaultClientContext> =
        client_config(&strom.bootstrap()).create().unwrap();
    let new = |name| NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for r in admin
        .create_topics(
            &[
                new("orders-eu"),
                new("orders-secret"),
                new("orders-old"),
                new("payments"),
                new("public-news"),
            ],
            &opts(),
        )
        .await
        .unwrap()
    {
        r.unwrap();
    }
    acl(
        &strom,
        &[
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "Write,Read",
            "--topic",
            "orders-",
            "--prefixed",
        ],
    );
    acl(
        &strom,
        &[
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "All",
            "--topic",
            "orders-secret",
            "--deny",
        ],
    );
    acl(
        &strom,
        &[
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "Read",
            "--group",
            "alice-",
            "--prefixed",
        ],
    );
    acl(
        &strom,
        &[
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "Create",
            "--topic",
            "alice-new",
        ],
    );
    acl(
        &strom,
        &[
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "Delete",
            "--topic",
            "orders-old",
        ],
    );
    acl(
        &strom,
        &[
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "DescribeConfigs",
            "--topic",
            "orders-eu",
        ],
    );
    acl(
        &strom,
        &[
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "Write",
            "--transactional-id",
            "alice-tx",
        ],
    );
    acl(
        &strom,
        &[
            "add",
            "--principal",
            "User:*",
            "--operation",
            "Read",
            "--topic",
            "public-",
            "--prefixed",
        ],
    );
    acl(
        &strom,
        &[
            "add",
            "--principal",
            "User:*",
            "--operation",
            "Read",
            "--group",
            "readers-",
            "--prefixed",
        ],
    );
    // alice may find the coordinator of other-group (DESCRIBE) but not use the group (READ).
    acl(
        &strom,
        &[
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "Describe",
            "--group",
            "other-group",
        ],
    );
    // bob may see orders-eu but not read it, so his Fetch reaches the broker's READ check.
    acl(
        &strom,
        &[
            "add",
            "--principal",
            "User:bob",
            "--operation",
            "Describe",
            "--topic",
            "orders-eu",
        ],
    );
    let (ok, out, _) = strom.cli(&["acls", "list", "--principal", "User:alice"]);
    assert!(
        ok && out.contains("orders-secret") && out.contains("DENY"),
        "{out}"
    );
    assert_eq!(out.matches("User:alice").count(), 9, "{out}");

    let alice = user(&strom, "alice");
    let bob = user(&strom, "bob");

    // Produce: WRITE on the topic; a DENY beats the prefixed ALLOW.
    assert_eq!(produce(&alice, "orders-eu").await, Ok(0));
    assert_eq!(
        produce(&alice, "public-news").await,
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    assert_eq!(
        produce(&alice, "orders-secret").await,
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    assert_eq!(
        produce(&bob, "orders-eu").await,
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    assert_eq!(
        produce(&user(&strom, "admin"), "payments").await,
        Ok(0),
        "super user"
    );

    // Fetch: READ on the topic (User:* on public-).
    assert_eq!(fetch_one(&alice, "orders-eu"), Ok(()));
    assert_eq!(produce(&user(&strom, "admin"), "public-news").await, Ok(0));
    assert_eq!(fetch_one(&bob, "public-news"), Ok(()));
    assert_eq!(
        fetch_one(&bob, "orders-eu"),
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );

    // Metadata lists only what the principal may describe (READ/WRITE imply DESCRIBE).
    assert_eq!(
        topic_names(&alice),
        vec!["orders-eu", "orders-old", "public-news"]
    );
    assert_eq!(topic_names(&bob), vec!["orders-eu", "public-news"]);

    // Groups: READ on the group, and READ on the topic of a committed offset.
    assert_eq!(commit(&alice, "alice-group", "orders-eu"), Ok(()));
    assert_eq!(
        commit(&alice, "other-group", "orders-eu"),
        Err(RDKafkaErrorCode::GroupAuthorizationFailed)
    );
    let consumer = {
        let mut c = alice.clone();
        c.set("group.id", "alice-subscribers")
            .set("auto.offset.reset", "earliest");
        let c: BaseConsumer = c.create().unwrap();
        c.subscribe(&["orders-eu"]).unwrap();
        c
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = None;
    while got.is_none() && Instant::now() < deadline {
        got = consumer.poll(Duration::from_millis(200));
    }
    assert!(
        matches!(got, Some(Ok(_))),
        "alice joins her group and reads: {got:?}"
    );

    // Topic creation: CREATE on the topic (or cluster); deletion: DELETE on the topic.
    let alice_admin: AdminClient<DefaultClientContext> = alice.create().unwrap();
    let bob_admin: AdminClient<DefaultClientContext> = bob.create().unwrap();
    let created = alice_admin
        .create_topics(&[new("alice-new"), new("other-new")], &opts())
        .await
        .unwrap();
    assert_eq!(created[0], Ok("alice-new".to_string()));
    assert_eq!(
        created[1],
        Err((
            "other-new".to_string(),
            RDKafkaErrorCode::TopicAuthorizationFailed
        ))
    );
    let deleted = bob_admin
        .delete_topics(&["orders-old"], &opts())
        .await
        .unwrap();
    assert_eq!(
        deleted[0],
        Err((
            "orders-old".to_string(),
            RDKafkaErrorCode::TopicAuthorizationFailed
        ))
    );
    let deleted = alice_admin
        .delete_topics(&["orders-old"], &opts())
        .await
        .unwrap();
    assert_eq!(deleted[0], Ok("orders-old".to_string()));

    // DescribeConfigs: DESCRIBE_CONFIGS on the topic.
    let described = alice_admin
        .describe_configs(
            &[
                ResourceSpecifier::Topic("orders-eu"),
                ResourceSpecifier::Topic("payments"),
            ],
            &opts(),
        )
        .await
        .unwrap();
    // The rdkafka crate drops per-resource error codes of DescribeConfigs: a refused
    // resource comes back without entries.
    assert!(!described[0].as_ref().unwrap().entries.is_empty());
    assert!(described[1].as_ref().unwrap().entries.is_empty());

    // Transactions: WRITE on the transactional id.
    let txn_producer = |config: &ClientConfig| -> Result<BaseProducer, KafkaError> {
        let p: BaseProducer = config
            .clone()
            .set("transactional.id", "alice-tx")
            .create()?;
        p.init_transactions(Duration::from_secs(10))?;
        Ok(p)
    };
    let p = txn_producer(&alice).expect("alice may use alice-tx");
    p.begin_transaction().unwrap();
    p.send(BaseRecord::<(), _>::to("orders-eu").payload("v"))
        .unwrap();
    p.commit_transaction(Duration::from_secs(10)).unwrap();
    let err = txn_producer(&bob).err().expect("bob may not use alice-tx");
    assert_eq!(
        err.rdkafka_error_code(),
        Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
        "{err:?}"
    );

    // Removing the DENY opens orders-secret to alice's prefixed ALLOW.
    let (ok, out, err) = strom.cli(&[
        "acls",
        "remove",
        "--principal",
        "User:alice",
        "--topic",
        "orders-secret",
        "--deny",
    ]);
    assert!(ok && out.contains("removed 1 ACL"), "{out}{err}");
    assert_eq!(produce(&alice, "orders-secret").await, Ok(0));
}

#[tokio::test]
async fn acls_need_an_authorizer_and_alter_on_the_cluster() {
    // Without an authorizer everything is allowed and ACL requests say so.
    let open = Strom::start(&[]);
    let (ok, _, err) = open.cli(&["acls", "list"]);
    assert!(!ok && err.contains("SECURITY_DISABLED"), "{err}");
    drop(open);
    // With one, a principal that is not a super user cannot add ACLs... (the CLI speaks
    // plaintext only, whose anonymous principal is not a super user here).
    let strom = Strom::start(&["authorizer.class.name=strom", "super.users=User:admin"]);
    let (ok, _, err) = strom.cli(&[
        "acls",
        "add",
        "--principal",
        "User:x",
        "--operation",
        "Read",
        "--topic",
        "t",
    ]);
    assert!(!ok && err.contains("CLUSTER_AUTHORIZATION_FAILED"), "{err}");
    // ... and anonymous clients see no topics and cannot produce.
    let c: BaseConsumer = client_config(&strom.bootstrap()).create().unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(5)).unwrap();
    assert!(md.topics().is_empty());
    assert_eq!(
        produce(&client_config(&strom.bootstrap()), "t").await,
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
}
