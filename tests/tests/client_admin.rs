//! strom's admin client (`strom_client::Admin`) against the real broker, one area per test:
//! topics, configs, partition offsets and records; consumer groups and their offsets; ACLs,
//! SCRAM credentials, quotas, reassignments, elections, transactions and producers; the cluster,
//! its log directories and features. Refusals come back typed: the Kafka error name, whether it
//! is retriable, and the resource refused.

use std::collections::BTreeMap;

use strom_client::admin::{Admin, AlterConfigOp, ConfigResource, NewTopic, OffsetSpec};
use strom_client::producer::{GroupMetadata, Producer, Record};
use strom_client::{Acl, AclFilterSpec, ClientError, Properties, ScramUpsert};
use strom_e2e::Strom;

fn admin(bootstrap: &str) -> Admin {
    Admin::new(
        Properties::default()
            .set("bootstrap.servers", bootstrap)
            .set("default.api.timeout.ms", 30_000),
    )
    .expect("admin")
}

/// Asserts a typed refusal: its Kafka name, not retriable, and the resource it names.
fn refused(e: ClientError, name: &str, resource: &str) {
    assert_eq!(e.error_name(), Some(name), "{e}");
    assert!(!e.is_retriable(), "{name} is not retriable: {e}");
    assert_eq!(e.resource_name(), Some(resource), "{e}");
}

async fn produce(bootstrap: &str, topic: &str, partition: i32, n: usize, timestamp: i64) {
    let producer = Producer::new(
        Properties::default()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", 0),
    )
    .expect("producer");
    let mut futures = Vec::new();
    for i in 0..n {
        let r = Record::new(topic, format!("v{i}"))
            .partition(partition)
            .timestamp(timestamp + i as i64);
        futures.push(producer.send(r).await.expect("send"));
    }
    for f in futures {
        f.await.expect("delivered");
    }
    producer.close().await.expect("close");
}

