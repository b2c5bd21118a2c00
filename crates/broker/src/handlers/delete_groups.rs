use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::delete_groups_response::DeletableGroupResult;
use strom_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;
use crate::group;
use crate::handlers::Api;
use crate::request::RequestContext;

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
                    match broker.groups.persist(&**broker, &name, records) {
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

/// The DeleteGroups API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DeleteGroups;

impl Api for DeleteGroups {
    const KEY: ApiKey = ApiKey::DeleteGroups;
    const VERSIONS: (i16, i16) = (0, 2);
    type Request = DeleteGroupsRequest;
    type Response = DeleteGroupsResponse;

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

    fn audit(r: &Self::Request) -> Option<Vec<(String, String)>> {
        let mut items: Vec<(String, String)> = Vec::new();
        for g in &r.groups_names {
            items.push((format!("group:{}", g.as_str()), "delete".into()));
        }
        Some(items)
    }

    fn audit_results(r: &Self::Response) -> (Vec<i16>, i16) {
        (r.results.iter().map(|g| g.error_code).collect(), 0)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
