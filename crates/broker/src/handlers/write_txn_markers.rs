use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use strom_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::broker::Broker;
use crate::handlers::{Api, Quota};
use crate::request::RequestContext;
use crate::security::acl::Operation;

/// Writes transaction markers to partitions this broker leads (sent by a transaction
/// coordinator).
pub async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    req: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let markers = req
        .markers
        .into_iter()
        .map(|m| {
            let partitions: Vec<(String, i32)> = m
                .topics
                .iter()
                .flat_map(|t| {
                    t.partition_indexes
                        .iter()
                        .map(|p| (t.name.as_str().to_string(), *p))
                })
                .collect();
            let mut codes = broker
                .txns
                .write_markers(
                    &**broker,
                    m.producer_id.0,
                    m.producer_epoch,
                    m.coordinator_epoch,
                    m.transaction_result,
                    &partitions,
                )
                .into_iter();
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(
                    m.topics
                        .into_iter()
                        .map(|t| {
                            let partitions = t
                                .partition_indexes
                                .iter()
                                .map(|p| {
                                    WritableTxnMarkerPartitionResult::default()
                                        .with_partition_index(*p)
                                        .with_error_code(codes.next().unwrap_or(0))
                                })
                                .collect();
                            WritableTxnMarkerTopicResult::default()
                                .with_name(t.name)
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
        })
        .collect();
    WriteTxnMarkersResponse::default().with_markers(markers)
}

/// The WriteTxnMarkers API: its versions, handler and the rest of its story (see [`Api`]).
pub struct WriteTxnMarkers;

impl Api for WriteTxnMarkers {
    const KEY: ApiKey = ApiKey::WriteTxnMarkers;
    const VERSIONS: (i16, i16) = (1, 1);
    const QUOTA: Quota = Quota::Exempt;
    type Request = WriteTxnMarkersRequest;
    type Response = WriteTxnMarkersResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_response(req: &Self::Request, _version: i16, code: i16) -> Option<Self::Response> {
        use strom_protocol::messages::write_txn_markers_response::*;
        Some(
            Self::Response::default().with_markers(
                req.markers
                    .iter()
                    .map(|m| {
                        WritableTxnMarkerResult::default()
                            .with_producer_id(m.producer_id)
                            .with_topics(
                                m.topics
                                    .iter()
                                    .map(|t| {
                                        WritableTxnMarkerTopicResult::default()
                                            .with_name(t.name.clone())
                                            .with_partitions(
                                                t.partition_indexes
                                                    .iter()
                                                    .map(|p| {
                                                        WritableTxnMarkerPartitionResult::default()
                                                            .with_partition_index(*p)
                                                            .with_error_code(code)
                                                    })
                                                    .collect(),
                                            )
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
        (!broker.authorize_cluster(ctx, Operation::ClusterAction))
            .then(|| Self::error_response(req, ctx.api_version, ec::CLUSTER_AUTHORIZATION_FAILED))
            .flatten()
    }
}
