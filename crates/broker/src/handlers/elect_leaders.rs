//! ElectLeaders: preferred leader election (leadership back to each partition's first replica
//! when it is alive and in sync) or unclean election (a partition without a leader takes any
//! live replica).

use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use strom_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::cluster;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::Operation;

const UNCLEAN: i8 = 1;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ElectLeadersRequest,
) -> ElectLeadersResponse {
    if !broker.authorize_cluster(ctx, Operation::Alter) {
        return ElectLeadersResponse::default().with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED);
    }
    let unclean = ctx.api_version >= 1 && req.election_type == UNCLEAN;
    let _guard = broker.controller.lock().await;
    let image = broker.image();
    // No list: every partition (answering only those elected, as Kafka does).
    let all = req.topic_partitions.is_none();
    let asked: Vec<(String, Vec<i32>)> = match req.topic_partitions {
        Some(tps) => tps
            .into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect(),
        None => image
            .topics
            .values()
            .map(|t| (t.name.clone(), (0..t.partitions.len() as i32).collect()))
            .collect(),
    };
    let mut results = Vec::new();
    for (topic, partitions) in asked {
        let mut out = Vec::new();
        for index in partitions {
            let image = broker.image();
            let outcome = match image
                .topic(&topic)
                .and_then(|t| Some((t, t.partitions.get(index as usize)?)))
            {
                None => Err((
                    ec::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("no partition {topic}-{index}"),
                )),
                Some((t, p)) => cluster::elect_record(&image, t, p, unclean),
            };
            let outcome = match outcome {
                Ok(record) => broker
                    .commit_metadata_async(vec![record])
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        let e = crate::topics::ApiError::from(e);
                        (e.code, e.message)
                    }),
                Err(e) => Err(e),
            };
            let r = PartitionResult::default().with_partition_id(index);
            match outcome {
                Ok(()) => {
                    tracing::info!(target: "strom::audit", topic = %topic, partition = index, unclean, "leader elected by request");
                    out.push(r);
                }
                Err((code, _)) if all && code == ec::ELECTION_NOT_NEEDED => {}
                Err((code, text)) => out.push(
                    r.with_error_code(code)
                        .with_error_message(Some(str_bytes(text))),
                ),
            }
        }
        if !out.is_empty() {
            results.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partition_result(out),
            );
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// The ElectLeaders API: its versions, handler and the rest of its story (see [`Api`]).
pub struct ElectLeaders;

impl Api for ElectLeaders {
    const KEY: ApiKey = ApiKey::ElectLeaders;
    const VERSIONS: (i16, i16) = (0, 2);
    type Request = ElectLeadersRequest;
    type Response = ElectLeadersResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }
}
