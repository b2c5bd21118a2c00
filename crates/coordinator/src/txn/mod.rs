//! The transaction coordinator: producer ids, transactional ids and their transactions.
//!
//! A transactional id maps to a producer id and epoch; InitProducerId bumps the epoch, which
//! fences any older producer with the same transactional id. A transaction moves
//! Empty/Complete* -> Ongoing (AddPartitionsToTxn, AddOffsetsToTxn) -> Prepare{Commit,Abort}
//! (EndTxn: the decision, durable in `__transaction_state`) -> markers written to every
//! partition of the transaction -> Complete{Commit,Abort}. A transaction left open past its
//! timeout is aborted with a bumped epoch. State lives in the compacted `__transaction_state`
//! topic, partitioned by transactional id as Kafka does, and is rebuilt from it at start-up;
//! decisions found without their markers are completed then.
//!
//! Transactional offset commits (TxnOffsetCommit) are written to `__consumer_offsets` as
//! transactional batches of the producer and become group offsets when the commit marker
//! reaches that partition; until then they are pending here.

pub mod store;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use strom_protocol::error_code as ec;
use strom_protocol::records::{BatchProducer, decode_batches};
use strom_storage::ControlType;

use crate::group::{GroupCoordinator, OFFSETS_TOPIC};
use crate::log::{CoordinatorLog, InternalTopic};
use store::{TxnStatus, TxnValue};

pub const TXN_TOPIC: &str = "__transaction_state";
/// Producer ids taken from the metadata log at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Settings of the coordinator, from the broker config.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    pub partitions: i32,
    pub max_timeout_ms: i32,
    /// The finalized `transaction.version` feature: 2 turns on the KIP-890 protocol for clients
    /// that speak it (partitions added by the broker, an epoch bump per transaction).
    pub version: i16,
    /// `transaction.state.log.replication.factor`, `.segment.bytes` and `.min.isr`, for
    /// creating `__transaction_state`.
    pub replication_factor: i32,
    pub segment_bytes: String,
    pub min_isr: String,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_check_interval: std::time::Duration,
}

/// One transactional id.
#[derive(Debug, Clone)]
struct TxnMeta {
    producer_id: i64,
    /// The producer id before the last change of id (transactions v2 epoch overflow), so that
    /// a retried EndTxn with it is recognized.
    previous_producer_id: Option<i64>,
    epoch: i16,
    timeout_ms: i32,
    status: TxnStatus,
    partitions: BTreeSet<(String, i32)>,
    start_ms: i64,
    last_update_ms: i64,
}

impl TxnMeta {
    fn value(&self) -> TxnValue {
        TxnValue {
            producer_id: self.producer_id,
            producer_epoch: self.epoch,
            timeout_ms: self.timeout_ms,
            status: self.status,
            partitions: self.partitions.iter().cloned().collect(),
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
        }
    }
}

/// A transaction as the admin APIs show it.
#[derive(Debug, Clone)]
pub struct TxnView {
    pub transactional_id: String,
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    pub partitions: Vec<(String, i32)>,
    pub start_ms: i64,
}

#[derive(Default)]
struct State {
    txns: HashMap<String, TxnMeta>,
    /// Producer id -> transactional id.
    by_producer: HashMap<i64, String>,
    /// Producer ids handed out: [next, end).
    next_pid: i64,
    end_pid: i64,
    /// `__transaction_state` partitions loaded, with the leader epoch they were loaded at.
    loaded: HashMap<i32, crate::LeaderEpoch>,
    /// Markers for partitions led by other brokers, waiting to be sent.
    remote_markers: Vec<RemoteMarkers>,
}

