//! The group coordinator: classic consumer groups (JoinGroup/SyncGroup/Heartbeat/LeaveGroup)
//! and committed offsets, with state kept in the compacted internal topic
//! `__consumer_offsets` and rebuilt from it at start-up.
//!
//! All group state sits behind one lock and changes synchronously; requests that must wait (a
//! JoinGroup until the rebalance completes, a SyncGroup until the leader's assignment) get a
//! oneshot receiver. A ticker enforces session timeouts, rebalance deadlines, the initial
//! rebalance delay and offset retention.

pub mod assignor;
pub mod consumer;
pub mod consumer_ops;
pub mod state;
pub mod store;
mod txn_offsets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_protocol::error_code as ec;
use strom_protocol::records::BatchProducer;
use tokio::sync::oneshot;

use crate::log::{CoordinatorLog, InternalTopic};
use state::{Committed, Group, GroupState, JoinResult, Member, SyncResult};
use store::{GroupValue, OffsetValue, StoredMember, StoredRecord};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Settings of the coordinator, from broker properties.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub initial_rebalance_delay: Duration,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub max_size: usize,
    pub offsets_partitions: i32,
    pub offsets_retention_ms: i64,
    pub offsets_retention_check: Duration,
    /// `offsets.commit.timeout.ms`: how long a write waits for the in-sync replicas.
    pub offsets_commit_timeout: Duration,
    pub offset_metadata_max_bytes: usize,
    /// `offsets.topic.replication.factor`, for creating `__consumer_offsets`.
    pub offsets_topic_replication_factor: i32,
    /// `offsets.topic.segment.bytes`, for creating `__consumer_offsets`.
    pub offsets_topic_segment_bytes: String,
    pub consumer: consumer::ConsumerConfig,
}

/// Committed offsets by topic: (topic, [(partition, offset if committed)]).
pub type TopicOffsets = Vec<(String, Vec<(i32, Option<Committed>)>)>;

/// Group metadata to write to `__consumer_offsets`: (group id, value).
pub type GroupRecord = (String, GroupValue);

/// A JoinGroup as the coordinator needs it.
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394: v4+ clients must first ask for a member id.
    pub require_known_member_id: bool,
}

/// An answer now or later.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

impl<T> Reply<T> {
    pub async fn wait(self, fallback: impl FnOnce() -> T) -> T {
        match self {
            Reply::Now(v) => v,
            Reply::Later(rx) => rx.await.unwrap_or_else(|_| fallback()),
        }
    }
}

/// A member as DescribeGroups shows it.
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as DescribeGroups and ListGroups show it.
pub struct GroupView {
    pub group_id: String,
    /// "classic" or "consumer".
    pub group_type: &'static str,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
}

/// A group's state and committed offsets (topic, partition, offset), as metrics see them.
pub struct GroupOffsets {
    pub group_id: String,
    pub state: &'static str,
    pub offsets: Vec<(String, i32, i64)>,
}

pub struct GroupCoordinator {
    config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    /// The `__consumer_offsets` partitions this broker leads and has loaded: it coordinates
    /// the groups that map to them, and answers NOT_COORDINATOR for the others.
    loaded: Mutex<std::collections::BTreeSet<i32>>,
    /// Offsets committed inside transactions, by (producer id, `__consumer_offsets`
    /// partition): written, but applied only when the transaction commits.
    pending_txn_offsets: Mutex<txn_offsets::PendingOffsets>,
}

