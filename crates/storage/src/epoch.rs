//! The leader epoch cache of a partition: for each leader epoch, the first offset written in it.
//!
//! Replication needs it to find where a follower's log diverged from the leader's: the end
//! offset of epoch E on the leader is the start offset of the first epoch after E (or the log
//! end offset when E is the latest). A follower truncates to the smaller of that and its own
//! end of E. Kept in `leader-epoch-checkpoint` (a text file: version, count, then one
//! `epoch start_offset` line per entry), rewritten atomically when it changes, and rebuilt from
//! the batch headers by the replay at open when it is missing or behind.
//!
//! Invariant owned here: the epochs in the cache only grow (each entry's epoch and start offset
//! are above the previous entry's); [`EpochCache::assign`] asserts it (see there).
//!
//! Thread safety: plain data (`Send + Sync`), owned by the `Log` and changed through `&mut`
//! under the partition lock.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use crate::StorageError;

/// File name of the checkpoint in a partition directory.
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
const VERSION: u32 = 0;

/// (epoch, start offset) entries with strictly increasing epochs and offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// The latest epoch, if any batch carried one.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `offset`. Ignored unless the epoch is newer than the
    /// latest (an older or equal epoch is part of what is known). Returns whether it changed.
    pub fn assign(&mut self, epoch: i32, offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        match self.entries.last() {
            Some(&(last, _)) if epoch <= last => false,
            _ => {
                // A later epoch starting at or below an earlier one's start replaces it.
                while self
                    .entries
                    .last()
                    .is_some_and(|&(_, start)| start >= offset)
                {
                    self.entries.pop();
                }
                self.entries.push((epoch, offset));
                self.assert_growing();
                true
            }
        }
    }

    /// The invariant this type owns: epochs and start offsets strictly increase from entry to
    /// entry, so epochs only grow as the log goes on. `assign` keeps it by construction (an
    /// epoch not above the latest is ignored; entries starting at or after the new one are
    /// dropped first), so no input can reach this assert; it guards the code above, since
    /// OffsetForLeaderEpoch answers (and follower truncations) depend on the order.
    fn assert_growing(&self) {
        if let [.., (prev_epoch, prev_start), (epoch, start)] = self.entries[..] {
            assert!(
                prev_epoch < epoch && prev_start < start,
                "leader epoch cache must grow: epoch {prev_epoch} at {prev_start} \
                 followed by epoch {epoch} at {start}"
            );
        }
    }

    /// For OffsetForLeaderEpoch: the largest known epoch <= `epoch` and the offset where it
    /// ended (the start of the next epoch, or `log_end` for the latest). `None` when `epoch` is
    /// older than every known epoch (Kafka answers UNDEFINED_EPOCH then).
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        let i = self.entries.partition_point(|&(e, _)| e <= epoch);
        if i == 0 {
            return None;
        }
        let found = self.entries[i - 1].0;
        let end = self.entries.get(i).map_or(log_end, |&(_, start)| start);
        Some((found, end))
    }

    /// Drops entries starting at or after `offset` (the log was truncated to it).
    pub fn truncate_from_end(&mut self, offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, start)| start < offset);
        self.entries.len() != before
    }

    /// Drops entries wholly below `offset` (the log start moved up); the entry covering
    /// `offset` then starts there.
    pub fn truncate_from_start(&mut self, offset: i64) -> bool {
        let covering = self.entries.partition_point(|&(_, start)| start <= offset);
        if covering == 0 {
            return false;
        }
        let changed = covering > 1 || self.entries[0].1 != offset;
        self.entries.drain(..covering - 1);
        self.entries[0].1 = offset;
        changed
    }

    /// Loads the checkpoint; a missing or unreadable file gives an empty cache (rebuilt by the
    /// replay).
    pub fn load(dir: &Path) -> Result<EpochCache, StorageError> {
        let text = match fs::read_to_string(dir.join(LEADER_EPOCH_CHECKPOINT)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(EpochCache::default()),
            Err(e) => return Err(e.into()),
        };
        Ok(parse(&text).unwrap_or_else(|| {
            tracing::warn!(dir = %dir.display(), "unreadable leader epoch checkpoint; rebuilding it");
            EpochCache::default()
        }))
    }

    /// Writes the checkpoint atomically and durably (fsynced before the rename).
    pub fn store(&self, dir: &Path) -> Result<(), StorageError> {
        self.write(dir, true)
    }

    /// Writes the checkpoint atomically without waiting for the disk: after a crash the file
    /// may hold an older version or nothing readable. The log makes it durable before it
    /// writes a producer snapshot, so recovery, which replays every batch header from the
    /// newest snapshot on (or from the start without a readable checkpoint), finds any entry
    /// that was lost.
    pub fn store_unsynced(&self, dir: &Path) -> Result<(), StorageError> {
        self.write(dir, false)
    }

    fn write(&self, dir: &Path, sync: bool) -> Result<(), StorageError> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let tmp = dir.join(format!("{LEADER_EPOCH_CHECKPOINT}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            let mut text = format!("{VERSION}\n{}\n", self.entries.len());
            for (epoch, start) in &self.entries {
                text.push_str(&format!("{epoch} {start}\n"));
            }
            f.write_all(text.as_bytes())?;
            if sync {
                f.sync_all()?;
            }
        }
        fs::rename(&tmp, &path)?;
        Ok(())
    }
}

