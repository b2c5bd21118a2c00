//! The partitions this broker hosts and their logs.
//!
//! The replica manager follows the metadata image: [`ReplicaManager::reconcile`] opens a log for
//! every partition the image places on this broker, applies config changes, and deletes the logs
//! of partitions that left the image.
//!
//! Each [`Partition`] wakes the operations waiting on it ([`crate::delayed`]) when its log grows,
//! its high watermark moves or its leadership changes: an append wakes the fetches and acks=all
//! produces of that partition only.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use strom_metadata::{MetadataDelta, MetadataImage, PartitionInfo, Uuid};
use strom_protocol::compression::Codec;
use strom_protocol::records::{BatchProducer, ProducerRecord, encode_producer_batch};
use strom_storage::{AppendInfo, Log, LogConfig, StorageError};

use crate::config::BrokerConfig;
use crate::delayed::{Waiter, Watchers};
use crate::metrics::{Metrics, TopicMetrics};
use crate::replication::{Election, IsrChange, LeaderState};

/// What this broker does for a partition, as the metadata says.
#[derive(Debug)]
pub enum Role {
    /// It leads: producers write here, followers fetch from here.
    Leader(LeaderState),
    /// It copies the log of `leader`.
    Follower { leader: i32 },
    /// No leader is known (every in-sync replica is down).
    Offline,
}

const PARTITION_METADATA: &str = "partition.metadata";

/// One hosted partition.
pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    /// The leader epoch this broker knows (stamped into batches it appends as leader).
    leader_epoch: AtomicI32,
    log: Mutex<Log>,
    /// The topic's counters (messages and bytes in and out); `None` records nothing.
    pub metrics: Option<TopicMetrics>,
    /// Everything below this offset is known to be on disk (fsynced by [`Self::flush_to`]).
    durable_end: AtomicI64,
    /// One fsync at a time; the appends that arrive during one are covered by the next.
    flush_turn: tokio::sync::Mutex<()>,
    /// More than one replica: the high watermark is tracked in `role`/`high_watermark`
    /// rather than being the log end offset.
    replicated: AtomicBool,
    /// High watermark of a replicated partition (leader: from its followers' positions;
    /// follower: as the leader last said, capped at its own log end).
    high_watermark: AtomicI64,
    role: Mutex<Role>,
    /// The operations waiting for this partition to change (fetches, acks=all produces,
    /// replicated coordinator writes).
    watchers: Arc<Watchers>,
}

impl Partition {
    pub fn new(
        topic: &str,
        topic_id: Uuid,
        index: i32,
        leader_epoch: i32,
        log: Log,
        metrics: Option<TopicMetrics>,
    ) -> Partition {
        Partition {
            topic: topic.to_string(),
            topic_id,
            index,
            leader_epoch: AtomicI32::new(leader_epoch),
            log: Mutex::new(log),
            metrics,
            durable_end: AtomicI64::new(0),
            flush_turn: tokio::sync::Mutex::new(()),
            replicated: AtomicBool::new(false),
            high_watermark: AtomicI64::new(0),
            role: Mutex::new(Role::Offline),
            watchers: Arc::default(),
        }
    }

    /// Registers `waiter` with this partition: its appends, high watermark moves and
    /// leadership changes wake it from now on.
    pub fn watch(&self, waiter: &mut Waiter) {
        waiter.watch(&self.watchers);
    }

    /// Publishes the high watermark a leader's replication state computed within one
    /// leadership. It never goes back: consumers may already have read below it, and acks=all
    /// producers may have been answered.
    fn advance_leader_high_watermark(&self, high_watermark: i64) {
        let before = self.high_watermark.swap(high_watermark, Ordering::AcqRel);
        assert!(
            high_watermark >= before,
            "replica invariant: the high watermark of {}-{} went back from {before} to {high_watermark} under leader epoch {}",
            self.topic,
            self.index,
            self.leader_epoch()
        );
    }

