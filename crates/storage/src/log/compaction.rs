//! The log's side of compaction: it hands the cleaner a [`CleanInput`] (segments, settings,
//! checkpoint, transactions) to judge or prepare a pass, and its segment set to swap a
//! finished pass in. The cleaner itself ([`crate::cleaner`]) never sees a `Log`.

use super::Log;
use crate::StorageError;
use crate::cleaner::{CleanInput, CleanStats, CleanTask, CleanerConfig};

impl Log {
    /// What the cleaner may know of this log.
    fn clean_input(&self) -> CleanInput<'_> {
        CleanInput {
            segments: self.local.segments(),
            config: self.local.config(),
            state: &self.cleaner,
            first_unstable_offset: self.producers.first_unstable_offset(),
            aborted: self.producers.aborted(),
        }
    }

    /// Share of the closed segments' bytes that is dirty (not yet cleaned), ignoring
    /// min.compaction.lag.ms. 0 for an empty log.
    pub fn dirty_ratio(&self) -> f64 {
        self.clean_input().dirty_ratio()
    }

    /// Wall-clock time of the last completed cleaning pass, -1 if none.
    pub fn last_clean_ms(&self) -> i64 {
        self.cleaner.last_clean_ms
    }

    /// Offsets below this have been cleaned (the cleaner checkpoint).
    pub fn first_dirty_offset(&self) -> i64 {
        self.clean_input().first_dirty_offset()
    }

    /// How urgently the log needs a cleaning pass: `None` when it does not (not compacted, or
    /// below min.cleanable.dirty.ratio with nothing overdue), otherwise the cleanable dirty
    /// ratio, raised to at least 1.0 when max.compaction.lag.ms is exceeded or tombstones are
    /// due for removal. The cleaner threads clean the highest first.
    pub fn cleaning_priority(&self, now_ms: i64) -> Option<f64> {
        self.clean_input().priority(now_ms)
    }

    /// Snapshots what a cleaning pass needs (cheap: call with the log locked). `None` when
    /// there is nothing to clean. Run the task without the lock, then give it to
    /// [`Self::commit_clean`].
    pub fn prepare_clean(&self, now_ms: i64) -> Option<CleanTask> {
        self.clean_input().prepare(now_ms)
    }

    /// Swaps the segments a [`CleanTask::run`] wrote into the log (call with the log locked).
    /// If the log changed meanwhile (retention, truncation, another pass), nothing is swapped
    /// and the stats say `aborted`.
    pub fn commit_clean(&mut self, task: CleanTask) -> Result<CleanStats, StorageError> {
        let mut stats = task.stats.clone();
        if !task.is_current(self.local.segments(), &self.cleaner) {
            task.discard();
            stats.aborted = true;
            stats.segments_after = self.segment_count();
            return Ok(stats);
        }
        let interval = self.config().index_interval_bytes;
        match task.swap_into(self.local.segments_mut(), interval) {
            Ok(true) => {}
            Ok(false) => return Ok(stats), // a test's simulated crash
            Err(e) => {
                // Let recovery finish or roll back whatever the swap left on disk.
                tracing::warn!(dir = %self.dir().display(), error = %e, "cleaner swap failed; reopening the log");
                task.discard();
                let reopened = Log::open(self.dir(), self.config().clone(), task.now_ms)?;
                *self = reopened;
                return Err(e);
            }
        }
        if let Some(state) = task.new_state.clone() {
            self.cleaner = state;
            self.cleaner.store(self.local.dir())?;
        }
        stats.segments_after = self.segment_count();
        tracing::debug!(
            dir = %self.dir().display(),
            cleaned_up_to = stats.cleaned_up_to,
            bytes_read = stats.bytes_read,
            bytes_written = stats.bytes_written,
            records_retained = stats.records_retained,
            tombstones_removed = stats.tombstones_removed,
            "cleaned log"
        );
        Ok(stats)
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
                segments_before: self.segment_count(),
                segments_after: self.segment_count(),
                ..CleanStats::default()
            });
        };
        if let Err(e) = task.run(cleaner) {
            task.discard();
            return Err(e);
        }
        self.commit_clean(task)
    }

    /// Keeps the cleaner's first dirty offset at or below the active segment's base: what is
    /// appended after a truncation must count as dirty.
    pub(super) fn clamp_cleaner_checkpoint(&mut self) -> Result<(), StorageError> {
        let active_base = self.local.active().base_offset;
        if self.cleaner.clamp(active_base) {
            self.cleaner.store(self.local.dir())?;
        }
        Ok(())
    }
}
