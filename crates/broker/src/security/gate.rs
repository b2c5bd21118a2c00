//! Authorization of requests whose whole answer depends on one resource (a group, a
//! transactional id, the cluster): checked here before dispatch, so the handlers stay about
//! their API. Checks per topic live in the handlers (Produce, Fetch, Metadata, ...).

use strom_protocol::messages::AddPartitionsToTxnResponse;
use strom_protocol::{RequestKind, ResponseKind, error_code as ec};

use super::acl::{Operation, ResourceType};
use crate::broker::Broker;
use crate::handlers::{self as h, Api};
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
    macro_rules! refuse {
        ($m:ident :: $api:ident, $req:expr, $code:expr) => {
            <h::$m::$api as Api>::error_response($req, v, $code).map(ResponseKind::$api)
        };
    }
    match body {
        RequestKind::JoinGroup(r) if !group(Operation::Read, &r.group_id) => {
            refuse!(join_group::JoinGroup, r, GROUP_DENIED)
        }
        RequestKind::SyncGroup(r) if !group(Operation::Read, &r.group_id) => {
            refuse!(sync_group::SyncGroup, r, GROUP_DENIED)
        }
        RequestKind::Heartbeat(r) if !group(Operation::Read, &r.group_id) => {
            refuse!(heartbeat::Heartbeat, r, GROUP_DENIED)
        }
        RequestKind::LeaveGroup(r) if !group(Operation::Read, &r.group_id) => {
            refuse!(leave_group::LeaveGroup, r, GROUP_DENIED)
        }
        RequestKind::ConsumerGroupHeartbeat(r) if !group(Operation::Read, &r.group_id) => {
            refuse!(
                consumer_group_heartbeat::ConsumerGroupHeartbeat,
                r,
                GROUP_DENIED
            )
        }
        RequestKind::OffsetCommit(r) if !group(Operation::Read, &r.group_id) => {
            refuse!(offset_commit::OffsetCommit, r, GROUP_DENIED)
        }
        RequestKind::OffsetFetch(r)
            if (2..8).contains(&v) && !group(Operation::Describe, &r.group_id) =>
        {
            refuse!(offset_fetch::OffsetFetch, r, GROUP_DENIED)
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
            if allowed {
                None
            } else {
                refuse!(init_producer_id::InitProducerId, r, code)
            }
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
            let results = h::add_partitions_to_txn::results(&r.v3_and_below_topics, |i, _| {
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
            refuse!(add_offsets_to_txn::AddOffsetsToTxn, r, code)
        }
        RequestKind::EndTxn(r) if !txn(&r.transactional_id) => {
            refuse!(end_txn::EndTxn, r, TXN_DENIED)
        }
        RequestKind::TxnOffsetCommit(r) => {
            let code = if !txn(&r.transactional_id) {
                TXN_DENIED
            } else if !group(Operation::Read, &r.group_id) {
                GROUP_DENIED
            } else {
                return None;
            };
            refuse!(txn_offset_commit::TxnOffsetCommit, r, code)
        }
        RequestKind::WriteTxnMarkers(r)
            if !broker.authorize_cluster(ctx, Operation::ClusterAction) =>
        {
            refuse!(
                write_txn_markers::WriteTxnMarkers,
                r,
                ec::CLUSTER_AUTHORIZATION_FAILED
            )
        }
        RequestKind::DescribeCluster(r) if !broker.authorize_cluster(ctx, Operation::Describe) => {
            refuse!(
                describe_cluster::DescribeCluster,
                r,
                ec::CLUSTER_AUTHORIZATION_FAILED
            )
        }
        RequestKind::DescribeLogDirs(r)
            if v >= 3 && !broker.authorize_cluster(ctx, Operation::Describe) =>
        {
            refuse!(
                describe_log_dirs::DescribeLogDirs,
                r,
                ec::CLUSTER_AUTHORIZATION_FAILED
            )
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