#[test]
fn configuration_is_refused_with_the_property_named() {
    for (props, needle) in [
        (vec![], "bootstrap.servers"),
        (
            vec![("bootstrap.servers", "h:1"), ("retries", "x")],
            "retries",
        ),
        (
            vec![("bootstrap.servers", "h:1"), ("linger.ms", "5")],
            "linger.ms",
        ),
        (
            vec![
                ("bootstrap.servers", "h:1"),
                ("default.api.timeout.ms", "10"),
            ],
            "default.api.timeout.ms",
        ),
    ] {
        let p: Properties = props.into_iter().collect();
        let e = Admin::new(p).err().expect("refused");
        assert!(matches!(e, ClientError::Config { .. }), "{e}");
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
}

#[tokio::test]
async fn topics_configs_offsets_records_and_the_cluster() {
    let strom = Strom::start(&[]);
    let bootstrap = strom.bootstrap();
    let admin = admin(&bootstrap);

    // The cluster: one broker, which is the controller, and its features.
    let cluster = admin.describe_cluster().await.expect("describe cluster");
    assert_eq!(cluster.brokers.len(), 1, "{cluster:?}");
    let broker = cluster.brokers[0].id;
    assert_eq!(cluster.controller_id, broker);
    let md = admin.metadata(Some(Vec::new())).await.expect("metadata");
    assert_eq!(md.brokers[0].id, broker);
    let features = admin.describe_features().await.expect("features");
    assert!(
        features.iter().any(|f| f.name == "transaction.version"),
        "{features:?}"
    );

    // Create in one request: by count with configs, and by explicit assignment, which strom
    // refuses (replicas are placed by the controller): one result per topic.
    let results = admin
        .create_topics(&[
            NewTopic::new("adm-a", 2, 1).config("retention.ms", "123456"),
            NewTopic::with_assignments("adm-x", vec![vec![broker], vec![broker]]),
        ])
        .await
        .expect("create topics");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].0, "adm-a");
    assert!(!results[0].1.as_ref().expect("adm-a").is_zero());
    let (name, refusal) = &results[1];
    assert_eq!(name, "adm-x");
    let e = refusal.as_ref().unwrap_err();
    assert_eq!(e.error_name(), Some("INVALID_REPLICA_ASSIGNMENT"), "{e}");
    assert_eq!(e.resource_name(), Some("topic \"adm-x\""), "{e}");
    admin
        .create_topic(NewTopic::new("adm-b", 3, 1))
        .await
        .expect("create adm-b");
    let described = admin
        .describe_topics(&["adm-b", "adm-a"])
        .await
        .expect("describe");
    assert_eq!(described[0].name, "adm-b");
    assert_eq!(described[0].partitions.len(), 3);
    assert_eq!(described[1].partitions.len(), 2);
    assert!(
        described[1]
            .partitions
            .iter()
            .all(|p| p.leader == broker && p.replicas == vec![broker])
    );
    let names: Vec<String> = admin
        .list_topics()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(
        names.contains(&"adm-a".to_string()) && names.contains(&"adm-b".to_string()),
        "{names:?}"
    );

    // Refusals: an existing topic, an unknown one, an unknown config.
    let e = admin
        .create_topic(NewTopic::new("adm-a", 1, 1))
        .await
        .unwrap_err();
    refused(e, "TOPIC_ALREADY_EXISTS", "topic \"adm-a\"");
    let e = admin.describe_topics(&["adm-none"]).await.unwrap_err();
    assert_eq!(e.error_name(), Some("UNKNOWN_TOPIC_OR_PARTITION"), "{e}");
    assert_eq!(e.resource_name(), Some("topic \"adm-none\""), "{e}");
    let e = admin.delete_topic("adm-none").await.unwrap_err();
    assert_eq!(e.error_name(), Some("UNKNOWN_TOPIC_OR_PARTITION"), "{e}");
    let topic_a = ConfigResource::topic("adm-a");
    let e = admin
        .incremental_alter_configs(&topic_a, &[AlterConfigOp::set("no.such.config", "1")])
        .await
        .unwrap_err();
    refused(e, "INVALID_CONFIG", "topic \"adm-a\"");

    // Configs: the override set at creation, altered, then removed.
    let value = |entries: &[strom_client::ConfigEntry], name: &str| {
        entries
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.value.clone())
    };
    let configs = admin.describe_configs(&topic_a).await.expect("configs");
    assert_eq!(value(&configs, "retention.ms").as_deref(), Some("123456"));
    admin
        .incremental_alter_configs(
            &topic_a,
            &[
                AlterConfigOp::set("retention.ms", "654321"),
                AlterConfigOp::set("cleanup.policy", "compact"),
            ],
        )
        .await
        .expect("alter");
    let configs = admin.describe_configs(&topic_a).await.expect("configs");
    assert_eq!(value(&configs, "retention.ms").as_deref(), Some("654321"));
    assert_eq!(
        value(&configs, "cleanup.policy").as_deref(),
        Some("compact")
    );
    admin
        .incremental_alter_configs(&topic_a, &[AlterConfigOp::delete("cleanup.policy")])
        .await
        .expect("delete config");
    let configs = admin.describe_configs(&topic_a).await.expect("configs");
    assert_eq!(value(&configs, "cleanup.policy").as_deref(), Some("delete"));
    // A broker's configs.
    let broker_configs = admin
        .describe_configs(&ConfigResource::broker(broker))
        .await
        .expect("broker configs");
    assert!(!broker_configs.is_empty());

    // Partitions: grow a topic.
    admin
        .create_partitions("adm-a", 4, None)
        .await
        .expect("create partitions");
    let e = admin.create_partitions("adm-a", 2, None).await.unwrap_err();
    refused(e, "INVALID_PARTITIONS", "topic \"adm-a\"");
    assert_eq!(
        admin.describe_topics(&["adm-a"]).await.unwrap()[0]
            .partitions
            .len(),
        4
    );

    // Offsets and records: 10 records at known times, then the first 4 deleted.
    let t0 = 1_700_000_000_000;
    produce(&bootstrap, "adm-b", 1, 10, t0).await;
    assert_eq!(
        admin.log_offsets("adm-b", 1).await.expect("offsets"),
        (0, 10)
    );
    let asked = [
        ("adm-b".to_string(), 1, OffsetSpec::Timestamp(t0 + 3)),
        ("adm-b".to_string(), 1, OffsetSpec::Timestamp(t0 + 100)),
        ("adm-b".to_string(), 1, OffsetSpec::MaxTimestamp),
        ("adm-b".to_string(), 0, OffsetSpec::Latest),
    ];
    let by_time: Vec<i64> = admin
        .list_offsets(&asked)
        .await
        .into_iter()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(by_time, vec![3, -1, 9, 0]);
    assert_eq!(
        admin
            .delete_records("adm-b", 1, 4)
            .await
            .expect("delete records"),
        4
    );
    assert_eq!(admin.log_offsets("adm-b", 1).await.unwrap(), (4, 10));
    let e = admin
        .list_offset("adm-b", 9, OffsetSpec::Latest)
        .await
        .unwrap_err();
    assert_eq!(e.error_name(), Some("UNKNOWN_TOPIC_OR_PARTITION"), "{e}");

    // Log directories: the broker holds every replica of both topics.
    let dirs = admin.describe_log_dirs(broker).await.expect("log dirs");
    let replicas: Vec<(String, i32)> = dirs
        .iter()
        .flat_map(|d| d.replicas.iter().map(|r| (r.0.clone(), r.1)))
        .filter(|(t, _)| t.starts_with("adm-"))
        .collect();
    assert_eq!(replicas.len(), 7, "{dirs:?}");

    // Delete both.
    let deleted = admin
        .delete_topics(&["adm-a", "adm-b"])
        .await
        .expect("delete");
    assert!(deleted.iter().all(|(_, r)| r.is_ok()), "{deleted:?}");
    let e = admin.describe_topics(&["adm-a"]).await.unwrap_err();
    assert_eq!(e.error_name(), Some("UNKNOWN_TOPIC_OR_PARTITION"), "{e}");
}

