//! Consumer groups: list, describe, delete, and their committed offsets (list, alter, delete),
//! as Kafka's admin client makes these calls.
//!
//! Group requests go to the group's coordinator, found with FindCoordinator (key type 0) and
//! cached per group; a NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE or
//! COORDINATOR_LOAD_IN_PROGRESS answer finds it again and retries. ListGroups asks every
//! broker and merges the answers.

use std::collections::BTreeMap;

use bytes::Bytes;

use strom_protocol::messages::{
    ConsumerProtocolAssignment, GroupId, TopicName,
    consumer_group_describe_request::ConsumerGroupDescribeRequest,
    consumer_group_describe_response,
    delete_groups_request::DeleteGroupsRequest,
    describe_groups_request::DescribeGroupsRequest,
    list_groups_request::ListGroupsRequest,
    offset_commit_request::{
        OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    },
    offset_delete_request::{
        OffsetDeleteRequest, OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    },
    offset_fetch_request::{OffsetFetchRequest, OffsetFetchRequestGroup},
};
use strom_protocol::{ApiKey, Decodable, RequestKind, ResponseKind, error_code, str_bytes};

use super::{Admin, Route};
use crate::error::{ClientError, check_resource as check, error_name};

/// The highest version of each group API this client speaks.
pub mod group_versions {
    pub const FIND_COORDINATOR: i16 = 6;
    pub const LIST_GROUPS: i16 = 5;
    pub const DESCRIBE_GROUPS: i16 = 5;
    /// v8 and later carry a list of groups; v7 and earlier a single group at the top level.
    pub const OFFSET_FETCH: i16 = 8;
    pub const OFFSET_COMMIT: i16 = 9;
    pub const DELETE_GROUPS: i16 = 2;
    pub const OFFSET_DELETE: i16 = 0;
    pub const CONSUMER_GROUP_DESCRIBE: i16 = 1;
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// "consumer" for Kafka consumers; empty for groups that only hold offsets.
    pub protocol_type: String,
    /// Empty when the broker answers ListGroups below v4.
    pub state: String,
    /// "classic" or "consumer"; empty below ListGroups v5.
    pub group_type: String,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Assigned partitions by topic (sorted), decoded from the consumer protocol assignment;
    /// empty for other protocol types or while no assignment was made.
    pub assignment: Vec<(String, Vec<i32>)>,
    /// The member epoch (consumer protocol groups only).
    pub member_epoch: Option<i32>,
    /// The partitions the coordinator means the member to own once reconciled (consumer
    /// protocol groups only).
    pub target_assignment: Vec<(String, Vec<i32>)>,
}

/// A group as DescribeGroups reports it. An unknown group is "Dead" with no members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Empty, Stable, PreparingRebalance, CompletingRebalance or Dead.
    pub state: String,
    pub protocol_type: String,
    /// The assignor chosen (e.g. "range"); empty while none is.
    pub protocol: String,
    /// Sorted by member id.
    pub members: Vec<GroupMember>,
    /// The coordinator, as `host:port`.
    pub coordinator: String,
    /// "classic" or "consumer" (the KIP-848 protocol).
    pub group_type: String,
    /// Group epoch and target assignment epoch of a consumer protocol group.
    pub epochs: Option<(i32, i32)>,
}

impl GroupDescription {
    /// True while the group has no active members (Kafka allows offset resets only then).
    pub fn is_inactive(&self) -> bool {
        self.members.is_empty() && matches!(self.state.as_str(), "Empty" | "Dead")
    }
}

/// Committed offsets of a group by (topic, partition); partitions without a commit are absent.
pub type CommittedOffsets = BTreeMap<(String, i32), i64>;

