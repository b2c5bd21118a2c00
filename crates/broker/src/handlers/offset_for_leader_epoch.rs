use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use strom_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;

/// Where a leader epoch ends in a partition's log: the largest epoch at or below the one asked
/// for and the start of the epoch after it (the log end offset for the latest). Consumers use
/// it to detect a log that was truncated under them (KIP-320), followers to find where their
/// log diverged from the leader's.
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if !broker.authorize_topic(ctx, Operation::Describe, t.topic.as_str()) {
                        return resp.with_error_code(ec::TOPIC_AUTHORIZATION_FAILED);
                    }
                    let Some(part) = broker.replicas.get(t.topic.as_str(), p.partition) else {
                        return resp.with_error_code(ec::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    // Only the leader answers, and the asker's idea of the current leader epoch
                    // must be ours.
                    if let Err(code) = super::fetch::leader_check(&part, 9, p.current_leader_epoch)
                    {
                        return resp.with_error_code(code);
                    }
                    match part.with_log(|l| l.end_offset_for_epoch(p.leader_epoch)) {
                        Some((epoch, end)) => resp
                            .with_error_code(ec::NONE)
                            .with_leader_epoch(epoch)
                            .with_end_offset(end),
                        // Older than anything in the log: undefined epoch and offset.
                        None => resp.with_error_code(ec::NONE),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// The OffsetForLeaderEpoch API: its versions, handler and the rest of its story (see [`Api`]).
pub struct OffsetForLeaderEpoch;

impl Api for OffsetForLeaderEpoch {
    const KEY: ApiKey = ApiKey::OffsetForLeaderEpoch;
    const VERSIONS: (i16, i16) = (2, 4);
    type Request = OffsetForLeaderEpochRequest;
    type Response = OffsetForLeaderEpochResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
