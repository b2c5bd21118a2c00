//! `LocalLog`: appends, reads, recovery and retention over a [`SegmentSet`] (storage layer 2
//! of 3).
//!
//! It owns the offsets of the partition: the log start offset (persisted in the
//! `log-start-offset` checkpoint whenever `delete_records`, retention or truncation move it,
//! and possibly inside the first segment) and the log end offset (LEO, the active segment's
//! next offset). It writes batches that the layer above has already validated and stamped,
//! keeps flush accounting (`flush.messages`, `flush.ms`), and answers reads and timestamp
//! lookups. It knows nothing of producers, transactions, leader epochs or the cleaner: the
//! [`crate::log::Log`] above adds those, and is told by the return values here when offsets
//! moved so it can follow.
//!
//! Invariants owned here, asserted in release builds (a violation is a bug in strom and
//! stopping beats writing offsets that readers would misinterpret):
//! - offsets are dense and strictly increasing on an append (each batch starts right after
//!   the previous batch's last offset, the first at the LEO), and afterwards the LEO is the
//!   last appended offset plus one; replicated appends may skip offsets (compaction gaps on
//!   the leader) but never go back;
//! - log start offset <= log end offset.
//!
//! Thread safety: `LocalLog` is `Send + Sync` with no interior locking; it is only reached
//! through `Log`, which the broker keeps in a `Mutex`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use crate::StorageError;
use crate::batch::BatchHeader;
use crate::config::LogConfig;
use crate::segment::{READ_CHUNK, Segment};
use crate::segment_set::SegmentSet;
use crate::slice::{FileSlice, LogSlice, ReadInfo};

/// Name of the log start offset checkpoint file in a partition directory.
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset";

/// How an [`LocalLog::append`] must place its batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Offsets were assigned here: the first batch starts at the LEO and each batch follows
    /// the previous one without a gap.
    Dense,
    /// Batches copied from the leader: at or after the LEO, increasing, gaps allowed.
    Replicated,
}

/// What `truncate_to` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Truncation {
    /// Nothing was at or past the offset.
    Nothing,
    /// The tail from the offset on was dropped.
    Tail,
    /// The offset was below the log start: every segment was deleted, the log restarts empty.
    Reset,
}

/// The local log of one partition. See the module documentation.
pub(crate) struct LocalLog {
    config: LogConfig,
    segments: SegmentSet,
    log_start_offset: i64,
    unflushed_messages: u64,
    last_flush_ms: i64,
}

impl LocalLog {
    /// Opens the segments in `dir` (see [`SegmentSet::open`]) and the log start offset
    /// checkpoint, clamping it into the segments' range (rewriting it when that moved it).
    /// Interrupted cleaner swaps must have been completed before (`Log::open` does it).
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<LocalLog, StorageError> {
        let checkpoint = read_checkpoint(dir)?;
        let segments = SegmentSet::open(
            dir,
            config.index_interval_bytes,
            checkpoint.unwrap_or(0),
            now_ms,
        )?;
        let first_base = segments.first().base_offset;
        let log_end = segments.end_offset();
        let log_start_offset = checkpoint.unwrap_or(first_base).clamp(first_base, log_end);
        let log = LocalLog {
            config,
            segments,
            log_start_offset,
            unflushed_messages: 0,
            last_flush_ms: now_ms,
        };
        if checkpoint.is_some_and(|c| c != log_start_offset) {
            log.write_checkpoint()?;
        }
        log.assert_offsets();
        Ok(log)
    }

    /// Log start <= log end: every operation that moves either keeps it.
    fn assert_offsets(&self) {
        assert!(
            self.log_start_offset <= self.log_end_offset(),
            "log start offset {} is past the log end offset {} in {}",
            self.log_start_offset,
            self.log_end_offset(),
            self.dir().display()
        );
    }

