//! Producer state of one partition: what idempotent and transactional producers have written.
//!
//! For every producer id the log remembers its epoch, the sequence and offset ranges of its
//! last [`MAX_CACHED_BATCHES`] batches (so a retried batch is answered with its original offsets
//! instead of being written twice), and the first offset of its open transaction. Open
//! transactions bound the last stable offset; aborted ones are kept in the aborted transaction
//! index so that `read_committed` fetches can tell clients what to skip.
//!
//! Persistence: a snapshot of the producer entries is written at every segment roll and on
//! shutdown as `<offset, 20 digits>.snapshot` (state as of that offset); on open the newest
//! snapshot is loaded and the batches after it are replayed. Aborted transactions are appended
//! to `aborted-txns.index` as markers land, and re-derived by the replay if a crash lost the
//! entry.
//!
//! Invariant owned here: a producer's sequence numbers are contiguous within an epoch for
//! every batch accepted on append (asserted in `check_batch`, after the checks that turn a
//! client's gap into OutOfOrderSequence).
//!
//! Thread safety: `ProducerState` and its entries are plain data (`Send + Sync`), owned by the
//! `Log` and changed through `&mut` under the partition lock. The checks of a multi-batch append
//! are staged in a map the caller holds and committed only once the batches are written, so a
//! refused append leaves the state untouched.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::StorageError;
use crate::batch::{BatchHeader, crc32c};

/// Batches per producer whose sequence ranges are kept for duplicate detection.
pub const MAX_CACHED_BATCHES: usize = 5;
/// Suffix of producer state snapshot files.
pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";
/// The aborted transaction index of a partition.
pub(crate) const ABORTED_INDEX_FILE: &str = "aborted-txns.index";
/// Snapshots kept on disk (the newest ones).
const SNAPSHOTS_KEPT: usize = 2;
const SNAPSHOT_VERSION: u16 = 1;
const ABORTED_ENTRY_SIZE: usize = 8 * 4;

/// Sequence and offset range of one batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

/// What the partition knows about one producer id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub producer_id: i64,
    pub epoch: i16,
    /// Epoch of the transaction coordinator that wrote the last marker (-1 if none).
    pub coordinator_epoch: i32,
    /// Max timestamp of the producer's last batch (or the time of its last marker).
    pub last_timestamp: i64,
    /// First offset of the producer's open transaction on this partition.
    pub current_txn_first_offset: Option<i64>,
    /// The last batches, oldest first.
    pub batches: VecDeque<BatchMeta>,
}

impl ProducerEntry {
    fn new(producer_id: i64, epoch: i16) -> ProducerEntry {
        ProducerEntry {
            producer_id,
            epoch,
            coordinator_epoch: -1,
            last_timestamp: -1,
            current_txn_first_offset: None,
            batches: VecDeque::new(),
        }
    }

    /// Last sequence number written, if any batch is cached.
    pub fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    /// Moves to `epoch`; a new epoch starts a new sequence, so the cached batches go.
    fn set_epoch(&mut self, epoch: i16) {
        if self.epoch != epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }

    fn push(&mut self, meta: BatchMeta) {
        self.last_timestamp = self.last_timestamp.max(meta.timestamp);
        self.batches.push_back(meta);
        while self.batches.len() > MAX_CACHED_BATCHES {
            self.batches.pop_front();
        }
    }

    fn find_duplicate(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<BatchMeta> {
        if epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }
}

/// A transaction that ended with an ABORT marker: its data batches lie in
/// `[first_offset, last_offset)` (the marker is at `last_offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The last stable offset right after the abort.
    pub last_stable_offset: i64,
}

/// Kind of a transaction marker (the control record type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
}

impl ControlType {
    pub fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }

    pub fn from_code(code: i16) -> Option<ControlType> {
        match code {
            0 => Some(ControlType::Abort),
            1 => Some(ControlType::Commit),
            _ => None,
        }
    }
}