fn parse(text: &str) -> Option<EpochCache> {
    let mut lines = text.lines();
    if lines.next()?.trim().parse::<u32>().ok()? != VERSION {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut cache = EpochCache::default();
    for _ in 0..count {
        let mut parts = lines.next()?.split_whitespace();
        let epoch: i32 = parts.next()?.parse().ok()?;
        let start: i64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !cache.assign(epoch, start) {
            return None;
        }
    }
    Some(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_and_truncation() {
        let mut c = EpochCache::default();
        assert!(c.assign(0, 0));
        assert!(!c.assign(0, 5));
        assert!(c.assign(2, 10));
        assert!(c.assign(5, 30));
        assert!(!c.assign(4, 40));
        assert_eq!(c.end_offset_for(0, 50), Some((0, 10)));
        assert_eq!(c.end_offset_for(1, 50), Some((0, 10)));
        assert_eq!(c.end_offset_for(3, 50), Some((2, 30)));
        assert_eq!(c.end_offset_for(5, 50), Some((5, 50)));
        assert_eq!(c.end_offset_for(9, 50), Some((5, 50)));
        assert_eq!(c.end_offset_for(-1, 50), None);
        assert!(c.truncate_from_end(30));
        assert_eq!(c.entries(), &[(0, 0), (2, 10)]);
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), &[(2, 12)]);
        assert!(!c.truncate_from_start(12));
        // A new epoch starting below the latest start replaces it.
        assert!(c.assign(7, 12));
        assert_eq!(c.entries(), &[(7, 12)]);
    }

    /// `assign` keeps the entries growing whatever it is given (see `assert_growing`), so only
    /// a cache whose entries were already out of order, which no public method produces, can
    /// reach the assert.
    #[test]
    #[should_panic(expected = "leader epoch cache must grow")]
    fn an_epoch_going_back_stops_the_process() {
        let mut c = EpochCache {
            entries: vec![(9, 10), (2, 20)],
        };
        c.assign(5, 15);
    }

    #[test]
    fn checkpoint_round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(EpochCache::load(dir.path()).unwrap(), EpochCache::default());
        let mut c = EpochCache::default();
        c.assign(1, 0);
        c.assign(4, 100);
        c.store(dir.path()).unwrap();
        assert_eq!(EpochCache::load(dir.path()).unwrap(), c);
        for bad in [
            "",
            "1\n0\n",
            "0\n2\n1 0\n",
            "0\n2\n4 100\n1 0\n",
            "0\n1\nx y\n",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
