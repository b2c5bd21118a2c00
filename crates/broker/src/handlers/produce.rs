use std::sync::Arc;

use strom_protocol::ApiKey;
use strom_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use strom_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use strom_protocol::{error_code as ec, str_bytes};

use super::{message, since, storage_error_code};
use crate::broker::Broker;
use crate::delayed::Waiter;
use crate::handlers::{Api, Quota};
use crate::replica_manager::Partition;
use crate::request::RequestContext;
use crate::security::acl::{Operation, ResourceType};
use crate::topics;

/// A write whose acknowledgement waits: for an fsync (flush.messages came due) or for the
/// in-sync replicas (acks=all).
struct PendingWrite {
    partition: Arc<Partition>,
    /// The log end offset just after the write.
    end_offset: i64,
    /// The leader epoch the write was appended in.
    leader_epoch: i32,
    /// Where its answer goes in the response.
    topic_index: usize,
    partition_index: usize,
}

impl PendingWrite {
    fn answer<'a>(
        &self,
        responses: &'a mut [TopicProduceResponse],
    ) -> &'a mut PartitionProduceResponse {
        &mut responses[self.topic_index].partition_responses[self.partition_index]
    }
}

/// A Produce whose records are in the logs; its response waits for the fsyncs that
/// flush.messages asks for, if any.
pub struct Appended {
    response: ProduceResponse,
    /// Writes whose flush.messages came due.
    to_flush: Vec<PendingWrite>,
    /// acks=all writes to replicated partitions.
    to_replicate: Vec<PendingWrite>,
    timeout_ms: i32,
    api_version: i16,
}

impl Appended {
    /// Whether the response must wait for an fsync or for followers.
    pub fn needs_flush(&self) -> bool {
        !self.to_flush.is_empty() || !self.to_replicate.is_empty()
    }

    /// The response, once every partition it acknowledges is durable as configured and, for
    /// acks=all, on every in-sync replica.
    pub async fn finish(self) -> ProduceResponse {
        let mut response = self.response;
        flush_before_acknowledging(self.api_version, self.to_flush, &mut response.responses).await;
        if !self.to_replicate.is_empty() {
            wait_for_replicas(
                self.api_version,
                self.to_replicate,
                self.timeout_ms,
                &mut response.responses,
            )
            .await;
        }
        response
    }
}

