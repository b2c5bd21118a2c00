//! One group of the consumer group protocol (KIP-848): members heartbeat, the coordinator
//! computes a target assignment with a server-side assignor whenever the group epoch moves, and
//! each member is reconciled towards its target in steps. A partition goes to a new owner only
//! after its previous owner has confirmed that it revoked it.
//!
//! Epochs: the group epoch moves when membership, subscriptions or the partition counts of
//! subscribed topics change; the assignment epoch is the group epoch the target was computed
//! for; a member epoch is the assignment epoch the member has fully reached (a member keeps its
//! epoch while it still has partitions to revoke).
//!
//! Pure state: callers hold the coordinator lock and pass the time and a view of the topics.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use strom_protocol::error_code as ec;

use super::assignor::{self, AssignorMember, Partitions};

/// Epoch a member sends to leave the group.
pub const LEAVE_EPOCH: i32 = -1;
/// Epoch a static member sends to leave for a while, keeping its assignment.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Where a member is on the way to its target assignment (stored as Kafka's byte values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// It must first give up partitions that are no longer its own.
    UnrevokedPartitions,
    /// It waits for partitions that other members still hold.
    UnreleasedPartitions,
    Stable,
}

impl MemberState {
    pub fn code(self) -> i8 {
        match self {
            MemberState::UnrevokedPartitions => 0,
            MemberState::UnreleasedPartitions => 1,
            MemberState::Stable => 2,
        }
    }
    pub fn from_code(c: i8) -> Self {
        match c {
            0 => MemberState::UnrevokedPartitions,
            1 => MemberState::UnreleasedPartitions,
            _ => MemberState::Stable,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topics: BTreeSet<String>,
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    pub assigned: Partitions,
    pub pending_revocation: Partitions,
    pub last_heartbeat: Instant,
    /// When the member must have revoked its pending partitions.
    pub revoke_deadline: Option<Instant>,
}

impl ConsumerMember {
    pub fn new_at(member_id: &str, now: Instant) -> Self {
        ConsumerMember {
            member_id: member_id.to_string(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed_topics: BTreeSet::new(),
            subscribed_regex: None,
            server_assignor: None,
            rebalance_timeout_ms: -1,
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned: Partitions::new(),
            pending_revocation: Partitions::new(),
            last_heartbeat: now,
            revoke_deadline: None,
        }
    }
}

/// Settings that apply to every consumer group.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub session_timeout: Duration,
    pub heartbeat_interval_ms: i32,
    pub max_size: usize,
    /// Enabled assignors, the default first.
    pub assignors: Vec<&'static str>,
}

/// A ConsumerGroupHeartbeat as the state machine sees it.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatIn {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topics: Option<Vec<String>>,
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<Partitions>,
    pub client_id: String,
    pub client_host: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatOut {
    pub member_id: String,
    pub member_epoch: i32,
    /// The member's assignment when it changed or the request was a full one.
    pub assignment: Option<Partitions>,
}

/// An error with the code and message a client sees.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused(pub i16, pub String);

fn refused<T>(code: i16, msg: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(code, msg.into()))
}

/// Topic view: partition count of a topic by name (None: no such topic), and names matching a
/// subscription pattern.
pub trait Topics {
    fn partitions(&self, topic: &str) -> Option<i32>;
    fn matching(&self, regex: &regex::Regex) -> Vec<String>;
}

/// What changed and must be written to `__consumer_offsets`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Dirty {
    pub group_epoch: bool,
    pub target: bool,
    /// Members whose metadata and current assignment changed.
    pub members: BTreeSet<String>,
    /// Members gone (their records become tombstones).
    pub removed: BTreeSet<String>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        !self.group_epoch && !self.target && self.members.is_empty() && self.removed.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// instance id -> member id of static members.
    pub static_members: HashMap<String, String>,
    /// Target assignment by member.
    pub target: BTreeMap<String, Partitions>,
    /// (topic, partition) -> member holding it (assigned or still revoking).
    pub owners: HashMap<(String, i32), String>,
    /// Partition counts of the subscribed topics when the target was last computed.
    pub topic_snapshot: BTreeMap<String, i32>,
    /// The assignor that computed the target.
    pub assignor: String,
    pub dirty: Dirty,
    epoch_bump: bool,
}

