use std::sync::Arc;

use bytes::BytesMut;
use strom_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use strom_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use strom_protocol::{error_code as ec, str_bytes};

use super::{message, since, storage_error_code};
use crate::broker::Broker;
use crate::registry::RequestContext;
use crate::security::acl::{Operation, ResourceType};
use crate::topics;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ProduceRequest,
) -> ProduceResponse {
    let acks_ok = matches!(req.acks, -1..=1);
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut appended = false;
    let txn_denied = req.transactional_id.as_ref().is_some_and(|id| {
        !broker.authorize(ctx, Operation::Write, ResourceType::TransactionalId, id)
    });
    for topic in req.topic_data {
        let mut image = broker.image();
        let by_id = ctx.api_version >= 13;
        let mut info = if by_id {
            image.topic_by_id(&topic.topic_id).cloned()
        } else {
            image.topic(topic.name.as_str()).cloned()
        };
        let name = match &info {
            Some(t) => Some(t.name.clone()),
            None if !by_id => Some(topic.name.to_string()),
            None => None,
        };
        let denied: Option<(i16, String)> = if txn_denied {
            Some((
                ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                "WRITE on the transactional id is not allowed".into(),
            ))
        } else if name
            .as_ref()
            .is_some_and(|n| !broker.authorize(ctx, Operation::Write, ResourceType::Topic, n))
        {
            Some((
                ec::TOPIC_AUTHORIZATION_FAILED,
                "WRITE on the topic is not allowed".into(),
            ))
        } else {
            None
        };
        if info.is_none()
            && !by_id
            && denied.is_none()
            && broker.config.get_bool("auto.create.topics.enable")
            && broker.authorize_create(ctx, topic.name.as_str())
        {
            let _guard = broker.controller.lock().await;
            if topics::create_topic(
                broker,
                topic.name.as_str(),
                -1,
                -1,
                Default::default(),
                false,
            )
            .is_ok()
            {
                image = broker.image();
                info = image.topic(topic.name.as_str()).cloned();
            }
        }
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for pd in topic.partition_data {
            let mut resp = PartitionProduceResponse::default()
                .with_index(pd.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let hosted = info
                .as_ref()
                .and_then(|t| broker.replicas.get(&t.name, pd.index));
            let (code, text) = match (&info, hosted, pd.records) {
                _ if denied.is_some() => denied.clone().unwrap_or_default(),
                (_, _, _) if !acks_ok => (
                    ec::INVALID_REQUIRED_ACKS,
                    format!("acks must be -1, 0 or 1, got {}", req.acks),
                ),
                (None, _, _) => (
                    if by_id {
                        ec::UNKNOWN_TOPIC_ID
                    } else {
                        ec::UNKNOWN_TOPIC_OR_PARTITION
                    },
                    "unknown topic".to_string(),
                ),
                (Some(_), None, _) => (
                    ec::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("no partition {}", pd.index),
                ),
                (Some(_), Some(_), None) => (ec::INVALID_RECORD, "no records".to_string()),
                (Some(_), Some(p), Some(records))
                    if !transaction_verified(broker, &records, &p.topic, p.index) =>
                {
                    (
                        ec::INVALID_TXN_STATE,
                        format!(
                            "transactional write to {}-{} outside the producer's open transaction",
                            p.topic, p.index
                        ),
                    )
                }
                (Some(_), Some(p), Some(records)) => {
                    let mut buf = BytesMut::from(records);
                    let now = crate::now_ms();
                    match p.with_log(|l| l.append(&mut buf, p.leader_epoch, now)) {
                        Ok(info) => {
                            appended = true;
                            resp = resp
                                .with_base_offset(info.base_offset)
                                .with_log_append_time_ms(info.log_append_time_ms)
                                .with_log_start_offset(if ctx.api_version >= 5 {
                                    info.log_start_offset
                                } else {
                                    -1
                                });
                            (ec::NONE, String::new())
                        }
                        Err(e) => {
                            tracing::debug!(topic = %p.topic, partition = p.index, peer = %ctx.peer, error = %e, "produce rejected");
                            (storage_error_code(&e), e.to_string())
                        }
                    }
                }
            };
            partitions.push(resp.with_error_code(code).with_error_message(since(
                ctx.api_version,
                8,
                message(code, text),
            )));
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(if by_id {
                    TopicName(str_bytes(""))
                } else {
                    topic.name
                })
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partitions),
        );
    }
    if appended {
        broker.replicas.appended.notify_waiters();
    }
    ProduceResponse::default().with_responses(responses)
}

/// A transactional batch may only land in a partition that its producer added to its open
/// transaction at its current epoch; otherwise a late write of an ended transaction could
/// slip into the next one.
fn transaction_verified(broker: &Broker, records: &[u8], topic: &str, partition: i32) -> bool {
    match strom_storage::BatchHeader::parse(records) {
        Ok(h) if h.is_transactional() && h.producer_id >= 0 => {
            broker
                .txns
                .verify_partition(h.producer_id, h.producer_epoch, topic, partition)
        }
        _ => true,
    }
}