/// A decided transaction's markers for partitions other brokers lead: sent by
/// [`send_remote_markers`] with WriteTxnMarkers; the transaction stays PrepareCommit /
/// PrepareAbort until every one is written, and is then completed.
#[derive(Clone, Debug)]
pub struct RemoteMarkers {
    pub transactional_id: String,
    pub producer_id: i64,
    pub epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

pub struct TransactionCoordinator {
    config: TxnConfig,
    /// Where transactional offset commits settle when a marker reaches `__consumer_offsets`.
    groups: Arc<GroupCoordinator>,
    state: Mutex<State>,
    /// Woken when remote markers are queued.
    markers_queued: tokio::sync::Notify,
}

/// Result of InitProducerId.
pub type InitResult = Result<(i64, i16), i16>;

fn fenced_code(version: i16, first_version_with_fenced: i16) -> i16 {
    if version >= first_version_with_fenced {
        ec::PRODUCER_FENCED
    } else {
        ec::INVALID_PRODUCER_EPOCH
    }
}

impl TransactionCoordinator {
    pub fn new(config: TxnConfig, groups: Arc<GroupCoordinator>) -> Self {
        TransactionCoordinator {
            config,
            groups,
            state: Mutex::new(State::default()),
            markers_queued: tokio::sync::Notify::new(),
        }
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `__transaction_state` partition of a transactional id.
    pub fn partition_for(&self, transactional_id: &str) -> i32 {
        crate::group::store::partition_for(transactional_id, self.config.partitions)
    }

    /// A fresh producer id; takes a new block from the metadata log when the current one is
    /// used up, so ids stay unique across restarts.
    pub async fn new_producer_id(&self, log: &dyn CoordinatorLog) -> Result<i64, i16> {
        {
            let mut s = self.lock();
            if s.next_pid < s.end_pid {
                s.next_pid += 1;
                return Ok(s.next_pid - 1);
            }
        }
        // Ids are handed out under the state lock, which is never held across an await: the
        // block is taken first, then used unless a concurrent caller refilled meanwhile (its
        // block then goes unused, which only skips ids).
        let first = log.allocate_producer_ids(PRODUCER_ID_BLOCK).await?.0;
        let mut s = self.lock();
        if s.next_pid < s.end_pid {
            s.next_pid += 1;
            return Ok(s.next_pid - 1);
        }
        s.next_pid = first + 1;
        s.end_pid = first + PRODUCER_ID_BLOCK;
        Ok(first)
    }

    /// InitProducerId for a transactional id.
    pub async fn init_producer_id(
        &self,
        log: &dyn CoordinatorLog,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        version: i16,
    ) -> InitResult {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ec::INVALID_TRANSACTION_TIMEOUT);
        }
        self.ensure_txn_topic(log).await?;
        // A new id, or one whose epoch is about to run out, needs a producer id: taken before
        // the state lock, which is never held across an await.
        let needs_pid = self
            .lock()
            .txns
            .get(transactional_id)
            .is_none_or(|m| m.epoch >= i16::MAX - 3);
        let fresh = if needs_pid {
            Some(self.new_producer_id(log).await?)
        } else {
            None
        };
        let now = crate::now_ms();
        let mut s = self.lock();
        let meta = match s.txns.get(transactional_id).cloned() {
            Some(m) => m,
            None => TxnMeta {
                producer_id: fresh.ok_or(ec::CONCURRENT_TRANSACTIONS)?,
                previous_producer_id: None,
                epoch: -1,
                timeout_ms,
                status: TxnStatus::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                last_update_ms: now,
            },
        };
        if let Some((pid, epoch)) = expected
            && pid >= 0
            && (pid != meta.producer_id || epoch != meta.epoch)
        {
            return Err(fenced_code(version, 4));
        }
        let mut meta = meta;
        match meta.status {
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort | TxnStatus::PrepareEpochFence => {
                return Err(ec::CONCURRENT_TRANSACTIONS);
            }
            TxnStatus::Ongoing => {
                // A new instance of the producer: fence the old one and abort what it left.
                meta.epoch = meta.epoch.saturating_add(1);
                self.complete(log, &mut s, transactional_id, meta.clone(), false, now)?;
                meta = s.txns.get(transactional_id).cloned().unwrap_or(meta);
            }
            _ => {}
        }
        if meta.epoch >= i16::MAX - 1 {
            s.by_producer.remove(&meta.producer_id);
            meta.producer_id = fresh.ok_or(ec::CONCURRENT_TRANSACTIONS)?;
            meta.epoch = 0;
        } else {
            meta.epoch += 1;
        }
        meta.timeout_ms = timeout_ms;
        meta.status = TxnStatus::Empty;
        meta.partitions.clear();
        meta.start_ms = -1;
        meta.last_update_ms = now;
        self.persist(log, transactional_id, &meta)?;
        let result = (meta.producer_id, meta.epoch);
        s.by_producer
            .insert(meta.producer_id, transactional_id.to_string());
        s.txns.insert(transactional_id.to_string(), meta);
        Ok(result)
    }

