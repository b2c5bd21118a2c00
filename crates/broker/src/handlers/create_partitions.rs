use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use strom_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::message;
use crate::broker::Broker;
use crate::handlers::{Api, Quota};
use crate::request::RequestContext;
use crate::topics::{self, ApiError};

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let _guard = broker.controller.lock().await;
    let mutations = broker.mutation_quota(ctx, ctx.api_version >= 3);
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let outcome = if !broker.authorize_topic(
                ctx,
                crate::security::acl::Operation::Alter,
                t.name.as_str(),
            ) {
                Err(ApiError::new(
                    ec::TOPIC_AUTHORIZATION_FAILED,
                    "ALTER on the topic is not allowed",
                ))
            } else if mutations.exceeded() {
                Err(ApiError::new(
                    ec::THROTTLING_QUOTA_EXCEEDED,
                    "the client is over its controller_mutation_rate quota",
                ))
            } else if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
                Err(ApiError::new(
                    ec::INVALID_REPLICA_ASSIGNMENT,
                    "manual replica assignment is not supported yet",
                ))
            } else {
                let before = broker
                    .image()
                    .topic(t.name.as_str())
                    .map_or(0, |i| i.partitions.len());
                let created =
                    topics::create_partitions(broker, t.name.as_str(), t.count, req.validate_only);
                if created.is_ok() && !req.validate_only {
                    mutations.record((t.count.max(0) as usize).saturating_sub(before));
                }
                created
            };
            let result = CreatePartitionsTopicResult::default().with_name(t.name);
            match outcome {
                Ok(()) => result,
                Err(e) => result
                    .with_error_code(e.code)
                    .with_error_message(message(e.code, e.message)),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}

/// The CreatePartitions API: its versions, handler and the rest of its story (see [`Api`]).
pub struct CreatePartitions;

impl Api for CreatePartitions {
    const KEY: ApiKey = ApiKey::CreatePartitions;
    const VERSIONS: (i16, i16) = (0, 3);
    const QUOTA: Quota = Quota::ControllerMutation;
    type Request = CreatePartitionsRequest;
    type Response = CreatePartitionsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        r.results.iter().for_each(|x| count(x.error_code));
    }

    fn audit(r: &Self::Request) -> Option<Vec<(String, String)>> {
        let mut items: Vec<(String, String)> = Vec::new();
        for t in &r.topics {
            items.push((
                format!("topic:{}", t.name.as_str()),
                format!(
                    "create partitions count={}{}",
                    t.count,
                    if r.validate_only {
                        " validate_only"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Some(items)
    }

    fn audit_results(r: &Self::Response) -> (Vec<i16>, i16) {
        (r.results.iter().map(|t| t.error_code).collect(), 0)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