/// Decodes a member assignment of the consumer protocol: an i16 version, then the
/// ConsumerProtocolAssignment at that version. Returns the partitions by topic, sorted.
pub fn decode_assignment(bytes: &[u8]) -> Result<Vec<(String, Vec<i32>)>, ClientError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    if bytes.len() < 2 {
        return Err(ClientError::UnexpectedResponse(
            "member assignment shorter than its version".into(),
        ));
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    // Versions above the newest known are read as the newest, as Kafka's consumer does: later
    // versions only add fields at the end.
    let read_as = version.clamp(0, 3);
    if version < 0 {
        return Err(ClientError::UnexpectedResponse(format!(
            "member assignment with negative version {version}"
        )));
    }
    let mut buf = Bytes::copy_from_slice(&bytes[2..]);
    let a = ConsumerProtocolAssignment::decode(&mut buf, read_as).map_err(|e| {
        ClientError::UnexpectedResponse(format!("cannot decode member assignment v{version}: {e}"))
    })?;
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in a.assigned_partitions {
        by_topic
            .entry(tp.topic.to_string())
            .or_default()
            .extend(tp.partitions);
    }
    Ok(by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            ps.dedup();
            (t, ps)
        })
        .collect())
}

/// Errors after which a group request goes to a freshly found coordinator.
fn is_coordinator_error(code: i16) -> bool {
    matches!(
        code,
        error_code::NOT_COORDINATOR
            | error_code::COORDINATOR_NOT_AVAILABLE
            | error_code::COORDINATOR_LOAD_IN_PROGRESS
    )
}

/// `Ok(())` for error code 0, else the error about `subject`, worded for the group codes that
/// the generic descriptions do not cover.
fn group_check(code: i16, subject: &str, broker_message: Option<&str>) -> Result<(), ClientError> {
    let description = match code {
        error_code::NONE => return Ok(()),
        error_code::GROUP_ID_NOT_FOUND => "does not exist",
        error_code::NON_EMPTY_GROUP => "is not empty: it still has active members",
        error_code::GROUP_SUBSCRIBED_TO_TOPIC => {
            "is still subscribed to the topic: its active members consume it"
        }
        error_code::UNKNOWN_MEMBER_ID => {
            "has active members: offsets can be set from outside the group only while it is empty"
        }
        error_code::INVALID_GROUP_ID => "is not a valid group id",
        error_code::COORDINATOR_NOT_AVAILABLE => "has no coordinator available right now",
        error_code::NOT_COORDINATOR => "is not coordinated by this broker",
        error_code::COORDINATOR_LOAD_IN_PROGRESS => "is still being loaded by its coordinator",
        error_code::REBALANCE_IN_PROGRESS => "is rebalancing",
        error_code::ILLEGAL_GENERATION => "has another generation",
        30 => "is not authorized (GROUP_AUTHORIZATION_FAILED)",
        _ => return check(code, subject, broker_message),
    };
    Err(ClientError::Resource {
        resource: subject.to_string(),
        code,
        name: error_name(code),
        message: format!("{subject} {description}"),
    })
}

fn group_subject(group: &str) -> String {
    format!("group {group:?}")
}

pub(crate) fn unexpected(api: &str) -> ClientError {
    ClientError::UnexpectedResponse(format!("{api} request answered with another response type"))
}

