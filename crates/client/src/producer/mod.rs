//! The producer: records to Kafka topics, batched per partition, with Kafka's settings and
//! guarantees.
//!
//! A [`Producer`] is configured with the Java client's property names (`bootstrap.servers`,
//! `acks`, `linger.ms`, `batch.size`, `compression.type`, `enable.idempotence`, ...; see
//! [`ProducerConfig`]). [`Producer::send`] puts a record into the batch of its partition and
//! returns a [`DeliveryFuture`] that resolves to the partition and offset the record was written
//! at, or to an error that says whether it is retriable ([`ClientError::is_retriable`]), its
//! Kafka error name and the partition it concerns. A background task sends ready batches to the
//! partition leaders, several requests in flight per connection, retrying what can be retried.
//!
//! Idempotence is on by default: the broker keeps each partition's records in the order they
//! were sent and writes each at most once, even when requests are retried or leaders change.
//!
//! ```no_run
//! use strom_client::Properties;
//! use strom_client::producer::{Producer, Record};
//!
//! # async fn run() -> Result<(), strom_client::ClientError> {
//! let producer = Producer::new(
//!     Properties::default()
//!         .set("bootstrap.servers", "127.0.0.1:9092")
//!         .set("linger.ms", 10)
//!         .set("compression.type", "zstd"),
//! )?;
//! let delivery = producer
//!     .send(Record::new("orders", "order 17 shipped").key("customer-4"))
//!     .await?;
//! let written = delivery.await?;
//! println!("written to partition {} at offset {}", written.partition, written.offset);
//! producer.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! With a `transactional.id`, records of several partitions (and a consumer group's offsets)
//! are committed or aborted together (Kafka's classic transaction protocol, or transactions v2
//! of KIP-890 when the cluster finalized `transaction.version` 2):
//!
//! ```no_run
//! use strom_client::Properties;
//! use strom_client::producer::{GroupMetadata, Producer, Record};
//!
//! # async fn run() -> Result<(), strom_client::ClientError> {
//! let producer = Producer::new(
//!     Properties::default()
//!         .set("bootstrap.servers", "127.0.0.1:9092")
//!         .set("transactional.id", "orders-enricher-1"),
//! )?;
//! producer.init_transactions().await?;
//! producer.begin_transaction().await?;
//! producer.send(Record::new("enriched-orders", "order 17, gold customer")).await?;
//! producer
//!     .send_offsets_to_transaction(
//!         &[("orders".to_string(), 0, 18)],
//!         &GroupMetadata::new("enricher"),
//!     )
//!     .await?;
//! if let Err(e) = producer.commit_transaction().await {
//!     // Nothing of the transaction is visible. Abort it (this fails too if the producer was
//!     // fenced by a newer one with the same transactional.id) and start again.
//!     eprintln!("commit failed: {e}");
//!     producer.abort_transaction().await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Counters of what the producer did (requests, retries, records delivered and failed) are in
//! [`Producer::stats`].

pub mod accumulator;
pub mod config;
pub mod partitioner;
mod sender;
mod transaction;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, TryAcquireError, oneshot};
use tokio::task::JoinHandle;

use strom_protocol::error_code;
use strom_protocol::records::ProducerRecord;

use crate::client::Client;
use crate::config::Properties;
use crate::error::ClientError;

pub use accumulator::TopicPartition;
pub use config::{PartitionerKind, ProducerConfig};
pub use partitioner::{key_partition, murmur2, to_positive};
pub use transaction::GroupMetadata;

use accumulator::{Accumulator, Settings, record_size};
use partitioner::Partitioner;

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub topic: String,
    /// The partition; `None`: chosen by the partitioner (by key, else sticky).
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Creation time in ms since the epoch; `None`: now.
    pub timestamp_ms: Option<i64>,
}

impl Record {
    /// A record with a value and no key.
    pub fn new(topic: &str, value: impl Into<Bytes>) -> Record {
        Record {
            topic: topic.to_string(),
            value: Some(value.into()),
            ..Record::default()
        }
    }

