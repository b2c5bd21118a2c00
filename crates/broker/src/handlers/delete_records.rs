use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use strom_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::storage_error_code;
use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;

/// DeleteRecords offset meaning "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let deletable = broker.authorize_topic(
                ctx,
                crate::security::acl::Operation::Delete,
                t.name.as_str(),
            );
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if !deletable {
                        return result.with_error_code(ec::TOPIC_AUTHORIZATION_FAILED);
                    }
                    let part = match broker.replicas.leader(t.name.as_str(), p.partition_index) {
                        Ok(part) => part,
                        Err(code) => return result.with_error_code(code),
                    };
                    let hw = part.high_watermark();
                    let outcome = part.with_log(|l| {
                        let target = if p.offset == HIGH_WATERMARK {
                            hw
                        } else {
                            p.offset
                        };
                        if target < 0 {
                            return Err(None);
                        }
                        l.delete_records(target).map_err(Some)
                    });
                    match outcome {
                        Ok(low) => result.with_low_watermark(low),
                        Err(None) => result.with_error_code(ec::OFFSET_OUT_OF_RANGE),
                        Err(Some(e)) => result.with_error_code(storage_error_code(&e)),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

/// The DeleteRecords API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DeleteRecords;

impl Api for DeleteRecords {
    const KEY: ApiKey = ApiKey::DeleteRecords;
    const VERSIONS: (i16, i16) = (0, 2);
    type Request = DeleteRecordsRequest;
    type Response = DeleteRecordsResponse;

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

    fn audit(r: &Self::Request) -> Option<Vec<(String, String)>> {
        let mut items: Vec<(String, String)> = Vec::new();
        for t in &r.topics {
            for p in &t.partitions {
                items.push((
                    format!("topic:{}-{}", t.name.as_str(), p.partition_index),
                    format!("delete records before offset {}", p.offset),
                ));
            }
        }
        Some(items)
    }

    fn audit_results(r: &Self::Response) -> (Vec<i16>, i16) {
        (
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
            0,
        )
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
