use std::sync::Arc;

use strom_metadata::MetadataRecord;
use strom_protocol::ApiKey;
use strom_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use strom_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::{AclFilter, Operation};
use crate::security::audit;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let failed = |code: i16, message: &str| {
        DeleteAclsFilterResult::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message.to_string())))
    };
    if !broker.authorizer.enabled {
        return DeleteAclsResponse::default().with_filter_results(
            req.filters
                .iter()
                .map(|_| {
                    failed(
                        ec::SECURITY_DISABLED,
                        "no authorizer is configured (authorizer.class.name)",
                    )
                })
                .collect(),
        );
    }
    if !broker.authorize_cluster(ctx, Operation::Alter) {
        return DeleteAclsResponse::default().with_filter_results(
            req.filters
                .iter()
                .map(|_| {
                    failed(
                        ec::CLUSTER_AUTHORIZATION_FAILED,
                        "ALTER on the cluster is needed",
                    )
                })
                .collect(),
        );
    }
    let _guard = broker.controller.lock().await;
    let mut results = Vec::new();
    for f in req.filters {
        let filter = AclFilter {
            resource_type: f.resource_type_filter,
            resource_name: f.resource_name_filter.map(|s| s.to_string()),
            pattern_type: f.pattern_type_filter,
            principal: f.principal_filter.map(|s| s.to_string()),
            host: f.host_filter.map(|s| s.to_string()),
            operation: f.operation,
            permission_type: f.permission_type,
        };
        let image = broker.image();
        let matching: Vec<_> = image
            .acls
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect();
        if matching.is_empty() {
            results.push(DeleteAclsFilterResult::default());
            continue;
        }
        let records = matching
            .iter()
            .cloned()
            .map(MetadataRecord::RemoveAcl)
            .collect();
        if let Err(e) = broker.commit_metadata(records) {
            results.push(failed(ec::UNKNOWN_SERVER_ERROR, &e.to_string()));
            continue;
        }
        tracing::info!(target: "strom::audit", principal = %ctx.session.principal(), count = matching.len(), "ACLs deleted");
        results.push(
            DeleteAclsFilterResult::default().with_matching_acls(
                matching
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type)
                            .with_resource_name(str_bytes(b.resource_name))
                            .with_pattern_type(b.pattern_type)
                            .with_principal(str_bytes(b.principal))
                            .with_host(str_bytes(b.host))
                            .with_operation(b.operation)
                            .with_permission_type(b.permission_type)
                    })
                    .collect(),
            ),
        );
    }
    DeleteAclsResponse::default().with_filter_results(results)
}

/// The DeleteAcls API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DeleteAcls;

impl Api for DeleteAcls {
    const KEY: ApiKey = ApiKey::DeleteAcls;
    const VERSIONS: (i16, i16) = (1, 3);
    type Request = DeleteAclsRequest;
    type Response = DeleteAclsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn audit(r: &Self::Request) -> Option<Vec<(String, String)>> {
        let mut items: Vec<(String, String)> = Vec::new();
        for f in &r.filters {
            let opt = |s: &Option<strom_protocol::StrBytes>| {
                s.as_ref().map_or("*".to_string(), |s| s.to_string())
            };
            items.push((
                format!(
                    "acl:{}:{}",
                    audit::resource_type_name(f.resource_type_filter),
                    opt(&f.resource_name_filter)
                ),
                format!(
                    "delete matching {} {} from host {} for {} ({})",
                    audit::permission_name(f.permission_type),
                    opt(&f.principal_filter),
                    opt(&f.host_filter),
                    audit::operation_name(f.operation),
                    audit::pattern_name(f.pattern_type_filter)
                ),
            ));
        }
        Some(items)
    }

    fn audit_results(r: &Self::Response) -> (Vec<i16>, i16) {
        (r.filter_results.iter().map(|c| c.error_code).collect(), 0)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
