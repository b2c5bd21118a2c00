//! The coordinator's side of the consumer group protocol: heartbeats and descriptions of
//! consumer groups, their records in `__consumer_offsets` and their rebuilding at start-up.

use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use strom_metadata::MetadataImage;
use strom_protocol::error_code as ec;
use uuid::Uuid;

use super::assignor::Partitions;
use super::consumer::{
    ConsumerGroup, ConsumerMember, HeartbeatIn, HeartbeatOut, MemberState, Refused, Topics,
};
use super::state::Group;
use super::store::{self, CurrentAssignmentValue, MemberMetadataValue, StoredRecord};
use super::{GroupCoordinator, now_ms};

/// A record to write: key and value (None: tombstone).
pub type Record = (Bytes, Option<Bytes>);

/// Topics as the metadata image has them.
pub struct ImageTopics(pub Arc<MetadataImage>);

impl Topics for ImageTopics {
    fn partitions(&self, topic: &str) -> Option<i32> {
        self.0.topic(topic).map(|t| t.partitions.len() as i32)
    }
    fn matching(&self, re: &regex::Regex) -> Vec<String> {
        self.0
            .topics
            .keys()
            .filter(|t| re.is_match(t))
            .cloned()
            .collect()
    }
}

/// The topics of the image with pattern subscriptions limited to those a member may see
/// (with an authorizer: DESCRIBE on the topic).
struct VisibleTopics<'a> {
    topics: &'a ImageTopics,
    visible: &'a dyn Fn(&str) -> bool,
}

impl Topics for VisibleTopics<'_> {
    fn partitions(&self, topic: &str) -> Option<i32> {
        self.topics.partitions(topic)
    }
    fn matching(&self, re: &regex::Regex) -> Vec<String> {
        let mut found = self.topics.matching(re);
        found.retain(|t| (self.visible)(t));
        found
    }
}

impl ImageTopics {
    pub fn id(&self, topic: &str) -> Option<Uuid> {
        self.0.topic(topic).map(|t| t.topic_id)
    }
    pub fn name(&self, id: &Uuid) -> Option<String> {
        self.0.topic_by_id(id).map(|t| t.name.clone())
    }
    /// Partitions by topic id (topics that no longer exist are left out).
    pub fn to_ids(&self, p: &Partitions) -> store::TopicIdPartitions {
        p.iter()
            .filter_map(|(t, ps)| self.id(t).map(|id| (id, ps.iter().copied().collect())))
            .collect()
    }
    /// Partitions by topic name (unknown ids are left out).
    pub fn to_names(&self, p: &store::TopicIdPartitions) -> Partitions {
        let mut out = Partitions::new();
        for (id, ps) in p {
            if let Some(name) = self.name(id) {
                out.entry(name).or_default().extend(ps.iter().copied());
            }
        }
        out
    }
}

/// A consumer group member as ConsumerGroupDescribe shows it.
#[derive(Debug)]
pub struct ConsumerMemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topics: Vec<String>,
    pub subscribed_regex: Option<String>,
    pub assigned: Partitions,
    pub target: Partitions,
}

/// A consumer group as ConsumerGroupDescribe shows it.
#[derive(Debug)]
pub struct ConsumerGroupView {
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMemberView>,
}

