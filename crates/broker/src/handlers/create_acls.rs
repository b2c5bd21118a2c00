use std::sync::Arc;

use strom_metadata::{AclBinding, MetadataRecord};
use strom_protocol::ApiKey;
use strom_protocol::messages::create_acls_response::AclCreationResult;
use strom_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::{Operation, validate_binding};
use crate::security::audit;

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

/// The CreateAcls API: its versions, handler and the rest of its story (see [`Api`]).
pub struct CreateAcls;

impl Api for CreateAcls {
    const KEY: ApiKey = ApiKey::CreateAcls;
    const VERSIONS: (i16, i16) = (1, 3);
    type Request = CreateAclsRequest;
    type Response = CreateAclsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn audit(r: &Self::Request) -> Option<Vec<(String, String)>> {
        let mut items: Vec<(String, String)> = Vec::new();
        for a in &r.creations {
            items.push((
                format!(
                    "acl:{}:{}",
                    audit::resource_type_name(a.resource_type),
                    a.resource_name.as_str()
                ),
                format!(
                    "create {} {} from host {} for {} ({})",
                    audit::permission_name(a.permission_type),
                    a.principal.as_str(),
                    a.host.as_str(),
                    audit::operation_name(a.operation),
                    audit::pattern_name(a.resource_pattern_type)
                ),
            ));
        }
        Some(items)
    }

    fn audit_results(r: &Self::Response) -> (Vec<i16>, i16) {
        (r.results.iter().map(|c| c.error_code).collect(), 0)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
