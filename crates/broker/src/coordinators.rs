//! The broker's side of the coordinators: their settings from the broker's properties, the
//! [`CoordinatorLog`] port over the replica manager and the metadata log, and the task that
//! sends transaction markers to the brokers leading other partitions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strom_coordinator::group::GroupConfig;
use strom_coordinator::log::PortFuture;
use strom_coordinator::txn::{RemoteMarkers, TxnConfig};
use strom_coordinator::{BrokerId, CoordinatorLog, InternalTopic, LeaderEpoch, Offset, ProducerId};
use strom_metadata::MetadataImage;
use strom_protocol::error_code as ec;
use strom_protocol::records::BatchProducer;
use strom_storage::ControlType;

use crate::broker::Broker;
use crate::config::BrokerConfig;

/// The group coordinator's settings, from the broker's properties.
pub fn group_config(c: &BrokerConfig) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay: Duration::from_millis(
            c.settings().group_initial_rebalance_delay_ms.max(0) as u64,
        ),
        min_session_timeout_ms: c.settings().group_min_session_timeout_ms,
        max_session_timeout_ms: c.settings().group_max_session_timeout_ms,
        max_size: c.settings().group_max_size.max(1) as usize,
        offsets_partitions: c.settings().offsets_topic_num_partitions.max(1),
        offsets_retention_ms: i64::from(c.settings().offsets_retention_minutes)
            .saturating_mul(60_000),
        offsets_retention_check: Duration::from_millis(
            c.settings().offsets_retention_check_interval_ms.max(1) as u64,
        ),
        offsets_commit_timeout: Duration::from_millis(
            c.settings().offsets_commit_timeout_ms.max(1) as u64,
        ),
        offset_metadata_max_bytes: c.settings().offset_metadata_max_bytes.max(0) as usize,
        offsets_topic_replication_factor: c.settings().offsets_topic_replication_factor,
        offsets_topic_segment_bytes: c.get("offsets.topic.segment.bytes").to_string(),
        consumer: strom_coordinator::group::consumer::ConsumerConfig {
            session_timeout: Duration::from_millis(
                c.settings().group_consumer_session_timeout_ms.max(1) as u64,
            ),
            heartbeat_interval_ms: c.settings().group_consumer_heartbeat_interval_ms.max(1),
            max_size: c.settings().group_consumer_max_size.max(1) as usize,
            assignors: {
                let list: Vec<&'static str> = c
                    .get("group.consumer.assignors")
                    .split(',')
                    .filter_map(|a| strom_coordinator::group::assignor::normalize(a.trim()))
                    .collect();
                if list.is_empty() {
                    vec!["uniform", "range"]
                } else {
                    list
                }
            },
        },
    }
}

/// The `transaction.version` finalized for clients. In a cluster it stays at 1 (the classic
/// protocol): under version 2 a partition's leader must add the partition to the producer's
/// transaction at the transaction coordinator, another broker, before it appends, and strom's
/// leaders do not do that yet, so a transaction's marker could miss a partition.
fn transaction_version(c: &BrokerConfig) -> i16 {
    let configured = c.settings().transaction_version.clamp(0, 2) as i16;
    let cluster = c.quorum_voters().is_ok_and(|v| !v.is_empty());
    if cluster && configured > 1 {
        tracing::info!(
            configured,
            "transaction.version 2 is not offered in a cluster yet; clients use the classic transaction protocol"
        );
        return 1;
    }
    configured
}

/// The transaction coordinator's settings, from the broker's properties.
pub fn txn_config(c: &BrokerConfig) -> TxnConfig {
    TxnConfig {
        partitions: c.settings().transaction_state_log_num_partitions.max(1),
        max_timeout_ms: c.settings().transaction_max_timeout_ms.max(1),
        version: transaction_version(c),
        replication_factor: c.settings().transaction_state_log_replication_factor,
        segment_bytes: c.get("transaction.state.log.segment.bytes").to_string(),
        min_isr: c.get("transaction.state.log.min.isr").to_string(),
        abort_check_interval: Duration::from_millis(
            c.settings()
                .transaction_abort_timed_out_transaction_cleanup_interval_ms
                .max(10) as u64,
        ),
    }
}

impl CoordinatorLog for Broker {
    fn node_id(&self) -> BrokerId {
        BrokerId(self.node_id)
    }

    fn image(&self) -> Arc<MetadataImage> {
        Broker::image(self)
    }

    fn hosts(&self, topic: &str, partition: i32) -> bool {
        self.replicas.get(topic, partition).is_some()
    }

    fn leader_epoch(&self, topic: &str, partition: i32) -> Option<LeaderEpoch> {
        let p = self.replicas.get(topic, partition)?;
        p.is_leader().then(|| LeaderEpoch(p.leader_epoch()))
    }

    fn led_partitions(&self, topic: &str) -> Vec<i32> {
        self.replicas
            .all()
            .into_iter()
            .filter(|p| p.topic == topic && p.is_leader())
            .map(|p| p.index)
            .collect()
    }

    fn single_node(&self) -> bool {
        self.quorum.is_none()
    }

