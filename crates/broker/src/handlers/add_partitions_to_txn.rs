use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use strom_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use strom_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;
use crate::security::acl::ResourceType;

/// Adds partitions to a transaction (v0-v3: one transaction from its producer; v4+: many,
/// possibly only verifying that they are already in their transactions).
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.api_version <= 3 {
        let topics = add(
            broker,
            req.v3_and_below_transactional_id.as_str(),
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            false,
            &req.v3_and_below_topics,
            ctx.api_version,
        );
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics);
    }
    // v4+ is the brokers' batched form (verification): a cluster action.
    if !broker.authorize_cluster(ctx, crate::security::acl::Operation::ClusterAction) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(strom_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED);
    }
    let results = req
        .transactions
        .iter()
        .map(|t| {
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(add(
                    broker,
                    t.transactional_id.as_str(),
                    t.producer_id.0,
                    t.producer_epoch,
                    t.verify_only,
                    &t.topics,
                    ctx.api_version,
                ))
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

fn add(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
    version: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let image = broker.image();
    let wanted: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.as_str().to_string(), *p))
        })
        .collect();
    let exists = |t: &str, p: i32| {
        image
            .topic(t)
            .is_some_and(|info| p >= 0 && (p as usize) < info.partitions.len())
    };
    let any_unknown = wanted.iter().any(|(t, p)| !exists(t, *p));
    let codes: Vec<i16> = if any_unknown {
        wanted
            .iter()
            .map(|(t, p)| {
                if exists(t, *p) {
                    ec::OPERATION_NOT_ATTEMPTED
                } else {
                    ec::UNKNOWN_TOPIC_OR_PARTITION
                }
            })
            .collect()
    } else if verify_only {
        wanted
            .iter()
            .map(|(t, p)| {
                if broker.txns.verify_partition(producer_id, epoch, t, *p) {
                    ec::NONE
                } else {
                    ec::INVALID_TXN_STATE
                }
            })
            .collect()
    } else {
        let code = broker
            .txns
            .add_partitions(
                &**broker,
                transactional_id,
                producer_id,
                epoch,
                &wanted,
                version,
            )
            .err()
            .unwrap_or(ec::NONE);
        vec![code; wanted.len()]
    };
    let mut codes = codes.into_iter();
    results(topics, |_, _| codes.next().unwrap_or(ec::NONE))
}

/// AddPartitionsToTxn results (v3 and below layout) with `code(topic index, partition)` for
/// each partition.
pub fn results(
    topics: &[strom_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic],
    mut code: impl FnMut(usize, i32) -> i16,
) -> Vec<strom_protocol::messages::add_partitions_to_txn_response::AddPartitionsToTxnTopicResult> {
    use strom_protocol::messages::add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    };
    topics
        .iter()
        .enumerate()
        .map(|(i, t)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code(i, *p))
                        })
                        .collect(),
                )
        })
        .collect()
}

/// The AddPartitionsToTxn API: its versions, handler and the rest of its story (see [`Api`]).
pub struct AddPartitionsToTxn;

impl Api for AddPartitionsToTxn {
    const KEY: ApiKey = ApiKey::AddPartitionsToTxn;
    const VERSIONS: (i16, i16) = (0, 5);
    type Request = AddPartitionsToTxnRequest;
    type Response = AddPartitionsToTxnResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_response(req: &Self::Request, version: i16, code: i16) -> Option<Self::Response> {
        if version >= 4 {
            return Some(Self::Response::default().with_error_code(code));
        }
        Some(
            Self::Response::default()
                .with_results_by_topic_v3_and_below(results(&req.v3_and_below_topics, |_, _| code)),
        )
    }

    /// v0-v3 (clients' own requests) need WRITE on the transactional id and on every topic;
    /// v4+ batches come from brokers and are authorized by the handler.
    fn authorize(
        broker: &Broker,
        ctx: &RequestContext,
        req: &Self::Request,
    ) -> Option<Self::Response> {
        if ctx.api_version >= 4 {
            return None;
        }
        let txn_ok = broker.authorize(
            ctx,
            Operation::Write,
            ResourceType::TransactionalId,
            &req.v3_and_below_transactional_id,
        );
        let denied_topics: Vec<bool> = req
            .v3_and_below_topics
            .iter()
            .map(|t| !broker.authorize_topic(ctx, Operation::Write, &t.name))
            .collect();
        if txn_ok && !denied_topics.iter().any(|d| *d) {
            return None;
        }
        let results = results(&req.v3_and_below_topics, |i, _| {
            if !txn_ok {
                ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
            } else if denied_topics[i] {
                ec::TOPIC_AUTHORIZATION_FAILED
            } else {
                ec::OPERATION_NOT_ATTEMPTED
            }
        });
        Some(Self::Response::default().with_results_by_topic_v3_and_below(results))
    }

    fn route(broker: &Broker, ctx: &RequestContext, req: &Self::Request) -> Option<Self::Response> {
        let v = ctx.api_version;
        (v < 4 && !broker.txns.owns(broker, &req.v3_and_below_transactional_id))
            .then(|| Self::error_response(req, v, ec::NOT_COORDINATOR))
            .flatten()
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