    /// Checks producer id and epoch of a request against the transactional id's metadata.
    fn check(
        s: &State,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        fenced: i16,
    ) -> Result<TxnMeta, i16> {
        let meta = s
            .txns
            .get(transactional_id)
            .ok_or(ec::INVALID_PRODUCER_ID_MAPPING)?;
        if meta.producer_id != producer_id {
            return Err(ec::INVALID_PRODUCER_ID_MAPPING);
        }
        if epoch != meta.epoch {
            return Err(fenced);
        }
        if matches!(
            meta.status,
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort | TxnStatus::PrepareEpochFence
        ) {
            return Err(ec::CONCURRENT_TRANSACTIONS);
        }
        Ok(meta.clone())
    }

    /// Adds partitions to the producer's transaction (starting it if needed).
    pub fn add_partitions(
        &self,
        log: &dyn CoordinatorLog,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        version: i16,
    ) -> Result<(), i16> {
        let mut s = self.lock();
        let mut meta = Self::check(
            &s,
            transactional_id,
            producer_id,
            epoch,
            fenced_code(version, 2),
        )?;
        let now = crate::now_ms();
        if meta.status != TxnStatus::Ongoing {
            meta.status = TxnStatus::Ongoing;
            meta.partitions.clear();
            meta.start_ms = now;
        }
        let before = meta.partitions.len();
        meta.partitions.extend(partitions.iter().cloned());
        if meta.partitions.len() != before || meta.last_update_ms < 0 {
            meta.last_update_ms = now;
            self.persist(log, transactional_id, &meta)?;
        }
        s.txns.insert(transactional_id.to_string(), meta);
        Ok(())
    }