/// The records that store what changed in a consumer group since the last call.
pub fn drain_records(group_id: &str, g: &mut ConsumerGroup, topics: &ImageTopics) -> Vec<Record> {
    let dirty = std::mem::take(&mut g.dirty);
    let mut out = Vec::new();
    for id in &dirty.removed {
        out.push((store::consumer_member_key(group_id, id), None));
        out.push((store::target_member_key(group_id, id), None));
        out.push((store::current_assignment_key(group_id, id), None));
    }
    for id in &dirty.members {
        let Some(m) = g.members.get(id) else { continue };
        out.push((
            store::consumer_member_key(group_id, id),
            Some(store::member_metadata_value(&MemberMetadataValue {
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: if m.subscribed_regex.is_some() {
                    Vec::new()
                } else {
                    m.subscribed_topics.iter().cloned().collect()
                },
                subscribed_topic_regex: m.subscribed_regex.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                server_assignor: m.server_assignor.clone(),
            })),
        ));
    }
    if dirty.group_epoch {
        out.push((
            store::consumer_epoch_key(group_id),
            Some(store::epoch_value(g.group_epoch)),
        ));
    }
    if dirty.target {
        for (id, parts) in &g.target {
            out.push((
                store::target_member_key(group_id, id),
                Some(store::target_member_value(&topics.to_ids(parts))),
            ));
        }
        out.push((
            store::target_epoch_key(group_id),
            Some(store::epoch_value(g.assignment_epoch)),
        ));
    }
    for id in &dirty.members {
        let Some(m) = g.members.get(id) else { continue };
        out.push((
            store::current_assignment_key(group_id, id),
            Some(store::current_assignment_value(&CurrentAssignmentValue {
                member_epoch: m.member_epoch,
                previous_member_epoch: m.previous_member_epoch,
                state: m.state.code(),
                assigned: topics.to_ids(&m.assigned),
                pending_revocation: topics.to_ids(&m.pending_revocation),
            })),
        ));
    }
    out
}

/// Applies one consumer group record while loading; false when the record is not one.
pub fn apply_consumer_record(
    groups: &mut std::collections::HashMap<String, Group>,
    rec: &StoredRecord,
    topics: &ImageTopics,
    now: Instant,
) -> bool {
    let (group_id, creates) = match rec {
        StoredRecord::ConsumerEpoch { group, epoch } => (group, epoch.is_some()),
        StoredRecord::ConsumerMember { group, value, .. } => (group, value.is_some()),
        StoredRecord::TargetEpoch { group, epoch } => (group, epoch.is_some()),
        StoredRecord::TargetMember {
            group, partitions, ..
        } => (group, partitions.is_some()),
        StoredRecord::CurrentAssignment { group, value, .. } => (group, value.is_some()),
        _ => return false,
    };
    if let StoredRecord::ConsumerEpoch { epoch: None, .. } = rec {
        groups.remove(group_id);
        return true;
    }
    if !creates && groups.get(group_id).is_none_or(|g| g.consumer.is_none()) {
        return true;
    }
    let g = groups
        .entry(group_id.clone())
        .or_insert_with(|| Group::new(group_id, now_ms()));
    let c = g.consumer.get_or_insert_with(ConsumerGroup::new);
    match rec {
        StoredRecord::ConsumerEpoch { epoch: Some(e), .. } => c.group_epoch = *e,
        StoredRecord::TargetEpoch { epoch, .. } => c.assignment_epoch = epoch.unwrap_or(0),
        StoredRecord::ConsumerMember { member, value, .. } => match value {
            None => {
                c.members.remove(member);
                c.target.remove(member);
            }
            Some(v) => {
                let m = c.members.entry(member.clone()).or_insert_with(|| {
                    let mut m = ConsumerMember::new_at(member, now);
                    m.member_epoch = 0;
                    m
                });
                m.instance_id = v.instance_id.clone();
                m.rack_id = v.rack_id.clone();
                m.client_id = v.client_id.clone();
                m.client_host = v.client_host.clone();
                m.subscribed_topics = v.subscribed_topic_names.iter().cloned().collect();
                m.subscribed_regex = v.subscribed_topic_regex.clone();
                m.rebalance_timeout_ms = v.rebalance_timeout_ms;
                m.server_assignor = v.server_assignor.clone();
            }
        },
        StoredRecord::TargetMember {
            member, partitions, ..
        } => match partitions {
            None => {
                c.target.remove(member);
            }
            Some(p) => {
                c.target.insert(member.clone(), topics.to_names(p));
            }
        },
        StoredRecord::CurrentAssignment {
            member,
            value: Some(v),
            ..
        } => {
            let m = c
                .members
                .entry(member.clone())
                .or_insert_with(|| ConsumerMember::new_at(member, now));
            m.member_epoch = v.member_epoch;
            m.previous_member_epoch = v.previous_member_epoch;
            m.state = MemberState::from_code(v.state);
            m.assigned = topics.to_names(&v.assigned);
            m.pending_revocation = topics.to_names(&v.pending_revocation);
        }
        _ => {}
    }
    true
}

