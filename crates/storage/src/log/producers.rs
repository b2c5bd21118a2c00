//! The log's producer state and leader epochs: transaction markers, the producer snapshot,
//! the replay that rebuilds both at open and after truncation, and the epoch cache kept in
//! step with appends.

use super::{AppendInfo, Log};
use crate::StorageError;
use crate::batch::{self, BatchHeader};
use crate::epoch::EpochCache;
use crate::local_log::Placement;
use crate::producer::{self, AbortedTxn, ControlType, ProducerState};
use crate::segment::READ_CHUNK;

impl Log {
    /// Writes a transaction marker (COMMIT or ABORT) for `producer_id` at the log end offset and
    /// closes the producer's open transaction on this partition. A marker for a producer
    /// without an open transaction is written all the same (the coordinator does not know
    /// which partitions received data).
    pub fn append_control(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        kind: ControlType,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.producers
            .check_marker(producer_id, producer_epoch, coordinator_epoch)?;
        let mut bytes = batch::build_control_batch(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            kind.code(),
            now_ms,
        );
        if self.local.should_roll(bytes.len() as u64, 1, now_ms) {
            self.roll(now_ms)?;
        }
        let offset = self.log_end_offset();
        batch::patch_base_offset(&mut bytes, offset);
        batch::patch_leader_epoch(&mut bytes, leader_epoch);
        let header = BatchHeader::parse(&bytes)?;
        self.local
            .append(&[&bytes], &[header], Placement::Dense, now_ms)?;
        self.note_epoch(leader_epoch, offset)?;
        if let Some(aborted) = self.producers.apply_marker(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            kind,
            offset,
            now_ms,
        ) {
            producer::append_aborted(self.local.dir(), &aborted)?;
        }
        self.local.flush_if_due(now_ms)?;
        Ok(AppendInfo {
            base_offset: offset,
            last_offset: offset,
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset(),
            record_count: 1,
            max_timestamp: now_ms,
            duplicate: false,
        })
    }

    /// Producers and transactions of this partition.
    pub fn producer_state(&self) -> &ProducerState {
        &self.producers
    }

    /// First offset of the oldest open transaction, if any: the last stable offset is the
    /// smaller of this and the high watermark.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers.first_unstable_offset()
    }

    /// Aborted transactions whose data overlaps `[from, upper)`.
    pub fn aborted_transactions(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        self.producers.aborted_between(from, upper)
    }

    /// Forgets producers idle for `expiration_ms` (producer.id.expiration.ms) with no open
    /// transaction. Returns how many were forgotten.
    pub fn expire_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers.expire(now_ms, expiration_ms)
    }

    /// Writes a producer state snapshot at the log end offset (on shutdown, so that the next
    /// open need not replay anything).
    pub fn snapshot_producer_state(&mut self) -> Result<(), StorageError> {
        self.sync_epochs()?;
        producer::sync_aborted(self.local.dir())?;
        self.producers
            .write_snapshot(self.local.dir(), self.log_end_offset())
    }

    /// Rebuilds the producer state from the newest snapshot at or below the log end offset and
    /// the batches after it (the whole log when there is no snapshot), and re-derives the
    /// aborted transaction index.
    pub(super) fn rebuild_producer_state(&mut self) -> Result<(), StorageError> {
        let log_end = self.log_end_offset();
        let first_base = self.local.segments().first().base_offset;
        let (mut state, producers_from) =
            match ProducerState::load_snapshot(self.local.dir(), log_end)? {
                Some((state, offset)) => (state, offset),
                None => (ProducerState::default(), first_base),
            };
        state.load_aborted(self.local.dir(), log_end)?;
        let stored = state.aborted().len();
        // The epoch checkpoint is written as epochs begin, so only the replayed tail can be
        // missing from it; without a checkpoint every batch header is read.
        let mut epochs = EpochCache::load(self.local.dir())?;
        let mut epochs_changed = epochs.truncate_from_end(log_end);
        let from = if epochs.entries().is_empty() {
            first_base
        } else {
            producers_from
        };
        for segment in self.local.segments().all() {
            if segment.next_offset <= from {
                continue;
            }
            let start = match segment.find_batch(from.max(segment.base_offset))? {
                Some((pos, _)) => pos,
                None => continue,
            };
            let mut reader = segment.reader(READ_CHUNK);
            let mut pos = start;
            while pos < segment.size {
                let header = reader.header_at(pos)?;
                let total = header.total_size();
                epochs_changed |= epochs.assign(header.partition_leader_epoch, header.base_offset);
                if header.producer_id >= 0 && header.last_offset() >= producers_from {
                    if header.is_control() {
                        let bytes = reader.get(pos, total)?.ok_or_else(|| {
                            StorageError::CorruptRecord(format!("short control batch at {pos}"))
                        })?;
                        if let Some((kind, coordinator_epoch)) = batch::control_record(bytes)
                            && let Some(kind) = ControlType::from_code(kind)
                        {
                            state.apply_marker(
                                header.producer_id,
                                header.producer_epoch,
                                coordinator_epoch,
                                kind,
                                header.base_offset,
                                header.max_timestamp,
                            );
                        }
                    } else {
                        state.replay_data(&header);
                    }
                }
                pos += total as u64;
            }
        }
        if state.prune_aborted(self.log_start_offset()) || state.aborted().len() != stored {
            state.store_aborted(self.local.dir())?;
        }
        epochs_changed |= epochs.truncate_from_start(self.log_start_offset());
        if epochs_changed {
            epochs.store(self.local.dir())?;
        }
        self.producers = state;
        self.epochs = epochs;
        Ok(())
    }

    /// The leader epoch cache (epoch -> first offset).
    pub fn epochs(&self) -> &EpochCache {
        &self.epochs
    }

    /// For OffsetForLeaderEpoch: the largest epoch <= `epoch` this log has and the offset
    /// where it ends here.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Notes that `epoch` begins at `offset`, writing the checkpoint when it changed. The
    /// write is not fsynced here (an fsync per partition on the append path costs every new
    /// partition's first produce a disk round trip): recovery replays batch headers from the
    /// newest producer snapshot on, and [`Self::sync_epochs`] makes the checkpoint durable
    /// before any snapshot is written, so an entry lost in a crash starts at or after that
    /// snapshot and is found again.
    pub(super) fn note_epoch(&mut self, epoch: i32, offset: i64) -> Result<(), StorageError> {
        if self.epochs.assign(epoch, offset) {
            self.epochs.store_unsynced(self.local.dir())?;
            self.epochs_unsynced = true;
        }
        Ok(())
    }

    /// Makes the epoch checkpoint durable if it was written without fsync since.
    pub(super) fn sync_epochs(&mut self) -> Result<(), StorageError> {
        if self.epochs_unsynced {
            self.epochs.store(self.local.dir())?;
            self.epochs_unsynced = false;
        }
        Ok(())
    }
}
