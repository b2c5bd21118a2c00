//! DescribeQuorum: the metadata quorum (`__cluster_metadata` partition 0) as this node's
//! member sees it: leader, leader epoch (the Raft term), high watermark (the committed index)
//! and each voter's log end offset.
//!
//! Offsets are Raft log indexes made exclusive, as Kafka's are: the log end offset is the
//! index after the last entry, the high watermark the index after the last committed one. The
//! quorum leader knows the progress of every voter it has reached; another member knows its
//! own and reports -1 for the rest. A single node keeps its metadata in a local log and
//! answers as a quorum of one, itself the leader.

use std::sync::Arc;

use strom_metadata::quorum::QuorumStatus;
use strom_protocol::ApiKey;
use strom_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use strom_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::handlers::since;
use crate::request::RequestContext;
use crate::security::acl::Operation;

/// The topic of the metadata log.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// What DescribeQuorum reports, independent of the wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumView {
    /// -1 when no leader is known (an election).
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    /// (voter id, log end offset or -1 when unknown), by id.
    pub voters: Vec<(i32, i64)>,
    /// Whether the answering member is the leader (then every log end offset is known).
    pub from_leader: bool,
}

/// Index `i` as an exclusive offset (`None`: an empty log, offset 0).
fn exclusive(index: Option<u64>) -> i64 {
    index.map_or(0, |i| i as i64 + 1)
}

/// The view of member `me` from its quorum status.
pub fn view_of(me: u64, status: &QuorumStatus) -> QuorumView {
    let from_leader = status.leader == Some(me);
    let mut voters: Vec<(i32, i64)> = status
        .voters
        .iter()
        .map(|&id| {
            let leo = if id == me {
                exclusive(status.last_log_index)
            } else if from_leader {
                // Nothing matched yet: a follower the leader has not reached.
                match status.replication.get(&id) {
                    Some(Some(matched)) => *matched as i64 + 1,
                    _ => -1,
                }
            } else {
                -1
            };
            (id as i32, leo)
        })
        .collect();
    voters.sort();
    QuorumView {
        leader_id: status.leader.map_or(-1, |l| l as i32),
        leader_epoch: status.term.min(i32::MAX as u64) as i32,
        high_watermark: exclusive(status.committed),
        voters,
        from_leader,
    }
}

/// The view of a single node: a quorum of one with `records` metadata records.
pub fn single_node_view(node_id: i32, records: u64) -> QuorumView {
    QuorumView {
        leader_id: node_id,
        // A local log has no elections; its leader holds the first epoch.
        leader_epoch: 1,
        high_watermark: records as i64,
        voters: vec![(node_id, records as i64)],
        from_leader: true,
    }
}

fn error(code: i16, message: &str, version: i16) -> DescribeQuorumResponse {
    DescribeQuorumResponse::default()
        .with_error_code(code)
        .with_error_message(since(version, 2, Some(str_bytes(message.to_string()))))
}

/// Whether the request names exactly the metadata partition, as a quorum of one log expects.
fn names_metadata_partition(req: &DescribeQuorumRequest) -> bool {
    matches!(req.topics.as_slice(), [t] if t.topic_name.0.as_str() == METADATA_TOPIC
        && matches!(t.partitions.as_slice(), [p] if p.partition_index == 0))
}

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let v = ctx.api_version;
    if !broker.authorize_cluster(ctx, Operation::Describe) {
        return error(
            ec::CLUSTER_AUTHORIZATION_FAILED,
            "DESCRIBE on the cluster is required",
            v,
        );
    }
    if !names_metadata_partition(&req) {
        return error(
            ec::INVALID_REQUEST,
            "DescribeQuorum names one topic, __cluster_metadata, with one partition, 0",
            v,
        );
    }
    let view = match &broker.quorum {
        Some(q) => view_of(q.id, &q.status()),
        None => single_node_view(broker.node_id, broker.image().offset),
    };
    let now = crate::now_ms();
    let voters = view
        .voters
        .iter()
        .map(|&(id, leo)| {
            let is_leader = id == view.leader_id && view.from_leader;
            ReplicaState::default()
                .with_replica_id(BrokerId(id))
                .with_log_end_offset(leo)
                // The leader is caught up by definition; fetch times are not tracked (-1).
                .with_last_fetch_timestamp(-1)
                .with_last_caught_up_timestamp(since(v, 1, if is_leader { now } else { -1 }))
        })
        .collect();
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(view.leader_id))
        .with_leader_epoch(view.leader_epoch)
        .with_high_watermark(view.high_watermark)
        .with_current_voters(voters)
        .with_observers(Vec::new());
    let mut response = DescribeQuorumResponse::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(str_bytes(METADATA_TOPIC.to_string())))
            .with_partitions(vec![partition]),
    ]);
    if v >= 2 {
        response = response.with_nodes(voter_nodes(broker, ctx));
    }
    response
}