#[tokio::test]
async fn groups_and_their_offsets() {
    let strom = Strom::start(&[]);
    let bootstrap = strom.bootstrap();
    let admin = admin(&bootstrap);
    admin
        .create_topic(NewTopic::new("adm-g", 3, 1))
        .await
        .expect("create");
    produce(&bootstrap, "adm-g", 0, 5, 0).await;

    // Offsets committed from outside the group create it (empty, offsets only).
    let offsets: BTreeMap<(String, i32), i64> = [
        (("adm-g".to_string(), 0), 3),
        (("adm-g".to_string(), 1), 0),
        (("adm-g".to_string(), 2), 0),
    ]
    .into_iter()
    .collect();
    admin
        .commit_offsets("adm-group", &offsets)
        .await
        .expect("alter offsets");
    let listed = admin.list_groups(&[]).await.expect("list groups");
    assert!(
        listed.iter().any(|g| g.group_id == "adm-group"),
        "{listed:?}"
    );
    let d = admin.describe_group("adm-group").await.expect("describe");
    assert!(d.is_inactive(), "{d:?}");
    assert_eq!(
        admin.find_coordinator("adm-group").await.unwrap(),
        d.coordinator
    );
    assert_eq!(
        admin
            .fetch_offsets("adm-group", None)
            .await
            .expect("offsets"),
        offsets
    );
    let lag = admin.log_offsets("adm-g", 0).await.unwrap().1 - offsets[&("adm-g".to_string(), 0)];
    assert_eq!(lag, 2);

    // Delete the offsets of one partition, then the group.
    admin
        .delete_offsets("adm-group", "adm-g", &[1])
        .await
        .expect("delete offsets");
    let left = admin.fetch_offsets("adm-group", None).await.unwrap();
    assert_eq!(left.len(), 2, "{left:?}");
    admin.delete_group("adm-group").await.expect("delete group");
    let e = admin.delete_group("adm-group").await.unwrap_err();
    refused(e, "GROUP_ID_NOT_FOUND", "group \"adm-group\"");
}

