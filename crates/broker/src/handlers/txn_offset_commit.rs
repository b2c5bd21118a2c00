use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use strom_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::broker::Broker;
use crate::group;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;
use crate::security::acl::ResourceType;

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
    let mut verdict = match broker.groups.ensure_offsets_topic(&**broker).await {
        Err(code) => Err(code),
        // The transaction's state is known here only when this broker also coordinates the
        // transactional id. Otherwise the group's coordinator relies, as Kafka's does without
        // partition verification, on the log: the batch carries the producer id and epoch, and
        // the offsets partition's producer state refuses an epoch older than one it has seen
        // (a marker of the bumped epoch fences a zombie). The transaction coordinator added
        // the partition on AddOffsetsToTxn (transactions v2: on our request, here) and writes
        // its marker there with WriteTxnMarkers.
        Ok(()) if !broker.txns.owns(&**broker, req.transactional_id.as_str()) => {
            if ctx.api_version >= 5 {
                crate::coordinators::add_offsets_partition_remotely(
                    broker,
                    req.transactional_id.as_str(),
                    req.producer_id.0,
                    req.producer_epoch,
                    partition,
                )
                .await
            } else {
                Ok(())
            }
        }
        Ok(()) => {
            // Transactions v2: the commit adds the offsets partition itself.
            if ctx.api_version >= 5 {
                broker.txns.add_partition_implicitly(
                    &**broker,
                    req.producer_id.0,
                    req.producer_epoch,
                    group::OFFSETS_TOPIC,
                    partition,
                );
            }
            broker.txns.check_offset_commit(
                req.transactional_id.as_str(),
                req.producer_id.0,
                req.producer_epoch,
                partition,
                ctx.api_version,
            )
        }
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
    let group::CommitPlan { records, codes, .. } = group::plan_commit(
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
    if let Err(code) = broker.groups.write_txn_offsets(
        &**broker,
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

/// The TxnOffsetCommit API: its versions, handler and the rest of its story (see [`Api`]).
pub struct TxnOffsetCommit;

impl Api for TxnOffsetCommit {
    const KEY: ApiKey = ApiKey::TxnOffsetCommit;
    const VERSIONS: (i16, i16) = (0, 5);
    type Request = TxnOffsetCommitRequest;
    type Response = TxnOffsetCommitResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_response(req: &Self::Request, _version: i16, code: i16) -> Option<Self::Response> {
        use strom_protocol::messages::txn_offset_commit_response::{
            TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
        };
        Some(
            Self::Response::default().with_topics(
                req.topics
                    .iter()
                    .map(|t| {
                        TxnOffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        TxnOffsetCommitResponsePartition::default()
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
        let code = if !broker.authorize(
            ctx,
            Operation::Write,
            ResourceType::TransactionalId,
            &req.transactional_id,
        ) {
            ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        } else if !broker.authorize(ctx, Operation::Read, ResourceType::Group, &req.group_id) {
            ec::GROUP_AUTHORIZATION_FAILED
        } else {
            return None;
        };
        Self::error_response(req, ctx.api_version, code)
    }

    fn route(broker: &Broker, ctx: &RequestContext, req: &Self::Request) -> Option<Self::Response> {
        super::route_group::<Self>(broker, ctx, req, &req.group_id)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
