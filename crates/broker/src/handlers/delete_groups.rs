use std::sync::Arc;

use crate::handlers::Api;
use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::delete_groups_response::DeletableGroupResult;
use strom_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;
use crate::group;
use crate::registry::RequestContext;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let results = req
        .groups_names
        .into_iter()
        .map(|id| {
            let name = id.as_str().to_string();
            let allowed = broker.authorize(
                ctx,
                crate::security::acl::Operation::Delete,
                crate::security::acl::ResourceType::Group,
                &name,
            );
            let outcome = if allowed {
                broker.groups.delete_group(&name)
            } else {
                Err(ec::GROUP_AUTHORIZATION_FAILED)
            };
            let code = match outcome {
                Err(code) => code,
                Ok((keys, consumer)) => {
                    let mut records: Vec<_> = keys
                        .iter()
                        .map(|(t, p)| group::offset_record(&name, t, *p, None))
                        .collect();
                    records.push((group::store::group_key(&name), None));
                    if consumer {
                        records.push((group::store::consumer_epoch_key(&name), None));
                        records.push((group::store::target_epoch_key(&name), None));
                    }
                    match group::persist(broker, &name, records) {
                        Ok(()) => ec::NONE,
                        Err(code) => code,
                    }
                }
            };
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code)
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}

/// DeleteGroups: its key, the versions strom advertises, and its handler.
pub struct DeleteGroups;

impl Api for DeleteGroups {
    const KEY: ApiKey = ApiKey::DeleteGroups;
    const VERSIONS: (i16, i16) = (0, 2);
    type Request = strom_protocol::messages::DeleteGroupsRequest;
    type Response = strom_protocol::messages::DeleteGroupsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        r.results.iter().for_each(|g| count(g.error_code));
    }
}
