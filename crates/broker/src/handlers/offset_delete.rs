//! OffsetDelete: drops a group's committed offsets for topics it is not subscribed to. With an
//! authorizer, the group needs DELETE (GROUP_AUTHORIZATION_FAILED) and each topic READ
//! (TOPIC_AUTHORIZATION_FAILED per partition).

use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use strom_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;
use crate::group;
use crate::handlers::Api;
use crate::request::RequestContext;
use crate::security::acl::{Operation, ResourceType};

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = req.group_id.as_str().to_string();
    if !broker.authorize(ctx, Operation::Delete, ResourceType::Group, &group_id) {
        return OffsetDeleteResponse::default().with_error_code(ec::GROUP_AUTHORIZATION_FAILED);
    }
    let subscribed = match broker.groups.offset_delete_check(&group_id) {
        Ok(s) => s,
        Err(code) => return OffsetDeleteResponse::default().with_error_code(code),
    };
    let mut records = Vec::new();
    let mut keys = Vec::new();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.as_str().to_string();
            let busy = subscribed.contains(&name);
            let readable = broker.authorize_topic(ctx, Operation::Read, &name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if !readable {
                        ec::TOPIC_AUTHORIZATION_FAILED
                    } else if busy {
                        ec::GROUP_SUBSCRIBED_TO_TOPIC
                    } else {
                        records.push(group::offset_record(
                            &group_id,
                            &name,
                            p.partition_index,
                            None,
                        ));
                        keys.push((name.clone(), p.partition_index));
                        ec::NONE
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    if let Err(code) = broker.groups.persist(&**broker, &group_id, records) {
        return OffsetDeleteResponse::default().with_error_code(code);
    }
    broker.groups.forget_offsets(&group_id, &keys);
    OffsetDeleteResponse::default().with_topics(topics)
}

/// The OffsetDelete API: its versions, handler and the rest of its story (see [`Api`]).
pub struct OffsetDelete;

impl Api for OffsetDelete {
    const KEY: ApiKey = ApiKey::OffsetDelete;
    const VERSIONS: (i16, i16) = (0, 0);
    type Request = OffsetDeleteRequest;
    type Response = OffsetDeleteResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        count(r.error_code);
        r.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code));
    }

    fn audit(r: &Self::Request) -> Option<Vec<(String, String)>> {
        let mut items: Vec<(String, String)> = Vec::new();
        for t in &r.topics {
            for p in &t.partitions {
                items.push((
                    format!("group:{}", r.group_id.as_str()),
                    format!(
                        "delete committed offset of {}-{}",
                        t.name.as_str(),
                        p.partition_index
                    ),
                ));
            }
        }
        Some(items)
    }

    fn audit_results(r: &Self::Response) -> (Vec<i16>, i16) {
        (
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
            r.error_code,
        )
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
