//! The cleaner's swap: putting the segments a pass wrote in place of the ones they replace,
//! in the partition's [`SegmentSet`], crash-safely; and completing a swap a crash interrupted.
//!
//! This is the whole of the cleaner's write access to a log: the log (layer 3, `crate::log`)
//! hands its segment set to [`CleanTask::is_current`] and [`CleanTask::swap_into`] under its
//! lock, and calls [`recover_swaps`] before opening a partition directory. The cleaner never
//! sees the `Log` itself.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{CLEANED_SUFFIX, CleanTask, CleanerState, CrashPoint, SWAP_SUFFIX};
use crate::StorageError;
use crate::segment::{
    INDEX_SUFFIX, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX, parse_base_offset, segment_path,
};
use crate::segment_set::SegmentSet;

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The path of a cleaned file: `<base>.<suffix>.cleaned`.
pub(crate) fn cleaned_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}{CLEANED_SUFFIX}"))
}

/// The path of a committed, not yet swapped in, cleaned log: `<base>-<last base>.log.swap`.
pub(crate) fn swap_path(dir: &Path, base_offset: i64, last_base_offset: i64) -> PathBuf {
    dir.join(format!(
        "{base_offset:020}-{last_base_offset:020}{SWAP_SUFFIX}"
    ))
}

/// Parses a swap file name into (base offset, last replaced base offset).
pub(crate) fn parse_swap_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(SWAP_SUFFIX)?;
    let (a, b) = stem.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl CleanTask {
    /// Whether the log is still as the pass saw it: same directory and checkpoint, and the
    /// segments the pass replaces (`segments[..mapped]`) are the very same files. Retention,
    /// truncation or another pass may have run meanwhile; then the pass must be dropped.
    pub(crate) fn is_current(&self, segments: &SegmentSet, state: &CleanerState) -> bool {
        self.new_state.is_some()
            && self.dir == segments.dir()
            && *state == self.state
            && self.mapped < segments.len()
            && self.segments[..self.mapped]
                .iter()
                .zip(segments.all())
                .all(|(snap, seg)| {
                    snap.base_offset == seg.base_offset
                        && snap.size == seg.size
                        && Arc::ptr_eq(&snap.file, &seg.log)
                })
    }

    /// Swaps each cleaned group into `segments` (which [`Self::is_current`] accepted), opening
    /// the cleaned segments with the log's current `index_interval_bytes`; false if a test's
    /// crash point stopped it. First every group is committed (renamed to `.swap`, one
    /// directory fsync), then each swap is completed (one more fsync at the end).
    pub(crate) fn swap_into(
        &self,
        segments: &mut SegmentSet,
        index_interval_bytes: u32,
    ) -> Result<bool, StorageError> {
        let dir = segments.dir().to_path_buf();
        if self.crash_at == Some(CrashPoint::BeforeSwap) {
            return Ok(false);
        }
        for group in &self.groups {
            fs::rename(
                cleaned_path(&dir, group.base_offset, LOG_SUFFIX),
                swap_path(&dir, group.base_offset, group.last_base_offset),
            )?;
        }
        sync_dir(&dir)?;
        if self.crash_at == Some(CrashPoint::AfterSwap) {
            return Ok(false);
        }
        let interval = index_interval_bytes;
        let mut replaced: Vec<Segment> = Vec::with_capacity(self.groups.len());
        let mut old = segments.take_prefix(self.mapped).into_iter();
        for group in &self.groups {
            let olds: Vec<Segment> = old.by_ref().take(group.segments.len()).collect();
            let existing: Vec<(i64, PathBuf)> = olds
                .iter()
                .flat_map(|s| {
                    [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX]
                        .map(|suffix| (s.base_offset, segment_path(&dir, s.base_offset, suffix)))
                })
                .collect();
            // Open handles (fetches in flight) keep the old files readable.
            drop(olds);
            if !finish_swap(
                &dir,
                group.base_offset,
                group.last_base_offset,
                &existing,
                self.crash_at,
            )? {
                return Ok(false);
            }
            let (segment, truncated) =
                Segment::open(&dir, group.base_offset, false, interval, self.now_ms)?;
            if let Some(t) = truncated {
                return Err(StorageError::CorruptRecord(format!(
                    "cleaned segment {} does not read back: {}",
                    group.base_offset, t.reason
                )));
            }
            replaced.push(segment);
        }
        sync_dir(&dir)?;
        segments.prepend(replaced);
        Ok(true)
    }
}

/// Completes cleaner swaps a crash interrupted: a `<base>-<last base>.log.swap` file is a
/// committed cleaned segment replacing the segments with bases in `[base, last base]`.
/// Uncommitted `.cleaned` files are left for the segment set's open to remove with the other
/// leftovers. Run before the partition's segments are opened.
pub(crate) fn recover_swaps(dir: &Path) -> Result<(), StorageError> {
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
        finish_swap(dir, base, last_base, &existing, None)?;
    }
    if !swaps.is_empty() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Completes the swap of one group: the old segments' files (`existing`, by base offset) in
/// `[base, last_base]` go, the cleaned indexes (if present) and the swap file take their
/// place. Used by the commit and by recovery; every step can be repeated after a crash. The
/// caller fsyncs the directory afterwards. Returns false when a test's crash point stopped it.
pub(crate) fn finish_swap(
    dir: &Path,
    base: i64,
    last_base: i64,
    existing: &[(i64, PathBuf)],
    crash_at: Option<CrashPoint>,
) -> Result<bool, StorageError> {
    let mut doomed: Vec<&(i64, PathBuf)> = existing
        .iter()
        .filter(|(b, _)| (base..=last_base).contains(b))
        .collect();
    doomed.sort_by_key(|(b, _)| *b);
    let first = doomed.first().map(|(b, _)| *b);
    for (b, path) in doomed {
        if crash_at == Some(CrashPoint::AfterFirstDelete) && Some(*b) != first {
            return Ok(false);
        }
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if crash_at == Some(CrashPoint::AfterDeletes) {
        return Ok(false);
    }
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let from = cleaned_path(dir, base, suffix);
        if from.exists() {
            fs::rename(&from, segment_path(dir, base, suffix))?;
        }
    }
    if crash_at == Some(CrashPoint::AfterIndexRename) {
        return Ok(false);
    }
    fs::rename(
        swap_path(dir, base, last_base),
        segment_path(dir, base, LOG_SUFFIX),
    )?;
    Ok(true)
}
