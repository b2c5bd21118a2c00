//! Offsets committed inside a transaction (TxnOffsetCommit): written to the group's
//! `__consumer_offsets` partition as transactional batches of the producer, held pending, and
//! applied only when the transaction's COMMIT marker lands on that partition.

use std::collections::HashMap;
use std::sync::MutexGuard;

use bytes::Bytes;
use strom_protocol::error_code as ec;
use strom_protocol::records::{BatchProducer, ConsumedRecord, decode_batches};
use strom_storage::{BatchHeader, ControlType};

use super::{GroupCoordinator, OFFSETS_TOPIC};
use crate::log::CoordinatorLog;

/// Records of `__consumer_offsets` written in a transaction: (producer id, offsets partition)
/// -> (key, value) in write order.
pub(super) type PendingOffsets = HashMap<(i64, i32), Vec<(Bytes, Option<Bytes>)>>;

impl GroupCoordinator {
    fn pending(&self) -> MutexGuard<'_, PendingOffsets> {
        self.pending_txn_offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Applies (commit) or drops (abort) the producer's pending offsets of one
    /// `__consumer_offsets` partition.
    pub fn complete_txn_offsets(&self, producer_id: i64, partition: i32, commit: bool) {
        let Some(records) = self.pending().remove(&(producer_id, partition)) else {
            return;
        };
        if commit {
            self.apply_stored(records);
        }
    }

    /// Writes a TxnOffsetCommit's records to the group's offsets partition as a transactional
    /// batch of the producer; they apply when the transaction commits.
    pub fn write_txn_offsets(
        &self,
        log: &dyn CoordinatorLog,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<(), i16> {
        if records.is_empty() {
            return Ok(());
        }
        if !log.hosts(OFFSETS_TOPIC, partition) {
            return Err(ec::COORDINATOR_NOT_AVAILABLE);
        }
        let producer = BatchProducer {
            producer_id,
            producer_epoch: epoch,
            base_sequence: -1,
            transactional: true,
        };
        log.append(OFFSETS_TOPIC, partition, &records, producer)
            .inspect_err(|code| {
                tracing::warn!(producer_id, code, "cannot write transactional offsets");
            })?;
        self.pending()
            .entry((producer_id, partition))
            .or_default()
            .extend(records);
        Ok(())
    }

    /// Splits batches read from `__consumer_offsets` partition `partition` at load time into
    /// the records to apply now, in log order: plain records as they come, transactional ones
    /// when their commit marker comes. Records of transactions still open stay pending.
    pub fn split_offsets_batches(
        &self,
        partition: i32,
        data: Bytes,
    ) -> Result<Vec<ConsumedRecord>, strom_protocol::ProtocolError> {
        let mut out = Vec::new();
        let mut pending = self.pending();
        let mut pos = 0usize;
        while data.len() - pos >= strom_storage::BATCH_HEADER_SIZE {
            let Ok(header) = BatchHeader::parse(&data[pos..]) else {
                break;
            };
            let end = pos + header.total_size();
            if end > data.len() {
                break;
            }
            let batch = data.slice(pos..end);
            pos = end;
            if header.is_control() {
                let Some((kind, _)) = strom_storage::batch::control_record(&batch) else {
                    continue;
                };
                if let Some(records) = pending.remove(&(header.producer_id, partition))
                    && kind == ControlType::Commit.code()
                {
                    out.extend(records.into_iter().map(|(key, value)| ConsumedRecord {
                        offset: header.base_offset,
                        timestamp_ms: header.max_timestamp,
                        timestamp_type_log_append: false,
                        key: Some(key),
                        value,
                        headers: Vec::new(),
                    }));
                }
                continue;
            }
            let records = decode_batches(batch)?;
            if header.is_transactional() {
                let entry = pending.entry((header.producer_id, partition)).or_default();
                entry.extend(records.into_iter().filter_map(|r| Some((r.key?, r.value))));
            } else {
                out.extend(records);
            }
        }
        Ok(out)
    }
}