    /// Wakes the operations waiting on this partition.
    fn wake_waiters(&self) {
        self.watchers.wake();
    }

    /// The leader epoch as this broker knows it.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    fn role(&self) -> std::sync::MutexGuard<'_, Role> {
        self.role.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this broker leads the partition.
    pub fn is_leader(&self) -> bool {
        matches!(*self.role(), Role::Leader(_))
    }

    /// The leader this broker follows, if it is a follower.
    pub fn following(&self) -> Option<i32> {
        match *self.role() {
            Role::Follower { leader } => Some(leader),
            _ => None,
        }
    }

    /// Whether the partition has more than one replica.
    pub fn is_replicated(&self) -> bool {
        self.replicated.load(Ordering::Acquire)
    }

    /// The in-sync replicas as the leader counts them (empty unless this broker leads).
    pub fn isr_size(&self) -> usize {
        match &*self.role() {
            Role::Leader(l) => l.isr.len(),
            _ => 0,
        }
    }

    /// Takes the partition's state from the metadata: its replicas, leader and ISR. Returns
    /// true when this broker's role changed (a new leader epoch).
    pub fn apply_metadata(&self, info: &PartitionInfo, me: i32, now_ms: i64) -> bool {
        let hw_before = self.high_watermark.load(Ordering::Acquire);
        let changed = self.take_metadata(info, me, now_ms);
        if changed || self.high_watermark.load(Ordering::Acquire) != hw_before {
            self.wake_waiters();
        }
        changed
    }

    fn take_metadata(&self, info: &PartitionInfo, me: i32, now_ms: i64) -> bool {
        self.replicated
            .store(info.replicas.len() > 1, Ordering::Release);
        let mut role = self.role();
        let epoch_changed = self.leader_epoch() != info.leader_epoch;
        let leo = self.with_log(|l| l.log_end_offset());
        match &mut *role {
            Role::Leader(state) if info.leader == me && !epoch_changed => {
                // The same leadership; the ISR or the replicas may have changed (ours, the
                // controller's, a reassignment's).
                if info.partition_epoch > state.partition_epoch {
                    state.update_replicas(&info.replicas, now_ms);
                    let isr = info.isr.iter().copied().collect();
                    if state.on_isr_committed(Some((isr, info.partition_epoch)), leo) {
                        self.advance_leader_high_watermark(state.high_watermark());
                    }
                }
                return false;
            }
            Role::Follower { leader } if *leader == info.leader && !epoch_changed => return false,
            Role::Offline if info.leader < 0 && !epoch_changed => return false,
            _ => {}
        }
        // Images are taken in order (the replica manager skips an older one), so a partition's
        // leader epoch only grows; an older epoch here would let a deposed leader take writes.
        assert!(
            info.leader_epoch >= self.leader_epoch(),
            "replica invariant: {}-{} leader epoch would go back from {} to {}",
            self.topic,
            self.index,
            self.leader_epoch(),
            info.leader_epoch
        );
        self.leader_epoch
            .store(info.leader_epoch, Ordering::Release);
        if info.leader == me {
            let known_hw = if info.replicas.len() > 1 {
                self.high_watermark.load(Ordering::Acquire)
            } else {
                leo
            };
            let election = Election {
                leader: me,
                leader_epoch: info.leader_epoch,
                partition_epoch: info.partition_epoch,
                replicas: &info.replicas,
                isr: info.isr.iter().copied().collect(),
            };
            let mut state = LeaderState::new(election, leo, known_hw, now_ms);
            state.on_leader_append(leo);
            self.high_watermark
                .store(state.high_watermark(), Ordering::Release);
            tracing::info!(topic = %self.topic, partition = self.index, leader_epoch = info.leader_epoch, log_end = leo, high_watermark = state.high_watermark(), "leading partition");
            *role = Role::Leader(state);
        } else if info.leader >= 0 {
            tracing::info!(topic = %self.topic, partition = self.index, leader = info.leader, leader_epoch = info.leader_epoch, "following partition");
            *role = Role::Follower {
                leader: info.leader,
            };
        } else {
            tracing::info!(topic = %self.topic, partition = self.index, leader_epoch = info.leader_epoch, "partition offline: no leader");
            *role = Role::Offline;
        }
        true
    }