pub(crate) fn host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Admin {
    /// Runs `attempt` against the group's coordinator, finding it again when it moved or was
    /// still loading.
    async fn with_coordinator<T, F, Fut>(&self, group: &str, attempt: F) -> Result<T, ClientError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        self.retrying(Route::Group(group.to_string()), attempt)
            .await
    }

    // -----------------------------------------------------------------------------------------
    // groups

    /// All groups of the cluster (ListGroups on every broker), sorted by id; with `states`,
    /// only groups in one of those states (case-insensitive; needs ListGroups v4).
    pub async fn list_groups(&self, states: &[String]) -> Result<Vec<GroupListing>, ClientError> {
        let addrs = self.all_brokers().await?;
        let mut all: BTreeMap<String, GroupListing> = BTreeMap::new();
        for addr in &addrs {
            let (version, response) = self
                .send(Route::Address(addr.clone()), ApiKey::ListGroups, group_versions::LIST_GROUPS, |v| {
                    if !states.is_empty() && v < 4 {
                        return Err(ClientError::InvalidArgument(format!(
                            "the broker at {addr} cannot filter groups by state (ListGroups v{v}, v4 needed)"
                        )));
                    }
                    let mut req = ListGroupsRequest::default();
                    req.states_filter = states.iter().map(|s| str_bytes(s.as_str())).collect();
                    Ok(RequestKind::ListGroups(req))
                })
                .await?;
            let ResponseKind::ListGroups(r) = response else {
                return Err(unexpected("ListGroups"));
            };
            check(r.error_code, &format!("listing the groups on {addr}"), None)?;
            for g in r.groups {
                let listing = GroupListing {
                    group_id: g.group_id.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state: if version >= 4 {
                        g.group_state.to_string()
                    } else {
                        String::new()
                    },
                    group_type: if version >= 5 {
                        g.group_type.to_string()
                    } else {
                        String::new()
                    },
                };
                all.insert(listing.group_id.clone(), listing);
            }
        }
        Ok(all.into_values().collect())
    }

    /// Describes a group: state, protocol and members with their assignments. A group of the
    /// consumer protocol (KIP-848) is described with ConsumerGroupDescribe, as Kafka's admin
    /// client does; others with DescribeGroups.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, ClientError> {
        if let Some(d) = self.describe_consumer_group(group).await? {
            return Ok(d);
        }
        self.with_coordinator(group, |addr| async move {
            let (_, response) = self
                .request(
                    &addr,
                    ApiKey::DescribeGroups,
                    group_versions::DESCRIBE_GROUPS,
                    |_| {
                        let mut req = DescribeGroupsRequest::default();
                        req.groups = vec![GroupId(str_bytes(group))];
                        Ok(RequestKind::DescribeGroups(req))
                    },
                )
                .await?;
            let ResponseKind::DescribeGroups(r) = response else {
                return Err(unexpected("DescribeGroups"));
            };
            let g = r
                .groups
                .into_iter()
                .find(|g| g.group_id.as_str() == group)
                .ok_or_else(|| {
                    ClientError::UnexpectedResponse(format!(
                        "DescribeGroups has no answer for {}",
                        group_subject(group)
                    ))
                })?;
            group_check(
                g.error_code,
                &group_subject(group),
                g.error_message.as_deref(),
            )?;
            let consumer = g.protocol_type.as_str() == "consumer";
            let mut members = Vec::with_capacity(g.members.len());
            for m in g.members {
                let assignment = if consumer {
                    decode_assignment(&m.member_assignment)?
                } else {
                    Vec::new()
                };
                members.push(GroupMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment,
                    member_epoch: None,
                    target_assignment: Vec::new(),
                });
            }
            members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
            Ok(GroupDescription {
                group_id: group.to_string(),
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
                protocol: g.protocol_data.to_string(),
                members,
                coordinator: addr,
                group_type: "classic".into(),
                epochs: None,
            })
        })
        .await
    }

    /// ConsumerGroupDescribe of one group; None when the group is not a consumer protocol
    /// group or the coordinator does not know the API.
    async fn describe_consumer_group(
        &self,
        group: &str,
    ) -> Result<Option<GroupDescription>, ClientError> {
        self.with_coordinator(group, |addr| async move {
            let sent = self
                .request(
                    &addr,
                    ApiKey::ConsumerGroupDescribe,
                    group_versions::CONSUMER_GROUP_DESCRIBE,
                    |_| {
                        let mut req = ConsumerGroupDescribeRequest::default();
                        req.group_ids = vec![GroupId(str_bytes(group))];
                        Ok(RequestKind::ConsumerGroupDescribe(req))
                    },
                )
                .await;
            let response = match sent {
                Ok((_, r)) => r,
                Err(ClientError::UnsupportedVersion { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let ResponseKind::ConsumerGroupDescribe(r) = response else {
                return Err(unexpected("ConsumerGroupDescribe"));
            };
            let Some(g) = r.groups.into_iter().find(|g| g.group_id.as_str() == group) else {
                return Ok(None);
            };
            if matches!(
                g.error_code,
                error_code::GROUP_ID_NOT_FOUND | error_code::UNSUPPORTED_VERSION
            ) {
                return Ok(None);
            }
            group_check(
                g.error_code,
                &group_subject(group),
                g.error_message.as_deref(),
            )?;
            let parts = |a: &consumer_group_describe_response::Assignment| {
                let mut v: Vec<(String, Vec<i32>)> = a
                    .topic_partitions
                    .iter()
                    .map(|tp| {
                        let mut ps = tp.partitions.clone();
                        ps.sort_unstable();
                        (tp.topic_name.to_string(), ps)
                    })
                    .collect();
                v.sort();
                v
            };
            let mut members: Vec<GroupMember> = g
                .members
                .iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.instance_id.as_ref().map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: parts(&m.assignment),
                    member_epoch: Some(m.member_epoch),
                    target_assignment: parts(&m.target_assignment),
                })
                .collect();
            members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
            Ok(Some(GroupDescription {
                group_id: group.to_string(),
                state: g.group_state.to_string(),
                protocol_type: "consumer".into(),
                protocol: g.assignor_name.to_string(),
                members,
                coordinator: addr,
                group_type: "consumer".into(),
                epochs: Some((g.group_epoch, g.assignment_epoch)),
            }))
        })
        .await
    }

    /// The committed offsets of a group: of every partition it committed with `None`, else of
    /// the given topics and partitions. Partitions without a commit are left out.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        partitions: Option<&[(String, Vec<i32>)]>,
    ) -> Result<CommittedOffsets, ClientError> {
        self.with_coordinator(group, |addr| async move {
            let (version, response) = self
                .request(
                    &addr,
                    ApiKey::OffsetFetch,
                    group_versions::OFFSET_FETCH,
                    |v| {
                        let mut req = OffsetFetchRequest::default();
                        if v >= 8 {
                            use strom_protocol::messages::offset_fetch_request::OffsetFetchRequestTopics;
                            let mut g = OffsetFetchRequestGroup::default();
                            g.group_id = GroupId(str_bytes(group));
                            g.topics = partitions.map(|ps| {
                                ps.iter()
                                    .map(|(t, p)| {
                                        let mut rt = OffsetFetchRequestTopics::default();
                                        rt.name = TopicName(str_bytes(t.as_str()));
                                        rt.partition_indexes = p.clone();
                                        rt
                                    })
                                    .collect()
                            });
                            req.groups = vec![g];
                        } else {
                            use strom_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
                            req.group_id = GroupId(str_bytes(group));
                            req.topics = partitions.map(|ps| {
                                ps.iter()
                                    .map(|(t, p)| {
                                        let mut rt = OffsetFetchRequestTopic::default();
                                        rt.name = TopicName(str_bytes(t.as_str()));
                                        rt.partition_indexes = p.clone();
                                        rt
                                    })
                                    .collect()
                            });
                        }
                        Ok(RequestKind::OffsetFetch(req))
                    },
                )
                .await?;
            let ResponseKind::OffsetFetch(r) = response else {
                return Err(unexpected("OffsetFetch"));
            };
            let subject = group_subject(group);
            let mut out = CommittedOffsets::new();
            if version >= 8 {
                let g = r
                    .groups
                    .into_iter()
                    .find(|g| g.group_id.as_str() == group)
                    .ok_or_else(|| {
                        ClientError::UnexpectedResponse(format!(
                            "OffsetFetch has no answer for {subject}"
                        ))
                    })?;
                group_check(g.error_code, &subject, None)?;
                for t in g.topics {
                    for p in t.partitions {
                        check(
                            p.error_code,
                            &format!("partition {} of topic {:?} in {subject}", p.partition_index, t.name.as_str()),
                            None,
                        )?;
                        if p.committed_offset >= 0 {
                            out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
                        }
                    }
                }
            } else {
                group_check(r.error_code, &subject, None)?;
                for t in r.topics {
                    for p in t.partitions {
                        check(
                            p.error_code,
                            &format!("partition {} of topic {:?} in {subject}", p.partition_index, t.name.as_str()),
                            None,
                        )?;
                        if p.committed_offset >= 0 {
                            out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Commits offsets for a group from outside any generation (generation -1, no member id),
    /// which the coordinator accepts only while the group has no members.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &CommittedOffsets,
    ) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
        for ((t, p), o) in offsets {
            by_topic.entry(t.as_str()).or_default().push((*p, *o));
        }
        self.with_coordinator(group, |addr| {
            let by_topic = &by_topic;
            async move {
                let (_, response) = self
                    .request(
                        &addr,
                        ApiKey::OffsetCommit,
                        group_versions::OFFSET_COMMIT,
                        |_| {
                            let mut req = OffsetCommitRequest::default();
                            req.group_id = GroupId(str_bytes(group));
                            req.generation_id_or_member_epoch = -1;
                            req.member_id = str_bytes("");
                            req.retention_time_ms = -1;
                            req.topics = by_topic
                                .iter()
                                .map(|(t, ps)| {
                                    let mut rt = OffsetCommitRequestTopic::default();
                                    rt.name = TopicName(str_bytes(*t));
                                    rt.partitions = ps
                                        .iter()
                                        .map(|(p, o)| {
                                            let mut rp = OffsetCommitRequestPartition::default();
                                            rp.partition_index = *p;
                                            rp.committed_offset = *o;
                                            rp.committed_leader_epoch = -1;
                                            rp.committed_metadata = Some(str_bytes(""));
                                            rp
                                        })
                                        .collect();
                                    rt
                                })
                                .collect();
                            Ok(RequestKind::OffsetCommit(req))
                        },
                    )
                    .await?;
                let ResponseKind::OffsetCommit(r) = response else {
                    return Err(unexpected("OffsetCommit"));
                };
                let subject = group_subject(group);
                // A coordinator error shows on every partition: report it once, as such, so
                // that it is retried.
                for t in &r.topics {
                    for p in &t.partitions {
                        if p.error_code == error_code::UNKNOWN_MEMBER_ID
                            || is_coordinator_error(p.error_code)
                        {
                            return group_check(p.error_code, &subject, None);
                        }
                        check(
                            p.error_code,
                            &format!(
                                "committing partition {} of topic {:?} for {subject}",
                                p.partition_index,
                                t.name.as_str()
                            ),
                            None,
                        )?;
                    }
                }
                Ok(())
            }
        })
        .await
    }

    /// Deletes a group and its offsets; fails with GROUP_ID_NOT_FOUND or NON_EMPTY_GROUP.
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        self.with_coordinator(group, |addr| async move {
            let (_, response) = self
                .request(
                    &addr,
                    ApiKey::DeleteGroups,
                    group_versions::DELETE_GROUPS,
                    |_| {
                        let mut req = DeleteGroupsRequest::default();
                        req.groups_names = vec![GroupId(str_bytes(group))];
                        Ok(RequestKind::DeleteGroups(req))
                    },
                )
                .await?;
            let ResponseKind::DeleteGroups(r) = response else {
                return Err(unexpected("DeleteGroups"));
            };
            let g = r
                .results
                .iter()
                .find(|g| g.group_id.as_str() == group)
                .ok_or_else(|| {
                    ClientError::UnexpectedResponse(format!(
                        "DeleteGroups has no answer for {}",
                        group_subject(group)
                    ))
                })?;
            group_check(g.error_code, &group_subject(group), None)
        })
        .await
    }

    /// Deletes the committed offsets of the given partitions of a topic; fails with
    /// GROUP_ID_NOT_FOUND, or GROUP_SUBSCRIBED_TO_TOPIC while members consume the topic.
    pub async fn delete_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<(), ClientError> {
        self.with_coordinator(group, |addr| async move {
            let (_, response) = self
                .request(
                    &addr,
                    ApiKey::OffsetDelete,
                    group_versions::OFFSET_DELETE,
                    |_| {
                        let mut t = OffsetDeleteRequestTopic::default();
                        t.name = TopicName(str_bytes(topic));
                        t.partitions = partitions
                            .iter()
                            .map(|p| {
                                let mut rp = OffsetDeleteRequestPartition::default();
                                rp.partition_index = *p;
                                rp
                            })
                            .collect();
                        let mut req = OffsetDeleteRequest::default();
                        req.group_id = GroupId(str_bytes(group));
                        req.topics = vec![t];
                        Ok(RequestKind::OffsetDelete(req))
                    },
                )
                .await?;
            let ResponseKind::OffsetDelete(r) = response else {
                return Err(unexpected("OffsetDelete"));
            };
            let subject = group_subject(group);
            group_check(r.error_code, &subject, None)?;
            for t in &r.topics {
                for p in &t.partitions {
                    group_check(p.error_code, &subject, None).map_err(|e| match e {
                        ClientError::Resource {
                            resource,
                            code,
                            name,
                            ..
                        } if code == error_code::GROUP_SUBSCRIBED_TO_TOPIC => {
                            ClientError::Resource {
                                resource,
                                code,
                                name,
                                message: format!(
                                    "{subject} still has active members subscribed to topic {:?}; stop them first",
                                    t.name.as_str()
                                ),
                            }
                        }
                        other => other,
                    })?;
                }
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_protocol::Encodable;
    use strom_protocol::messages::consumer_protocol_assignment::TopicPartition;

    fn encode(version: i16, a: &ConsumerProtocolAssignment) -> Vec<u8> {
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&version.to_be_bytes());
        a.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    #[test]
    fn assignments_decode_at_their_version() {
        let mut a = ConsumerProtocolAssignment::default();
        let mut t1 = TopicPartition::default();
        t1.topic = TopicName(str_bytes("orders"));
        t1.partitions = vec![2, 0];
        let mut t2 = TopicPartition::default();
        t2.topic = TopicName(str_bytes("audit"));
        t2.partitions = vec![1];
        a.assigned_partitions = vec![t1, t2];
        for version in 0..=3 {
            let got = decode_assignment(&encode(version, &a)).unwrap();
            assert_eq!(
                got,
                vec![
                    ("audit".to_string(), vec![1]),
                    ("orders".to_string(), vec![0, 2])
                ],
                "v{version}"
            );
        }
        assert!(decode_assignment(&[]).unwrap().is_empty());
        assert!(decode_assignment(&[0]).is_err());
        assert!(decode_assignment(&[0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn inactive_means_no_members_and_empty_or_dead() {
        let mut d = GroupDescription {
            group_id: "g".into(),
            state: "Empty".into(),
            protocol_type: "consumer".into(),
            protocol: String::new(),
            members: Vec::new(),
            coordinator: "localhost:9092".into(),
            group_type: "classic".into(),
            epochs: None,
        };
        assert!(d.is_inactive());
        d.state = "Dead".into();
        assert!(d.is_inactive());
        d.state = "Stable".into();
        assert!(!d.is_inactive());
    }

    #[test]
    fn coordinator_errors_are_retried() {
        assert!(is_coordinator_error(error_code::NOT_COORDINATOR));
        assert!(is_coordinator_error(error_code::COORDINATOR_NOT_AVAILABLE));
        assert!(!is_coordinator_error(error_code::NON_EMPTY_GROUP));
        assert_eq!(host_port("::1", 9092), "[::1]:9092");
    }
}