fn now_ms() -> i64 {
    crate::now_ms()
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> Self {
        GroupCoordinator {
            config,
            groups: Mutex::new(HashMap::new()),
            loaded: Mutex::new(Default::default()),
            pending_txn_offsets: Mutex::new(Default::default()),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rebuilds groups and offsets from the `__consumer_offsets` partitions this broker leads
    /// (called at start-up).
    pub fn load(&self, log: &dyn CoordinatorLog) {
        self.follow_leadership(log);
    }

    /// Whether this broker coordinates `group_id`: it leads and has loaded the group's
    /// partition of `__consumer_offsets` (any group before that topic exists).
    pub fn owns(&self, log: &dyn CoordinatorLog, group_id: &str) -> bool {
        let image = log.image();
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return true;
        };
        let partition = store::partition_for(group_id, topic.partitions.len() as i32);
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&partition)
    }

    /// Loads the groups of `__consumer_offsets` partitions this broker has come to lead and
    /// drops those of partitions it no longer leads (they moved to another coordinator).
    pub fn follow_leadership(&self, log: &dyn CoordinatorLog) {
        let led: std::collections::BTreeSet<i32> =
            log.led_partitions(OFFSETS_TOPIC).into_iter().collect();
        let (gained, lost) = {
            let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            (
                led.difference(&loaded).copied().collect::<Vec<_>>(),
                loaded.difference(&led).copied().collect::<Vec<_>>(),
            )
        };
        if !lost.is_empty() {
            let partitions = log
                .image()
                .topic(OFFSETS_TOPIC)
                .map_or(self.config.offsets_partitions, |t| {
                    t.partitions.len() as i32
                });
            let mut groups = self.lock();
            let before = groups.len();
            groups.retain(|id, _| !lost.contains(&store::partition_for(id, partitions)));
            self.loaded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|p| !lost.contains(p));
            tracing::info!(partitions = ?lost, groups = before - groups.len(), "no longer coordinating the groups of these __consumer_offsets partitions");
        }
        if !gained.is_empty() {
            self.load_partitions(log, &gained);
        }
    }

    /// Rebuilds the groups and offsets of these `__consumer_offsets` partitions.
    fn load_partitions(&self, log: &dyn CoordinatorLog, partitions: &[i32]) {
        let mut groups = self.lock();
        let now = Instant::now();
        let topics = consumer_ops::ImageTopics(log.image());
        let mut records = 0usize;
        for &index in partitions {
            if !log.hosts(OFFSETS_TOPIC, index) {
                continue;
            }
            log.read_all(OFFSETS_TOPIC, index, &mut |data| {
                // Transactional offset commits count once their transaction commits.
                match self.split_offsets_batches(index, data) {
                    Ok(recs) => {
                        for r in recs {
                            let Some(key) = r.key else { continue };
                            match store::decode(key, r.value) {
                                Ok(rec) => {
                                    records += 1;
                                    if !consumer_ops::apply_consumer_record(
                                        &mut groups,
                                        &rec,
                                        &topics,
                                        now,
                                    ) {
                                        apply(&mut groups, rec, now);
                                    }
                                }
                                Err(e) => tracing::warn!(
                                    partition = index,
                                    offset = r.offset,
                                    reason = e.0,
                                    "skipping malformed record"
                                ),
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(partition = index, error = %e, "cannot decode __consumer_offsets")
                    }
                }
            });
        }
        let count = log
            .image()
            .topic(OFFSETS_TOPIC)
            .map_or(self.config.offsets_partitions, |t| {
                t.partitions.len() as i32
            });
        for (id, g) in groups.iter_mut() {
            if !partitions.contains(&store::partition_for(id, count)) {
                continue;
            }
            if let Some(c) = g.consumer.as_mut() {
                consumer_ops::restore(c, &topics, now);
            }
        }
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(partitions.iter().copied());
        if records > 0 {
            tracing::info!(
                groups = groups.len(),
                records,
                "group state loaded from __consumer_offsets"
            );
        }
    }

    /// Handles a JoinGroup.
    pub fn join(&self, req: JoinRequest) -> Reply<JoinResult> {
        let now = Instant::now();
        let mut groups = self.lock();
        if req.group_id.is_empty() {
            return Reply::Now(JoinResult::error(ec::INVALID_GROUP_ID, &req.member_id));
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Reply::Now(JoinResult::error(
                ec::INVALID_SESSION_TIMEOUT,
                &req.member_id,
            ));
        }
        if !req.member_id.is_empty() && !groups.contains_key(&req.group_id) {
            return Reply::Now(JoinResult::error(ec::UNKNOWN_MEMBER_ID, &req.member_id));
        }
        let group = groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(&req.group_id, now_ms()));
        if group.state == GroupState::Dead {
            return Reply::Now(JoinResult::error(
                ec::COORDINATOR_NOT_AVAILABLE,
                &req.member_id,
            ));
        }
        if let Some(c) = &group.consumer {
            // A consumer group takes classic members only when it is empty (it then becomes
            // a classic group and keeps its offsets).
            if !c.members.is_empty() {
                return Reply::Now(JoinResult::error(
                    ec::INCONSISTENT_GROUP_PROTOCOL,
                    &req.member_id,
                ));
            }
            group.generation = group.generation.max(c.group_epoch);
            group.consumer = None;
        }
        if !group.supports(&req.protocol_type, &req.protocols) {
            return Reply::Now(JoinResult::error(
                ec::INCONSISTENT_GROUP_PROTOCOL,
                &req.member_id,
            ));
        }
        let mut member_id = req.member_id.clone();
        if member_id.is_empty() {
            member_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            if let Some(instance) = &req.instance_id {
                // A static member coming back: it takes over its old identity.
                if let Some(old) = group.static_members.get(instance).cloned()
                    && let Some(mut m) = group.members.remove(&old)
                {
                    if let Some(w) = m.join_waiter.take() {
                        let _ = w.send(JoinResult::error(ec::FENCED_INSTANCE_ID, &old));
                    }
                    if let Some(w) = m.sync_waiter.take() {
                        let _ = w.send(SyncResult::error(ec::FENCED_INSTANCE_ID));
                    }
                    let same_protocols = m.protocols == req.protocols;
                    m.member_id = member_id.clone();
                    m.client_id = req.client_id.clone();
                    m.client_host = req.client_host.clone();
                    m.session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
                    m.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms as u64);
                    m.protocols = req.protocols.clone();
                    m.last_heartbeat = now;
                    group.members.insert(member_id.clone(), m);
                    group
                        .static_members
                        .insert(instance.clone(), member_id.clone());
                    if group.leader.as_deref() == Some(old.as_str()) {
                        group.leader = Some(member_id.clone());
                    }
                    if group.state == GroupState::Stable && same_protocols {
                        // KIP-345: no rebalance; the member keeps its assignment.
                        let leader = group.leader.clone().unwrap_or_default();
                        let members = if leader == member_id {
                            group.member_list()
                        } else {
                            Vec::new()
                        };
                        return Reply::Now(JoinResult {
                            error_code: ec::NONE,
                            generation: group.generation,
                            protocol_type: group.protocol_type.clone(),
                            protocol: group.protocol.clone(),
                            leader,
                            member_id,
                            members,
                        });
                    }
                    return self.wait_for_join(group, &member_id, now);
                }
            } else if req.require_known_member_id {
                group.pending.insert(
                    member_id.clone(),
                    now + Duration::from_millis(req.session_timeout_ms as u64),
                );
                return Reply::Now(JoinResult::error(ec::MEMBER_ID_REQUIRED, &member_id));
            }
        } else if let Some(instance) = &req.instance_id
            && group
                .static_members
                .get(instance)
                .is_some_and(|id| *id != member_id)
        {
            return Reply::Now(JoinResult::error(ec::FENCED_INSTANCE_ID, &member_id));
        }
        let known = group.members.contains_key(&member_id);
        if !known {
            let was_pending = group.pending.remove(&member_id).is_some();
            if !req.member_id.is_empty() && !was_pending {
                return Reply::Now(JoinResult::error(ec::UNKNOWN_MEMBER_ID, &member_id));
            }
            if group.members.len() >= self.config.max_size {
                return Reply::Now(JoinResult::error(ec::GROUP_MAX_SIZE_REACHED, &member_id));
            }
        }
        if group.members.is_empty() {
            group.protocol_type = Some(req.protocol_type.clone());
        }
        let member = group
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                member_id: member_id.clone(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout: Duration::ZERO,
                rebalance_timeout: Duration::ZERO,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            });
        let changed = member.protocols != req.protocols;
        member.protocols = req.protocols.clone();
        member.session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms as u64);
        member.last_heartbeat = now;
        if let Some(i) = &req.instance_id {
            group.static_members.insert(i.clone(), member_id.clone());
        }
        // A known member rejoining a stable group with the same protocols, as the leader or
        // not, still starts a rebalance: that is how clients ask for one.
        let _ = changed;
        self.wait_for_join(group, &member_id, now)
    }

    fn wait_for_join(&self, group: &mut Group, member_id: &str, now: Instant) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = group.members.get_mut(member_id)
            && let Some(old) = m.join_waiter.replace(tx)
        {
            let _ = old.send(JoinResult::error(ec::UNKNOWN_MEMBER_ID, member_id));
        }
        // Start a rebalance, or extend the initial delay of a new group's first one.
        if group.state != GroupState::PreparingRebalance || group.initial_delay_until.is_some() {
            group.prepare_rebalance(now, self.config.initial_rebalance_delay);
        }
        if group.initial_delay_until.is_none() && group.all_joined() {
            group.complete_join(now);
        }
        Reply::Later(rx)
    }

    /// Handles a SyncGroup; returns the group's metadata to persist when the leader's
    /// assignment completes the rebalance.
    pub fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> (Reply<SyncResult>, Option<GroupRecord>) {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return (Reply::Now(SyncResult::error(ec::UNKNOWN_MEMBER_ID)), None);
        };
        if let Some(code) = check_member(group, member_id, instance_id) {
            return (Reply::Now(SyncResult::error(code)), None);
        }
        if generation != group.generation {
            return (Reply::Now(SyncResult::error(ec::ILLEGAL_GENERATION)), None);
        }
        match group.state {
            GroupState::PreparingRebalance => (
                Reply::Now(SyncResult::error(ec::REBALANCE_IN_PROGRESS)),
                None,
            ),
            GroupState::Stable => {
                let m = &group.members[member_id];
                (
                    Reply::Now(SyncResult {
                        error_code: ec::NONE,
                        protocol_type: group.protocol_type.clone(),
                        protocol: group.protocol.clone(),
                        assignment: m.assignment.clone(),
                    }),
                    None,
                )
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = group.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_heartbeat = Instant::now();
                }
                let mut persist = None;
                if group.leader.as_deref() == Some(member_id) {
                    group.complete_sync(assignments.into_iter().collect());
                    persist = Some((group.id.clone(), group_value(group)));
                }
                (Reply::Later(rx), persist)
            }
            GroupState::Empty | GroupState::Dead => {
                (Reply::Now(SyncResult::error(ec::UNKNOWN_MEMBER_ID)), None)
            }
        }
    }

    /// Handles a Heartbeat; returns the error code.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return ec::UNKNOWN_MEMBER_ID;
        };
        if let Some(code) = check_member(group, member_id, instance_id) {
            return code;
        }
        if let Some(m) = group.members.get_mut(member_id) {
            m.last_heartbeat = Instant::now();
        }
        match group.state {
            GroupState::PreparingRebalance => ec::REBALANCE_IN_PROGRESS,
            _ if generation != group.generation => ec::ILLEGAL_GENERATION,
            GroupState::Stable | GroupState::CompletingRebalance => ec::NONE,
            GroupState::Empty | GroupState::Dead => ec::UNKNOWN_MEMBER_ID,
        }
    }

    /// Handles a LeaveGroup for (member id, instance id) pairs; returns a code per member and
    /// the group metadata to persist.
    pub fn leave(
        &self,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> (i16, Vec<i16>, Option<GroupRecord>) {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return (
                ec::NONE,
                members.iter().map(|_| ec::UNKNOWN_MEMBER_ID).collect(),
                None,
            );
        };
        let mut codes = Vec::new();
        let mut left = false;
        for (member_id, instance) in members {
            let target = match &instance {
                Some(i) => match group.static_members.get(i) {
                    Some(id) if member_id.is_empty() || *id == member_id => Some(id.clone()),
                    Some(_) => {
                        codes.push(ec::FENCED_INSTANCE_ID);
                        continue;
                    }
                    None => None,
                },
                None => group
                    .members
                    .contains_key(&member_id)
                    .then(|| member_id.clone()),
            };
            match target {
                Some(id) => {
                    group.remove_member(&id);
                    left = true;
                    codes.push(ec::NONE);
                }
                None => {
                    if group.pending.remove(&member_id).is_some() {
                        codes.push(ec::NONE);
                    } else {
                        codes.push(ec::UNKNOWN_MEMBER_ID);
                    }
                }
            }
        }
        let mut persist = None;
        if left {
            group.after_departure(Instant::now(), now_ms());
            persist = Some((group.id.clone(), group_value(group)));
        }
        (ec::NONE, codes, persist)
    }

    /// Checks an OffsetCommit against the group; `Ok` means the offsets may be written.
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        self.check_commit_at(group_id, member_id, instance_id, generation, None)
    }

    /// [`Self::check_commit`] for an OffsetCommit of the given version: members of consumer
    /// protocol groups must use v9+ (a transactional commit passes None: no such rule).
    pub fn check_commit_at(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        api_version: Option<i16>,
    ) -> Result<(), i16> {
        let mut groups = self.lock();
        if group_id.is_empty() {
            return Err(ec::INVALID_GROUP_ID);
        }
        let group = match groups.get_mut(group_id) {
            Some(g) => g,
            None if generation < 0 => {
                groups.insert(group_id.to_string(), Group::new(group_id, now_ms()));
                return Ok(());
            }
            None => return Err(ec::ILLEGAL_GENERATION),
        };
        if let Some(c) = group.consumer.as_mut() {
            // Consumer groups: the generation field carries the member epoch (v9+).
            if generation < 0 && member_id.is_empty() {
                return if c.members.is_empty() {
                    Ok(())
                } else {
                    Err(ec::UNKNOWN_MEMBER_ID)
                };
            }
            let Some(m) = c.members.get_mut(member_id) else {
                return Err(ec::UNKNOWN_MEMBER_ID);
            };
            if api_version.is_some_and(|v| v < 9) {
                return Err(ec::UNSUPPORTED_VERSION);
            }
            if generation > m.member_epoch {
                return Err(ec::FENCED_MEMBER_EPOCH);
            }
            if generation < m.member_epoch {
                return Err(ec::STALE_MEMBER_EPOCH);
            }
            return Ok(());
        }
        if generation < 0 && member_id.is_empty() {
            // A commit from outside any generation: only while nobody is in the group.
            return if group.members.is_empty() {
                Ok(())
            } else {
                Err(ec::UNKNOWN_MEMBER_ID)
            };
        }
        if let Some(code) = check_member(group, member_id, instance_id) {
            return Err(code);
        }
        if generation != group.generation {
            return Err(ec::ILLEGAL_GENERATION);
        }
        // As Kafka: a member of the current generation may commit while the next rebalance is
        // being prepared (it learns of the rebalance from its heartbeat), but not between the
        // join and the assignment.
        if group.state == GroupState::CompletingRebalance {
            return Err(ec::REBALANCE_IN_PROGRESS);
        }
        if let Some(m) = group.members.get_mut(member_id) {
            m.last_heartbeat = Instant::now();
        }
        Ok(())
    }

    /// Applies records of `__consumer_offsets` as loading does (transactional offset commits
    /// whose transaction committed).
    pub fn apply_stored(&self, records: Vec<(Bytes, Option<Bytes>)>) {
        let mut groups = self.lock();
        let now = Instant::now();
        for (key, value) in records {
            match store::decode(key, value) {
                Ok(rec) => apply(&mut groups, rec, now),
                Err(e) => tracing::warn!(reason = e.0, "skipping malformed transactional offset"),
            }
        }
    }

    /// Records offsets that were written to the log.
    pub fn committed(&self, group_id: &str, offsets: Vec<(String, i32, Committed)>) {
        let mut groups = self.lock();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now_ms()));
        for (t, p, c) in offsets {
            group.offsets.insert((t, p), c);
        }
    }

    /// Committed offsets of a group: all of them, or those asked for (missing ones as None).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> TopicOffsets {
        let groups = self.lock();
        let offsets = groups.get(group_id).map(|g| &g.offsets);
        match wanted {
            Some(w) => w
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .into_iter()
                        .map(|p| (p, offsets.and_then(|o| o.get(&(t.clone(), p)).cloned())))
                        .collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut by_topic: std::collections::BTreeMap<
                    String,
                    Vec<(i32, Option<Committed>)>,
                > = Default::default();
                if let Some(o) = offsets {
                    for ((t, p), c) in o {
                        by_topic
                            .entry(t.clone())
                            .or_default()
                            .push((*p, Some(c.clone())));
                    }
                }
                by_topic
                    .into_iter()
                    .map(|(t, mut ps)| {
                        ps.sort_by_key(|(p, _)| *p);
                        (t, ps)
                    })
                    .collect()
            }
        }
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let groups = self.lock();
        groups.get(group_id).map(view)
    }

    /// Every group's state and committed offsets, for metrics: (group, state, offsets).
    pub fn offsets_snapshot(&self) -> Vec<GroupOffsets> {
        let groups = self.lock();
        groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(|g| GroupOffsets {
                group_id: g.id.clone(),
                state: g.state.name(),
                offsets: g
                    .offsets
                    .iter()
                    .map(|((t, p), c)| (t.clone(), *p, c.offset))
                    .collect(),
            })
            .collect()
    }

    pub fn list(&self) -> Vec<GroupView> {
        let groups = self.lock();
        let mut v: Vec<GroupView> = groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .map(view)
            .collect();
        v.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        v
    }

    /// Deletes an empty group; returns the offset keys whose tombstones must be written and
    /// whether it was a consumer group.
    pub fn delete_group(&self, group_id: &str) -> Result<(Vec<(String, i32)>, bool), i16> {
        let mut groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            return Err(ec::GROUP_ID_NOT_FOUND);
        };
        if !group.is_empty() || group.state != GroupState::Empty {
            return Err(ec::NON_EMPTY_GROUP);
        }
        let keys = group.offsets.keys().cloned().collect();
        let consumer = group.consumer.is_some();
        groups.remove(group_id);
        Ok((keys, consumer))
    }

    /// Checks an OffsetDelete: the topics the group still consumes cannot lose their offsets.
    pub fn offset_delete_check(
        &self,
        group_id: &str,
    ) -> Result<std::collections::HashSet<String>, i16> {
        let groups = self.lock();
        let group = groups.get(group_id).ok_or(ec::GROUP_ID_NOT_FOUND)?;
        Ok(if group.state == GroupState::Empty && group.is_empty() {
            Default::default()
        } else {
            group.subscribed_topics()
        })
    }

    pub fn forget_offsets(&self, group_id: &str, keys: &[(String, i32)]) {
        let mut groups = self.lock();
        if let Some(g) = groups.get_mut(group_id) {
            for k in keys {
                g.offsets.remove(k);
            }
        }
    }

    /// Timeouts: expired sessions, finished rebalance windows, expired offsets of empty groups.
    /// Returns group metadata to persist and expired offsets to tombstone.
    pub fn tick(&self, expire_offsets: bool) -> (Vec<GroupRecord>, Vec<(String, String, i32)>) {
        let now = Instant::now();
        let now_ms = now_ms();
        let mut groups = self.lock();
        let mut persist = Vec::new();
        let mut expired = Vec::new();
        for group in groups.values_mut() {
            let mut changed = false;
            group.pending.retain(|_, deadline| *deadline > now);
            let dead: Vec<String> = group
                .members
                .values()
                .filter(|m| {
                    m.join_waiter.is_none()
                        && now.duration_since(m.last_heartbeat) > m.session_timeout
                })
                .map(|m| m.member_id.clone())
                .collect();
            for id in &dead {
                tracing::info!(group = %group.id, member = %id, "member session expired");
                group.remove_member(id);
                changed = true;
            }
            if changed {
                group.after_departure(now, now_ms);
            }
            match group.state {
                GroupState::PreparingRebalance => {
                    let delay_over = group.initial_delay_until.is_none_or(|t| now >= t);
                    if delay_over {
                        group.initial_delay_until = None;
                    }
                    let deadline_over = group.rebalance_deadline.is_some_and(|d| now >= d);
                    if deadline_over || (delay_over && group.all_joined()) {
                        group.complete_join(now);
                        changed = true;
                    }
                }
                GroupState::CompletingRebalance
                    if group.rebalance_deadline.is_some_and(|d| now >= d) =>
                {
                    // The leader never sent the assignment: try again.
                    group.prepare_rebalance(now, std::time::Duration::ZERO);
                    changed = true;
                }
                _ => {}
            }
            if changed {
                persist.push((group.id.clone(), group_value(group)));
            }
            if expire_offsets
                && group.state == GroupState::Empty
                && group.is_empty()
                && self.config.offsets_retention_ms >= 0
            {
                let limit = now_ms - self.config.offsets_retention_ms;
                let old: Vec<(String, i32)> = group
                    .offsets
                    .iter()
                    .filter(|(_, c)| c.commit_timestamp.max(group.empty_since_ms) < limit)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in old {
                    group.offsets.remove(&k);
                    expired.push((group.id.clone(), k.0, k.1));
                }
            }
        }
        groups.retain(|_, g| {
            !(g.state == GroupState::Empty
                && g.consumer.is_none()
                && g.members.is_empty()
                && g.offsets.is_empty()
                && g.generation == 0
                && g.pending.is_empty())
        });
        (persist, expired)
    }
}

