//! ConsumerGroupDescribe (KIP-848): a consumer group's epochs, assignor and members with their
//! current and target assignments. With an authorizer, each group needs DESCRIBE
//! (GROUP_AUTHORIZATION_FAILED), and a group whose members subscribe to or are assigned a
//! topic the principal may not describe answers TOPIC_AUTHORIZATION_FAILED.

use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use strom_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use strom_protocol::{error_code as ec, str_bytes};

use crate::broker::Broker;
use crate::group::assignor::Partitions;
use crate::group::consumer::Refused;
use crate::group::consumer_ops::ImageTopics;
use crate::handlers::Api;
use crate::handlers::since;
use crate::request::RequestContext;
use crate::security::acl::{OPERATIONS_NOT_REQUESTED, Operation, ResourceType};

fn assignment(topics: &ImageTopics, p: &Partitions) -> Assignment {
    Assignment::default().with_topic_partitions(
        p.iter()
            .filter_map(|(name, ps)| {
                topics.id(name).map(|id| {
                    TopicPartitions::default()
                        .with_topic_id(id)
                        .with_topic_name(TopicName(str_bytes(name.clone())))
                        .with_partitions(ps.iter().copied().collect())
                })
            })
            .collect(),
    )
}

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let topics = ImageTopics(broker.image());
    let groups = req
        .group_ids
        .into_iter()
        .map(|id| {
            let g = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(OPERATIONS_NOT_REQUESTED);
            if !broker.authorize(ctx, Operation::Describe, ResourceType::Group, id.as_str()) {
                return g.with_error_code(ec::GROUP_AUTHORIZATION_FAILED);
            }
            let g = if req.include_authorized_operations {
                g.with_authorized_operations(broker.authorized_operations(
                    ctx,
                    ResourceType::Group,
                    id.as_str(),
                ))
            } else {
                g
            };
            match broker.groups.consumer_describe(id.as_str()) {
                Err(Refused(code, message)) => g
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(message))),
                Ok(view)
                    if view.members.iter().any(|m| {
                        m.subscribed_topics
                            .iter()
                            .chain(m.assigned.keys())
                            .chain(m.target.keys())
                            .any(|t| {
                                !broker.authorize_quietly(
                                    ctx,
                                    Operation::Describe,
                                    ResourceType::Topic,
                                    t,
                                )
                            })
                    }) =>
                {
                    g.with_error_code(ec::TOPIC_AUTHORIZATION_FAILED)
                        .with_error_message(Some(str_bytes(
                            "the group uses topics the principal may not describe".to_string(),
                        )))
                }
                Ok(view) => g
                    .with_group_state(str_bytes(view.state))
                    .with_group_epoch(view.group_epoch)
                    .with_assignment_epoch(view.assignment_epoch)
                    .with_assignor_name(str_bytes(view.assignor))
                    .with_members(
                        view.members
                            .into_iter()
                            .map(|m| {
                                Member::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_instance_id(m.instance_id.map(str_bytes))
                                    .with_rack_id(m.rack_id.map(str_bytes))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed_topics
                                            .into_iter()
                                            .map(|t| TopicName(str_bytes(t)))
                                            .collect(),
                                    )
                                    .with_subscribed_topic_regex(m.subscribed_regex.map(str_bytes))
                                    .with_assignment(assignment(&topics, &m.assigned))
                                    .with_target_assignment(assignment(&topics, &m.target))
                                    // 1: a member of the consumer protocol.
                                    .with_member_type(since(ctx.api_version, 1, 1))
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

/// The ConsumerGroupDescribe API: its versions, handler and the rest of its story (see [`Api`]).
pub struct ConsumerGroupDescribe;

impl Api for ConsumerGroupDescribe {
    const KEY: ApiKey = ApiKey::ConsumerGroupDescribe;
    const VERSIONS: (i16, i16) = (0, 1);
    type Request = ConsumerGroupDescribeRequest;
    type Response = ConsumerGroupDescribeResponse;

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
