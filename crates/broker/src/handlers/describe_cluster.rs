use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use strom_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use strom_protocol::str_bytes;

use crate::broker::Broker;
use crate::handlers::Api;
use crate::handlers::since;
use crate::request::RequestContext;
use crate::security::acl::Operation;
use crate::security::acl::{CLUSTER_NAME, OPERATIONS_NOT_REQUESTED, ResourceType};

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let image = broker.image();
    // v2 may ask for fenced brokers too, marked as such.
    let with_fenced = ctx.api_version >= 2 && req.include_fenced_brokers;
    let brokers = image
        .brokers
        .values()
        .filter(|b| with_fenced || !b.fenced)
        .map(|b| {
            let (host, port) = if b.broker_id == broker.node_id {
                broker.endpoint(&ctx.session.listener.name)
            } else {
                (b.host.clone(), b.port)
            };
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.broker_id))
                .with_host(str_bytes(host))
                .with_port(port as i32)
                .with_rack(b.rack.clone().map(str_bytes))
                .with_is_fenced(since(ctx.api_version, 2, b.fenced))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(if ctx.api_version >= 1 {
            req.endpoint_type
        } else {
            1
        })
        .with_cluster_id(str_bytes(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            broker.authorized_operations(ctx, ResourceType::Cluster, CLUSTER_NAME)
        } else {
            OPERATIONS_NOT_REQUESTED
        })
}

/// The DescribeCluster API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DescribeCluster;

impl Api for DescribeCluster {
    const KEY: ApiKey = ApiKey::DescribeCluster;
    const VERSIONS: (i16, i16) = (0, 2);
    type Request = DescribeClusterRequest;
    type Response = DescribeClusterResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_response(_req: &Self::Request, _version: i16, code: i16) -> Option<Self::Response> {
        Some(
            Self::Response::default()
                .with_error_code(code)
                .with_cluster_authorized_operations(i32::MIN),
        )
    }

    fn authorize(
        broker: &Broker,
        ctx: &RequestContext,
        req: &Self::Request,
    ) -> Option<Self::Response> {
        (!broker.authorize_cluster(ctx, Operation::Describe))
            .then(|| Self::error_response(req, ctx.api_version, ec::CLUSTER_AUTHORIZATION_FAILED))
            .flatten()
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        count(r.error_code);
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
