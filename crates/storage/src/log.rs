//! `Log`: one partition's log, the storage crate's entry point (storage layer 3 of 3).
//!
//! Layers, each owning one concern and using only the ones below it:
//!
//! 1. [`crate::segment_set`]: the ordered segments of the partition directory.
//! 2. [`crate::local_log`]: offsets (log start, log end), appends of validated batches,
//!    reads, retention, truncation and recovery of the segments and the start checkpoint.
//! 3. this module: validation and stamping of producers' batches, producer state
//!    (idempotence and transactions, [`crate::producer`]) and the leader epoch cache
//!    ([`crate::epoch`]) on top of the local log, kept in step with it on every append, roll,
//!    truncation and deletion; and the wiring of log compaction: the log hands the cleaner a
//!    `CleanInput` to prepare a pass and its segment set to swap the result in
//!    ([`crate::cleaner`] never imports this module). The compaction methods are in
//!    `log/compaction.rs`.
//!
//! Invariants: the offset invariants (dense, increasing, LEO = last offset + 1, log start <=
//! log end) are owned and asserted by the local log, the growth of leader epochs by
//! [`EpochCache`], the contiguity of producer sequences by [`ProducerState`]. This layer
//! keeps them unreachable from outside: a producer's base offsets are ignored and assigned
//! here, a leader's are checked (below the log end, or overflowing) and refused with
//! `InvalidRecord`, a stale leader epoch is ignored by the cache, and a sequence gap is
//! `OutOfOrderSequence`.
//!
//! Thread safety: `Log` is `Send + Sync` and has no interior locking: every mutation takes
//! `&mut self`. The broker keeps each partition's `Log` in a `Mutex` (`Partition::log` in
//! the replica manager), so appends, reads, retention, truncation and the cleaner's prepare
//! and commit steps of one partition are serialised by that lock. The slow middle step of a
//! cleaning pass ([`crate::cleaner::CleanTask::run`]) and the sending of a read's
//! [`FileSlice`]s run without it, on `Arc`s of files that no one rewrites.

use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;

use crate::StorageError;
use crate::batch::{self, BATCH_HEADER_SIZE, BatchHeader};
use crate::cleaner::{self, CleanerState};
use crate::epoch::EpochCache;
use crate::local_log::{LocalLog, Placement, Truncation};
use crate::producer::{self, Check, ControlType, ProducerState};
use crate::record;

pub use crate::config::LogConfig;
pub use crate::local_log::LOG_START_OFFSET_CHECKPOINT;
pub use crate::slice::{FileSlice, LogSlice, ReadInfo};

mod compaction;
mod producers;

/// Result of an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker time stamped into the batches, or -1 for CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub record_count: i64,
    /// Largest batch max timestamp among the appended batches.
    pub max_timestamp: i64,
    /// The batch was a producer's retry of one already in the log: nothing was written and the
    /// offsets are the original ones.
    pub duplicate: bool,
}

/// One partition's log. See the module documentation.
pub struct Log {
    /// Segments, offsets, flush accounting.
    local: LocalLog,
    /// The cleaner checkpoint (first dirty offset, tombstone horizons).
    cleaner: CleanerState,
    /// Idempotent and transactional producers, open and aborted transactions.
    producers: ProducerState,
    /// First offset of each leader epoch.
    epochs: EpochCache,
    /// The epoch checkpoint on disk may lag `epochs` (written without fsync when an epoch
    /// began); made durable before the next producer snapshot.
    epochs_unsynced: bool,
}

// Compile-time check of the thread-safety claim in the module documentation.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Log>();
};

