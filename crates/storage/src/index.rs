//! Sparse segment indexes, kept in memory and appended to their files as they grow.
//!
//! `.index` entries: relative offset u32 + file position u32 (big endian), pointing at the start
//! of a batch whose base offset is `segment base + relative offset`.
//! `.timeindex` entries: timestamp i64 + relative offset u32: the largest timestamp seen in the
//! segment so far and the last offset of the batch that carried it.
//!
//! Thread safety: `IndexFile` is `Send + Sync`, owned by its `Segment` and changed only through
//! `&mut`; it needs no lock of its own.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub(crate) trait IndexEntry: Copy + PartialEq + std::fmt::Debug {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Self;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub rel_offset: u32,
    pub position: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub rel_offset: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.rel_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            rel_offset: u32_at(b, 0),
            position: u32_at(b, 4),
        }
    }
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.rel_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            rel_offset: u32_at(b, 8),
        }
    }
}

/// A segment index: the entries live in memory and are written to the file only when the
/// segment is flushed, sealed or truncated, and no file descriptor is held in between, so a
/// partition costs one descriptor (its active log file) however many segments it has. An
/// active segment's index file may lag behind its log; recovery always scans the active
/// segment in full and rewrites its indexes.
pub(crate) struct IndexFile<E: IndexEntry> {
    path: PathBuf,
    entries: Vec<E>,
    /// Entries written to the file.
    written: usize,
    /// Entries written and synced.
    synced: usize,
}

impl<E: IndexEntry> IndexFile<E> {
    /// Reads the entries of an index file. `None` if the file is missing or its size is not a
    /// whole number of entries (a torn write): the caller rebuilds it.
    pub fn read_entries(path: &Path) -> io::Result<Option<Vec<E>>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        if bytes.len() % E::SIZE != 0 {
            return Ok(None);
        }
        Ok(Some(bytes.chunks_exact(E::SIZE).map(E::decode).collect()))
    }

    /// Opens (creating if needed) the index file at `path` and makes its contents exactly
    /// `entries`. `on_disk` is what [`Self::read_entries`] returned: the file is rewritten only
    /// when it differs.
    pub fn open_with(path: &Path, entries: Vec<E>, on_disk: Option<&[E]>) -> io::Result<Self> {
        let mut index = IndexFile {
            path: path.to_path_buf(),
            written: entries.len(),
            synced: entries.len(),
            entries,
        };
        if on_disk != Some(&index.entries[..]) {
            index.rewrite()?;
        }
        Ok(index)
    }

    fn open_file(&self) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
    }

    fn rewrite(&mut self) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(self.entries.len() * E::SIZE);
        for e in &self.entries {
            e.encode(&mut bytes);
        }
        let file = self.open_file()?;
        file.set_len(0)?;
        file.write_all_at(&bytes, 0)?;
        file.sync_data()?;
        self.written = self.entries.len();
        self.synced = self.entries.len();
        Ok(())
    }

    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    pub fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    /// Adds an entry in memory; [`Self::sync`] writes it.
    pub fn append(&mut self, entry: E) -> io::Result<()> {
        self.entries.push(entry);
        Ok(())
    }

    /// Keeps only the first `len` entries.
    pub fn truncate(&mut self, len: usize) -> io::Result<()> {
        if len < self.entries.len() {
            self.entries.truncate(len);
            if self.written > len {
                self.open_file()?.set_len((len * E::SIZE) as u64)?;
                self.written = len;
                self.synced = self.synced.min(len);
            }
        }
        Ok(())
    }

    /// Writes the entries not yet in the file and syncs it.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.synced == self.entries.len() {
            return Ok(());
        }
        let file = self.open_file()?;
        if self.written < self.entries.len() {
            let mut bytes = Vec::with_capacity((self.entries.len() - self.written) * E::SIZE);
            for e in &self.entries[self.written..] {
                e.encode(&mut bytes);
            }
            file.write_all_at(&bytes, (self.written * E::SIZE) as u64)?;
            self.written = self.entries.len();
        }
        file.sync_data()?;
        self.synced = self.entries.len();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
