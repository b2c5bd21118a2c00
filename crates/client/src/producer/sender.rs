//! The sender task: producer ids, metadata, and ready batches to partition leaders.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinHandle;

use strom_protocol::messages::{
    ProducerId as WireProducerId, TopicName, TransactionalId,
    init_producer_id_request::InitProducerIdRequest,
    produce_request::{PartitionProduceData, ProduceRequest, TopicProduceData},
};
use strom_protocol::records::{BatchProducer, encode_producer_batch};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, error_code, str_bytes};

use super::accumulator::{Batch, Finished, Outcome, is_leader_change};
use super::{Delivered, Inner, ProducerId, TopicInfo, Waiter, copy_error};
use crate::client::versions;
use crate::connection::Connection;
use crate::error::{ClientError, is_retriable_code};
use crate::pipeline::PipelinedConnection;

/// The Produce version of transactions v2 (KIP-890: the write adds its partition).
pub(super) const PRODUCE_V2: i16 = 12;

const INVALID_RECORD: i16 = 87;
const INIT_PRODUCER_ID_VERSION: i16 = 4;

/// Refreshes the metadata of the producer's topics (and `extra`).
pub(super) async fn refresh_metadata(
    inner: &Inner,
    extra: Option<&str>,
) -> Result<(), ClientError> {
    let mut topics: Vec<String> = inner.state().topics.keys().cloned().collect();
    if let Some(t) = extra
        && !topics.iter().any(|x| x == t)
    {
        topics.push(t.to_string());
    }
    if topics.is_empty() {
        return Ok(());
    }
    let md = inner.client.metadata(Some(topics)).await?;
    let mut state = inner.state();
    for b in &md.brokers {
        state.brokers.insert(b.id, b.address());
    }
    for t in &md.topics {
        match t.error_code {
            error_code::NONE if !t.partitions.is_empty() => {
                // Partitions are numbered 0..n; an index outside that is ignored (its slot
                // stays without a leader).
                let mut leaders = vec![-1; t.partitions.len()];
                for p in &t.partitions {
                    if let Some(slot) = usize::try_from(p.index)
                        .ok()
                        .and_then(|i| leaders.get_mut(i))
                    {
                        *slot = if p.error_code == error_code::NONE {
                            p.leader
                        } else {
                            -1
                        };
                    }
                }
                state.topics.insert(t.name.clone(), TopicInfo { leaders });
            }
            error_code::NONE => {}
            code if Some(t.name.as_str()) == extra && !is_retriable_code(code) => {
                return Err(ClientError::kafka(
                    code,
                    &format!("topic {:?}", t.name),
                    None,
                ));
            }
            _ => {}
        }
    }
    state.metadata_wanted = false;
    state.metadata_version += 1;
    Ok(())
}

