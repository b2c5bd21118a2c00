//! The coordinators against an in-memory [`CoordinatorLog`]: what they write through the port
//! is all they need to rebuild their state, and a transaction's markers settle the offsets it
//! committed. No broker is involved.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strom_coordinator::group::state::Committed;
use strom_coordinator::group::{GroupConfig, GroupCoordinator, OFFSETS_TOPIC, consumer};
use strom_coordinator::log::PortFuture;
use strom_coordinator::txn::{TXN_TOPIC, TransactionCoordinator, TxnConfig};
use strom_coordinator::{BrokerId, CoordinatorLog, InternalTopic, LeaderEpoch, Offset, ProducerId};
use strom_metadata::{MetadataImage, MetadataRecord};
use strom_protocol::compression::Codec;
use strom_protocol::error_code as ec;
use strom_protocol::records::{BatchProducer, ProducerRecord, encode_producer_batch};
use strom_storage::ControlType;
use strom_storage::batch::{build_control_batch, patch_base_offset};

/// Whole batches of each partition, in log order.
type Batches = HashMap<(String, i32), Vec<Vec<u8>>>;

/// One broker alone, leading every partition; each partition is a list of whole batches.
#[derive(Default)]
struct MemoryLog {
    image: Mutex<MetadataImage>,
    partitions: Mutex<Batches>,
    next_producer_id: Mutex<i64>,
}

impl MemoryLog {
    fn end_offset(batches: &[Vec<u8>]) -> i64 {
        batches
            .iter()
            .map(|b| {
                let base = i64::from_be_bytes(b[0..8].try_into().unwrap());
                let last_delta = i32::from_be_bytes(b[23..27].try_into().unwrap());
                base + i64::from(last_delta) + 1
            })
            .max()
            .unwrap_or(0)
    }

    fn push(&self, topic: &str, partition: i32, mut batch: Vec<u8>) -> i64 {
        let mut parts = self.partitions.lock().unwrap();
        let batches = parts.entry((topic.to_string(), partition)).or_default();
        patch_base_offset(&mut batch, Self::end_offset(batches));
        batches.push(batch);
        Self::end_offset(batches)
    }

    fn batches(&self, topic: &str, partition: i32) -> usize {
        self.partitions
            .lock()
            .unwrap()
            .get(&(topic.to_string(), partition))
            .map_or(0, Vec::len)
    }

    fn markers(&self, topic: &str, partition: i32) -> Vec<(i64, i16)> {
        self.partitions
            .lock()
            .unwrap()
            .get(&(topic.to_string(), partition))
            .into_iter()
            .flatten()
            .filter(|b| i16::from_be_bytes([b[21], b[22]]) & 0x20 != 0)
            .filter_map(|b| {
                let producer_id = i64::from_be_bytes(b[43..51].try_into().unwrap());
                strom_storage::batch::control_record(b).map(|(kind, _)| (producer_id, kind))
            })
            .collect()
    }
}

