//! Authorization of requests whose whole answer depends on one resource (a group, a
//! transactional id, the cluster): checked here before dispatch, so the handlers stay about
//! their API. Checks per topic live in the handlers (Produce, Fetch, Metadata, ...).

use strom_protocol::messages::*;
use strom_protocol::{RequestKind, ResponseKind, error_code as ec};

use super::acl::{Operation, ResourceType};
use crate::broker::Broker;
use crate::registry::RequestContext;

/// The answer to a request the principal may not make, or None to run its handler.
pub fn gate(broker: &Broker, ctx: &RequestContext, body: &RequestKind) -> Option<ResponseKind> {
    if !broker.authorizer.enabled {
        return None;
    }
    let v = ctx.api_version;
    let group = |op: Operation, id: &str| broker.authorize(ctx, op, ResourceType::Group, id);
    let txn = |id: &str| broker.authorize(ctx, Operation::Write, ResourceType::TransactionalId, id);
    const GROUP_DENIED: i16 = ec::GROUP_AUTHORIZATION_FAILED;
    const TXN_DENIED: i16 = ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    match body {
        RequestKind::JoinGroup(r) if !group(Operation::Read, &r.group_id) => {
            Some(ResponseKind::JoinGroup(
                JoinGroupResponse::default()
                    .with_error_code(GROUP_DENIED)
                    .with_member_id(r.member_id.clone()),
            ))
        }
        RequestKind::SyncGroup(r) if !group(Operation::Read, &r.group_id) => Some(
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(GROUP_DENIED)),
        ),
        RequestKind::Heartbeat(r) if !group(Operation::Read, &r.group_id) => Some(
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(GROUP_DENIED)),
        ),
        RequestKind::LeaveGroup(r) if !group(Operation::Read, &r.group_id) => Some(
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(GROUP_DENIED)),
        ),
        RequestKind::ConsumerGroupHeartbeat(r) if !group(Operation::Read, &r.group_id) => {
            Some(ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::OffsetCommit(r) if !group(Operation::Read, &r.group_id) => Some(
            ResponseKind::OffsetCommit(crate::refusal::offset_commit(r, GROUP_DENIED)),
        ),
        RequestKind::OffsetFetch(r)
            if (2..8).contains(&v) && !group(Operation::Describe, &r.group_id) =>
        {
            Some(ResponseKind::OffsetFetch(
                OffsetFetchResponse::default().with_error_code(GROUP_DENIED),
            ))
        }
        RequestKind::InitProducerId(r) => {
            let allowed = match &r.transactional_id {
                Some(id) => txn(id),
                None => idempotent_write_allowed(broker, ctx),
            };
            let code = if r.transactional_id.is_some() {
                TXN_DENIED
            } else {
                ec::CLUSTER_AUTHORIZATION_FAILED
            };
            (!allowed).then(|| {
                ResponseKind::InitProducerId(
                    InitProducerIdResponse::default()
                        .with_error_code(code)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                )
            })
        }
        RequestKind::AddPartitionsToTxn(r) if v < 4 => {
            let txn_ok = txn(&r.v3_and_below_transactional_id);
            let denied_topics: Vec<bool> = r
                .v3_and_below_topics
                .iter()
                .map(|t| !broker.authorize_topic(ctx, Operation::Write, &t.name))
                .collect();
            if txn_ok && !denied_topics.iter().any(|d| *d) {
                return None;
            }
            let results = crate::refusal::add_partitions_results(&r.v3_and_below_topics, |i, _| {
                if !txn_ok {
                    TXN_DENIED
                } else if denied_topics[i] {
                    ec::TOPIC_AUTHORIZATION_FAILED
                } else {
                    ec::OPERATION_NOT_ATTEMPTED
                }
            });
            Some(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
            ))
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let code = if !txn(&r.transactional_id) {
                TXN_DENIED
            } else if !group(Operation::Read, &r.group_id) {
                GROUP_DENIED
            } else {
                return None;
            };
            Some(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(code),
            ))
        }
        RequestKind::EndTxn(r) if !txn(&r.transactional_id) => Some(ResponseKind::EndTxn(
            EndTxnResponse::default()
                .with_error_code(TXN_DENIED)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )),
        RequestKind::TxnOffsetCommit(r) => {
            let code = if !txn(&r.transactional_id) {
                TXN_DENIED
            } else if !group(Operation::Read, &r.group_id) {
                GROUP_DENIED
            } else {
                return None;
            };
            Some(ResponseKind::TxnOffsetCommit(
                crate::refusal::txn_offset_commit(r, code),
            ))
        }
        RequestKind::WriteTxnMarkers(r)
            if !broker.authorize_cluster(ctx, Operation::ClusterAction) =>
        {
            use write_txn_markers_response::*;
            Some(ResponseKind::WriteTxnMarkers(
                WriteTxnMarkersResponse::default().with_markers(
                    r.markers
                        .iter()
                        .map(|m| {
                            WritableTxnMarkerResult::default()
                                .with_producer_id(m.producer_id)
                                .with_topics(
                                    m.topics
                                        .iter()
                                        .map(|t| {
                                            WritableTxnMarkerTopicResult::default()
                                                .with_name(t.name.clone())
                                                .with_partitions(
                                                    t.partition_indexes
                                                        .iter()
                                                        .map(|p| {
                                                            WritableTxnMarkerPartitionResult::default()
                                                                .with_partition_index(*p)
                                                                .with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED)
                                                        })
                                                        .collect(),
                                                )
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            ))
        }
        RequestKind::DescribeCluster(_) if !broker.authorize_cluster(ctx, Operation::Describe) => {
            Some(ResponseKind::DescribeCluster(
                DescribeClusterResponse::default()
                    .with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED)
                    .with_cluster_authorized_operations(i32::MIN),
            ))
        }
        RequestKind::DescribeLogDirs(_)
            if v >= 3 && !broker.authorize_cluster(ctx, Operation::Describe) =>
        {
            Some(ResponseKind::DescribeLogDirs(
                DescribeLogDirsResponse::default()
                    .with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED),
            ))
        }
        _ => None,
    }
}

/// An idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
fn idempotent_write_allowed(broker: &Broker, ctx: &RequestContext) -> bool {
    let image = broker.image();
    let principal = ctx.session.principal();
    let host = ctx.peer.ip().to_string();
    let quiet = |op, rt, name: &str| {
        broker
            .authorizer
            .authorize(&image.acls, &principal, &host, op, rt, name)
    };
    if quiet(
        Operation::IdempotentWrite,
        ResourceType::Cluster,
        super::acl::CLUSTER_NAME,
    ) || image
        .topics
        .keys()
        .any(|t| quiet(Operation::Write, ResourceType::Topic, t))
        || image.acls.iter().any(|b| {
            b.resource_type == ResourceType::Topic as i8
                && b.permission_type == super::acl::PERMISSION_ALLOW
                && (b.operation == Operation::Write as i8 || b.operation == Operation::All as i8)
                && (b.principal == principal || b.principal == "User:*")
                && quiet(Operation::Write, ResourceType::Topic, &b.resource_name)
        })
    {
        return true;
    }
    broker.authorize_cluster(ctx, Operation::IdempotentWrite)
}
