use std::sync::Arc;

use strom_protocol::error_code as ec;
use strom_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use strom_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::broker::Broker;
use crate::group::{self, store::OffsetValue};
use crate::registry::RequestContext;

/// Commits a group's offsets inside a transaction: written now, applied when the
/// transaction commits, dropped if it aborts.
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let group_id = req.group_id.as_str().to_string();
    let partition =
        group::store::partition_for(&group_id, broker.groups.config().offsets_partitions);
    let mut verdict = match group::ensure_offsets_topic(broker).await {
        Err(code) => Err(code),
        Ok(()) => broker.txns.check_offset_commit(
            req.transactional_id.as_str(),
            req.producer_id.0,
            req.producer_epoch,
            partition,
            ctx.api_version,
        ),
    };
    // From v3 the producer says which group generation it consumed in; a stale one is fenced.
    if verdict.is_ok() && ctx.api_version >= 3 && req.generation_id >= 0 {
        verdict = broker.groups.check_commit(
            &group_id,
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|s| s.as_str()),
            req.generation_id,
        );
    }
    let now = crate::now_ms();
    let max_metadata = broker.groups.config().offset_metadata_max_bytes;
    let mut records = Vec::new();
    let mut codes: Vec<Vec<i16>> = Vec::new();
    for t in &req.topics {
        let mut tc = Vec::new();
        let readable =
            broker.authorize_topic(ctx, crate::security::acl::Operation::Read, t.name.as_str());
        for p in &t.partitions {
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.as_str().to_string())
                .unwrap_or_default();
            let code = match verdict {
                Err(code) => code,
                Ok(()) if !readable => ec::TOPIC_AUTHORIZATION_FAILED,
                Ok(()) if metadata.len() > max_metadata => ec::OFFSET_METADATA_TOO_LARGE,
                Ok(()) => {
                    let value = OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_timestamp: now,
                    };
                    records.push(group::offset_record(
                        &group_id,
                        t.name.as_str(),
                        p.partition_index,
                        Some(&value),
                    ));
                    ec::NONE
                }
            };
            tc.push(code);
        }
        codes.push(tc);
    }
    if let Err(code) = broker.txns.write_txn_offsets(
        broker,
        partition,
        req.producer_id.0,
        req.producer_epoch,
        records,
    ) {
        for c in codes.iter_mut().flatten().filter(|c| **c == ec::NONE) {
            *c = code;
        }
    }
    let topics = req
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, tc)| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(tc)
                        .map(|(p, c)| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(c)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