impl CoordinatorLog for MemoryLog {
    fn node_id(&self) -> BrokerId {
        BrokerId(1)
    }
    fn image(&self) -> Arc<MetadataImage> {
        Arc::new(self.image.lock().unwrap().clone())
    }
    fn hosts(&self, topic: &str, partition: i32) -> bool {
        self.image
            .lock()
            .unwrap()
            .topic(topic)
            .is_some_and(|t| (partition as usize) < t.partitions.len())
    }
    fn leader_epoch(&self, topic: &str, partition: i32) -> Option<LeaderEpoch> {
        self.hosts(topic, partition).then_some(LeaderEpoch(0))
    }
    fn led_partitions(&self, topic: &str) -> Vec<i32> {
        let count = self
            .image
            .lock()
            .unwrap()
            .topic(topic)
            .map_or(0, |t| t.partitions.len() as i32);
        (0..count).collect()
    }
    fn single_node(&self) -> bool {
        true
    }
    fn append(
        &self,
        topic: &str,
        partition: i32,
        records: &[(Bytes, Option<Bytes>)],
        producer: BatchProducer,
    ) -> Result<Offset, i16> {
        if !self.hosts(topic, partition) {
            return Err(ec::NOT_LEADER_OR_FOLLOWER);
        }
        let records: Vec<ProducerRecord> = records
            .iter()
            .map(|(k, v)| ProducerRecord {
                key: Some(k.clone()),
                value: v.clone(),
                headers: Vec::new(),
                timestamp_ms: 0,
            })
            .collect();
        let batch = encode_producer_batch(&records, Codec::None, producer).unwrap();
        Ok(Offset(self.push(topic, partition, batch.to_vec())))
    }
    fn append_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        kind: ControlType,
    ) -> Result<(), i16> {
        let batch = build_control_batch(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            kind.code(),
            0,
        );
        self.push(topic, partition, batch);
        Ok(())
    }
    fn wait_replicated(
        &self,
        _topic: &str,
        _partition: i32,
        _end: Offset,
        _timeout: Duration,
    ) -> PortFuture<'_, Result<(), i16>> {
        Box::pin(async { Ok(()) })
    }
    fn read_all(&self, topic: &str, partition: i32, f: &mut dyn FnMut(Bytes)) {
        let data: Vec<u8> = self
            .partitions
            .lock()
            .unwrap()
            .get(&(topic.to_string(), partition))
            .into_iter()
            .flatten()
            .flatten()
            .copied()
            .collect();
        if !data.is_empty() {
            f(Bytes::from(data));
        }
    }
    fn ensure_topic(&self, topic: InternalTopic) -> PortFuture<'_, Result<(), i16>> {
        let mut image = self.image.lock().unwrap();
        if image.topic(topic.name).is_none() {
            let topic_id = uuid::Uuid::new_v4();
            image.apply(&MetadataRecord::Topic {
                name: topic.name.to_string(),
                topic_id,
            });
            for partition in 0..topic.partitions {
                image.apply(&MetadataRecord::Partition {
                    topic_id,
                    partition,
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    adding: Vec::new(),
                    removing: Vec::new(),
                });
            }
        }
        Box::pin(async { Ok(()) })
    }
    fn allocate_producer_ids(&self, size: i64) -> PortFuture<'_, Result<ProducerId, i16>> {
        let mut next = self.next_producer_id.lock().unwrap();
        let first = *next;
        *next += size;
        Box::pin(async move { Ok(ProducerId(first)) })
    }
}

fn group_config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay: Duration::ZERO,
        min_session_timeout_ms: 10,
        max_session_timeout_ms: 60_000,
        max_size: 10,
        offsets_partitions: 3,
        offsets_retention_ms: 60_000,
        offsets_retention_check: Duration::from_secs(600),
        offsets_commit_timeout: Duration::from_secs(5),
        offset_metadata_max_bytes: 100,
        offsets_topic_replication_factor: 1,
        offsets_topic_segment_bytes: "104857600".into(),
        consumer: consumer::ConsumerConfig {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval_ms: 5000,
            max_size: 10,
            assignors: vec!["uniform", "range"],
        },
    }
}

fn txn_config() -> TxnConfig {
    TxnConfig {
        partitions: 2,
        max_timeout_ms: 60_000,
        version: 0,
        replication_factor: 1,
        segment_bytes: "104857600".into(),
        min_isr: "1".into(),
        abort_check_interval: Duration::from_secs(10),
    }
}

