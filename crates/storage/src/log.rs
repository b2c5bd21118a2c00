//! `Log`: one partition's log on disk, a directory of segments.
//!
//! Offsets are dense and strictly increasing across segments; the log end offset (LEO) is the
//! last offset + 1. The log start offset may sit inside the first segment; it is persisted in
//! the `log-start-offset` checkpoint file whenever `delete_records`, retention or truncation
//! move it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::StorageError;
use crate::batch::{self, BATCH_HEADER_SIZE, BatchHeader};
use crate::cleaner::{
    self, CleanStats, CleanTask, CleanerConfig, CleanerState, SegmentSnapshot, parse_swap_name,
};
use crate::epoch::EpochCache;
use crate::producer::{self, AbortedTxn, Check, ControlType, ProducerState};
use crate::record;
use crate::segment::{
    INDEX_SUFFIX, LOG_SUFFIX, READ_CHUNK, Segment, TIME_INDEX_SUFFIX, segment_path,
};

/// Name of the log start offset checkpoint file in a partition directory.
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset";

/// File suffixes left behind by interrupted operations; removed on open (after interrupted
/// cleaner swaps were completed: a `.cleaned` file is a pass that never committed).
const STRAY_SUFFIXES: [&str; 4] = [".tmp", ".deleted", ".cleaned", ".swap"];

/// Per-partition log settings, named after Kafka's topic configs, with Kafka's defaults.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// segment.bytes
    pub segment_bytes: u64,
    /// segment.ms
    pub segment_ms: i64,
    /// index.interval.bytes
    pub index_interval_bytes: u32,
    /// max.message.bytes
    pub max_message_bytes: u32,
    /// retention.ms; -1 = unlimited
    pub retention_ms: i64,
    /// retention.bytes; -1 = unlimited
    pub retention_bytes: i64,
    /// message.timestamp.type=LogAppendTime
    pub log_append_time: bool,
    /// flush.messages (log.flush.interval.messages)
    pub flush_interval_messages: u64,
    /// flush.ms (log.flush.interval.ms)
    pub flush_interval_ms: i64,
    /// cleanup.policy contains `compact`: the log cleaner keeps the latest record per key, and
    /// appends of records without a key are refused.
    pub compact: bool,
    /// cleanup.policy contains `delete`: retention.ms / retention.bytes delete old segments.
    pub cleanup_delete: bool,
    /// delete.retention.ms: how long a tombstone survives after the pass that first cleaned it.
    pub delete_retention_ms: i64,
    /// min.compaction.lag.ms: segments with records younger than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// max.compaction.lag.ms: dirty records older than this make the log eligible whatever its
    /// dirty ratio; the active segment is rolled once it is that old.
    pub max_compaction_lag_ms: i64,
    /// min.cleanable.dirty.ratio
    pub min_cleanable_dirty_ratio: f64,
    /// log.direct.writes (strom only): appends to the active segment bypass the page cache
    /// (see the `direct` module); where the file system refuses, they are buffered.
    pub direct_writes: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            log_append_time: false,
            flush_interval_messages: i64::MAX as u64,
            flush_interval_ms: i64::MAX,
            compact: false,
            cleanup_delete: true,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            direct_writes: true,
        }
    }
}

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

/// Part of a read: a region of a segment file, or bytes held in memory (the last partial block
/// of an active segment written with direct I/O, which must not be read through the page
/// cache). Cheap to clone.
#[derive(Clone, Debug)]
pub enum LogSlice {
    File(FileSlice),
    Memory(bytes::Bytes),
}

impl LogSlice {
    pub fn len(&self) -> u32 {
        match self {
            LogSlice::File(f) => f.len,
            LogSlice::Memory(b) => b.len() as u32,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the bytes `[from, from + len)` of the slice to `out`.
    pub fn read_range_into(&self, from: u32, len: u32, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            LogSlice::File(f) => FileSlice {
                file: Arc::clone(&f.file),
                position: f.position + u64::from(from),
                len,
            }
            .read_into(out),
            LogSlice::Memory(b) => {
                out.extend_from_slice(&b[from as usize..(from + len) as usize]);
                Ok(())
            }
        }
    }

    /// Appends the slice's bytes to `out`.
    pub fn read_into(&self, out: &mut Vec<u8>) -> io::Result<()> {
        self.read_range_into(0, self.len(), out)
    }
}

/// A region of a segment file to be sent to a consumer. Cheap to clone; the `Arc` keeps the
/// file open even if retention deletes the segment meanwhile.
#[derive(Clone, Debug)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub len: u32,
}

