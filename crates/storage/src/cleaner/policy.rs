//! Which part of a log a pass may clean, and how urgently: the cleaner's reading of the
//! [`CleanInput`] the log hands it.

use std::sync::Arc;

use super::{CleanStats, CleanTask, CleanerState, SegmentSnapshot};
use crate::config::LogConfig;
use crate::producer::AbortedTxn;
use crate::segment_set::SegmentSet;

/// What the log hands the cleaner (under the log's lock) to judge or prepare a pass: its
/// segments, settings and cleaner checkpoint, and what its producer state says about
/// transactions. This and the segment set in [`CleanTask::swap_into`] are all the cleaner
/// sees of a log.
pub(crate) struct CleanInput<'a> {
    pub segments: &'a SegmentSet,
    pub config: &'a LogConfig,
    pub state: &'a CleanerState,
    /// First offset of the oldest open transaction: the segment holding it and everything
    /// after wait until it ends.
    pub first_unstable_offset: Option<i64>,
    /// Aborted transactions: their records never win a key and are dropped.
    pub aborted: &'a [AbortedTxn],
}

impl CleanInput<'_> {
    /// Share of the closed segments' bytes that is dirty (not yet cleaned), ignoring
    /// min.compaction.lag.ms. 0 for an empty log.
    pub fn dirty_ratio(&self) -> f64 {
        let all = self.segments.all();
        let closed = &all[..all.len() - 1];
        let (mut clean, mut dirty) = (0u64, 0u64);
        for s in closed {
            if s.base_offset < self.state.first_dirty {
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

    /// Offsets below this have been cleaned (the cleaner checkpoint).
    pub fn first_dirty_offset(&self) -> i64 {
        self.state
            .first_dirty
            .max(self.segments.first().base_offset)
    }

    /// Index of the first closed segment the cleaner must not touch yet: the active segment,
    /// or with min.compaction.lag.ms > 0 the first dirty segment holding a record younger than
    /// the lag (and everything after it).
    fn first_uncleanable_index(&self, first_dirty_index: usize, now_ms: i64) -> usize {
        // Segments holding records of open transactions wait until those end.
        let last = match self.first_unstable_offset {
            Some(unstable) => self.segments.first_index_ending_after(unstable),
            None => self.segments.len() - 1,
        };
        let lag = self.config.min_compaction_lag_ms;
        if lag <= 0 {
            return last;
        }
        self.segments.all()[first_dirty_index.min(last)..last]
            .iter()
            .position(|s| {
                s.max_timestamp
                    .is_some_and(|(ts, _)| ts > now_ms.saturating_sub(lag))
            })
            .map_or(last, |i| first_dirty_index + i)
    }

    /// See `Log::cleaning_priority`.
    pub fn priority(&self, now_ms: i64) -> Option<f64> {
        if !self.config.compact {
            return None;
        }
        let all = self.segments.all();
        let first_dirty = self.first_dirty_offset();
        let dirty_index = self.segments.first_index_from(first_dirty);
        let uncleanable = self.first_uncleanable_index(dirty_index, now_ms);
        let clean: u64 = all[..dirty_index.min(uncleanable)]
            .iter()
            .map(|s| s.size)
            .sum();
        let dirty_segments = &all[dirty_index.min(uncleanable)..uncleanable];
        let dirty: u64 = dirty_segments.iter().map(|s| s.size).sum();
        let tombstones_due = self
            .state
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

    /// See `Log::prepare_clean`.
    pub fn prepare(&self, now_ms: i64) -> Option<CleanTask> {
        if !self.config.compact {
            return None;
        }
        let all = self.segments.all();
        let first_dirty = self.first_dirty_offset();
        let dirty_index = self.segments.first_index_from(first_dirty);
        let uncleanable = self.first_uncleanable_index(dirty_index, now_ms);
        let tombstones_due = self
            .state
            .tombstones_due(now_ms, self.config.delete_retention_ms);
        if dirty_index >= uncleanable && !tombstones_due {
            return None;
        }
        let segments: Vec<SegmentSnapshot> = all[..uncleanable]
            .iter()
            .map(|s| SegmentSnapshot {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
                file: Arc::clone(&s.log),
            })
            .collect();
        Some(CleanTask {
            dir: self.segments.dir().to_path_buf(),
            config: self.config.clone(),
            now_ms,
            first_dirty_index: dirty_index.min(uncleanable),
            uncleanable_base: all[uncleanable].base_offset,
            segments,
            state: self.state.clone(),
            groups: Vec::new(),
            mapped: 0,
            new_state: None,
            stats: CleanStats {
                first_dirty_offset: first_dirty,
                cleaned_up_to: first_dirty,
                segments_before: all.len(),
                ..CleanStats::default()
            },
            crash_at: None,
            aborted: self.aborted.to_vec(),
        })
    }
}
