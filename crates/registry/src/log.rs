//! The log the registry keeps its state in: a trait, an in-memory implementation for unit
//! tests, and the `_schemas` topic through strom-client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strom_client::{Client, ClientError, Codec, ProducerRecord, offset_spec};
use tokio::sync::{Mutex, Notify};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One record of the log: its offset, key and value (`None`: a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub offset: i64,
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// A single-partition, append-only log whose offsets never change (compaction may remove
/// records, never move them).
pub trait Log: Send + Sync + 'static {
    /// Appends the records as one batch; returns the offset of the first.
    fn append(&self, records: Vec<(Bytes, Option<Bytes>)>) -> BoxFuture<'_, Result<i64, String>>;
    /// The offset the next appended record will get.
    fn end_offset(&self) -> BoxFuture<'_, Result<i64, String>>;
    /// Records at or after `from`, waiting up to `wait` for some; returns them and the offset
    /// to read from next.
    fn read(
        &self,
        from: i64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(Vec<LogRecord>, i64), String>>;
}

/// An in-memory log, for tests.
#[derive(Default)]
pub struct MemoryLog {
    records: Mutex<Vec<LogRecord>>,
    appended: Notify,
}

impl MemoryLog {
    pub fn new() -> Arc<MemoryLog> {
        Arc::new(MemoryLog::default())
    }

    /// Keeps only the latest record of each key and drops tombstones, as compaction may.
    pub async fn compact(&self) {
        let mut records = self.records.lock().await;
        let mut latest = std::collections::HashMap::new();
        for r in records.iter() {
            latest.insert(r.key.clone(), r.offset);
        }
        records.retain(|r| latest.get(&r.key) == Some(&r.offset) && r.value.is_some());
    }
}

impl Log for MemoryLog {
    fn append(&self, batch: Vec<(Bytes, Option<Bytes>)>) -> BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move {
            let mut records = self.records.lock().await;
            let base = records.last().map(|r| r.offset + 1).unwrap_or(0);
            for (i, (key, value)) in batch.into_iter().enumerate() {
                records.push(LogRecord {
                    offset: base + i as i64,
                    key,
                    value,
                });
            }
            self.appended.notify_waiters();
            Ok(base)
        })
    }

    fn end_offset(&self) -> BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move {
            let records = self.records.lock().await;
            Ok(records.last().map(|r| r.offset + 1).unwrap_or(0))
        })
    }

    fn read(
        &self,
        from: i64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(Vec<LogRecord>, i64), String>> {
        Box::pin(async move {
            let notified = self.appended.notified();
            {
                let records = self.records.lock().await;
                let out: Vec<LogRecord> = records
                    .iter()
                    .filter(|r| r.offset >= from)
                    .cloned()
                    .collect();
                if !out.is_empty() {
                    let next = out.last().map(|r| r.offset + 1).unwrap_or(from);
                    return Ok((out, next));
                }
            }
            let _ = tokio::time::timeout(wait, notified).await;
            Ok((Vec::new(), from))
        })
    }
}

/// The `_schemas` topic (partition 0) through strom-client.
pub struct KafkaLog {
    client: Arc<Client>,
    topic: String,
}

pub const SCHEMAS_TOPIC: &str = "_schemas";

fn client_error(e: ClientError) -> String {
    e.to_string()
}

/// UNKNOWN_TOPIC_OR_PARTITION: the topic does not exist (yet).
const UNKNOWN_TOPIC: i16 = 3;
/// TOPIC_ALREADY_EXISTS.
const TOPIC_EXISTS: i16 = 36;

impl KafkaLog {
    /// The log in `topic`. The topic is created on the first write, so a broker whose registry
    /// is never used gets no `_schemas` topic; until then the log reads as empty.
    pub fn new(client: Arc<Client>, topic: &str) -> KafkaLog {
        KafkaLog {
            client,
            topic: topic.to_string(),
        }
    }

    /// Creates the compacted, single-partition topic (another instance may have done it).
    async fn create(&self) -> Result<(), String> {
        match self
            .client
            .create_topic(
                &self.topic,
                1,
                -1,
                vec![("cleanup.policy".to_string(), "compact".to_string())],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kafka_code() == Some(TOPIC_EXISTS) => Ok(()),
            Err(e) => Err(client_error(e)),
        }
    }
}

impl Log for KafkaLog {
    fn append(&self, batch: Vec<(Bytes, Option<Bytes>)>) -> BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let records: Vec<ProducerRecord> = batch
                .into_iter()
                .map(|(key, value)| ProducerRecord {
                    key: Some(key),
                    value,
                    headers: Vec::new(),
                    timestamp_ms: now,
                })
                .collect();
            let mut attempts = 0;
            loop {
                match self
                    .client
                    .produce(&self.topic, 0, &records, Codec::None, -1)
                    .await
                {
                    // The first write creates the topic; its leader may take a moment.
                    Err(e) if e.kafka_code() == Some(UNKNOWN_TOPIC) && attempts < 50 => {
                        if attempts == 0 {
                            self.create().await?;
                        }
                        attempts += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => return other.map_err(client_error),
                }
            }
        })
    }

    fn end_offset(&self) -> BoxFuture<'_, Result<i64, String>> {
        Box::pin(async move {
            match self
                .client
                .list_offsets(&self.topic, 0, offset_spec::LATEST)
                .await
            {
                Ok((offset, _)) => Ok(offset),
                // Not created yet: an empty log.
                Err(e) if e.kafka_code() == Some(UNKNOWN_TOPIC) => Ok(0),
                Err(e) => Err(client_error(e)),
            }
        })
    }

    fn read(
        &self,
        from: i64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(Vec<LogRecord>, i64), String>> {
        Box::pin(async move {
            let fetched = match self
                .client
                .fetch(&self.topic, 0, from, 4 << 20, wait.as_millis() as i32)
                .await
            {
                Ok(f) => f,
                // Not created yet: nothing to read.
                Err(e) if e.kafka_code() == Some(UNKNOWN_TOPIC) => {
                    tokio::time::sleep(wait).await;
                    return Ok((Vec::new(), from));
                }
                // OFFSET_OUT_OF_RANGE: the head was removed; go on from the log start.
                Err(e) if e.kafka_code() == Some(1) => {
                    let (start, _) = self
                        .client
                        .list_offsets(&self.topic, 0, offset_spec::EARLIEST)
                        .await
                        .map_err(client_error)?;
                    if start > from {
                        return Ok((Vec::new(), start));
                    }
                    return Err(client_error(e));
                }
                Err(e) => return Err(client_error(e)),
            };
            let records = fetched
                .records
                .into_iter()
                .filter_map(|r| {
                    Some(LogRecord {
                        offset: r.offset,
                        key: r.key?,
                        value: r.value,
                    })
                })
                .collect();
            // A log start past `from` (compaction or retention removed the head) moves the
            // reader forward.
            let next = fetched
                .next_offset
                .max(fetched.log_start_offset.min(fetched.high_watermark));
            Ok((records, next.max(from)))
        })
    }
}
