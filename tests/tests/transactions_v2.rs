//! Transactions v2 (KIP-890) at the protocol level. No client available to the test suite speaks
//! it yet (librdkafka does not; the Java client 4.x does), so the requests are sent as such a
//! client sends them: no AddPartitionsToTxn / AddOffsetsToTxn, EndTxn v5 returning the next
//! epoch. The transactions are then read back with librdkafka.

use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use strom_client::{Connection, ConnectionConfig};
use strom_e2e::{Strom, client_config, consumer_config};
use strom_protocol::compression::Codec;
use strom_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use strom_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use strom_protocol::messages::{
    ApiVersionsRequest, EndTxnRequest, GroupId, InitProducerIdRequest, ProduceRequest, ProducerId,
    TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use strom_protocol::records::{BatchProducer, ProducerRecord, encode_producer_batch};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, str_bytes};

const TXN: &str = "tv2-tx";

fn batch(pid: i64, epoch: i16, seq: i32, value: &str) -> Bytes {
    let rec = ProducerRecord {
        key: None,
        value: Some(Bytes::from(value.to_string())),
        headers: Vec::new(),
        timestamp_ms: 1_700_000_000_000,
    };
    let producer = BatchProducer {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        transactional: true,
    };
    encode_producer_batch(&[rec], Codec::None, producer).unwrap()
}

async fn produce(c: &mut Connection, version: i16, records: Bytes) -> i16 {
    let mut req = ProduceRequest::default();
    req.transactional_id = Some(TransactionalId(str_bytes(TXN)));
    req.acks = -1;
    req.timeout_ms = 10_000;
    let mut pd = PartitionProduceData::default();
    pd.index = 0;
    pd.records = Some(records);
    let mut td = TopicProduceData::default();
    td.name = TopicName(str_bytes("tv2"));
    td.partition_data = vec![pd];
    req.topic_data = vec![td];
    let ResponseKind::Produce(r) = c
        .send(ApiKey::Produce, version, RequestKind::Produce(req))
        .await
        .unwrap()
    else {
        panic!("not a produce response")
    };
    r.responses[0].partition_responses[0].error_code
}

async fn end(c: &mut Connection, pid: i64, epoch: i16, commit: bool) -> (i16, i64, i16) {
    let mut req = EndTxnRequest::default();
    req.transactional_id = TransactionalId(str_bytes(TXN));
    req.producer_id = ProducerId(pid);
    req.producer_epoch = epoch;
    req.committed = commit;
    let ResponseKind::EndTxn(r) = c
        .send(ApiKey::EndTxn, 5, RequestKind::EndTxn(req))
        .await
        .unwrap()
    else {
        panic!("not an EndTxn response")
    };
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

#[test]
fn epoch_bump_per_transaction_fences_late_writes() {
    let strom = Strom::start(&["num.partitions=1", "group.initial.rebalance.delay.ms=0"]);
    let bootstrap = strom.bootstrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Connection::connect(&bootstrap, ConnectionConfig::default())
            .await
            .unwrap();
        // The feature that tells clients to use transactions v2.
        let ResponseKind::ApiVersions(v) = c
            .send(
                ApiKey::ApiVersions,
                3,
                RequestKind::ApiVersions(ApiVersionsRequest::default()),
            )
            .await
            .unwrap()
        else {
            panic!()
        };
        let tv = v
            .finalized_features
            .iter()
            .find(|f| f.name.as_str() == "transaction.version")
            .expect("transaction.version finalized");
        assert_eq!(tv.max_version_level, 2);

        let mut init = InitProducerIdRequest::default();
        init.transactional_id = Some(TransactionalId(str_bytes(TXN)));
        init.transaction_timeout_ms = 60_000;
        init.producer_id = ProducerId(-1);
        init.producer_epoch = -1;
        let ResponseKind::InitProducerId(r) = c
            .send(ApiKey::InitProducerId, 5, RequestKind::InitProducerId(init))
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(r.error_code, 0);
        let (pid, e0) = (r.producer_id.0, r.producer_epoch);

        // The topic exists once a plain write auto-creates it.
        let mut plain = ProduceRequest::default();
        plain.acks = -1;
        plain.timeout_ms = 10_000;
        let mut pd = PartitionProduceData::default();
        pd.records = Some(
            strom_protocol::records::encode_batch(
                &[ProducerRecord {
                    key: None,
                    value: Some(Bytes::from_static(b"plain")),
                    headers: Vec::new(),
                    timestamp_ms: 1,
                }],
                Codec::None,
            )
            .unwrap(),
        );
        let mut td = TopicProduceData::default();
        td.name = TopicName(str_bytes("tv2"));
        td.partition_data = vec![pd];
        plain.topic_data = vec![td];
        c.send(ApiKey::Produce, 12, RequestKind::Produce(plain))
            .await
            .unwrap();

        // A classic (v11) client must add the partition first.
        assert_eq!(produce(&mut c, 11, batch(pid, e0, 0, "refused")).await, 48);
        // Transaction 1: the write adds the partition, the offset commit its group partition.
        assert_eq!(produce(&mut c, 12, batch(pid, e0, 0, "one")).await, 0);
        let mut commit = TxnOffsetCommitRequest::default();
        commit.transactional_id = TransactionalId(str_bytes(TXN));
        commit.group_id = GroupId(str_bytes("tv2-group"));
        commit.producer_id = ProducerId(pid);
        commit.producer_epoch = e0;
        commit.generation_id = -1;
        let mut part = TxnOffsetCommitRequestPartition::default();
        part.partition_index = 0;
        part.committed_offset = 7;
        let mut topic = TxnOffsetCommitRequestTopic::default();
        topic.name = TopicName(str_bytes("tv2"));
        topic.partitions = vec![part];
        commit.topics = vec![topic];
        let ResponseKind::TxnOffsetCommit(r) = c
            .send(
                ApiKey::TxnOffsetCommit,
                5,
                RequestKind::TxnOffsetCommit(commit),
            )
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        let (code, pid1, e1) = end(&mut c, pid, e0, true).await;
        assert_eq!(
            (code, pid1, e1),
            (0, pid, e0 + 1),
            "EndTxn v5 bumps the epoch"
        );

        // A late write of transaction 1 cannot land in what comes next.
        assert_eq!(produce(&mut c, 12, batch(pid, e0, 1, "late")).await, 47);
        // Transaction 2 runs at the new epoch from sequence 0, and is aborted.
        assert_eq!(produce(&mut c, 12, batch(pid, e1, 0, "two")).await, 0);
        let (code, _, e2) = end(&mut c, pid, e1, false).await;
        assert_eq!((code, e2), (0, e1 + 1));
        // A retry of that EndTxn (its answer lost) gets the same answer.
        assert_eq!(end(&mut c, pid, e1, false).await, (0, pid, e2));
        // Ending again at the current epoch with nothing open is a state error.
        assert_eq!(end(&mut c, pid, e2, true).await.0, 48);
    });

    // librdkafka reading committed data sees "plain" and "one" only.
    let consumer: BaseConsumer = consumer_config(&bootstrap)
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("tv2", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut values = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            values.push(String::from_utf8_lossy(m.unwrap().payload().unwrap()).into_owned());
        }
    }
    assert_eq!(values, ["plain", "one"]);
    // The offset committed in transaction 1 is the group's.
    let group: BaseConsumer = client_config(&bootstrap)
        .set("group.id", "tv2-group")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("tv2", 0);
    let committed = group
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        committed.find_partition("tv2", 0).unwrap().offset(),
        Offset::Offset(7)
    );
}
