//! `SegmentSet`: the ordered segments of one partition directory (storage layer 1 of 3).
//!
//! It owns the list of [`Segment`]s and the rules of its shape: sorted by base offset, never
//! empty, the last one is the active segment (the only one appended to), and a segment never
//! overlaps the next (compaction may leave gaps between them). It knows files and offsets,
//! nothing of log start offsets, producers, epochs or the cleaner's checkpoint: those belong to
//! the layers above ([`crate::local_log`], [`crate::log`]).
//!
//! Operations: finding the segment that holds an offset, rolling a new active segment,
//! deleting segments from the front (retention, `DeleteRecords`) or the back (truncation),
//! replacing a prefix with cleaned segments (the cleaner's swap, see [`crate::cleaner`]), and
//! the directory scan that recovery starts from.
//!
//! Thread safety: `SegmentSet` is `Send + Sync` (segments hold `Arc<File>`s and plain data)
//! but has no interior locking; `&mut self` methods need the exclusive access the owner's
//! lock gives (the broker holds a `Mutex<Log>` per partition).

use std::fs;
use std::path::{Path, PathBuf};

use crate::StorageError;
use crate::segment::{
    INDEX_SUFFIX, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX, parse_base_offset, remove_if_exists,
    remove_segment_files,
};

/// File suffixes left behind by interrupted operations; removed on open. The cleaner's
/// `.cleaned` and `.swap` files are among them: by the time the set is opened, the cleaner has
/// completed interrupted swaps (see [`crate::cleaner::recover_swaps`]), so what is left of its
/// files is a pass that never committed.
const STRAY_SUFFIXES: [&str; 4] = [".tmp", ".deleted", ".cleaned", ".swap"];

/// The ordered segments of one partition. See the module documentation.
pub(crate) struct SegmentSet {
    dir: PathBuf,
    /// Sorted by base offset, never empty; the last one is the active segment.
    segments: Vec<Segment>,
}

