//! Batches waiting to be sent, and the idempotent producer's sequence bookkeeping.
//!
//! This is the producer's core without any i/o, so that it can be tested against a model:
//! records are appended to per-partition batches; [`Accumulator::drain`] hands out the batches
//! that are ready (full, lingered long enough, flushed, or due for a retry) for partitions whose
//! leader can take another request, assigning sequence numbers on first send;
//! [`Accumulator::complete`] takes the outcome of a send and decides: done, retry (keeping the
//! batch's sequence, in sequence order), or fail.
//!
//! The ordering rules of the idempotent producer:
//! - a batch gets its sequence on its first send and keeps it for every retry under the same
//!   producer id and epoch, so the broker recognises a batch it already wrote;
//! - up to `max.in.flight` new batches per partition may be in flight; a batch being retried is
//!   sent only when nothing else of its partition is in flight, so the broker sees sequences in
//!   order;
//! - a batch refused with OUT_OF_ORDER_SEQUENCE_NUMBER while an earlier batch of its partition is
//!   still unresolved is retried: it failed only because the earlier one did;
//! - when the sequence of a partition can no longer continue (a batch failed for good or
//!   expired after being sent, OUT_OF_ORDER_SEQUENCE_NUMBER on the first unresolved batch,
//!   UNKNOWN_PRODUCER_ID), the producer stops sending, waits for every request in flight, takes a
//!   new producer id and epoch and re-numbers the queued batches from 0. A queued batch that may
//!   already have been written under the old numbering is failed then rather than risk writing
//!   it twice.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strom_protocol::error_code;
use strom_protocol::records::ProducerRecord;

use crate::error::{ClientError, is_retriable_code};

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
const UNKNOWN_PRODUCER_ID: i16 = 59;

/// Bytes a record batch header takes.
pub const BATCH_OVERHEAD: usize = 61;

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: Arc::from(topic),
            partition,
        }
    }
}

/// The size a record takes in a batch, roughly (before compression).
pub fn record_size(r: &ProducerRecord) -> usize {
    let len = |b: &Option<bytes::Bytes>| b.as_ref().map_or(0, |b| b.len());
    24 + len(&r.key)
        + len(&r.value)
        + r.headers
            .iter()
            .map(|(k, v)| 8 + k.len() + len(v))
            .sum::<usize>()
}

/// Records of one partition sent together. `W` is what the producer notifies per record when
/// the batch is done (a channel; a plain value in tests).
#[derive(Debug)]
pub struct Batch<W> {
    pub id: u64,
    pub tp: TopicPartition,
    pub records: Vec<ProducerRecord>,
    pub waiters: Vec<W>,
    /// The records' sizes, added up.
    pub bytes: usize,
    pub created: Instant,
    /// The sequence number of the first record once assigned; an ordinal that does not wrap
    /// ([`Batch::wire_sequence`] is what goes on the wire).
    pub seq: Option<i64>,
    /// Sends that ended (with any outcome).
    pub attempts: u32,
    pub retry_at: Option<Instant>,
    /// A send ended without knowing whether the broker wrote the batch.
    pub maybe_written: bool,
    pub last_error: Option<String>,
}

impl<W> Batch<W> {
    /// The base sequence as the record batch carries it (wrapping after `i32::MAX`).
    pub fn wire_sequence(&self) -> i32 {
        self.seq.map_or(-1, |s| (s & 0x7fff_ffff) as i32)
    }
}

/// What a send of one batch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The broker wrote the batch (now or before: a duplicate) at this base offset (-1 when
    /// unknown, e.g. acks=0).
    Written { base_offset: i64 },
    /// The broker answered with an error code for the partition.
    Refused { code: i16, message: Option<String> },
    /// No answer (connection failed, request timed out): the batch may or may not be written.
    Lost { error: String },
}

/// A batch that is finished: with the base offset, or with the error for its records.
pub type Finished<W> = (Batch<W>, Result<i64, ClientError>);

/// The settings the accumulator applies.
#[derive(Debug, Clone)]
pub struct Settings {
    pub batch_size: usize,
    pub linger: Duration,
    pub max_in_flight: usize,
    pub idempotent: bool,
    pub delivery_timeout: Duration,
    pub retries: u32,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    pub max_request_size: usize,
}

