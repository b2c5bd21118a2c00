//! AlterPartitionReassignments: move a partition's replicas to other brokers (or cancel such a
//! move). The new replicas catch up as followers; the active controller completes the move
//! once they are all in sync (`cluster::complete_reassignments`).

use std::sync::Arc;

use strom_metadata::MetadataRecord;
use strom_protocol::ApiKey;
use strom_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use strom_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::cluster;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if !broker.authorize_cluster(ctx, Operation::Alter) {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED)
            .with_error_message(Some(str_bytes("ALTER on the cluster is not allowed")));
    }
    let _guard = broker.controller.lock().await;
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let image = broker.image();
            let outcome = match image
                .topic(t.name.as_str())
                .and_then(|topic| Some((topic, topic.partitions.get(p.partition_index as usize)?)))
            {
                None => Err((
                    ec::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("no partition {}-{}", t.name.as_str(), p.partition_index),
                )),
                Some((topic, info)) => match &p.replicas {
                    Some(replicas) => {
                        let target: Vec<i32> = replicas.iter().map(|r| r.0).collect();
                        if ctx.api_version >= 1
                            && !req.allow_replication_factor_change
                            && target.len() != info.target_replicas().len()
                        {
                            Err((
                                ec::INVALID_REPLICATION_FACTOR,
                                "the reassignment changes the replication factor".to_string(),
                            ))
                        } else {
                            cluster::reassign_record(&image, topic, info, &target)
                        }
                    }
                    None => cluster::cancel_record(&image, topic, info),
                },
            };
            let outcome = match outcome {
                Ok(record) => commit(broker, record).await,
                Err(e) => Err(e),
            };
            let resp =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match outcome {
                Ok(()) => resp,
                Err((code, text)) => resp
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(text))),
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(
            ctx.api_version >= 1 && req.allow_replication_factor_change,
        )
        .with_responses(responses)
}

async fn commit(broker: &Broker, record: MetadataRecord) -> Result<(), (i16, String)> {
    if let MetadataRecord::Partition {
        partition,
        replicas,
        adding,
        removing,
        ..
    } = &record
    {
        tracing::info!(target: "strom::audit", partition, ?replicas, ?adding, ?removing, "partition reassignment");
    }
    broker
        .commit_metadata_async(vec![record])
        .await
        .map(|_| ())
        .map_err(|e| {
            let e = crate::topics::ApiError::from(e);
            (e.code, e.message)
        })
}

/// The AlterPartitionReassignments API: its versions, handler and the rest of its story (see [`Api`]).
pub struct AlterPartitionReassignments;

impl Api for AlterPartitionReassignments {
    const KEY: ApiKey = ApiKey::AlterPartitionReassignments;
    const VERSIONS: (i16, i16) = (0, 1);
    type Request = AlterPartitionReassignmentsRequest;
    type Response = AlterPartitionReassignmentsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }
}