fn committed_offset(groups: &GroupCoordinator, group: &str, topic: &str, p: i32) -> Option<i64> {
    groups
        .fetch_offsets(group, Some(vec![(topic.to_string(), vec![p])]))
        .into_iter()
        .next()
        .and_then(|(_, parts)| parts.into_iter().next())
        .and_then(|(_, c)| c.map(|c: Committed| c.offset))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn committed_offsets_are_rebuilt_from_what_the_port_holds() {
    let log = MemoryLog::default();
    let groups = GroupCoordinator::new(group_config());
    block_on(groups.ensure_offsets_topic(&log)).unwrap();
    groups.load(&log);
    let offsets = [
        ("orders", 0, 41i64, 3, None),
        ("orders", 1, 7, 3, Some("m")),
    ];
    let plan = strom_coordinator::group::plan_commit(
        groups.config(),
        "g1",
        Ok(()),
        offsets.iter().copied(),
        |_| true,
    );
    assert_eq!(plan.codes, vec![ec::NONE, ec::NONE]);
    block_on(groups.persist_replicated(&log, "g1", plan.records)).unwrap();
    groups.committed("g1", plan.committed);
    assert_eq!(committed_offset(&groups, "g1", "orders", 0), Some(41));
    assert_eq!(log.batches(OFFSETS_TOPIC, groups.partition_of("g1")), 1);

    // A new coordinator (a restart, or another broker taking over) reads them back.
    let fresh = GroupCoordinator::new(group_config());
    fresh.load(&log);
    assert!(fresh.owns(&log, "g1"));
    assert_eq!(committed_offset(&fresh, "g1", "orders", 0), Some(41));
    assert_eq!(committed_offset(&fresh, "g1", "orders", 1), Some(7));
    assert_eq!(committed_offset(&fresh, "g1", "orders", 2), None);
}

#[test]
fn transactional_offsets_count_only_once_their_transaction_commits() {
    let log = MemoryLog::default();
    let groups = Arc::new(GroupCoordinator::new(group_config()));
    let txns = TransactionCoordinator::new(txn_config(), groups.clone());
    block_on(groups.ensure_offsets_topic(&log)).unwrap();
    groups.load(&log);
    txns.load(&log);

    let (pid, epoch) = block_on(txns.init_producer_id(&log, "t1", 10_000, None, 3)).unwrap();
    assert_eq!(log.batches(TXN_TOPIC, txns.partition_for("t1")), 1);
    let partition = groups.partition_of("g1");
    txns.add_partitions(
        &log,
        "t1",
        pid,
        epoch,
        &[(OFFSETS_TOPIC.to_string(), partition)],
        3,
    )
    .unwrap();
    let plan = strom_coordinator::group::plan_commit(
        groups.config(),
        "g1",
        Ok(()),
        [("orders", 0, 99i64, -1, None)].into_iter(),
        |_| true,
    );
    groups
        .write_txn_offsets(&log, partition, pid, epoch, plan.records)
        .unwrap();
    assert_eq!(
        committed_offset(&groups, "g1", "orders", 0),
        None,
        "pending until commit"
    );

    // A restart before the decision keeps them pending too.
    let before = GroupCoordinator::new(group_config());
    before.load(&log);
    assert_eq!(committed_offset(&before, "g1", "orders", 0), None);

    block_on(txns.end_txn(&log, "t1", pid, epoch, true, 3)).unwrap();
    assert_eq!(
        log.markers(OFFSETS_TOPIC, partition),
        vec![(pid, ControlType::Commit.code())]
    );
    assert_eq!(committed_offset(&groups, "g1", "orders", 0), Some(99));

    // And the log alone says the same after a restart.
    let after = GroupCoordinator::new(group_config());
    after.load(&log);
    assert_eq!(committed_offset(&after, "g1", "orders", 0), Some(99));
}

#[test]
fn aborted_transactional_offsets_are_dropped_and_stay_dropped() {
    let log = MemoryLog::default();
    let groups = Arc::new(GroupCoordinator::new(group_config()));
    let txns = TransactionCoordinator::new(txn_config(), groups.clone());
    block_on(groups.ensure_offsets_topic(&log)).unwrap();
    let (pid, epoch) = block_on(txns.init_producer_id(&log, "t2", 10_000, None, 3)).unwrap();
    let partition = groups.partition_of("g2");
    txns.add_partitions(
        &log,
        "t2",
        pid,
        epoch,
        &[(OFFSETS_TOPIC.to_string(), partition)],
        3,
    )
    .unwrap();
    let plan = strom_coordinator::group::plan_commit(
        groups.config(),
        "g2",
        Ok(()),
        [("orders", 0, 5i64, -1, None)].into_iter(),
        |_| true,
    );
    groups
        .write_txn_offsets(&log, partition, pid, epoch, plan.records)
        .unwrap();
    block_on(txns.end_txn(&log, "t2", pid, epoch, false, 3)).unwrap();
    assert_eq!(committed_offset(&groups, "g2", "orders", 0), None);
    let after = GroupCoordinator::new(group_config());
    after.load(&log);
    assert_eq!(committed_offset(&after, "g2", "orders", 0), None);

    // The transactional id itself is rebuilt as completed, with its producer id.
    let txns_after = TransactionCoordinator::new(txn_config(), Arc::new(after));
    txns_after.load(&log);
    let view = txns_after.describe(Some(&["t2".to_string()]));
    let t = view[0]
        .1
        .as_ref()
        .expect("t2 rebuilt from __transaction_state");
    assert_eq!(t.producer_id, pid);
    assert_eq!(
        t.status,
        strom_coordinator::txn::store::TxnStatus::CompleteAbort
    );
}

#[test]
fn producer_ids_come_in_blocks_from_the_port() {
    let log = MemoryLog::default();
    let groups = Arc::new(GroupCoordinator::new(group_config()));
    let txns = TransactionCoordinator::new(txn_config(), groups);
    let first = block_on(txns.new_producer_id(&log)).unwrap();
    let second = block_on(txns.new_producer_id(&log)).unwrap();
    assert_eq!((first, second), (0, 1));
    assert_eq!(
        *log.next_producer_id.lock().unwrap(),
        1000,
        "one block taken"
    );
}
