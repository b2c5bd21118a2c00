//! OffsetFetch: a group's committed offsets. With an authorizer, each group needs DESCRIBE
//! (GROUP_AUTHORIZATION_FAILED) and each topic DESCRIBE: a named topic the principal may not
//! describe answers TOPIC_AUTHORIZATION_FAILED per partition, and a request for all topics
//! leaves such topics out.

use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use strom_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::group::state::Committed;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::{Operation, ResourceType};

/// Offsets of one group as the principal may see them: (topic, partitions with their commit or
/// an error code).
type Visible = Vec<(String, Vec<(i32, Result<Option<Committed>, i16>)>)>;

/// The group's offsets with the topic checks applied (see the module comment).
fn visible_offsets(
    broker: &Broker,
    ctx: &RequestContext,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Visible {
    let all = wanted.is_none();
    broker
        .groups
        .fetch_offsets(group_id, wanted)
        .into_iter()
        .filter_map(|(t, ps)| {
            if all {
                // Left out without a word: the principal asked for whatever it may see.
                broker
                    .authorize_quietly(ctx, Operation::Describe, ResourceType::Topic, &t)
                    .then(|| (t, ps.into_iter().map(|(p, c)| (p, Ok(c))).collect()))
            } else if broker.authorize_topic(ctx, Operation::Describe, &t) {
                Some((t, ps.into_iter().map(|(p, c)| (p, Ok(c))).collect()))
            } else {
                let denied = ps
                    .into_iter()
                    .map(|(p, _)| (p, Err(ec::TOPIC_AUTHORIZATION_FAILED)))
                    .collect();
                Some((t, denied))
            }
        })
        .collect()
}

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let v = ctx.api_version;
    if v >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                if !broker.authorize(
                    ctx,
                    Operation::Describe,
                    ResourceType::Group,
                    g.group_id.as_str(),
                ) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(ec::GROUP_AUTHORIZATION_FAILED);
                }
                if v >= 9
                    && let Err(code) = broker.groups.check_fetch(
                        g.group_id.as_str(),
                        g.member_id.as_ref().map(|s| s.as_str()).unwrap_or(""),
                        g.member_epoch,
                    )
                {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(code);
                }
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.as_str().to_string(), t.partition_indexes))
                        .collect()
                });
                let offsets = visible_offsets(broker, ctx, g.group_id.as_str(), wanted);
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(
                        offsets
                            .into_iter()
                            .map(|(t, ps)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(t)))
                                    .with_partitions(
                                        ps.into_iter()
                                            .map(|(p, c)| {
                                                let (offset, epoch, meta, code) = unpack(c);
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(Some(str_bytes(meta)))
                                                    .with_error_code(code)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.as_str().to_string(), t.partition_indexes))
            .collect()
    });
    // v1 has no group-level error code (v2-v7 are answered before dispatch when the group is
    // refused): each requested partition carries it.
    if v < 2
        && !broker.authorize(
            ctx,
            Operation::Describe,
            ResourceType::Group,
            req.group_id.as_str(),
        )
    {
        let topics = wanted
            .unwrap_or_default()
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(str_bytes(t)))
                    .with_partitions(
                        ps.into_iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(-1)
                                    .with_metadata(Some(str_bytes(String::new())))
                                    .with_error_code(ec::GROUP_AUTHORIZATION_FAILED)
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    let offsets = visible_offsets(broker, ctx, req.group_id.as_str(), wanted);
    let topics = offsets
        .into_iter()
        .map(|(t, ps)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(t)))
                .with_partitions(
                    ps.into_iter()
                        .map(|(p, c)| {
                            let (offset, epoch, meta, code) = unpack(c);
                            let part = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(Some(str_bytes(meta)))
                                .with_error_code(code);
                            if v >= 5 {
                                part.with_committed_leader_epoch(epoch)
                            } else {
                                part
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// Offset, leader epoch, metadata and error code of a commit; -1 and "" where there is none
/// or the topic is refused.
fn unpack(c: Result<Option<Committed>, i16>) -> (i64, i32, String, i16) {
    match c {
        Ok(Some(c)) => (c.offset, c.leader_epoch, c.metadata, ec::NONE),
        Ok(None) => (-1, -1, String::new(), ec::NONE),
        Err(code) => (-1, -1, String::new(), code),
    }
}

/// The OffsetFetch API: its versions, handler and the rest of its story (see [`Api`]).
pub struct OffsetFetch;

impl Api for OffsetFetch {
    const KEY: ApiKey = ApiKey::OffsetFetch;
    const VERSIONS: (i16, i16) = (1, 9);
    type Request = OffsetFetchRequest;
    type Response = OffsetFetchResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_response(req: &Self::Request, version: i16, code: i16) -> Option<Self::Response> {
        use strom_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
        if version < 8 {
            return Some(Self::Response::default().with_error_code(code));
        }
        Some(
            Self::Response::default().with_groups(
                req.groups
                    .iter()
                    .map(|g| {
                        OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        )
    }

    /// v2-v7 name one group, authorized here; v0-v1 and v8+ are authorized by the handler
    /// (v8+ group by group).
    fn authorize(
        broker: &Broker,
        ctx: &RequestContext,
        req: &Self::Request,
    ) -> Option<Self::Response> {
        let v = ctx.api_version;
        let allowed = !(2..8).contains(&v)
            || broker.authorize(ctx, Operation::Describe, ResourceType::Group, &req.group_id);
        (!allowed)
            .then(|| Self::error_response(req, v, ec::GROUP_AUTHORIZATION_FAILED))
            .flatten()
    }

    fn route(broker: &Broker, ctx: &RequestContext, req: &Self::Request) -> Option<Self::Response> {
        let v = ctx.api_version;
        let owns = |id: &str| broker.groups.owns(broker, id);
        let elsewhere = if v < 8 {
            !owns(&req.group_id)
        } else {
            req.groups.iter().any(|g| !owns(&g.group_id))
        };
        elsewhere
            .then(|| Self::error_response(req, v, ec::NOT_COORDINATOR))
            .flatten()
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        if r.groups.is_empty() {
            count(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| count(p.error_code));
        }
        for g in &r.groups {
            count(g.error_code);
            g.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| count(p.error_code));
        }
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