    /// The leader saw a follower fetch from `fetch_offset`. Returns whether the high watermark
    /// moved and the ISR change to ask the controller for, if any.
    pub fn on_follower_fetch(
        &self,
        follower: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> (bool, Option<IsrChange>) {
        let leo = self.with_log(|l| l.log_end_offset());
        let mut role = self.role();
        let Role::Leader(state) = &mut *role else {
            return (false, None);
        };
        let (moved, change) = state.on_follower_fetch(follower, fetch_offset, leo, now_ms);
        if moved {
            self.advance_leader_high_watermark(state.high_watermark());
            drop(role);
            self.wake_waiters();
        }
        (moved, change)
    }

    /// The leader's periodic check: followers that lag leave the ISR.
    pub fn maybe_shrink_isr(&self, now_ms: i64, lag_ms: i64) -> Option<IsrChange> {
        match &mut *self.role() {
            Role::Leader(state) => state.maybe_shrink_isr(now_ms, lag_ms),
            _ => None,
        }
    }

    /// An ISR change this leader asked for was refused or lost: it may ask again.
    pub fn isr_change_failed(&self) {
        let leo = self.with_log(|l| l.log_end_offset());
        let moved = match &mut *self.role() {
            Role::Leader(state) => {
                let moved = state.on_isr_committed(None, leo);
                if moved {
                    self.advance_leader_high_watermark(state.high_watermark());
                }
                moved
            }
            _ => false,
        };
        if moved {
            self.wake_waiters();
        }
    }

    /// A follower learned the leader's high watermark.
    pub fn set_follower_high_watermark(&self, hw: i64) {
        let leo = self.with_log(|l| l.log_end_offset());
        self.high_watermark.fetch_max(hw.min(leo), Ordering::AcqRel);
    }

    /// After an append as leader of a replicated partition: with an ISR of one, the high
    /// watermark moves at once.
    fn after_leader_append(&self, leo: i64) -> bool {
        if !self.is_replicated() {
            return false;
        }
        let mut role = self.role();
        if let Role::Leader(state) = &mut *role
            && state.on_leader_append(leo)
        {
            self.advance_leader_high_watermark(state.high_watermark());
            return true;
        }
        false
    }

    /// Appends a producer's batches (the produce path) without copying them, and counts them
    /// in the topic's metrics: two relaxed atomic adds per request, whatever the number of
    /// records. Returns whether a flush is due (flush.messages reached): the caller then awaits
    /// [`Self::flush_to`] before acknowledging.
    pub fn append(&self, batches: &[u8], now_ms: i64) -> Result<(AppendInfo, bool), StorageError> {
        let bytes = batches.len() as u64;
        let epoch = self.leader_epoch();
        let result = self.with_log(|l| l.append_shared_deferred_flush(batches, epoch, now_ms));
        if let Ok((info, _)) = &result {
            self.after_leader_append(info.last_offset + 1);
            self.wake_waiters();
        }
        if let Some(m) = &self.metrics {
            match &result {
                Ok((info, _)) => {
                    m.messages_in.inc_by(info.record_count.max(0) as u64);
                    m.bytes_in.inc_by(bytes);
                }
                Err(_) => {
                    m.failed_produce_requests.inc();
                }
            }
        }
        result
    }

    /// Appends (key, value) records written by the broker itself (coordinator state in
    /// `__consumer_offsets` and `__transaction_state`) as one uncompressed batch, with the
    /// producer fields of `producer` (transactional offset commits) or none.
    pub fn append_records(
        &self,
        records: &[(bytes::Bytes, Option<bytes::Bytes>)],
        producer: BatchProducer,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        if !self.is_leader() {
            return Err(StorageError::Io(io::Error::other(format!(
                "this broker does not lead {}-{}",
                self.topic, self.index
            ))));
        }
        let recs: Vec<ProducerRecord> = records
            .iter()
            .map(|(k, v)| ProducerRecord {
                key: Some(k.clone()),
                value: v.clone(),
                headers: Vec::new(),
                timestamp_ms: now_ms,
            })
            .collect();
        let batch = encode_producer_batch(&recs, Codec::None, producer)
            .map_err(|e| StorageError::InvalidRecord(format!("cannot encode records: {e}")))?;
        let mut buf = batch.to_vec();
        let epoch = self.leader_epoch();
        let info = self.with_log(|l| l.append(&mut buf, epoch, now_ms))?;
        self.after_leader_append(info.last_offset + 1);
        self.wake_waiters();
        Ok(info)
    }

    /// Appends a transaction marker (COMMIT or ABORT) for `producer_id` as leader.
    pub fn append_control(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        kind: strom_storage::ControlType,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let epoch = self.leader_epoch();
        let info = self.with_log(|l| {
            l.append_control(
                producer_id,
                producer_epoch,
                coordinator_epoch,
                kind,
                epoch,
                now_ms,
            )
        })?;
        self.after_leader_append(info.last_offset + 1);
        self.wake_waiters();
        Ok(info)
    }

    /// Appends batches fetched from the leader (as a follower).
    pub fn append_replicated(
        &self,
        batches: &mut [u8],
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let info = self.with_log(|l| l.append_replicated(batches, now_ms))?;
        self.wake_waiters();
        Ok(info)
    }

    /// Runs `f` with the log locked. Appends and reads hold the lock only for the file work.
    pub fn with_log<T>(&self, f: impl FnOnce(&mut Log) -> T) -> T {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut log)
    }

