use std::sync::Arc;

use crate::handlers::Api;
use strom_metadata::{AclBinding, MetadataRecord};
use strom_protocol::ApiKey;
use strom_protocol::messages::create_acls_response::AclCreationResult;
use strom_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::registry::RequestContext;
use crate::security::acl::{Operation, validate_binding};

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let failed = |code: i16, message: String| {
        AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
    };
    if !broker.authorizer.enabled {
        return CreateAclsResponse::default().with_results(
            req.creations
                .iter()
                .map(|_| {
                    failed(
                        ec::SECURITY_DISABLED,
                        "no authorizer is configured (authorizer.class.name)".into(),
                    )
                })
                .collect(),
        );
    }
    if !broker.authorize_cluster(ctx, Operation::Alter) {
        return CreateAclsResponse::default().with_results(
            req.creations
                .iter()
                .map(|_| {
                    failed(
                        ec::CLUSTER_AUTHORIZATION_FAILED,
                        "ALTER on the cluster is needed".into(),
                    )
                })
                .collect(),
        );
    }
    let _guard = broker.controller.lock().await;
    let mut results = Vec::new();
    for c in req.creations {
        let binding = AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission_type: c.permission_type,
        };
        if let Err(message) = validate_binding(&binding) {
            results.push(failed(ec::INVALID_REQUEST, message));
            continue;
        }
        if broker.image().acls.contains(&binding) {
            results.push(AclCreationResult::default());
            continue;
        }
        tracing::info!(target: "strom::audit", principal = %ctx.session.principal(), acl = ?binding, "ACL created");
        results.push(
            match broker.commit_metadata(vec![MetadataRecord::Acl(binding)]) {
                Ok(_) => AclCreationResult::default(),
                Err(e) => failed(ec::UNKNOWN_SERVER_ERROR, e.to_string()),
            },
        );
    }
    CreateAclsResponse::default().with_results(results)
}

/// CreateAcls: its key, the versions strom advertises, and its handler.
pub struct CreateAcls;

impl Api for CreateAcls {
    const KEY: ApiKey = ApiKey::CreateAcls;
    const VERSIONS: (i16, i16) = (1, 3);
    type Request = strom_protocol::messages::CreateAclsRequest;
    type Response = strom_protocol::messages::CreateAclsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }
}