impl FileSlice {
    /// Copies the region into memory (for TLS connections and tests; plaintext uses sendfile).
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_into(&mut buf)?;
        Ok(buf)
    }

    /// Appends the slice's bytes to `out` (one read, no intermediate buffer).
    pub fn read_into(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        out.resize(start + self.len as usize, 0);
        if let Err(e) = self.file.read_exact_at(&mut out[start..], self.position) {
            out.truncate(start);
            return Err(e);
        }
        Ok(())
    }
}

/// Result of a read: whole batches, in offset order, possibly spanning segments.
#[derive(Clone, Debug)]
pub struct ReadInfo {
    pub slices: Vec<LogSlice>,
    pub total_bytes: u64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// The offset after the last batch read (its last offset + 1); `None` when nothing was
    /// read. A reader resumes there.
    pub next_offset: Option<i64>,
}

impl ReadInfo {
    /// Concatenates the slices into memory.
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.total_bytes as usize);
        for slice in &self.slices {
            slice.read_into(&mut out)?;
        }
        Ok(out)
    }
}

/// One partition's log.
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset, never empty; the last one is the active segment.
    segments: Vec<Segment>,
    log_start_offset: i64,
    unflushed_messages: u64,
    last_flush_ms: i64,
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

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_segment_files(dir: &Path, base_offset: i64) -> io::Result<()> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        remove_if_exists(&segment_path(dir, base_offset, suffix))?;
    }
    Ok(())
}

