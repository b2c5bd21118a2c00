//! In a cluster, the coordinator of a group is the leader of the group's `__consumer_offsets`
//! partition, and that of a transactional id the leader of its `__transaction_state`
//! partition. A request about a group or transactional id this broker does not coordinate
//! answers NOT_COORDINATOR before it reaches a handler, and the client looks the coordinator
//! up again with FindCoordinator.

use strom_protocol::{RequestKind, ResponseKind, error_code as ec};

use crate::broker::Broker;
use crate::handlers::{self as h, Api};

const NOT_COORDINATOR: i16 = ec::NOT_COORDINATOR;

/// The NOT_COORDINATOR answer to a group request for a group coordinated elsewhere, or None.
pub fn not_coordinator(broker: &Broker, version: i16, body: &RequestKind) -> Option<ResponseKind> {
    let owns = |id: &str| broker.groups.owns(broker, id);
    let owns_txn = |id: &str| broker.txns.owns(broker, id);
    macro_rules! refuse {
        ($m:ident :: $api:ident, $req:expr) => {
            <h::$m::$api as Api>::error_response($req, version, NOT_COORDINATOR)
                .map(ResponseKind::$api)
        };
    }
    match body {
        RequestKind::JoinGroup(r) if !owns(&r.group_id) => refuse!(join_group::JoinGroup, r),
        RequestKind::SyncGroup(r) if !owns(&r.group_id) => refuse!(sync_group::SyncGroup, r),
        RequestKind::Heartbeat(r) if !owns(&r.group_id) => refuse!(heartbeat::Heartbeat, r),
        RequestKind::LeaveGroup(r) if !owns(&r.group_id) => refuse!(leave_group::LeaveGroup, r),
        RequestKind::ConsumerGroupHeartbeat(r) if !owns(&r.group_id) => {
            refuse!(consumer_group_heartbeat::ConsumerGroupHeartbeat, r)
        }
        RequestKind::OffsetCommit(r) if !owns(&r.group_id) => {
            refuse!(offset_commit::OffsetCommit, r)
        }
        RequestKind::TxnOffsetCommit(r) if !owns(&r.group_id) => {
            refuse!(txn_offset_commit::TxnOffsetCommit, r)
        }
        RequestKind::OffsetFetch(r) if version < 8 && !owns(&r.group_id) => {
            refuse!(offset_fetch::OffsetFetch, r)
        }
        RequestKind::OffsetFetch(r)
            if version >= 8 && r.groups.iter().any(|g| !owns(&g.group_id)) =>
        {
            refuse!(offset_fetch::OffsetFetch, r)
        }
        RequestKind::InitProducerId(r)
            if r.transactional_id.as_ref().is_some_and(|id| !owns_txn(id)) =>
        {
            refuse!(init_producer_id::InitProducerId, r)
        }
        RequestKind::AddPartitionsToTxn(r)
            if version < 4 && !owns_txn(&r.v3_and_below_transactional_id) =>
        {
            refuse!(add_partitions_to_txn::AddPartitionsToTxn, r)
        }
        RequestKind::AddOffsetsToTxn(r) if !owns_txn(&r.transactional_id) => {
            refuse!(add_offsets_to_txn::AddOffsetsToTxn, r)
        }
        RequestKind::EndTxn(r) if !owns_txn(&r.transactional_id) => refuse!(end_txn::EndTxn, r),
        _ => None,
    }
}
