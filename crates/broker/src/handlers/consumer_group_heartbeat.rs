//! ConsumerGroupHeartbeat (KIP-848): join, stay in and leave a consumer group; the coordinator
//! answers with the member epoch and, when it changed, the member's assignment.
//!
//! With an authorizer (READ on the group is checked before dispatch), a subscription by name
//! needs DESCRIBE on every named topic (else TOPIC_AUTHORIZATION_FAILED and no change), and a
//! pattern subscription resolves only to topics the member's principal may describe.

use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use strom_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use strom_protocol::str_bytes;

use crate::broker::Broker;
use crate::group::assignor::Partitions;
use crate::group::consumer::{HeartbeatIn, Refused, STATIC_LEAVE_EPOCH};
use crate::group::consumer_ops::ImageTopics;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::{Operation, ResourceType};

fn error(code: i16, message: String) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(code)
        .with_error_message(Some(str_bytes(message)))
}

/// Checks a request as Kafka does before it reaches the group.
fn validate(v: i16, req: &ConsumerGroupHeartbeatRequest) -> Result<(), Refused> {
    let bad = |m: &str| Err(Refused(ec::INVALID_REQUEST, m.to_string()));
    if req.group_id.is_empty() {
        return bad("group id can't be empty");
    }
    if req.instance_id.as_ref().is_some_and(|i| i.is_empty()) {
        return bad("instance id can't be empty");
    }
    if req.member_epoch < STATIC_LEAVE_EPOCH {
        return bad("member epoch is invalid");
    }
    if req.member_id.is_empty() && (v >= 1 || req.member_epoch != 0) {
        return bad("member id can't be empty");
    }
    if req.member_epoch == STATIC_LEAVE_EPOCH && req.instance_id.is_none() {
        return bad("instance id can't be null when leaving with epoch -2");
    }
    if req.member_epoch == 0 {
        if req.rebalance_timeout_ms == -1 {
            return bad("rebalance timeout must be given when joining");
        }
        if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
            return bad("subscribed topic names or regex must be given when joining");
        }
        if req.topic_partitions.as_ref().is_none_or(|p| !p.is_empty()) {
            return bad("owned topic partitions must be empty when joining");
        }
    }
    Ok(())
}

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    if let Err(Refused(code, message)) = validate(ctx.api_version, &req) {
        return error(code, message);
    }
    if let Some(names) = &req.subscribed_topic_names {
        let denied: Vec<&str> = names
            .iter()
            .map(|t| t.as_str())
            .filter(|t| !broker.authorize_topic(ctx, Operation::Describe, t))
            .collect();
        if !denied.is_empty() {
            return ConsumerGroupHeartbeatResponse::default()
                .with_error_code(ec::TOPIC_AUTHORIZATION_FAILED)
                .with_error_message(Some(str_bytes(format!(
                    "not authorized to describe topics {}",
                    denied.join(", ")
                ))));
        }
    }
    if let Err(code) = broker.groups.ensure_offsets_topic(&**broker).await {
        return error(code, "the group coordinator is not available".into());
    }
    let topics = ImageTopics(broker.image());
    let mut member_id = req.member_id.as_str().to_string();
    if member_id.is_empty() {
        // v0: the coordinator names a new member.
        member_id = uuid::Uuid::new_v4().to_string();
    }
    let owned = req.topic_partitions.as_ref().map(|tps| {
        let mut p = Partitions::new();
        for tp in tps {
            if let Some(name) = topics.name(&tp.topic_id) {
                p.entry(name)
                    .or_default()
                    .extend(tp.partitions.iter().copied());
            }
        }
        p
    });
    let group_id = req.group_id.as_str().to_string();
    let input = HeartbeatIn {
        member_id,
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.as_str().to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.as_str().to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topics: req
            .subscribed_topic_names
            .as_ref()
            .map(|ts| ts.iter().map(|t| t.as_str().to_string()).collect()),
        subscribed_regex: req
            .subscribed_topic_regex
            .as_ref()
            .map(|s| s.as_str().to_string()),
        server_assignor: req.server_assignor.as_ref().map(|s| s.as_str().to_string()),
        owned,
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", ctx.peer.ip()),
    };
    tracing::debug!(
        group = %group_id,
        member = %input.member_id,
        epoch = input.member_epoch,
        topics = ?input.subscribed_topics,
        regex = ?input.subscribed_regex,
        owned = ?input.owned,
        "consumer group heartbeat"
    );
    let write = |records| broker.groups.persist(&**broker, &group_id, records);
    let visible =
        |t: &str| broker.authorize_quietly(ctx, Operation::Describe, ResourceType::Topic, t);
    match broker
        .groups
        .consumer_heartbeat(&group_id, input, &topics, &visible, &write)
    {
        Err(Refused(code, message)) => error(code, message),
        Ok(out) => {
            let assignment = out.assignment.map(|p| {
                Assignment::default().with_topic_partitions(
                    topics
                        .to_ids(&p)
                        .into_iter()
                        .map(|(id, ps)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(ps)
                        })
                        .collect(),
                )
            });
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(str_bytes(out.member_id)))
                .with_member_epoch(out.member_epoch)
                .with_heartbeat_interval_ms(broker.groups.config().consumer.heartbeat_interval_ms)
                .with_assignment(assignment)
        }
    }
}

/// The ConsumerGroupHeartbeat API: its versions, handler and the rest of its story (see [`Api`]).
pub struct ConsumerGroupHeartbeat;

impl Api for ConsumerGroupHeartbeat {
    const KEY: ApiKey = ApiKey::ConsumerGroupHeartbeat;
    const VERSIONS: (i16, i16) = (0, 1);
    type Request = ConsumerGroupHeartbeatRequest;
    type Response = ConsumerGroupHeartbeatResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_response(_req: &Self::Request, _version: i16, code: i16) -> Option<Self::Response> {
        Some(Self::Response::default().with_error_code(code))
    }

    fn authorize(
        broker: &Broker,
        ctx: &RequestContext,
        req: &Self::Request,
    ) -> Option<Self::Response> {
        super::authorize_group::<Self>(broker, ctx, req, &req.group_id)
    }

    fn route(broker: &Broker, ctx: &RequestContext, req: &Self::Request) -> Option<Self::Response> {
        super::route_group::<Self>(broker, ctx, req, &req.group_id)
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
