use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use strom_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::broker::Broker;
use crate::group;
use crate::handlers::Api;
use crate::request::RequestContext;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group_id = req.group_id.as_str().to_string();
    let verdict = match broker.groups.ensure_offsets_topic(&**broker).await {
        Err(code) => Err(code),
        Ok(()) => broker.groups.check_commit_at(
            &group_id,
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|s| s.as_str()),
            req.generation_id_or_member_epoch,
            Some(ctx.api_version),
        ),
    };
    let group::CommitPlan {
        records,
        committed,
        codes,
    } = group::plan_commit(
        broker.groups.config(),
        &group_id,
        verdict,
        req.topics.iter().flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.as_str(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.committed_metadata.as_ref().map(|m| m.as_str()),
                )
            })
        }),
        |topic| broker.authorize_topic(ctx, crate::security::acl::Operation::Read, topic),
    );
    let mut codes = codes.into_iter();
    let mut codes: Vec<Vec<i16>> = req
        .topics
        .iter()
        .map(|t| {
            t.partitions
                .iter()
                .map(|_| codes.next().unwrap_or(ec::NONE))
                .collect()
        })
        .collect();
    tracing::debug!(
        group = %group_id,
        member = req.member_id.as_str(),
        generation = req.generation_id_or_member_epoch,
        verdict = ?verdict,
        offsets = ?committed.iter().map(|(t, p, c)| (t.as_str(), *p, c.offset)).collect::<Vec<_>>(),
        "offset commit"
    );
    // All offsets of the request go to the log in one batch, then become visible.
    let written = broker
        .groups
        .persist_replicated(&**broker, &group_id, records)
        .await;
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

/// The OffsetCommit API: its versions, handler and the rest of its story (see [`Api`]).
pub struct OffsetCommit;

impl Api for OffsetCommit {
    const KEY: ApiKey = ApiKey::OffsetCommit;
    const VERSIONS: (i16, i16) = (2, 9);
    type Request = OffsetCommitRequest;
    type Response = OffsetCommitResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_response(req: &Self::Request, _version: i16, code: i16) -> Option<Self::Response> {
        use strom_protocol::messages::offset_commit_response::{
            OffsetCommitResponsePartition, OffsetCommitResponseTopic,
        };
        Some(
            Self::Response::default().with_topics(
                req.topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        )
    }

    fn authorize(
        broker: &Broker,
        ctx: &RequestContext,
        req: &Self::Request,
    ) -> Option<Self::Response> {
        super::authorize_group::<Self>(broker, ctx, req, &req.group_id)
    }

    fn route(broker: &Broker, ctx: &RequestContext, req: &Self::Request) -> Option<Self::Response> {
        super::route_group::<Self>(broker, ctx, req, &req.group_id)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        r.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code));
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