/// Finishes loading a consumer group: indexes, timers and the topic snapshot.
pub fn restore(c: &mut ConsumerGroup, topics: &ImageTopics, now: Instant) {
    c.static_members.clear();
    c.owners.clear();
    c.target.retain(|id, _| c.members.contains_key(id));
    let ids: Vec<String> = c.members.keys().cloned().collect();
    for id in &ids {
        let m = c.members.get_mut(id).expect("listed");
        m.last_heartbeat = now;
        m.revoke_deadline = None;
        if let Some(i) = &m.instance_id {
            c.static_members.insert(i.clone(), id.clone());
        }
        let held: Vec<(String, i32)> = m
            .assigned
            .iter()
            .chain(m.pending_revocation.iter())
            .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
            .collect();
        for k in held {
            c.owners.insert(k, id.clone());
        }
    }
    // Writes of one group are ordered, but be safe: no member is ahead of its group.
    let top = c
        .members
        .values()
        .map(|m| m.member_epoch)
        .max()
        .unwrap_or(0);
    c.assignment_epoch = c.assignment_epoch.max(top);
    c.group_epoch = c.group_epoch.max(c.assignment_epoch);
    c.topic_snapshot = c
        .members
        .values()
        .flat_map(|m| m.subscribed_topics.iter())
        .filter_map(|t| topics.partitions(t).map(|n| (t.clone(), n)))
        .collect();
    c.dirty = Default::default();
}

/// A consumer group member's assignment in the classic embedded format (ConsumerProtocol
/// assignment v0), so that DescribeGroups readers can show it.
pub fn classic_assignment(p: &Partitions) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(p.len() as i32);
    for (t, ps) in p {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
        b.put_i32(ps.len() as i32);
        for x in ps {
            b.put_i32(*x);
        }
    }
    b.put_i32(-1);
    b.freeze()
}

/// A consumer group member's subscription in the classic embedded format (v0).
pub fn classic_subscription(topics: &std::collections::BTreeSet<String>) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

