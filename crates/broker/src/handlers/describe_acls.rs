use std::collections::BTreeMap;
use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use strom_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::{AclFilter, Operation};

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    if !broker.authorizer.enabled {
        return DescribeAclsResponse::default()
            .with_error_code(ec::SECURITY_DISABLED)
            .with_error_message(Some(str_bytes(
                "no authorizer is configured (authorizer.class.name)".to_string(),
            )));
    }
    if !broker.authorize_cluster(ctx, Operation::Describe) {
        return DescribeAclsResponse::default().with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED);
    }
    let filter = AclFilter {
        resource_type: req.resource_type_filter,
        resource_name: req.resource_name_filter.map(|s| s.to_string()),
        pattern_type: req.pattern_type_filter,
        principal: req.principal_filter.map(|s| s.to_string()),
        host: req.host_filter.map(|s| s.to_string()),
        operation: req.operation,
        permission_type: req.permission_type,
    };
    let image = broker.image();
    let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in image.acls.iter().filter(|b| filter.matches(b)) {
        resources
            .entry((b.resource_type, b.resource_name.clone(), b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(b.principal.clone()))
                    .with_host(str_bytes(b.host.clone()))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission_type),
            );
    }
    DescribeAclsResponse::default().with_resources(
        resources
            .into_iter()
            .map(|((rt, name, pattern), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(rt)
                    .with_resource_name(str_bytes(name))
                    .with_pattern_type(pattern)
                    .with_acls(acls)
            })
            .collect(),
    )
}

/// The DescribeAcls API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DescribeAcls;

impl Api for DescribeAcls {
    const KEY: ApiKey = ApiKey::DescribeAcls;
    const VERSIONS: (i16, i16) = (1, 3);
    type Request = DescribeAclsRequest;
    type Response = DescribeAclsResponse;

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
