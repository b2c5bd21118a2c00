//! The records of `__consumer_offsets`, in Kafka's key/value layout, so that the topic reads the
//! same to any tool that knows Kafka's:
//!
//! - offset commit: key v1 (group, topic, partition), value v3 (offset, leader epoch, metadata,
//!   commit timestamp);
//! - group metadata: key v2 (group), value v3 (protocol type, generation, protocol, leader,
//!   state timestamp, members).
//!
//! - consumer groups (KIP-848), values in the flexible encoding (compact strings and arrays,
//!   tagged fields): key v3 group epoch, key v5 member metadata (subscription, client), key v6
//!   target assignment epoch, key v7 a member's target assignment, key v8 a member's current
//!   assignment (member epoch, previous epoch, state, assigned and revoking partitions).
//!   Key v4 (per-topic partition metadata, which Kafka has stopped writing) is read and skipped.
//!
//! A null value is a tombstone: the offset, the group or the member is gone.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

/// An offset commit as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// A member as stored in group metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Group metadata as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

/// A decoded record of the topic.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupValue>,
    },
    /// Group epoch of a consumer group.
    ConsumerEpoch {
        group: String,
        epoch: Option<i32>,
    },
    ConsumerMember {
        group: String,
        member: String,
        value: Option<MemberMetadataValue>,
    },
    TargetEpoch {
        group: String,
        epoch: Option<i32>,
    },
    TargetMember {
        group: String,
        member: String,
        partitions: Option<TopicIdPartitions>,
    },
    CurrentAssignment {
        group: String,
        member: String,
        value: Option<CurrentAssignmentValue>,
    },
    /// A record strom reads past.
    Skipped,
}

/// Partitions by topic id, as consumer group records hold them.
pub type TopicIdPartitions = Vec<(Uuid, Vec<i32>)>;

/// A consumer group member's metadata as stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MemberMetadataValue {
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
}

/// A consumer group member's current assignment as stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CurrentAssignmentValue {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: i8,
    pub assigned: TopicIdPartitions,
    pub pending_revocation: TopicIdPartitions,
}

fn put_uvarint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn put_compact_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        None => put_uvarint(b, 0),
        Some(s) => {
            put_uvarint(b, s.len() as u64 + 1);
            b.put_slice(s.as_bytes());
        }
    }
}

fn put_id_partitions(b: &mut BytesMut, parts: &TopicIdPartitions) {
    put_uvarint(b, parts.len() as u64 + 1);
    for (id, ps) in parts {
        b.put_slice(id.as_bytes());
        put_uvarint(b, ps.len() as u64 + 1);
        for p in ps {
            b.put_i32(*p);
        }
        put_uvarint(b, 0);
    }
}

fn key_with_member(version: i16, group: &str, member: Option<&str>) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(version);
    put_str(&mut b, group);
    if let Some(m) = member {
        put_str(&mut b, m);
    }
    b.freeze()
}

pub fn consumer_epoch_key(group: &str) -> Bytes {
    key_with_member(3, group, None)
}

pub fn consumer_member_key(group: &str, member: &str) -> Bytes {
    key_with_member(5, group, Some(member))
}

pub fn target_epoch_key(group: &str) -> Bytes {
    key_with_member(6, group, None)
}

pub fn target_member_key(group: &str, member: &str) -> Bytes {
    key_with_member(7, group, Some(member))
}

pub fn current_assignment_key(group: &str, member: &str) -> Bytes {
    key_with_member(8, group, Some(member))
}

/// Value of the group epoch (key v3) and of the target assignment epoch (key v6).
pub fn epoch_value(epoch: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(epoch);
    put_uvarint(&mut b, 0);
    b.freeze()
}

pub fn member_metadata_value(v: &MemberMetadataValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    put_compact_str(&mut b, v.instance_id.as_deref());
    put_compact_str(&mut b, v.rack_id.as_deref());
    put_compact_str(&mut b, Some(&v.client_id));
    put_compact_str(&mut b, Some(&v.client_host));
    put_uvarint(&mut b, v.subscribed_topic_names.len() as u64 + 1);
    for t in &v.subscribed_topic_names {
        put_compact_str(&mut b, Some(t));
    }
    put_compact_str(&mut b, v.subscribed_topic_regex.as_deref());
    b.put_i32(v.rebalance_timeout_ms);
    put_compact_str(&mut b, v.server_assignor.as_deref());
    put_uvarint(&mut b, 0);
    b.freeze()
}