impl SegmentSet {
    /// Opens the segments in `dir` (which must exist), recovering each: torn tails are
    /// truncated, inconsistent indexes rebuilt, stray files and orphan indexes removed. A hole
    /// between segments (an overlap, or a gap after a segment whose tail was cut off) makes
    /// everything after it unreachable, so those later segments are deleted. With no segment on
    /// disk, an empty one is created at `empty_base`.
    pub fn open(
        dir: &Path,
        index_interval_bytes: u32,
        empty_base: i64,
        now_ms: i64,
    ) -> Result<SegmentSet, StorageError> {
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

        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut prev_truncated = false;
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            let (segment, truncated) =
                Segment::open(dir, base, active, index_interval_bytes, now_ms)?;
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
            segments.push(Segment::create(dir, empty_base.max(0), now_ms)?);
        }
        let set = SegmentSet {
            dir: dir.to_path_buf(),
            segments,
        };
        set.assert_ordered();
        Ok(set)
    }

    /// Checks the shape this type owns: never empty, sorted, no overlap. Run after every
    /// change of the list; a violation is a bug in this module (or a segment that misreports
    /// its offsets), and continuing would serve or delete the wrong data.
    fn assert_ordered(&self) {
        assert!(
            !self.segments.is_empty(),
            "segment set of {} must never be empty",
            self.dir.display()
        );
        for pair in self.segments.windows(2) {
            assert!(
                pair[0].next_offset <= pair[1].base_offset,
                "segments of {} overlap: [{}, {}) then base {}",
                self.dir.display(),
                pair[0].base_offset,
                pair[0].next_offset,
                pair[1].base_offset
            );
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// All segments, oldest first; the last is the active one.
    pub fn all(&self) -> &[Segment] {
        &self.segments
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    pub fn first(&self) -> &Segment {
        &self.segments[0]
    }

    pub fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    pub fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Offset after the last batch of the active segment.
    pub fn end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// Index of the segment whose range starts at or below `offset` (the first segment when
    /// `offset` is below every base): where a read of `offset` starts looking.
    pub fn index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// Index of the first segment whose base offset is at or above `offset` (`len()` if none).
    pub fn first_index_from(&self, offset: i64) -> usize {
        self.segments.partition_point(|s| s.base_offset < offset)
    }

    /// Index of the first segment that ends after `offset` (`len() - 1` at most, the active
    /// segment).
    pub fn first_index_ending_after(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.next_offset <= offset)
            .min(self.segments.len() - 1)
    }

    /// The first segment that ends after `offset`: it holds `offset`, or (after compaction
    /// left a gap) the next batch after it.
    pub fn first_ending_after(&self, offset: i64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.next_offset > offset)
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Seals the active segment (unless it is empty, which is replaced) and starts a new
    /// active segment at `base`, which must be at or past the end offset.
    pub fn roll_to(&mut self, base: i64, now_ms: i64) -> Result<(), StorageError> {
        assert!(
            base >= self.end_offset(),
            "new segment base {base} of {} is below the log end offset {}",
            self.dir.display(),
            self.end_offset()
        );
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
        self.assert_ordered();
        Ok(())
    }

    /// Deletes the `n` oldest segments (never the active one).
    pub fn delete_oldest(&mut self, n: usize) -> Result<(), StorageError> {
        assert!(
            n < self.segments.len(),
            "deleting {n} of {} segments would delete the active one",
            self.segments.len()
        );
        for segment in self.segments.drain(..n).collect::<Vec<_>>() {
            segment.delete_files()?;
        }
        Ok(())
    }

    /// Deletes the segments entirely below `offset` (those whose successor starts at or below
    /// it). Returns how many went.
    pub fn delete_below(&mut self, offset: i64) -> Result<usize, StorageError> {
        let mut deleted = 0;
        while self.segments.len() > 1 && self.segments[1].base_offset <= offset {
            self.segments.remove(0).delete_files()?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Drops everything from `offset` on: segments whose base is above it are deleted, the
    /// segment left last is cut to whole batches below `offset` (see `Segment::truncate_to`).
    pub fn truncate_to(
        &mut self,
        offset: i64,
        index_interval_bytes: u32,
    ) -> Result<(), StorageError> {
        while self.segments.len() > 1 && self.active().base_offset > offset {
            if let Some(segment) = self.segments.pop() {
                segment.delete_files()?;
            }
        }
        self.active_mut()
            .truncate_to(offset, index_interval_bytes)?;
        self.assert_ordered();
        Ok(())
    }

    /// Deletes every segment and starts over with one empty segment at `base`.
    pub fn reset(&mut self, base: i64, now_ms: i64) -> Result<(), StorageError> {
        for segment in self.segments.drain(..).collect::<Vec<_>>() {
            segment.delete_files()?;
        }
        self.segments
            .push(Segment::create(&self.dir, base, now_ms)?);
        Ok(())
    }

    /// Takes the first `n` segments (never the active one) out of the list without touching
    /// their files. The cleaner's swap uses it, then moves the files itself and puts the
    /// cleaned segments back with [`Self::prepend`].
    pub fn take_prefix(&mut self, n: usize) -> Vec<Segment> {
        assert!(
            n < self.segments.len(),
            "taking {n} of {} segments would take the active one",
            self.segments.len()
        );
        self.segments.drain(..n).collect()
    }

    /// Puts `segments` (sorted, all below the current first segment) in front of the list.
    pub fn prepend(&mut self, segments: Vec<Segment>) {
        let rest = std::mem::replace(&mut self.segments, segments);
        self.segments.extend(rest);
        self.assert_ordered();
    }
}

// Compile-time check of the thread-safety claim in the module documentation.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SegmentSet>();
};

/// The shape asserts. Recovery deletes what would overlap and every other change goes through
/// the methods above, so only a bug (here or in the cleaner's swap) reaches them; the tests
/// play that bug.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "overlap")]
    fn overlapping_segments_stop_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = SegmentSet::open(dir.path(), 4096, 0, 0).unwrap();
        set.active_mut()
            .write(&crate::testutil::make_batch(3, 10, 0), false)
            .unwrap();
        let header =
            crate::batch::BatchHeader::parse(&crate::testutil::make_batch(3, 10, 0)).unwrap();
        set.active_mut().on_appended(&header, 0, 4096);
        // A "cleaned" segment starting at 2 put before the segment holding 0..=2.
        set.prepend(vec![Segment::create(dir.path(), 2, 0).unwrap()]);
    }

    #[test]
    #[should_panic(expected = "would take the active one")]
    fn the_active_segment_cannot_be_taken_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = SegmentSet::open(dir.path(), 4096, 0, 0).unwrap();
        set.take_prefix(1);
    }
}
