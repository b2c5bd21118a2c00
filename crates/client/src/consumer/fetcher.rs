//! Fetching: one fetch in flight per partition leader, run on background tasks so that the
//! next records are on their way while the application works through the last ones.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Mutex, mpsc};

use strom_protocol::messages::TopicName;
use strom_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use strom_protocol::messages::fetch_response::AbortedTransaction;
use strom_protocol::records::{self, ConsumedRecord};
use strom_protocol::{ApiKey, RequestKind, ResponseKind, error_code, str_bytes};

use super::TopicPartition;
use crate::connection::{Connection, ConnectionConfig};
use crate::error::ClientError;

const FETCH_VERSION: i16 = 12;

/// One partition of a fetch request.
#[derive(Debug, Clone)]
pub(crate) struct FetchTarget {
    pub tp: TopicPartition,
    pub offset: i64,
    pub leader_epoch: i32,
}

/// What a fetch returned for one partition.
#[derive(Debug)]
pub(crate) struct PartitionFetch {
    pub tp: TopicPartition,
    /// The offset the fetch asked for.
    pub fetch_offset: i64,
    pub error_code: i16,
    pub high_watermark: i64,
    pub records: Vec<ConsumedRecord>,
    /// Where the next fetch starts (past control batches and aborted records).
    pub next_offset: i64,
    /// The partition's records did not decode (a corrupt batch): reported for this partition
    /// alone.
    pub decode_error: Option<String>,
}

/// The outcome of one fetch request to one broker.
#[derive(Debug)]
pub(crate) struct FetchOutcome {
    pub broker: i32,
    pub result: Result<Vec<PartitionFetch>, ClientError>,
}

/// Fetch settings shared by every request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchSettings {
    pub min_bytes: i32,
    pub max_bytes: i32,
    pub max_wait: Duration,
    pub partition_max_bytes: i32,
    pub isolation_level: i8,
}

/// Connections to partition leaders, opened on first use and replaced when broken.
pub(crate) type BrokerConnection = Arc<Mutex<Option<Connection>>>;

/// Sends one fetch on a background task; the outcome arrives on `results`.
pub(crate) fn spawn_fetch(
    broker: i32,
    addr: String,
    conn: BrokerConnection,
    config: ConnectionConfig,
    settings: FetchSettings,
    targets: Vec<FetchTarget>,
    results: mpsc::Sender<FetchOutcome>,
) {
    tokio::spawn(async move {
        let result = fetch_once(&addr, &conn, config, settings, &targets).await;
        // The consumer may be gone; nothing to do then.
        let _ = results.send(FetchOutcome { broker, result }).await;
    });
}

async fn fetch_once(
    addr: &str,
    conn: &BrokerConnection,
    config: ConnectionConfig,
    settings: FetchSettings,
    targets: &[FetchTarget],
) -> Result<Vec<PartitionFetch>, ClientError> {
    let mut guard = conn.lock().await;
    if guard.as_ref().is_none_or(Connection::is_broken) {
        *guard = Some(Connection::connect(addr, config.clone()).await?);
    }
    let Some(c) = guard.as_mut() else {
        return Err(ClientError::UnexpectedResponse("no connection".into()));
    };
    let version = c.version(ApiKey::Fetch, FETCH_VERSION)?;
    let mut by_topic: Vec<FetchTopic> = Vec::new();
    for t in targets {
        let mut p = FetchPartition::default();
        p.partition = t.tp.partition;
        p.fetch_offset = t.offset;
        p.current_leader_epoch = t.leader_epoch;
        p.last_fetched_epoch = -1;
        p.log_start_offset = -1;
        p.partition_max_bytes = settings.partition_max_bytes;
        match by_topic
            .iter_mut()
            .find(|ft| ft.topic.as_str() == t.tp.topic)
        {
            Some(ft) => ft.partitions.push(p),
            None => {
                let mut ft = FetchTopic::default();
                ft.topic = TopicName(str_bytes(t.tp.topic.as_str()));
                ft.partitions = vec![p];
                by_topic.push(ft);
            }
        }
    }
    let mut req = FetchRequest::default();
    req.replica_id = (-1).into();
    req.max_wait_ms = settings.max_wait.as_millis().min(i32::MAX as u128) as i32;
    req.min_bytes = settings.min_bytes;
    req.max_bytes = settings.max_bytes;
    req.isolation_level = settings.isolation_level;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = by_topic;
    let timeout = config.request_timeout + settings.max_wait;
    let response = c
        .send_with_timeout(ApiKey::Fetch, version, RequestKind::Fetch(req), timeout)
        .await?;
    let ResponseKind::Fetch(response) = response else {
        return Err(ClientError::UnexpectedResponse(
            "Fetch answered with another response".into(),
        ));
    };
    drop(guard);
    if response.error_code != error_code::NONE {
        return Err(ClientError::kafka(response.error_code, "fetch", None));
    }
    let mut out = Vec::new();
    for t in &response.responses {
        for p in &t.partitions {
            let tp = TopicPartition::new(t.topic.as_str(), p.partition_index);
            let Some(target) = targets.iter().find(|x| x.tp == tp) else {
                continue;
            };
            let mut fetch = PartitionFetch {
                tp,
                fetch_offset: target.offset,
                error_code: p.error_code,
                high_watermark: p.high_watermark,
                records: Vec::new(),
                next_offset: target.offset,
                decode_error: None,
            };
            if p.error_code == error_code::NONE {
                let data = p.records.clone().unwrap_or_default();
                let aborted = if settings.isolation_level == 1 {
                    p.aborted_transactions.clone().unwrap_or_default()
                } else {
                    Vec::new()
                };
                match decode_fetched(data, target.offset, &aborted) {
                    Ok((records, next)) => {
                        fetch.records = records;
                        fetch.next_offset = next;
                    }
                    Err(e) => fetch.decode_error = Some(e.to_string()),
                }
            }
            out.push(fetch);
        }
    }
    Ok(out)
}