/// Waits until the high watermark of each partition passes the acks=all write (the whole ISR
/// has it), up to the request's timeout (REQUEST_TIMED_OUT); a leader that lost its leadership
/// meanwhile answers NOT_LEADER_OR_FOLLOWER.
async fn wait_for_replicas(
    api_version: i16,
    to_replicate: Vec<PendingWrite>,
    timeout_ms: i32,
    responses: &mut [TopicProduceResponse],
) {
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_millis(timeout_ms.max(0) as u64);
    for w in to_replicate {
        let p = &w.partition;
        let mut waiter = Waiter::new();
        p.watch(&mut waiter);
        let code = loop {
            if p.leader_epoch() != w.leader_epoch || !p.is_leader() {
                break ec::NOT_LEADER_OR_FOLLOWER;
            }
            if p.high_watermark() >= w.end_offset {
                break ec::NONE;
            }
            if !waiter.wait_until(deadline).await {
                break if p.high_watermark() >= w.end_offset {
                    ec::NONE
                } else {
                    ec::REQUEST_TIMED_OUT
                };
            }
        };
        if code != ec::NONE {
            let r = w.answer(responses);
            r.error_code = code;
            r.base_offset = -1;
            let text = if code == ec::REQUEST_TIMED_OUT {
                format!(
                    "not on every in-sync replica of {}-{} within {timeout_ms} ms",
                    p.topic, p.index
                )
            } else {
                format!(
                    "leadership of {}-{} moved before the write was replicated",
                    p.topic, p.index
                )
            };
            r.error_message = since(api_version, 8, message(code, text));
        }
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ProduceRequest,
) -> ProduceResponse {
    handle_appends(broker, ctx, req).await.finish().await
}

/// Appends the records; the fsyncs flush.messages asks for are left to [`Appended::finish`],
/// so that the connection can go on with its next request meanwhile.
pub async fn handle_appends(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ProduceRequest,
) -> Appended {
    let acks_ok = matches!(req.acks, -1..=1);
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut to_flush = Vec::new();
    let mut to_replicate = Vec::new();
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
            && broker.config.settings().auto_create_topics_enable
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
        let min_isr: usize = info
            .as_ref()
            .and_then(|t| broker.config.topic_value(&t.configs, "min.insync.replicas"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
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
                (Some(_), Some(p), Some(_)) if !p.is_leader() => (
                    ec::NOT_LEADER_OR_FOLLOWER,
                    format!("this broker does not lead {}-{}", p.topic, p.index),
                ),
                (Some(_), Some(p), Some(_))
                    if req.acks == -1 && p.is_replicated() && p.isr_size() < min_isr =>
                {
                    (
                        ec::NOT_ENOUGH_REPLICAS,
                        format!(
                            "{}-{} has {} in-sync replicas, fewer than min.insync.replicas={min_isr}",
                            p.topic,
                            p.index,
                            p.isr_size()
                        ),
                    )
                }
                (Some(_), Some(p), Some(records))
                    if !transaction_verified(
                        broker,
                        &records,
                        &p.topic,
                        p.index,
                        ctx.api_version,
                    ) =>
                {
                    stale_epoch_or_txn_state(broker, &records, &p.topic, p.index)
                }
                (Some(_), Some(p), Some(records)) => {
                    let now = crate::now_ms();
                    // The records stay a slice of the request frame: the log writes patched
                    // copies of the batch headers around them.
                    match p.append(&records, now) {
                        Ok((info, flush_due)) => {
                            let pending = || PendingWrite {
                                partition: p.clone(),
                                end_offset: info.last_offset + 1,
                                leader_epoch: p.leader_epoch(),
                                topic_index: responses.len(),
                                partition_index: partitions.len(),
                            };
                            if req.acks == -1 && p.is_replicated() {
                                to_replicate.push(pending());
                            }
                            if flush_due {
                                to_flush.push(pending());
                            }
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
    Appended {
        response: ProduceResponse::default().with_responses(responses),
        to_flush,
        to_replicate,
        timeout_ms: req.timeout_ms,
        api_version: ctx.api_version,
    }
}

/// Waits for the fsyncs that flush.messages asks for, all partitions at once; a partition whose
/// fsync fails answers KAFKA_STORAGE_ERROR.
async fn flush_before_acknowledging(
    api_version: i16,
    to_flush: Vec<PendingWrite>,
    responses: &mut [TopicProduceResponse],
) {
    let mut results = Vec::with_capacity(to_flush.len());
    if let [w] = &to_flush[..] {
        results.push(w.partition.flush_to(w.end_offset).await);
    } else {
        let waits: Vec<_> = to_flush
            .iter()
            .map(|w| {
                let (p, end) = (w.partition.clone(), w.end_offset);
                tokio::spawn(async move { p.flush_to(end).await })
            })
            .collect();
        for w in waits {
            results.push(w.await.map_err(std::io::Error::other).and_then(|r| r));
        }
    }
    for (w, result) in to_flush.iter().zip(results) {
        if let Err(e) = result {
            let p = &w.partition;
            tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "fsync failed");
            let code = ec::KAFKA_STORAGE_ERROR;
            let r = w.answer(responses);
            r.error_code = code;
            r.base_offset = -1;
            r.error_message = since(api_version, 8, message(code, e.to_string()));
        }
    }
}

/// A transactional batch may only land in a partition that its producer added to its open
/// transaction at its current epoch; otherwise a late write of an ended transaction could
/// slip into the next one.
/// With transactions v2 (Produce v12+), the write itself adds the partition to the producer's
/// transaction.
fn transaction_verified(
    broker: &Broker,
    records: &[u8],
    topic: &str,
    partition: i32,
    version: i16,
) -> bool {
    match strom_storage::BatchHeader::parse(records) {
        // In a cluster the producer's coordinator may be another broker: only the
        // coordinator's own partitions are checked here.
        Ok(h)
            if h.is_transactional()
                && broker.quorum.is_some()
                && !broker.txns.knows_producer(broker, h.producer_id) =>
        {
            true
        }
        Ok(h) if h.is_transactional() && h.producer_id >= 0 => {
            broker
                .txns
                .verify_partition(h.producer_id, h.producer_epoch, topic, partition)
                || (version >= 12
                    && broker.txns.add_partition_implicitly(
                        broker,
                        h.producer_id,
                        h.producer_epoch,
                        topic,
                        partition,
                    ))
        }
        _ => true,
    }
}

/// Why a transactional write was refused: an epoch older than the coordinator's (a fenced or
/// finished producer), or a partition outside the open transaction.
fn stale_epoch_or_txn_state(
    broker: &Broker,
    records: &[u8],
    topic: &str,
    partition: i32,
) -> (i16, String) {
    if let Ok(h) = strom_storage::BatchHeader::parse(records)
        && broker
            .txns
            .current_epoch(h.producer_id)
            .is_some_and(|current| h.producer_epoch < current)
    {
        return (
            ec::INVALID_PRODUCER_EPOCH,
            format!(
                "producer {} wrote to {topic}-{partition} with epoch {}, older than its current one",
                h.producer_id, h.producer_epoch
            ),
        );
    }
    (
        ec::INVALID_TXN_STATE,
        format!(
            "transactional write to {topic}-{partition} outside the producer's open transaction"
        ),
    )
}

/// The Produce API: its versions, handler and the rest of its story (see [`Api`]).
pub struct Produce;

impl Api for Produce {
    const KEY: ApiKey = ApiKey::Produce;
    const VERSIONS: (i16, i16) = (0, 12);
    const QUOTA: Quota = Quota::ProducedBytes;
    type Request = ProduceRequest;
    type Response = ProduceResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        r.responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| count(p.error_code));
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