    fn append(
        &self,
        topic: &str,
        partition: i32,
        records: &[(Bytes, Option<Bytes>)],
        producer: BatchProducer,
    ) -> Result<Offset, i16> {
        let p = self
            .replicas
            .get(topic, partition)
            .ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION)?;
        let info = p
            .append_records(records, producer, crate::now_ms())
            .map_err(|e| {
                tracing::error!(topic, partition, error = %e, "cannot append coordinator records");
                crate::handlers::storage_error_code(&e)
            })?;
        Ok(Offset(info.last_offset + 1))
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
        let p = self
            .replicas
            .get(topic, partition)
            .ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION)?;
        p.append_control(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            kind,
            crate::now_ms(),
        )
        .map(|_| ())
        .map_err(|e| {
            tracing::error!(topic, partition, producer_id, error = %e, "cannot append a transaction marker");
            crate::handlers::storage_error_code(&e)
        })
    }

    fn wait_replicated(
        &self,
        topic: &str,
        partition: i32,
        end: Offset,
        timeout: Duration,
    ) -> PortFuture<'_, Result<(), i16>> {
        let p = self.replicas.get(topic, partition);
        Box::pin(async move {
            match p {
                Some(p) => self.replicas.wait_replicated(&p, end.0, timeout).await,
                None => Err(ec::NOT_LEADER_OR_FOLLOWER),
            }
        })
    }

    fn read_all(&self, topic: &str, partition: i32, f: &mut dyn FnMut(Bytes)) {
        let Some(p) = self.replicas.get(topic, partition) else {
            return;
        };
        let mut offset = p.with_log(|l| l.log_start_offset());
        loop {
            let read = p.with_log(|l| {
                let end = l.log_end_offset();
                l.read(offset, 8 * 1024 * 1024, end, true)
            });
            let data = match read
                .and_then(|r| r.read_to_vec().map_err(strom_storage::StorageError::from))
            {
                Ok(d) if !d.is_empty() => d,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(topic, partition, error = %e, "cannot read internal partition");
                    break;
                }
            };
            let Some(next) = strom_protocol::records::batches_end_offset(&data) else {
                break;
            };
            f(Bytes::from(data));
            if next <= offset {
                break;
            }
            offset = next;
        }
    }

    fn ensure_topic(&self, topic: InternalTopic) -> PortFuture<'_, Result<(), i16>> {
        Box::pin(async move {
            if self.image().topic(topic.name).is_some() {
                return Ok(());
            }
            let _guard = self.controller.lock().await;
            if self.image().topic(topic.name).is_some() {
                return Ok(());
            }
            match crate::topics::create_topic(
                self,
                topic.name,
                topic.partitions,
                topic.replication_factor,
                topic.configs,
                false,
            ) {
                Ok(_) => Ok(()),
                Err(e) if e.code == ec::TOPIC_ALREADY_EXISTS => Ok(()),
                Err(e) => {
                    tracing::error!(topic = topic.name, error = %e.message, "cannot create an internal topic");
                    Err(ec::COORDINATOR_NOT_AVAILABLE)
                }
            }
        })
    }

    fn allocate_producer_ids(&self, size: i64) -> PortFuture<'_, Result<ProducerId, i16>> {
        Box::pin(async move {
            let _guard = self.controller.lock().await;
            let first = self.image().next_producer_id.max(0);
            self.commit_metadata(vec![strom_metadata::MetadataRecord::ProducerIds {
                broker_id: self.node_id,
                first_producer_id: first,
                size,
            }])
            .map_err(|e| {
                tracing::error!(error = %e, "cannot allocate a producer id block");
                ec::COORDINATOR_NOT_AVAILABLE
            })?;
            Ok(ProducerId(first))
        })
    }
}