fn check_member(group: &Group, member_id: &str, instance_id: Option<&str>) -> Option<i16> {
    if let Some(i) = instance_id
        && let Some(id) = group.static_members.get(i)
        && id != member_id
    {
        return Some(ec::FENCED_INSTANCE_ID);
    }
    if !group.members.contains_key(member_id) {
        return Some(ec::UNKNOWN_MEMBER_ID);
    }
    None
}

fn view(g: &Group) -> GroupView {
    if let Some(c) = &g.consumer {
        return GroupView {
            group_id: g.id.clone(),
            group_type: "consumer",
            state: c.state_name(),
            protocol_type: "consumer".into(),
            protocol: c.assignor.clone(),
            members: c
                .members
                .values()
                .map(|m| MemberView {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: consumer_ops::classic_subscription(&m.subscribed_topics),
                    assignment: consumer_ops::classic_assignment(&m.assigned),
                })
                .collect(),
        };
    }
    let protocol = g.protocol.clone().unwrap_or_default();
    GroupView {
        group_id: g.id.clone(),
        group_type: "classic",
        state: g.state.name(),
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol: protocol.clone(),
        members: g
            .members
            .values()
            .map(|m| MemberView {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata_for(&protocol),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}

fn group_value(g: &Group) -> GroupValue {
    let protocol = g.protocol.clone().unwrap_or_default();
    GroupValue {
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        generation: g.generation,
        protocol: g.protocol.clone(),
        leader: g.leader.clone(),
        state_timestamp: now_ms(),
        members: g
            .members
            .values()
            .map(|m| StoredMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                session_timeout_ms: m.session_timeout.as_millis() as i32,
                subscription: m.metadata_for(&protocol),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}

/// Applies one stored record while loading.
fn apply(groups: &mut HashMap<String, Group>, rec: StoredRecord, now: Instant) {
    match rec {
        StoredRecord::Offset {
            group,
            topic,
            partition,
            value,
        } => {
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now_ms()));
            match value {
                Some(v) => {
                    g.offsets.insert(
                        (topic, partition),
                        Committed {
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata,
                            commit_timestamp: v.commit_timestamp,
                        },
                    );
                }
                None => {
                    g.offsets.remove(&(topic, partition));
                }
            }
        }
        StoredRecord::Group { group, value } => match value {
            None => {
                groups.remove(&group);
            }
            Some(v) => {
                let g = groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group, now_ms()));
                g.consumer = None;
                g.generation = v.generation;
                g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
                g.protocol = v.protocol.clone();
                g.leader = v.leader;
                g.members.clear();
                g.static_members.clear();
                let protocol = v.protocol.unwrap_or_default();
                for m in v.members {
                    if let Some(i) = &m.group_instance_id {
                        g.static_members.insert(i.clone(), m.member_id.clone());
                    }
                    g.members.insert(
                        m.member_id.clone(),
                        Member {
                            member_id: m.member_id,
                            instance_id: m.group_instance_id,
                            client_id: m.client_id,
                            client_host: m.client_host,
                            session_timeout: Duration::from_millis(
                                m.session_timeout_ms.max(0) as u64
                            ),
                            rebalance_timeout: Duration::from_millis(
                                m.rebalance_timeout_ms.max(0) as u64
                            ),
                            protocols: vec![(protocol.clone(), m.subscription)],
                            assignment: m.assignment,
                            last_heartbeat: now,
                            join_waiter: None,
                            sync_waiter: None,
                        },
                    );
                }
                if g.members.is_empty() {
                    g.state = GroupState::Empty;
                    g.empty_since_ms = if v.state_timestamp > 0 {
                        v.state_timestamp
                    } else {
                        now_ms()
                    };
                } else {
                    g.state = GroupState::Stable;
                }
            }
        },
        // Consumer group records are applied by consumer_ops.
        _ => {}
    }
}

impl GroupCoordinator {
    /// The `__consumer_offsets` partition that holds `group_id`.
    pub fn partition_of(&self, group_id: &str) -> i32 {
        store::partition_for(group_id, self.config.offsets_partitions)
    }

    /// Writes records to the group's `__consumer_offsets` partition (uncompressed, one
    /// batch).
    pub fn persist(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<(), i16> {
        if records.is_empty() {
            return Ok(());
        }
        self.append(log, group_id, &records).map(|_| ())
    }

    /// Appends to the group's partition; returns the log end offset after the records.
    fn append(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
        records: &[(Bytes, Option<Bytes>)],
    ) -> Result<crate::Offset, i16> {
        let partition = self.partition_of(group_id);
        if !log.hosts(OFFSETS_TOPIC, partition) {
            return Err(ec::COORDINATOR_NOT_AVAILABLE);
        }
        log.append(OFFSETS_TOPIC, partition, records, BatchProducer::NONE)
            .map_err(|code| {
                tracing::error!(group = group_id, code, "cannot write to __consumer_offsets");
                ec::KAFKA_STORAGE_ERROR
            })
    }

    /// [`Self::persist`], then (in a cluster) waits until every in-sync replica of the
    /// partition has the records, as Kafka's coordinator does before it answers a commit: a
    /// coordinator that dies right after answering loses nothing.
    pub async fn persist_replicated(
        &self,
        log: &dyn CoordinatorLog,
        group_id: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<(), i16> {
        if records.is_empty() {
            return Ok(());
        }
        let end = self.append(log, group_id, &records)?;
        log.wait_replicated(
            OFFSETS_TOPIC,
            self.partition_of(group_id),
            end,
            self.config.offsets_commit_timeout,
        )
        .await
    }

    /// Creates `__consumer_offsets` if it does not exist yet (compacted, as Kafka's).
    pub async fn ensure_offsets_topic(&self, log: &dyn CoordinatorLog) -> Result<(), i16> {
        if log.image().topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let mut configs = std::collections::BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert(
            "segment.bytes".to_string(),
            self.config.offsets_topic_segment_bytes.clone(),
        );
        log.ensure_topic(InternalTopic {
            name: OFFSETS_TOPIC,
            partitions: self.config.offsets_partitions,
            replication_factor: self.config.offsets_topic_replication_factor,
            configs,
        })
        .await
    }
}

/// One partition's offset in a commit request: (topic, partition, offset, leader epoch,
/// metadata).
pub type OffsetToCommit<'a> = (&'a str, i32, i64, i32, Option<&'a str>);

/// What a (transactional) offset commit writes: the records, the offsets as the group will
/// hold them, and an error code per partition in request order (`verdict`'s error for all when
/// the commit was refused, TOPIC_AUTHORIZATION_FAILED for a topic `readable` refuses,
/// OFFSET_METADATA_TOO_LARGE for too long metadata).
pub struct CommitPlan {
    pub records: Vec<(Bytes, Option<Bytes>)>,
    pub committed: Vec<(String, i32, Committed)>,
    pub codes: Vec<i16>,
}

pub fn plan_commit<'a>(
    config: &GroupConfig,
    group_id: &str,
    verdict: Result<(), i16>,
    offsets: impl Iterator<Item = OffsetToCommit<'a>>,
    readable: impl Fn(&str) -> bool,
) -> CommitPlan {
    let now = crate::now_ms();
    let max_metadata = config.offset_metadata_max_bytes;
    let mut plan = CommitPlan {
        records: Vec::new(),
        committed: Vec::new(),
        codes: Vec::new(),
    };
    for (topic, partition, offset, leader_epoch, metadata) in offsets {
        let metadata = metadata.unwrap_or_default().to_string();
        let code = match verdict {
            Err(code) => code,
            Ok(()) if !readable(topic) => ec::TOPIC_AUTHORIZATION_FAILED,
            Ok(()) if metadata.len() > max_metadata => ec::OFFSET_METADATA_TOO_LARGE,
            Ok(()) => {
                let value = OffsetValue {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp: now,
                };
                plan.records
                    .push(offset_record(group_id, topic, partition, Some(&value)));
                plan.committed.push((
                    topic.to_string(),
                    partition,
                    Committed {
                        offset,
                        leader_epoch,
                        metadata: value.metadata,
                        commit_timestamp: now,
                    },
                ));
                ec::NONE
            }
        };
        plan.codes.push(code);
    }
    plan
}

/// The records that store a group's metadata.
pub fn group_record(group_id: &str, value: &GroupValue) -> (Bytes, Option<Bytes>) {
    (store::group_key(group_id), Some(store::group_value(value)))
}

/// The record of one committed offset (None: tombstone).
pub fn offset_record(
    group_id: &str,
    topic: &str,
    partition: i32,
    value: Option<&OffsetValue>,
) -> (Bytes, Option<Bytes>) {
    (
        store::offset_key(group_id, topic, partition),
        value.map(store::offset_value),
    )
}

/// Drives the coordinator's timeouts and writes what they change.
pub async fn ticker(
    groups: Arc<GroupCoordinator>,
    log: Arc<dyn CoordinatorLog>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = Instant::now();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        let expire = last_expiry.elapsed() >= groups.config().offsets_retention_check;
        if expire {
            last_expiry = Instant::now();
        }
        let (changed, expired) = groups.tick(expire);
        for (group, value) in changed {
            let _ = groups.persist(&*log, &group, vec![group_record(&group, &value)]);
        }
        for (group, topic, partition) in expired {
            let _ = groups.persist(
                &*log,
                &group,
                vec![offset_record(&group, &topic, partition, None)],
            );
        }
        let topics = consumer_ops::ImageTopics(log.image());
        for (group, records) in groups.consumer_tick(&topics, expire) {
            let _ = groups.persist(&*log, &group, records);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small group configuration for unit tests.
    pub(super) fn config() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            min_session_timeout_ms: 10,
            max_session_timeout_ms: 60_000,
            max_size: 10,
            offsets_partitions: 4,
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

    fn join(
        c: &GroupCoordinator,
        group: &str,
        member: &str,
        instance: Option<&str>,
    ) -> Reply<JoinResult> {
        c.join(JoinRequest {
            group_id: group.into(),
            member_id: member.into(),
            instance_id: instance.map(String::from),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            require_known_member_id: true,
        })
    }

    fn now<T>(r: Reply<T>) -> T {
        match r {
            Reply::Now(v) => v,
            Reply::Later(mut rx) => rx.try_recv().expect("reply should be ready"),
        }
    }

    /// One member through KIP-394 id assignment, join and sync; returns (member id, generation).
    fn stable_single(c: &GroupCoordinator, group: &str, instance: Option<&str>) -> (String, i32) {
        let first = now(join(c, group, "", instance));
        let member = if instance.is_some() {
            first.member_id.clone()
        } else {
            assert_eq!(first.error_code, ec::MEMBER_ID_REQUIRED);
            let j = now(join(c, group, &first.member_id, None));
            assert_eq!(j.error_code, ec::NONE);
            j.member_id
        };
        let generation = c.lock()[group].generation;
        let (reply, persist) = c.sync(
            group,
            &member,
            instance,
            generation,
            vec![(member.clone(), Bytes::from_static(b"asg"))],
        );
        assert!(persist.is_some());
        assert_eq!(now(reply).assignment, Bytes::from_static(b"asg"));
        (member, generation)
    }

    #[test]
    fn join_sync_heartbeat_and_error_paths() {
        let c = GroupCoordinator::new(config());
        let (member, generation) = stable_single(&c, "g", None);
        assert_eq!(c.describe("g").unwrap().state, "Stable");
        assert_eq!(c.heartbeat("g", &member, None, generation), ec::NONE);
        assert_eq!(
            c.heartbeat("g", &member, None, generation + 1),
            ec::ILLEGAL_GENERATION
        );
        assert_eq!(
            c.heartbeat("g", "nobody", None, generation),
            ec::UNKNOWN_MEMBER_ID
        );
        assert_eq!(
            c.heartbeat("unknown-group", &member, None, generation),
            ec::UNKNOWN_MEMBER_ID
        );
        assert_eq!(c.check_commit("g", &member, None, generation), Ok(()));
        assert_eq!(
            c.check_commit("g", &member, None, generation - 1),
            Err(ec::ILLEGAL_GENERATION)
        );
        assert_eq!(
            c.check_commit("g", "", None, -1),
            Err(ec::UNKNOWN_MEMBER_ID),
            "simple commit into an active group"
        );
        assert_eq!(
            c.check_commit("fresh", "", None, -1),
            Ok(()),
            "simple commit creates an empty group"
        );
        // Offset fetch of an unknown group: no offsets, no error.
        let o = c.fetch_offsets("nope", Some(vec![("t".into(), vec![0])]));
        assert_eq!(o, vec![("t".to_string(), vec![(0, None)])]);
        // A non-empty group cannot be deleted; an unknown one is not found.
        assert_eq!(c.delete_group("g"), Err(ec::NON_EMPTY_GROUP));
        assert_eq!(c.delete_group("nope"), Err(ec::GROUP_ID_NOT_FOUND));
        let (_, codes, persist) = c.leave("g", vec![(member.clone(), None)]);
        assert_eq!(codes, vec![ec::NONE]);
        assert!(persist.is_some());
        assert_eq!(c.describe("g").unwrap().state, "Empty");
        assert!(c.delete_group("g").is_ok());
    }

    #[test]
    fn second_member_triggers_rebalance_and_leader_assigns() {
        let c = GroupCoordinator::new(config());
        let (m1, gen_one) = stable_single(&c, "g", None);
        let id2 = now(join(&c, "g", "", None)).member_id;
        let j2 = join(&c, "g", &id2, None);
        assert_eq!(c.describe("g").unwrap().state, "PreparingRebalance");
        assert_eq!(
            c.heartbeat("g", &m1, None, gen_one),
            ec::REBALANCE_IN_PROGRESS
        );
        let j1 = now(join(&c, "g", &m1, None));
        let j2 = now(j2);
        assert_eq!(j1.generation, gen_one + 1);
        assert_eq!(j1.leader, m1);
        assert_eq!(j1.members.len(), 2, "the leader sees every member");
        assert!(j2.members.is_empty());
        let (r2, _) = c.sync("g", &id2, None, j2.generation, vec![]);
        let (r1, p) = c.sync(
            "g",
            &m1,
            None,
            j1.generation,
            vec![
                (m1.clone(), Bytes::from_static(b"a1")),
                (id2.clone(), Bytes::from_static(b"a2")),
            ],
        );
        assert!(p.is_some());
        assert_eq!(now(r1).assignment, Bytes::from_static(b"a1"));
        assert_eq!(now(r2).assignment, Bytes::from_static(b"a2"));
    }

    #[test]
    fn static_member_rejoin_keeps_the_generation_and_fences_the_old_id() {
        let c = GroupCoordinator::new(config());
        let first = join(&c, "g", "", Some("i1"));
        let j = now(first);
        assert_eq!(j.error_code, ec::NONE);
        let (r, _) = c.sync(
            "g",
            &j.member_id,
            Some("i1"),
            j.generation,
            vec![(j.member_id.clone(), Bytes::from_static(b"x"))],
        );
        assert_eq!(now(r).assignment, Bytes::from_static(b"x"));
        // The same instance comes back with a new member id: no rebalance.
        let again = now(join(&c, "g", "", Some("i1")));
        assert_eq!(again.error_code, ec::NONE);
        assert_eq!(again.generation, j.generation);
        assert_eq!(c.describe("g").unwrap().state, "Stable");
        // The old incarnation is fenced.
        assert_eq!(
            c.heartbeat("g", &j.member_id, Some("i1"), j.generation),
            ec::FENCED_INSTANCE_ID
        );
        assert_eq!(
            c.check_commit("g", &j.member_id, Some("i1"), j.generation),
            Err(ec::FENCED_INSTANCE_ID)
        );
        assert_eq!(
            c.heartbeat("g", &again.member_id, Some("i1"), j.generation),
            ec::NONE
        );
    }

    #[test]
    fn expired_sessions_leave_the_group() {
        let mut cfg = config();
        cfg.min_session_timeout_ms = 1;
        let c = GroupCoordinator::new(cfg);
        let r = c.join(JoinRequest {
            group_id: "g".into(),
            member_id: String::new(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "h".into(),
            session_timeout_ms: 20,
            rebalance_timeout_ms: 20,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member_id: false,
        });
        let j = now(r);
        let (r, _) = c.sync("g", &j.member_id, None, j.generation, vec![]);
        now(r);
        std::thread::sleep(Duration::from_millis(50));
        let (persist, _) = c.tick(false);
        assert_eq!(persist.len(), 1);
        assert_eq!(c.describe("g").unwrap().state, "Empty");
    }
}
