use std::sync::Arc;

use strom_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::broker::Broker;
use crate::group::{self, OFFSETS_TOPIC};
use crate::registry::RequestContext;

/// Adds a group's `__consumer_offsets` partition to a transaction, so that the producer can
/// commit the group's offsets in it.
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let code = match group::ensure_offsets_topic(broker).await {
        Err(code) => code,
        Ok(()) => {
            let partition = group::store::partition_for(
                req.group_id.as_str(),
                broker.groups.config().offsets_partitions,
            );
            broker
                .txns
                .add_partitions(
                    broker,
                    req.transactional_id.as_str(),
                    req.producer_id.0,
                    req.producer_epoch,
                    &[(OFFSETS_TOPIC.to_string(), partition)],
                    ctx.api_version,
                )
                .err()
                .unwrap_or(strom_protocol::error_code::NONE)
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
