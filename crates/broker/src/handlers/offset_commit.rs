use std::sync::Arc;

use strom_protocol::error_code as ec;
use strom_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use strom_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::broker::Broker;
use crate::group::{self, state::Committed, store::OffsetValue};
use crate::registry::RequestContext;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group_id = req.group_id.as_str().to_string();
    let verdict = match group::ensure_offsets_topic(broker).await {
        Err(code) => Err(code),
        Ok(()) => broker.groups.check_commit_at(
            &group_id,
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|s| s.as_str()),
            req.generation_id_or_member_epoch,
            Some(ctx.api_version),
        ),
    };
    let now = crate::now_ms();
    let max_metadata = broker.groups.config().offset_metadata_max_bytes;
    let mut records = Vec::new();
    let mut committed = Vec::new();
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
                        metadata: metadata.clone(),
                        commit_timestamp: now,
                    };
                    records.push(group::offset_record(
                        &group_id,
                        t.name.as_str(),
                        p.partition_index,
                        Some(&value),
                    ));
                    committed.push((
                        t.name.as_str().to_string(),
                        p.partition_index,
                        Committed {
                            offset: value.offset,
                            leader_epoch: value.leader_epoch,
                            metadata,
                            commit_timestamp: now,
                        },
                    ));
                    ec::NONE
                }
            };
            tc.push(code);
        }
        codes.push(tc);
    }
    tracing::debug!(
        group = %group_id,
        member = req.member_id.as_str(),
        generation = req.generation_id_or_member_epoch,
        verdict = ?verdict,
        offsets = ?committed.iter().map(|(t, p, c)| (t.as_str(), *p, c.offset)).collect::<Vec<_>>(),
        "offset commit"
    );
    // All offsets of the request go to the log in one batch, then become visible.
    let written = group::persist(broker, &group_id, records);
    match written {
        Ok(()) => broker.groups.committed(&group_id, committed),
        Err(code) => {
            for tc in &mut codes {
                for c in tc.iter_mut().filter(|c| **c == ec::NONE) {
                    *c = code;
                }
            }
        }
    }
    let topics = req
        .topics
        .into_iter()
        .zip(codes)
        .map(|(t, tc)| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .zip(tc)
                        .map(|(p, c)| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(c)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
