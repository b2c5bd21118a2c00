//! Log compaction (`cleanup.policy=compact`): keep, for each key, only its latest record.
//!
//! A pass works in three phases so that the partition's lock is held only briefly:
//!
//! 1. [`Log::prepare_clean`](crate::Log::prepare_clean) (log locked, cheap): snapshots the
//!    closed segments from the first one up to the first uncleanable one (the active segment,
//!    or the first segment younger than `min.compaction.lag.ms`), with `Arc`s of their files.
//! 2. [`CleanTask::run`] (no lock): builds a map key hash -> latest offset over the dirty
//!    segments (from the cleaner checkpoint on) within the dedupe buffer, segment by segment;
//!    then rewrites every segment from the first one through the last fully mapped one, in
//!    groups that fit `segment.bytes`, each group into one `<base>.log.cleaned` file (plus its
//!    indexes as `.index.cleaned` / `.timeindex.cleaned`), fsynced.
//! 3. [`Log::commit_clean`](crate::Log::commit_clean) (log locked): checks that the snapshot
//!    segments are unchanged (retention or truncation may have run meanwhile; then the pass is
//!    dropped) and swaps each group in: `.cleaned` is renamed to `<base>-<last base>.log.swap`
//!    (the commit point: the name says which segments it replaces), the old segments' files are
//!    unlinked (readers keep their open handles), the indexes are renamed into place, and the
//!    swap file becomes `<base>.log`. Recovery in [`Log::open`](crate::Log::open) deletes
//!    `.cleaned` files (roll back) and completes any `.swap` (delete every segment file with a
//!    base in `[base, last base]`, then rename), so a crash leaves each group either old or new.
//!
//! Record rules, as Kafka's: a record is dropped when the map holds a later offset for its key;
//! records without a key are dropped; a tombstone (null value) survives the pass that first
//! cleans it and is dropped by a later pass once `delete.retention.ms` has passed since then.
//! Control batches are kept untouched. A batch keeps its header (base offset, last offset
//! delta, producer id/epoch, base sequence, base timestamp, attributes): a batch whose records
//! all survive is copied byte for byte, one that loses some is rebuilt from the surviving
//! records (copied verbatim, recompressed with the batch's own codec), one that loses all of
//! them is dropped. Offsets are preserved, so compacted segments have gaps.
//!
//! The cleaner checkpoint (`cleaner-checkpoint`) holds the first dirty offset and, for the
//! clean part of the log, ranges of offsets with the time they were first cleaned and how many
//! tombstones they still hold: this is the tombstone delete horizon.
//!
//! Layering: the cleaner sits below the log. It never imports `crate::log`: the log hands it a
//! `CleanInput` (segments, settings, checkpoint, transactions: `cleaner/policy.rs`) to judge or
//! prepare a pass and its `SegmentSet` to swap a finished pass in (`cleaner/swap.rs`); the
//! checkpoint is in `cleaner/checkpoint.rs`.
//!
//! Thread safety: `CleanTask` is `Send` (and `Sync`): it is prepared under the partition lock,
//! moved to a cleaner thread, run there without any lock (the snapshot holds `Arc`s of closed
//! segment files, which no one writes), and committed under the lock again. `CleanerConfig`
//! and `CleanStats` are plain data.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::StorageError;
use crate::batch::BatchHeader;
use crate::config::LogConfig;
use crate::index::IndexEntry;
use crate::record::{self, Record};
use crate::segment::{
    ChunkReader, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, push_final_time_entry, scan,
};

mod checkpoint;
mod policy;
mod swap;

pub(crate) use checkpoint::{CleanedRange, CleanerState};

pub(crate) use policy::CleanInput;
#[cfg(test)]
pub(crate) use swap::parse_swap_name;
pub(crate) use swap::{cleaned_path, recover_swaps, sync_dir};

/// Name of the cleaner checkpoint file in a partition directory.
pub const CLEANER_CHECKPOINT: &str = "cleaner-checkpoint";
/// Suffix of a cleaned segment's files before they are swapped in.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment log that is committed but not yet swapped in.
pub(crate) const SWAP_SUFFIX: &str = ".log.swap";
/// At most this many cleaned ranges are remembered; older ones are merged (conservatively).
const MAX_RANGES: usize = 32;
/// Bytes read ahead when scanning segments.
const READ_AHEAD: usize = 1 << 20;
/// Bytes one entry of the key map takes: 16-byte key hash, 8-byte offset, 1 control byte.
pub(crate) const MAP_ENTRY_BYTES: usize = 25;

/// Settings of the cleaner threads (broker-wide, Kafka's `log.cleaner.*`).
#[derive(Clone, Debug)]
pub struct CleanerConfig {
    /// Memory for one pass's key map: `log.cleaner.dedupe.buffer.size / log.cleaner.threads`.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second` (bytes read plus written); `None` is unlimited.
    pub io_max_bytes_per_second: Option<u64>,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            dedupe_buffer_bytes: 134_217_728,
            io_max_bytes_per_second: None,
        }
    }
}