    pub fn dir(&self) -> &Path {
        self.segments.dir()
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn update_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// The active segment.
    pub fn active(&self) -> &Segment {
        self.segments.active()
    }

    pub fn segments(&self) -> &SegmentSet {
        &self.segments
    }

    /// For the cleaner's swap, which replaces segments below the active one.
    pub fn segments_mut(&mut self) -> &mut SegmentSet {
        &mut self.segments
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.segments.end_offset()
    }

    /// The active segment's log file. Segments before it were synced when they were rolled, so
    /// syncing this file makes everything appended so far durable.
    pub fn active_file(&self) -> Arc<File> {
        Arc::clone(&self.segments.active().log)
    }

    /// Whether appending `bytes` bytes spanning `offset_span` offsets needs a new segment.
    pub fn should_roll(&self, bytes: u64, offset_span: i64, now_ms: i64) -> bool {
        let active = self.segments.active();
        if active.is_empty() {
            return false;
        }
        let new_size = active.size + bytes;
        new_size > self.config.segment_bytes
            // File positions in the offset index are u32.
            || new_size > u64::from(u32::MAX)
            || now_ms.saturating_sub(active.created_ms) > self.config.segment_ms
            // A compacted log's records must become cleanable within max.compaction.lag.ms.
            || (self.config.compact
                && now_ms.saturating_sub(active.created_ms) > self.config.max_compaction_lag_ms)
            // Relative offsets in the indexes must fit.
            || active.next_offset + offset_span - 1 - active.base_offset > i64::from(i32::MAX)
    }

    /// Writes `parts` (concatenated: the batches described by `headers`, in order, already
    /// validated and carrying their final offsets) to the active segment with one vectored
    /// write, and indexes them. Returns the record count. The caller then flushes if due
    /// ([`Self::flush_if_due`], or [`Self::take_due_flush`] to do it outside its lock), once
    /// its own state has caught up with the append.
    pub fn append(
        &mut self,
        parts: &[&[u8]],
        headers: &[BatchHeader],
        placement: Placement,
        now_ms: i64,
    ) -> Result<i64, StorageError> {
        let log_end = self.log_end_offset();
        // The callers validated the batches and assigned or checked their offsets; these
        // asserts guard the layout every reader and index relies on.
        let mut expected = log_end;
        for h in headers {
            match placement {
                Placement::Dense => assert_eq!(
                    h.base_offset,
                    expected,
                    "appended offsets must be dense: batch at {} where {expected} was next in {}",
                    h.base_offset,
                    self.dir().display()
                ),
                Placement::Replicated => assert!(
                    h.base_offset >= expected,
                    "appended offsets must increase: batch at {} below {expected} in {}",
                    h.base_offset,
                    self.dir().display()
                ),
            }
            assert!(
                h.last_offset() >= h.base_offset,
                "batch at {} ends before it starts ({})",
                h.base_offset,
                h.last_offset()
            );
            expected = h.last_offset() + 1;
        }
        let interval = self.config.index_interval_bytes;
        let direct = self.config.direct_writes;
        let active = self.segments.active_mut();
        if active.is_empty() {
            active.created_ms = now_ms;
        }
        let write_pos = active.write_parts(parts, direct)?;
        let mut pos = 0u64;
        let mut record_count = 0i64;
        for h in headers {
            active.on_appended(h, write_pos + pos, interval);
            pos += h.total_size() as u64;
            record_count += i64::from(h.records_count);
        }
        assert_eq!(
            self.log_end_offset(),
            expected,
            "log end offset must be the last appended offset + 1 in {}",
            self.dir().display()
        );
        self.unflushed_messages = self.unflushed_messages.saturating_add(record_count as u64);
        Ok(record_count)
    }

    /// Messages appended since the last flush.
    #[cfg(test)]
    pub fn unflushed_messages(&self) -> u64 {
        self.unflushed_messages
    }

    /// Flushes when flush.messages is reached.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<(), StorageError> {
        if self.unflushed_messages >= self.config.flush_interval_messages {
            self.flush()?;
            self.last_flush_ms = now_ms;
        }
        Ok(())
    }

