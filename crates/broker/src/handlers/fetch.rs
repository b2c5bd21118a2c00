//! Fetch: whole batches from each partition's log, long-polling until `min_bytes` are there or
//! `max_wait_ms` has passed. Responses honour `max_bytes` for the whole response and
//! `partition_max_bytes` per partition; the first batch is returned even when larger, so that a
//! consumer always makes progress.
//!
//! The handler returns the records of each partition as file slices of its log
//! ([`FetchParts`]); the connection writes them with sendfile on plaintext connections, so
//! record bytes never pass through user space. [`handle`] copies them into the response for
//! callers that need the whole response in memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_protocol::ApiKey;
use strom_protocol::error_code as ec;
use strom_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use strom_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId};
use strom_storage::StorageError;

use super::storage_error_code;
use crate::broker::Broker;
use crate::delayed::Waiter;
use crate::handlers::{Api, Quota};
use crate::replica_manager::Partition;
use crate::request::RequestContext;
use crate::send::PartitionRecords;

/// One requested partition, resolved once.
struct Wanted {
    topic_index: usize,
    partition: i32,
    fetch_offset: i64,
    max_bytes: i32,
    hosted: Result<Arc<Partition>, i16>,
    /// A follower's fetch reads the whole log; a consumer's only below the high watermark.
    replica: bool,
}

/// A Fetch response whose records are still in the logs: the response's records fields are
/// empty, and `records[i]` belongs to the i-th partition in response order (topics, then their
/// partitions).
#[derive(Debug)]
pub struct FetchParts {
    pub response: FetchResponse,
    pub records: Vec<PartitionRecords>,
}

impl FetchParts {
    /// Counts the records about to be sent in their topics' bytes-out metric.
    pub fn count_bytes_out(&self) {
        for r in &self.records {
            if let Some(c) = &r.bytes_out {
                c.inc_by(u64::from(r.len));
            }
        }
    }

    /// The response with the records copied in. A partition whose records cannot be read
    /// answers KAFKA_STORAGE_ERROR.
    pub fn into_response(self) -> FetchResponse {
        let mut response = self.response;
        let mut records = self.records.into_iter();
        for topic in &mut response.responses {
            for p in &mut topic.partitions {
                let Some(r) = records.next() else { break };
                match r.read_to_vec() {
                    Ok(data) => p.records = Some(Bytes::from(data)),
                    Err(e) => {
                        tracing::warn!(partition = p.partition_index, error = %e, "fetch read failed");
                        p.error_code = ec::KAFKA_STORAGE_ERROR;
                        p.records = Some(Bytes::new());
                    }
                }
            }
        }
        response
    }
}

/// Fetch with the records copied into the response.
pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: FetchRequest,
) -> FetchResponse {
    let parts = handle_parts(broker, ctx, req).await;
    parts.count_bytes_out();
    parts.into_response()
}

