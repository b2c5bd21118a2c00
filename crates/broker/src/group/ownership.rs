//! In a cluster, the coordinator of a group is the leader of the group's `__consumer_offsets`
//! partition, and that of a transactional id the leader of its `__transaction_state`
//! partition. A request about a group or transactional id this broker does not coordinate
//! answers NOT_COORDINATOR before it reaches a handler, and the client looks the coordinator
//! up again with FindCoordinator.

use strom_protocol::messages::*;
use strom_protocol::{RequestKind, ResponseKind, error_code as ec};

use crate::broker::Broker;

const NOT_COORDINATOR: i16 = ec::NOT_COORDINATOR;

/// The NOT_COORDINATOR answer to a group request for a group coordinated elsewhere, or None.
pub fn not_coordinator(broker: &Broker, version: i16, body: &RequestKind) -> Option<ResponseKind> {
    let owns = |id: &str| broker.groups.owns(broker, id);
    match body {
        RequestKind::JoinGroup(r) if !owns(&r.group_id) => Some(ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(NOT_COORDINATOR)
                .with_member_id(r.member_id.clone()),
        )),
        RequestKind::SyncGroup(r) if !owns(&r.group_id) => Some(ResponseKind::SyncGroup(
            SyncGroupResponse::default().with_error_code(NOT_COORDINATOR),
        )),
        RequestKind::Heartbeat(r) if !owns(&r.group_id) => Some(ResponseKind::Heartbeat(
            HeartbeatResponse::default().with_error_code(NOT_COORDINATOR),
        )),
        RequestKind::LeaveGroup(r) if !owns(&r.group_id) => Some(ResponseKind::LeaveGroup(
            LeaveGroupResponse::default().with_error_code(NOT_COORDINATOR),
        )),
        RequestKind::ConsumerGroupHeartbeat(r) if !owns(&r.group_id) => {
            Some(ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default().with_error_code(NOT_COORDINATOR),
            ))
        }
        RequestKind::OffsetCommit(r) if !owns(&r.group_id) => Some(ResponseKind::OffsetCommit(
            crate::refusal::offset_commit(r, NOT_COORDINATOR),
        )),
        RequestKind::TxnOffsetCommit(r) if !owns(&r.group_id) => Some(
            ResponseKind::TxnOffsetCommit(crate::refusal::txn_offset_commit(r, NOT_COORDINATOR)),
        ),
        RequestKind::OffsetFetch(r) if version < 8 && !owns(&r.group_id) => {
            Some(ResponseKind::OffsetFetch(
                OffsetFetchResponse::default().with_error_code(NOT_COORDINATOR),
            ))
        }
        RequestKind::OffsetFetch(r)
            if version >= 8 && r.groups.iter().any(|g| !owns(&g.group_id)) =>
        {
            use offset_fetch_response::*;
            Some(ResponseKind::OffsetFetch(
                OffsetFetchResponse::default().with_groups(
                    r.groups
                        .iter()
                        .map(|g| {
                            OffsetFetchResponseGroup::default()
                                .with_group_id(g.group_id.clone())
                                .with_error_code(NOT_COORDINATOR)
                        })
                        .collect(),
                ),
            ))
        }
        RequestKind::InitProducerId(r)
            if r.transactional_id
                .as_ref()
                .is_some_and(|id| !broker.txns.owns(broker, id)) =>
        {
            Some(ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_error_code(NOT_COORDINATOR)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ))
        }
        RequestKind::AddPartitionsToTxn(r)
            if version < 4 && !broker.txns.owns(broker, &r.v3_and_below_transactional_id) =>
        {
            Some(ResponseKind::AddPartitionsToTxn(
                AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
                    crate::refusal::add_partitions_results(&r.v3_and_below_topics, |_, _| {
                        NOT_COORDINATOR
                    }),
                ),
            ))
        }
        RequestKind::AddOffsetsToTxn(r) if !broker.txns.owns(broker, &r.transactional_id) => {
            Some(ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(NOT_COORDINATOR),
            ))
        }
        RequestKind::EndTxn(r) if !broker.txns.owns(broker, &r.transactional_id) => Some(
            ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(NOT_COORDINATOR)),
        ),
        _ => None,
    }
}
