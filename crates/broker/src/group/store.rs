//! The records of `__consumer_offsets`, in Kafka's key/value layout, so that the topic reads the
//! same to any tool that knows Kafka's:
//!
//! - offset commit: key v1 (group, topic, partition), value v3 (offset, leader epoch, metadata,
//!   commit timestamp);
//! - group metadata: key v2 (group), value v3 (protocol type, generation, protocol, leader,
//!   state timestamp, members).
//!
//! A null value is a tombstone: the offset or the group is gone.

use bytes::{Buf, BufMut, Bytes, BytesMut};

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
}

fn put_str(b: &mut BytesMut, s: &str) {
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
#[derive(Debug)]
pub struct Malformed(pub &'static str);

struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), Malformed> {
        if self.0.remaining() < n {
            Err(Malformed("record shorter than its fields"))
        } else {
            Ok(())
        }
    }
    fn i16(&mut self) -> Result<i16, Malformed> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self) -> Result<i32, Malformed> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    fn i64(&mut self) -> Result<i64, Malformed> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    fn nullable_str(&mut self) -> Result<Option<String>, Malformed> {
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
    fn str(&mut self) -> Result<String, Malformed> {
        self.nullable_str()?
            .ok_or(Malformed("null where a string is required"))
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
    match k.i16()? {
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
    fn partition_matches_java_string_hash() {
        // "test-group".hashCode() == 627841412 in Java; 627841412 % 50 == 12.
        assert_eq!(partition_for("test-group", 50), 12);
        assert_eq!(partition_for("", 50), 0);
        assert!((0..50).contains(&partition_for("ééé-some-long-group-name", 50)));
    }
}