fn contains_any(a: &Partitions, b: &Partitions) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|q| !ps.is_disjoint(q)))
}

fn is_subset(a: &Partitions, b: &Partitions) -> bool {
    a.iter()
        .all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|q| ps.is_subset(q)))
}

fn insert(p: &mut Partitions, topic: &str, partition: i32) {
    p.entry(topic.to_string()).or_default().insert(partition);
}

impl ConsumerGroup {
    pub fn new() -> Self {
        ConsumerGroup::default()
    }

    /// Kafka's state names: Empty, Assigning, Reconciling, Stable.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Asks for a new group epoch; several changes in one operation make one epoch, taken by
    /// the next [`ConsumerGroup::refresh_target`].
    fn bump_group_epoch(&mut self) {
        self.epoch_bump = true;
    }

    /// Records a member's holdings in the ownership index.
    fn index_member(&mut self, member_id: &str, own: bool) {
        let Some(m) = self.members.get(member_id) else {
            return;
        };
        let held: Vec<(String, i32)> = m
            .assigned
            .iter()
            .chain(m.pending_revocation.iter())
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect();
        for k in held {
            if own {
                self.owners.insert(k, member_id.to_string());
            } else if self.owners.get(&k).is_some_and(|o| o == member_id) {
                self.owners.remove(&k);
            }
        }
    }

    /// Removes a member, releasing its partitions, and moves the group epoch.
    pub fn remove_member(&mut self, member_id: &str) {
        self.index_member(member_id, false);
        if let Some(m) = self.members.remove(member_id) {
            if let Some(i) = &m.instance_id
                && self.static_members.get(i).is_some_and(|id| id == member_id)
            {
                self.static_members.remove(i);
            }
            self.target.remove(member_id);
            self.dirty.members.remove(member_id);
            self.dirty.removed.insert(member_id.to_string());
            self.dirty.target = true;
            self.bump_group_epoch();
        }
    }