    /// Whether `partition` is in the open transaction of `producer_id` at `epoch` (the check a
    /// transactional produce must pass, so that a late write cannot land outside its
    /// transaction).
    pub fn verify_partition(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> bool {
        let s = self.lock();
        let Some(meta) = s
            .by_producer
            .get(&producer_id)
            .and_then(|id| s.txns.get(id))
        else {
            return false;
        };
        meta.producer_id == producer_id
            && meta.epoch == epoch
            && meta.status == TxnStatus::Ongoing
            && meta.partitions.contains(&(topic.to_string(), partition))
    }

    /// The current epoch of a transactional producer id, if the coordinator knows it.
    pub fn current_epoch(&self, producer_id: i64) -> Option<i16> {
        let s = self.lock();
        let id = s.by_producer.get(&producer_id)?;
        s.txns
            .get(id)
            .filter(|m| m.producer_id == producer_id)
            .map(|m| m.epoch)
    }

    /// Checks a TxnOffsetCommit: the producer's open transaction must include the group's
    /// offsets partition.
    pub fn check_offset_commit(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        offsets_partition: i32,
        version: i16,
    ) -> Result<(), i16> {
        let s = self.lock();
        let meta = Self::check(
            &s,
            transactional_id,
            producer_id,
            epoch,
            fenced_code(version, 3),
        )?;
        if meta.status != TxnStatus::Ongoing
            || !meta
                .partitions
                .contains(&(OFFSETS_TOPIC.to_string(), offsets_partition))
        {
            return Err(ec::INVALID_TXN_STATE);
        }
        Ok(())
    }

    /// Ends the producer's transaction: commit or abort. With transactions v2 (EndTxn v5+)
    /// the epoch is bumped as the transaction ends, so nothing the producer sent in this
    /// transaction can land in the next one; the new producer id and epoch are returned.
    pub async fn end_txn(
        &self,
        log: &dyn CoordinatorLog,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        version: i16,
    ) -> Result<(i64, i16), i16> {
        let bump = version >= 5 && self.config.version >= 2;
        // The epoch may run out: take a fresh producer id first (never across the lock).
        let near_overflow = self
            .lock()
            .txns
            .get(transactional_id)
            .is_some_and(|m| m.epoch >= i16::MAX - 2);
        let fresh = if bump && near_overflow {
            Some(self.new_producer_id(log).await?)
        } else {
            None
        };
        let mut s = self.lock();
        if bump
            && let Some(meta) = s.txns.get(transactional_id)
            && meta.producer_id == producer_id
            && epoch.checked_add(1) == Some(meta.epoch)
            && matches!(
                (meta.status, commit),
                (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false)
            )
        {
            // A retry of an end that completed (and bumped the epoch).
            return Ok((meta.producer_id, meta.epoch));
        }
        if bump
            && let Some(meta) = s.txns.get(transactional_id)
            && meta.producer_id != producer_id
            && meta.previous_producer_id == Some(producer_id)
            && matches!(
                (meta.status, commit),
                (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false)
            )
        {
            // A retry after the end moved the id to a new producer id.
            return Ok((meta.producer_id, meta.epoch));
        }
        let mut meta = Self::check(
            &s,
            transactional_id,
            producer_id,
            epoch,
            fenced_code(version, 2),
        )?;
        match (meta.status, commit) {
            (TxnStatus::Ongoing, _) => {
                if bump {
                    meta.epoch = meta.epoch.saturating_add(1);
                }
                self.complete(log, &mut s, transactional_id, meta, commit, crate::now_ms())?;
                let mut meta = s
                    .txns
                    .get(transactional_id)
                    .cloned()
                    .ok_or(ec::INVALID_TXN_STATE)?;
                if bump && meta.epoch >= i16::MAX - 1 {
                    // The markers carried the last epoch of this producer id: go on with a new one.
                    let pid = fresh.ok_or(ec::CONCURRENT_TRANSACTIONS)?;
                    s.by_producer.remove(&meta.producer_id);
                    meta.previous_producer_id = Some(meta.producer_id);
                    meta.producer_id = pid;
                    meta.epoch = 0;
                    self.persist(log, transactional_id, &meta)?;
                    s.by_producer.insert(pid, transactional_id.to_string());
                    s.txns.insert(transactional_id.to_string(), meta.clone());
                }
                Ok((meta.producer_id, meta.epoch))
            }
            // Retries of an end that completed.
            (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false) => {
                Ok((meta.producer_id, meta.epoch))
            }
            _ => Err(ec::INVALID_TXN_STATE),
        }
    }

    /// Transactions v2: a transactional write (Produce v12+) or offset commit (TxnOffsetCommit
    /// v5+) adds its partition to the producer's transaction, starting one if needed, instead
    /// of the client calling AddPartitionsToTxn / AddOffsetsToTxn. Returns whether the
    /// partition is now in the producer's open transaction at `epoch`.
    pub fn add_partition_implicitly(
        &self,
        log: &dyn CoordinatorLog,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> bool {
        if self.config.version < 2 {
            return false;
        }
        let id = match self.lock().by_producer.get(&producer_id) {
            Some(id) => id.clone(),
            None => return false,
        };
        self.add_partitions(
            log,
            &id,
            producer_id,
            epoch,
            &[(topic.to_string(), partition)],
            5,
        )
        .is_ok()
    }

    /// Writes the decision, the markers, and the completion of a transaction.
    fn complete(
        &self,
        log: &dyn CoordinatorLog,
        s: &mut State,
        transactional_id: &str,
        mut meta: TxnMeta,
        commit: bool,
        now: i64,
    ) -> Result<(), i16> {
        meta.status = if commit {
            TxnStatus::PrepareCommit
        } else {
            TxnStatus::PrepareAbort
        };
        meta.last_update_ms = now;
        self.persist(log, transactional_id, &meta)?;
        s.txns.insert(transactional_id.to_string(), meta.clone());
        s.by_producer
            .insert(meta.producer_id, transactional_id.to_string());
        let coordinator_epoch = log
            .leader_epoch(TXN_TOPIC, self.partition_for(transactional_id))
            .map_or(0, |e| e.0);
        type Partitions = Vec<(String, i32)>;
        let (local, remote): (Partitions, Partitions) = meta
            .partitions
            .iter()
            .cloned()
            .partition(|(t, p)| log.leader_epoch(t, *p).is_some() || log.single_node());
        self.write_markers(
            log,
            meta.producer_id,
            meta.epoch,
            coordinator_epoch,
            commit,
            &local,
        );
        if !remote.is_empty() {
            // Decided; complete once the other brokers have their markers.
            s.remote_markers
                .retain(|m| m.transactional_id != transactional_id);
            s.remote_markers.push(RemoteMarkers {
                transactional_id: transactional_id.to_string(),
                producer_id: meta.producer_id,
                epoch: meta.epoch,
                coordinator_epoch,
                commit,
                partitions: remote,
            });
            self.markers_queued.notify_one();
            return Ok(());
        }
        meta.status = if commit {
            TxnStatus::CompleteCommit
        } else {
            TxnStatus::CompleteAbort
        };
        meta.partitions.clear();
        meta.last_update_ms = crate::now_ms();
        self.persist(log, transactional_id, &meta)?;
        s.txns.insert(transactional_id.to_string(), meta);
        Ok(())
    }

    /// Appends a COMMIT or ABORT marker to each hosted partition and settles transactional
    /// offset commits on `__consumer_offsets` partitions. Returns an error code per partition.
    pub fn write_markers(
        &self,
        log: &dyn CoordinatorLog,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        partitions: &[(String, i32)],
    ) -> Vec<i16> {
        let kind = if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let mut codes = Vec::with_capacity(partitions.len());
        for (topic, index) in partitions {
            if !log.hosts(topic, *index) {
                tracing::warn!(
                    topic,
                    partition = index,
                    producer_id,
                    "no such partition for a transaction marker"
                );
                codes.push(ec::UNKNOWN_TOPIC_OR_PARTITION);
                continue;
            }
            if log.leader_epoch(topic, *index).is_none() {
                codes.push(ec::NOT_LEADER_OR_FOLLOWER);
                continue;
            }
            match log.append_marker(topic, *index, producer_id, epoch, coordinator_epoch, kind) {
                Ok(()) => {
                    codes.push(ec::NONE);
                    if topic == OFFSETS_TOPIC {
                        self.groups
                            .complete_txn_offsets(producer_id, *index, commit);
                    }
                }
                Err(code) => {
                    tracing::error!(
                        topic,
                        partition = index,
                        producer_id,
                        code,
                        "cannot write a transaction marker"
                    );
                    codes.push(code);
                }
            }
        }
        codes
    }

    /// Rebuilds transactional ids from `__transaction_state` and completes transactions whose
    /// decision was written but whose markers may not have been (called at start-up).
    pub fn load(&self, log: &dyn CoordinatorLog) {
        let led = log.led_partitions(TXN_TOPIC);
        self.load_partitions(log, &led);
    }

    /// (Re)loads the transactional ids of these `__transaction_state` partitions and completes
    /// their decided transactions.
    fn load_partitions(&self, log: &dyn CoordinatorLog, partitions: &[i32]) {
        let mut s = self.lock();
        let mut records = 0usize;
        let count = log
            .image()
            .topic(TXN_TOPIC)
            .map_or(self.config.partitions, |t| t.partitions.len() as i32);
        let stale: Vec<String> = s
            .txns
            .keys()
            .filter(|id| partitions.contains(&crate::group::store::partition_for(id, count)))
            .cloned()
            .collect();
        for id in stale {
            if let Some(m) = s.txns.remove(&id) {
                s.by_producer.remove(&m.producer_id);
            }
        }
        let mut loaded = Vec::new();
        for &index in partitions {
            let Some(epoch) = log.leader_epoch(TXN_TOPIC, index) else {
                continue;
            };
            loaded.push((index, epoch));
            log.read_all(TXN_TOPIC, index, &mut |data| {
                let recs = match decode_batches(data) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(partition = index, error = %e, "cannot decode __transaction_state");
                        return;
                    }
                };
                for r in recs {
                    let Some(key) = r.key else { continue };
                    match store::decode(key, r.value) {
                        Ok((id, Some(v))) => {
                            records += 1;
                            s.by_producer.insert(v.producer_id, id.clone());
                            s.txns.insert(
                                id,
                                TxnMeta {
                                    producer_id: v.producer_id,
                                    previous_producer_id: None,
                                    epoch: v.producer_epoch,
                                    timeout_ms: v.timeout_ms,
                                    status: v.status,
                                    partitions: v.partitions.into_iter().collect(),
                                    start_ms: v.start_ms,
                                    last_update_ms: v.last_update_ms,
                                },
                            );
                        }
                        Ok((id, None)) => {
                            if let Some(m) = s.txns.remove(&id) {
                                s.by_producer.remove(&m.producer_id);
                            }
                        }
                        Err(e) => tracing::warn!(
                            partition = index,
                            offset = r.offset,
                            reason = e.0,
                            "skipping malformed transaction record"
                        ),
                    }
                }
            });
        }
        s.loaded.extend(loaded);
        let unfinished: Vec<(String, TxnMeta)> = s
            .txns
            .iter()
            .filter(|(id, _)| partitions.contains(&crate::group::store::partition_for(id, count)))
            .filter(|(_, m)| matches!(m.status, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort))
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        let now = crate::now_ms();
        for (id, meta) in unfinished {
            let commit = meta.status == TxnStatus::PrepareCommit;
            tracing::info!(transactional_id = %id, commit, "completing a decided transaction");
            if let Err(code) = self.complete(log, &mut s, &id, meta, commit, now) {
                tracing::error!(transactional_id = %id, code, "cannot complete transaction");
            }
        }
        if records > 0 {
            tracing::info!(
                transactional_ids = s.txns.len(),
                records,
                "transaction state loaded from __transaction_state"
            );
        }
    }