#[derive(Debug)]
struct PartitionQueue<W> {
    /// Waiting batches: retries first, in sequence order, then new batches, oldest first.
    batches: VecDeque<Batch<W>>,
    next_seq: i64,
    /// Batches in flight: id -> sequence.
    in_flight: BTreeMap<u64, Option<i64>>,
}

impl<W> Default for PartitionQueue<W> {
    fn default() -> Self {
        PartitionQueue {
            batches: VecDeque::new(),
            next_seq: 0,
            in_flight: BTreeMap::new(),
        }
    }
}

/// What [`Accumulator::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub batch_id: u64,
    /// The record started a new batch.
    pub new_batch: bool,
    /// The batch it went into is full now.
    pub batch_full: bool,
}

/// What [`Accumulator::drain`] hands out.
#[derive(Debug)]
pub struct Drained<W> {
    /// Per leader broker, one request's worth of batches (at most one per partition).
    pub requests: Vec<(i32, Vec<Batch<W>>)>,
    /// Batches that waited longer than `delivery.timeout.ms`.
    pub expired: Vec<Finished<W>>,
    /// Some ready batch has no known leader: metadata needs a refresh.
    pub unknown_leader: bool,
    /// When something not ready now becomes ready (a linger or a backoff ends).
    pub next_wake: Option<Instant>,
}

/// Per-partition batches and sequence numbers.
#[derive(Debug)]
pub struct Accumulator<W> {
    settings: Settings,
    partitions: BTreeMap<TopicPartition, PartitionQueue<W>>,
    next_id: u64,
    /// Batches not finished yet (queued or in flight).
    incomplete: BTreeSet<u64>,
    /// Batches with an id below this are sent without lingering (a flush).
    flush_until: u64,
    /// The producer's sequence broke somewhere: send nothing until a new producer id.
    bump_needed: bool,
    in_flight: usize,
}

