//! Storage of a quorum member: the Raft log and vote on disk, and the metadata image as the
//! state machine.
//!
//! Files in the member's directory:
//! - `raft-meta.json`: vote, committed log id, last purged log id (rewritten atomically);
//! - `raft-log.jsonl`: one JSON entry per line, appended and fsynced; a torn last line is
//!   ignored on open; truncation and purging rewrite it;
//! - `raft-snapshot.json`: the newest snapshot (all metadata records applied up to its log id,
//!   and the membership), so that purged entries are never needed again.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use super::QuorumConfig;
use crate::{MetadataImage, MetadataRecord};

type NodeId = u64;

fn io_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(&e).into()
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Meta {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
}

struct LogInner {
    dir: PathBuf,
    meta: Meta,
    entries: BTreeMap<u64, Entry<QuorumConfig>>,
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

impl LogInner {
    fn store_meta(&self) -> io::Result<()> {
        let bytes = serde_json::to_vec(&self.meta).map_err(io::Error::other)?;
        write_atomically(&self.dir, "raft-meta.json", &bytes)
    }

    fn rewrite_log(&self) -> io::Result<()> {
        let mut bytes = Vec::new();
        for e in self.entries.values() {
            serde_json::to_writer(&mut bytes, e).map_err(io::Error::other)?;
            bytes.push(b'\n');
        }
        write_atomically(&self.dir, "raft-log.jsonl", &bytes)
    }
}

/// The Raft log and vote of one member. Cheap to clone: clones share the same log.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Opens the log in `dir`, creating it if needed.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        fs::create_dir_all(dir)?;
        let meta = match fs::read(dir.join("raft-meta.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Meta::default(),
            Err(e) => return Err(e),
        };
        let mut entries = BTreeMap::new();
        match File::open(dir.join("raft-log.jsonl")) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let line = line?;
                    // A line cut short by a crash ends the log.
                    let Ok(e) = serde_json::from_str::<Entry<QuorumConfig>>(&line) else {
                        break;
                    };
                    entries.insert(e.log_id.index, e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let inner = LogInner {
            dir: dir.to_path_buf(),
            meta,
            entries,
        };
        // Drop a torn tail for good.
        inner.rewrite_log()?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RaftLogReader<QuorumConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<QuorumConfig>>, StorageError<NodeId>> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<QuorumConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<QuorumConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let last = inner.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.meta.last_purged,
            last_log_id: last.or(inner.meta.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.meta.vote = Some(*vote);
        inner.store_meta().map_err(io_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().meta.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.meta.committed = committed;
        inner.store_meta().map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().meta.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<QuorumConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<QuorumConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = (|| -> io::Result<()> {
            let mut inner = self.lock();
            let mut bytes = Vec::new();
            let mut appended = Vec::new();
            for e in entries {
                serde_json::to_writer(&mut bytes, &e).map_err(io::Error::other)?;
                bytes.push(b'\n');
                appended.push(e);
            }
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(inner.dir.join("raft-log.jsonl"))?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            for e in appended {
                inner.entries.insert(e.log_id.index, e);
            }
            Ok(())
        })();
        let failed = result
            .as_ref()
            .err()
            .map(|e| io::Error::new(e.kind(), e.to_string()));
        callback.log_io_completed(result);
        match failed {
            Some(e) => Err(io_err(e)),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.entries.retain(|i, _| *i < log_id.index);
        inner.rewrite_log().map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.meta.last_purged = Some(log_id);
        inner.store_meta().map_err(io_err)?;
        inner.entries.retain(|i, _| *i > log_id.index);
        inner.rewrite_log().map_err(io_err)
    }
}

/// What a snapshot holds: every record applied up to its log id, and the membership.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SnapshotBody {
    records: Vec<MetadataRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

struct SmInner {
    dir: PathBuf,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    records: Vec<MetadataRecord>,
    snapshot: Option<StoredSnapshot>,
    snapshot_count: u64,
}

/// The state machine: metadata records applied to the image that brokers read.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<SmInner>>,
    image: Arc<RwLock<Arc<MetadataImage>>>,
    applied: Arc<tokio::sync::Notify>,
}

impl StateMachine {
    /// Opens the state machine of the member in `dir`, starting from its snapshot if it has one.
    pub fn open(dir: &Path) -> io::Result<StateMachine> {
        fs::create_dir_all(dir)?;
        let snapshot: Option<StoredSnapshot> = match fs::read(dir.join("raft-snapshot.json")) {
            Ok(b) => Some(serde_json::from_slice(&b).map_err(io::Error::other)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut sm = SmInner {
            dir: dir.to_path_buf(),
            last_applied: None,
            membership: StoredMembership::default(),
            records: Vec::new(),
            snapshot: None,
            snapshot_count: 0,
        };
        let mut image = MetadataImage::default();
        if let Some(s) = snapshot {
            let body: SnapshotBody = serde_json::from_slice(&s.data).map_err(io::Error::other)?;
            for r in &body.records {
                image.apply(r);
            }
            sm.last_applied = s.meta.last_log_id;
            sm.membership = s.meta.last_membership.clone();
            sm.records = body.records;
            sm.snapshot = Some(s);
        }
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(sm)),
            image: Arc::new(RwLock::new(Arc::new(image))),
            applied: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// A state machine that keeps nothing on disk (an observer's copy of the log).
    pub fn in_memory(dir: &Path) -> io::Result<StateMachine> {
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(SmInner {
                dir: dir.to_path_buf(),
                last_applied: None,
                membership: StoredMembership::default(),
                records: Vec::new(),
                snapshot: None,
                snapshot_count: 0,
            })),
            image: Arc::new(RwLock::new(Arc::new(MetadataImage::default()))),
            applied: Arc::new(tokio::sync::Notify::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SmInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The image after every applied record.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Woken after every apply.
    pub fn applied(&self) -> Arc<tokio::sync::Notify> {
        self.applied.clone()
    }

    /// The records after the first `after` (what an observer lacks), if this state machine
    /// has that many.
    pub fn records_after(&self, after: u64) -> Option<Vec<MetadataRecord>> {
        let inner = self.lock();
        let after = usize::try_from(after).ok()?;
        (after <= inner.records.len()).then(|| inner.records[after..].to_vec())
    }

    /// Applies records fetched from the quorum (an observer's copy of the log); `start` is
    /// the offset of the first one, records already applied are skipped.
    pub fn apply_fetched(&self, start: u64, records: Vec<MetadataRecord>) {
        {
            let mut inner = self.lock();
            let have = inner.records.len() as u64;
            if start > have {
                return;
            }
            let skip = (have - start) as usize;
            if skip >= records.len() {
                return;
            }
            let mut image = (*self.image()).clone();
            for r in records.into_iter().skip(skip) {
                image.apply(&r);
                inner.records.push(r);
            }
            *self.image.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(image);
        }
        self.applied.notify_waiters();
    }

    fn rebuild_image(&self, records: &[MetadataRecord]) {
        let mut image = MetadataImage::default();
        for r in records {
            image.apply(r);
        }
        *self.image.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(image);
    }
}

impl RaftSnapshotBuilder<QuorumConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<QuorumConfig>, StorageError<NodeId>> {
        let mut inner = self.lock();
        let data = serde_json::to_vec(&SnapshotBody {
            records: inner.records.clone(),
        })
        .map_err(io_err)?;
        inner.snapshot_count += 1;
        let snapshot_id = match inner.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, inner.snapshot_count),
            None => format!("--{}", inner.snapshot_count),
        };
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(io_err)?;
        write_atomically(&inner.dir, "raft-snapshot.json", &bytes).map_err(io_err)?;
        inner.snapshot = Some(stored);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<QuorumConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<QuorumConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        {
            let mut inner = self.lock();
            let mut image = (*self.image()).clone();
            for e in entries {
                inner.last_applied = Some(e.log_id);
                match e.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(batch) => {
                        for r in batch.0 {
                            image.apply(&r);
                            inner.records.push(r);
                        }
                    }
                    EntryPayload::Membership(m) => {
                        inner.membership = StoredMembership::new(Some(e.log_id), m);
                    }
                }
                out.push(());
            }
            *self.image.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(image);
        }
        self.applied.notify_waiters();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let body: SnapshotBody = serde_json::from_slice(&data).map_err(io_err)?;
        {
            let mut inner = self.lock();
            let stored = StoredSnapshot {
                meta: meta.clone(),
                data,
            };
            let bytes = serde_json::to_vec(&stored).map_err(io_err)?;
            write_atomically(&inner.dir, "raft-snapshot.json", &bytes).map_err(io_err)?;
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
            inner.records = body.records.clone();
            inner.snapshot = Some(stored);
        }
        self.rebuild_image(&body.records);
        self.applied.notify_waiters();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<QuorumConfig>>, StorageError<NodeId>> {
        Ok(self.lock().snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}
