use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use strom_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::{Operation, ResourceType};

/// State, producer, timeout, start time and partitions of transactional ids (those the
/// principal may DESCRIBE).
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let ids: Vec<String> = req
        .transactional_ids
        .iter()
        .map(|t| t.as_str().to_string())
        .collect();
    let states = broker
        .txns
        .describe(Some(&ids))
        .into_iter()
        .zip(req.transactional_ids)
        .map(|((_, view), id)| match view {
            _ if !broker.authorize(
                ctx,
                Operation::Describe,
                ResourceType::TransactionalId,
                id.as_str(),
            ) =>
            {
                TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                    .with_transaction_state(str_bytes(""))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1)
            }
            None => TransactionState::default()
                .with_transactional_id(id)
                .with_error_code(ec::TRANSACTIONAL_ID_NOT_FOUND)
                .with_transaction_state(str_bytes(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1),
            Some(v) => {
                let mut topics: Vec<TopicData> = Vec::new();
                for (t, p) in v.partitions {
                    // Only topics the principal may describe are shown.
                    if !broker.authorize_quietly(ctx, Operation::Describe, ResourceType::Topic, &t)
                    {
                        continue;
                    }
                    match topics.last_mut() {
                        Some(last) if last.topic.as_str() == t => last.partitions.push(p),
                        _ => topics.push(
                            TopicData::default()
                                .with_topic(TopicName(str_bytes(t)))
                                .with_partitions(vec![p]),
                        ),
                    }
                }
                TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(ec::NONE)
                    .with_transaction_state(str_bytes(v.status.name()))
                    .with_transaction_timeout_ms(v.timeout_ms)
                    .with_transaction_start_time_ms(v.start_ms)
                    .with_producer_id(ProducerId(v.producer_id))
                    .with_producer_epoch(v.epoch)
                    .with_topics(topics)
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// The DescribeTransactions API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DescribeTransactions;

impl Api for DescribeTransactions {
    const KEY: ApiKey = ApiKey::DescribeTransactions;
    const VERSIONS: (i16, i16) = (0, 0);
    type Request = DescribeTransactionsRequest;
    type Response = DescribeTransactionsResponse;

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
