use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use strom_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::storage_error_code;
use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;

/// Special timestamps of ListOffsets.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let image = broker.image();
    let req_isolation = req.isolation_level;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let known = image.topic(t.name.as_str()).is_some();
            let describable = broker.authorize_topic(
                ctx,
                crate::security::acl::Operation::Describe,
                t.name.as_str(),
            );
            let committed = req_isolation == 1;
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    if !describable {
                        return resp.with_error_code(ec::TOPIC_AUTHORIZATION_FAILED);
                    }
                    let part = match known
                        .then(|| broker.replicas.leader(t.name.as_str(), p.partition_index))
                    {
                        Some(Ok(part)) => part,
                        Some(Err(code)) => return resp.with_error_code(code),
                        None => return resp.with_error_code(ec::UNKNOWN_TOPIC_OR_PARTITION),
                    };
                    // Consumers see the log up to the high watermark.
                    let hw = part.high_watermark();
                    let found = part.with_log(|l| match p.timestamp {
                        // read_committed consumers start from the last stable offset.
                        LATEST if committed => Ok(Some((
                            l.first_unstable_offset().map_or(hw, |f| f.min(hw)),
                            -1,
                        ))),
                        LATEST => Ok(Some((hw, -1))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((l.log_start_offset(), -1))),
                        LATEST_TIERED => Ok(Some((l.log_start_offset().max(0) - 1, -1))),
                        MAX_TIMESTAMP => l.max_timestamp(),
                        ts if ts >= 0 => l.offset_for_timestamp(ts),
                        _ => Ok(None),
                    });
                    match found {
                        Ok(Some((offset, ts))) => resp
                            .with_offset(offset)
                            .with_timestamp(ts)
                            .with_leader_epoch(if ctx.api_version >= 4 {
                                part.leader_epoch()
                            } else {
                                -1
                            }),
                        Ok(None) => resp,
                        Err(e) => resp.with_error_code(storage_error_code(&e)),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// The ListOffsets API: its versions, handler and the rest of its story (see [`Api`]).
pub struct ListOffsets;

impl Api for ListOffsets {
    const KEY: ApiKey = ApiKey::ListOffsets;
    const VERSIONS: (i16, i16) = (1, 9);
    type Request = ListOffsetsRequest;
    type Response = ListOffsetsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
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
