//! One classic consumer group: members, generations and the rebalance state machine, as
//! Kafka's group coordinator runs it. Pure state: callers hold the coordinator lock, and
//! responses to waiting JoinGroup/SyncGroup requests go out through oneshot channels.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_protocol::error_code as ec;
use tokio::sync::oneshot;

/// Kafka's group states, with their protocol names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a member gets when its JoinGroup completes.
#[derive(Debug, Clone)]
pub struct JoinResult {
    pub error_code: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// (member id, instance id, metadata): filled for the leader only.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(code: i16, member_id: &str) -> Self {
        JoinResult {
            error_code: code,
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// What a member gets when its SyncGroup completes.
#[derive(Debug, Clone)]
pub struct SyncResult {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(code: i16) -> Self {
        SyncResult {
            error_code: code,
            protocol_type: None,
            protocol: None,
            assignment: Bytes::new(),
        }
    }
}

pub struct Member {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat: Instant,
    pub join_waiter: Option<oneshot::Sender<JoinResult>>,
    pub sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet used, with their expiry.
    pub pending: HashMap<String, Instant>,
    /// group.instance.id -> member id of static members.
    pub static_members: HashMap<String, String>,
    /// When the current PreparingRebalance (or CompletingRebalance) ends at the latest.
    pub rebalance_deadline: Option<Instant>,
    /// While the initial delay of a new group runs, the join does not complete early.
    pub initial_delay_until: Option<Instant>,
    pub offsets: HashMap<(String, i32), Committed>,
    /// When the group last became Empty (ms), for offset expiry.
    pub empty_since_ms: i64,
    /// Set when the group runs the consumer protocol (KIP-848); the classic fields then stay
    /// empty and only the offsets are shared.
    pub consumer: Option<super::consumer::ConsumerGroup>,
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            offsets: HashMap::new(),
            empty_since_ms: now_ms,
            consumer: None,
        }
    }

    /// (member id, instance id, metadata for the chosen protocol) of every member: what the
    /// leader gets in its JoinGroup response.
    pub fn member_list(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect()
    }

    /// The protocol every member supports with the most votes (each member votes for its most
    /// preferred protocol among the common ones).
    pub fn select_protocol(&self) -> Option<String> {
        let mut common: Option<HashSet<&str>> = None;
        for m in self.members.values() {
            let names: HashSet<&str> = m.protocols.iter().map(|(n, _)| n.as_str()).collect();
            common = Some(match common {
                None => names,
                Some(c) => c.intersection(&names).copied().collect(),
            });
        }
        let common = common?;
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m
                .protocols
                .iter()
                .find(|(n, _)| common.contains(n.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, v)| *v)
            .map(|(n, _)| n.to_string())
    }

    /// Whether a joining member's protocols fit the group.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        // Some protocol must stay common to every member.
        self.members
            .values()
            .flat_map(|m| m.protocols.iter().map(|(n, _)| n))
            .any(|n| {
                protocols.iter().any(|(p, _)| p == n)
                    && self
                        .members
                        .values()
                        .all(|m| m.protocols.iter().any(|(q, _)| q == n))
            })
    }

    /// Starts (or continues) a rebalance.
    pub fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for their assignment must rejoin.
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult::error(ec::REBALANCE_IN_PROGRESS));
                }
            }
        }
        let max_rebalance = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(300));
        if self.state != GroupState::PreparingRebalance {
            if self.state == GroupState::Empty && !initial_delay.is_zero() {
                self.initial_delay_until = Some(now + initial_delay);
            }
            self.state = GroupState::PreparingRebalance;
            self.rebalance_deadline = Some(now + max_rebalance);
        } else if let Some(until) = self.initial_delay_until {
            // A new member during the initial delay extends it, within the rebalance timeout.
            let cap = self.rebalance_deadline.unwrap_or(now + max_rebalance);
            self.initial_delay_until = Some((now + initial_delay).min(cap).max(until));
        }
    }

    /// Whether every member has rejoined and nobody is on the way.
    pub fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Ends the join phase: members that did not rejoin leave, the generation advances, and
    /// every waiting member gets its JoinGroup response. Returns whether the group has members.
    pub fn complete_join(&mut self, now: Instant) -> bool {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.initial_delay_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            self.rebalance_deadline = None;
            return false;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            leader = self.leader.as_deref().unwrap_or(""),
            protocol = self.protocol.as_deref().unwrap_or(""),
            "rebalance: join phase complete"
        );
        let max_rebalance = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + max_rebalance);
        let leader = self.leader.clone().unwrap_or_default();
        let all = self.member_list();
        for m in self.members.values_mut() {
            m.last_heartbeat = now;
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult {
                    error_code: ec::NONE,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: m.member_id.clone(),
                    members: if m.member_id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
        true
    }

    /// The leader's SyncGroup: hand every member its assignment.
    pub fn complete_sync(&mut self, assignments: HashMap<String, Bytes>) {
        for m in self.members.values_mut() {
            m.assignment = assignments.get(&m.member_id).cloned().unwrap_or_default();
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult {
                    error_code: ec::NONE,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    assignment: m.assignment.clone(),
                });
            }
        }
        self.state = GroupState::Stable;
        self.rebalance_deadline = None;
        tracing::info!(group = %self.id, generation = self.generation, "rebalance: assignment complete, group stable");
    }

    pub fn remove_member(&mut self, member_id: &str) {
        if let Some(m) = self.members.remove(member_id) {
            tracing::info!(group = %self.id, member = member_id, "member left the group");
            if let Some(i) = &m.instance_id
                && self.static_members.get(i).is_some_and(|id| id == member_id)
            {
                self.static_members.remove(i);
            }
            if let Some(w) = m.join_waiter {
                let _ = w.send(JoinResult::error(ec::UNKNOWN_MEMBER_ID, member_id));
            }
            if let Some(w) = m.sync_waiter {
                let _ = w.send(SyncResult::error(ec::UNKNOWN_MEMBER_ID));
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    /// After members left: rebalance the rest, or become Empty.
    pub fn after_departure(&mut self, now: Instant, now_ms: i64) {
        if self.members.is_empty() && self.pending.is_empty() {
            if self.state != GroupState::Dead {
                self.state = GroupState::Empty;
                self.empty_since_ms = now_ms;
            }
            self.generation += 1;
            self.protocol = None;
            self.leader = None;
            self.rebalance_deadline = None;
            self.initial_delay_until = None;
        } else if self.state == GroupState::PreparingRebalance {
            if self.all_joined() {
                self.complete_join(now);
            }
        } else {
            self.prepare_rebalance(now, Duration::ZERO);
        }
    }

    /// Whether nobody is in the group, under either protocol.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.consumer.as_ref().is_none_or(|c| c.members.is_empty())
    }

    /// Topics the members subscribe to (consumer protocol), for OffsetDelete.
    pub fn subscribed_topics(&self) -> HashSet<String> {
        if let Some(c) = &self.consumer {
            return c
                .members
                .values()
                .flat_map(|m| m.subscribed_topics.iter().cloned())
                .collect();
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut out = HashSet::new();
        for m in self.members.values() {
            let mut meta = m.metadata_for(&protocol);
            if meta.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([meta[0], meta[1]]);
            let _ = bytes::Buf::get_i16(&mut meta);
            if let Ok(sub) = <strom_protocol::messages::ConsumerProtocolSubscription as strom_protocol::Decodable>::decode(&mut meta, version.clamp(0, 3)) {
                out.extend(sub.topics.iter().map(|t| t.as_str().to_string()));
            }
        }
        out
    }
}