    /// Waits until everything below `end_offset` is on disk (flush.messages before
    /// acknowledging). Group commit: the fsync runs outside the log lock on a blocking thread,
    /// appends go on meanwhile, and the next fsync covers every append that arrived during the
    /// previous one, however many producers and requests they came from.
    pub async fn flush_to(&self, end_offset: i64) -> io::Result<()> {
        if self.durable_end.load(Ordering::Acquire) >= end_offset {
            return Ok(());
        }
        let _turn = self.flush_turn.lock().await;
        if self.durable_end.load(Ordering::Acquire) >= end_offset {
            return Ok(());
        }
        // Let requests that have already arrived on other connections append first, so that
        // this fsync covers them too: a yielded task runs again only after the runtime has
        // polled the sockets and run what became ready. Nothing waits when nothing arrived.
        tokio::task::yield_now().await;
        let (file, log_end) = self.with_log(|l| (l.active_file(), l.log_end_offset()));
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(io::Error::other)??;
        self.durable_end.fetch_max(log_end, Ordering::AcqRel);
        Ok(())
    }

    /// The offset below which records are on every in-sync replica: what consumers may read
    /// and acks=all producers wait for. With one replica, the log end offset.
    pub fn high_watermark(&self) -> i64 {
        if self.is_replicated() {
            self.high_watermark.load(Ordering::Acquire)
        } else {
            self.with_log(|l| l.log_end_offset())
        }
    }
}

type Key = (String, i32);

/// An ISR change a partition leader proposes, for the ISR task.
pub type IsrProposal = (Arc<Partition>, IsrChange);

/// ISR changes that may wait for the ISR task at once; more are dropped and proposed again.
const ISR_PROPOSALS_QUEUED: usize = 4096;