impl GroupCoordinator {
    /// Handles a ConsumerGroupHeartbeat. `write` stores the records of what changed; it runs
    /// under the coordinator lock so that a group's records reach the log in order. A pattern
    /// subscription resolves to the topics for which `visible` holds.
    pub fn consumer_heartbeat(
        &self,
        group_id: &str,
        req: HeartbeatIn,
        topics: &ImageTopics,
        visible: &dyn Fn(&str) -> bool,
        write: &dyn Fn(Vec<Record>) -> Result<(), i16>,
    ) -> Result<HeartbeatOut, Refused> {
        let now = Instant::now();
        let mut groups = self.lock();
        let joining = req.member_epoch == 0;
        let created = !groups.contains_key(group_id);
        let group = match groups.get_mut(group_id) {
            Some(g) => g,
            None if joining => groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, now_ms())),
            None => {
                return Err(Refused(
                    ec::UNKNOWN_MEMBER_ID,
                    format!("group {group_id} does not exist"),
                ));
            }
        };
        let mut converted = false;
        if group.consumer.is_none() {
            if !group.members.is_empty() || !group.pending.is_empty() {
                return Err(Refused(
                    ec::GROUP_ID_NOT_FOUND,
                    format!("group {group_id} is a classic group with members"),
                ));
            }
            if !joining {
                return Err(Refused(
                    ec::UNKNOWN_MEMBER_ID,
                    format!("group {group_id} has no member {}", req.member_id),
                ));
            }
            // An empty classic group (perhaps only offsets) becomes a consumer group.
            converted = true;
            let mut c = ConsumerGroup::new();
            c.group_epoch = group.generation.max(0);
            c.assignment_epoch = c.group_epoch;
            group.consumer = Some(c);
        }
        let c = group.consumer.as_mut().expect("consumer group");
        let was_empty = c.members.is_empty();
        let member_topics = VisibleTopics { topics, visible };
        let out = c.heartbeat(req, &self.config.consumer, &member_topics, now);
        let records = drain_records(group_id, c, topics);
        if !was_empty && c.members.is_empty() {
            group.empty_since_ms = now_ms();
        }
        if out.is_err() && c.members.is_empty() && records.is_empty() {
            // A refused first join leaves no trace.
            if created {
                groups.remove(group_id);
            } else if converted {
                group.consumer = None;
            }
        }
        let out = out?;
        write(records).map_err(|code| Refused(code, "cannot store group state".into()))?;
        Ok(out)
    }

    /// A consumer group for ConsumerGroupDescribe.
    pub fn consumer_describe(&self, group_id: &str) -> Result<ConsumerGroupView, Refused> {
        let groups = self.lock();
        let Some(g) = groups.get(group_id) else {
            return Err(Refused(
                ec::GROUP_ID_NOT_FOUND,
                format!("group {group_id} not found"),
            ));
        };
        let Some(c) = &g.consumer else {
            return Err(Refused(
                ec::GROUP_ID_NOT_FOUND,
                format!("group {group_id} is not a consumer group"),
            ));
        };
        Ok(ConsumerGroupView {
            state: c.state_name(),
            group_epoch: c.group_epoch,
            assignment_epoch: c.assignment_epoch,
            assignor: if c.assignor.is_empty() {
                self.config
                    .consumer
                    .assignors
                    .first()
                    .copied()
                    .unwrap_or("uniform")
                    .to_string()
            } else {
                c.assignor.clone()
            },
            members: c
                .members
                .values()
                .map(|m| ConsumerMemberView {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.member_epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topics: m.subscribed_topics.iter().cloned().collect(),
                    subscribed_regex: m.subscribed_regex.clone(),
                    assigned: m.assigned.clone(),
                    target: c.target.get(&m.member_id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// OffsetFetch v9+ from a member of a consumer group: the member must exist and be at its
    /// current epoch.
    pub fn check_fetch(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), i16> {
        if member_id.is_empty() && member_epoch < 0 {
            return Ok(());
        }
        let groups = self.lock();
        let Some(c) = groups.get(group_id).and_then(|g| g.consumer.as_ref()) else {
            return Ok(());
        };
        match c.members.get(member_id) {
            None => Err(ec::UNKNOWN_MEMBER_ID),
            Some(m) if member_epoch > m.member_epoch => Err(ec::FENCED_MEMBER_EPOCH),
            Some(m) if member_epoch < m.member_epoch => Err(ec::STALE_MEMBER_EPOCH),
            Some(_) => Ok(()),
        }
    }

    /// Session and revocation timeouts of consumer groups and, with `expire`, removal of
    /// consumer groups left without members and offsets for `offsets.retention.minutes`;
    /// returns records to write by group.
    pub fn consumer_tick(&self, topics: &ImageTopics, expire: bool) -> Vec<(String, Vec<Record>)> {
        let now = Instant::now();
        let mut groups = self.lock();
        let mut out = Vec::new();
        if expire && self.config.offsets_retention_ms >= 0 {
            let limit = now_ms() - self.config.offsets_retention_ms;
            let gone: Vec<String> = groups
                .values()
                .filter(|g| {
                    g.consumer.as_ref().is_some_and(|c| c.members.is_empty())
                        && g.offsets.is_empty()
                        && g.empty_since_ms < limit
                })
                .map(|g| g.id.clone())
                .collect();
            for id in gone {
                groups.remove(&id);
                tracing::info!(group = %id, "empty consumer group removed");
                out.push((
                    id.clone(),
                    vec![
                        (store::consumer_epoch_key(&id), None),
                        (store::target_epoch_key(&id), None),
                    ],
                ));
            }
        }
        for (id, g) in groups.iter_mut() {
            let Some(c) = g.consumer.as_mut() else {
                continue;
            };
            let was_empty = c.members.is_empty();
            c.expire(&self.config.consumer, topics, now);
            let records = drain_records(id, c, topics);
            if !was_empty && c.members.is_empty() {
                g.empty_since_ms = now_ms();
            }
            if !records.is_empty() {
                out.push((id.clone(), records));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use strom_metadata::MetadataRecord;

    use super::super::{JoinRequest, Reply};
    use super::*;

    fn image() -> ImageTopics {
        let mut img = MetadataImage::default();
        let id = Uuid::from_u128(7);
        img.apply(&MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
        });
        for p in 0..4 {
            img.apply(&MetadataRecord::Partition {
                topic_id: id,
                partition: p,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
                adding: vec![],
                removing: vec![],
            });
        }
        ImageTopics(Arc::new(img))
    }

    /// Every topic visible to the member.
    fn all(_: &str) -> bool {
        true
    }

    fn coordinator() -> GroupCoordinator {
        GroupCoordinator::new(crate::group::tests::config())
    }

    fn join_in(member: &str) -> HeartbeatIn {
        HeartbeatIn {
            member_id: member.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 60_000,
            subscribed_topics: Some(vec!["t".into()]),
            owned: Some(Partitions::new()),
            ..Default::default()
        }
    }

    fn classic_join(c: &GroupCoordinator, group: &str) -> i16 {
        let r = c.join(JoinRequest {
            group_id: group.into(),
            member_id: String::new(),
            instance_id: None,
            client_id: "k".into(),
            client_host: "h".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member_id: true,
        });
        match r {
            Reply::Now(j) => j.error_code,
            Reply::Later(_) => ec::NONE,
        }
    }

    #[test]
    fn consumer_and_classic_groups_coexist() {
        let c = coordinator();
        let topics = image();
        let ok = |_: Vec<Record>| Ok(());
        let a = c
            .consumer_heartbeat("g", join_in("a"), &topics, &all, &ok)
            .unwrap();
        assert_eq!(a.member_epoch, 1);
        // A classic member cannot join a consumer group with members.
        assert_eq!(classic_join(&c, "g"), ec::INCONSISTENT_GROUP_PROTOCOL);
        let list = c.list();
        assert_eq!((list[0].group_type, list[0].state), ("consumer", "Stable"));
        assert_eq!(c.describe("g").unwrap().members.len(), 1);
        // Commits: v9+ only, with the member epoch as generation.
        assert_eq!(c.check_commit("g", "a", None, 1), Ok(()));
        assert_eq!(
            c.check_commit_at("g", "a", None, 1, Some(8)),
            Err(ec::UNSUPPORTED_VERSION)
        );
        assert_eq!(
            c.check_commit("g", "a", None, 2),
            Err(ec::FENCED_MEMBER_EPOCH)
        );
        assert_eq!(
            c.check_commit("g", "a", None, 0),
            Err(ec::STALE_MEMBER_EPOCH)
        );
        assert_eq!(
            c.check_commit("g", "x", None, 1),
            Err(ec::UNKNOWN_MEMBER_ID)
        );
        assert_eq!(c.check_fetch("g", "a", 1), Ok(()));
        assert_eq!(c.check_fetch("g", "a", 0), Err(ec::STALE_MEMBER_EPOCH));
        assert_eq!(c.check_fetch("g", "a", 3), Err(ec::FENCED_MEMBER_EPOCH));
        assert_eq!(c.check_fetch("g", "b", 1), Err(ec::UNKNOWN_MEMBER_ID));
        assert_eq!(c.check_fetch("g", "", -1), Ok(()));
        assert_eq!(c.delete_group("g"), Err(ec::NON_EMPTY_GROUP));
        // A consumer member cannot join a classic group with members.
        assert_eq!(classic_join(&c, "k"), ec::MEMBER_ID_REQUIRED);
        assert_eq!(
            c.consumer_heartbeat("k", join_in("b"), &topics, &all, &ok)
                .unwrap_err()
                .0,
            ec::GROUP_ID_NOT_FOUND
        );
        // Once the consumer group is empty, a classic member may take it over.
        let mut leave = join_in("a");
        leave.member_epoch = -1;
        assert_eq!(
            c.consumer_heartbeat("g", leave, &topics, &all, &ok)
                .unwrap()
                .member_epoch,
            -1
        );
        assert_eq!(c.describe("g").unwrap().state, "Empty");
        assert_eq!(classic_join(&c, "g"), ec::MEMBER_ID_REQUIRED);
        assert_eq!(
            c.list()
                .iter()
                .find(|g| g.group_id == "g")
                .unwrap()
                .group_type,
            "classic"
        );
        assert_eq!(
            c.consumer_describe("g").unwrap_err().0,
            ec::GROUP_ID_NOT_FOUND
        );
        // A refused first join leaves no group behind.
        let mut bad = join_in("z");
        bad.server_assignor = Some("sticky".into());
        assert_eq!(
            c.consumer_heartbeat("new", bad, &topics, &all, &ok)
                .unwrap_err()
                .0,
            ec::UNSUPPORTED_ASSIGNOR
        );
        assert!(c.describe("new").is_none());
        // The empty consumer group "g2" (no offsets) goes once its retention has passed.
        let mut leave = join_in("q");
        c.consumer_heartbeat("g2", leave.clone(), &topics, &all, &ok)
            .unwrap();
        leave.member_epoch = -1;
        c.consumer_heartbeat("g2", leave, &topics, &all, &ok)
            .unwrap();
        assert!(c.consumer_tick(&topics, true).is_empty(), "not yet");
        c.lock().get_mut("g2").unwrap().empty_since_ms -= 120_000;
        let out = c.consumer_tick(&topics, true);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.len(), 2);
        assert!(c.describe("g2").is_none());
    }

    #[test]
    fn records_rebuild_the_group() {
        let c = coordinator();
        let topics = image();
        let written = RefCell::new(Vec::new());
        let write = |r: Vec<Record>| {
            written.borrow_mut().extend(r);
            Ok(())
        };
        let a = c
            .consumer_heartbeat("g", join_in("a"), &topics, &all, &write)
            .unwrap();
        c.consumer_heartbeat("g", join_in("b"), &topics, &all, &write)
            .unwrap();
        // a revokes half and confirms.
        let mut beat = join_in("a");
        beat.member_epoch = a.member_epoch;
        beat.subscribed_topics = None;
        beat.owned = Some(a.assignment.clone().unwrap());
        let kept = c
            .consumer_heartbeat("g", beat.clone(), &topics, &all, &write)
            .unwrap()
            .assignment
            .unwrap();
        beat.owned = Some(kept);
        c.consumer_heartbeat("g", beat, &topics, &all, &write)
            .unwrap();
        let mut m = join_in("m");
        m.member_epoch = -1;
        let _ = c.consumer_heartbeat("g", m, &topics, &all, &write);
        // Replay into a fresh coordinator.
        let mut groups = HashMap::new();
        let now = Instant::now();
        for (k, v) in written.borrow().iter() {
            let rec = store::decode(k.clone(), v.clone()).unwrap();
            assert!(apply_consumer_record(&mut groups, &rec, &topics, now));
        }
        let rebuilt = groups.get_mut("g").unwrap().consumer.as_mut().unwrap();
        restore(rebuilt, &topics, now);
        let live = c.lock();
        let live = live["g"].consumer.as_ref().unwrap();
        assert_eq!(rebuilt.group_epoch, live.group_epoch);
        assert_eq!(rebuilt.assignment_epoch, live.assignment_epoch);
        assert_eq!(rebuilt.target, live.target);
        assert_eq!(rebuilt.owners, live.owners);
        for (id, m) in &live.members {
            let r = &rebuilt.members[id];
            assert_eq!(
                (r.member_epoch, r.previous_member_epoch, r.state),
                (m.member_epoch, m.previous_member_epoch, m.state)
            );
            assert_eq!(
                (&r.assigned, &r.pending_revocation),
                (&m.assigned, &m.pending_revocation)
            );
            assert_eq!(r.subscribed_topics, m.subscribed_topics);
            assert_eq!(r.rebalance_timeout_ms, m.rebalance_timeout_ms);
        }
        assert_eq!(rebuilt.members.len(), 2);
    }
}