    /// Aborts transactions open past their timeout, fencing their producers with a new epoch.
    pub fn abort_timed_out(&self, log: &dyn CoordinatorLog) -> usize {
        let now = crate::now_ms();
        let mut s = self.lock();
        let count = log
            .image()
            .topic(TXN_TOPIC)
            .map_or(self.config.partitions, |t| t.partitions.len() as i32);
        let led = |id: &str| {
            log.leader_epoch(TXN_TOPIC, crate::group::store::partition_for(id, count))
                .is_some()
        };
        let expired: Vec<(String, TxnMeta)> = s
            .txns
            .iter()
            .filter(|(id, m)| {
                led(id)
                    && m.status == TxnStatus::Ongoing
                    && m.start_ms >= 0
                    && now.saturating_sub(m.start_ms) > i64::from(m.timeout_ms)
            })
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        let n = expired.len();
        for (id, mut meta) in expired {
            tracing::info!(transactional_id = %id, producer_id = meta.producer_id, "aborting a transaction past its timeout");
            meta.epoch = meta.epoch.saturating_add(1);
            if let Err(code) = self.complete(log, &mut s, &id, meta, false, now) {
                tracing::error!(transactional_id = %id, code, "cannot abort timed-out transaction");
            }
        }
        n
    }

    /// Transactions, optionally only some ids.
    pub fn describe(&self, ids: Option<&[String]>) -> Vec<(String, Option<TxnView>)> {
        let s = self.lock();
        let view = |id: &String, m: &TxnMeta| TxnView {
            transactional_id: id.clone(),
            producer_id: m.producer_id,
            epoch: m.epoch,
            timeout_ms: m.timeout_ms,
            status: m.status,
            partitions: m.partitions.iter().cloned().collect(),
            start_ms: m.start_ms,
        };
        match ids {
            Some(ids) => ids
                .iter()
                .map(|id| (id.clone(), s.txns.get(id).map(|m| view(id, m))))
                .collect(),
            None => {
                let mut all: Vec<_> = s
                    .txns
                    .iter()
                    .map(|(id, m)| (id.clone(), Some(view(id, m))))
                    .collect();
                all.sort_by(|a, b| a.0.cmp(&b.0));
                all
            }
        }
    }

