//! Talking to a group's coordinator: finding it, committing and fetching offsets, and the
//! member's side of both group protocols (the classic JoinGroup/SyncGroup/Heartbeat and the
//! consumer protocol's ConsumerGroupHeartbeat).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::Notify;

use strom_protocol::messages::consumer_group_heartbeat_request::{
    ConsumerGroupHeartbeatRequest, TopicPartitions as HeartbeatTopicPartitions,
};
use strom_protocol::messages::consumer_group_heartbeat_response::TopicPartitions as AssignedTopicPartitions;
use strom_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignmentTopicPartition;
use strom_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopicPartition;
use strom_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use strom_protocol::messages::heartbeat_request::HeartbeatRequest;
use strom_protocol::messages::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
use strom_protocol::messages::join_group_response::JoinGroupResponse;
use strom_protocol::messages::leave_group_request::{LeaveGroupRequest, MemberIdentity};
use strom_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use strom_protocol::messages::offset_fetch_request::{
    OffsetFetchRequest, OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use strom_protocol::messages::sync_group_request::{SyncGroupRequest, SyncGroupRequestAssignment};
use strom_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, TopicName,
};
use strom_protocol::{
    ApiKey, Decodable, Encodable, RequestKind, ResponseKind, error_code, str_bytes,
};

use super::TopicPartition;
use super::assignors::MemberSubscription;
use crate::connection::{Connection, ConnectionConfig};
use crate::error::ClientError;

const FIND_COORDINATOR_VERSION: i16 = 4;
// The classic group APIs stop short of their flexible versions, as librdkafka does: some
// brokers that advertise the flexible versions do not parse them (librdkafka's mock cluster
// reads their arrays with the old encoding), and nothing this consumer needs came later.
const JOIN_GROUP_VERSION: i16 = 5;
const SYNC_GROUP_VERSION: i16 = 3;
const HEARTBEAT_VERSION: i16 = 3;
const LEAVE_GROUP_VERSION: i16 = 3;
const OFFSET_COMMIT_VERSION: i16 = 9;
const OFFSET_FETCH_VERSION: i16 = 8;
const CONSUMER_HEARTBEAT_VERSION: i16 = 1;
/// The subscription and assignment versions members exchange.
const SUBSCRIPTION_VERSION: i16 = 2;
const ASSIGNMENT_VERSION: i16 = 1;

pub(crate) fn is_coordinator_error(code: i16) -> bool {
    matches!(
        code,
        error_code::NOT_COORDINATOR
            | error_code::COORDINATOR_NOT_AVAILABLE
            | error_code::COORDINATOR_LOAD_IN_PROGRESS
    )
}

fn group_error(code: i16, group: &str, message: Option<&str>) -> ClientError {
    ClientError::kafka(code, &format!("group {group:?}"), message)
}

fn unexpected(api: &str) -> ClientError {
    ClientError::UnexpectedResponse(format!("{api} answered with another response"))
}

/// Whether an error means the coordinator connection or address must be looked up again.
fn is_transport(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Connect { .. } | ClientError::Io(_) | ClientError::Timeout { .. }
    ) || e.kafka_code().is_some_and(is_coordinator_error)
}

/// A connection to a group's coordinator, found through the bootstrap servers and found again
/// when it moves.
pub(crate) struct Coordinator {
    group: String,
    bootstrap: Vec<String>,
    config: ConnectionConfig,
    conn: Option<Connection>,
}

impl Coordinator {
    pub fn new(group: &str, bootstrap: Vec<String>, config: ConnectionConfig) -> Coordinator {
        Coordinator {
            group: group.to_string(),
            bootstrap,
            config,
            conn: None,
        }
    }

    /// Forgets the coordinator (it moved or its connection broke).
    pub fn reset(&mut self) {
        self.conn = None;
    }