pub fn target_member_value(parts: &TopicIdPartitions) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    put_id_partitions(&mut b, parts);
    put_uvarint(&mut b, 0);
    b.freeze()
}

pub fn current_assignment_value(v: &CurrentAssignmentValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(v.member_epoch);
    b.put_i32(v.previous_member_epoch);
    b.put_i8(v.state);
    put_id_partitions(&mut b, &v.assigned);
    put_id_partitions(&mut b, &v.pending_revocation);
    put_uvarint(&mut b, 0);
    b.freeze()
}

pub(crate) fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(1);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub fn offset_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(2);
    put_str(&mut b, group);
    b.freeze()
}

pub fn group_value(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_str(&mut b, &v.protocol_type);
    b.put_i32(v.generation);
    put_nullable_str(&mut b, v.protocol.as_deref());
    put_nullable_str(&mut b, v.leader.as_deref());
    b.put_i64(v.state_timestamp);
    b.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.group_instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Big-endian fields of a stored record, each read checked against the bytes left.
pub(crate) struct Reader(pub(crate) Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), Malformed> {
        if self.0.remaining() < n {
            Err(Malformed("record shorter than its fields"))
        } else {
            Ok(())
        }
    }
    pub(crate) fn i16(&mut self) -> Result<i16, Malformed> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    pub(crate) fn i32(&mut self) -> Result<i32, Malformed> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    pub(crate) fn i64(&mut self) -> Result<i64, Malformed> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    pub(crate) fn nullable_str(&mut self) -> Result<Option<String>, Malformed> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        self.need(len as usize)?;
        let s = self.0.split_to(len as usize);
        String::from_utf8(s.to_vec())
            .map(Some)
            .map_err(|_| Malformed("string is not UTF-8"))
    }
    pub(crate) fn str(&mut self) -> Result<String, Malformed> {
        self.nullable_str()?
            .ok_or(Malformed("null where a string is required"))
    }
    pub(crate) fn i8(&mut self) -> Result<i8, Malformed> {
        self.need(1)?;
        Ok(self.0.get_i8())
    }
    fn uvarint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            self.need(1)?;
            let byte = self.0.get_u8();
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed("varint too long"))
    }
    fn compact_str(&mut self) -> Result<Option<String>, Malformed> {
        let len = self.uvarint()?;
        if len == 0 {
            return Ok(None);
        }
        let len = (len - 1) as usize;
        self.need(len)?;
        let s = self.0.split_to(len);
        String::from_utf8(s.to_vec())
            .map(Some)
            .map_err(|_| Malformed("string is not UTF-8"))
    }
    fn compact_len(&mut self) -> Result<usize, Malformed> {
        let n = self.uvarint()?;
        let n = n.saturating_sub(1) as usize;
        // Every element takes at least one byte: a count beyond the bytes left is corrupt.
        self.need(n)?;
        Ok(n)
    }
    /// Skips the tagged fields that end a flexible struct.
    fn tags(&mut self) -> Result<(), Malformed> {
        let n = self.uvarint()?;
        for _ in 0..n {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.need(size)?;
            self.0.advance(size);
        }
        Ok(())
    }
    fn uuid(&mut self) -> Result<Uuid, Malformed> {
        self.need(16)?;
        let mut id = [0u8; 16];
        self.0.copy_to_slice(&mut id);
        Ok(Uuid::from_bytes(id))
    }
    fn id_partitions(&mut self) -> Result<TopicIdPartitions, Malformed> {
        let n = self.compact_len()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.uuid()?;
            let k = self.compact_len()?;
            let mut ps = Vec::with_capacity(k);
            for _ in 0..k {
                ps.push(self.i32()?);
            }
            self.tags()?;
            out.push((id, ps));
        }
        Ok(out)
    }
    fn bytes(&mut self) -> Result<Bytes, Malformed> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        self.need(len as usize)?;
        Ok(self.0.split_to(len as usize))
    }
}