const LIST_OFFSETS_VERSION: i16 = 7;

/// The offset for `timestamp` (-2 earliest, -1 latest) of one partition, asked of its leader at
/// `isolation_level` (under read_committed "latest" is the last stable offset).
pub(crate) async fn list_offset(
    addr: &str,
    conn: &BrokerConnection,
    config: ConnectionConfig,
    target: &FetchTarget,
    timestamp: i64,
    isolation_level: i8,
) -> Result<i64, ClientError> {
    use strom_protocol::messages::list_offsets_request::{
        ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
    };
    let mut guard = conn.lock().await;
    if guard.as_ref().is_none_or(Connection::is_broken) {
        *guard = Some(Connection::connect(addr, config.clone()).await?);
    }
    let Some(c) = guard.as_mut() else {
        return Err(ClientError::UnexpectedResponse("no connection".into()));
    };
    let version = c.version(ApiKey::ListOffsets, LIST_OFFSETS_VERSION)?;
    let mut p = ListOffsetsPartition::default();
    p.partition_index = target.tp.partition;
    p.current_leader_epoch = target.leader_epoch;
    p.timestamp = timestamp;
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(str_bytes(target.tp.topic.as_str()));
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = (-1).into();
    req.isolation_level = isolation_level;
    req.topics = vec![t];
    let response = c
        .send(ApiKey::ListOffsets, version, RequestKind::ListOffsets(req))
        .await?;
    let ResponseKind::ListOffsets(r) = response else {
        return Err(ClientError::UnexpectedResponse(
            "ListOffsets answered with another response".into(),
        ));
    };
    let p = r
        .topics
        .iter()
        .filter(|t| t.name.as_str() == target.tp.topic)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == target.tp.partition)
        .ok_or_else(|| {
            ClientError::UnexpectedResponse(format!("ListOffsets has no answer for {}", target.tp))
        })?;
    if p.error_code != error_code::NONE {
        return Err(ClientError::kafka(
            p.error_code,
            &format!("partition {}", target.tp),
            None,
        ));
    }
    Ok(p.offset)
}

const LOG_OVERHEAD: usize = 12;
const BATCH_HEADER_BYTES: usize = 61;
const TRANSACTIONAL_FLAG: i16 = 0x10;
const CONTROL_FLAG: i16 = 0x20;

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The header fields of one batch that decide whether its records are shown.
struct BatchInfo {
    last_offset: i64,
    producer_id: i64,
    transactional: bool,
    control: bool,
}

/// Whether a control batch holds an abort marker: its one record's key is (version i16,
/// type i16) with type 0 for abort, 1 for commit. Control batches are never compressed.
fn is_abort_marker(batch: &[u8]) -> bool {
    let mut pos = BATCH_HEADER_BYTES;
    // Record: length, attributes, timestamp delta, offset delta, key length, key.
    let varint = |pos: &mut usize| -> Option<i64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *batch.get(*pos)?;
            *pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        None
    };
    let parsed = (|| {
        varint(&mut pos)?; // length
        pos += 1; // attributes
        varint(&mut pos)?; // timestamp delta
        varint(&mut pos)?; // offset delta
        let key_len = varint(&mut pos)?;
        if key_len < 4 {
            return None;
        }
        let key = batch.get(pos..pos + 4)?;
        Some(be_i16(key, 2))
    })();
    parsed == Some(0)
}