/// Base offset from a segment file name (`<20 digits>.<suffix>`).
fn parse_base_offset(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

impl Log {
    /// Opens (creating if missing) the log in `dir` and recovers it: torn tails are truncated,
    /// inconsistent indexes rebuilt, leftovers of interrupted operations removed.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log, StorageError> {
        fs::create_dir_all(dir)?;
        finish_interrupted_swaps(dir)?;
        let mut bases = Vec::new();
        let mut index_bases = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if STRAY_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                tracing::info!(dir = %dir.display(), file = name, "removing leftover file");
                remove_if_exists(&entry.path())?;
            } else if let Some(base) = parse_base_offset(name, LOG_SUFFIX) {
                bases.push(base);
            } else if let Some(base) = parse_base_offset(name, INDEX_SUFFIX)
                .or_else(|| parse_base_offset(name, TIME_INDEX_SUFFIX))
            {
                index_bases.push((base, entry.path()));
            }
        }
        bases.sort_unstable();
        for (base, path) in index_bases {
            if bases.binary_search(&base).is_err() {
                remove_if_exists(&path)?;
            }
        }
        let checkpoint = read_checkpoint(dir)?;

        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut prev_truncated = false;
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            let (segment, truncated) =
                Segment::open(dir, base, active, config.index_interval_bytes, now_ms)?;
            if let Some(t) = &truncated {
                tracing::warn!(
                    dir = %dir.display(),
                    base_offset = base,
                    bytes_dropped = t.bytes_dropped,
                    reason = %t.reason,
                    "truncated torn or corrupt segment tail during recovery"
                );
            }
            // Compaction leaves gaps between segments; a gap after a segment whose tail recovery
            // cut off, or an overlap, is a hole: everything after it is unreachable.
            if let Some(prev) = segments.last()
                && (prev.next_offset > segment.base_offset
                    || (prev_truncated && prev.next_offset != segment.base_offset))
            {
                tracing::warn!(
                    dir = %dir.display(),
                    expected = prev.next_offset,
                    found = segment.base_offset,
                    "offset discontinuity between segments; deleting the later segments"
                );
                segment.delete_files()?;
                for &later in &bases[i + 1..] {
                    remove_segment_files(dir, later)?;
                }
                break;
            }
            prev_truncated = truncated.is_some();
            segments.push(segment);
        }
        if segments.is_empty() {
            let base = checkpoint.unwrap_or(0).max(0);
            segments.push(Segment::create(dir, base, now_ms)?);
        }
        let first_base = segments[0].base_offset;
        let log_end = segments[segments.len() - 1].next_offset;
        let log_start_offset = checkpoint.unwrap_or(first_base).clamp(first_base, log_end);
        let cleaner = CleanerState::load(dir)?;
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            unflushed_messages: 0,
            last_flush_ms: now_ms,
            cleaner,
            producers: ProducerState::default(),
            epochs: EpochCache::default(),
            epochs_unsynced: false,
        };
        if checkpoint.is_some_and(|c| c != log_start_offset) {
            log.write_checkpoint()?;
        }
        // Recovery may have cut the log below what the checkpoint calls clean.
        log.clamp_cleaner_checkpoint()?;
        log.rebuild_producer_state()?;
        tracing::debug!(
            dir = %dir.display(),
            log_start_offset,
            log_end_offset = log_end,
            segments = log.segments.len(),
            "opened log"
        );
        Ok(log)
    }

    fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
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
        let due = self.unflushed_messages >= self.config.flush_interval_messages;
        if due {
            self.unflushed_messages = 0;
            self.last_flush_ms = now_ms;
        }
        Ok((info, due))
    }

    /// The active segment's log file. Segments before it were synced when they were rolled, so
    /// syncing this file makes everything appended so far durable.
    pub fn active_file(&self) -> Arc<File> {
        Arc::clone(&self.active().log)
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
        let headers = batch::validate_batches(records, self.config.max_message_bytes)?;
        if self.config.compact {
            let mut pos = 0usize;
            for header in &headers {
                record::check_keys(&records[pos..pos + header.total_size()], header)?;
                pos += header.total_size();
            }
        }
        let offset_span: i64 = headers
            .iter()
            .map(|h| i64::from(h.last_offset_delta) + 1)
            .sum();
        if self.should_roll(records.len() as u64, offset_span, now_ms) {
            self.roll(now_ms)?;
        }

        let base_offset = self.log_end_offset();
        let mut next_offset = base_offset;
        let mut patched: Vec<(u64, BatchHeader)> = Vec::with_capacity(headers.len());
        let mut pos = 0usize;
        let mut record_count = 0i64;
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
            if self.config.log_append_time {
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
                        log_start_offset: self.log_start_offset,
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
            record_count += i64::from(header.records_count);
            max_timestamp = max_timestamp.max(header.max_timestamp);
            next_offset = header.last_offset() + 1;
            patched.push((pos as u64, header));
            patched_headers.push((bytes, total));
            pos += total;
        }

        let interval = self.config.index_interval_bytes;
        let direct = self.config.direct_writes;
        let active = self.active_mut();
        if active.is_empty() {
            active.created_ms = now_ms;
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * patched_headers.len());
        let mut part_pos = 0usize;
        for (header_bytes, total) in &patched_headers {
            parts.push(header_bytes);
            parts.push(&records[part_pos + BATCH_HEADER_SIZE..part_pos + total]);
            part_pos += total;
        }
        let write_pos = active.write_parts(&parts, direct)?;
        for (rel_pos, header) in &patched {
            active.on_appended(header, write_pos + rel_pos, interval);
        }
        assert_eq!(
            active.next_offset, next_offset,
            "log end offset must be the last appended offset + 1"
        );
        assert!(next_offset > base_offset, "offsets must strictly increase");
        self.producers.commit_staged(staged);
        self.note_epoch(leader_epoch, base_offset)?;

        self.unflushed_messages = self.unflushed_messages.saturating_add(record_count as u64);
        if flush_inline && self.unflushed_messages >= self.config.flush_interval_messages {
            self.flush()?;
            self.last_flush_ms = now_ms;
        }
        let info = AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            log_append_time_ms: if self.config.log_append_time {
                now_ms
            } else {
                -1
            },
            log_start_offset: self.log_start_offset,
            record_count,
            max_timestamp,
            duplicate: false,
        };
        Ok((info, patched_headers))
    }

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
        if self.should_roll(bytes.len() as u64, 1, now_ms) {
            self.roll(now_ms)?;
        }
        let offset = self.log_end_offset();
        batch::patch_base_offset(&mut bytes, offset);
        batch::patch_leader_epoch(&mut bytes, leader_epoch);
        let header = BatchHeader::parse(&bytes)?;
        let interval = self.config.index_interval_bytes;
        let direct = self.config.direct_writes;
        let active = self.active_mut();
        if active.is_empty() {
            active.created_ms = now_ms;
        }
        let pos = active.write(&bytes, direct)?;
        active.on_appended(&header, pos, interval);
        self.note_epoch(leader_epoch, offset)?;
        if let Some(aborted) = self.producers.apply_marker(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            kind,
            offset,
            now_ms,
        ) {
            producer::append_aborted(&self.dir, &aborted)?;
        }
        self.unflushed_messages = self.unflushed_messages.saturating_add(1);
        if self.unflushed_messages >= self.config.flush_interval_messages {
            self.flush()?;
            self.last_flush_ms = now_ms;
        }
        Ok(AppendInfo {
            base_offset: offset,
            last_offset: offset,
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset,
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
        producer::sync_aborted(&self.dir)?;
        self.producers
            .write_snapshot(&self.dir, self.log_end_offset())
    }

    /// Rebuilds the producer state from the newest snapshot at or below the log end offset and
    /// the batches after it (the whole log when there is no snapshot), and re-derives the
    /// aborted transaction index.
    fn rebuild_producer_state(&mut self) -> Result<(), StorageError> {
        let log_end = self.log_end_offset();
        let first_base = self.segments[0].base_offset;
        let (mut state, producers_from) = match ProducerState::load_snapshot(&self.dir, log_end)? {
            Some((state, offset)) => (state, offset),
            None => (ProducerState::default(), first_base),
        };
        state.load_aborted(&self.dir, log_end)?;
        let stored = state.aborted().len();
        // The epoch checkpoint is written as epochs begin, so only the replayed tail can be
        // missing from it; without a checkpoint every batch header is read.
        let mut epochs = EpochCache::load(&self.dir)?;
        let mut epochs_changed = epochs.truncate_from_end(log_end);
        let from = if epochs.entries().is_empty() {
            first_base
        } else {
            producers_from
        };
        for segment in &self.segments {
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
        if state.prune_aborted(self.log_start_offset) || state.aborted().len() != stored {
            state.store_aborted(&self.dir)?;
        }
        epochs_changed |= epochs.truncate_from_start(self.log_start_offset);
        if epochs_changed {
            epochs.store(&self.dir)?;
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
    fn note_epoch(&mut self, epoch: i32, offset: i64) -> Result<(), StorageError> {
        if self.epochs.assign(epoch, offset) {
            self.epochs.store_unsynced(&self.dir)?;
            self.epochs_unsynced = true;
        }
        Ok(())
    }

    /// Makes the epoch checkpoint durable if it was written without fsync since.
    fn sync_epochs(&mut self) -> Result<(), StorageError> {
        if self.epochs_unsynced {
            self.epochs.store(&self.dir)?;
            self.epochs_unsynced = false;
        }
        Ok(())
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
            expected = h.last_offset() + 1;
        }
        let (first, last) = (headers[0].base_offset, expected - 1);
        let span = last - first + 1;
        if self.should_roll(records.len() as u64, span, now_ms)
            || (self.active().is_empty() && first > self.active().base_offset)
        {
            self.roll_to(first, now_ms)?;
        }
        let interval = self.config.index_interval_bytes;
        let direct = self.config.direct_writes;
        let active = self.active_mut();
        if active.is_empty() {
            active.created_ms = now_ms;
        }
        let write_pos = active.write(records, direct)?;
        let mut pos = 0u64;
        let mut record_count = 0i64;
        let mut max_timestamp = i64::MIN;
        for h in &headers {
            active.on_appended(h, write_pos + pos, interval);
            pos += h.total_size() as u64;
            record_count += i64::from(h.records_count);
            max_timestamp = max_timestamp.max(h.max_timestamp);
        }
        active.next_offset = expected;
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
                    producer::append_aborted(&self.dir, &aborted)?;
                }
            } else {
                self.producers.replay_data(h);
            }
        }
        self.unflushed_messages = self.unflushed_messages.saturating_add(record_count as u64);
        if self.unflushed_messages >= self.config.flush_interval_messages {
            self.flush()?;
            self.last_flush_ms = now_ms;
        }
        Ok(AppendInfo {
            base_offset: first,
            last_offset: last,
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset,
            record_count,
            max_timestamp,
            duplicate: false,
        })
    }

    /// Whether appending `bytes` bytes spanning `offset_span` offsets needs a new segment.
    fn should_roll(&self, bytes: u64, offset_span: i64, now_ms: i64) -> bool {
        let active = self.active();
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
        let first = self
            .segments
            .partition_point(|s| s.base_offset <= fetch_offset)
            .saturating_sub(1);
        'segments: for segment in &self.segments[first..] {
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

    fn out_of_range(&self, offset: i64) -> StorageError {
        StorageError::OffsetOutOfRange {
            offset,
            log_start: self.log_start_offset,
            log_end: self.log_end_offset(),
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
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
        for segment in &self.segments {
            if segment.next_offset <= self.log_start_offset {
                continue;
            }
            if let Some(found) = segment.find_by_timestamp(timestamp_ms, self.log_start_offset)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The timestamp of the batch holding `offset` (found through the offset index): the first
    /// record's timestamp for CreateTime batches, the append time for LogAppendTime batches.
    /// `None` when the offset is not in the log. Consumer lag in seconds is measured with it.
    pub fn timestamp_at(&self, offset: i64) -> Result<Option<i64>, StorageError> {
        if offset < self.log_start_offset || offset >= self.log_end_offset() {
            return Ok(None);
        }
        // The first segment that ends after `offset` holds it or (after compaction left a gap)
        // the next batch after it.
        let Some(segment) = self.segments.iter().find(|s| s.next_offset > offset) else {
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

    /// (offset, timestamp) of the largest timestamp in the log, at batch granularity: the last
    /// offset of the first batch carrying the largest max timestamp. `None` if the log is empty.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let mut best: Option<(i64, i64)> = None;
        for segment in &self.segments {
            if segment.next_offset <= self.log_start_offset {
                continue;
            }
            if let Some((ts, offset)) = segment.max_timestamp
                && best.is_none_or(|(_, best_ts)| ts > best_ts)
            {
                best = Some((offset.max(self.log_start_offset), ts));
            }
        }
        Ok(best)
    }

    /// Moves the log start offset up to `offset` (never down) and deletes the segments
    /// entirely below it. Returns the new log start offset.
    pub fn delete_records(&mut self, offset: i64) -> Result<i64, StorageError> {
        if offset < 0 || offset > self.log_end_offset() {
            return Err(self.out_of_range(offset));
        }
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            while self.segments.len() > 1 && self.segments[1].base_offset <= offset {
                self.segments.remove(0).delete_files()?;
            }
            self.write_checkpoint()?;
            if self.producers.prune_aborted(offset) {
                self.producers.store_aborted(&self.dir)?;
            }
            if self.epochs.truncate_from_start(offset) {
                self.epochs.store(&self.dir)?;
            }
        }
        Ok(self.log_start_offset)
    }

    /// Deletes the oldest segments past retention.ms or retention.bytes. The active segment is
    /// never deleted by size; when it is entirely expired by time it is rolled first so that its
    /// data can go. Returns the number of segments deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, StorageError> {
        let mut deleted = 0usize;
        if !self.config.cleanup_delete {
            return Ok(0);
        }
        let retention_ms = self.config.retention_ms;
        if retention_ms >= 0 {
            let last = self.segments.len() - 1;
            let expired = self
                .segments
                .iter()
                .enumerate()
                .take_while(|(i, s)| match s.max_timestamp {
                    Some((ts, _)) => now_ms.saturating_sub(ts) > retention_ms,
                    // A closed segment that compaction emptied holds nothing to keep.
                    None => *i < last,
                })
                .count();
            if expired == self.segments.len() {
                self.roll(now_ms)?;
            }
            for segment in self.segments.drain(..expired).collect::<Vec<_>>() {
                segment.delete_files()?;
                deleted += 1;
            }
        }
        let retention_bytes = self.config.retention_bytes;
        if retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - retention_bytes;
            while self.segments.len() > 1 && excess - self.segments[0].size as i64 >= 0 {
                excess -= self.segments[0].size as i64;
                self.segments.remove(0).delete_files()?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            let first_base = self.segments[0].base_offset;
            if first_base > self.log_start_offset {
                self.log_start_offset = first_base;
                self.write_checkpoint()?;
                if self.producers.prune_aborted(first_base) {
                    self.producers.store_aborted(&self.dir)?;
                }
                if self.epochs.truncate_from_start(first_base) {
                    self.epochs.store(&self.dir)?;
                }
            }
            tracing::debug!(
                dir = %self.dir.display(),
                deleted,
                log_start_offset = self.log_start_offset,
                "retention deleted segments"
            );
        }
        Ok(deleted)
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
        self.active_mut().flush()?;
        self.unflushed_messages = 0;
        Ok(())
    }

    /// Drops every batch containing an offset >= `offset` (whole batches: the log end offset
    /// becomes the base offset of the first dropped batch). Below the log start offset, the log
    /// is emptied and restarts at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), StorageError> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset < self.log_start_offset {
            let start = offset.max(0);
            for segment in self.segments.drain(..).collect::<Vec<_>>() {
                segment.delete_files()?;
            }
            // The creation time of an empty segment is reset by its first append.
            let segment = Segment::create(&self.dir, start, self.last_flush_ms)?;
            self.segments.push(segment);
            self.log_start_offset = start;
            self.write_checkpoint()?;
            self.clamp_cleaner_checkpoint()?;
            producer::remove_snapshots_above(&self.dir, -1)?;
            self.producers = ProducerState::default();
            self.producers.store_aborted(&self.dir)?;
            self.epochs = EpochCache::default();
            self.epochs.store(&self.dir)?;
            return Ok(());
        }
        while self.segments.len() > 1 && self.active().base_offset > offset {
            if let Some(segment) = self.segments.pop() {
                segment.delete_files()?;
            }
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut().truncate_to(offset, interval)?;
        let log_end = self.log_end_offset();
        if self.log_start_offset > log_end {
            self.log_start_offset = log_end;
            self.write_checkpoint()?;
        }
        self.clamp_cleaner_checkpoint()?;
        producer::remove_snapshots_above(&self.dir, log_end)?;
        if self.epochs.truncate_from_end(log_end) {
            self.epochs.store(&self.dir)?;
        }
        self.rebuild_producer_state()?;
        Ok(())
    }

    /// Keeps the cleaner's first dirty offset at or below the active segment's base: what is
    /// appended after a truncation must count as dirty.
    fn clamp_cleaner_checkpoint(&mut self) -> Result<(), StorageError> {
        let active_base = self.active().base_offset;
        if self.cleaner.clamp(active_base) {
            self.cleaner.store(&self.dir)?;
        }
        Ok(())
    }

    /// Starts a new active segment at the log end offset, unless the active one is empty.
    pub fn roll(&mut self, now_ms: i64) -> Result<(), StorageError> {
        if self.active().is_empty() {
            return Ok(());
        }
        self.active_mut().seal()?;
        let base = self.log_end_offset();
        let segment = Segment::create(&self.dir, base, now_ms)?;
        self.segments.push(segment);
        self.sync_epochs()?;
        producer::sync_aborted(&self.dir)?;
        self.producers.write_snapshot(&self.dir, base)?;
        tracing::debug!(dir = %self.dir.display(), base_offset = base, "rolled segment");
        Ok(())
    }

    /// Starts a new active segment at `base` (at or past the log end offset): a follower's copy
    /// of a compacted leader log may continue after a gap. An empty active segment is replaced.
    fn roll_to(&mut self, base: i64, now_ms: i64) -> Result<(), StorageError> {
        debug_assert!(base >= self.log_end_offset());
        if self.active().is_empty() {
            if self.active().base_offset == base {
                return Ok(());
            }
            if let Some(empty) = self.segments.pop() {
                empty.delete_files()?;
            }
        } else {
            self.active_mut().seal()?;
        }
        self.segments
            .push(Segment::create(&self.dir, base, now_ms)?);
        if self.segments.len() == 1 && self.log_start_offset < base {
            self.log_start_offset = base;
            self.write_checkpoint()?;
        }
        self.sync_epochs()?;
        producer::sync_aborted(&self.dir)?;
        self.producers.write_snapshot(&self.dir, base)?;
        Ok(())
    }

    pub fn update_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the partition directory and everything in it.
    pub fn delete(self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// Share of the closed segments' bytes that is dirty (not yet cleaned), ignoring
    /// min.compaction.lag.ms. 0 for an empty log.
    pub fn dirty_ratio(&self) -> f64 {
        let closed = &self.segments[..self.segments.len() - 1];
        let (mut clean, mut dirty) = (0u64, 0u64);
        for s in closed {
            if s.base_offset < self.cleaner.first_dirty {
                clean += s.size;
            } else {
                dirty += s.size;
            }
        }
        if clean + dirty == 0 {
            0.0
        } else {
            dirty as f64 / (clean + dirty) as f64
        }
    }

    /// Wall-clock time of the last completed cleaning pass, -1 if none.
    pub fn last_clean_ms(&self) -> i64 {
        self.cleaner.last_clean_ms
    }

    /// Offsets below this have been cleaned (the cleaner checkpoint).
    pub fn first_dirty_offset(&self) -> i64 {
        self.cleaner.first_dirty.max(self.segments[0].base_offset)
    }

    /// Index of the first closed segment the cleaner must not touch yet: the active segment,
    /// or with min.compaction.lag.ms > 0 the first dirty segment holding a record younger than
    /// the lag (and everything after it).
    fn first_uncleanable_index(&self, first_dirty_index: usize, now_ms: i64) -> usize {
        // Segments holding records of open transactions wait until those end.
        let last = match self.producers.first_unstable_offset() {
            Some(unstable) => self
                .segments
                .partition_point(|s| s.next_offset <= unstable)
                .min(self.segments.len() - 1),
            None => self.segments.len() - 1,
        };
        let lag = self.config.min_compaction_lag_ms;
        if lag <= 0 {
            return last;
        }
        self.segments[first_dirty_index.min(last)..last]
            .iter()
            .position(|s| {
                s.max_timestamp
                    .is_some_and(|(ts, _)| ts > now_ms.saturating_sub(lag))
            })
            .map_or(last, |i| first_dirty_index + i)
    }

    /// How urgently the log needs a cleaning pass: `None` when it does not (not compacted, or
    /// below min.cleanable.dirty.ratio with nothing overdue), otherwise the cleanable dirty
    /// ratio, raised to at least 1.0 when max.compaction.lag.ms is exceeded or tombstones are
    /// due for removal. The cleaner threads clean the highest first.
    pub fn cleaning_priority(&self, now_ms: i64) -> Option<f64> {
        if !self.config.compact {
            return None;
        }
        let first_dirty = self.first_dirty_offset();
        let dirty_index = self
            .segments
            .partition_point(|s| s.base_offset < first_dirty);
        let uncleanable = self.first_uncleanable_index(dirty_index, now_ms);
        let clean: u64 = self.segments[..dirty_index.min(uncleanable)]
            .iter()
            .map(|s| s.size)
            .sum();
        let dirty_segments = &self.segments[dirty_index.min(uncleanable)..uncleanable];
        let dirty: u64 = dirty_segments.iter().map(|s| s.size).sum();
        let tombstones_due = self
            .cleaner
            .tombstones_due(now_ms, self.config.delete_retention_ms);
        if dirty == 0 {
            return tombstones_due.then_some(1.0);
        }
        let ratio = dirty as f64 / (clean + dirty) as f64;
        // The oldest dirty record's age: the first dirty batch's max timestamp.
        let overdue = self.config.max_compaction_lag_ms < i64::MAX
            && dirty_segments.first().is_some_and(|s| {
                s.first_batch_max_timestamp()
                    .is_some_and(|ts| now_ms.saturating_sub(ts) > self.config.max_compaction_lag_ms)
            });
        if overdue || tombstones_due {
            Some(ratio.max(1.0))
        } else if ratio >= self.config.min_cleanable_dirty_ratio {
            Some(ratio)
        } else {
            None
        }
    }

    /// Snapshots what a cleaning pass needs (cheap: call with the log locked). `None` when
    /// there is nothing to clean. Run the task without the lock, then give it to
    /// [`Self::commit_clean`].
    pub fn prepare_clean(&self, now_ms: i64) -> Option<CleanTask> {
        if !self.config.compact {
            return None;
        }
        let first_dirty = self.first_dirty_offset();
        let dirty_index = self
            .segments
            .partition_point(|s| s.base_offset < first_dirty);
        let uncleanable = self.first_uncleanable_index(dirty_index, now_ms);
        let tombstones_due = self
            .cleaner
            .tombstones_due(now_ms, self.config.delete_retention_ms);
        if dirty_index >= uncleanable && !tombstones_due {
            return None;
        }
        let segments: Vec<SegmentSnapshot> = self.segments[..uncleanable]
            .iter()
            .map(|s| SegmentSnapshot {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
                file: Arc::clone(&s.log),
            })
            .collect();
        Some(CleanTask {
            dir: self.dir.clone(),
            config: self.config.clone(),
            now_ms,
            first_dirty_index: dirty_index.min(uncleanable),
            uncleanable_base: self.segments[uncleanable].base_offset,
            segments,
            state: self.cleaner.clone(),
            groups: Vec::new(),
            mapped: 0,
            new_state: None,
            stats: CleanStats {
                first_dirty_offset: first_dirty,
                cleaned_up_to: first_dirty,
                segments_before: self.segments.len(),
                ..CleanStats::default()
            },
            crash_at: None,
            aborted: self.producers.aborted().to_vec(),
        })
    }

    /// Swaps the segments a [`CleanTask::run`] wrote into the log (call with the log locked).
    /// If the log changed meanwhile (retention, truncation, another pass), nothing is swapped
    /// and the stats say `aborted`.
    pub fn commit_clean(&mut self, task: CleanTask) -> Result<CleanStats, StorageError> {
        let mut stats = task.stats.clone();
        let unchanged = task.new_state.is_some()
            && task.dir == self.dir
            && self.cleaner == task.state
            && task.mapped < self.segments.len()
            && task.segments[..task.mapped]
                .iter()
                .zip(&self.segments)
                .all(|(snap, seg)| {
                    snap.base_offset == seg.base_offset
                        && snap.size == seg.size
                        && Arc::ptr_eq(&snap.file, &seg.log)
                });
        if !unchanged {
            task.discard();
            stats.aborted = true;
            stats.segments_after = self.segments.len();
            return Ok(stats);
        }
        match self.swap_in(&task) {
            Ok(true) => {}
            Ok(false) => return Ok(stats), // a test's simulated crash
            Err(e) => {
                // Let recovery finish or roll back whatever the swap left on disk.
                tracing::warn!(dir = %self.dir.display(), error = %e, "cleaner swap failed; reopening the log");
                task.discard();
                let reopened = Log::open(&self.dir, self.config.clone(), task.now_ms)?;
                *self = reopened;
                return Err(e);
            }
        }
        if let Some(state) = task.new_state.clone() {
            self.cleaner = state;
            self.cleaner.store(&self.dir)?;
        }
        stats.segments_after = self.segments.len();
        tracing::debug!(
            dir = %self.dir.display(),
            cleaned_up_to = stats.cleaned_up_to,
            bytes_read = stats.bytes_read,
            bytes_written = stats.bytes_written,
            records_retained = stats.records_retained,
            tombstones_removed = stats.tombstones_removed,
            "cleaned log"
        );
        Ok(stats)
    }

    /// Swaps each cleaned group in; false if a test's crash point stopped it. First every
    /// group is committed (renamed to `.swap`, one directory fsync), then each swap is
    /// completed (one more fsync at the end).
    fn swap_in(&mut self, task: &CleanTask) -> Result<bool, StorageError> {
        use crate::cleaner::CrashPoint;
        if task.crash_at == Some(CrashPoint::BeforeSwap) {
            return Ok(false);
        }
        for group in &task.groups {
            fs::rename(
                cleaner::cleaned_path(&self.dir, group.base_offset, LOG_SUFFIX),
                cleaner::swap_path(&self.dir, group.base_offset, group.last_base_offset),
            )?;
        }
        cleaner::sync_dir(&self.dir)?;
        if task.crash_at == Some(CrashPoint::AfterSwap) {
            return Ok(false);
        }
        let interval = self.config.index_interval_bytes;
        let mut replaced: Vec<Segment> = Vec::with_capacity(task.groups.len());
        let mut old = self
            .segments
            .drain(..task.mapped)
            .collect::<Vec<_>>()
            .into_iter();
        for group in &task.groups {
            let olds: Vec<Segment> = old.by_ref().take(group.segments.len()).collect();
            let existing: Vec<(i64, PathBuf)> = olds
                .iter()
                .flat_map(|s| {
                    [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX].map(|suffix| {
                        (
                            s.base_offset,
                            segment_path(&self.dir, s.base_offset, suffix),
                        )
                    })
                })
                .collect();
            // Open handles (fetches in flight) keep the old files readable.
            drop(olds);
            if !cleaner::finish_swap(
                &self.dir,
                group.base_offset,
                group.last_base_offset,
                &existing,
                task.crash_at,
            )? {
                return Ok(false);
            }
            let (segment, truncated) =
                Segment::open(&self.dir, group.base_offset, false, interval, task.now_ms)?;
            if let Some(t) = truncated {
                return Err(StorageError::CorruptRecord(format!(
                    "cleaned segment {} does not read back: {}",
                    group.base_offset, t.reason
                )));
            }
            replaced.push(segment);
        }
        cleaner::sync_dir(&self.dir)?;
        replaced.extend(std::mem::take(&mut self.segments));
        self.segments = replaced;
        Ok(true)
    }

    /// One whole cleaning pass (prepare, run, commit) with the log held throughout; the broker
    /// uses the three steps to hold its lock only briefly.
    pub fn clean(
        &mut self,
        now_ms: i64,
        cleaner: &CleanerConfig,
    ) -> Result<CleanStats, StorageError> {
        let Some(mut task) = self.prepare_clean(now_ms) else {
            return Ok(CleanStats {
                first_dirty_offset: self.first_dirty_offset(),
                cleaned_up_to: self.first_dirty_offset(),
                segments_before: self.segments.len(),
                segments_after: self.segments.len(),
                ..CleanStats::default()
            });
        };
        if let Err(e) = task.run(cleaner) {
            task.discard();
            return Err(e);
        }
        self.commit_clean(task)
    }

    /// Writes the log start offset checkpoint atomically (temp file, fsync, rename).
    fn write_checkpoint(&self) -> Result<(), StorageError> {
        let path = self.dir.join(LOG_START_OFFSET_CHECKPOINT);
        let tmp = self.dir.join(format!("{LOG_START_OFFSET_CHECKPOINT}.tmp"));
        {
            let mut file = File::create(&tmp)?;
            writeln!(file, "{}", self.log_start_offset)?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

/// Completes cleaner swaps a crash interrupted: a `<base>-<last base>.log.swap` file is a
/// committed cleaned segment replacing the segments with bases in `[base, last base]`.
/// Uncommitted `.cleaned` files are removed afterwards with the other leftovers.
fn finish_interrupted_swaps(dir: &Path) -> Result<(), StorageError> {
    let mut swaps = Vec::new();
    let mut existing = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(range) = parse_swap_name(name) {
            swaps.push(range);
        } else if let Some(base) = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX]
            .iter()
            .find_map(|suffix| parse_base_offset(name, suffix))
        {
            existing.push((base, entry.path()));
        }
    }
    swaps.sort_unstable();
    for &(base, last_base) in &swaps {
        tracing::info!(
            dir = %dir.display(),
            base_offset = base,
            last_base_offset = last_base,
            "completing an interrupted cleaner swap"
        );
        cleaner::finish_swap(dir, base, last_base, &existing, None)?;
    }
    if !swaps.is_empty() {
        cleaner::sync_dir(dir)?;
    }
    Ok(())
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