    async fn find(&self) -> Result<String, ClientError> {
        let mut last = None;
        for addr in &self.bootstrap {
            let mut c = match Connection::connect(addr, self.config.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let version = c.version(ApiKey::FindCoordinator, FIND_COORDINATOR_VERSION)?;
            let mut req = FindCoordinatorRequest::default();
            req.key_type = 0;
            if version >= 4 {
                req.coordinator_keys = vec![str_bytes(self.group.as_str())];
            } else {
                req.key = str_bytes(self.group.as_str());
            }
            let resp = match c
                .send(
                    ApiKey::FindCoordinator,
                    version,
                    RequestKind::FindCoordinator(req),
                )
                .await
            {
                Ok(ResponseKind::FindCoordinator(r)) => r,
                Ok(_) => return Err(unexpected("FindCoordinator")),
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let (code, host, port, msg) = if version >= 4 {
                let Some(k) = resp.coordinators.first() else {
                    return Err(unexpected("FindCoordinator"));
                };
                (
                    k.error_code,
                    k.host.to_string(),
                    k.port,
                    k.error_message.clone(),
                )
            } else {
                (
                    resp.error_code,
                    resp.host.to_string(),
                    resp.port,
                    resp.error_message.clone(),
                )
            };
            if code != error_code::NONE {
                return Err(group_error(code, &self.group, msg.as_deref()));
            }
            return Ok(crate::groups::host_port(&host, port));
        }
        Err(last.unwrap_or_else(|| ClientError::InvalidArgument("no bootstrap server".into())))
    }

    /// The open coordinator connection, finding and connecting first when needed.
    pub async fn connection(&mut self) -> Result<&mut Connection, ClientError> {
        if self.conn.as_ref().is_none_or(Connection::is_broken) {
            let addr = self.find().await?;
            self.conn = Some(Connection::connect(&addr, self.config.clone()).await?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| ClientError::UnexpectedResponse("no coordinator connection".into()))
    }

    /// Whether the coordinator offers ConsumerGroupHeartbeat.
    pub async fn offers_consumer_protocol(&mut self) -> Result<bool, ClientError> {
        let c = self.connection().await?;
        Ok(c.broker_range(ApiKey::ConsumerGroupHeartbeat).is_some())
    }

    /// Sends one request to the coordinator; transport and coordinator errors forget it, so
    /// the next call finds it again.
    pub async fn send(
        &mut self,
        api: ApiKey,
        max_version: i16,
        timeout: Duration,
        build: impl FnOnce(i16) -> RequestKind,
    ) -> Result<(i16, ResponseKind), ClientError> {
        let result = async {
            let c = self.connection().await?;
            let v = c.version(api, max_version)?;
            c.send_with_timeout(api, v, build(v), timeout)
                .await
                .map(|r| (v, r))
        }
        .await;
        if let Err(e) = &result
            && is_transport(e)
        {
            self.reset();
        }
        result
    }

    /// Commits offsets (the next offset to read, per partition) as a member of
    /// `generation` (the member epoch under the consumer protocol), or from outside the group
    /// with generation -1 and no member id.
    pub async fn commit(
        &mut self,
        member: &MemberIdentityInfo,
        offsets: &BTreeMap<TopicPartition, i64>,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let group = self.group.clone();
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, &o) in offsets {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = tp.partition;
            p.committed_offset = o;
            p.committed_leader_epoch = -1;
            p.committed_metadata = Some(str_bytes(""));
            topics.entry(tp.topic.as_str()).or_default().push(p);
        }
        let (_, resp) = self
            .send(ApiKey::OffsetCommit, OFFSET_COMMIT_VERSION, timeout, |_| {
                let mut req = OffsetCommitRequest::default();
                req.group_id = GroupId(str_bytes(group.as_str()));
                req.generation_id_or_member_epoch = member.generation;
                req.member_id = str_bytes(member.member_id.as_str());
                req.group_instance_id = member.instance_id.as_deref().map(str_bytes);
                req.retention_time_ms = -1;
                req.topics = topics
                    .into_iter()
                    .map(|(t, ps)| {
                        let mut rt = OffsetCommitRequestTopic::default();
                        rt.name = TopicName(str_bytes(t));
                        rt.partitions = ps;
                        rt
                    })
                    .collect();
                RequestKind::OffsetCommit(req)
            })
            .await?;
        let ResponseKind::OffsetCommit(r) = resp else {
            return Err(unexpected("OffsetCommit"));
        };
        for t in &r.topics {
            for p in &t.partitions {
                if p.error_code != error_code::NONE {
                    if is_coordinator_error(p.error_code) {
                        self.reset();
                    }
                    return Err(ClientError::kafka(
                        p.error_code,
                        &format!(
                            "committing partition {} of topic {:?} for group {:?}",
                            p.partition_index,
                            t.name.as_str(),
                            self.group
                        ),
                        None,
                    ));
                }
            }
        }
        Ok(())
    }

    /// The committed offsets of `partitions` (those without a commit are left out).
    pub async fn fetch_committed(
        &mut self,
        partitions: &[TopicPartition],
        require_stable: bool,
        timeout: Duration,
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let group = self.group.clone();
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic
                .entry(tp.topic.clone())
                .or_default()
                .push(tp.partition);
        }
        let (version, resp) = self
            .send(ApiKey::OffsetFetch, OFFSET_FETCH_VERSION, timeout, |v| {
                let mut req = OffsetFetchRequest::default();
                req.require_stable = require_stable;
                if v >= 8 {
                    let mut g = OffsetFetchRequestGroup::default();
                    g.group_id = GroupId(str_bytes(group.as_str()));
                    g.topics = Some(
                        by_topic
                            .iter()
                            .map(|(t, ps)| {
                                let mut rt = OffsetFetchRequestTopics::default();
                                rt.name = TopicName(str_bytes(t.as_str()));
                                rt.partition_indexes = ps.clone();
                                rt
                            })
                            .collect(),
                    );
                    req.groups = vec![g];
                } else {
                    req.group_id = GroupId(str_bytes(group.as_str()));
                    req.topics = Some(
                        by_topic
                            .iter()
                            .map(|(t, ps)| {
                                let mut rt = OffsetFetchRequestTopic::default();
                                rt.name = TopicName(str_bytes(t.as_str()));
                                rt.partition_indexes = ps.clone();
                                rt
                            })
                            .collect(),
                    );
                }
                RequestKind::OffsetFetch(req)
            })
            .await?;
        let ResponseKind::OffsetFetch(r) = resp else {
            return Err(unexpected("OffsetFetch"));
        };
        let mut out = BTreeMap::new();
        let mut take =
            |code: i16, topic: &str, partition: i32, offset: i64| -> Result<(), ClientError> {
                if code != error_code::NONE {
                    return Err(ClientError::kafka(
                        code,
                        &format!("committed offset of partition {partition} of topic {topic:?}"),
                        None,
                    ));
                }
                if offset >= 0 {
                    out.insert(TopicPartition::new(topic, partition), offset);
                }
                Ok(())
            };
        let group_code = if version >= 8 {
            let Some(g) = r.groups.first() else {
                return Err(unexpected("OffsetFetch"));
            };
            for t in &g.topics {
                for p in &t.partitions {
                    take(
                        p.error_code,
                        t.name.as_str(),
                        p.partition_index,
                        p.committed_offset,
                    )?;
                }
            }
            g.error_code
        } else {
            for t in &r.topics {
                for p in &t.partitions {
                    take(
                        p.error_code,
                        t.name.as_str(),
                        p.partition_index,
                        p.committed_offset,
                    )?;
                }
            }
            r.error_code
        };
        if group_code != error_code::NONE {
            if is_coordinator_error(group_code) {
                self.reset();
            }
            return Err(group_error(group_code, &self.group, None));
        }
        Ok(out)
    }
}

/// Who commits: member id, generation (or member epoch) and instance id.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberIdentityInfo {
    pub member_id: String,
    pub generation: i32,
    pub instance_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// membership state shared with the heartbeat task

/// What the heartbeat task and the application's polls share about the membership.
#[derive(Debug)]
pub(crate) struct MemberState {
    pub member_id: String,
    /// Generation (classic) or member epoch (consumer protocol); -1 when not a member.
    pub generation: i32,
    /// A rebalance is needed: join again (classic).
    pub rejoin: bool,
    /// The membership ended without a chance to give partitions up: they are lost.
    pub lost: bool,
    /// A join is being run by the application thread: no heartbeats meanwhile (classic).
    pub joining: bool,
    /// An error that ends the membership for good (e.g. a fenced static member).
    pub fatal: Option<String>,
    pub last_poll: Instant,
    pub stop: bool,
    // Consumer protocol only:
    /// The latest assignment the coordinator sent that is not reconciled yet.
    pub target: Option<Vec<AssignedTopicPartitions>>,
    /// The partitions this member holds (and reports in each heartbeat).
    pub owned: Vec<AssignedTopicPartitions>,
    /// The topics subscribed to (sent in every heartbeat).
    pub topics: Vec<String>,
    pub heartbeat_interval: Duration,
}

impl MemberState {
    pub fn new(interval: Duration) -> MemberState {
        MemberState {
            member_id: String::new(),
            generation: -1,
            rejoin: true,
            lost: false,
            joining: false,
            fatal: None,
            last_poll: Instant::now(),
            stop: false,
            target: None,
            owned: Vec::new(),
            topics: Vec::new(),
            heartbeat_interval: interval,
        }
    }
}

pub(crate) type SharedMember = Arc<StdMutex<MemberState>>;

/// Locks the shared state; a panic elsewhere while holding it does not poison the member.
pub(crate) fn lock(m: &SharedMember) -> std::sync::MutexGuard<'_, MemberState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Settings of the membership.
#[derive(Debug, Clone)]
pub(crate) struct MemberSettings {
    pub group: String,
    pub instance_id: Option<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub request_timeout: Duration,
    pub retry_backoff: Duration,
    pub remote_assignor: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// classic protocol

/// A ConsumerProtocolSubscription, prefixed with its version as members exchange it.
pub(crate) fn encode_subscription(
    topics: &[String],
    owned: &[TopicPartition],
    generation: i32,
) -> Result<Bytes, ClientError> {
    let mut s = ConsumerProtocolSubscription::default();
    s.topics = topics.iter().map(|t| str_bytes(t.as_str())).collect();
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in owned {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .push(tp.partition);
    }
    s.owned_partitions = by_topic
        .into_iter()
        .map(|(t, ps)| {
            let mut o = OwnedTopicPartition::default();
            o.topic = TopicName(str_bytes(t));
            o.partitions = ps;
            o
        })
        .collect();
    s.generation_id = generation;
    let mut buf = BytesMut::new();
    buf.put_i16(SUBSCRIPTION_VERSION);
    s.encode(&mut buf, SUBSCRIPTION_VERSION)
        .map_err(|e| ClientError::UnexpectedResponse(format!("cannot encode subscription: {e}")))?;
    Ok(buf.freeze())
}

/// Reads a member's subscription from JoinGroup.
pub(crate) fn decode_subscription(
    member_id: &str,
    instance_id: Option<&str>,
    bytes: &[u8],
) -> Result<MemberSubscription, ClientError> {
    if bytes.len() < 2 {
        return Err(ClientError::UnexpectedResponse(format!(
            "member {member_id} sent a subscription of {} bytes",
            bytes.len()
        )));
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    if version < 0 {
        return Err(ClientError::UnexpectedResponse(format!(
            "member {member_id} sent subscription version {version}"
        )));
    }
    let mut buf = Bytes::copy_from_slice(&bytes[2..]);
    let s = ConsumerProtocolSubscription::decode(&mut buf, version.min(3)).map_err(|e| {
        ClientError::UnexpectedResponse(format!(
            "cannot decode the subscription of {member_id}: {e}"
        ))
    })?;
    Ok(MemberSubscription {
        member_id: member_id.to_string(),
        instance_id: instance_id.map(str::to_string),
        topics: s.topics.iter().map(|t| t.to_string()).collect(),
        owned: s
            .owned_partitions
            .iter()
            .flat_map(|o| {
                o.partitions
                    .iter()
                    .map(|&p| TopicPartition::new(o.topic.as_str(), p))
                    .collect::<Vec<_>>()
            })
            .collect(),
        generation: if version >= 2 { s.generation_id } else { -1 },
    })
}

pub(crate) fn encode_assignment(partitions: &[TopicPartition]) -> Result<Bytes, ClientError> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .push(tp.partition);
    }
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = by_topic
        .into_iter()
        .map(|(t, ps)| {
            let mut x = AssignmentTopicPartition::default();
            x.topic = TopicName(str_bytes(t));
            x.partitions = ps;
            x
        })
        .collect();
    let mut buf = BytesMut::new();
    buf.put_i16(ASSIGNMENT_VERSION);
    a.encode(&mut buf, ASSIGNMENT_VERSION)
        .map_err(|e| ClientError::UnexpectedResponse(format!("cannot encode assignment: {e}")))?;
    Ok(buf.freeze())
}

pub(crate) fn decode_assignment(bytes: &[u8]) -> Result<Vec<TopicPartition>, ClientError> {
    Ok(crate::groups::decode_assignment(bytes)?
        .into_iter()
        .flat_map(|(t, ps)| {
            ps.into_iter()
                .map(|p| TopicPartition::new(&t, p))
                .collect::<Vec<_>>()
        })
        .collect())
}

/// Sends JoinGroup until the coordinator accepts the member (a first join is answered with
/// MEMBER_ID_REQUIRED and the id to use).
pub(crate) async fn join_group(
    coord: &mut Coordinator,
    settings: &MemberSettings,
    member_id: &mut String,
    protocols: &[(&'static str, Bytes)],
) -> Result<JoinGroupResponse, ClientError> {
    for _ in 0..3 {
        let timeout = settings.rebalance_timeout + settings.request_timeout;
        let (_, resp) = coord
            .send(ApiKey::JoinGroup, JOIN_GROUP_VERSION, timeout, |_| {
                let mut req = JoinGroupRequest::default();
                req.group_id = GroupId(str_bytes(settings.group.as_str()));
                req.session_timeout_ms = settings.session_timeout.as_millis() as i32;
                req.rebalance_timeout_ms = settings.rebalance_timeout.as_millis() as i32;
                req.member_id = str_bytes(member_id.as_str());
                req.group_instance_id = settings.instance_id.as_deref().map(str_bytes);
                req.protocol_type = str_bytes("consumer");
                req.protocols = protocols
                    .iter()
                    .map(|(name, meta)| {
                        let mut p = JoinGroupRequestProtocol::default();
                        p.name = str_bytes(*name);
                        p.metadata = meta.clone();
                        p
                    })
                    .collect();
                RequestKind::JoinGroup(req)
            })
            .await?;
        let ResponseKind::JoinGroup(r) = resp else {
            return Err(unexpected("JoinGroup"));
        };
        match r.error_code {
            error_code::NONE => {
                *member_id = r.member_id.to_string();
                return Ok(r);
            }
            error_code::MEMBER_ID_REQUIRED => {
                *member_id = r.member_id.to_string();
            }
            code => {
                if code == error_code::UNKNOWN_MEMBER_ID {
                    member_id.clear();
                }
                if is_coordinator_error(code) {
                    coord.reset();
                }
                return Err(group_error(code, &settings.group, None));
            }
        }
    }
    Err(ClientError::UnexpectedResponse(
        "JoinGroup kept asking for a member id".into(),
    ))
}

pub(crate) async fn sync_group(
    coord: &mut Coordinator,
    settings: &MemberSettings,
    member_id: &str,
    generation: i32,
    protocol: &str,
    assignments: Vec<(String, Bytes)>,
) -> Result<Vec<TopicPartition>, ClientError> {
    let (_, resp) = coord
        .send(
            ApiKey::SyncGroup,
            SYNC_GROUP_VERSION,
            settings.rebalance_timeout + settings.request_timeout,
            |_| {
                let mut req = SyncGroupRequest::default();
                req.group_id = GroupId(str_bytes(settings.group.as_str()));
                req.generation_id = generation;
                req.member_id = str_bytes(member_id);
                req.group_instance_id = settings.instance_id.as_deref().map(str_bytes);
                req.protocol_type = Some(str_bytes("consumer"));
                req.protocol_name = Some(str_bytes(protocol));
                req.assignments = assignments
                    .into_iter()
                    .map(|(m, a)| {
                        let mut x = SyncGroupRequestAssignment::default();
                        x.member_id = str_bytes(m);
                        x.assignment = a;
                        x
                    })
                    .collect();
                RequestKind::SyncGroup(req)
            },
        )
        .await?;
    let ResponseKind::SyncGroup(r) = resp else {
        return Err(unexpected("SyncGroup"));
    };
    if r.error_code != error_code::NONE {
        if is_coordinator_error(r.error_code) {
            coord.reset();
        }
        return Err(group_error(r.error_code, &settings.group, None));
    }
    decode_assignment(&r.assignment)
}

/// Leaves the group (classic). Static members stay, as Kafka's consumer does: their
/// partitions wait for them until the session times out.
pub(crate) async fn leave_group(
    coord: &mut Coordinator,
    settings: &MemberSettings,
    member_id: &str,
) -> Result<(), ClientError> {
    if member_id.is_empty() || settings.instance_id.is_some() {
        return Ok(());
    }
    let (_, resp) = coord
        .send(
            ApiKey::LeaveGroup,
            LEAVE_GROUP_VERSION,
            settings.request_timeout,
            |v| {
                let mut req = LeaveGroupRequest::default();
                req.group_id = GroupId(str_bytes(settings.group.as_str()));
                if v >= 3 {
                    let mut m = MemberIdentity::default();
                    m.member_id = str_bytes(member_id);
                    m.reason = Some(str_bytes("the consumer is closing"));
                    req.members = vec![m];
                } else {
                    req.member_id = str_bytes(member_id);
                }
                RequestKind::LeaveGroup(req)
            },
        )
        .await?;
    let ResponseKind::LeaveGroup(r) = resp else {
        return Err(unexpected("LeaveGroup"));
    };
    if r.error_code != error_code::NONE && r.error_code != error_code::UNKNOWN_MEMBER_ID {
        return Err(group_error(r.error_code, &settings.group, None));
    }
    Ok(())
}

/// The classic protocol's heartbeat task: heartbeats every `heartbeat.interval.ms` while the
/// member is in a generation, flags a rebalance when the coordinator asks for one, and gives
/// the membership up when the application stops polling for longer than
/// `max.poll.interval.ms`.
pub(crate) async fn classic_heartbeats(
    mut coord: Coordinator,
    settings: MemberSettings,
    shared: SharedMember,
) {
    loop {
        tokio::time::sleep(settings.heartbeat_interval).await;
        let (member_id, generation, idle) = {
            let s = lock(&shared);
            if s.stop {
                return;
            }
            if s.joining || s.generation < 0 || s.fatal.is_some() {
                continue;
            }
            (s.member_id.clone(), s.generation, s.last_poll.elapsed())
        };
        if idle > settings.rebalance_timeout {
            tracing::warn!(group = %settings.group, idle_ms = idle.as_millis() as u64,
                "no poll within max.poll.interval.ms; leaving the group");
            let _ = leave_group(&mut coord, &settings, &member_id).await;
            let mut s = lock(&shared);
            s.lost = true;
            s.rejoin = true;
            s.generation = -1;
            if settings.instance_id.is_none() {
                s.member_id.clear();
            }
            continue;
        }
        let result = coord
            .send(
                ApiKey::Heartbeat,
                HEARTBEAT_VERSION,
                settings.request_timeout,
                |_| {
                    let mut req = HeartbeatRequest::default();
                    req.group_id = GroupId(str_bytes(settings.group.as_str()));
                    req.generation_id = generation;
                    req.member_id = str_bytes(member_id.as_str());
                    req.group_instance_id = settings.instance_id.as_deref().map(str_bytes);
                    RequestKind::Heartbeat(req)
                },
            )
            .await;
        let code = match result {
            Ok((_, ResponseKind::Heartbeat(r))) => r.error_code,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(group = %settings.group, error = %e, "heartbeat failed");
                tokio::time::sleep(settings.retry_backoff).await;
                continue;
            }
        };
        let mut s = lock(&shared);
        if s.generation != generation {
            continue; // a join happened meanwhile
        }
        match code {
            error_code::NONE => {}
            error_code::REBALANCE_IN_PROGRESS => s.rejoin = true,
            error_code::ILLEGAL_GENERATION => {
                s.rejoin = true;
                s.lost = true;
                s.generation = -1;
            }
            error_code::UNKNOWN_MEMBER_ID => {
                s.rejoin = true;
                s.lost = true;
                s.generation = -1;
                s.member_id.clear();
            }
            error_code::FENCED_INSTANCE_ID => {
                s.lost = true;
                s.generation = -1;
                s.fatal = Some(format!(
                    "static member {:?} of group {:?} was fenced by another member with the same group.instance.id",
                    settings.instance_id.as_deref().unwrap_or(""),
                    settings.group
                ));
            }
            c if is_coordinator_error(c) => coord.reset(),
            other => {
                tracing::warn!(group = %settings.group, code = other, "heartbeat error");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// consumer protocol (KIP-848)

/// A member id of the consumer protocol: generated by the member (22 URL-safe characters).
pub(crate) fn new_member_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    crate::client::TopicId(bytes).to_string()
}

/// Sends one ConsumerGroupHeartbeat with the member's state and applies the answer.
async fn consumer_heartbeat_once(
    coord: &mut Coordinator,
    settings: &MemberSettings,
    shared: &SharedMember,
    leave: bool,
) -> Result<(), ClientError> {
    let (member_id, epoch, topics, owned) = {
        let s = lock(shared);
        (
            s.member_id.clone(),
            s.generation.max(0),
            s.topics.clone(),
            s.owned.clone(),
        )
    };
    let leave_epoch = if settings.instance_id.is_some() {
        -2
    } else {
        -1
    };
    let (_, resp) = coord
        .send(
            ApiKey::ConsumerGroupHeartbeat,
            CONSUMER_HEARTBEAT_VERSION,
            settings.request_timeout,
            |_| {
                let mut req = ConsumerGroupHeartbeatRequest::default();
                req.group_id = GroupId(str_bytes(settings.group.as_str()));
                req.member_id = str_bytes(member_id.as_str());
                req.member_epoch = if leave { leave_epoch } else { epoch };
                req.instance_id = settings.instance_id.as_deref().map(str_bytes);
                req.rebalance_timeout_ms = settings.rebalance_timeout.as_millis() as i32;
                req.subscribed_topic_names = Some(
                    topics
                        .iter()
                        .map(|t| TopicName(str_bytes(t.as_str())))
                        .collect(),
                );
                req.server_assignor = settings.remote_assignor.as_deref().map(str_bytes);
                req.topic_partitions = Some(
                    owned
                        .into_iter()
                        .map(|o| {
                            let mut t = HeartbeatTopicPartitions::default();
                            t.topic_id = o.topic_id;
                            t.partitions = o.partitions;
                            t
                        })
                        .collect(),
                );
                RequestKind::ConsumerGroupHeartbeat(req)
            },
        )
        .await?;
    let ResponseKind::ConsumerGroupHeartbeat(r) = resp else {
        return Err(unexpected("ConsumerGroupHeartbeat"));
    };
    let mut s = lock(shared);
    match r.error_code {
        error_code::NONE => {
            if leave {
                s.generation = -1;
                return Ok(());
            }
            if let Some(id) = r.member_id.as_ref().filter(|m| !m.is_empty()) {
                s.member_id = id.to_string();
            }
            s.generation = r.member_epoch;
            if r.heartbeat_interval_ms > 0 {
                s.heartbeat_interval = Duration::from_millis(r.heartbeat_interval_ms as u64);
            }
            if let Some(a) = r.assignment {
                s.target = Some(a.topic_partitions);
            }
            Ok(())
        }
        error_code::FENCED_MEMBER_EPOCH | error_code::UNKNOWN_MEMBER_ID => {
            // Fenced: what we own is lost; join again at epoch 0 owning nothing.
            s.lost = true;
            s.generation = 0;
            s.owned.clear();
            s.target = None;
            Err(group_error(
                r.error_code,
                &settings.group,
                r.error_message.as_deref(),
            ))
        }
        code => {
            if is_coordinator_error(code) {
                coord.reset();
            }
            let e = group_error(code, &settings.group, r.error_message.as_deref());
            if matches!(
                code,
                error_code::GROUP_AUTHORIZATION_FAILED
                    | error_code::UNSUPPORTED_ASSIGNOR
                    | error_code::INVALID_REQUEST
                    | error_code::GROUP_MAX_SIZE_REACHED
                    | error_code::UNSUPPORTED_VERSION
            ) {
                s.fatal = Some(e.to_string());
            }
            Err(e)
        }
    }
}

/// The consumer protocol's heartbeat task: heartbeats at the interval the coordinator asks
/// for, and at once when the application has reconciled a new assignment (`wake`).
pub(crate) async fn consumer_heartbeats(
    mut coord: Coordinator,
    settings: MemberSettings,
    shared: SharedMember,
    wake: Arc<Notify>,
) {
    loop {
        let (stop, interval, idle) = {
            let s = lock(&shared);
            (s.stop, s.heartbeat_interval, s.last_poll.elapsed())
        };
        if stop {
            let member = lock(&shared).generation;
            if member > 0 {
                let _ = consumer_heartbeat_once(&mut coord, &settings, &shared, true).await;
            }
            return;
        }
        if lock(&shared).fatal.is_some() {
            return;
        }
        if idle > settings.rebalance_timeout {
            tracing::warn!(group = %settings.group, "no poll within max.poll.interval.ms; leaving the group");
            let _ = consumer_heartbeat_once(&mut coord, &settings, &shared, true).await;
            {
                let mut s = lock(&shared);
                s.lost = true;
                s.generation = 0;
                s.owned.clear();
                s.target = None;
            }
            // Wait for the application to poll again before rejoining.
            loop {
                let waiting = {
                    let s = lock(&shared);
                    s.last_poll.elapsed() > settings.rebalance_timeout && !s.stop
                };
                if !waiting {
                    break;
                }
                tokio::time::sleep(settings.retry_backoff.max(Duration::from_millis(50))).await;
            }
            continue;
        }
        let next = match consumer_heartbeat_once(&mut coord, &settings, &shared, false).await {
            Ok(()) => interval,
            Err(e) => {
                tracing::debug!(group = %settings.group, error = %e, "consumer group heartbeat failed");
                settings.retry_backoff.max(Duration::from_millis(50))
            }
        };
        let _ = tokio::time::timeout(next, wake.notified()).await;
    }
}

/// Topic ids of an assignment resolved to partitions; None when an id is unknown.
pub(crate) fn resolve_assignment(
    target: &[AssignedTopicPartitions],
    names: &std::collections::HashMap<[u8; 16], String>,
) -> Option<BTreeSet<TopicPartition>> {
    let mut out = BTreeSet::new();
    for t in target {
        let name = names.get(t.topic_id.as_bytes())?;
        for &p in &t.partitions {
            out.insert(TopicPartition::new(name, p));
        }
    }
    Some(out)
}