    /// For appends that leave the flush to the caller: whether flush.messages is reached, in
    /// which case the caller now owns the flush (the counter restarts).
    pub fn take_due_flush(&mut self, now_ms: i64) -> bool {
        let due = self.unflushed_messages >= self.config.flush_interval_messages;
        if due {
            self.unflushed_messages = 0;
            self.last_flush_ms = now_ms;
        }
        due
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
        let log_end_offset = self.log_end_offset();
        if fetch_offset < self.log_start_offset || fetch_offset > log_end_offset {
            return Err(self.out_of_range(fetch_offset));
        }
        let mut info = ReadInfo {
            slices: Vec::new(),
            total_bytes: 0,
            log_start_offset: self.log_start_offset,
            log_end_offset,
            next_offset: None,
        };
        if fetch_offset == log_end_offset || fetch_offset >= max_offset {
            return Ok(info);
        }
        let first = self.segments.index_for(fetch_offset);
        'segments: for segment in &self.segments.all()[first..] {
            let Some((start, _)) = segment.find_batch(fetch_offset)? else {
                continue;
            };
            let mut reader = segment.reader(READ_CHUNK);
            let mut pos = start;
            let mut done = false;
            while pos < segment.size {
                let header = reader.header_at(pos)?;
                if header.last_offset() >= max_offset {
                    done = true;
                    break;
                }
                let total = header.total_size() as u64;
                if info.total_bytes + total > u64::from(max_bytes) {
                    if info.total_bytes == 0 && min_one_batch {
                        pos += total;
                        info.total_bytes += total;
                        info.next_offset = Some(header.last_offset() + 1);
                    }
                    done = true;
                    break;
                }
                pos += total;
                info.total_bytes += total;
                info.next_offset = Some(header.last_offset() + 1);
            }
            let file_end = segment.file_end().clamp(start, pos);
            if file_end > start {
                info.slices.push(LogSlice::File(FileSlice {
                    file: Arc::clone(&segment.log),
                    position: start,
                    len: (file_end - start) as u32,
                }));
            }
            if pos > file_end {
                info.slices
                    .push(LogSlice::Memory(segment.tail_bytes(file_end, pos)));
            }
            if done {
                break 'segments;
            }
        }
        Ok(info)
    }

    pub fn out_of_range(&self, offset: i64) -> StorageError {
        StorageError::OffsetOutOfRange {
            offset,
            log_start: self.log_start_offset,
            log_end: self.log_end_offset(),
        }
    }

    /// See `Log::offset_for_timestamp`.
    pub fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        for segment in self.segments.all() {
            if segment.next_offset <= self.log_start_offset {
                continue;
            }
            if let Some(found) = segment.find_by_timestamp(timestamp_ms, self.log_start_offset)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// See `Log::timestamp_at`.
    pub fn timestamp_at(&self, offset: i64) -> Result<Option<i64>, StorageError> {
        if offset < self.log_start_offset || offset >= self.log_end_offset() {
            return Ok(None);
        }
        let Some(segment) = self.segments.first_ending_after(offset) else {
            return Ok(None);
        };
        Ok(segment.find_batch(offset)?.map(|(_, h)| {
            if h.is_log_append_time() {
                h.max_timestamp
            } else {
                h.base_timestamp
            }
        }))
    }

    /// See `Log::max_timestamp`.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        let mut best: Option<(i64, i64)> = None;
        for segment in self.segments.all() {
            if segment.next_offset <= self.log_start_offset {
                continue;
            }
            if let Some((ts, offset)) = segment.max_timestamp
                && best.is_none_or(|(_, best_ts)| ts > best_ts)
            {
                best = Some((offset.max(self.log_start_offset), ts));
            }
        }
        best
    }

    /// Moves the log start offset up to `offset` (never down) and deletes the segments
    /// entirely below it. Returns whether the start moved.
    pub fn delete_records(&mut self, offset: i64) -> Result<bool, StorageError> {
        if offset < 0 || offset > self.log_end_offset() {
            return Err(self.out_of_range(offset));
        }
        if offset <= self.log_start_offset {
            return Ok(false);
        }
        self.log_start_offset = offset;
        self.segments.delete_below(offset)?;
        self.write_checkpoint()?;
        self.assert_offsets();
        Ok(true)
    }

    /// Retention by time would delete every segment, the active one included: the caller
    /// rolls first (a roll is also a producer snapshot, which the layer above writes) so that
    /// the active segment's data can go.
    pub fn retention_needs_roll(&self, now_ms: i64) -> bool {
        self.config.cleanup_delete
            && self.config.retention_ms >= 0
            && self.expired_by_time(now_ms) == self.segments.len()
    }

    /// How many segments from the front are entirely past retention.ms.
    fn expired_by_time(&self, now_ms: i64) -> usize {
        let retention_ms = self.config.retention_ms;
        let segments = self.segments.all();
        let last = segments.len() - 1;
        segments
            .iter()
            .enumerate()
            .take_while(|(i, s)| match s.max_timestamp {
                Some((ts, _)) => now_ms.saturating_sub(ts) > retention_ms,
                // A closed segment that compaction emptied holds nothing to keep.
                None => *i < last,
            })
            .count()
    }

    /// Deletes the oldest segments past retention.ms or retention.bytes (see
    /// `Log::enforce_retention`; the caller rolls first when [`Self::retention_needs_roll`]).
    /// Returns the number of segments deleted and, when the log start offset moved, its new
    /// value.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<(usize, Option<i64>), StorageError> {
        let mut deleted = 0usize;
        if !self.config.cleanup_delete {
            return Ok((0, None));
        }
        if self.config.retention_ms >= 0 {
            let expired = self.expired_by_time(now_ms);
            self.segments.delete_oldest(expired)?;
            deleted += expired;
        }
        let retention_bytes = self.config.retention_bytes;
        if retention_bytes >= 0 {
            let mut excess = self.segments.size_bytes() as i64 - retention_bytes;
            let mut n = 0;
            let segments = self.segments.all();
            while n + 1 < segments.len() && excess - segments[n].size as i64 >= 0 {
                excess -= segments[n].size as i64;
                n += 1;
            }
            self.segments.delete_oldest(n)?;
            deleted += n;
        }
        let mut moved = None;
        if deleted > 0 {
            let first_base = self.segments.first().base_offset;
            if first_base > self.log_start_offset {
                self.log_start_offset = first_base;
                self.write_checkpoint()?;
                moved = Some(first_base);
            }
            tracing::debug!(
                dir = %self.dir().display(),
                deleted,
                log_start_offset = self.log_start_offset,
                "retention deleted segments"
            );
        }
        self.assert_offsets();
        Ok((deleted, moved))
    }

    /// Flushes if flush.ms has passed since the last flush.
    pub fn maybe_flush(&mut self, now_ms: i64) -> Result<(), StorageError> {
        if now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_interval_ms {
            if self.unflushed_messages > 0 {
                self.flush()?;
            }
            self.last_flush_ms = now_ms;
        }
        Ok(())
    }

    /// Makes everything appended so far durable (inactive segments were synced when rolled).
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.segments.active_mut().flush()?;
        self.unflushed_messages = 0;
        Ok(())
    }

    /// Drops every batch containing an offset >= `offset` (whole batches: the log end offset
    /// becomes the base offset of the first dropped batch). Below the log start offset, the log
    /// is emptied and restarts at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<Truncation, StorageError> {
        if offset >= self.log_end_offset() {
            return Ok(Truncation::Nothing);
        }
        if offset < self.log_start_offset {
            let start = offset.max(0);
            // The creation time of an empty segment is reset by its first append.
            self.segments.reset(start, self.last_flush_ms)?;
            self.log_start_offset = start;
            self.write_checkpoint()?;
            self.assert_offsets();
            return Ok(Truncation::Reset);
        }
        self.segments
            .truncate_to(offset, self.config.index_interval_bytes)?;
        let log_end = self.log_end_offset();
        if self.log_start_offset > log_end {
            self.log_start_offset = log_end;
            self.write_checkpoint()?;
        }
        self.assert_offsets();
        Ok(Truncation::Tail)
    }

    /// Starts a new active segment at the log end offset, unless the active one is empty.
    /// Returns the new segment's base offset when one was started.
    pub fn roll(&mut self, now_ms: i64) -> Result<Option<i64>, StorageError> {
        if self.segments.active().is_empty() {
            return Ok(None);
        }
        let base = self.log_end_offset();
        self.segments.roll_to(base, now_ms)?;
        tracing::debug!(dir = %self.dir().display(), base_offset = base, "rolled segment");
        Ok(Some(base))
    }

    /// Starts a new active segment at `base` (at or past the log end offset): a follower's copy
    /// of a compacted leader log may continue after a gap. An empty active segment is replaced.
    /// Returns false when the active segment was already an empty one at `base`.
    pub fn roll_to(&mut self, base: i64, now_ms: i64) -> Result<bool, StorageError> {
        let active = self.segments.active();
        if active.is_empty() && active.base_offset == base {
            return Ok(false);
        }
        self.segments.roll_to(base, now_ms)?;
        if self.segments.len() == 1 && self.log_start_offset < base {
            self.log_start_offset = base;
            self.write_checkpoint()?;
        }
        self.assert_offsets();
        Ok(true)
    }

    /// Writes the log start offset checkpoint atomically (temp file, fsync, rename).
    fn write_checkpoint(&self) -> Result<(), StorageError> {
        let dir = self.dir();
        let path = dir.join(LOG_START_OFFSET_CHECKPOINT);
        let tmp = dir.join(format!("{LOG_START_OFFSET_CHECKPOINT}.tmp"));
        {
            let mut file = File::create(&tmp)?;
            writeln!(file, "{}", self.log_start_offset)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()?;
        Ok(())
    }
}