/// Decodes a fetch response's records from `fetch_offset` on, leaving out the records of
/// aborted transactions (`aborted` is empty under read_uncommitted) and control batches.
/// Returns the records and the offset the next fetch starts from.
pub(crate) fn decode_fetched(
    data: Bytes,
    fetch_offset: i64,
    aborted: &[AbortedTransaction],
) -> Result<(Vec<ConsumedRecord>, i64), ClientError> {
    let mut out = Vec::new();
    let mut next = fetch_offset;
    let mut pending: Vec<(i64, i64)> = aborted
        .iter()
        .map(|a| (a.first_offset, a.producer_id.0))
        .collect();
    pending.sort_unstable();
    let mut pending = pending.into_iter().peekable();
    let mut aborting: BTreeSet<i64> = BTreeSet::new();
    let mut pos = 0usize;
    while data.len() - pos >= BATCH_HEADER_BYTES {
        let length = be_i32(&data, pos + 8);
        if length < (BATCH_HEADER_BYTES - LOG_OVERHEAD) as i32 {
            return Err(ClientError::UnexpectedResponse(format!(
                "fetched batch at byte {pos} has length {length}"
            )));
        }
        let end = pos + LOG_OVERHEAD + length as usize;
        if end > data.len() {
            break;
        }
        let batch = data.slice(pos..end);
        pos = end;
        let attributes = be_i16(&batch, 21);
        let info = BatchInfo {
            last_offset: be_i64(&batch, 0) + i64::from(be_i32(&batch, 23)),
            producer_id: be_i64(&batch, 43),
            transactional: attributes & TRANSACTIONAL_FLAG != 0,
            control: attributes & CONTROL_FLAG != 0,
        };
        next = next.max(info.last_offset + 1);
        if !aborted.is_empty() {
            // Transactions that started at or before this batch are now known to abort.
            while let Some(&(first, pid)) = pending.peek() {
                if first > info.last_offset {
                    break;
                }
                aborting.insert(pid);
                pending.next();
            }
            if info.control {
                if info.transactional && is_abort_marker(&batch) {
                    aborting.remove(&info.producer_id);
                }
                continue;
            }
            if info.transactional && aborting.contains(&info.producer_id) {
                continue;
            }
        }
        if info.control {
            continue;
        }
        let mut records = records::decode_batches(batch)?;
        records.retain(|r| r.offset >= fetch_offset);
        out.extend(records);
    }
    if let Some(last) = out.last() {
        next = next.max(last.offset + 1);
    }
    Ok((out, next))
}

/// Error codes after which the partition's leader is looked up again.
pub(crate) fn needs_metadata(code: i16) -> bool {
    matches!(
        code,
        error_code::NOT_LEADER_OR_FOLLOWER
            | error_code::LEADER_NOT_AVAILABLE
            | error_code::UNKNOWN_TOPIC_OR_PARTITION
            | error_code::KAFKA_STORAGE_ERROR
            | 74 // FENCED_LEADER_EPOCH
            | 75 // UNKNOWN_LEADER_EPOCH
            | 100 // UNKNOWN_TOPIC_ID
            | 103 // INCONSISTENT_TOPIC_ID
            | 78 // OFFSET_NOT_AVAILABLE
    )
}

/// Connections by broker id.
#[derive(Default)]
pub(crate) struct Connections {
    by_broker: HashMap<i32, (String, BrokerConnection)>,
}

impl Connections {
    /// The connection slot for a broker at `addr` (a new slot when the address changed).
    pub fn slot(&mut self, broker: i32, addr: &str) -> BrokerConnection {
        match self.by_broker.get(&broker) {
            Some((a, c)) if a == addr => c.clone(),
            _ => {
                let c: BrokerConnection = Arc::new(Mutex::new(None));
                self.by_broker.insert(broker, (addr.to_string(), c.clone()));
                c
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_protocol::compression::Codec;
    use strom_protocol::records::{BatchProducer, ProducerRecord, encode_producer_batch};

    fn rec(v: &str) -> ProducerRecord {
        ProducerRecord {
            value: Some(Bytes::from(v.to_string())),
            ..ProducerRecord::default()
        }
    }

    fn with_base(batch: Bytes, base: i64) -> Vec<u8> {
        let mut b = batch.to_vec();
        b[0..8].copy_from_slice(&base.to_be_bytes());
        // The CRC covers from the attributes on; the base offset is outside it.
        b
    }

    #[test]
    fn control_records_are_recognised() {
        // A hand-made control batch with an abort marker: header, then one record.
        let mut batch = vec![0u8; BATCH_HEADER_BYTES];
        let record = [
            0x0c, // length 6 (zigzag)
            0x00, // attributes
            0x00, // timestamp delta
            0x00, // offset delta
            0x08, // key length 4
            0, 0, 0, 0, // version 0, type 0 (abort)
        ];
        batch.extend_from_slice(&record);
        assert!(is_abort_marker(&batch));
        let n = batch.len();
        batch[n - 1] = 1; // commit
        assert!(!is_abort_marker(&batch));
    }

    #[test]
    fn aborted_transactions_are_filtered() {
        let producer = |pid| BatchProducer {
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
        };
        let a = encode_producer_batch(&[rec("a0"), rec("a1")], Codec::None, producer(7)).unwrap();
        let b = encode_producer_batch(&[rec("b0")], Codec::None, producer(8)).unwrap();
        let mut data = with_base(a, 10);
        data.extend(with_base(b, 12));
        let data = Bytes::from(data);
        let mut at = AbortedTransaction::default();
        at.producer_id = 7.into();
        at.first_offset = 10;
        let (records, next) = decode_fetched(data.clone(), 10, &[at]).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].offset, 12);
        assert_eq!(next, 13);
        let (records, _) = decode_fetched(data.clone(), 10, &[]).unwrap();
        assert_eq!(records.len(), 3);
        // Records before the fetch offset are dropped.
        let (records, _) = decode_fetched(data, 11, &[]).unwrap();
        assert_eq!(
            records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![11, 12]
        );
    }
}
