//! Transactions: records of several partitions, and a consumer group's offsets, committed or
//! aborted together.
//!
//! `init_transactions` gets the producer id and epoch of the `transactional.id` from its
//! coordinator (fencing any earlier producer with the same id) and finds out which protocol the
//! cluster uses:
//!
//! - classic: each partition is added to the open transaction (AddPartitionsToTxn) before its
//!   first record of the transaction is queued, offsets with AddOffsetsToTxn, and the epoch stays
//!   the same from one transaction to the next;
//! - transactions v2 (KIP-890, when the cluster finalized `transaction.version` 2): the
//!   partition leaders add partitions themselves when a transactional batch arrives (Produce
//!   v12), TxnOffsetCommit v5 adds the offsets, and each EndTxn (v5) answers with the next
//!   epoch, which the following transaction writes with.
//!
//! `commit_transaction` sends everything queued and ends the transaction (EndTxn);
//! `abort_transaction` drops what was not sent yet, waits for what is in flight, and ends it
//! aborted.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use strom_protocol::messages::{
    ApiVersionsRequest, GroupId, ProducerId as WireProducerId, TopicName, TransactionalId,
    add_offsets_to_txn_request::AddOffsetsToTxnRequest,
    add_partitions_to_txn_request::{AddPartitionsToTxnRequest, AddPartitionsToTxnTopic},
    end_txn_request::EndTxnRequest,
    init_producer_id_request::InitProducerIdRequest,
    txn_offset_commit_request::{
        TxnOffsetCommitRequest, TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    },
};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, str_bytes};

use super::accumulator::TopicPartition;
use super::sender::PRODUCE_V2;
use super::{Inner, Producer, ProducerId};
use crate::admin::Admin;
use crate::connection::Connection;
use crate::error::ClientError;

const NOT_COORDINATOR: i16 = 16;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const PRODUCER_FENCED: i16 = 90;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;

/// Where a transactional producer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Uninitialized,
    Ready,
    InTransaction,
}

/// The transactional state of a producer.
pub(super) struct Transactions {
    pub(super) id: String,
    admin: Admin,
    coordinator: Option<String>,
    pub(super) phase: Phase,
    /// Partitions added to the open transaction.
    partitions: BTreeSet<TopicPartition>,
    /// The coordinator knows of the open transaction (a partition or offsets were added).
    started: bool,
    /// Transactions v2 (KIP-890): the cluster finalized `transaction.version` 2 and the
    /// coordinator speaks EndTxn v5. Partitions and offsets are then added to the transaction
    /// by the brokers (Produce v12, TxnOffsetCommit v5), and every EndTxn hands out the next
    /// epoch.
    pub(super) v2: bool,
}

impl Transactions {
    pub(super) fn new(
        inner_config: &super::ProducerConfig,
        id: String,
    ) -> Result<Self, ClientError> {
        Ok(Transactions {
            id,
            admin: Admin::for_common(&inner_config.common)?,
            coordinator: None,
            phase: Phase::Uninitialized,
            partitions: BTreeSet::new(),
            started: false,
            v2: false,
        })
    }
}