    pub fn key(mut self, key: impl Into<Bytes>) -> Record {
        self.key = Some(key.into());
        self
    }

    pub fn partition(mut self, partition: i32) -> Record {
        self.partition = Some(partition);
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<Bytes>) -> Record {
        self.headers.push((name.to_string(), Some(value.into())));
        self
    }

    pub fn timestamp(mut self, ms: i64) -> Record {
        self.timestamp_ms = Some(ms);
        self
    }
}

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    /// The record's offset; -1 with acks=0 (the broker does not answer).
    pub offset: i64,
}

type Waiter = oneshot::Sender<Result<Delivered, ClientError>>;

/// Resolves when the record is written (or failed for good).
#[derive(Debug)]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<Delivered, ClientError>>,
}

impl Future for DeliveryFuture {
    type Output = Result<Delivered, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed("producer"))))
    }
}

/// Counters of what the producer did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Produce requests sent.
    pub requests: u64,
    /// Batches sent (retries included).
    pub batches_sent: u64,
    /// Batches sent again after a failed or unanswered attempt.
    pub retries: u64,
    /// Records delivered / failed.
    pub records_delivered: u64,
    pub records_failed: u64,
    /// Producer ids obtained (the first, and one per sequence reset).
    pub producer_ids: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    batches_sent: AtomicU64,
    retries: AtomicU64,
    records_delivered: AtomicU64,
    records_failed: AtomicU64,
    producer_ids: AtomicU64,
}

/// What metadata says about a topic.
#[derive(Debug, Clone)]
struct TopicInfo {
    /// Leader per partition index (-1: none).
    leaders: Vec<i32>,
}

/// The producer id and epoch batches are written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProducerId {
    id: i64,
    epoch: i16,
}

struct State {
    acc: Accumulator<Waiter>,
    partitioner: Partitioner,
    topics: HashMap<String, TopicInfo>,
    brokers: HashMap<i32, String>,
    producer_id: Option<ProducerId>,
    /// Requests in flight per broker.
    in_flight: HashMap<i32, usize>,
    metadata_wanted: bool,
    /// Set when the producer cannot go on (e.g. fenced); every send fails with it.
    fatal: Option<String>,
    /// `close()` was called: the sender ends once everything is finished.
    closing: bool,
    /// A record of the open transaction failed: the transaction can only abort.
    txn_error: Option<String>,
    /// Counts metadata refreshes.
    metadata_version: u64,
    /// Transactions v2 are in use (Produce v12).
    txn_v2: bool,
}

struct Inner {
    config: ProducerConfig,
    client: Client,
    state: Mutex<State>,
    /// Wakes the sender task: a batch became ready, a request finished, close.
    wake: Notify,
    /// Batches finished (flush and close wait on it).
    progress: Notify,
    /// Bytes of records not finished yet may not exceed `buffer.memory`.
    buffer: Arc<Semaphore>,
    closed: AtomicBool,
    /// With a `transactional.id`.
    txn: Option<tokio::sync::Mutex<transaction::Transactions>>,
    counters: Counters,
    /// A metadata refresh of the sender is running.
    refreshing: AtomicBool,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A Kafka producer. Cheap to share behind an `Arc`; `send` takes `&self`.
pub struct Producer {
    inner: Arc<Inner>,
    sender: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("bootstrap", &self.inner.config.common.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Ok(mut s) = self.sender.lock()
            && let Some(task) = s.take()
        {
            task.abort();
        }
    }
}

impl Producer {
    /// A producer configured by Kafka property names. Must be called inside a tokio runtime (it
    /// starts the sender task); nothing is connected until the first send.
    pub fn new(properties: Properties) -> Result<Producer, ClientError> {
        let config = ProducerConfig::from_properties(properties)?;
        Producer::with_config(config)
    }