/// What one cleaning pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// First dirty offset before the pass.
    pub first_dirty_offset: i64,
    /// First dirty offset after the pass: everything below it is clean.
    pub cleaned_up_to: i64,
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_retained: u64,
    pub tombstones_removed: u64,
    pub map_entries: u64,
    /// The log changed under the pass (retention, truncation): nothing was swapped in.
    pub aborted: bool,
}

/// A closed segment as seen when the pass was prepared.
#[derive(Clone, Debug)]
pub(crate) struct SegmentSnapshot {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub file: Arc<File>,
}

/// One group of old segments rewritten into one cleaned segment.
#[derive(Clone, Debug)]
pub(crate) struct CleanedGroup {
    /// Indexes into the task's segments.
    pub segments: Range<usize>,
    pub base_offset: i64,
    pub last_base_offset: i64,
}

/// Steps of the commit, for tests that simulate a crash at each of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// The cleaned files are written, nothing renamed.
    BeforeSwap,
    /// The cleaned log was renamed to `.swap`; the old segments are all still there.
    AfterSwap,
    /// The first old segment of the group was deleted, the others not.
    AfterFirstDelete,
    /// Every old segment of the group was deleted.
    AfterDeletes,
    /// The indexes were renamed into place; the swap file not yet.
    AfterIndexRename,
}

/// A prepared cleaning pass: see the module documentation.
pub struct CleanTask {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) now_ms: i64,
    /// Closed segments from the first one up to (excluding) the first uncleanable one.
    pub(crate) segments: Vec<SegmentSnapshot>,
    /// Base offset of the first uncleanable segment (or the active one).
    pub(crate) uncleanable_base: i64,
    /// Index of the first dirty segment in `segments`.
    pub(crate) first_dirty_index: usize,
    /// The checkpoint the pass started from.
    pub(crate) state: CleanerState,
    /// Filled by `run`: the groups written, the segments they replace (`segments[..mapped]`)
    /// and the checkpoint to store once they are swapped in.
    pub(crate) groups: Vec<CleanedGroup>,
    pub(crate) mapped: usize,
    pub(crate) new_state: Option<CleanerState>,
    pub(crate) stats: CleanStats,
    pub(crate) crash_at: Option<CrashPoint>,
    /// Aborted transactions of the log: their records never win a key and are dropped.
    pub(crate) aborted: Vec<crate::producer::AbortedTxn>,
}

/// Whether `header` is a data batch of a transaction that was aborted.
fn is_aborted(aborted: &[crate::producer::AbortedTxn], header: &BatchHeader) -> bool {
    header.is_transactional()
        && !header.is_control()
        && aborted.iter().any(|a| {
            a.producer_id == header.producer_id
                && a.first_offset <= header.base_offset
                && header.base_offset < a.last_offset
        })
}

/// Key hash -> latest offset, bounded in entries.
struct OffsetMap {
    hashers: (RandomState, RandomState),
    map: HashMap<u128, i64>,
    max_entries: usize,
}

impl OffsetMap {
    fn new(buffer_bytes: usize, expected: usize) -> OffsetMap {
        // hashbrown keeps 7/8 of its power-of-two buckets usable.
        let buckets = (buffer_bytes / MAP_ENTRY_BYTES).max(2);
        let buckets = if buckets.is_power_of_two() {
            buckets
        } else {
            buckets.next_power_of_two() / 2
        };
        let max_entries = (buckets / 8 * 7).max(1);
        OffsetMap {
            hashers: (RandomState::new(), RandomState::new()),
            map: HashMap::with_capacity(expected.min(max_entries)),
            max_entries,
        }
    }

    fn hash(&self, key: &[u8]) -> u128 {
        (u128::from(self.hashers.0.hash_one(key)) << 64) | u128::from(self.hashers.1.hash_one(key))
    }

    /// Records `offset` as the latest for `key`; false when the map is full.
    fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let h = self.hash(key);
        if self.map.len() >= self.max_entries && !self.map.contains_key(&h) {
            return false;
        }
        let slot = self.map.entry(h).or_insert(offset);
        *slot = (*slot).max(offset);
        true
    }

    fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(&self.hash(key)).copied()
    }
}

/// Sleeps as needed to keep the bytes moved under a rate.
struct Throttle {
    max_bytes_per_second: Option<u64>,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(max_bytes_per_second: Option<u64>) -> Self {
        Throttle {
            max_bytes_per_second,
            started: Instant::now(),
            bytes: 0,
        }
    }