    /// Handles one heartbeat (joining, staying, or leaving with epoch -1/-2).
    pub fn heartbeat(
        &mut self,
        req: HeartbeatIn,
        cfg: &ConsumerConfig,
        topics: &dyn Topics,
        now: Instant,
    ) -> Result<HeartbeatOut, Refused> {
        if let Some(a) = &req.server_assignor
            && !assignor::normalize(a).is_some_and(|n| cfg.assignors.contains(&n))
        {
            return refused(
                ec::UNSUPPORTED_ASSIGNOR,
                format!("assignor {a} is not enabled (group.consumer.assignors)"),
            );
        }
        let regex = match req.subscribed_regex.as_deref().filter(|r| !r.is_empty()) {
            None => None,
            Some(r) => match regex::Regex::new(&format!("^(?:{r})$")) {
                Ok(re) => Some(re),
                Err(e) => {
                    return refused(
                        ec::INVALID_REGULAR_EXPRESSION,
                        format!("invalid subscription pattern {r}: {e}"),
                    );
                }
            },
        };
        if req.member_epoch == LEAVE_EPOCH || req.member_epoch == STATIC_LEAVE_EPOCH {
            let out = self.leave(&req);
            self.refresh_target(cfg, topics);
            return out;
        }
        let full = req.member_epoch == 0
            || req.subscribed_topics.is_some()
            || req.subscribed_regex.is_some()
            || req.owned.is_some()
            || req.rebalance_timeout_ms != -1;
        let member_id = if req.member_epoch == 0 {
            self.join(&req, cfg, now)?
        } else {
            let Some(m) = self.members.get(&req.member_id) else {
                return refused(
                    ec::UNKNOWN_MEMBER_ID,
                    format!("member {} is not in the group", req.member_id),
                );
            };
            if let Some(i) = &req.instance_id
                && self.static_members.get(i) != Some(&req.member_id)
            {
                return refused(
                    ec::FENCED_INSTANCE_ID,
                    format!("instance {i} belongs to another member"),
                );
            }
            let ok = req.member_epoch == m.member_epoch
                || (req.member_epoch == m.previous_member_epoch
                    && req
                        .owned
                        .as_ref()
                        .is_some_and(|o| is_subset(o, &m.assigned)));
            if !ok {
                return refused(
                    ec::FENCED_MEMBER_EPOCH,
                    format!(
                        "member epoch {} does not match the expected epoch {}",
                        req.member_epoch, m.member_epoch
                    ),
                );
            }
            req.member_id.clone()
        };
        // Update the member's metadata.
        let mut resubscribed = false;
        {
            let m = self.members.get_mut(&member_id).expect("member present");
            m.last_heartbeat = now;
            if !req.client_id.is_empty() {
                m.client_id = req.client_id.clone();
            }
            if !req.client_host.is_empty() {
                m.client_host = req.client_host.clone();
            }
            if req.rebalance_timeout_ms != -1 && m.rebalance_timeout_ms != req.rebalance_timeout_ms
            {
                m.rebalance_timeout_ms = req.rebalance_timeout_ms;
                self.dirty.members.insert(member_id.clone());
            }
            if req.rack_id.is_some() && m.rack_id != req.rack_id {
                m.rack_id = req.rack_id.clone();
                self.dirty.members.insert(member_id.clone());
            }
            if let Some(a) = &req.server_assignor {
                let a = assignor::normalize(a).map(String::from);
                if m.server_assignor != a {
                    m.server_assignor = a;
                    resubscribed = true;
                }
            }
            if let Some(names) = &req.subscribed_topics {
                let set: BTreeSet<String> = names.iter().cloned().collect();
                if set != m.subscribed_topics {
                    m.subscribed_topics = set;
                    resubscribed = true;
                }
            }
            if req.subscribed_regex.is_some() {
                let r = req.subscribed_regex.clone().filter(|r| !r.is_empty());
                if r != m.subscribed_regex {
                    m.subscribed_regex = r;
                    resubscribed = true;
                }
            }
            let stored = match (&regex, &m.subscribed_regex) {
                (Some(re), _) => Some(re.clone()),
                (None, Some(r)) => regex::Regex::new(&format!("^(?:{r})$")).ok(),
                (None, None) => None,
            };
            if let Some(re) = &stored {
                // A pattern subscription resolves to the topics that exist now.
                let mut set: BTreeSet<String> = topics
                    .matching(re)
                    .into_iter()
                    .filter(|t| !t.starts_with("__"))
                    .collect();
                if let Some(names) = &req.subscribed_topics {
                    set.extend(names.iter().cloned());
                }
                if set != m.subscribed_topics {
                    // Resolved topics are not metadata worth a record, but they move the epoch.
                    m.subscribed_topics = set;
                    resubscribed = true;
                }
            }
        }
        if resubscribed {
            self.dirty.members.insert(member_id.clone());
            self.bump_group_epoch();
        }
        self.refresh_target(cfg, topics);
        let before = self.members[&member_id].clone();
        self.reconcile(&member_id, req.owned.as_ref(), now);
        let m = &self.members[&member_id];
        let changed = m.member_epoch != before.member_epoch
            || m.assigned != before.assigned
            || m.pending_revocation != before.pending_revocation
            || m.state != before.state;
        if changed {
            self.dirty.members.insert(member_id.clone());
        }
        Ok(HeartbeatOut {
            member_id: member_id.clone(),
            member_epoch: m.member_epoch,
            assignment: (changed || full).then(|| m.assigned.clone()),
        })
    }