pub struct ReplicaManager {
    node_id: i32,
    metrics: Arc<Metrics>,
    data_dir: PathBuf,
    partitions: RwLock<HashMap<Key, Arc<Partition>>>,
    /// The partitions this broker follows, by leader: the replica fetchers watch it.
    pub followed: tokio::sync::watch::Sender<FollowedPartitions>,
    /// ISR changes for the one task that proposes them to the controller
    /// (`cluster::isr_manager`); its receiver until that task takes it.
    isr_proposals: tokio::sync::mpsc::Sender<IsrProposal>,
    isr_receiver: Mutex<Option<tokio::sync::mpsc::Receiver<IsrProposal>>>,
    /// The newest image reconciled: the next one is reconciled by its delta from it, and an
    /// older one arriving late is skipped.
    reconciled: Mutex<Option<Arc<MetadataImage>>>,
}

/// Followed partitions by leader broker id.
pub type FollowedPartitions = std::collections::BTreeMap<i32, Vec<Arc<Partition>>>;

impl ReplicaManager {
    pub fn new(node_id: i32, data_dir: &Path, metrics: Arc<Metrics>) -> Self {
        let (isr_proposals, isr_receiver) = tokio::sync::mpsc::channel(ISR_PROPOSALS_QUEUED);
        Self {
            isr_proposals,
            isr_receiver: Mutex::new(Some(isr_receiver)),
            node_id,
            metrics,
            data_dir: data_dir.to_path_buf(),
            partitions: RwLock::new(HashMap::new()),
            followed: tokio::sync::watch::Sender::new(Default::default()),
            reconciled: Mutex::new(None),
        }
    }

    /// Hands an ISR change of a partition this broker leads to the ISR task. When the task is
    /// not running or is too far behind, the change is dropped and the partition may propose
    /// it again.
    pub fn propose_isr(&self, p: Arc<Partition>, change: IsrChange) {
        if let Err(e) = self.isr_proposals.try_send((p, change)) {
            let (p, _) = e.into_inner();
            p.isr_change_failed();
        }
    }