    pub fn with_config(config: ProducerConfig) -> Result<Producer, ClientError> {
        let txn = match &config.transactional_id {
            Some(id) => Some(tokio::sync::Mutex::new(transaction::Transactions::new(
                &config,
                id.clone(),
            )?)),
            None => None,
        };
        let client = Client::with_config(&config.common.bootstrap(), config.common.connection())?;
        let settings = Settings {
            // A batch never outgrows a request.
            batch_size: config.batch_size.clamp(
                1,
                config
                    .max_request_size
                    .saturating_sub(accumulator::BATCH_OVERHEAD)
                    .max(1),
            ),
            linger: config.linger,
            max_in_flight: config.max_in_flight,
            idempotent: config.idempotence,
            delivery_timeout: config.delivery_timeout,
            retries: config.retries,
            retry_backoff: config.common.retry_backoff,
            retry_backoff_max: config.common.retry_backoff_max,
            max_request_size: config.max_request_size,
        };
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        let state = State {
            acc: Accumulator::new(settings),
            partitioner: Partitioner::new(config.partitioner, u64::from_le_bytes(seed)),
            topics: HashMap::new(),
            brokers: HashMap::new(),
            producer_id: None,
            in_flight: HashMap::new(),
            metadata_wanted: false,
            fatal: None,
            closing: false,
            txn_error: None,
            metadata_version: 0,
            txn_v2: false,
        };
        let permits = config.buffer_memory.min(Semaphore::MAX_PERMITS);
        let inner = Arc::new(Inner {
            client,
            state: Mutex::new(state),
            wake: Notify::new(),
            progress: Notify::new(),
            buffer: Arc::new(Semaphore::new(permits)),
            closed: AtomicBool::new(false),
            txn,
            counters: Counters::default(),
            refreshing: AtomicBool::new(false),
            config,
        });
        let task = tokio::spawn(sender::run(Arc::clone(&inner)));
        Ok(Producer {
            inner,
            sender: Mutex::new(Some(task)),
        })
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// The producer id and epoch records are written with (once known).
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.inner.state().producer_id.map(|p| (p.id, p.epoch))
    }

    /// Whether transactions use Kafka's transactions v2 protocol (KIP-890: the cluster
    /// finalized `transaction.version` 2), as found by `init_transactions`.
    pub fn transactions_v2(&self) -> bool {
        self.inner.state().txn_v2
    }

    /// What the producer did so far.
    pub fn stats(&self) -> ProducerStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProducerStats {
            requests: get(&c.requests),
            batches_sent: get(&c.batches_sent),
            retries: get(&c.retries),
            records_delivered: get(&c.records_delivered),
            records_failed: get(&c.records_failed),
            producer_ids: get(&c.producer_ids),
        }
    }