/// Fetch with the records left in the logs as file slices.
pub async fn handle_parts(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: FetchRequest,
) -> FetchParts {
    let by_id = ctx.api_version >= 13;
    if ctx.api_version >= 7 && req.session_id != 0 {
        // strom does not keep fetch sessions; a client that thinks it has one starts over.
        return FetchParts {
            response: FetchResponse::default().with_error_code(ec::FETCH_SESSION_ID_NOT_FOUND),
            records: Vec::new(),
        };
    }
    let image = broker.image();
    // A follower broker fetching as a replica (replica id >= 0; in the replica state from v15).
    let replica_id = if ctx.api_version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let replica = replica_id >= 0;
    if replica && !broker.authorize_cluster(ctx, crate::security::acl::Operation::ClusterAction) {
        return FetchParts {
            response: FetchResponse::default()
                .with_error_code(ec::CLUSTER_AUTHORIZATION_FAILED)
                .with_session_id(0),
            records: Vec::new(),
        };
    }
    if replica && broker.is_isolated() {
        // Fault injection: the follower's request never arrives.
        tokio::time::sleep(Duration::from_millis(req.max_wait_ms.clamp(0, 5000) as u64)).await;
        return FetchParts {
            response: FetchResponse::default()
                .with_error_code(ec::UNKNOWN_SERVER_ERROR)
                .with_session_id(0),
            records: Vec::new(),
        };
    }
    let now = crate::now_ms();
    let mut topics_out = Vec::with_capacity(req.topics.len());
    let mut wanted = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let info = if by_id {
            image.topic_by_id(&t.topic_id)
        } else {
            image.topic(t.topic.as_str())
        };
        topics_out.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id),
        );
        let readable = replica
            || info.is_none_or(|i| {
                broker.authorize_topic(ctx, crate::security::acl::Operation::Read, &i.name)
            });
        for p in &t.partitions {
            let hosted = match info {
                None if by_id => Err(ec::UNKNOWN_TOPIC_ID),
                None => Err(ec::UNKNOWN_TOPIC_OR_PARTITION),
                Some(_) if !readable => Err(ec::TOPIC_AUTHORIZATION_FAILED),
                Some(info) => broker
                    .replicas
                    .get(&info.name, p.partition)
                    .ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION)
                    .and_then(|part| {
                        leader_check(&part, ctx.api_version, p.current_leader_epoch).map(|_| part)
                    }),
            };
            if replica && let Ok(part) = &hosted {
                // The follower's fetch offset is its log end: it may move the high watermark
                // and bring the follower (back) into the ISR.
                let (_, change) = part.on_follower_fetch(replica_id, p.fetch_offset, now);
                if let Some(change) = change {
                    tracing::info!(topic = %part.topic, partition = part.index, follower = replica_id, isr = ?change.new_isr, "follower caught up; expanding the ISR");
                    broker.replicas.propose_isr(part.clone(), change);
                }
            }
            wanted.push(Wanted {
                topic_index: ti,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                hosted,
                replica,
            });
        }
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let min_bytes = req.min_bytes.max(0) as u64;
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX as u64
    } else {
        req.max_bytes as u64
    };
    // read_committed: only up to the last stable offset, with the aborted transactions in range.
    let committed = req.isolation_level == 1;
    // A fetch that comes up short waits on the partitions it reads, woken only by their changes
    // ([`crate::delayed`]). It registers after its first read and reads once more before it
    // sleeps, so an append in between is seen either way.
    let mut waiter = None;
    let results = loop {
        let (results, total, any_error) = read_all(&wanted, max_bytes, ctx.api_version, committed);
        let now = Instant::now();
        if total >= min_bytes || any_error || now >= deadline {
            break results;
        }
        let waiter = match &mut waiter {
            Some(w) => w,
            None => {
                let mut w = Waiter::new();
                for part in wanted.iter().filter_map(|w| w.hosted.as_ref().ok()) {
                    part.watch(&mut w);
                }
                waiter = Some(w);
                continue;
            }
        };
        let woken = waiter
            .wait_until(tokio::time::Instant::from_std(deadline))
            .await;
        ctx.remote.add(now.elapsed());
        if !woken {
            break read_all(&wanted, max_bytes, ctx.api_version, committed).0;
        }
    };
    // `wanted` lists the partitions topic by topic, in request order: response order.
    let mut records = Vec::with_capacity(results.len());
    for (w, (data, mut recs)) in wanted.iter().zip(results) {
        if let Ok(p) = &w.hosted
            && let Some(m) = &p.metrics
        {
            recs.bytes_out = Some(m.bytes_out.clone());
        }
        topics_out[w.topic_index].partitions.push(data);
        records.push(recs);
    }
    FetchParts {
        response: FetchResponse::default()
            .with_responses(topics_out)
            .with_session_id(0),
        records,
    }
}

