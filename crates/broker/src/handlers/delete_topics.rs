use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::delete_topics_response::DeletableTopicResult;
use strom_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use strom_protocol::str_bytes;

use super::{message, since};
use crate::broker::Broker;
use crate::handlers::{Api, Quota};
use crate::request::RequestContext;
use crate::topics;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let _guard = broker.controller.lock().await;
    let mutations = broker.mutation_quota(ctx, ctx.api_version >= 5);
    let targets: Vec<(Option<String>, Option<strom_metadata::Uuid>)> = if ctx.api_version >= 6 {
        req.topics
            .into_iter()
            .map(|t| match t.name {
                Some(n) => (Some(n.as_str().to_string()), None),
                None => (None, Some(t.topic_id)),
            })
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.as_str().to_string()), None))
            .collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let v = ctx.api_version;
            let result = DeletableTopicResult::default()
                .with_name(name.clone().map(|n| TopicName(str_bytes(n))))
                .with_topic_id(since(v, 6, id.unwrap_or_default()));
            let target = name.clone().or_else(|| {
                id.and_then(|id| broker.image().topic_by_id(&id).map(|t| t.name.clone()))
            });
            if target.as_ref().is_some_and(|n| {
                !broker.authorize_topic(ctx, crate::security::acl::Operation::Delete, n)
            }) {
                let code = strom_protocol::error_code::TOPIC_AUTHORIZATION_FAILED;
                return result.with_error_code(code).with_error_message(since(
                    v,
                    5,
                    message(code, "DELETE on the topic is not allowed".into()),
                ));
            }
            if mutations.exceeded() {
                let code = strom_protocol::error_code::THROTTLING_QUOTA_EXCEEDED;
                return result.with_error_code(code).with_error_message(since(
                    v,
                    5,
                    message(
                        code,
                        "the client is over its controller_mutation_rate quota".into(),
                    ),
                ));
            }
            let partitions = target
                .as_ref()
                .and_then(|n| broker.image().topic(n).map(|t| t.partitions.len()))
                .unwrap_or(0);
            match topics::delete_topic(broker, name.as_deref(), id) {
                Ok((name, id)) => {
                    mutations.record(partitions);
                    result
                        .with_name(Some(TopicName(str_bytes(name))))
                        .with_topic_id(since(v, 6, id))
                }
                Err(e) => result.with_error_code(e.code).with_error_message(since(
                    v,
                    5,
                    message(e.code, e.message),
                )),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

/// The DeleteTopics API: its versions, handler and the rest of its story (see [`Api`]).
pub struct DeleteTopics;

impl Api for DeleteTopics {
    const KEY: ApiKey = ApiKey::DeleteTopics;
    const VERSIONS: (i16, i16) = (1, 6);
    const QUOTA: Quota = Quota::ControllerMutation;
    type Request = DeleteTopicsRequest;
    type Response = DeleteTopicsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        r.responses.iter().for_each(|t| count(t.error_code));
    }

    fn audit(r: &Self::Request) -> Option<Vec<(String, String)>> {
        let mut items: Vec<(String, String)> = Vec::new();
        for n in &r.topic_names {
            items.push((format!("topic:{}", n.as_str()), "delete".into()));
        }
        for t in &r.topics {
            let name = match &t.name {
                Some(n) => n.to_string(),
                None => format!("id={}", t.topic_id),
            };
            items.push((format!("topic:{name}"), "delete".into()));
        }
        Some(items)
    }

    fn audit_results(r: &Self::Response) -> (Vec<i16>, i16) {
        (r.responses.iter().map(|t| t.error_code).collect(), 0)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