/// Decodes one record of the topic.
pub fn decode(key: Bytes, value: Option<Bytes>) -> Result<StoredRecord, Malformed> {
    let mut k = Reader(key);
    let key_version = k.i16()?;
    match key_version {
        0 | 1 => {
            let group = k.str()?;
            let topic = k.str()?;
            let partition = k.i32()?;
            let value = match value {
                None => None,
                Some(v) => {
                    let mut r = Reader(v);
                    let version = r.i16()?;
                    let offset = r.i64()?;
                    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
                    let metadata = r.str()?;
                    let commit_timestamp = r.i64()?;
                    Some(OffsetValue {
                        offset,
                        leader_epoch,
                        metadata,
                        commit_timestamp,
                    })
                }
            };
            Ok(StoredRecord::Offset {
                group,
                topic,
                partition,
                value,
            })
        }
        2 => {
            let group = k.str()?;
            let value = match value {
                None => None,
                Some(v) => {
                    let mut r = Reader(v);
                    let version = r.i16()?;
                    let protocol_type = r.str()?;
                    let generation = r.i32()?;
                    let protocol = r.nullable_str()?;
                    let leader = r.nullable_str()?;
                    let state_timestamp = if version >= 2 { r.i64()? } else { -1 };
                    let n = r.i32()?.max(0);
                    let mut members = Vec::new();
                    for _ in 0..n {
                        let member_id = r.str()?;
                        let group_instance_id = if version >= 3 {
                            r.nullable_str()?
                        } else {
                            None
                        };
                        let client_id = r.str()?;
                        let client_host = r.str()?;
                        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { 0 };
                        let session_timeout_ms = r.i32()?;
                        let subscription = r.bytes()?;
                        let assignment = r.bytes()?;
                        members.push(StoredMember {
                            member_id,
                            group_instance_id,
                            client_id,
                            client_host,
                            rebalance_timeout_ms,
                            session_timeout_ms,
                            subscription,
                            assignment,
                        });
                    }
                    Some(GroupValue {
                        protocol_type,
                        generation,
                        protocol,
                        leader,
                        state_timestamp,
                        members,
                    })
                }
            };
            Ok(StoredRecord::Group { group, value })
        }
        3 | 6 => {
            let group = k.str()?;
            let epoch = match value {
                None => None,
                Some(v) => {
                    let mut r = Reader(v);
                    r.i16()?;
                    Some(r.i32()?)
                }
            };
            Ok(if key_version == 3 {
                StoredRecord::ConsumerEpoch { group, epoch }
            } else {
                StoredRecord::TargetEpoch { group, epoch }
            })
        }
        4 => Ok(StoredRecord::Skipped),
        5 => {
            let group = k.str()?;
            let member = k.str()?;
            let value = match value {
                None => None,
                Some(v) => {
                    let mut r = Reader(v);
                    r.i16()?;
                    let instance_id = r.compact_str()?;
                    let rack_id = r.compact_str()?;
                    let client_id = r.compact_str()?.unwrap_or_default();
                    let client_host = r.compact_str()?.unwrap_or_default();
                    let n = r.compact_len()?;
                    let mut subscribed_topic_names = Vec::with_capacity(n);
                    for _ in 0..n {
                        subscribed_topic_names.push(r.compact_str()?.unwrap_or_default());
                    }
                    let subscribed_topic_regex = r.compact_str()?;
                    let rebalance_timeout_ms = r.i32()?;
                    let server_assignor = r.compact_str()?;
                    Some(MemberMetadataValue {
                        instance_id,
                        rack_id,
                        client_id,
                        client_host,
                        subscribed_topic_names,
                        subscribed_topic_regex,
                        rebalance_timeout_ms,
                        server_assignor,
                    })
                }
            };
            Ok(StoredRecord::ConsumerMember {
                group,
                member,
                value,
            })
        }
        7 => {
            let group = k.str()?;
            let member = k.str()?;
            let partitions = match value {
                None => None,
                Some(v) => {
                    let mut r = Reader(v);
                    r.i16()?;
                    Some(r.id_partitions()?)
                }
            };
            Ok(StoredRecord::TargetMember {
                group,
                member,
                partitions,
            })
        }
        8 => {
            let group = k.str()?;
            let member = k.str()?;
            let value = match value {
                None => None,
                Some(v) => {
                    let mut r = Reader(v);
                    r.i16()?;
                    Some(CurrentAssignmentValue {
                        member_epoch: r.i32()?,
                        previous_member_epoch: r.i32()?,
                        state: r.i8()?,
                        assigned: r.id_partitions()?,
                        pending_revocation: r.id_partitions()?,
                    })
                }
            };
            Ok(StoredRecord::CurrentAssignment {
                group,
                member,
                value,
            })
        }
        _ => Err(Malformed("unknown key version")),
    }
}