    /// The ISR changes to propose, for the one task that proposes them (once).
    pub fn take_isr_proposals(&self) -> Option<tokio::sync::mpsc::Receiver<IsrProposal>> {
        self.isr_receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// The partition if this broker leads it: UNKNOWN_TOPIC_OR_PARTITION when it is not
    /// hosted here, NOT_LEADER_OR_FOLLOWER when another broker leads it.
    pub fn leader(&self, topic: &str, partition: i32) -> Result<Arc<Partition>, i16> {
        let p = self
            .get(topic, partition)
            .ok_or(strom_protocol::error_code::UNKNOWN_TOPIC_OR_PARTITION)?;
        if p.is_leader() {
            Ok(p)
        } else {
            Err(strom_protocol::error_code::NOT_LEADER_OR_FOLLOWER)
        }
    }

    /// Waits until the high watermark of `p` reaches `end` (every in-sync replica has what
    /// is below it): NOT_LEADER_OR_FOLLOWER if the leadership moves meanwhile,
    /// REQUEST_TIMED_OUT after `timeout`. Returns at once for a partition with one replica.
    pub async fn wait_replicated(
        &self,
        p: &Partition,
        end: i64,
        timeout: std::time::Duration,
    ) -> Result<(), i16> {
        use strom_protocol::error_code as ec;
        let deadline = tokio::time::Instant::now() + timeout;
        let epoch = p.leader_epoch();
        let mut waiter = Waiter::new();
        p.watch(&mut waiter);
        loop {
            if p.high_watermark() >= end {
                return Ok(());
            }
            if p.leader_epoch() != epoch || !p.is_leader() {
                return Err(ec::NOT_LEADER_OR_FOLLOWER);
            }
            if !waiter.wait_until(deadline).await {
                return if p.high_watermark() >= end {
                    Ok(())
                } else {
                    Err(ec::REQUEST_TIMED_OUT)
                };
            }
        }
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Brings the hosted partitions in line with the image.
    pub fn reconcile(
        &self,
        image: &Arc<MetadataImage>,
        config: &BrokerConfig,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let mut reconciled = self.reconciled.lock().unwrap_or_else(|e| e.into_inner());
        let delta = match reconciled.as_ref() {
            Some(last) if image.offset < last.offset => return Ok(()),
            Some(last) => {
                let mut delta = MetadataDelta::between(last, image);
                if delta.broker_configs_changed {
                    // Broker defaults may change every topic's log settings.
                    delta.changed_topics = image.topics.values().cloned().collect();
                }
                delta
            }
            None => MetadataDelta::all(image),
        };
        self.apply_delta(&delta, config, now_ms)?;
        // Only once applied: a failure (a log that cannot be opened) is retried with the next
        // image, whose delta still holds it.
        *reconciled = Some(image.clone());
        Ok(())
    }

    /// Brings the hosted partitions of the topics `delta` names in line with it: opens new
    /// ones, removes those that left (or whose topic was recreated), updates configs and
    /// roles. Partitions of other topics are not looked at.
    fn apply_delta(
        &self,
        delta: &MetadataDelta,
        config: &BrokerConfig,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let touched: std::collections::HashSet<&str> = delta
            .changed_topics
            .iter()
            .map(|t| t.name.as_str())
            .chain(delta.removed_topics.iter().map(|(name, _)| name.as_str()))
            .collect();
        let mut wanted: HashMap<Key, (Uuid, PartitionInfo, LogConfig)> = HashMap::new();
        for topic in &delta.changed_topics {
            let log_config = config.log_config(&topic.configs);
            for p in &topic.partitions {
                if p.replicas.contains(&self.node_id) {
                    wanted.insert(
                        (topic.name.clone(), p.partition),
                        (topic.topic_id, p.clone(), log_config.clone()),
                    );
                }
            }
        }
        let infos: Vec<(Key, PartitionInfo)> = wanted
            .iter()
            .map(|(k, (_, info, _))| (k.clone(), info.clone()))
            .collect();
        let mut parts = self.partitions.write().unwrap_or_else(|e| e.into_inner());
        // Drop partitions that left the image, or whose topic was recreated under a new id.
        let gone: Vec<Key> = parts
            .iter()
            .filter(|(k, _)| touched.contains(k.0.as_str()))
            .filter(|(k, p)| wanted.get(*k).is_none_or(|(id, _, _)| *id != p.topic_id))
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(p) = parts.remove(&key) {
                let dir = p.with_log(|l| l.dir().to_path_buf());
                remove_partition_dir(&dir, &p.topic_id);
                if !parts.keys().any(|(t, _)| *t == key.0) {
                    self.metrics.remove_topic(&key.0);
                }
            }
        }
        let mut to_open = Vec::new();
        for (key, (topic_id, info, log_config)) in wanted {
            let leader_epoch = info.leader_epoch;
            match parts.get(&key) {
                Some(p) => {
                    p.with_log(|l| l.update_config(log_config));
                }
                None => to_open.push((key, topic_id, leader_epoch, log_config)),
            }
        }
        // Opening a log is mostly file-system work (recovery of the active segment, indexes,
        // producer snapshots): at start-up with many partitions, spread it over the cores.
        let opened = open_logs(
            to_open
                .into_iter()
                .map(|(key, topic_id, leader_epoch, log_config)| {
                    let dir = self.partition_dir(&key.0, key.1);
                    (key, topic_id, leader_epoch, log_config, dir)
                })
                .collect(),
            now_ms,
        )?;
        for (key, topic_id, _leader_epoch, log) in opened {
            tracing::debug!(topic = %key.0, partition = key.1, leo = log.log_end_offset(), "opened partition log");
            let metrics = Some(self.metrics.topic(&key.0));
            parts.insert(
                key.clone(),
                Arc::new(Partition::new(
                    &key.0, topic_id, key.1,
                    // Not yet taken: apply_metadata below takes it with the role.
                    -1, log, metrics,
                )),
            );
        }
        let mut changed = false;
        for (key, info) in &infos {
            if let Some(p) = parts.get(key) {
                changed |= p.apply_metadata(info, self.node_id, now_ms);
            }
        }
        let mut followed = FollowedPartitions::new();
        for p in parts.values() {
            if let Some(leader) = p.following() {
                followed.entry(leader).or_default().push(p.clone());
            }
        }
        drop(parts);
        self.followed.send_if_modified(|current| {
            let same = current.len() == followed.len()
                && current.iter().zip(&followed).all(|((l1, a), (l2, b))| {
                    l1 == l2
                        && a.len() == b.len()
                        && a.iter()
                            .zip(b)
                            .all(|(x, y)| Arc::ptr_eq(x, y) && x.leader_epoch() == y.leader_epoch())
                });
            if same && !changed {
                return false;
            }
            *current = followed;
            true
        });
        Ok(())
    }

    /// Removes directories in the data dir that belong to no hosted partition: the remains of
    /// deletions interrupted by a crash.
    pub fn remove_strays(&self) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        let hosted: std::collections::HashSet<PathBuf> = self
            .all()
            .iter()
            .map(|p| p.with_log(|l| l.dir().to_path_buf()))
            .collect();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let looks_like_partition = name
                .rsplit_once('-')
                .is_some_and(|(_, n)| n.parse::<u32>().is_ok() || n == "delete");
            if path.is_dir()
                && looks_like_partition
                && !name.starts_with("__cluster_metadata")
                && !hosted.contains(&path)
            {
                tracing::info!(dir = %path.display(), "removing log directory of a deleted partition");
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove stray log directory");
                }
            }
        }
    }
}

