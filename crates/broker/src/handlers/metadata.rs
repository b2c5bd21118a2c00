use std::sync::Arc;

use strom_metadata::{MetadataImage, TopicInfo};
use strom_protocol::ApiKey;
use strom_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use strom_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::topics;

use super::since;

use crate::security::acl::OPERATIONS_NOT_REQUESTED as OPS_NOT_REQUESTED;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: MetadataRequest,
) -> MetadataResponse {
    let mut image = broker.image();
    // v0 asks for all topics with an empty list; later versions with a null one.
    let wanted: Option<Vec<_>> = match req.topics {
        Some(t) if t.is_empty() && ctx.api_version == 0 => None,
        other => other,
    };
    let auto_create = broker.config.settings().auto_create_topics_enable
        && (ctx.api_version < 4 || req.allow_auto_topic_creation);
    use crate::security::acl::{CLUSTER_NAME, Operation, ResourceType};
    let describable =
        |name: &str| broker.authorize_quietly(ctx, Operation::Describe, ResourceType::Topic, name);
    let mut topics = Vec::new();
    match wanted {
        // Every topic the principal may describe; the others are left out.
        None => topics.extend(
            image
                .topics
                .values()
                .filter(|t| describable(&t.name))
                .map(|t| topic_entry(t, ctx.api_version)),
        ),
        Some(requested) => {
            if auto_create {
                let missing: Vec<String> = requested
                    .iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.as_str().to_string()))
                    .filter(|n| image.topic(n).is_none() && topics::validate_topic_name(n).is_ok())
                    .filter(|n| describable(n) && broker.authorize_create(ctx, n))
                    .collect();
                if !missing.is_empty() {
                    let _guard = broker.controller.lock().await;
                    for name in missing {
                        match topics::create_topic(broker, &name, -1, -1, Default::default(), false)
                        {
                            Ok(_) => {}
                            Err(e) if e.code == ec::TOPIC_ALREADY_EXISTS => {}
                            Err(e) => {
                                tracing::warn!(topic = %name, error = %e.message, "auto-create failed")
                            }
                        }
                    }
                    image = broker.image();
                }
            }
            for t in requested {
                let found = match &t.name {
                    Some(n) => image.topic(n.as_str()),
                    None => image.topic_by_id(&t.topic_id),
                };
                let name = found
                    .map(|i| i.name.clone())
                    .or_else(|| t.name.as_ref().map(|n| n.to_string()));
                if name.is_some_and(|n| !broker.authorize_topic(ctx, Operation::Describe, &n)) {
                    topics.push(
                        MetadataResponseTopic::default()
                            .with_error_code(ec::TOPIC_AUTHORIZATION_FAILED)
                            .with_name(t.name.clone())
                            .with_topic_id(since(ctx.api_version, 10, t.topic_id))
                            .with_topic_authorized_operations(OPS_NOT_REQUESTED),
                    );
                    continue;
                }
                topics.push(match found {
                    Some(info) => topic_entry(info, ctx.api_version),
                    None => missing_entry(t.name, since(ctx.api_version, 10, t.topic_id)),
                });
            }
        }
    }
    let v = ctx.api_version;
    if req.include_topic_authorized_operations {
        for t in &mut topics {
            if t.error_code != ec::TOPIC_AUTHORIZATION_FAILED
                && let Some(name) = &t.name
            {
                t.topic_authorized_operations =
                    broker.authorized_operations(ctx, ResourceType::Topic, name.as_str());
            }
        }
    }
    // Asked for in v8-v10 only (later versions have DescribeCluster for it).
    let cluster_ops = if req.include_cluster_authorized_operations && (8..=10).contains(&v) {
        broker.authorized_operations(ctx, ResourceType::Cluster, CLUSTER_NAME)
    } else {
        OPS_NOT_REQUESTED
    };
    MetadataResponse::default()
        .with_brokers(brokers(broker, ctx, &image))
        .with_cluster_id(since(v, 2, Some(str_bytes(broker.cluster_id.clone()))))
        .with_controller_id(if v >= 1 {
            BrokerId(broker.controller_id())
        } else {
            BrokerId(-1)
        })
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_ops)
}

/// The brokers of the image; this broker is given at the address of the listener the client
/// connected to.
pub fn brokers(
    broker: &Broker,
    ctx: &RequestContext,
    image: &MetadataImage,
) -> Vec<MetadataResponseBroker> {
    image
        .live_brokers()
        .map(|b| {
            let (host, port) = if b.broker_id == broker.node_id {
                broker.endpoint(&ctx.session.listener.name)
            } else {
                (b.host.clone(), b.port)
            };
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.broker_id))
                .with_host(str_bytes(host))
                .with_port(port as i32)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect()
}

fn missing_entry(name: Option<TopicName>, id: strom_metadata::Uuid) -> MetadataResponseTopic {
    let code = match &name {
        Some(n) if topics::validate_topic_name(n.as_str()).is_err() => ec::INVALID_TOPIC_EXCEPTION,
        Some(_) => ec::UNKNOWN_TOPIC_OR_PARTITION,
        None => ec::UNKNOWN_TOPIC_ID,
    };
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name)
        .with_topic_id(id)
        .with_topic_authorized_operations(OPS_NOT_REQUESTED)
}

fn topic_entry(t: &TopicInfo, version: i16) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_error_code(if p.leader < 0 {
                    ec::LEADER_NOT_AVAILABLE
                } else {
                    ec::NONE
                })
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(if version >= 7 { p.leader_epoch } else { -1 })
                .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
                .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(t.name.clone()))))
        .with_topic_id(since(version, 10, t.topic_id))
        .with_is_internal(version >= 1 && t.name.starts_with("__"))
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPS_NOT_REQUESTED)
}

/// The Metadata API: its versions, handler and the rest of its story (see [`Api`]).
pub struct Metadata;

impl Api for Metadata {
    const KEY: ApiKey = ApiKey::Metadata;
    const VERSIONS: (i16, i16) = (0, 12);
    type Request = MetadataRequest;
    type Response = MetadataResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        if r.topics.is_empty() {
            count(r.error_code);
        }
        r.topics.iter().for_each(|t| count(t.error_code));
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