    /// Puts a record into its partition's batch. Waits (up to `max.block.ms`) for the topic's
    /// metadata and for room in the buffer (`buffer.memory`); then returns a future for the
    /// record's delivery.
    pub async fn send(&self, record: Record) -> Result<DeliveryFuture, ClientError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(ClientError::Closed("producer"));
        }
        if let Some(reason) = inner.state().fatal.clone() {
            return Err(ClientError::InvalidArgument(format!(
                "the producer cannot send any more: {reason}"
            )));
        }
        let started = Instant::now();
        let deadline = started + inner.config.max_block;
        let partitions = self.partition_count(&record.topic, deadline).await?;
        if let Some(p) = record.partition
            && !(0..partitions).contains(&p)
        {
            return Err(ClientError::partition(
                error_code::UNKNOWN_TOPIC_OR_PARTITION,
                &record.topic,
                p,
                Some(&format!("the topic has {partitions} partitions")),
            ));
        }
        let timestamp_ms = record.timestamp_ms.unwrap_or_else(now_ms);
        let producer_record = ProducerRecord {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp_ms,
        };
        let size = record_size(&producer_record);
        let limit = inner.config.max_request_size;
        if size + accumulator::BATCH_OVERHEAD > limit {
            return Err(ClientError::RecordTooLarge {
                size,
                limit,
                property: "max.request.size",
            });
        }
        let permits = u32::try_from(size).map_err(|_| ClientError::RecordTooLarge {
            size,
            limit: u32::MAX as usize,
            property: "buffer.memory",
        })?;
        // Room in the buffer is the usual case: take it without a timer.
        let fast = Arc::clone(&inner.buffer).try_acquire_many_owned(permits);
        let waited = match fast {
            Ok(permit) => Ok(Ok(permit)),
            Err(TryAcquireError::Closed) => Ok(Err(())),
            Err(TryAcquireError::NoPermits) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                tokio::time::timeout(wait, Arc::clone(&inner.buffer).acquire_many_owned(permits))
                    .await
                    .map(|r| r.map_err(|_| ()))
            }
        };
        match waited {
            Ok(Ok(permit)) => permit.forget(),
            Ok(Err(())) => return Err(ClientError::Closed("producer")),
            Err(_) => {
                return Err(ClientError::MaxBlock {
                    what: format!(
                        "the producer's buffer (buffer.memory={}) stayed full",
                        inner.config.buffer_memory
                    ),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
        let tp = {
            let mut state = inner.state();
            let key = producer_record.key.as_deref();
            let partition = record
                .partition
                .unwrap_or_else(|| state.partitioner.partition(&record.topic, key, partitions));
            TopicPartition::new(&record.topic, partition)
        };
        if inner.txn.is_some()
            && let Err(e) = self.add_to_transaction(&tp).await
        {
            inner.buffer.add_permits(size);
            return Err(e);
        }
        let (tx, rx) = oneshot::channel();
        let wake = {
            let mut state = inner.state();
            if state.closing {
                drop(state);
                inner.buffer.add_permits(size);
                return Err(ClientError::Closed("producer"));
            }
            let appended = state
                .acc
                .append(&tp, producer_record, size, tx, Instant::now());
            if appended.batch_full {
                state
                    .partitioner
                    .batch_done(&record.topic, tp.partition, partitions);
            }
            appended.batch_full || appended.new_batch
        };
        if wake {
            inner.wake.notify_one();
        }
        Ok(DeliveryFuture { rx })
    }

    /// The number of partitions of `topic`, from metadata (fetched if needed, until
    /// `deadline`).
    async fn partition_count(&self, topic: &str, deadline: Instant) -> Result<i32, ClientError> {
        let inner = &self.inner;
        // The usual case first, without reading the clock.
        if let Some(t) = inner.state().topics.get(topic) {
            return Ok(t.leaders.len() as i32);
        }
        let started = Instant::now();
        loop {
            if let Some(t) = inner.state().topics.get(topic) {
                return Ok(t.leaders.len() as i32);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let refreshed =
                tokio::time::timeout(remaining, sender::refresh_metadata(inner, Some(topic)))
                    .await
                    .unwrap_or_else(|_| {
                        Err(ClientError::Timeout {
                            what: format!("metadata of topic {topic:?}"),
                            timeout_ms: remaining.as_millis() as u64,
                        })
                    });
            let last_error = match refreshed {
                Ok(()) => {
                    if inner.state().topics.contains_key(topic) {
                        continue;
                    }
                    None
                }
                Err(e) if !e.is_retriable() => return Err(e),
                Err(e) => Some(e),
            };
            if Instant::now() >= deadline {
                return Err(ClientError::MaxBlock {
                    what: format!(
                        "topic {topic:?} was not found in the metadata{}",
                        last_error.map(|e| format!(" ({e})")).unwrap_or_default()
                    ),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            let backoff = inner
                .config
                .common
                .retry_backoff
                .max(Duration::from_millis(10));
            tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                .await;
        }
    }

    /// Sends every record sent before this call without lingering, and waits until each is
    /// written or failed.
    pub async fn flush(&self) {
        let until = self.inner.state().acc.flush();
        self.inner.wake.notify_one();
        loop {
            let progressed = self.inner.progress.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            if self.inner.state().acc.flushed(until) {
                return;
            }
            progressed.await;
        }
    }

    /// Like [`Producer::close`], waiting at most `timeout` for records to be delivered; records
    /// still undelivered then fail with [`ClientError::Closed`].
    pub async fn close_with_timeout(&self, timeout: Duration) -> Result<(), ClientError> {
        if tokio::time::timeout(timeout, self.close()).await.is_ok() {
            return Ok(());
        }
        let failed = {
            let mut s = self.inner.state();
            s.closing = true;
            s.acc.fail_all(|_| ClientError::Closed("producer"))
        };
        sender::deliver(&self.inner, failed);
        let task = self.sender.lock().ok().and_then(|mut s| s.take());
        if let Some(task) = task {
            task.abort();
        }
        Err(ClientError::Timeout {
            what: "closing the producer".into(),
            timeout_ms: timeout.as_millis() as u64,
        })
    }

    /// Flushes, then stops the sender task. Later sends fail with [`ClientError::Closed`].
    pub async fn close(&self) -> Result<(), ClientError> {
        self.inner.closed.store(true, Ordering::Release);
        self.flush().await;
        self.inner.state().closing = true;
        self.inner.wake.notify_one();
        let task = self.sender.lock().ok().and_then(|mut s| s.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A copy of an error for each record of a failed batch.
fn copy_error(e: &ClientError) -> ClientError {
    match e {
        ClientError::Partition {
            topic,
            partition,
            code,
            name,
            message,
        } => ClientError::Partition {
            topic: topic.clone(),
            partition: *partition,
            code: *code,
            name,
            message: message.clone(),
        },
        ClientError::Kafka {
            code,
            name,
            message,
        } => ClientError::Kafka {
            code: *code,
            name,
            message: message.clone(),
        },
        ClientError::DeliveryTimeout {
            topic,
            partition,
            timeout_ms,
            last_error,
        } => ClientError::DeliveryTimeout {
            topic: topic.clone(),
            partition: *partition,
            timeout_ms: *timeout_ms,
            last_error: last_error.clone(),
        },
        ClientError::Timeout { what, timeout_ms } => ClientError::Timeout {
            what: what.clone(),
            timeout_ms: *timeout_ms,
        },
        ClientError::NotDelivered {
            topic,
            partition,
            reason,
            retriable,
        } => ClientError::NotDelivered {
            topic: topic.clone(),
            partition: *partition,
            reason: reason.clone(),
            retriable: *retriable,
        },
        ClientError::Closed(what) => ClientError::Closed(what),
        ClientError::Io(io) => ClientError::Io(std::io::Error::new(io.kind(), io.to_string())),
        other => ClientError::UnexpectedResponse(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer can be shared between tasks, and its futures can run on any of them.
    #[test]
    fn producers_and_their_futures_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<Producer>();
        send_sync::<DeliveryFuture>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let p = Producer::new(Properties::default().set("bootstrap.servers", "127.0.0.1:1"))
                .expect("producer");
            send(&p.send(Record::new("t", "v")));
            send(&p.flush());
            send(&p.close());
            send(&p.init_transactions());
            send(&p.begin_transaction());
            send(&p.commit_transaction());
            send(&p.abort_transaction());
            send(&p.send_offsets_to_transaction(&[], &GroupMetadata::new("g")));
        });
    }

    /// Without a transactional.id, the transaction calls say so.
    #[test]
    fn transaction_calls_need_a_transactional_id() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let p = Producer::new(Properties::default().set("bootstrap.servers", "127.0.0.1:1"))
                .expect("producer");
            let e = p.begin_transaction().await.expect_err("not transactional");
            assert!(e.to_string().contains("transactional.id"), "{e}");
            assert!(!e.is_retriable());
        });
    }

    /// A closed producer refuses sends with a typed error.
    #[test]
    fn a_closed_producer_refuses_sends() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let p = Producer::new(Properties::default().set("bootstrap.servers", "127.0.0.1:1"))
                .expect("producer");
            p.close().await.expect("close");
            let e = p.send(Record::new("t", "v")).await.expect_err("closed");
            assert!(matches!(e, ClientError::Closed(_)), "{e}");
        });
    }
}