    /// Whether this broker coordinates the transactional producer `producer_id` now: it knows
    /// the producer and still leads, at the epoch it loaded, the `__transaction_state`
    /// partition of its transactional id (a broker that lost that partition keeps stale state
    /// until it leads it again and reloads).
    pub fn knows_producer(&self, log: &dyn CoordinatorLog, producer_id: i64) -> bool {
        let s = self.lock();
        let Some(id) = s.by_producer.get(&producer_id) else {
            return false;
        };
        let partition = self.partition_for(id);
        log.leader_epoch(TXN_TOPIC, partition)
            .is_some_and(|epoch| s.loaded.get(&partition) == Some(&epoch))
    }

    /// Remote markers waiting to be sent.
    pub fn queued_markers(&self) -> Vec<RemoteMarkers> {
        self.lock().remote_markers.clone()
    }

    /// The remote markers of `job` are written: the transaction completes (unless something
    /// else happened to it meanwhile).
    pub fn remote_markers_written(&self, log: &dyn CoordinatorLog, job: &RemoteMarkers) {
        let mut s = self.lock();
        s.remote_markers.retain(|m| {
            !(m.transactional_id == job.transactional_id
                && m.producer_id == job.producer_id
                && m.epoch == job.epoch)
        });
        let Some(mut meta) = s.txns.get(&job.transactional_id).cloned() else {
            return;
        };
        let prepared = if job.commit {
            TxnStatus::PrepareCommit
        } else {
            TxnStatus::PrepareAbort
        };
        if meta.status != prepared || meta.producer_id != job.producer_id || meta.epoch != job.epoch
        {
            return;
        }
        meta.status = if job.commit {
            TxnStatus::CompleteCommit
        } else {
            TxnStatus::CompleteAbort
        };
        meta.partitions.clear();
        meta.last_update_ms = crate::now_ms();
        match self.persist(log, &job.transactional_id, &meta) {
            Ok(()) => {
                s.txns.insert(job.transactional_id.clone(), meta);
            }
            Err(code) => {
                tracing::warn!(transactional_id = %job.transactional_id, code, "cannot complete the transaction yet");
                s.remote_markers.push(job.clone());
            }
        }
    }

