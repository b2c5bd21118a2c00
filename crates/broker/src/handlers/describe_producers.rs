use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use strom_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;

/// The idempotent and transactional producers a partition knows (READ on the topic needed).
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions =
                t.partition_indexes
                    .iter()
                    .map(|&index| {
                        let resp = PartitionResponse::default().with_partition_index(index);
                        if !broker.authorize_topic(ctx, Operation::Read, t.name.as_str()) {
                            return resp
                                .with_error_code(ec::TOPIC_AUTHORIZATION_FAILED)
                                .with_error_message(Some(str_bytes(
                                    "not authorized to read the topic",
                                )));
                        }
                        let p = match broker.replicas.leader(t.name.as_str(), index) {
                            Ok(p) => p,
                            Err(code) => {
                                return resp.with_error_code(code).with_error_message(Some(
                                    str_bytes("unknown topic or partition, or not its leader"),
                                ));
                            }
                        };
                        let producers = p.with_log(|l| l.producer_state().producers());
                        resp.with_error_code(ec::NONE).with_active_producers(
                            producers
                                .into_iter()
                                .map(|e| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(e.producer_id))
                                        .with_producer_epoch(i32::from(e.epoch))
                                        .with_last_sequence(e.last_seq().unwrap_or(-1))
                                        .with_last_timestamp(e.last_timestamp)
                                        .with_coordinator_epoch(e.coordinator_epoch)
                                        .with_current_txn_start_offset(
                                            e.current_txn_first_offset.unwrap_or(-1),
                                        )
                                })
                                .collect(),
                        )
                    })
                    .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

/// The DescribeProducers API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DescribeProducers;

impl Api for DescribeProducers {
    const KEY: ApiKey = ApiKey::DescribeProducers;
    const VERSIONS: (i16, i16) = (0, 0);
    type Request = DescribeProducersRequest;
    type Response = DescribeProducersResponse;

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