    /// A heartbeat with epoch 0: a new member, a member starting over, or a static member
    /// coming back. Returns the member id.
    fn join(
        &mut self,
        req: &HeartbeatIn,
        cfg: &ConsumerConfig,
        now: Instant,
    ) -> Result<String, Refused> {
        if req.subscribed_topics.is_none() && req.subscribed_regex.is_none() {
            return refused(
                ec::INVALID_REQUEST,
                "a joining member must give its subscription",
            );
        }
        let member_id = req.member_id.clone();
        // The same member id coming back with epoch 0 (after being fenced) starts over below;
        // another member id must wait until the instance is released.
        if let Some(instance) = &req.instance_id
            && let Some(old_id) = self.static_members.get(instance).cloned()
            && old_id != member_id
        {
            let old = &self.members[&old_id];
            if old.member_epoch != STATIC_LEAVE_EPOCH {
                return refused(
                    ec::UNRELEASED_INSTANCE_ID,
                    format!("instance {instance} is still held by member {old_id}"),
                );
            }
            // The static member comes back: the new member id takes over its assignment.
            self.index_member(&old_id, false);
            let mut m = self.members.remove(&old_id).expect("listed");
            self.dirty.removed.insert(old_id.clone());
            self.dirty.members.remove(&old_id);
            m.member_id = member_id.clone();
            m.member_epoch = m.previous_member_epoch.max(0);
            m.last_heartbeat = now;
            if let Some(t) = self.target.remove(&old_id) {
                self.target.insert(member_id.clone(), t);
            }
            self.dirty.target = true;
            self.members.insert(member_id.clone(), m);
            self.static_members
                .insert(instance.clone(), member_id.clone());
            self.index_member(&member_id, true);
            self.dirty.members.insert(member_id.clone());
            return Ok(member_id);
        }
        if self.members.contains_key(&member_id) {
            // A known member starting over holds nothing any more.
            self.remove_member(&member_id);
            self.dirty.removed.remove(&member_id);
        } else if self.members.len() >= cfg.max_size {
            return refused(
                ec::GROUP_MAX_SIZE_REACHED,
                format!("the group has reached its maximum size of {}", cfg.max_size),
            );
        }
        let mut m = ConsumerMember::new_at(&member_id, now);
        m.instance_id = req.instance_id.clone();
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), member_id.clone());
        }
        self.members.insert(member_id.clone(), m);
        self.dirty.members.insert(member_id.clone());
        self.bump_group_epoch();
        Ok(member_id)
    }

    fn leave(&mut self, req: &HeartbeatIn) -> Result<HeartbeatOut, Refused> {
        let member_id = match &req.instance_id {
            Some(i) => match self.static_members.get(i) {
                Some(id) if *id == req.member_id => id.clone(),
                Some(_) => {
                    return refused(
                        ec::FENCED_INSTANCE_ID,
                        format!("instance {i} belongs to another member"),
                    );
                }
                None => {
                    return refused(
                        ec::UNKNOWN_MEMBER_ID,
                        format!("instance {i} is not in the group"),
                    );
                }
            },
            None => {
                if !self.members.contains_key(&req.member_id) {
                    return refused(
                        ec::UNKNOWN_MEMBER_ID,
                        format!("member {} is not in the group", req.member_id),
                    );
                }
                req.member_id.clone()
            }
        };
        if req.member_epoch == STATIC_LEAVE_EPOCH && req.instance_id.is_some() {
            // Away for a while: the assignment waits for the member until its session ends.
            let m = self.members.get_mut(&member_id).expect("listed");
            m.previous_member_epoch = m.member_epoch;
            m.member_epoch = STATIC_LEAVE_EPOCH;
            self.dirty.members.insert(member_id.clone());
        } else {
            self.remove_member(&member_id);
        }
        Ok(HeartbeatOut {
            member_id,
            member_epoch: req.member_epoch,
            assignment: None,
        })
    }

    /// The assignor the group uses: the one most members ask for, else the default.
    fn choose_assignor(&self, cfg: &ConsumerConfig) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, v)| *v)
            .map(|(a, _)| a.to_string())
            .unwrap_or_else(|| cfg.assignors.first().copied().unwrap_or("uniform").into())
    }

    /// Moves the group epoch when a subscribed topic appeared, vanished or grew, and computes
    /// a new target assignment when the group epoch is ahead of it.
    pub fn refresh_target(&mut self, cfg: &ConsumerConfig, topics: &dyn Topics) {
        let subscribed: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.subscribed_topics.iter())
            .collect();
        let snapshot: BTreeMap<String, i32> = subscribed
            .into_iter()
            .filter_map(|t| topics.partitions(t).map(|n| (t.clone(), n)))
            .collect();
        if snapshot != self.topic_snapshot {
            self.topic_snapshot = snapshot;
            if !self.members.is_empty() {
                self.bump_group_epoch();
            }
        }
        if std::mem::take(&mut self.epoch_bump) {
            self.group_epoch += 1;
            self.dirty.group_epoch = true;
        }
        if self.group_epoch <= self.assignment_epoch {
            return;
        }
        let members: Vec<AssignorMember> = self
            .members
            .values()
            .map(|m| AssignorMember {
                member_id: m.member_id.clone(),
                subscribed: m.subscribed_topics.clone(),
            })
            .collect();
        self.assignor = self.choose_assignor(cfg);
        self.target =
            assignor::assign(&self.assignor, &members, &self.topic_snapshot, &self.target);
        self.assignment_epoch = self.group_epoch;
        self.dirty.target = true;
        tracing::debug!(
            group_epoch = self.group_epoch,
            assignor = %self.assignor,
            members = self.members.len(),
            "new target assignment"
        );
    }

    /// Moves a member one step towards its target assignment. `owned` is what the member says
    /// it holds (None: it did not say).
    pub fn reconcile(&mut self, member_id: &str, owned: Option<&Partitions>, now: Instant) {
        let Some(m) = self.members.get(member_id) else {
            return;
        };
        if m.member_epoch == STATIC_LEAVE_EPOCH {
            return;
        }
        let waiting = match m.state {
            MemberState::Stable => m.member_epoch == self.assignment_epoch,
            // Still holding what it must give up (or not saying): wait.
            MemberState::UnrevokedPartitions => {
                owned.is_none_or(|o| contains_any(o, &m.pending_revocation))
            }
            MemberState::UnreleasedPartitions => false,
        };
        if waiting {
            return;
        }
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let m = &self.members[member_id];
        let mut retained = Partitions::new();
        let mut revoking = Partitions::new();
        for (t, ps) in &m.assigned {
            for &p in ps {
                if target.get(t).is_some_and(|s| s.contains(&p)) {
                    insert(&mut retained, t, p);
                } else {
                    insert(&mut revoking, t, p);
                }
            }
        }
        let mut free = Partitions::new();
        let mut unreleased = false;
        for (t, ps) in &target {
            for &p in ps {
                if retained.get(t).is_some_and(|s| s.contains(&p)) {
                    continue;
                }
                match self.owners.get(&(t.clone(), p)) {
                    Some(o) if o != member_id => unreleased = true,
                    _ => insert(&mut free, t, p),
                }
            }
        }
        let epoch = m.member_epoch;
        let still_owns_revoked = owned.is_none_or(|o| contains_any(o, &revoking));
        self.index_member(member_id, false);
        let target_epoch = self.assignment_epoch;
        let m = self.members.get_mut(member_id).expect("listed");
        if !revoking.is_empty() && still_owns_revoked {
            m.state = MemberState::UnrevokedPartitions;
            m.assigned = retained;
            m.pending_revocation = revoking;
            let timeout = Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64);
            m.revoke_deadline = Some(now + timeout);
        } else {
            for (t, ps) in free {
                retained.entry(t).or_default().extend(ps);
            }
            m.assigned = retained;
            m.pending_revocation = Partitions::new();
            m.revoke_deadline = None;
            m.state = if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
            if epoch != target_epoch {
                m.previous_member_epoch = epoch;
                m.member_epoch = target_epoch;
            }
        }
        self.index_member(member_id, true);
    }

    /// Session and revocation timeouts; returns the members removed.
    pub fn expire(
        &mut self,
        cfg: &ConsumerConfig,
        topics: &dyn Topics,
        now: Instant,
    ) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now.duration_since(m.last_heartbeat) > cfg.session_timeout
                    || m.revoke_deadline.is_some_and(|d| now >= d)
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in &gone {
            tracing::info!(member = %id, "consumer group member fenced (session or revocation timeout)");
            self.remove_member(id);
        }
        self.refresh_target(cfg, topics);
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T(BTreeMap<String, i32>);
    impl Topics for T {
        fn partitions(&self, topic: &str) -> Option<i32> {
            self.0.get(topic).copied()
        }
        fn matching(&self, re: &regex::Regex) -> Vec<String> {
            self.0.keys().filter(|t| re.is_match(t)).cloned().collect()
        }
    }

    fn cfg() -> ConsumerConfig {
        ConsumerConfig {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval_ms: 5000,
            max_size: 3,
            assignors: vec!["uniform", "range"],
        }
    }

    fn topics() -> T {
        T([("t".to_string(), 6)].into())
    }

    fn join(g: &mut ConsumerGroup, id: &str) -> HeartbeatOut {
        g.heartbeat(
            HeartbeatIn {
                member_id: id.into(),
                member_epoch: 0,
                rebalance_timeout_ms: 60_000,
                subscribed_topics: Some(vec!["t".into()]),
                owned: Some(Partitions::new()),
                ..Default::default()
            },
            &cfg(),
            &topics(),
            Instant::now(),
        )
        .unwrap()
    }

    fn beat(
        g: &mut ConsumerGroup,
        id: &str,
        epoch: i32,
        owned: Option<Partitions>,
    ) -> Result<HeartbeatOut, Refused> {
        g.heartbeat(
            HeartbeatIn {
                member_id: id.into(),
                member_epoch: epoch,
                rebalance_timeout_ms: -1,
                owned,
                ..Default::default()
            },
            &cfg(),
            &topics(),
            Instant::now(),
        )
    }

    fn n(p: &Partitions) -> usize {
        p.values().map(|s| s.len()).sum()
    }

    /// No partition is held by two members, counting partitions still being revoked.
    fn assert_exclusive(g: &ConsumerGroup) {
        let mut seen = BTreeSet::new();
        for m in g.members.values() {
            for (t, ps) in m.assigned.iter().chain(m.pending_revocation.iter()) {
                for p in ps {
                    assert!(seen.insert((t.clone(), *p)), "{t}-{p} held twice");
                }
            }
        }
    }

    #[test]
    fn first_member_gets_everything_at_once() {
        let mut g = ConsumerGroup::new();
        let r = join(&mut g, "a");
        assert_eq!(r.member_epoch, 1);
        assert_eq!(n(r.assignment.as_ref().unwrap()), 6);
        assert_eq!(g.state_name(), "Stable");
        // A plain heartbeat with nothing new carries no assignment.
        let r = beat(&mut g, "a", 1, None).unwrap();
        assert_eq!(r.assignment, None);
        assert_eq!(r.member_epoch, 1);
    }

    #[test]
    fn partitions_move_only_after_revocation() {
        let mut g = ConsumerGroup::new();
        let a = join(&mut g, "a");
        let a_owned = a.assignment.unwrap();
        // b joins: it gets nothing the moment a still holds everything.
        let b = join(&mut g, "b");
        assert_eq!(b.member_epoch, 2);
        assert_eq!(n(b.assignment.as_ref().unwrap()), 0);
        assert_eq!(g.members["b"].state, MemberState::UnreleasedPartitions);
        assert_eq!(g.state_name(), "Reconciling");
        assert_exclusive(&g);
        // a learns it must give up three: it keeps epoch 1 and gets only the retained ones.
        let a2 = beat(&mut g, "a", 1, Some(a_owned.clone())).unwrap();
        assert_eq!(a2.member_epoch, 1);
        let kept = a2.assignment.unwrap();
        assert_eq!(n(&kept), 3);
        assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
        // While a has not confirmed, b still waits.
        let b2 = beat(&mut g, "b", 2, Some(Partitions::new())).unwrap();
        assert_eq!(b2.assignment.map(|p| n(&p)), Some(0));
        assert_exclusive(&g);
        // An old-epoch heartbeat still owning the revoked ones changes nothing.
        let a3 = beat(&mut g, "a", 1, Some(a_owned)).unwrap();
        assert_eq!(a3.member_epoch, 1);
        // a confirms: it moves to epoch 2; then b gets the released partitions.
        let a4 = beat(&mut g, "a", 1, Some(kept.clone())).unwrap();
        assert_eq!(a4.member_epoch, 2);
        assert_eq!(g.members["a"].state, MemberState::Stable);
        let b3 = beat(&mut g, "b", 2, Some(Partitions::new())).unwrap();
        let b_parts = b3.assignment.unwrap();
        assert_eq!(n(&b_parts), 3);
        assert!(!contains_any(&b_parts, &kept));
        assert_eq!(g.state_name(), "Stable");
        assert_exclusive(&g);
    }

    #[test]
    fn epoch_checks_fence_stale_and_unknown_members() {
        let mut g = ConsumerGroup::new();
        join(&mut g, "a");
        assert_eq!(
            beat(&mut g, "a", 5, None).unwrap_err().0,
            ec::FENCED_MEMBER_EPOCH
        );
        assert_eq!(
            beat(&mut g, "zz", 1, None).unwrap_err().0,
            ec::UNKNOWN_MEMBER_ID
        );
        join(&mut g, "b");
        // a holds all six and must give three up: it stays at epoch 1 until it confirms.
        let a = beat(&mut g, "a", 1, None).unwrap();
        assert_eq!(a.member_epoch, 1);
        // The previous epoch is accepted only with owned partitions within the assignment.
        let kept = g.members["a"].assigned.clone();
        let a = beat(&mut g, "a", 1, Some(kept)).unwrap();
        assert_eq!(a.member_epoch, 2);
        let kept = g.members["a"].assigned.clone();
        assert!(beat(&mut g, "a", 1, Some(kept)).is_ok());
        assert_eq!(
            beat(&mut g, "a", 1, None).unwrap_err().0,
            ec::FENCED_MEMBER_EPOCH
        );
        // Group size limit.
        join(&mut g, "c");
        let over = g.heartbeat(
            HeartbeatIn {
                member_id: "d".into(),
                member_epoch: 0,
                subscribed_topics: Some(vec!["t".into()]),
                ..Default::default()
            },
            &cfg(),
            &topics(),
            Instant::now(),
        );
        assert_eq!(over.unwrap_err().0, ec::GROUP_MAX_SIZE_REACHED);
    }

    #[test]
    fn leaving_releases_partitions_and_static_members_come_back() {
        let mut g = ConsumerGroup::new();
        let s = g
            .heartbeat(
                HeartbeatIn {
                    member_id: "s1".into(),
                    member_epoch: 0,
                    instance_id: Some("inst".into()),
                    subscribed_topics: Some(vec!["t".into()]),
                    ..Default::default()
                },
                &cfg(),
                &topics(),
                Instant::now(),
            )
            .unwrap();
        assert_eq!(n(s.assignment.as_ref().unwrap()), 6);
        let epoch = s.member_epoch;
        // Another instance id is fine; the same one, while held, is not.
        let dup = g.heartbeat(
            HeartbeatIn {
                member_id: "s2".into(),
                member_epoch: 0,
                instance_id: Some("inst".into()),
                subscribed_topics: Some(vec!["t".into()]),
                ..Default::default()
            },
            &cfg(),
            &topics(),
            Instant::now(),
        );
        assert_eq!(dup.unwrap_err().0, ec::UNRELEASED_INSTANCE_ID);
        // Static leave (-2): the assignment stays reserved.
        let left = g
            .heartbeat(
                HeartbeatIn {
                    member_id: "s1".into(),
                    member_epoch: STATIC_LEAVE_EPOCH,
                    instance_id: Some("inst".into()),
                    ..Default::default()
                },
                &cfg(),
                &topics(),
                Instant::now(),
            )
            .unwrap();
        assert_eq!(left.member_epoch, STATIC_LEAVE_EPOCH);
        let back = g
            .heartbeat(
                HeartbeatIn {
                    member_id: "s2".into(),
                    member_epoch: 0,
                    instance_id: Some("inst".into()),
                    subscribed_topics: Some(vec!["t".into()]),
                    ..Default::default()
                },
                &cfg(),
                &topics(),
                Instant::now(),
            )
            .unwrap();
        assert_eq!(
            back.member_epoch, epoch,
            "no new epoch for a returning static member"
        );
        assert_eq!(n(back.assignment.as_ref().unwrap()), 6);
        assert!(!g.members.contains_key("s1"));
        // A dynamic member leaves with -1: gone, group epoch moves.
        join(&mut g, "d");
        let before = g.group_epoch;
        let r = beat(&mut g, "d", LEAVE_EPOCH, None).unwrap();
        assert_eq!(r.member_epoch, LEAVE_EPOCH);
        assert!(!g.members.contains_key("d"));
        assert_eq!(g.group_epoch, before + 1);
        assert!(g.dirty.removed.contains("d"));
        assert_exclusive(&g);
    }

    #[test]
    fn expired_sessions_free_partitions_for_the_others() {
        let mut g = ConsumerGroup::new();
        join(&mut g, "a");
        join(&mut g, "b");
        let mut c = cfg();
        c.session_timeout = Duration::ZERO;
        g.members.get_mut("b").unwrap().last_heartbeat = Instant::now() + Duration::from_secs(60);
        let gone = g.expire(&c, &topics(), Instant::now() + Duration::from_millis(1));
        assert_eq!(gone, vec!["a".to_string()]);
        let epoch = g.members["b"].member_epoch;
        let b = beat(&mut g, "b", epoch, Some(Partitions::new())).unwrap();
        assert_eq!(n(b.assignment.as_ref().unwrap()), 6);
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn pattern_subscriptions_and_unknown_assignors() {
        let mut g = ConsumerGroup::new();
        let t = T([
            ("ab".to_string(), 2),
            ("ac".to_string(), 1),
            ("x".to_string(), 4),
        ]
        .into());
        let r = g
            .heartbeat(
                HeartbeatIn {
                    member_id: "m".into(),
                    member_epoch: 0,
                    subscribed_regex: Some("a.*".into()),
                    ..Default::default()
                },
                &cfg(),
                &t,
                Instant::now(),
            )
            .unwrap();
        assert_eq!(n(r.assignment.as_ref().unwrap()), 3);
        let bad = g.heartbeat(
            HeartbeatIn {
                member_id: "m2".into(),
                member_epoch: 0,
                subscribed_topics: Some(vec![]),
                server_assignor: Some("sticky".into()),
                ..Default::default()
            },
            &cfg(),
            &t,
            Instant::now(),
        );
        assert_eq!(bad.unwrap_err().0, ec::UNSUPPORTED_ASSIGNOR);
        let bad = g.heartbeat(
            HeartbeatIn {
                member_id: "m2".into(),
                member_epoch: 0,
                subscribed_regex: Some("(".into()),
                ..Default::default()
            },
            &cfg(),
            &t,
            Instant::now(),
        );
        assert_eq!(bad.unwrap_err().0, ec::INVALID_REGULAR_EXPRESSION);
    }
}
