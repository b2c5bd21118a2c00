use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use strom_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::describe_configs::topic_config_entries;
use super::message;
use crate::broker::Broker;
use crate::handlers::{Api, Quota};
use crate::request::RequestContext;
use crate::security::audit;
use crate::topics::{self, ApiError};

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let _guard = broker.controller.lock().await;
    let mutations = broker.mutation_quota(ctx, ctx.api_version >= 6);
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.as_str().to_string()))
        .map(|t| t.name.as_str().to_string())
        .collect();
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.as_str().to_string();
        let mut result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let outcome = if duplicates.contains(&name) {
            Err(ApiError::new(
                ec::INVALID_REQUEST,
                format!("topic {name:?} appears more than once in the request"),
            ))
        } else if !broker.authorize_create(ctx, &name) {
            Err(ApiError::new(
                ec::TOPIC_AUTHORIZATION_FAILED,
                "CREATE on the cluster or the topic is not allowed",
            ))
        } else if mutations.exceeded() {
            Err(ApiError::new(
                ec::THROTTLING_QUOTA_EXCEEDED,
                "the client is over its controller_mutation_rate quota",
            ))
        } else if !t.assignments.is_empty() {
            Err(ApiError::new(
                ec::INVALID_REPLICA_ASSIGNMENT,
                "manual replica assignment is not supported yet; give partitions and replication factor",
            ))
        } else {
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                if let Some(v) = &c.value {
                    configs.insert(c.name.as_str().to_string(), v.as_str().to_string());
                }
            }
            topics::create_topic(
                broker,
                &name,
                t.num_partitions,
                t.replication_factor as i32,
                configs.clone(),
                req.validate_only,
            )
            .map(|r| (r, configs))
        };
        match outcome {
            Ok(((id, partitions, rf), overrides)) => {
                if !req.validate_only {
                    mutations.record(partitions.max(0) as usize);
                }
                let configs = topic_config_entries(broker, &overrides, None)
                    .into_iter()
                    .map(|e| {
                        CreatableTopicConfigs::default()
                            .with_name(e.name)
                            .with_value(e.value)
                            .with_read_only(e.read_only)
                            .with_config_source(e.config_source)
                            .with_is_sensitive(false)
                    })
                    .collect();
                if ctx.api_version >= 5 {
                    result = result
                        .with_num_partitions(partitions)
                        .with_replication_factor(rf as i16);
                    // The configs are shown to those who may describe them.
                    result = if broker.authorize_quietly(
                        ctx,
                        crate::security::acl::Operation::DescribeConfigs,
                        crate::security::acl::ResourceType::Topic,
                        &name,
                    ) {
                        result.with_configs(Some(configs))
                    } else {
                        result.with_topic_config_error_code(ec::TOPIC_AUTHORIZATION_FAILED)
                    };
                }
                if ctx.api_version >= 7 && !req.validate_only {
                    result = result.with_topic_id(id);
                }
            }
            Err(e) => {
                result = result
                    .with_error_code(e.code)
                    .with_error_message(message(e.code, e.message))
                    .with_topic_config_error_code(
                        if e.code == ec::INVALID_CONFIG && ctx.api_version >= 5 {
                            e.code
                        } else {
                            0
                        },
                    );
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// The CreateTopics API: its versions, handler and the rest of its story (see [`Api`]).
pub struct CreateTopics;

impl Api for CreateTopics {
    const KEY: ApiKey = ApiKey::CreateTopics;
    const VERSIONS: (i16, i16) = (2, 7);
    const QUOTA: Quota = Quota::ControllerMutation;
    type Request = CreateTopicsRequest;
    type Response = CreateTopicsResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        r.topics.iter().for_each(|t| count(t.error_code));
    }

    fn audit(r: &Self::Request) -> Option<Vec<(String, String)>> {
        let mut items: Vec<(String, String)> = Vec::new();
        for t in &r.topics {
            items.push((
                format!("topic:{}", t.name.as_str()),
                format!(
                    "create partitions={} replication.factor={} {}{}",
                    t.num_partitions,
                    t.replication_factor,
                    audit::configs(t.configs.iter().map(|c| c.name.to_string()).collect()),
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
        (r.topics.iter().map(|t| t.error_code).collect(), 0)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