/// Sequence after `seq` advanced by `delta`, wrapping past `i32::MAX` to 0 as producers do.
pub fn add_sequence(seq: i32, delta: i32) -> i32 {
    let next = i64::from(seq) + i64::from(delta);
    if next > i64::from(i32::MAX) {
        (next - i64::from(i32::MAX) - 1) as i32
    } else {
        next as i32
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    add_sequence(last, 1) == next
}

/// Outcome of checking a producer's batch before it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Write it.
    Append,
    /// Already written: answer with these offsets.
    Duplicate(BatchMeta),
}

/// Producer entries and transactions of one partition.
#[derive(Debug, Default)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset -> producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Aborted transactions, by increasing marker offset.
    aborted: Vec<AbortedTxn>,
}

impl ProducerState {
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// All producers, in producer id order.
    pub fn producers(&self) -> Vec<ProducerEntry> {
        let mut out: Vec<ProducerEntry> = self.producers.values().cloned().collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// The first offset of the oldest open transaction.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Aborted transactions overlapping `[from, upper)`.
    pub fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|a| a.first_offset < upper)
            .copied()
            .collect()
    }

    /// Checks a producer's data batch (whose offsets are already assigned) against `staged`
    /// entries of the same append, falling back to the committed ones, and stages its effect.
    pub(crate) fn check_batch(
        &self,
        staged: &mut HashMap<i64, ProducerEntry>,
        header: &BatchHeader,
    ) -> Result<Check, StorageError> {
        let pid = header.producer_id;
        let epoch = header.producer_epoch;
        let first_seq = header.base_sequence;
        let last_seq = add_sequence(first_seq, header.last_offset_delta);
        let current = staged.get(&pid).or_else(|| self.producers.get(&pid));
        if let Some(entry) = current {
            if epoch < entry.epoch {
                return Err(StorageError::InvalidProducerEpoch(format!(
                    "producer {pid} wrote with epoch {epoch}, older than its current epoch {}",
                    entry.epoch
                )));
            }
            if first_seq < 0 {
                // Written by a coordinator on the producer's behalf (transactional offset
                // commits): no sequence to check.
            } else if let Some(dup) = entry.find_duplicate(epoch, first_seq, last_seq) {
                return Ok(Check::Duplicate(dup));
            } else if epoch > entry.epoch {
                if first_seq != 0 {
                    return Err(StorageError::OutOfOrderSequence(format!(
                        "producer {pid} started epoch {epoch} at sequence {first_seq}, expected 0"
                    )));
                }
            } else if let Some(last) = entry.last_seq()
                && !in_sequence(last, first_seq)
            {
                return Err(StorageError::OutOfOrderSequence(format!(
                    "producer {pid} epoch {epoch} sent sequence {first_seq}, expected {}",
                    add_sequence(last, 1)
                )));
            }
            if !header.is_transactional() && entry.current_txn_first_offset.is_some() {
                return Err(StorageError::InvalidTxnState(format!(
                    "producer {pid} wrote a non-transactional batch inside an open transaction"
                )));
            }
        }
        // Invariant: within an epoch, a producer's sequences are contiguous: an accepted batch
        // starts right after the last one this partition holds. A client that breaks it gets
        // OutOfOrderSequence above (or its retry is answered as a duplicate), so no input
        // reaches this assert; it guards those checks. Only appends are held to it: batches
        // replayed from the log may have gaps (compaction drops whole batches).
        if let Some(prev) = current
            && first_seq >= 0
            && epoch == prev.epoch
            && let Some(last) = prev.last_seq()
        {
            assert!(
                in_sequence(last, first_seq),
                "producer {pid} epoch {epoch}: accepted sequence {first_seq} after {last}"
            );
        }
        let mut entry = current
            .cloned()
            .unwrap_or_else(|| ProducerEntry::new(pid, epoch));
        apply_data(&mut entry, header);
        staged.insert(pid, entry);
        Ok(Check::Append)
    }

    /// Makes the staged entries of a completed append current.
    pub(crate) fn commit_staged(&mut self, staged: HashMap<i64, ProducerEntry>) {
        for (pid, entry) in staged {
            self.put(pid, entry);
        }
    }

    fn put(&mut self, pid: i64, entry: ProducerEntry) {
        if let Some(old) = self.producers.get(&pid)
            && let Some(first) = old.current_txn_first_offset
            && entry.current_txn_first_offset != Some(first)
        {
            self.ongoing.remove(&first);
        }
        if let Some(first) = entry.current_txn_first_offset {
            self.ongoing.insert(first, pid);
        }
        self.producers.insert(pid, entry);
    }

    /// Checks that a marker of `epoch` from coordinator epoch `coordinator_epoch` may be written.
    pub(crate) fn check_marker(
        &self,
        pid: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), StorageError> {
        if let Some(entry) = self.producers.get(&pid) {
            if epoch < entry.epoch {
                return Err(StorageError::InvalidProducerEpoch(format!(
                    "marker for producer {pid} has epoch {epoch}, older than {}",
                    entry.epoch
                )));
            }
            if coordinator_epoch < entry.coordinator_epoch {
                return Err(StorageError::CoordinatorFenced(format!(
                    "marker for producer {pid} from coordinator epoch {coordinator_epoch}, \
                     older than {}",
                    entry.coordinator_epoch
                )));
            }
        }
        Ok(())
    }

    /// Applies a transaction marker written at `offset`. Returns the aborted transaction it
    /// closed, if it was an abort of an open transaction.
    pub(crate) fn apply_marker(
        &mut self,
        pid: i64,
        epoch: i16,
        coordinator_epoch: i32,
        kind: ControlType,
        offset: i64,
        timestamp: i64,
    ) -> Option<AbortedTxn> {
        let mut entry = self
            .producers
            .get(&pid)
            .cloned()
            .unwrap_or_else(|| ProducerEntry::new(pid, epoch));
        entry.set_epoch(epoch);
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp = entry.last_timestamp.max(timestamp);
        let first = entry.current_txn_first_offset.take();
        self.put(pid, entry);
        let first = first?;
        if kind != ControlType::Abort {
            return None;
        }
        let aborted = AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: offset,
            last_stable_offset: self.first_unstable_offset().unwrap_or(offset + 1),
        };
        self.add_aborted(aborted).then_some(aborted)
    }

    /// Records an aborted transaction unless already known. Returns whether it was new.
    fn add_aborted(&mut self, txn: AbortedTxn) -> bool {
        if self
            .aborted
            .iter()
            .rev()
            .take_while(|a| a.last_offset >= txn.last_offset)
            .any(|a| a.last_offset == txn.last_offset)
        {
            return false;
        }
        let at = self
            .aborted
            .partition_point(|a| a.last_offset < txn.last_offset);
        self.aborted.insert(at, txn);
        true
    }

    /// Forgets idle producers: no open transaction and nothing written for `expiration_ms`.
    /// Returns how many went.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Drops aborted transactions entirely below `log_start` (their data is gone). Returns
    /// whether anything changed.
    pub(crate) fn prune_aborted(&mut self, log_start: i64) -> bool {
        let n = self.aborted.partition_point(|a| a.last_offset < log_start);
        self.aborted.drain(..n);
        n > 0
    }

    pub(crate) fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// Applies a data batch already in the log (replay), without checks.
    pub(crate) fn replay_data(&mut self, header: &BatchHeader) {
        let pid = header.producer_id;
        let mut entry = self
            .producers
            .get(&pid)
            .cloned()
            .unwrap_or_else(|| ProducerEntry::new(pid, header.producer_epoch));
        apply_data(&mut entry, header);
        self.put(pid, entry);
    }

    // ---- persistence ----

    /// Serializes the producer entries (the aborted index is kept separately).
    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let producers = self.producers();
        body.extend_from_slice(&(producers.len() as u32).to_be_bytes());
        for e in &producers {
            body.extend_from_slice(&e.producer_id.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&e.last_timestamp.to_be_bytes());
            body.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 6);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode(bytes: &[u8]) -> Option<ProducerState> {
        let mut r = Reader { b: bytes, pos: 0 };
        if r.u16()? != SNAPSHOT_VERSION {
            return None;
        }
        let crc = r.u32()?;
        if crc32c(&bytes[r.pos..]) != crc {
            return None;
        }
        let mut state = ProducerState::default();
        for _ in 0..r.u32()? {
            let producer_id = r.i64()?;
            let epoch = r.u16()? as i16;
            let coordinator_epoch = r.u32()? as i32;
            let last_timestamp = r.i64()?;
            let txn = r.i64()?;
            let n = r.u8()?;
            let mut batches = VecDeque::with_capacity(usize::from(n));
            for _ in 0..n {
                batches.push_back(BatchMeta {
                    first_seq: r.u32()? as i32,
                    last_seq: r.u32()? as i32,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    timestamp: r.i64()?,
                });
            }
            let entry = ProducerEntry {
                producer_id,
                epoch,
                coordinator_epoch,
                last_timestamp,
                current_txn_first_offset: (txn >= 0).then_some(txn),
                batches,
            };
            state.put(producer_id, entry);
        }
        (r.pos == bytes.len()).then_some(state)
    }

    /// Writes the snapshot of the state as of `offset` (durably) and removes older snapshots
    /// beyond the newest [`SNAPSHOTS_KEPT`].
    pub(crate) fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<(), StorageError> {
        let path = snapshot_path(dir, offset);
        let tmp = path.with_extension("snapshot.tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&self.encode())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        let mut offsets = list_snapshots(dir)?;
        offsets.sort_unstable();
        let excess = offsets.len().saturating_sub(SNAPSHOTS_KEPT);
        for old in &offsets[..excess] {
            remove_file(&snapshot_path(dir, *old))?;
        }
        Ok(())
    }

    /// Loads the newest valid snapshot at or below `max_offset`, deleting the ones above it
    /// and unreadable ones. Returns the state and the snapshot offset.
    pub(crate) fn load_snapshot(
        dir: &Path,
        max_offset: i64,
    ) -> Result<Option<(ProducerState, i64)>, StorageError> {
        let mut offsets = list_snapshots(dir)?;
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        for offset in offsets {
            let path = snapshot_path(dir, offset);
            if offset > max_offset {
                remove_file(&path)?;
                continue;
            }
            match fs::read(&path).ok().and_then(|b| ProducerState::decode(&b)) {
                Some(state) => return Ok(Some((state, offset))),
                None => {
                    tracing::warn!(path = %path.display(), "removing unreadable producer snapshot");
                    remove_file(&path)?;
                }
            }
        }
        Ok(None)
    }

    /// Replaces the aborted list with the index file's entries below `log_end`.
    pub(crate) fn load_aborted(&mut self, dir: &Path, log_end: i64) -> Result<(), StorageError> {
        let bytes = match fs::read(dir.join(ABORTED_INDEX_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        self.aborted.clear();
        for chunk in bytes.chunks_exact(ABORTED_ENTRY_SIZE) {
            let mut r = Reader { b: chunk, pos: 0 };
            let (Some(producer_id), Some(first_offset), Some(last_offset), Some(lso)) =
                (r.i64(), r.i64(), r.i64(), r.i64())
            else {
                break;
            };
            if last_offset < log_end {
                self.add_aborted(AbortedTxn {
                    producer_id,
                    first_offset,
                    last_offset,
                    last_stable_offset: lso,
                });
            }
        }
        Ok(())
    }

    /// Rewrites the aborted index from memory (after truncation, pruning or recovery).
    pub(crate) fn store_aborted(&self, dir: &Path) -> Result<(), StorageError> {
        let path = dir.join(ABORTED_INDEX_FILE);
        if self.aborted.is_empty() {
            return Ok(remove_file(&path)?);
        }
        let tmp = dir.join(format!("{ABORTED_INDEX_FILE}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            let mut bytes = Vec::with_capacity(self.aborted.len() * ABORTED_ENTRY_SIZE);
            for a in &self.aborted {
                bytes.extend_from_slice(&encode_aborted(a));
            }
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        Ok(())
    }
}

fn apply_data(entry: &mut ProducerEntry, header: &BatchHeader) {
    entry.set_epoch(header.producer_epoch);
    if header.base_sequence >= 0 {
        entry.push(BatchMeta {
            first_seq: header.base_sequence,
            last_seq: add_sequence(header.base_sequence, header.last_offset_delta),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            timestamp: header.max_timestamp,
        });
    } else {
        entry.last_timestamp = entry.last_timestamp.max(header.max_timestamp);
    }
    if header.is_transactional() && entry.current_txn_first_offset.is_none() {
        entry.current_txn_first_offset = Some(header.base_offset);
    }
}

fn encode_aborted(a: &AbortedTxn) -> [u8; ABORTED_ENTRY_SIZE] {
    let mut out = [0u8; ABORTED_ENTRY_SIZE];
    out[0..8].copy_from_slice(&a.producer_id.to_be_bytes());
    out[8..16].copy_from_slice(&a.first_offset.to_be_bytes());
    out[16..24].copy_from_slice(&a.last_offset.to_be_bytes());
    out[24..32].copy_from_slice(&a.last_stable_offset.to_be_bytes());
    out
}

/// Appends one entry to the aborted index (not synced: snapshots sync it, and a lost entry is
/// re-derived by the replay at open).
pub(crate) fn append_aborted(dir: &Path, a: &AbortedTxn) -> Result<(), StorageError> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(ABORTED_INDEX_FILE))?;
    f.write_all(&encode_aborted(a))?;
    Ok(())
}

/// Syncs the aborted index if present.
pub(crate) fn sync_aborted(dir: &Path) -> Result<(), StorageError> {
    match File::open(dir.join(ABORTED_INDEX_FILE)) {
        Ok(f) => Ok(f.sync_all()?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_SUFFIX}"))
}

fn list_snapshots(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".snapshot")
            && stem.len() == 20
            && let Ok(offset) = stem.parse::<i64>()
        {
            out.push(offset);
        }
    }
    Ok(out)
}

/// Removes every snapshot above `offset` (after a truncation).
pub(crate) fn remove_snapshots_above(dir: &Path, offset: i64) -> Result<(), StorageError> {
    for s in list_snapshots(dir)? {
        if s > offset {
            remove_file(&snapshot_path(dir, s))?;
        }
    }
    Ok(())
}

fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.pos..self.pos + N)?;
        self.pos += N;
        s.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_producers() {
        assert_eq!(add_sequence(5, 3), 8);
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
        assert!(in_sequence(i32::MAX, 0));
        assert!(!in_sequence(3, 5));
    }

    #[test]
    fn snapshot_round_trips_and_detects_corruption() {
        let mut state = ProducerState::default();
        let mut entry = ProducerEntry::new(7, 3);
        entry.current_txn_first_offset = Some(40);
        entry.coordinator_epoch = 2;
        for i in 0..7 {
            entry.push(BatchMeta {
                first_seq: i * 10,
                last_seq: i * 10 + 9,
                first_offset: 100 + i64::from(i) * 10,
                last_offset: 109 + i64::from(i) * 10,
                timestamp: 1000 + i64::from(i),
            });
        }
        state.put(7, entry.clone());
        state.put(9, ProducerEntry::new(9, 0));
        let bytes = state.encode();
        let back = ProducerState::decode(&bytes).expect("decodes");
        assert_eq!(back.get(7), Some(&entry));
        assert_eq!(back.get(7).unwrap().batches.len(), MAX_CACHED_BATCHES);
        assert_eq!(back.first_unstable_offset(), Some(40));
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(ProducerState::decode(&bad).is_none());
        assert!(ProducerState::decode(&bytes[..bytes.len() - 1]).is_none());
    }

    #[test]
    fn aborted_between_selects_overlapping_transactions() {
        let mut state = ProducerState::default();
        for (pid, first, last) in [(1, 0, 10), (2, 5, 20), (3, 30, 40)] {
            state.add_aborted(AbortedTxn {
                producer_id: pid,
                first_offset: first,
                last_offset: last,
                last_stable_offset: last + 1,
            });
        }
        let pids = |v: Vec<AbortedTxn>| v.iter().map(|a| a.producer_id).collect::<Vec<_>>();
        assert_eq!(pids(state.aborted_between(0, 100)), vec![1, 2, 3]);
        assert_eq!(pids(state.aborted_between(11, 30)), vec![2]);
        assert_eq!(pids(state.aborted_between(21, 31)), vec![3]);
        assert_eq!(pids(state.aborted_between(41, 100)), Vec::<i64>::new());
        // Adding the same marker again changes nothing.
        assert!(!state.add_aborted(AbortedTxn {
            producer_id: 3,
            first_offset: 30,
            last_offset: 40,
            last_stable_offset: 41
        }));
    }
}