/// Only the leader serves fetches, and only for the leader epoch the fetcher knows when it
/// names one (v9+): an older one is FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH.
pub fn leader_check(part: &Partition, version: i16, current_leader_epoch: i32) -> Result<(), i16> {
    if !part.is_leader() {
        return Err(ec::NOT_LEADER_OR_FOLLOWER);
    }
    if version >= 9 && current_leader_epoch >= 0 {
        let epoch = part.leader_epoch();
        if current_leader_epoch < epoch {
            return Err(ec::FENCED_LEADER_EPOCH);
        }
        if current_leader_epoch > epoch {
            return Err(ec::UNKNOWN_LEADER_EPOCH);
        }
    }
    Ok(())
}

/// Reads every wanted partition once; returns the partition data with their records, the bytes
/// read and whether any partition failed (an error answers at once, as Kafka does).
fn read_all(
    wanted: &[Wanted],
    max_bytes: u64,
    version: i16,
    committed: bool,
) -> (Vec<(PartitionData, PartitionRecords)>, u64, bool) {
    // log_start_offset exists from v5 on.
    let log_start = |offset: i64| if version >= 5 { offset } else { -1 };
    let mut total = 0u64;
    let mut any_error = false;
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let base = PartitionData::default()
            .with_partition_index(w.partition)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_preferred_read_replica(BrokerId(-1));
        let p = match &w.hosted {
            Ok(p) => p,
            Err(code) => {
                any_error = true;
                out.push((base.with_error_code(*code), PartitionRecords::default()));
                continue;
            }
        };
        let budget = (max_bytes.saturating_sub(total)).min(w.max_bytes.max(0) as u64) as u32;
        let first = total == 0;
        let hw = p.high_watermark();
        let read = p.with_log(|l| {
            let hw = hw.min(l.log_end_offset());
            let lso = l.first_unstable_offset().map_or(hw, |f| f.min(hw));
            let limit = if w.replica {
                l.log_end_offset()
            } else if committed {
                lso
            } else {
                hw
            };
            let r = l.read(w.fetch_offset, budget, limit, first)?;
            let aborted = committed.then(|| {
                let upper = r.next_offset.unwrap_or(lso);
                l.aborted_transactions(w.fetch_offset, upper)
                    .into_iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect::<Vec<_>>()
            });
            Ok::<_, StorageError>((r, hw, lso, aborted))
        });
        match read {
            Ok((r, hw, lso, aborted)) => {
                total += r.total_bytes;
                let recs = PartitionRecords {
                    // At most max_bytes, or one batch of at most max.message.bytes.
                    len: u32::try_from(r.total_bytes).unwrap_or(u32::MAX),
                    slices: r.slices,
                    bytes_out: None,
                };
                out.push((
                    base.with_high_watermark(hw)
                        .with_last_stable_offset(lso)
                        .with_log_start_offset(log_start(r.log_start_offset))
                        .with_aborted_transactions(aborted),
                    recs,
                ));
            }
            Err(e) => {
                any_error = true;
                let ls = p.with_log(|l| l.log_start_offset());
                if !matches!(e, StorageError::OffsetOutOfRange { .. }) {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "fetch failed");
                }
                out.push((
                    base.with_error_code(storage_error_code(&e))
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(log_start(ls)),
                    PartitionRecords::default(),
                ));
            }
        }
    }
    (out, total, any_error)
}

/// The Fetch API: its versions, handler and the rest of its story (see [`Api`]).
pub struct Fetch;

impl Api for Fetch {
    const KEY: ApiKey = ApiKey::Fetch;
    const VERSIONS: (i16, i16) = (4, 16);
    const QUOTA: Quota = Quota::FetchedBytes;
    type Request = FetchRequest;
    type Response = FetchResponse;

    fn handle(
        broker: &Arc<Broker>,
        ctx: &RequestContext,
        req: Self::Request,
    ) -> impl Future<Output = Self::Response> + Send {
        handle(broker, ctx, req)
    }

    fn error_codes(r: &Self::Response, count: &mut dyn FnMut(i16)) {
        if r.error_code != 0 || r.responses.is_empty() {
            count(r.error_code);
        }
        r.responses
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| count(p.error_code));
    }

    fn set_throttle_time(response: &mut Self::Response, ms: i32) {
        response.throttle_time_ms = ms;
    }
}