    fn add(&mut self, bytes: u64) {
        let Some(rate) = self.max_bytes_per_second.filter(|&r| r > 0) else {
            return;
        };
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed + Duration::from_millis(10) {
            std::thread::sleep(due - elapsed);
        }
    }
}

fn write_index<E: IndexEntry>(path: &Path, entries: &[E]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(entries.len() * E::SIZE);
    for e in entries {
        e.encode(&mut bytes);
    }
    fs::write(path, bytes)
}

/// Calls `f` with each batch of a segment snapshot (header and whole bytes) until it returns
/// false; returns whether every batch was seen.
fn for_each_batch(
    segment: &SegmentSnapshot,
    mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<bool, StorageError>,
) -> Result<bool, StorageError> {
    let mut reader = ChunkReader::new(&segment.file, segment.size, READ_AHEAD);
    let mut pos = 0u64;
    while pos < segment.size {
        let header = reader.header_at(pos)?;
        let total = header.total_size();
        let bytes = reader
            .get(pos, total)?
            .ok_or_else(|| StorageError::CorruptRecord(format!("short batch at position {pos}")))?;
        if !f(&header, bytes)? {
            return Ok(false);
        }
        pos += total as u64;
    }
    Ok(true)
}

impl CleanTask {
    /// The offsets the pass will consider dirty, for sizing the map.
    fn dirty_span(&self) -> usize {
        let from = self
            .segments
            .get(self.first_dirty_index)
            .map_or(self.uncleanable_base, |s| s.base_offset);
        (self.uncleanable_base - from).clamp(0, i64::from(i32::MAX)) as usize
    }

    /// Builds the key map and writes the cleaned segments (no lock needed: the snapshot holds
    /// the files open and closed segments do not change).
    pub fn run(&mut self, cleaner: &CleanerConfig) -> Result<(), StorageError> {
        let mut throttle = Throttle::new(cleaner.io_max_bytes_per_second);
        let mut map = OffsetMap::new(cleaner.dedupe_buffer_bytes, self.dirty_span());
        let mut mapped = self.first_dirty_index;
        for segment in &self.segments[self.first_dirty_index..] {
            let complete = for_each_batch(segment, |header, bytes| {
                throttle.add(bytes.len() as u64);
                if header.is_control() || is_aborted(&self.aborted, header) {
                    return Ok(true);
                }
                let body = record::records_body(bytes, header)?;
                for r in record::parse_records(&body, header)? {
                    if let Some(key) = r.key
                        && !map.put(key, header.base_offset + r.offset_delta)
                    {
                        return Ok(false);
                    }
                }
                Ok(true)
            })?;
            if !complete {
                break;
            }
            mapped += 1;
        }
        if mapped == self.first_dirty_index && mapped < self.segments.len() {
            return Err(StorageError::Io(io::Error::other(format!(
                "log.cleaner.dedupe.buffer.size ({} bytes per thread) cannot hold the keys of \
                 one segment of {}",
                cleaner.dedupe_buffer_bytes,
                self.dir.display()
            ))));
        }
        self.mapped = mapped;
        self.stats.map_entries = map.map.len() as u64;

        let new_first_dirty = self
            .segments
            .get(mapped)
            .map_or(self.uncleanable_base, |s| s.base_offset);
        let mut ranges: Vec<CleanedRange> = self
            .state
            .ranges
            .iter()
            .filter(|r| r.end <= self.state.first_dirty.min(new_first_dirty))
            .cloned()
            .collect();
        let clean_end = ranges.last().map_or(i64::MIN, |r| r.end);
        if new_first_dirty > clean_end {
            ranges.push(CleanedRange {
                end: new_first_dirty,
                cleaned_at_ms: self.now_ms,
                tombstones: 0,
            });
        }
        for r in &mut ranges {
            r.tombstones = 0;
        }

        for group in self.plan_groups(mapped) {
            self.write_group(&group, &map, &mut throttle, &mut ranges)?;
            self.groups.push(group);
        }

        while ranges.len() > MAX_RANGES {
            let first = ranges.remove(0);
            ranges[0].cleaned_at_ms = ranges[0].cleaned_at_ms.max(first.cleaned_at_ms);
            ranges[0].tombstones += first.tombstones;
        }
        self.stats.cleaned_up_to = new_first_dirty;
        self.new_state = Some(CleanerState {
            first_dirty: new_first_dirty,
            last_clean_ms: self.now_ms,
            ranges,
        });
        Ok(())
    }

    /// Groups `segments[..end]` into runs that fit one segment (by their current size) and
    /// whose offsets fit the indexes' relative offsets.
    fn plan_groups(&self, end: usize) -> Vec<CleanedGroup> {
        let mut groups = Vec::new();
        let mut i = 0;
        while i < end {
            let start = i;
            let mut size = self.segments[i].size;
            i += 1;
            while i < end {
                let s = &self.segments[i];
                if size + s.size > self.config.segment_bytes
                    || size + s.size > u64::from(i32::MAX as u32)
                    || s.next_offset - self.segments[start].base_offset > i64::from(i32::MAX)
                {
                    break;
                }
                size += s.size;
                i += 1;
            }
            groups.push(CleanedGroup {
                segments: start..i,
                base_offset: self.segments[start].base_offset,
                last_base_offset: self.segments[i - 1].base_offset,
            });
        }
        groups
    }

