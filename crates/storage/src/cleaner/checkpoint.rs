//! The cleaner checkpoint of one log (`cleaner-checkpoint`): the first dirty offset, the time
//! of the last pass and, for the clean part of the log, ranges of offsets with the time they
//! were first cleaned and how many tombstones they still hold (the tombstone delete horizon).
//!
//! Plain data (`Send + Sync`); the log owns one and hands it to the cleaner by reference.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::{CLEANER_CHECKPOINT, sync_dir};
use crate::StorageError;

/// A range of offsets of the clean part of the log: `[previous range's end, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CleanedRange {
    pub end: i64,
    /// When these offsets were first cleaned (after a merge: the latest such time).
    pub cleaned_at_ms: i64,
    /// Tombstones these offsets still held after the last pass.
    pub tombstones: u64,
}

/// The persistent state of the cleaner for one log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CleanerState {
    /// Offsets below this are clean. Always a segment base offset (or 0).
    pub first_dirty: i64,
    /// Wall-clock time of the last completed pass, -1 if none.
    pub last_clean_ms: i64,
    /// Sorted by end; the last one ends at `first_dirty`.
    pub ranges: Vec<CleanedRange>,
}

impl CleanerState {
    pub fn new() -> Self {
        CleanerState {
            first_dirty: 0,
            last_clean_ms: -1,
            ranges: Vec::new(),
        }
    }

    /// Reads the checkpoint; a missing or malformed one means "nothing cleaned yet" (the next
    /// pass then treats the whole log as dirty, which is always safe).
    pub fn load(dir: &Path) -> Result<CleanerState, StorageError> {
        let path = dir.join(CLEANER_CHECKPOINT);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CleanerState::new()),
            Err(e) => return Err(e.into()),
        };
        match Self::parse(&text) {
            Some(state) => Ok(state),
            None => {
                tracing::warn!(path = %path.display(), "ignoring malformed cleaner checkpoint");
                Ok(CleanerState::new())
            }
        }
    }

    fn parse(text: &str) -> Option<CleanerState> {
        let mut lines = text.lines();
        if lines.next()? != "strom-cleaner-checkpoint 1" {
            return None;
        }
        let nums = |line: &str| -> Option<Vec<i64>> {
            line.split_whitespace().map(|w| w.parse().ok()).collect()
        };
        let head = nums(lines.next()?)?;
        let [first_dirty, last_clean_ms] = head[..] else {
            return None;
        };
        let mut ranges = Vec::new();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let [end, cleaned_at_ms, tombstones] = nums(line)?[..] else {
                return None;
            };
            ranges.push(CleanedRange {
                end,
                cleaned_at_ms,
                tombstones: tombstones.max(0) as u64,
            });
        }
        Some(CleanerState {
            first_dirty,
            last_clean_ms,
            ranges,
        })
    }

    /// Writes the checkpoint atomically (temp file, fsync, rename, fsync directory).
    pub fn store(&self, dir: &Path) -> Result<(), StorageError> {
        let mut text = format!(
            "strom-cleaner-checkpoint 1\n{} {}\n",
            self.first_dirty, self.last_clean_ms
        );
        for r in &self.ranges {
            text.push_str(&format!("{} {} {}\n", r.end, r.cleaned_at_ms, r.tombstones));
        }
        let path = dir.join(CLEANER_CHECKPOINT);
        let tmp = dir.join(format!("{CLEANER_CHECKPOINT}.tmp"));
        {
            let mut file = File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(dir)?;
        Ok(())
    }

    /// When `offset` (in the clean part) was first cleaned.
    pub(crate) fn cleaned_at(&self, offset: i64) -> Option<i64> {
        if offset >= self.first_dirty {
            return None;
        }
        let i = self.ranges.partition_point(|r| r.end <= offset);
        self.ranges.get(i).map(|r| r.cleaned_at_ms)
    }

    /// Whether some clean range holds tombstones whose delete horizon has passed.
    pub fn tombstones_due(&self, now_ms: i64, delete_retention_ms: i64) -> bool {
        self.ranges.iter().any(|r| {
            r.tombstones > 0 && r.cleaned_at_ms.saturating_add(delete_retention_ms) <= now_ms
        })
    }

    /// After a truncation of the log: nothing at or above `segment_base` (the base of the
    /// segment holding the new log end) may count as clean any more. Returns whether the state
    /// changed.
    pub fn clamp(&mut self, segment_base: i64) -> bool {
        if self.first_dirty <= segment_base {
            return false;
        }
        self.first_dirty = segment_base;
        for r in &mut self.ranges {
            r.end = r.end.min(segment_base);
        }
        self.ranges.dedup_by_key(|r| r.end);
        true
    }
}