#[tokio::test]
async fn security_quotas_replicas_and_transactions() {
    let strom = Strom::start(&[
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS",
    ]);
    let bootstrap = strom.bootstrap();
    let admin = admin(&bootstrap);
    admin
        .create_topic(NewTopic::new("adm-s", 1, 1))
        .await
        .expect("create");

    // ACLs: create, describe, delete (codes: topic 2, literal 3, read 3, allow 3).
    let acl = Acl {
        resource_type: 2,
        resource_name: "adm-s".into(),
        pattern_type: 3,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: 3,
        permission_type: 3,
    };
    let created = admin
        .create_acls(std::slice::from_ref(&acl))
        .await
        .expect("create acls");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let filter = AclFilterSpec {
        resource_type: 2,
        resource_name: Some("adm-s".into()),
        pattern_type: 1,
        principal: None,
        host: None,
        operation: 1,
        permission_type: 1,
    };
    assert_eq!(
        admin.describe_acls(&filter).await.expect("describe"),
        vec![acl.clone()]
    );
    assert_eq!(admin.delete_acls(&filter).await.expect("delete"), vec![acl]);
    assert!(admin.describe_acls(&filter).await.unwrap().is_empty());

    // SCRAM credentials.
    let results = admin
        .alter_scram_credentials(
            &[ScramUpsert {
                user: "carol".into(),
                mechanism: 1,
                iterations: 8192,
                salt: vec![7; 16],
                salted_password: vec![9; 32],
            }],
            &[],
        )
        .await
        .expect("alter scram");
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let described = admin
        .describe_scram_credentials(Some(&["carol".to_string()]))
        .await
        .expect("describe scram");
    assert_eq!(described.len(), 1);
    assert_eq!(described[0].1.as_ref().unwrap(), &vec![(1, 8192)]);

    // Quotas.
    let entity = vec![("client-id".to_string(), Some("adm-client".to_string()))];
    admin
        .alter_client_quotas(&entity, &[("producer_byte_rate".into(), Some(1048576.0))])
        .await
        .expect("alter quotas");
    let quotas = admin.describe_client_quotas(&entity).await.expect("quotas");
    assert_eq!(
        quotas,
        vec![(
            entity.clone(),
            vec![("producer_byte_rate".to_string(), 1048576.0)]
        )]
    );

    // Reassignments and elections on one broker: nothing moves, nothing to elect.
    assert!(
        admin
            .list_partition_reassignments()
            .await
            .unwrap()
            .is_empty()
    );
    let broker = admin.describe_cluster().await.unwrap().brokers[0].id;
    let moved = admin
        .alter_partition_reassignments(&[("adm-s".into(), 0, Some(vec![broker]))])
        .await
        .expect("reassign");
    assert!(moved.iter().all(|(_, _, r)| r.is_ok()), "{moved:?}");
    let elected = admin
        .elect_leaders(false, Some(&[("adm-s".into(), 0)]))
        .await
        .expect("elect");
    assert_eq!(elected.len(), 1);
    if let Err(e) = &elected[0].2 {
        assert_eq!(e.error_name(), Some("ELECTION_NOT_NEEDED"), "{e}");
    }

    // Transactions and producers: an open transaction, seen by the admin client.
    let producer = Producer::new(
        Properties::default()
            .set("bootstrap.servers", &bootstrap)
            .set("transactional.id", "adm-txn"),
    )
    .expect("producer");
    producer.init_transactions().await.expect("init");
    producer.begin_transaction().await.expect("begin");
    producer
        .send(Record::new("adm-s", "x").partition(0))
        .await
        .expect("send")
        .await
        .expect("delivered");
    producer
        .send_offsets_to_transaction(&[("adm-s".into(), 0, 1)], &GroupMetadata::new("adm-tg"))
        .await
        .expect("offsets");
    let listed = admin
        .list_transactions(&[])
        .await
        .expect("list transactions");
    assert!(
        listed.iter().any(|t| t.transactional_id == "adm-txn"),
        "{listed:?}"
    );
    let d = admin
        .describe_transaction("adm-txn")
        .await
        .expect("describe");
    assert_eq!(d.state, "Ongoing");
    assert_eq!(d.partitions.get("adm-s"), Some(&vec![0]), "{d:?}");
    let producers = admin
        .describe_producers("adm-s", 0)
        .await
        .expect("producers");
    assert_eq!(producers.len(), 1, "{producers:?}");
    assert!(producers[0].current_txn_start_offset >= 0);
    producer.commit_transaction().await.expect("commit");
    producer.close().await.expect("close");
    let e = admin.describe_transaction("adm-nope").await.unwrap_err();
    assert_eq!(e.error_name(), Some("TRANSACTIONAL_ID_NOT_FOUND"), "{e}");
}
