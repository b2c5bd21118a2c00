//! OffsetForLeaderEpoch against the real broker: where each leader epoch ends, the checks of the
//! asker's current epoch, and the epoch cache surviving a SIGKILL.

use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use strom_client::{Connection, ConnectionConfig};
use strom_e2e::{Strom, client_config};
use strom_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use strom_protocol::messages::{BrokerId, OffsetForLeaderEpochRequest, TopicName};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, str_bytes};

/// (error code, epoch, end offset) for partition 0 of `topic`.
fn end_for(bootstrap: &str, topic: &str, current: i32, epoch: i32) -> (i16, i32, i64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = Connection::connect(bootstrap, ConnectionConfig::default())
            .await
            .unwrap();
        let mut p = OffsetForLeaderPartition::default();
        p.partition = 0;
        p.current_leader_epoch = current;
        p.leader_epoch = epoch;
        let mut t = OffsetForLeaderTopic::default();
        t.topic = TopicName(str_bytes(topic));
        t.partitions = vec![p];
        let mut req = OffsetForLeaderEpochRequest::default();
        req.replica_id = BrokerId(-1);
        req.topics = vec![t];
        let ResponseKind::OffsetForLeaderEpoch(r) = c
            .send(
                ApiKey::OffsetForLeaderEpoch,
                4,
                RequestKind::OffsetForLeaderEpoch(req),
            )
            .await
            .unwrap()
        else {
            panic!("not an OffsetForLeaderEpoch response")
        };
        let e = &r.topics[0].partitions[0];
        (e.error_code, e.leader_epoch, e.end_offset)
    })
}

#[test]
fn epochs_end_where_the_log_says() {
    let mut strom = Strom::start(&["num.partitions=1"]);
    let bootstrap = strom.bootstrap();
    let producer: BaseProducer = client_config(&bootstrap).create().unwrap();
    for i in 0..25 {
        producer
            .send(BaseRecord::<(), str>::to("epochs").payload(&format!("v{i}")))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    // A single broker leads every partition at epoch 0.
    assert_eq!(end_for(&bootstrap, "epochs", 0, 0), (0, 0, 25));
    assert_eq!(end_for(&bootstrap, "epochs", -1, 7), (0, 0, 25));
    // An asker that is ahead of the leader, or behind it, is told so.
    assert_eq!(end_for(&bootstrap, "epochs", 3, 0).0, 75);
    assert_eq!(end_for(&bootstrap, "missing", -1, 0).0, 3);
    strom.kill9();
    strom.restart();
    assert_eq!(end_for(&bootstrap, "epochs", 0, 0), (0, 0, 25));
}