/// The voters' quorum addresses (v2 `nodes`), from `controller.quorum.voters`, under the
/// listener name CONTROLLER (quorum addresses have no name of their own); a single node lists
/// the listener the client connected to.
fn voter_nodes(broker: &Broker, ctx: &RequestContext) -> Vec<Node> {
    let voters = broker.config.quorum_voters().unwrap_or_default();
    if voters.is_empty() {
        let name = ctx.session.listener.name.clone();
        let (host, port) = broker.endpoint(&name);
        return vec![
            Node::default()
                .with_node_id(BrokerId(broker.node_id))
                .with_listeners(vec![
                    Listener::default()
                        .with_name(str_bytes(name))
                        .with_host(str_bytes(host))
                        .with_port(port),
                ]),
        ];
    }
    voters
        .into_iter()
        .map(|(id, addr)| {
            let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "0"));
            Node::default()
                .with_node_id(BrokerId(id))
                .with_listeners(vec![
                    Listener::default()
                        .with_name(str_bytes("CONTROLLER".to_string()))
                        .with_host(str_bytes(
                            host.trim_start_matches('[')
                                .trim_end_matches(']')
                                .to_string(),
                        ))
                        .with_port(port.parse().unwrap_or(0)),
                ])
        })
        .collect()
}

/// The DescribeQuorum API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DescribeQuorum;

impl Api for DescribeQuorum {
    const KEY: ApiKey = ApiKey::DescribeQuorum;
    const VERSIONS: (i16, i16) = (0, 2);
    type Request = DescribeQuorumRequest;
    type Response = DescribeQuorumResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn status(leader: Option<u64>, replication: &[(u64, Option<u64>)]) -> QuorumStatus {
        QuorumStatus {
            leader,
            term: 7,
            last_log_index: Some(41),
            committed: Some(40),
            voters: vec![3, 1, 2],
            replication: replication.iter().copied().collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn the_leader_reports_every_voters_progress() {
        let v = view_of(
            1,
            &status(Some(1), &[(1, Some(41)), (2, Some(39)), (3, None)]),
        );
        assert_eq!(v.leader_id, 1);
        assert_eq!(v.leader_epoch, 7);
        assert_eq!(v.high_watermark, 41);
        // Its own end from its log; 2 matched index 39; 3 not reached yet.
        assert_eq!(v.voters, vec![(1, 42), (2, 40), (3, -1)]);
        assert!(v.from_leader);
    }

    #[test]
    fn a_follower_knows_only_its_own_log_end() {
        let v = view_of(2, &status(Some(1), &[]));
        assert_eq!(v.leader_id, 1);
        assert_eq!(v.voters, vec![(1, -1), (2, 42), (3, -1)]);
        assert!(!v.from_leader);
        let v = view_of(2, &status(None, &[]));
        assert_eq!(v.leader_id, -1);
    }

    #[test]
    fn a_single_node_is_a_quorum_of_one() {
        let v = single_node_view(1, 12);
        assert_eq!(v.voters, vec![(1, 12)]);
        assert_eq!((v.leader_id, v.high_watermark), (1, 12));
    }

    #[test]
    fn only_the_metadata_partition_is_described() {
        use strom_protocol::messages::describe_quorum_request as rq;
        let req = |topic: &str, parts: &[i32]| {
            DescribeQuorumRequest::default().with_topics(vec![
                rq::TopicData::default()
                    .with_topic_name(TopicName(str_bytes(topic.to_string())))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|p| rq::PartitionData::default().with_partition_index(*p))
                            .collect(),
                    ),
            ])
        };
        assert!(names_metadata_partition(&req(METADATA_TOPIC, &[0])));
        assert!(!names_metadata_partition(&req(METADATA_TOPIC, &[1])));
        assert!(!names_metadata_partition(&req("other", &[0])));
        assert!(!names_metadata_partition(&req(METADATA_TOPIC, &[0, 0])));
        assert!(!names_metadata_partition(&DescribeQuorumRequest::default()));
    }
}