/// Asks a broker for a new producer id (no transactional id: any broker hands one out). The
/// bootstrap servers first, then the other brokers; when one does not answer within half a
/// second the next is asked too, and the first answer wins, so a broker that hangs does not
/// hold the producer up.
async fn init_producer_id(inner: &Inner) -> Result<ProducerId, ClientError> {
    let mut addrs: Vec<String> = inner.config.common.bootstrap_servers.clone();
    let mut known: Vec<String> = inner.state().brokers.values().cloned().collect();
    known.sort();
    for a in known {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    let mut attempts = tokio::task::JoinSet::new();
    for (i, addr) in addrs.into_iter().enumerate() {
        let config = inner.config.common.connection();
        let timeout_ms =
            i32::try_from(inner.config.transaction_timeout.as_millis()).unwrap_or(i32::MAX);
        attempts.spawn(async move {
            tokio::time::sleep(Duration::from_millis(500) * i as u32).await;
            init_producer_id_at(&addr, config, timeout_ms).await
        });
    }
    let mut last = None;
    while let Some(done) = attempts.join_next().await {
        match done {
            Ok(Ok(pid)) => {
                attempts.abort_all();
                return Ok(pid);
            }
            Ok(Err(e)) if !e.is_retriable() && e.kafka_code().is_some() => {
                attempts.abort_all();
                return Err(e);
            }
            Ok(Err(e)) => last = Some(e),
            Err(e) => last = Some(ClientError::Io(std::io::Error::other(e.to_string()))),
        }
    }
    Err(last.unwrap_or_else(|| ClientError::InvalidArgument("no broker to ask".into())))
}

async fn init_producer_id_at(
    addr: &str,
    config: crate::connection::ConnectionConfig,
    transaction_timeout_ms: i32,
) -> Result<ProducerId, ClientError> {
    let mut conn = Connection::connect(addr, config).await?;
    let version = conn.version(ApiKey::InitProducerId, INIT_PRODUCER_ID_VERSION)?;
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.transaction_timeout_ms = transaction_timeout_ms;
    req.producer_id = WireProducerId(-1);
    req.producer_epoch = -1;
    let response = conn
        .send(
            ApiKey::InitProducerId,
            version,
            RequestKind::InitProducerId(req),
        )
        .await?;
    let ResponseKind::InitProducerId(r) = response else {
        return Err(ClientError::UnexpectedResponse(
            "InitProducerId answered with another response".into(),
        ));
    };
    if r.error_code != error_code::NONE {
        return Err(ClientError::kafka(
            r.error_code,
            "the producer id request",
            None,
        ));
    }
    Ok(ProducerId {
        id: r.producer_id.0,
        epoch: r.producer_epoch,
    })
}

/// Hands finished batches' results to their records and returns their buffer space.
pub(super) fn deliver(inner: &Inner, finished: Vec<Finished<Waiter>>) {
    if finished.is_empty() {
        return;
    }
    if inner.txn.is_some()
        && let Some(e) = finished.iter().find_map(|(_, r)| r.as_ref().err())
    {
        let mut s = inner.state();
        if s.txn_error.is_none() {
            s.txn_error = Some(e.to_string());
        }
    }
    for (batch, result) in finished {
        inner.buffer.add_permits(batch.bytes);
        let counter = if result.is_ok() {
            &inner.counters.records_delivered
        } else {
            &inner.counters.records_failed
        };
        counter.fetch_add(batch.waiters.len() as u64, Ordering::Relaxed);
        let partition = batch.tp.partition;
        for (i, waiter) in batch.waiters.into_iter().enumerate() {
            let r = match &result {
                Ok(base) if *base >= 0 => Ok(Delivered {
                    partition,
                    offset: base + i as i64,
                }),
                Ok(_) => Ok(Delivered {
                    partition,
                    offset: -1,
                }),
                Err(e) => Err(copy_error(e)),
            };
            let _ = waiter.send(r);
        }
    }
    inner.progress.notify_waiters();
}

/// The sender task.
pub(super) async fn run(inner: Arc<Inner>) {
    let mut connections = Connections::default();
    let mut last_metadata = Instant::now();
    let mut metadata_backoff_until = Instant::now();
    let mut seen_metadata = 0u64;
    loop {
        let now = Instant::now();
        let (closing, idle, need_id, metadata_wanted) = {
            let s = inner.state();
            // A transactional producer gets its id from init_transactions.
            let need_id = inner.config.idempotence
                && inner.txn.is_none()
                && s.fatal.is_none()
                && (s.producer_id.is_none() || s.acc.bump_needed())
                && s.acc.in_flight() == 0
                && s.acc.incomplete() > 0;
            (
                s.closing,
                s.acc.incomplete() == 0,
                need_id,
                s.metadata_wanted,
            )
        };
        if closing && idle {
            return;
        }
        if inner.txn.is_some() {
            // In a transaction a broken sequence cannot be renumbered: what is queued fails, the
            // transaction can only abort, and the abort takes a new epoch.
            let failed = {
                let mut s = inner.state();
                if s.acc.bump_needed() && s.acc.in_flight() == 0 {
                    s.acc.fail_all(|tp| ClientError::NotDelivered {
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                        reason: "an earlier record of the transaction failed; the \
                                     transaction must be aborted"
                            .into(),
                        retriable: false,
                    })
                } else {
                    Vec::new()
                }
            };
            deliver(&inner, failed);
        }
        if need_id {
            match init_producer_id(&inner).await {
                Ok(pid) => {
                    inner.counters.producer_ids.fetch_add(1, Ordering::Relaxed);
                    let failed = {
                        let mut s = inner.state();
                        let had = s.producer_id.replace(pid);
                        if had.is_some() {
                            tracing::info!(
                                producer_id = pid.id,
                                epoch = pid.epoch,
                                "new producer id after a broken sequence"
                            );
                            s.acc.reset_sequences()
                        } else {
                            Vec::new()
                        }
                    };
                    deliver(&inner, failed);
                }
                Err(e) if !e.is_retriable() => {
                    let failed = {
                        let mut s = inner.state();
                        s.fatal = Some(e.to_string());
                        s.acc.fail_all(|_| copy_error(&e))
                    };
                    deliver(&inner, failed);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "producer id request failed; retrying");
                    tokio::time::sleep(
                        inner
                            .config
                            .common
                            .retry_backoff
                            .max(Duration::from_millis(50)),
                    )
                    .await;
                }
            }
            continue;
        }
        let stale = now.duration_since(last_metadata) >= inner.config.common.metadata_max_age;
        if (metadata_wanted || stale)
            && now >= metadata_backoff_until
            && !inner.refreshing.swap(true, Ordering::AcqRel)
        {
            // In the background: a broker that does not answer must not hold up the sends.
            last_metadata = now;
            metadata_backoff_until = now + inner.config.common.retry_backoff;
            let inner2 = Arc::clone(&inner);
            tokio::spawn(async move {
                if let Err(e) = refresh_metadata(&inner2, None).await {
                    tracing::debug!(error = %e, "metadata refresh failed");
                }
                inner2.refreshing.store(false, Ordering::Release);
                inner2.wake.notify_one();
            });
        }
        let metadata_version = inner.state().metadata_version;
        if metadata_version != seen_metadata {
            seen_metadata = metadata_version;
            // Connections to brokers that are gone or moved are dropped.
            let brokers = inner.state().brokers.clone();
            connections
                .ready
                .retain(|id, c| !c.is_closed() && brokers.get(id).is_some_and(|a| a == c.addr()));
        }
        connections.collect(&inner).await;
        let connected = connections.usable();
        let mut wanted = Vec::new();

        // Drain ready batches.
        let max_in_flight = inner.config.max_in_flight;
        let (drained, producer_id) = {
            let mut guard = inner.state();
            let s = &mut *guard;
            let ready_for_data = !inner.config.idempotence || s.producer_id.is_some();
            if !ready_for_data || s.fatal.is_some() {
                (None, None)
            } else {
                let topics = &s.topics;
                let in_flight = &s.in_flight;
                let drained = s.acc.drain(
                    Instant::now(),
                    |tp| {
                        topics
                            .get(&*tp.topic)
                            .and_then(|t| t.leaders.get(tp.partition as usize))
                            .copied()
                            .filter(|&l| l >= 0)
                    },
                    |b| {
                        if !connected.contains(&b) {
                            wanted.push(b);
                            return false;
                        }
                        in_flight.get(&b).copied().unwrap_or(0) < max_in_flight
                    },
                );
                for (broker, batches) in &drained.requests {
                    *s.in_flight.entry(*broker).or_insert(0) += 1;
                    for b in batches {
                        let count = s
                            .topics
                            .get(&*b.tp.topic)
                            .map_or(1, |t| t.leaders.len() as i32);
                        s.partitioner.batch_done(&b.tp.topic, b.tp.partition, count);
                    }
                }
                if drained.unknown_leader {
                    s.metadata_wanted = true;
                }
                (Some(drained), s.producer_id)
            }
        };
        let Some(drained) = drained else {
            wait(&inner, Some(Instant::now() + Duration::from_millis(50))).await;
            continue;
        };
        deliver(&inner, drained.expired);
        for b in wanted {
            connections.start(&inner, b);
        }
        let sent_any = !drained.requests.is_empty();
        for (broker, batches) in drained.requests {
            send_request(&inner, &mut connections, broker, batches, producer_id).await;
        }
        if sent_any {
            continue;
        }
        let mut next = drained.next_wake;
        if let Some(at) = connections.failed_until.values().min().copied() {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if inner.state().metadata_wanted {
            let at = metadata_backoff_until.max(Instant::now() + Duration::from_millis(10));
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        wait(&inner, next).await;
    }
}

async fn wait(inner: &Inner, until: Option<Instant>) {
    let max = Instant::now() + Duration::from_secs(1);
    let until = until.map_or(max, |u| u.min(max));
    tokio::select! {
        _ = inner.wake.notified() => {}
        _ = tokio::time::sleep_until(until.into()) => {}
    }
}

/// Outcome of a whole request for every batch in it (no per-partition answer).
fn all(batches: Vec<Batch<Waiter>>, outcome: Outcome) -> Vec<(Batch<Waiter>, Outcome)> {
    batches.into_iter().map(|b| (b, outcome.clone())).collect()
}

async fn send_request(
    inner: &Arc<Inner>,
    connections: &mut Connections,
    broker: i32,
    batches: Vec<Batch<Waiter>>,
    producer_id: Option<ProducerId>,
) {
    let conn = match connections.ready.get(&broker).filter(|c| !c.is_closed()) {
        Some(c) => Arc::clone(c),
        None => {
            tracing::debug!(broker, "the connection to the leader closed");
            inner.state().metadata_wanted = true;
            settle(
                inner,
                broker,
                all(
                    batches,
                    Outcome::Refused {
                        code: error_code::NOT_LEADER_OR_FOLLOWER,
                        message: Some(format!("no open connection to broker {broker}")),
                    },
                ),
            );
            return;
        }
    };
    // Encode: one batch per partition, grouped by topic.
    let pid = producer_id.unwrap_or(ProducerId { id: -1, epoch: -1 });
    let mut encoded: Vec<(Batch<Waiter>, Bytes)> = Vec::with_capacity(batches.len());
    let mut bad = Vec::new();
    for b in batches {
        let producer = BatchProducer {
            producer_id: pid.id,
            producer_epoch: pid.epoch,
            base_sequence: b.wire_sequence(),
            transactional: inner.txn.is_some(),
        };
        match encode_producer_batch(&b.records, inner.config.codec, producer) {
            Ok(bytes) => encoded.push((b, bytes)),
            Err(e) => bad.push((
                b,
                Outcome::Refused {
                    code: INVALID_RECORD,
                    message: Some(format!("cannot encode the batch: {e}")),
                },
            )),
        }
    }
    if !bad.is_empty() {
        settle_batches(inner, bad);
    }
    if encoded.is_empty() {
        finish_request(inner, broker);
        return;
    }
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (b, bytes) in &encoded {
        let mut p = PartitionProduceData::default();
        p.index = b.tp.partition;
        p.records = Some(bytes.clone());
        match topics.iter_mut().find(|t| t.name.as_str() == &*b.tp.topic) {
            Some(t) => t.partition_data.push(p),
            None => {
                let mut t = TopicProduceData::default();
                t.name = TopicName(str_bytes(&*b.tp.topic));
                t.partition_data = vec![p];
                topics.push(t);
            }
        }
    }
    let batches: Vec<Batch<Waiter>> = encoded.into_iter().map(|(b, _)| b).collect();
    inner.counters.requests.fetch_add(1, Ordering::Relaxed);
    inner
        .counters
        .batches_sent
        .fetch_add(batches.len() as u64, Ordering::Relaxed);
    let mut req = ProduceRequest::default();
    req.transactional_id = inner
        .transactional_id()
        .map(|id| TransactionalId(str_bytes(id)));
    req.acks = inner.config.acks;
    req.timeout_ms =
        i32::try_from(inner.config.common.request_timeout.as_millis()).unwrap_or(i32::MAX);
    req.topic_data = topics;
    let body = RequestKind::Produce(req);
    let max_version = if inner.state().txn_v2 {
        PRODUCE_V2
    } else {
        versions::PRODUCE
    };
    let version = match conn.version(ApiKey::Produce, max_version) {
        Ok(v) => v,
        Err(e) => {
            settle(
                inner,
                broker,
                all(
                    batches,
                    Outcome::Refused {
                        code: error_code::UNSUPPORTED_VERSION,
                        message: Some(e.to_string()),
                    },
                ),
            );
            return;
        }
    };
    if inner.config.acks == 0 {
        let outcome = match conn
            .send_without_response(ApiKey::Produce, version, &body)
            .await
        {
            Ok(()) => Outcome::Written { base_offset: -1 },
            Err(e) => Outcome::Lost {
                error: e.to_string(),
            },
        };
        settle(inner, broker, all(batches, outcome));
        return;
    }
    let response = match conn.send(ApiKey::Produce, version, &body).await {
        Ok(f) => f,
        Err(e) => {
            settle(
                inner,
                broker,
                all(
                    batches,
                    Outcome::Lost {
                        error: e.to_string(),
                    },
                ),
            );
            return;
        }
    };
    let inner = Arc::clone(inner);
    tokio::spawn(async move {
        let outcomes = match response.await {
            Ok(ResponseKind::Produce(r)) => batches
                .into_iter()
                .map(|b| {
                    let p = r
                        .responses
                        .iter()
                        .filter(|t| t.name.as_str() == &*b.tp.topic)
                        .flat_map(|t| t.partition_responses.iter())
                        .find(|p| p.index == b.tp.partition);
                    let outcome = match p {
                        None => Outcome::Lost {
                            error: "the produce response has no entry for the partition".into(),
                        },
                        Some(p) if p.error_code == error_code::NONE => Outcome::Written {
                            base_offset: p.base_offset,
                        },
                        Some(p) => {
                            let mut detail: Vec<String> =
                                p.error_message.iter().map(|m| m.to_string()).collect();
                            for e in &p.record_errors {
                                detail.push(format!(
                                    "record {}: {}",
                                    e.batch_index,
                                    e.batch_index_error_message.as_deref().unwrap_or("rejected")
                                ));
                            }
                            Outcome::Refused {
                                code: p.error_code,
                                message: (!detail.is_empty()).then(|| detail.join("; ")),
                            }
                        }
                    };
                    (b, outcome)
                })
                .collect(),
            Ok(_) => all(
                batches,
                Outcome::Lost {
                    error: "Produce answered with another response".into(),
                },
            ),
            Err(e) => all(
                batches,
                Outcome::Lost {
                    error: e.to_string(),
                },
            ),
        };
        settle(&inner, broker, outcomes);
    });
}

type Connecting = JoinHandle<Result<PipelinedConnection, ClientError>>;

/// The sender's connections to brokers. Connections are opened in the background so that a
/// broker that is slow to answer does not hold up requests to the others.
#[derive(Default)]
struct Connections {
    ready: HashMap<i32, Arc<PipelinedConnection>>,
    connecting: HashMap<i32, Connecting>,
    /// Brokers whose last connection attempt failed, and when to try again.
    failed_until: HashMap<i32, Instant>,
}

impl Connections {
    /// Brokers with an open connection.
    fn usable(&self) -> BTreeSet<i32> {
        self.ready
            .iter()
            .filter(|(_, c)| !c.is_closed())
            .map(|(b, _)| *b)
            .collect()
    }

    /// Takes in the connection attempts that ended.
    async fn collect(&mut self, inner: &Inner) {
        let done: Vec<i32> = self
            .connecting
            .iter()
            .filter(|(_, h)| h.is_finished())
            .map(|(b, _)| *b)
            .collect();
        for broker in done {
            let Some(handle) = self.connecting.remove(&broker) else {
                continue;
            };
            match handle.await {
                Ok(Ok(conn)) => {
                    self.failed_until.remove(&broker);
                    self.ready.insert(broker, Arc::new(conn));
                }
                Ok(Err(e)) => {
                    tracing::debug!(broker, error = %e, "cannot connect to the broker");
                    self.failed(inner, broker);
                }
                Err(e) => {
                    tracing::debug!(broker, error = %e, "connection attempt ended");
                    self.failed(inner, broker);
                }
            }
        }
        let now = Instant::now();
        self.failed_until.retain(|_, until| *until > now);
    }

    fn failed(&mut self, inner: &Inner, broker: i32) {
        let backoff = inner
            .config
            .common
            .retry_backoff
            .max(Duration::from_millis(20));
        self.failed_until.insert(broker, Instant::now() + backoff);
        inner.state().metadata_wanted = true;
    }

    /// Starts connecting to `broker` unless that is under way or failed a moment ago.
    fn start(&mut self, inner: &Arc<Inner>, broker: i32) {
        if self.connecting.contains_key(&broker) || self.failed_until.contains_key(&broker) {
            return;
        }
        self.ready.remove(&broker);
        let Some(addr) = inner.state().brokers.get(&broker).cloned() else {
            inner.state().metadata_wanted = true;
            return;
        };
        let inner = Arc::clone(inner);
        let handle = tokio::spawn(async move {
            let c = PipelinedConnection::connect(
                &addr,
                inner.config.common.connection(),
                inner.config.max_in_flight,
            )
            .await;
            inner.wake.notify_one();
            c
        });
        self.connecting.insert(broker, handle);
    }
}

fn finish_request(inner: &Inner, broker: i32) {
    let mut s = inner.state();
    if let Some(n) = s.in_flight.get_mut(&broker) {
        *n = n.saturating_sub(1);
    }
}

/// A request to `broker` is over: its batches' outcomes go to the accumulator.
fn settle(inner: &Inner, broker: i32, outcomes: Vec<(Batch<Waiter>, Outcome)>) {
    finish_request(inner, broker);
    settle_batches(inner, outcomes);
}

fn settle_batches(inner: &Inner, outcomes: Vec<(Batch<Waiter>, Outcome)>) {
    let now = Instant::now();
    let finished =
        {
            let mut s = inner.state();
            let mut finished = Vec::new();
            for (batch, outcome) in outcomes {
                match &outcome {
                    Outcome::Refused { code, .. } if is_leader_change(*code) => {
                        s.metadata_wanted = true
                    }
                    Outcome::Lost { .. } => s.metadata_wanted = true,
                    Outcome::Refused { code, .. } if matches!(*code, 47 | 90) => {
                        // INVALID_PRODUCER_EPOCH, PRODUCER_FENCED: another producer took over.
                        s.fatal = Some(ClientError::kafka(*code, "the producer", None).to_string());
                    }
                    _ => {}
                }
                let done = s.acc.complete(batch, outcome, now);
                if done.is_empty() {
                    inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                }
                finished.extend(done);
            }
            if s.closing {
                // Closed without waiting (close_with_timeout): nothing is sent again.
                finished.extend(s.acc.fail_all(|_| ClientError::Closed("producer")));
            }
            if let Some(reason) = s.fatal.clone() {
                finished.extend(s.acc.fail_all(|tp| {
                    ClientError::partition(90, &tp.topic, tp.partition, Some(&reason))
                }));
            }
            finished
        };
    deliver(inner, finished);
    inner.wake.notify_one();
}