fn read_checkpoint(dir: &Path) -> Result<Option<i64>, StorageError> {
    let path = dir.join(LOG_START_OFFSET_CHECKPOINT);
    match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<i64>() {
            Ok(v) => Ok(Some(v)),
            Err(_) => {
                tracing::warn!(path = %path.display(), "ignoring malformed log start offset checkpoint");
                Ok(None)
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

// Compile-time check of the thread-safety claim in the module documentation.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<LocalLog>();
};

/// The asserts of this layer. `Log` assigns a producer's offsets itself and refuses a
/// leader's batches that start below the log end or overflow (`InvalidRecord`), checks
/// `DeleteRecords` offsets against the log end (`OffsetOutOfRange`) and clamps the log start
/// on truncation, so the public API cannot reach these asserts: the tests provoke them
/// through this crate-internal layer, as a bug in the layer above would.
#[cfg(test)]
mod invariant_tests {
    use super::*;
    use crate::batch::{patch_base_offset, validate_batches};
    use crate::testutil::make_batch;

    fn open() -> (tempfile::TempDir, LocalLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::open(dir.path(), LogConfig::default(), 0).unwrap();
        (dir, log)
    }

    /// A batch of `records` records at `base`, with its header.
    fn batch_at(base: i64, records: usize) -> (Vec<u8>, BatchHeader) {
        let mut bytes = make_batch(records, 10, 0);
        patch_base_offset(&mut bytes, base);
        let header = validate_batches(&bytes, u32::MAX).unwrap()[0];
        (bytes, header)
    }

    fn append(log: &mut LocalLog, base: i64, records: usize, placement: Placement) {
        let (bytes, header) = batch_at(base, records);
        log.append(&[&bytes], &[header], placement, 0).unwrap();
    }

    #[test]
    fn dense_appends_keep_the_log_end_at_last_offset_plus_one() {
        let (_dir, mut log) = open();
        append(&mut log, 0, 3, Placement::Dense);
        append(&mut log, 3, 2, Placement::Dense);
        assert_eq!(log.log_end_offset(), 5);
        append(&mut log, 9, 1, Placement::Replicated);
        assert_eq!(log.log_end_offset(), 10);
    }

    #[test]
    #[should_panic(expected = "appended offsets must be dense")]
    fn a_gap_in_a_dense_append_stops_the_process() {
        let (_dir, mut log) = open();
        append(&mut log, 0, 3, Placement::Dense);
        append(&mut log, 4, 1, Placement::Dense);
    }

    #[test]
    #[should_panic(expected = "appended offsets must increase")]
    fn a_replicated_batch_below_the_log_end_stops_the_process() {
        let (_dir, mut log) = open();
        append(&mut log, 0, 3, Placement::Dense);
        append(&mut log, 2, 1, Placement::Replicated);
    }

    #[test]
    #[should_panic(expected = "is below the log end offset")]
    fn rolling_below_the_log_end_stops_the_process() {
        let (_dir, mut log) = open();
        append(&mut log, 0, 3, Placement::Dense);
        log.roll_to(1, 0).unwrap();
    }

    #[test]
    #[should_panic(expected = "is past the log end offset")]
    fn a_log_start_past_the_log_end_stops_the_process() {
        let (_dir, mut log) = open();
        append(&mut log, 0, 3, Placement::Dense);
        // What a bug moving the start without looking at the end would leave.
        log.log_start_offset = 4;
        log.enforce_retention(0).unwrap();
    }
}
