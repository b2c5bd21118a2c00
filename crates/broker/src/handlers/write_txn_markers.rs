use std::sync::Arc;

use strom_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use strom_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::broker::Broker;
use crate::registry::RequestContext;

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
                    broker,
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