type ToOpen = (Key, Uuid, i32, LogConfig, PathBuf);

/// Claims and opens the logs of `to_open` on up to one thread per core; the first failure
/// fails the whole call.
fn open_logs(
    to_open: Vec<ToOpen>,
    now_ms: i64,
) -> Result<Vec<(Key, Uuid, i32, Log)>, StorageError> {
    let open_one = |(key, topic_id, leader_epoch, log_config, dir): ToOpen| {
        claim_dir(&dir, &topic_id)?;
        let log = Log::open(&dir, log_config, now_ms)?;
        Ok((key, topic_id, leader_epoch, log))
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(to_open.len() / 64)
        .max(1);
    if threads == 1 {
        return to_open.into_iter().map(open_one).collect();
    }
    let queue = Mutex::new(to_open.into_iter());
    let results: Vec<Result<Vec<_>, StorageError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                        let Some(item) = next else { break };
                        done.push(open_one(item)?);
                    }
                    Ok(done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut opened = Vec::new();
    for r in results {
        opened.extend(r?);
    }
    Ok(opened)
}

/// Makes sure `dir` holds the log of `topic_id`: a directory left by an earlier topic of the same
/// name is cleared first.
fn claim_dir(dir: &Path, topic_id: &Uuid) -> Result<(), StorageError> {
    let marker = dir.join(PARTITION_METADATA);
    let expected = format!("version: 0\ntopic_id: {topic_id}\n");
    match std::fs::read_to_string(&marker) {
        Ok(s) if s == expected => return Ok(()),
        Ok(_) => {
            tracing::info!(dir = %dir.display(), "log directory belongs to an older topic of the same name; clearing it");
            std::fs::remove_dir_all(dir)?;
        }
        Err(_) => {}
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{PARTITION_METADATA}.tmp"));
    std::fs::write(&tmp, expected)?;
    std::fs::rename(&tmp, &marker)?;
    Ok(())
}

/// Renames a deleted partition's directory out of the way at once, then removes it.
fn remove_partition_dir(dir: &Path, topic_id: &Uuid) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let doomed = dir.with_file_name(format!("{name}.{}-delete", topic_id.simple()));
    let target = match std::fs::rename(dir, &doomed) {
        Ok(()) => doomed,
        Err(_) => dir.to_path_buf(),
    };
    if let Err(e) = std::fs::remove_dir_all(&target) {
        tracing::warn!(dir = %target.display(), error = %e, "cannot remove deleted partition's directory");
    }
}