/// The consumer group whose offsets a transaction commits (Kafka's `ConsumerGroupMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    pub group_id: String,
    /// -1 when not known (no generation check).
    pub generation_id: i32,
    /// Empty when not known.
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl GroupMetadata {
    /// A group known by id only.
    pub fn new(group_id: &str) -> GroupMetadata {
        GroupMetadata {
            group_id: group_id.to_string(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

fn not_transactional() -> ClientError {
    ClientError::InvalidArgument(
        "this producer has no transactional.id: transactions are not available".into(),
    )
}

/// The TxnOffsetCommit request of `offsets` for `group` in the transaction of `id`.
fn txn_offset_commit(
    id: &str,
    group: &GroupMetadata,
    pid: ProducerId,
    offsets: &[(String, i32, i64)],
) -> RequestKind {
    let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in offsets {
        let mut p = TxnOffsetCommitRequestPartition::default();
        p.partition_index = *partition;
        p.committed_offset = *offset;
        p.committed_leader_epoch = -1;
        p.committed_metadata = Some(str_bytes(""));
        match topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(t) => t.partitions.push(p),
            None => {
                let mut t = TxnOffsetCommitRequestTopic::default();
                t.name = TopicName(str_bytes(topic.as_str()));
                t.partitions = vec![p];
                topics.push(t);
            }
        }
    }
    let mut req = TxnOffsetCommitRequest::default();
    req.transactional_id = TransactionalId(str_bytes(id));
    req.group_id = GroupId(str_bytes(group.group_id.as_str()));
    req.producer_id = WireProducerId(pid.id);
    req.producer_epoch = pid.epoch;
    req.generation_id = group.generation_id;
    req.member_id = str_bytes(group.member_id.as_str());
    req.group_instance_id = group.group_instance_id.as_deref().map(str_bytes);
    req.topics = topics;
    RequestKind::TxnOffsetCommit(req)
}

fn is_fatal_code(code: i16) -> bool {
    matches!(
        code,
        INVALID_PRODUCER_EPOCH | PRODUCER_FENCED | TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    )
}

/// The error code of a coordinator response (first partition error for per-partition
/// responses).
fn response_code(r: &ResponseKind) -> i16 {
    match r {
        ResponseKind::InitProducerId(r) => r.error_code,
        ResponseKind::AddOffsetsToTxn(r) => r.error_code,
        ResponseKind::EndTxn(r) => r.error_code,
        ResponseKind::AddPartitionsToTxn(r) => {
            if r.error_code != 0 {
                return r.error_code;
            }
            r.results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| t.results_by_partition.iter())
                .map(|p| p.partition_error_code)
                .find(|&c| c != 0)
                .unwrap_or(0)
        }
        ResponseKind::TxnOffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.error_code)
            .find(|&c| c != 0)
            .unwrap_or(0),
        _ => -1,
    }
}

impl Producer {
    fn transactions(&self) -> Result<&tokio::sync::Mutex<Transactions>, ClientError> {
        self.inner.txn.as_ref().ok_or_else(not_transactional)
    }

    /// Sends a request to the transaction coordinator, finding it first, and retries while the
    /// coordinator moves, loads, or is busy with the previous transaction (up to
    /// `max.block.ms`). Kafka errors in the answer are returned as errors; producer-fencing
    /// errors also stop the producer for good.
    async fn coordinator_call(
        &self,
        txn: &mut Transactions,
        what: &str,
        api: ApiKey,
        max_version: i16,
        build: impl Fn(i16) -> RequestKind,
    ) -> Result<ResponseKind, ClientError> {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.config.max_block;
        let backoff = inner
            .config
            .common
            .retry_backoff
            .max(Duration::from_millis(20));
        loop {
            let attempt = async {
                let addr = match &txn.coordinator {
                    Some(a) => a.clone(),
                    None => {
                        let a = txn.admin.find_transaction_coordinator(&txn.id).await?;
                        txn.coordinator = Some(a.clone());
                        a
                    }
                };
                let (_, r) = txn
                    .admin
                    .request(&addr, api, max_version, |v| Ok(build(v)))
                    .await?;
                Ok::<_, ClientError>(r)
            };
            let error = match attempt.await {
                Ok(r) => {
                    let code = response_code(&r);
                    if code == 0 {
                        return Ok(r);
                    }
                    let e = ClientError::kafka(
                        code,
                        &format!("{what} of transactional id {:?}", txn.id),
                        None,
                    );
                    if is_fatal_code(code) {
                        inner.state().fatal = Some(e.to_string());
                        return Err(e);
                    }
                    match code {
                        NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => txn.coordinator = None,
                        COORDINATOR_LOAD_IN_PROGRESS | CONCURRENT_TRANSACTIONS => {}
                        _ => return Err(e),
                    }
                    e
                }
                Err(e) if e.is_retriable() => {
                    txn.coordinator = None;
                    e
                }
                Err(e) => return Err(e),
            };
            if Instant::now() + backoff >= deadline {
                return Err(ClientError::MaxBlock {
                    what: format!("{what} did not succeed ({error})"),
                    waited_ms: inner.config.max_block.as_millis() as u64,
                });
            }
            tokio::time::sleep(backoff).await;
        }
    }

    /// Gets the producer id and epoch of the `transactional.id` (a new epoch: an earlier
    /// producer with the same id is fenced, and its open transaction aborted). Call once, before
    /// the first transaction.
    pub async fn init_transactions(&self) -> Result<(), ClientError> {
        let mut txn = self.transactions()?.lock().await;
        let previous = self.inner.state().producer_id;
        self.init_producer_id(&mut txn, previous).await?;
        txn.v2 = self.transaction_v2(&mut txn).await;
        self.inner.state().txn_v2 = txn.v2;
        tracing::debug!(transactional_id = %txn.id, v2 = txn.v2, "transactions initialised");
        txn.phase = Phase::Ready;
        Ok(())
    }

    /// Whether the coordinator (and with it the cluster) uses transactions v2: the
    /// `transaction.version` feature finalized at 2 or more, EndTxn v5 and Produce v12.
    async fn transaction_v2(&self, txn: &mut Transactions) -> bool {
        let Some(addr) = txn.coordinator.clone() else {
            return false;
        };
        let Ok(mut conn) = Connection::connect(&addr, self.inner.config.common.connection()).await
        else {
            return false;
        };
        let Ok(version) = conn.version(ApiKey::ApiVersions, 3) else {
            return false;
        };
        if version < 3
            || conn.version(ApiKey::EndTxn, 5).ok() != Some(5)
            || conn.version(ApiKey::Produce, PRODUCE_V2).ok() != Some(PRODUCE_V2)
            || conn.version(ApiKey::TxnOffsetCommit, 5).ok() != Some(5)
        {
            return false;
        }
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = str_bytes("strom-client");
        req.client_software_version = str_bytes(env!("CARGO_PKG_VERSION"));
        match conn
            .send(ApiKey::ApiVersions, version, RequestKind::ApiVersions(req))
            .await
        {
            Ok(ResponseKind::ApiVersions(r)) => r
                .finalized_features
                .iter()
                .any(|f| f.name.as_str() == "transaction.version" && f.max_version_level >= 2),
            _ => false,
        }
    }

    async fn init_producer_id(
        &self,
        txn: &mut Transactions,
        previous: Option<ProducerId>,
    ) -> Result<(), ClientError> {
        let id = txn.id.clone();
        let timeout_ms =
            i32::try_from(self.inner.config.transaction_timeout.as_millis()).unwrap_or(i32::MAX);
        let r = self
            .coordinator_call(txn, "InitProducerId", ApiKey::InitProducerId, 4, |v| {
                let mut req = InitProducerIdRequest::default();
                req.transactional_id = Some(TransactionalId(str_bytes(id.as_str())));
                req.transaction_timeout_ms = timeout_ms;
                let (pid, epoch) = match previous {
                    Some(p) if v >= 3 => (p.id, p.epoch),
                    _ => (-1, -1),
                };
                req.producer_id = WireProducerId(pid);
                req.producer_epoch = epoch;
                RequestKind::InitProducerId(req)
            })
            .await?;
        let ResponseKind::InitProducerId(r) = r else {
            return Err(ClientError::UnexpectedResponse("InitProducerId".into()));
        };
        let pid = ProducerId {
            id: r.producer_id.0,
            epoch: r.producer_epoch,
        };
        self.inner
            .counters
            .producer_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let failed = {
            let mut s = self.inner.state();
            s.producer_id = Some(pid);
            s.txn_error = None;
            s.acc.reset_sequences()
        };
        super::sender::deliver(&self.inner, failed);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Opens a transaction: records sent from now on are part of it.
    pub async fn begin_transaction(&self) -> Result<(), ClientError> {
        let mut txn = self.transactions()?.lock().await;
        match txn.phase {
            Phase::Ready => {
                txn.phase = Phase::InTransaction;
                txn.partitions.clear();
                txn.started = false;
                self.inner.state().txn_error = None;
                Ok(())
            }
            Phase::Uninitialized => Err(ClientError::InvalidArgument(
                "call init_transactions before begin_transaction".into(),
            )),
            Phase::InTransaction => Err(ClientError::InvalidArgument(
                "a transaction is already open".into(),
            )),
        }
    }

    /// Adds `tp` to the open transaction if it is not in it yet (called by `send`).
    pub(super) async fn add_to_transaction(&self, tp: &TopicPartition) -> Result<(), ClientError> {
        let mut txn = self.transactions()?.lock().await;
        if txn.phase != Phase::InTransaction {
            return Err(ClientError::InvalidArgument(
                "a transactional producer sends only inside a transaction (begin_transaction)"
                    .into(),
            ));
        }
        if txn.partitions.contains(tp) {
            return Ok(());
        }
        if txn.v2 {
            // The partition's leader adds it when the first batch arrives (Produce v12).
            txn.partitions.insert(tp.clone());
            txn.started = true;
            return Ok(());
        }
        let pid = self.current_producer_id()?;
        let id = txn.id.clone();
        self.coordinator_call(
            &mut txn,
            "AddPartitionsToTxn",
            ApiKey::AddPartitionsToTxn,
            3,
            |_| {
                let mut t = AddPartitionsToTxnTopic::default();
                t.name = TopicName(str_bytes(&*tp.topic));
                t.partitions = vec![tp.partition];
                let mut req = AddPartitionsToTxnRequest::default();
                req.v3_and_below_transactional_id = TransactionalId(str_bytes(id.as_str()));
                req.v3_and_below_producer_id = WireProducerId(pid.id);
                req.v3_and_below_producer_epoch = pid.epoch;
                req.v3_and_below_topics = vec![t];
                RequestKind::AddPartitionsToTxn(req)
            },
        )
        .await?;
        txn.partitions.insert(tp.clone());
        txn.started = true;
        Ok(())
    }

    fn current_producer_id(&self) -> Result<ProducerId, ClientError> {
        self.inner
            .state()
            .producer_id
            .ok_or_else(|| ClientError::InvalidArgument("call init_transactions first".into()))
    }

    /// Commits consumer offsets as part of the open transaction: they become visible when the
    /// transaction commits, and are dropped if it aborts. `offsets` are (topic, partition, next
    /// offset to consume).
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &[(String, i32, i64)],
        group: &GroupMetadata,
    ) -> Result<(), ClientError> {
        let mut txn = self.transactions()?.lock().await;
        if txn.phase != Phase::InTransaction {
            return Err(ClientError::InvalidArgument(
                "no transaction is open".into(),
            ));
        }
        let pid = self.current_producer_id()?;
        let id = txn.id.clone();
        let v2 = txn.v2;
        if !v2 {
            // Transactions v2: TxnOffsetCommit v5 adds the offsets to the transaction itself.
            self.coordinator_call(
                &mut txn,
                "AddOffsetsToTxn",
                ApiKey::AddOffsetsToTxn,
                3,
                |_| {
                    let mut req = AddOffsetsToTxnRequest::default();
                    req.transactional_id = TransactionalId(str_bytes(id.as_str()));
                    req.producer_id = WireProducerId(pid.id);
                    req.producer_epoch = pid.epoch;
                    req.group_id = GroupId(str_bytes(group.group_id.as_str()));
                    RequestKind::AddOffsetsToTxn(req)
                },
            )
            .await?;
        }
        txn.started = true;
        // The offsets themselves go to the group's coordinator, found again when it moved.
        let deadline = Instant::now() + self.inner.config.max_block;
        let backoff = self
            .inner
            .config
            .common
            .retry_backoff
            .max(Duration::from_millis(20));
        let subject = format!(
            "committing offsets of group {:?} in the transaction",
            group.group_id
        );
        loop {
            let attempt = async {
                let addr = txn.admin.find_coordinator(&group.group_id).await?;
                let (_, r) = txn
                    .admin
                    .request(
                        &addr,
                        ApiKey::TxnOffsetCommit,
                        if v2 { 5 } else { 3 },
                        |_| Ok(txn_offset_commit(&id, group, pid, offsets)),
                    )
                    .await?;
                Ok::<_, ClientError>(response_code(&r))
            };
            let error = match attempt.await {
                Ok(0) => break,
                Ok(code) => {
                    let e = ClientError::kafka(code, &subject, None);
                    match code {
                        NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE => {
                            txn.admin
                                .forget_coordinator(crate::admin::KEY_TYPE_GROUP, &group.group_id)
                                .await;
                        }
                        COORDINATOR_LOAD_IN_PROGRESS | CONCURRENT_TRANSACTIONS => {}
                        _ => return Err(e),
                    }
                    e
                }
                Err(e) if e.is_retriable() => {
                    txn.admin
                        .forget_coordinator(crate::admin::KEY_TYPE_GROUP, &group.group_id)
                        .await;
                    e
                }
                Err(e) => return Err(e),
            };
            if Instant::now() + backoff >= deadline {
                return Err(ClientError::MaxBlock {
                    what: format!("{subject} did not succeed ({error})"),
                    waited_ms: self.inner.config.max_block.as_millis() as u64,
                });
            }
            tracing::debug!(group = %group.group_id, error = %error, "TxnOffsetCommit failed; retrying");
            tokio::time::sleep(backoff).await;
        }
        Ok(())
    }

    /// Sends every record of the transaction, then commits it. If a record of the transaction
    /// failed, nothing is committed: the error is returned and the transaction must be
    /// aborted.
    pub async fn commit_transaction(&self) -> Result<(), ClientError> {
        self.end_transaction(true).await
    }

    /// Aborts the open transaction: records not sent yet fail, records written are never
    /// shown to read_committed consumers.
    pub async fn abort_transaction(&self) -> Result<(), ClientError> {
        self.end_transaction(false).await
    }

    async fn end_transaction(&self, commit: bool) -> Result<(), ClientError> {
        let mut txn = self.transactions()?.lock().await;
        if txn.phase != Phase::InTransaction {
            return Err(ClientError::InvalidArgument(
                "no transaction is open".into(),
            ));
        }
        if commit {
            self.flush().await;
            if let Some(e) = self.inner.state().txn_error.clone() {
                return Err(ClientError::InvalidArgument(format!(
                    "the transaction cannot commit, a record failed (abort it): {e}"
                )));
            }
        } else {
            let failed = self
                .inner
                .state()
                .acc
                .fail_all(|tp| ClientError::NotDelivered {
                    topic: tp.topic.to_string(),
                    partition: tp.partition,
                    reason: "the transaction was aborted before the record was sent".into(),
                    retriable: false,
                });
            super::sender::deliver(&self.inner, failed);
            self.wait_idle().await;
        }
        if let Some(reason) = self.inner.state().fatal.clone() {
            return Err(ClientError::InvalidArgument(format!(
                "the producer cannot go on: {reason}"
            )));
        }
        if txn.started {
            let pid = self.current_producer_id()?;
            let id = txn.id.clone();
            let max_version = if txn.v2 { 5 } else { 3 };
            let r = self
                .coordinator_call(&mut txn, "EndTxn", ApiKey::EndTxn, max_version, |_| {
                    let mut req = EndTxnRequest::default();
                    req.transactional_id = TransactionalId(str_bytes(id.as_str()));
                    req.producer_id = WireProducerId(pid.id);
                    req.producer_epoch = pid.epoch;
                    req.committed = commit;
                    RequestKind::EndTxn(req)
                })
                .await?;
            if txn.v2
                && let ResponseKind::EndTxn(r) = r
                && r.producer_id.0 >= 0
            {
                // Transactions v2: every transaction ends with the next epoch (or, when the
                // epoch ran out, a new producer id); sequences start again from 0.
                let next = ProducerId {
                    id: r.producer_id.0,
                    epoch: r.producer_epoch,
                };
                let failed = {
                    let mut s = self.inner.state();
                    s.producer_id = Some(next);
                    s.acc.reset_sequences()
                };
                super::sender::deliver(&self.inner, failed);
            }
        }
        txn.phase = Phase::Ready;
        txn.partitions.clear();
        txn.started = false;
        let bump = {
            let mut s = self.inner.state();
            s.txn_error = None;
            s.acc.bump_needed()
        };
        if bump {
            // A sequence broke during the transaction: a new epoch renumbers from 0.
            let previous = self.inner.state().producer_id;
            self.init_producer_id(&mut txn, previous).await?;
        }
        Ok(())
    }

    /// Waits until nothing is queued or in flight.
    async fn wait_idle(&self) {
        loop {
            let progressed = self.inner.progress.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            if self.inner.state().acc.incomplete() == 0 {
                return;
            }
            progressed.await;
        }
    }
}

impl Inner {
    pub(super) fn transactional_id(&self) -> Option<&str> {
        self.config.transactional_id.as_deref()
    }
}