impl Log {
    /// Opens (creating if missing) the log in `dir` and recovers it: interrupted cleaner swaps
    /// are completed, torn tails truncated, inconsistent indexes rebuilt, leftovers of
    /// interrupted operations removed, producer state and epochs rebuilt from the batches.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log, StorageError> {
        fs::create_dir_all(dir)?;
        cleaner::recover_swaps(dir)?;
        let local = LocalLog::open(dir, config, now_ms)?;
        let cleaner = CleanerState::load(dir)?;
        let mut log = Log {
            local,
            cleaner,
            producers: ProducerState::default(),
            epochs: EpochCache::default(),
            epochs_unsynced: false,
        };
        // Recovery may have cut the log below what the checkpoint calls clean.
        log.clamp_cleaner_checkpoint()?;
        log.rebuild_producer_state()?;
        tracing::debug!(
            dir = %dir.display(),
            log_start_offset = log.log_start_offset(),
            log_end_offset = log.log_end_offset(),
            segments = log.segment_count(),
            "opened log"
        );
        Ok(log)
    }

    /// Validates `records` (one or more v2 batches as a producer sent them), assigns offsets
    /// from the log end offset, stamps `leader_epoch` (and LogAppendTime if configured) into
    /// the buffer in place, and appends it to the active segment.
    pub fn append(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let (info, headers) = self.append_batches(records, leader_epoch, now_ms, true)?;
        let mut pos = 0usize;
        for (header, total) in headers {
            records[pos..pos + BATCH_HEADER_SIZE].copy_from_slice(&header);
            pos += total;
        }
        Ok(info)
    }

    /// [`Self::append`] without touching `records`: the patched batch headers are copies,
    /// written in place of the originals with one vectored write, so a request buffer that is
    /// shared (a `Bytes` slice of the request frame) need not be copied first.
    pub fn append_shared(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.append_batches(records, leader_epoch, now_ms, true)
            .map(|(info, _)| info)
    }

    /// [`Self::append_shared`] that leaves a due flush (flush.messages reached) to the caller
    /// instead of fsyncing under the caller's lock: returns whether one is due. The caller must
    /// then make the log durable up to `last_offset` (e.g. with [`Self::active_file`]'s
    /// `sync_data`, outside the lock, shared by every append that arrived meanwhile) before
    /// acknowledging.
    pub fn append_shared_deferred_flush(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<(AppendInfo, bool), StorageError> {
        let (info, _) = self.append_batches(records, leader_epoch, now_ms, false)?;
        Ok((info, self.local.take_due_flush(now_ms)))
    }

    /// The active segment's log file. Segments before it were synced when they were rolled, so
    /// syncing this file makes everything appended so far durable.
    pub fn active_file(&self) -> Arc<File> {
        self.local.active_file()
    }

    /// The append itself; returns the patched header of each written batch with the batch's
    /// total size (nothing for a duplicate).
    #[allow(clippy::type_complexity)]
    fn append_batches(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
        flush_inline: bool,
    ) -> Result<(AppendInfo, Vec<([u8; BATCH_HEADER_SIZE], usize)>), StorageError> {
        let config = self.local.config();
        let headers = batch::validate_batches(records, config.max_message_bytes)?;
        if config.compact {
            let mut pos = 0usize;
            for header in &headers {
                record::check_keys(&records[pos..pos + header.total_size()], header)?;
                pos += header.total_size();
            }
        }
        let log_append_time = config.log_append_time;
        let offset_span: i64 = headers
            .iter()
            .map(|h| i64::from(h.last_offset_delta) + 1)
            .sum();
        if self
            .local
            .should_roll(records.len() as u64, offset_span, now_ms)
        {
            self.roll(now_ms)?;
        }

        let base_offset = self.log_end_offset();
        let mut next_offset = base_offset;
        let mut patched: Vec<BatchHeader> = Vec::with_capacity(headers.len());
        let mut pos = 0usize;
        let mut max_timestamp = i64::MIN;
        let mut staged = std::collections::HashMap::new();
        let mut patched_headers: Vec<([u8; BATCH_HEADER_SIZE], usize)> =
            Vec::with_capacity(headers.len());
        for header in &headers {
            let total = header.total_size();
            // validate_batches checked that every batch is at least a header long.
            let mut bytes = [0u8; BATCH_HEADER_SIZE];
            bytes.copy_from_slice(&records[pos..pos + BATCH_HEADER_SIZE]);
            batch::patch_base_offset(&mut bytes, next_offset);
            batch::patch_leader_epoch(&mut bytes, leader_epoch);
            if log_append_time {
                batch::patch_log_append_time_split(
                    &mut bytes,
                    &records[pos + BATCH_HEADER_SIZE..pos + total],
                    now_ms,
                );
            }
            let header = BatchHeader::parse(&bytes)?;
            if header.is_control() {
                return Err(StorageError::InvalidRecord(
                    "control batches are written by the transaction coordinator, not producers"
                        .into(),
                ));
            }
            if header.producer_id >= 0 {
                if let Check::Duplicate(dup) = self.producers.check_batch(&mut staged, &header)? {
                    if headers.len() > 1 {
                        return Err(StorageError::InvalidRecord(format!(
                            "batch of producer {} is a duplicate inside a multi-batch append",
                            header.producer_id
                        )));
                    }
                    let info = AppendInfo {
                        base_offset: dup.first_offset,
                        last_offset: dup.last_offset,
                        log_append_time_ms: -1,
                        log_start_offset: self.log_start_offset(),
                        record_count: 0,
                        max_timestamp: dup.timestamp,
                        duplicate: true,
                    };
                    return Ok((info, Vec::new()));
                }
            } else if header.is_transactional() {
                return Err(StorageError::InvalidRecord(
                    "transactional batch without a producer id".into(),
                ));
            }
            max_timestamp = max_timestamp.max(header.max_timestamp);
            next_offset = header.last_offset() + 1;
            patched.push(header);
            patched_headers.push((bytes, total));
            pos += total;
        }

        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * patched_headers.len());
        let mut part_pos = 0usize;
        for (header_bytes, total) in &patched_headers {
            parts.push(header_bytes);
            parts.push(&records[part_pos + BATCH_HEADER_SIZE..part_pos + total]);
            part_pos += total;
        }
        let record_count = self
            .local
            .append(&parts, &patched, Placement::Dense, now_ms)?;
        self.producers.commit_staged(staged);
        self.note_epoch(leader_epoch, base_offset)?;
        if flush_inline {
            self.local.flush_if_due(now_ms)?;
        }

        let info = AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            log_start_offset: self.log_start_offset(),
            record_count,
            max_timestamp,
            duplicate: false,
        };
        Ok((info, patched_headers))
    }

    /// Appends batches copied from the leader (a follower's fetch): offsets, leader epochs and
    /// producer fields are kept as the leader wrote them. The first batch must start at or
    /// after the log end offset and batches must increase (compaction may leave gaps).
    pub fn append_replicated(
        &mut self,
        records: &mut [u8],
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let headers = batch::validate_batches(records, u32::MAX)?;
        let mut expected = self.log_end_offset();
        for h in &headers {
            if h.base_offset < expected {
                return Err(StorageError::InvalidRecord(format!(
                    "replicated batch at offset {} is below the next offset {expected}",
                    h.base_offset
                )));
            }
            // The leader's offsets are input: one whose last offset would not fit (and wrap
            // around) is refused here rather than tripping the local log's offset asserts.
            expected = h
                .base_offset
                .checked_add(i64::from(h.last_offset_delta))
                .and_then(|last| last.checked_add(1))
                .ok_or_else(|| {
                    StorageError::InvalidRecord(format!(
                        "replicated batch at offset {} runs past the largest offset",
                        h.base_offset
                    ))
                })?;
        }
        let (first, last) = (headers[0].base_offset, expected - 1);
        let span = last - first + 1;
        if self.local.should_roll(records.len() as u64, span, now_ms)
            || (self.local.active().is_empty() && first > self.local.active().base_offset)
        {
            self.roll_to(first, now_ms)?;
        }
        let record_count =
            self.local
                .append(&[records], &headers, Placement::Replicated, now_ms)?;
        let max_timestamp = headers
            .iter()
            .map(|h| h.max_timestamp)
            .max()
            .unwrap_or(i64::MIN);
        let mut pos = 0usize;
        for h in &headers {
            let bytes = &records[pos..pos + h.total_size()];
            pos += h.total_size();
            self.note_epoch(h.partition_leader_epoch, h.base_offset)?;
            if h.producer_id < 0 {
                continue;
            }
            if h.is_control() {
                if let Some((kind, coordinator_epoch)) = batch::control_record(bytes)
                    && let Some(kind) = ControlType::from_code(kind)
                    && let Some(aborted) = self.producers.apply_marker(
                        h.producer_id,
                        h.producer_epoch,
                        coordinator_epoch,
                        kind,
                        h.base_offset,
                        h.max_timestamp,
                    )
                {
                    producer::append_aborted(self.dir(), &aborted)?;
                }
            } else {
                self.producers.replay_data(h);
            }
        }
        self.local.flush_if_due(now_ms)?;
        Ok(AppendInfo {
            base_offset: first,
            last_offset: last,
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset(),
            record_count,
            max_timestamp,
            duplicate: false,
        })
    }

    /// Reads whole batches starting with the one containing `fetch_offset`, up to `max_bytes`
    /// (at least one batch if `min_one_batch`), only batches entirely below `max_offset`.
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: u32,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<ReadInfo, StorageError> {
        self.local
            .read(fetch_offset, max_bytes, max_offset, min_one_batch)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.local.log_start_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.local.log_end_offset()
    }

    /// The first record at or after the log start offset whose timestamp is >= `timestamp_ms`:
    /// (offset, timestamp). Exact for uncompressed CreateTime batches; for compressed or
    /// LogAppendTime batches, the batch base offset (clamped to the log start offset) and the
    /// batch max timestamp. `None` if no record is that recent. The special ListOffsets
    /// timestamps (-1 latest, -2 earliest, -3 max) are the caller's business.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        self.local.offset_for_timestamp(timestamp_ms)
    }

    /// The timestamp of the batch holding `offset` (found through the offset index): the first
    /// record's timestamp for CreateTime batches, the append time for LogAppendTime batches.
    /// `None` when the offset is not in the log. Consumer lag in seconds is measured with it.
    pub fn timestamp_at(&self, offset: i64) -> Result<Option<i64>, StorageError> {
        self.local.timestamp_at(offset)
    }

    /// (offset, timestamp) of the largest timestamp in the log, at batch granularity: the last
    /// offset of the first batch carrying the largest max timestamp. `None` if the log is empty.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        Ok(self.local.max_timestamp())
    }

    /// Moves the log start offset up to `offset` (never down) and deletes the segments
    /// entirely below it. Returns the new log start offset.
    pub fn delete_records(&mut self, offset: i64) -> Result<i64, StorageError> {
        if self.local.delete_records(offset)? {
            self.forget_below(offset)?;
        }
        Ok(self.log_start_offset())
    }

    /// Drops what producer state and the epoch cache hold below the new log start `offset`.
    fn forget_below(&mut self, offset: i64) -> Result<(), StorageError> {
        if self.producers.prune_aborted(offset) {
            self.producers.store_aborted(self.local.dir())?;
        }
        if self.epochs.truncate_from_start(offset) {
            self.epochs.store(self.local.dir())?;
        }
        Ok(())
    }

    /// Deletes the oldest segments past retention.ms or retention.bytes. The active segment is
    /// never deleted by size; when it is entirely expired by time it is rolled first so that its
    /// data can go. Returns the number of segments deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        if self.local.retention_needs_roll(now_ms) {
            self.roll(now_ms)?;
        }
        let (deleted, moved) = self.local.enforce_retention(now_ms)?;
        if let Some(start) = moved {
            self.forget_below(start)?;
        }
        Ok(deleted)
    }

    /// Flushes if flush.ms has passed since the last flush.
    pub fn maybe_flush(&mut self, now_ms: i64) -> Result<(), StorageError> {
        self.local.maybe_flush(now_ms)
    }

    /// Makes everything appended so far durable (inactive segments were synced when rolled).
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.local.flush()
    }

    /// Drops every batch containing an offset >= `offset` (whole batches: the log end offset
    /// becomes the base offset of the first dropped batch). Below the log start offset, the log
    /// is emptied and restarts at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        match self.local.truncate_to(offset)? {
            Truncation::Nothing => {}
            Truncation::Reset => {
                self.clamp_cleaner_checkpoint()?;
                let dir = self.local.dir();
                producer::remove_snapshots_above(dir, -1)?;
                self.producers = ProducerState::default();
                self.producers.store_aborted(dir)?;
                self.epochs = EpochCache::default();
                self.epochs.store(dir)?;
            }
            Truncation::Tail => {
                self.clamp_cleaner_checkpoint()?;
                let log_end = self.log_end_offset();
                producer::remove_snapshots_above(self.local.dir(), log_end)?;
                if self.epochs.truncate_from_end(log_end) {
                    self.epochs.store(self.local.dir())?;
                }
                self.rebuild_producer_state()?;
            }
        }
        Ok(())
    }

    /// Starts a new active segment at the log end offset, unless the active one is empty.
    pub fn roll(&mut self, now_ms: i64) -> Result<(), StorageError> {
        if let Some(base) = self.local.roll(now_ms)? {
            self.snapshot_at(base)?;
        }
        Ok(())
    }

    /// Starts a new active segment at `base` (at or past the log end offset): a follower's copy
    /// of a compacted leader log may continue after a gap. An empty active segment is replaced.
    fn roll_to(&mut self, base: i64, now_ms: i64) -> Result<(), StorageError> {
        if self.local.roll_to(base, now_ms)? {
            self.snapshot_at(base)?;
        }
        Ok(())
    }

    /// The producer snapshot written when a segment starting at `base` begins (with the epoch
    /// checkpoint and aborted transaction index made durable first).
    fn snapshot_at(&mut self, base: i64) -> Result<(), StorageError> {
        self.sync_epochs()?;
        producer::sync_aborted(self.local.dir())?;
        self.producers.write_snapshot(self.local.dir(), base)
    }

    pub fn update_config(&mut self, config: LogConfig) {
        self.local.update_config(config);
    }

    pub fn config(&self) -> &LogConfig {
        self.local.config()
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.local.segments().size_bytes()
    }

    pub fn segment_count(&self) -> usize {
        self.local.segments().len()
    }

    pub fn dir(&self) -> &Path {
        self.local.dir()
    }

    /// Removes the partition directory and everything in it.
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir().to_path_buf();
        drop(self);
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod producer_tests;

#[cfg(test)]
mod producer_proptests;

#[cfg(test)]
mod replication_tests;

#[cfg(test)]
mod compaction_tests;

#[cfg(test)]
mod compaction_proptests;