/// The `__consumer_offsets` partition of a group: Java's `String.hashCode` of the group id,
/// made non-negative, modulo the partition count, so that a group lands where Kafka puts it.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    (h & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 1000,
        };
        let r = decode(offset_key("g", "t", 7), Some(offset_value(&v))).unwrap();
        assert_eq!(
            r,
            StoredRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7,
                value: Some(v)
            }
        );
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 9,
            members: vec![StoredMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let r = decode(group_key("g"), Some(group_value(&g))).unwrap();
        assert_eq!(
            r,
            StoredRecord::Group {
                group: "g".into(),
                value: Some(g)
            }
        );
        assert!(matches!(
            decode(group_key("g"), None).unwrap(),
            StoredRecord::Group { value: None, .. }
        ));
        assert!(decode(Bytes::from_static(&[0, 9]), None).is_err());
        assert!(decode(Bytes::from_static(&[0, 1, 0, 5, b'a']), None).is_err());
    }

    #[test]
    fn consumer_group_records_round_trip() {
        let id = Uuid::from_u128(0x1234);
        let m = MemberMetadataValue {
            instance_id: Some("i".into()),
            rack_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            subscribed_topic_names: vec!["t".into(), "u".into()],
            subscribed_topic_regex: None,
            rebalance_timeout_ms: 300_000,
            server_assignor: Some("uniform".into()),
        };
        assert_eq!(
            decode(
                consumer_member_key("g", "m"),
                Some(member_metadata_value(&m))
            )
            .unwrap(),
            StoredRecord::ConsumerMember {
                group: "g".into(),
                member: "m".into(),
                value: Some(m)
            }
        );
        let a = CurrentAssignmentValue {
            member_epoch: 4,
            previous_member_epoch: 3,
            state: 0,
            assigned: vec![(id, vec![0, 2])],
            pending_revocation: vec![(id, vec![1])],
        };
        assert_eq!(
            decode(
                current_assignment_key("g", "m"),
                Some(current_assignment_value(&a))
            )
            .unwrap(),
            StoredRecord::CurrentAssignment {
                group: "g".into(),
                member: "m".into(),
                value: Some(a)
            }
        );
        assert_eq!(
            decode(
                target_member_key("g", "m"),
                Some(target_member_value(&vec![(id, vec![5])]))
            )
            .unwrap(),
            StoredRecord::TargetMember {
                group: "g".into(),
                member: "m".into(),
                partitions: Some(vec![(id, vec![5])])
            }
        );
        assert_eq!(
            decode(consumer_epoch_key("g"), Some(epoch_value(7))).unwrap(),
            StoredRecord::ConsumerEpoch {
                group: "g".into(),
                epoch: Some(7)
            }
        );
        assert_eq!(
            decode(target_epoch_key("g"), None).unwrap(),
            StoredRecord::TargetEpoch {
                group: "g".into(),
                epoch: None
            }
        );
        // The group epoch value as Kafka 4.1 writes it, with a tagged field: tag 0, 8 bytes.
        let mut v = BytesMut::new();
        v.put_i16(0);
        v.put_i32(9);
        v.put_slice(&[1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            decode(consumer_epoch_key("g"), Some(v.freeze())).unwrap(),
            StoredRecord::ConsumerEpoch {
                group: "g".into(),
                epoch: Some(9)
            }
        );
        // Key and exact bytes: version 8, group, member.
        assert_eq!(
            &current_assignment_key("g", "m")[..],
            &[0, 8, 0, 1, b'g', 0, 1, b'm']
        );
    }

    #[test]
    fn partition_matches_java_string_hash() {
        // "test-group".hashCode() == 627841412 in Java; 627841412 % 50 == 12.
        assert_eq!(partition_for("test-group", 50), 12);
        assert_eq!(partition_for("", 50), 0);
        assert!((0..50).contains(&partition_for("ééé-some-long-group-name", 50)));
    }
}