/// Sends the markers of decided transactions to the brokers that lead their partitions
/// (WriteTxnMarkers), retrying until each is written, then completes the transactions.
pub async fn send_remote_markers(
    broker: Arc<Broker>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut connections: HashMap<i32, strom_client::Connection> = HashMap::new();
    loop {
        let jobs = broker.txns.queued_markers();
        if jobs.is_empty() {
            tokio::select! {
                _ = broker.txns.wait_for_markers(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let mut failed = false;
        for job in jobs {
            if send_markers(&broker, &mut connections, &job).await {
                broker.txns.remote_markers_written(&*broker, &job);
            } else {
                failed = true;
            }
        }
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Writes one transaction's markers on the current leaders of its partitions; true when all
/// of them are written.
async fn send_markers(
    broker: &Broker,
    connections: &mut HashMap<i32, strom_client::Connection>,
    job: &RemoteMarkers,
) -> bool {
    use strom_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use strom_protocol::messages::{ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest};
    use strom_protocol::{RequestKind, ResponseKind, str_bytes};
    let image = broker.image();
    let mut by_leader: std::collections::BTreeMap<i32, Vec<(String, i32)>> = Default::default();
    for (topic, index) in &job.partitions {
        let leader = image
            .topic(topic)
            .and_then(|t| t.partitions.get(*index as usize))
            .map_or(-1, |p| p.leader);
        if leader < 0 {
            return false;
        }
        by_leader
            .entry(leader)
            .or_default()
            .push((topic.clone(), *index));
    }
    for (leader, partitions) in by_leader {
        if leader == broker.node_id {
            let codes = broker.txns.write_markers(
                broker,
                job.producer_id,
                job.epoch,
                job.coordinator_epoch,
                job.commit,
                &partitions,
            );
            if codes.iter().any(|c| *c != ec::NONE) {
                return false;
            }
            continue;
        }
        let Some(b) = image.brokers.get(&leader) else {
            return false;
        };
        if connections.get(&leader).is_none_or(|c| c.is_broken()) {
            let addr = format!("{}:{}", b.host, b.port);
            match strom_client::Connection::connect(&addr, Default::default()).await {
                Ok(c) => {
                    connections.insert(leader, c);
                }
                Err(e) => {
                    tracing::debug!(leader, error = %e, "cannot reach a partition leader for markers");
                    return false;
                }
            }
        }
        let Some(conn) = connections.get_mut(&leader) else {
            return false;
        };
        let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
        for (topic, index) in &partitions {
            match topics.iter_mut().find(|t| t.name.as_str() == topic) {
                Some(t) => t.partition_indexes.push(*index),
                None => topics.push(
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(str_bytes(topic.clone())))
                        .with_partition_indexes(vec![*index]),
                ),
            }
        }
        let marker = WritableTxnMarker::default()
            .with_producer_id(ProducerId(job.producer_id))
            .with_producer_epoch(job.epoch)
            .with_transaction_result(job.commit)
            .with_topics(topics)
            .with_coordinator_epoch(job.coordinator_epoch);
        let req = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
        match conn
            .send(
                ApiKey::WriteTxnMarkers,
                1,
                RequestKind::WriteTxnMarkers(req),
            )
            .await
        {
            Ok(ResponseKind::WriteTxnMarkers(r)) => {
                let all_written = r.markers.iter().all(|m| {
                    m.topics
                        .iter()
                        .all(|t| t.partitions.iter().all(|p| p.error_code == ec::NONE))
                });
                if !all_written {
                    tracing::debug!(leader, transactional_id = %job.transactional_id, "markers refused; retrying");
                    return false;
                }
            }
            Ok(_) | Err(_) => {
                connections.remove(&leader);
                return false;
            }
        }
    }
    true
}

/// Transactions v2 when another broker coordinates the transactional id: adds the group's
/// `__consumer_offsets` partition to the producer's transaction there, as a broker
/// (AddPartitionsToTxn v5, not verify-only), so that its marker reaches that partition.
pub async fn add_offsets_partition_remotely(
    broker: &Broker,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    offsets_partition: i32,
) -> Result<(), i16> {
    use strom_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use strom_protocol::messages::{
        AddPartitionsToTxnRequest, ApiKey, ProducerId, TopicName, TransactionalId,
    };
    use strom_protocol::{RequestKind, ResponseKind, str_bytes};
    let image = broker.image();
    let coordinator = image
        .topic(strom_coordinator::txn::TXN_TOPIC)
        .and_then(|t| {
            let index = strom_coordinator::group::store::partition_for(
                transactional_id,
                t.partitions.len() as i32,
            );
            t.partitions.get(index as usize)
        })
        .map_or(-1, |p| p.leader);
    let Some(b) = image.brokers.get(&coordinator) else {
        return Err(ec::COORDINATOR_NOT_AVAILABLE);
    };
    let addr = format!("{}:{}", b.host, b.port);
    let mut conn = strom_client::Connection::connect(&addr, Default::default())
        .await
        .map_err(|e| {
            tracing::debug!(coordinator, error = %e, "cannot reach the transaction coordinator");
            ec::COORDINATOR_NOT_AVAILABLE
        })?;
    let txn = AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(str_bytes(transactional_id.to_string())))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
        .with_verify_only(false)
        .with_topics(vec![
            AddPartitionsToTxnTopic::default()
                .with_name(TopicName(str_bytes(
                    strom_coordinator::group::OFFSETS_TOPIC.to_string(),
                )))
                .with_partitions(vec![offsets_partition]),
        ]);
    let req = AddPartitionsToTxnRequest::default().with_transactions(vec![txn]);
    match conn
        .send(
            ApiKey::AddPartitionsToTxn,
            5,
            RequestKind::AddPartitionsToTxn(req),
        )
        .await
    {
        Ok(ResponseKind::AddPartitionsToTxn(r)) if r.error_code != ec::NONE => Err(r.error_code),
        Ok(ResponseKind::AddPartitionsToTxn(r)) => {
            let code = r
                .results_by_transaction
                .iter()
                .flat_map(|t| &t.topic_results)
                .flat_map(|t| &t.results_by_partition)
                .map(|p| p.partition_error_code)
                .find(|c| *c != ec::NONE)
                .unwrap_or(ec::NONE);
            if code == ec::NONE { Ok(()) } else { Err(code) }
        }
        _ => Err(ec::COORDINATOR_NOT_AVAILABLE),
    }
}