    /// Writes one group's cleaned log and indexes as `.cleaned` files, fsynced.
    fn write_group(
        &mut self,
        group: &CleanedGroup,
        map: &OffsetMap,
        throttle: &mut Throttle,
        ranges: &mut [CleanedRange],
    ) -> Result<(), StorageError> {
        let base = group.base_offset;
        let log_path = cleaned_path(&self.dir, base, LOG_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)?;
        let mut out = BufWriter::with_capacity(READ_AHEAD, &file);
        let mut stats = std::mem::take(&mut self.stats);
        let delete_retention_ms = self.config.delete_retention_ms;
        for index in group.segments.clone() {
            let previously_clean = index < self.first_dirty_index;
            let segment = &self.segments[index];
            for_each_batch(segment, |header, bytes| {
                throttle.add(bytes.len() as u64);
                if header.is_control() {
                    out.write_all(bytes)?;
                    stats.bytes_written += bytes.len() as u64;
                    throttle.add(bytes.len() as u64);
                    return Ok(true);
                }
                if is_aborted(&self.aborted, header) {
                    stats.records_read += header.records_count.max(0) as u64;
                    return Ok(true);
                }
                let body = record::records_body(bytes, header)?;
                let records = record::parse_records(&body, header)?;
                stats.records_read += records.len() as u64;
                let retained: Vec<Record<'_>> = records
                    .iter()
                    .filter(|r| {
                        let offset = header.base_offset + r.offset_delta;
                        let Some(key) = r.key else {
                            return false;
                        };
                        if map.get(key).is_some_and(|latest| latest > offset) {
                            return false;
                        }
                        if r.value.is_some() {
                            return true;
                        }
                        let expired = previously_clean
                            && self.state.cleaned_at(offset).is_some_and(|at| {
                                at.saturating_add(delete_retention_ms) <= self.now_ms
                            });
                        if expired {
                            stats.tombstones_removed += 1;
                            return false;
                        }
                        let i = ranges.partition_point(|r| r.end <= offset);
                        if let Some(range) = ranges.get_mut(i) {
                            range.tombstones += 1;
                        }
                        true
                    })
                    .copied()
                    .collect();
                stats.records_retained += retained.len() as u64;
                let written = if retained.len() == records.len() {
                    out.write_all(bytes)?;
                    bytes.len()
                } else if retained.is_empty() {
                    0
                } else {
                    let rebuilt = record::rebuild_batch(bytes, header, &retained)?;
                    out.write_all(&rebuilt)?;
                    rebuilt.len()
                };
                stats.bytes_written += written as u64;
                throttle.add(written as u64);
                Ok(true)
            })?;
            stats.bytes_read += segment.size;
        }
        self.stats = stats;
        out.flush()?;
        drop(out);
        let len = file.metadata()?.len();
        if len > 0 {
            file.sync_all()?;
        }

        // Indexes exactly as appends and recovery would build them, checking the new file.
        // They are not fsynced: an index that does not match its log is rebuilt on open.
        let built = scan(
            &file,
            len,
            base,
            0,
            base,
            self.config.index_interval_bytes,
            true,
        )?;
        let problem = built.corruption.or_else(|| {
            built
                .padding
                .then(|| "zeros after the last batch".to_string())
        });
        if let Some(reason) = problem {
            return Err(StorageError::CorruptRecord(format!(
                "cleaned segment {} does not read back: {reason}",
                log_path.display()
            )));
        }
        let mut time_index = built.time_index;
        push_final_time_entry(&mut time_index, built.max_timestamp, base);
        write_index(&cleaned_path(&self.dir, base, INDEX_SUFFIX), &built.index)?;
        write_index(
            &cleaned_path(&self.dir, base, TIME_INDEX_SUFFIX),
            &time_index,
        )?;
        Ok(())
    }

    /// Removes the files a pass wrote that were not swapped in.
    pub fn discard(&self) {
        for group in &self.groups {
            for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                let _ = fs::remove_file(cleaned_path(&self.dir, group.base_offset, suffix));
            }
        }
    }

    /// Test hook: stop the commit at `point` as a crash would.
    #[cfg(test)]
    pub(crate) fn crash_at(&mut self, point: CrashPoint) {
        self.crash_at = Some(point);
    }
}

// Compile-time check of the thread-safety claim in the module documentation.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CleanTask>();
    send_sync::<CleanerState>();
};