    /// Whether this broker coordinates `transactional_id`: it leads the id's partition of
    /// `__transaction_state` (loading that partition first if it has just come to lead it).
    /// Any id before that topic exists.
    pub fn owns(&self, log: &dyn CoordinatorLog, transactional_id: &str) -> bool {
        let Some(topic) = log.image().topic(TXN_TOPIC).cloned() else {
            return true;
        };
        let partition =
            crate::group::store::partition_for(transactional_id, topic.partitions.len() as i32);
        let Some(epoch) = log.leader_epoch(TXN_TOPIC, partition) else {
            return false;
        };
        if self.lock().loaded.get(&partition) != Some(&epoch) {
            self.load_partitions(log, &[partition]);
        }
        true
    }

    /// Writes a transactional id's metadata to its `__transaction_state` partition.
    fn persist(
        &self,
        log: &dyn CoordinatorLog,
        transactional_id: &str,
        meta: &TxnMeta,
    ) -> Result<(), i16> {
        let partition = self.partition_for(transactional_id);
        if !log.hosts(TXN_TOPIC, partition) {
            return Err(ec::COORDINATOR_NOT_AVAILABLE);
        }
        let record = (
            store::key(transactional_id),
            Some(store::value(&meta.value())),
        );
        log.append(TXN_TOPIC, partition, &[record], BatchProducer::NONE)
            .map_err(|code| {
                tracing::error!(
                    transactional_id,
                    code,
                    "cannot write to __transaction_state"
                );
                ec::COORDINATOR_NOT_AVAILABLE
            })?;
        Ok(())
    }

    /// Creates `__transaction_state` if it does not exist yet (compacted, as Kafka's).
    pub async fn ensure_txn_topic(&self, log: &dyn CoordinatorLog) -> Result<(), i16> {
        if log.image().topic(TXN_TOPIC).is_some() {
            return Ok(());
        }
        let mut configs = std::collections::BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert(
            "segment.bytes".to_string(),
            self.config.segment_bytes.clone(),
        );
        configs.insert(
            "min.insync.replicas".to_string(),
            self.config.min_isr.clone(),
        );
        log.ensure_topic(InternalTopic {
            name: TXN_TOPIC,
            partitions: self.config.partitions,
            replication_factor: self.config.replication_factor,
            configs,
        })
        .await
    }

    /// Waits until remote markers are queued, or `timeout` passes.
    pub async fn wait_for_markers(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.markers_queued.notified()).await;
    }
}

/// Aborts timed-out transactions every `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
pub async fn ticker(
    txns: Arc<TransactionCoordinator>,
    log: Arc<dyn CoordinatorLog>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(txns.config.abort_check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        txns.abort_timed_out(&*log);
    }
}