impl<W> Accumulator<W> {
    pub fn new(settings: Settings) -> Accumulator<W> {
        Accumulator {
            settings,
            partitions: BTreeMap::new(),
            next_id: 0,
            incomplete: BTreeSet::new(),
            flush_until: 0,
            bump_needed: false,
            in_flight: 0,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Adds a record (of `size` bytes, see [`record_size`]) to the open batch of `tp`, or to a
    /// new one.
    pub fn append(
        &mut self,
        tp: &TopicPartition,
        record: ProducerRecord,
        size: usize,
        waiter: W,
        now: Instant,
    ) -> Appended {
        let batch_size = self.settings.batch_size;
        let q = self.partitions.entry(tp.clone()).or_default();
        if let Some(last) = q.batches.back_mut() {
            let open = last.seq.is_none() && last.attempts == 0 && last.bytes < batch_size;
            if open && last.bytes + size <= batch_size {
                last.records.push(record);
                last.waiters.push(waiter);
                last.bytes += size;
                return Appended {
                    batch_id: last.id,
                    new_batch: false,
                    batch_full: last.bytes >= batch_size,
                };
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.incomplete.insert(id);
        q.batches.push_back(Batch {
            id,
            tp: tp.clone(),
            records: vec![record],
            waiters: vec![waiter],
            bytes: size,
            created: now,
            seq: None,
            attempts: 0,
            retry_at: None,
            maybe_written: false,
            last_error: None,
        });
        Appended {
            batch_id: id,
            new_batch: true,
            batch_full: size >= batch_size,
        }
    }

    /// Makes every batch created so far ready at once; returns the id below which batches must
    /// finish for the flush to be over.
    pub fn flush(&mut self) -> u64 {
        self.flush_until = self.next_id;
        self.next_id
    }

    /// Whether every batch with an id below `until` is finished.
    pub fn flushed(&self, until: u64) -> bool {
        self.incomplete.first().is_none_or(|&id| id >= until)
    }

    /// Batches not finished.
    pub fn incomplete(&self) -> usize {
        self.incomplete.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether the producer must take a new producer id (and re-number) before sending on.
    /// Sending pauses until then; the bump itself waits for no request to be in flight.
    pub fn bump_needed(&self) -> bool {
        self.bump_needed
    }

    /// Hands out ready batches (see the module doc). `leader` gives a partition's leader;
    /// `broker_free` says whether a broker can take another request now.
    pub fn drain(
        &mut self,
        now: Instant,
        leader: impl Fn(&TopicPartition) -> Option<i32>,
        mut broker_free: impl FnMut(i32) -> bool,
    ) -> Drained<W> {
        let mut out = Drained {
            requests: Vec::new(),
            expired: Vec::new(),
            unknown_leader: false,
            next_wake: None,
        };
        let s = &self.settings;
        let mut requests: BTreeMap<i32, (usize, Vec<Batch<W>>)> = BTreeMap::new();
        let mut full_brokers = BTreeSet::new();
        for (tp, q) in self.partitions.iter_mut() {
            // Expire what waited too long (never a batch in flight).
            let mut i = 0;
            while i < q.batches.len() {
                if now.saturating_duration_since(q.batches[i].created) >= s.delivery_timeout {
                    if let Some(b) = q.batches.remove(i) {
                        if s.idempotent && b.seq.is_some() {
                            self.bump_needed = true;
                        }
                        let e = ClientError::DeliveryTimeout {
                            topic: tp.topic.to_string(),
                            partition: tp.partition,
                            timeout_ms: s.delivery_timeout.as_millis() as u64,
                            last_error: b.last_error.clone(),
                        };
                        self.incomplete.remove(&b.id);
                        out.expired.push((b, Err(e)));
                    }
                } else {
                    i += 1;
                }
            }
            if self.bump_needed {
                continue;
            }
            let Some(head) = q.batches.front() else {
                continue;
            };
            let expiry = head.created + s.delivery_timeout;
            wake(&mut out.next_wake, expiry);
            if let Some(at) = head.retry_at.filter(|&at| at > now) {
                wake(&mut out.next_wake, at);
                continue;
            }
            let allowed = if head.seq.is_some() && s.idempotent {
                q.in_flight.is_empty()
            } else {
                q.in_flight.len() < s.max_in_flight
            };
            if !allowed {
                continue;
            }
            let linger_end = head.created + s.linger;
            let ready = head.attempts > 0
                || head.bytes >= s.batch_size
                || q.batches.len() > 1
                || now >= linger_end
                || head.id < self.flush_until;
            if !ready {
                wake(&mut out.next_wake, linger_end);
                continue;
            }
            let Some(broker) = leader(tp) else {
                out.unknown_leader = true;
                continue;
            };
            if full_brokers.contains(&broker) {
                continue;
            }
            let size = head.bytes + BATCH_OVERHEAD;
            let entry = requests.entry(broker).or_insert((0, Vec::new()));
            if entry.1.is_empty() {
                if !broker_free(broker) {
                    full_brokers.insert(broker);
                    requests.remove(&broker);
                    continue;
                }
            } else if entry.0 + size > s.max_request_size {
                continue;
            }
            let Some(mut batch) = q.batches.pop_front() else {
                continue;
            };
            if s.idempotent && batch.seq.is_none() {
                batch.seq = Some(q.next_seq);
                q.next_seq += batch.records.len() as i64;
            }
            q.in_flight.insert(batch.id, batch.seq);
            self.in_flight += 1;
            entry.0 += size;
            entry.1.push(batch);
        }
        out.requests = requests.into_iter().map(|(b, (_, v))| (b, v)).collect();
        out
    }

    /// Takes the outcome of sending `batch` (one handed out by [`Accumulator::drain`]); returns
    /// the batches that are finished now (the batch itself, unless it is to be retried).
    pub fn complete(
        &mut self,
        mut batch: Batch<W>,
        outcome: Outcome,
        now: Instant,
    ) -> Vec<Finished<W>> {
        let idempotent = self.settings.idempotent;
        let q = self.partitions.entry(batch.tp.clone()).or_default();
        if q.in_flight.remove(&batch.id).is_some() {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        batch.attempts += 1;
        let tp = batch.tp.clone();
        let refusal = |code: i16, message: Option<&str>| {
            ClientError::partition(code, &tp.topic, tp.partition, message)
        };
        let retry_error = match outcome {
            Outcome::Written { base_offset } => return self.finish(batch, Ok(base_offset)),
            Outcome::Lost { error } => {
                batch.maybe_written = true;
                error
            }
            Outcome::Refused { code, .. } if code == DUPLICATE_SEQUENCE_NUMBER && idempotent => {
                // Written before; the broker did not say where.
                return self.finish(batch, Ok(-1));
            }
            Outcome::Refused { code, message }
                if code == OUT_OF_ORDER_SEQUENCE_NUMBER && idempotent =>
            {
                let first_unresolved = batch.seq.is_some_and(|seq| {
                    q.in_flight.values().flatten().all(|&s| s > seq)
                        && q.batches.iter().filter_map(|b| b.seq).all(|s| s > seq)
                });
                if first_unresolved && !self.bump_needed {
                    // The broker lost track of earlier batches: this one cannot be written in
                    // order under the current producer id.
                    self.bump_needed = true;
                    return self.finish(batch, Err(refusal(code, message.as_deref())));
                }
                // An earlier batch failed first; this one follows it.
                batch.attempts -= 1;
                return self.requeue(
                    batch,
                    refusal(code, message.as_deref()).to_string(),
                    now,
                    true,
                );
            }
            Outcome::Refused { code, message } if code == UNKNOWN_PRODUCER_ID && idempotent => {
                self.bump_needed = true;
                batch.attempts -= 1;
                return self.requeue(
                    batch,
                    refusal(code, message.as_deref()).to_string(),
                    now,
                    true,
                );
            }
            Outcome::Refused { code, message } => {
                let e = refusal(code, message.as_deref());
                if !is_retriable_code(code) {
                    if idempotent && batch.seq.is_some() {
                        self.bump_needed = true;
                    }
                    return self.finish(batch, Err(e));
                }
                // The broker may have written the batch before answering these.
                if matches!(code, 7 | 13 | 20) {
                    batch.maybe_written = true;
                }
                batch.last_error = Some(e.to_string());
                if batch.attempts > self.settings.retries {
                    if idempotent && batch.seq.is_some() {
                        self.bump_needed = true;
                    }
                    return self.finish(batch, Err(e));
                }
                e.to_string()
            }
        };
        self.requeue(batch, retry_error, now, false)
    }

    fn requeue(
        &mut self,
        mut batch: Batch<W>,
        error: String,
        now: Instant,
        free: bool,
    ) -> Vec<Finished<W>> {
        let s = &self.settings;
        batch.last_error = Some(error.clone());
        if !free && batch.attempts > s.retries {
            if s.idempotent && batch.seq.is_some() {
                self.bump_needed = true;
            }
            let e = ClientError::NotDelivered {
                topic: batch.tp.topic.to_string(),
                partition: batch.tp.partition,
                reason: format!("retries used up; last error: {error}"),
                retriable: true,
            };
            return self.finish(batch, Err(e));
        }
        if now.saturating_duration_since(batch.created) >= s.delivery_timeout {
            if s.idempotent && batch.seq.is_some() {
                self.bump_needed = true;
            }
            let e = ClientError::DeliveryTimeout {
                topic: batch.tp.topic.to_string(),
                partition: batch.tp.partition,
                timeout_ms: s.delivery_timeout.as_millis() as u64,
                last_error: Some(error),
            };
            return self.finish(batch, Err(e));
        }
        let exp = batch.attempts.saturating_sub(1).min(16);
        let backoff = s
            .retry_backoff
            .saturating_mul(1 << exp)
            .min(s.retry_backoff_max.max(s.retry_backoff));
        batch.retry_at = Some(now + backoff);
        let q = self.partitions.entry(batch.tp.clone()).or_default();
        // Retries go before new batches, in sequence (else creation) order.
        let pos = q
            .batches
            .iter()
            .position(|b| match (b.seq, batch.seq) {
                (None, _) if b.attempts == 0 => true,
                (Some(s), Some(mine)) => s > mine,
                _ => b.id > batch.id,
            })
            .unwrap_or(q.batches.len());
        q.batches.insert(pos, batch);
        Vec::new()
    }

    fn finish(&mut self, batch: Batch<W>, result: Result<i64, ClientError>) -> Vec<Finished<W>> {
        self.incomplete.remove(&batch.id);
        vec![(batch, result)]
    }

    /// After a new producer id (or epoch): sequences start again from 0 and queued batches are
    /// re-numbered when next sent. A queued batch that may have been written under the old
    /// numbering is failed instead. Call only with nothing in flight.
    pub fn reset_sequences(&mut self) -> Vec<Finished<W>> {
        let mut failed = Vec::new();
        for (tp, q) in self.partitions.iter_mut() {
            q.next_seq = 0;
            let mut kept = VecDeque::with_capacity(q.batches.len());
            for mut b in q.batches.drain(..) {
                if b.seq.is_some() && b.maybe_written {
                    let e = ClientError::NotDelivered {
                        topic: tp.topic.to_string(),
                        partition: tp.partition,
                        reason: format!(
                            "the batch may or may not have been written (last error: {}); it is \
                             not sent again, to avoid writing it twice",
                            b.last_error.as_deref().unwrap_or("none")
                        ),
                        retriable: false,
                    };
                    self.incomplete.remove(&b.id);
                    failed.push((b, Err(e)));
                } else {
                    b.seq = None;
                    kept.push_back(b);
                }
            }
            q.batches = kept;
        }
        self.bump_needed = false;
        failed
    }

    /// Fails every queued batch (closing for good, or a fatal producer error).
    pub fn fail_all(&mut self, error: impl Fn(&TopicPartition) -> ClientError) -> Vec<Finished<W>> {
        let mut out = Vec::new();
        for (tp, q) in self.partitions.iter_mut() {
            for b in q.batches.drain(..) {
                self.incomplete.remove(&b.id);
                out.push((b, Err(error(tp))));
            }
        }
        out
    }

    /// Forgets partitions with nothing queued or in flight.
    pub fn prune(&mut self) {
        self.partitions
            .retain(|_, q| !q.batches.is_empty() || !q.in_flight.is_empty() || q.next_seq > 0);
    }
}

fn wake(slot: &mut Option<Instant>, at: Instant) {
    *slot = Some(slot.map_or(at, |s| s.min(at)));
}

/// Whether a produce error code means the partition's leader moved (refresh metadata).
pub fn is_leader_change(code: i16) -> bool {
    matches!(
        code,
        error_code::NOT_LEADER_OR_FOLLOWER
            | error_code::LEADER_NOT_AVAILABLE
            | error_code::UNKNOWN_TOPIC_OR_PARTITION
            | error_code::KAFKA_STORAGE_ERROR
            | 13 // NETWORK_EXCEPTION
            | 74 // FENCED_LEADER_EPOCH
            | 75 // UNKNOWN_LEADER_EPOCH
            | 100 // UNKNOWN_TOPIC_ID
            | 108 // NEW_LEADER_ELECTED
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const MESSAGE_TOO_LARGE: i16 = 10;

    fn settings(idempotent: bool) -> Settings {
        Settings {
            batch_size: 100,
            linger: Duration::from_millis(5),
            max_in_flight: 5,
            idempotent,
            delivery_timeout: Duration::from_millis(20_000),
            retries: u32::MAX,
            retry_backoff: Duration::from_millis(10),
            retry_backoff_max: Duration::from_millis(100),
            max_request_size: 1 << 20,
        }
    }

    fn record(id: u64) -> ProducerRecord {
        ProducerRecord {
            key: None,
            value: Some(Bytes::from(id.to_be_bytes().to_vec())),
            headers: Vec::new(),
            timestamp_ms: 0,
        }
    }

    type WrittenBatch = (i32, i32, i64);

    /// One partition of a broker, with Kafka's idempotence rules: per producer id, a batch is
    /// written only when its first sequence follows the last one written; a batch equal to one
    /// of the last five written is answered with that batch's offset and not written again;
    /// anything else is OUT_OF_ORDER_SEQUENCE_NUMBER.
    #[derive(Default)]
    struct BrokerPartition {
        log: Vec<u64>,
        /// Per producer id: the last sequence written and the last five batches (first and
        /// last sequence, base offset).
        producers: HashMap<i64, (i32, VecDeque<WrittenBatch>)>,
    }

    impl BrokerPartition {
        fn append(&mut self, pid: i64, first: i32, records: &[u64]) -> Outcome {
            let last = first + records.len() as i32 - 1;
            let entry = self.producers.entry(pid).or_insert((-1, VecDeque::new()));
            if let Some(&(_, _, offset)) =
                entry.1.iter().find(|(f, l, _)| *f == first && *l == last)
            {
                return Outcome::Written {
                    base_offset: offset,
                };
            }
            if first != entry.0.wrapping_add(1) {
                return Outcome::Refused {
                    code: OUT_OF_ORDER_SEQUENCE_NUMBER,
                    message: None,
                };
            }
            let base = self.log.len() as i64;
            self.log.extend_from_slice(records);
            entry.0 = last;
            entry.1.push_back((first, last, base));
            if entry.1.len() > 5 {
                entry.1.pop_front();
            }
            Outcome::Written { base_offset: base }
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Fate {
        /// Written (as far as the broker's rules allow) and answered.
        Answered,
        /// Written, the answer lost.
        AnswerLost,
        /// Refused: the partition moved (not written).
        NotLeader,
        /// The request never arrived.
        RequestLost,
        /// Refused for good (not written).
        TooLarge,
        /// UNKNOWN_PRODUCER_ID, not written. (The model broker keeps what it knows of the
        /// producer's earlier batches: a broker that forgot them while still holding them
        /// could not recognise a retried batch, whatever the producer did.)
        UnknownProducer,
    }

    #[derive(Debug, Clone)]
    enum Step {
        Append {
            partition: usize,
            records: usize,
        },
        Drain,
        /// Settles the oldest (or, across a leader change, the newest) request in flight for a
        /// partition.
        Settle {
            partition: usize,
            newest: bool,
            fate: Fate,
        },
        Advance {
            ms: u64,
        },
    }

    fn fate() -> impl Strategy<Value = Fate> {
        prop_oneof![
            6 => Just(Fate::Answered),
            2 => Just(Fate::AnswerLost),
            2 => Just(Fate::NotLeader),
            1 => Just(Fate::RequestLost),
            1 => Just(Fate::TooLarge),
            1 => Just(Fate::UnknownProducer),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..2usize, 1..4usize).prop_map(|(partition, records)| Step::Append { partition, records }),
            3 => Just(Step::Drain),
            4 => (0..2usize, proptest::bool::weighted(0.2), fate())
                .prop_map(|(partition, newest, fate)| Step::Settle { partition, newest, fate }),
            1 => (1..3000u64).prop_map(|ms| Step::Advance { ms }),
        ]
    }

    /// Drives an idempotent accumulator against two broker partitions through appends, sends,
    /// lost answers and requests, leader changes (refusals, and requests settled out of order
    /// across connections), fatal refusals, backoffs and expiry, with a new producer id whenever
    /// the accumulator asks for one. Then: every record is finished exactly once; no record is
    /// written twice or out of order; every record reported written is at the offset reported.
    struct Harness {
        acc: Accumulator<u64>,
        brokers: [BrokerPartition; 2],
        in_flight: [VecDeque<Batch<u64>>; 2],
        pid: i64,
        now: Instant,
        next_record: u64,
        results: HashMap<u64, Result<i64, String>>,
        appended: [Vec<u64>; 2],
    }

    impl Harness {
        fn new(idempotent: bool) -> Harness {
            Harness {
                acc: Accumulator::new(settings(idempotent)),
                brokers: Default::default(),
                in_flight: Default::default(),
                pid: 1000,
                now: Instant::now(),
                next_record: 0,
                results: HashMap::new(),
                appended: Default::default(),
            }
        }

        fn finished(&mut self, done: Vec<Finished<u64>>) {
            for (batch, result) in done {
                for (i, id) in batch.waiters.iter().enumerate() {
                    let r = match &result {
                        Ok(base) => Ok(base + i as i64),
                        Err(e) => Err(e.to_string()),
                    };
                    assert!(
                        self.results.insert(*id, r).is_none(),
                        "record {id} finished twice"
                    );
                }
            }
        }

        fn maybe_bump(&mut self) {
            if self.acc.bump_needed() && self.acc.in_flight() == 0 {
                self.pid += 1;
                let failed = self.acc.reset_sequences();
                self.finished(failed);
            }
        }

        fn apply(&mut self, step: Step) {
            match step {
                Step::Append { partition, records } => {
                    let tp = TopicPartition::new("t", partition as i32);
                    for _ in 0..records {
                        let id = self.next_record;
                        self.next_record += 1;
                        self.appended[partition].push(id);
                        self.acc.append(&tp, record(id), 50, id, self.now);
                    }
                }
                Step::Drain => {
                    let drained = self.acc.drain(self.now, |_| Some(1), |_| true);
                    self.finished(drained.expired);
                    for (_, batches) in drained.requests {
                        for b in batches {
                            self.in_flight[b.tp.partition as usize].push_back(b);
                        }
                    }
                }
                Step::Settle {
                    partition,
                    newest,
                    fate,
                } => {
                    let b = if newest {
                        self.in_flight[partition].pop_back()
                    } else {
                        self.in_flight[partition].pop_front()
                    };
                    let Some(b) = b else { return };
                    let broker = &mut self.brokers[partition];
                    let mut write = || broker.append(self.pid, b.wire_sequence(), &b.waiters);
                    let outcome = match fate {
                        Fate::Answered => write(),
                        Fate::AnswerLost => {
                            write();
                            Outcome::Lost {
                                error: "lost".into(),
                            }
                        }
                        Fate::NotLeader => Outcome::Refused {
                            code: error_code::NOT_LEADER_OR_FOLLOWER,
                            message: None,
                        },
                        Fate::RequestLost => Outcome::Lost {
                            error: "lost".into(),
                        },
                        Fate::TooLarge => Outcome::Refused {
                            code: MESSAGE_TOO_LARGE,
                            message: None,
                        },
                        Fate::UnknownProducer => Outcome::Refused {
                            code: UNKNOWN_PRODUCER_ID,
                            message: None,
                        },
                    };
                    let done = self.acc.complete(b, outcome, self.now);
                    self.finished(done);
                }
                Step::Advance { ms } => self.now += Duration::from_millis(ms),
            }
            self.maybe_bump();
        }

        /// Every request answered from now on: all records finish.
        fn settle_all(&mut self) {
            for _ in 0..10_000 {
                if self.acc.incomplete() == 0 {
                    break;
                }
                self.now += Duration::from_millis(200);
                self.apply(Step::Drain);
                for p in 0..2 {
                    while !self.in_flight[p].is_empty() {
                        self.apply(Step::Settle {
                            partition: p,
                            newest: false,
                            fate: Fate::Answered,
                        });
                    }
                }
            }
            assert_eq!(self.acc.incomplete(), 0, "records left unfinished");
        }

        fn check(&self, idempotent: bool) {
            assert_eq!(self.results.len() as u64, self.next_record);
            for p in 0..2 {
                let log = &self.brokers[p].log;
                if idempotent {
                    // Written once each, in the order they were sent.
                    assert!(
                        log.windows(2).all(|w| w[0] < w[1]),
                        "partition {p}: {log:?}"
                    );
                }
                for id in &self.appended[p] {
                    if let Some(Ok(offset)) = self.results.get(id) {
                        assert_eq!(
                            log.get(*offset as usize),
                            Some(id),
                            "record {id} at {offset}"
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn idempotent_sends_never_duplicate_or_reorder(steps in proptest::collection::vec(step(), 1..200)) {
            let mut h = Harness::new(true);
            for s in steps {
                h.apply(s);
            }
            h.settle_all();
            h.check(true);
        }

        /// Without failures nothing is lost: every record is written once at its offset.
        #[test]
        fn without_failures_every_record_is_written_in_order(
            steps in proptest::collection::vec(prop_oneof![
                (0..2usize, 1..4usize).prop_map(|(partition, records)| Step::Append { partition, records }),
                Just(Step::Drain),
                (0..2usize).prop_map(|partition| Step::Settle { partition, newest: false, fate: Fate::Answered }),
                (1..50u64).prop_map(|ms| Step::Advance { ms }),
            ], 1..200)
        ) {
            let mut h = Harness::new(true);
            for s in steps {
                h.apply(s);
            }
            h.settle_all();
            h.check(true);
            for p in 0..2 {
                prop_assert_eq!(&h.brokers[p].log, &h.appended[p]);
            }
            prop_assert!(h.results.values().all(|r| r.is_ok()));
        }

        /// Batch accumulation against a model: records of a partition leave in append order,
        /// a batch never exceeds batch.size (unless it holds one record), and no batch leaves
        /// before it is full or has lingered.
        #[test]
        fn batches_follow_the_model(
            ops in proptest::collection::vec((0..3usize, 1..120usize, 0..8u64), 1..300)
        ) {
            let mut acc: Accumulator<u64> = Accumulator::new(Settings { idempotent: false, ..settings(false) });
            let start = Instant::now();
            let mut now = start;
            let mut sent: [Vec<u64>; 3] = Default::default();
            let mut appended: [Vec<u64>; 3] = Default::default();
            for (i, (p, size, advance)) in ops.into_iter().enumerate() {
                let tp = TopicPartition::new("t", p as i32);
                acc.append(&tp, record(i as u64), size, i as u64, now);
                appended[p].push(i as u64);
                now += Duration::from_millis(advance);
                let drained = acc.drain(now, |_| Some(1), |_| true);
                prop_assert!(drained.expired.is_empty());
                for (_, batches) in drained.requests {
                    for b in batches {
                        let ready = b.bytes >= 100 || now >= b.created + Duration::from_millis(5);
                        // Or a later batch exists behind it (it is full in effect).
                        let last_id = appended[b.tp.partition as usize].last().copied();
                        prop_assert!(ready || b.waiters.last() != last_id.as_ref(), "sent early");
                        prop_assert!(b.bytes <= 100 || b.records.len() == 1);
                        sent[b.tp.partition as usize].extend(&b.waiters);
                        let done = acc.complete(b, Outcome::Written { base_offset: 0 }, now);
                        prop_assert_eq!(done.len(), 1);
                    }
                }
            }
            let until = acc.flush();
            let drained = acc.drain(now, |_| Some(1), |_| true);
            for (_, batches) in drained.requests {
                for b in batches {
                    sent[b.tp.partition as usize].extend(&b.waiters);
                    acc.complete(b, Outcome::Written { base_offset: 0 }, now);
                }
            }
            // One drain sends one batch per partition; drain until done (bounded).
            for _ in 0..1000 {
                if acc.flushed(until) { break; }
                let drained = acc.drain(now, |_| Some(1), |_| true);
                for (_, batches) in drained.requests {
                    for b in batches {
                        sent[b.tp.partition as usize].extend(&b.waiters);
                        acc.complete(b, Outcome::Written { base_offset: 0 }, now);
                    }
                }
            }
            prop_assert!(acc.flushed(until));
            prop_assert_eq!(sent, appended);
        }
    }

    #[test]
    fn a_retried_batch_keeps_its_sequence_and_later_batches_keep_theirs() {
        let mut h = Harness::new(true);
        for _ in 0..3 {
            h.apply(Step::Append {
                partition: 0,
                records: 2,
            }); // 100 bytes: one full batch each
            h.apply(Step::Drain);
        }
        let seqs: Vec<i32> = h.in_flight[0].iter().map(|b| b.wire_sequence()).collect();
        assert_eq!(seqs, vec![0, 2, 4]);
        h.apply(Step::Settle {
            partition: 0,
            newest: false,
            fate: Fate::NotLeader,
        });
        // The later two fail because the first is missing, and are retried after it.
        h.apply(Step::Settle {
            partition: 0,
            newest: false,
            fate: Fate::Answered,
        });
        h.apply(Step::Settle {
            partition: 0,
            newest: false,
            fate: Fate::Answered,
        });
        assert!(h.results.is_empty());
        h.settle_all();
        h.check(true);
        assert_eq!(h.brokers[0].log, (0..6).collect::<Vec<u64>>());
        assert_eq!(
            h.brokers[0].producers.len(),
            1,
            "no new producer id was needed"
        );
    }

    #[test]
    fn a_lost_answer_is_retried_and_deduplicated() {
        let mut h = Harness::new(true);
        h.apply(Step::Append {
            partition: 0,
            records: 2,
        });
        h.apply(Step::Drain);
        h.apply(Step::Settle {
            partition: 0,
            newest: false,
            fate: Fate::AnswerLost,
        });
        h.settle_all();
        h.check(true);
        assert_eq!(h.brokers[0].log, vec![0, 1]);
        assert_eq!(h.results[&1], Ok(1));
    }

    #[test]
    fn a_fatal_refusal_fails_the_batch_and_renumbers_the_rest() {
        let mut h = Harness::new(true);
        for _ in 0..2 {
            h.apply(Step::Append {
                partition: 0,
                records: 2,
            });
            h.apply(Step::Drain);
        }
        h.apply(Step::Settle {
            partition: 0,
            newest: false,
            fate: Fate::TooLarge,
        });
        assert!(h.acc.bump_needed());
        h.apply(Step::Settle {
            partition: 0,
            newest: false,
            fate: Fate::Answered,
        });
        assert!(!h.acc.bump_needed(), "bumped once nothing was in flight");
        h.settle_all();
        h.check(true);
        assert_eq!(h.brokers[0].log, vec![2, 3]);
        assert!(
            h.results[&0]
                .as_ref()
                .is_err_and(|e| e.contains("MESSAGE_TOO_LARGE"))
        );
    }
}
