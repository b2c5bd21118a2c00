//! What a read of the log returns: whole batches as regions of segment files (sent with
//! `sendfile` on plaintext connections) or, for the unsynced tail of a direct-written active
//! segment, bytes in memory.
//!
//! Thread safety: all types here are `Send + Sync` and cheap to clone. A `FileSlice` holds an
//! `Arc<File>`, so it stays readable after the log's lock is released, and even after
//! retention or compaction deleted the segment (the open handle keeps the data).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Part of a read: a region of a segment file, or bytes held in memory (the last partial block
/// of an active segment written with direct I/O, which must not be read through the page
/// cache). Cheap to clone.
#[derive(Clone, Debug)]
pub enum LogSlice {
    File(FileSlice),
    Memory(bytes::Bytes),
}

impl LogSlice {
    pub fn len(&self) -> u32 {
        match self {
            LogSlice::File(f) => f.len,
            LogSlice::Memory(b) => b.len() as u32,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the bytes `[from, from + len)` of the slice to `out`.
    pub fn read_range_into(&self, from: u32, len: u32, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            LogSlice::File(f) => FileSlice {
                file: Arc::clone(&f.file),
                position: f.position + u64::from(from),
                len,
            }
            .read_into(out),
            LogSlice::Memory(b) => {
                out.extend_from_slice(&b[from as usize..(from + len) as usize]);
                Ok(())
            }
        }
    }

    /// Appends the slice's bytes to `out`.
    pub fn read_into(&self, out: &mut Vec<u8>) -> io::Result<()> {
        self.read_range_into(0, self.len(), out)
    }
}

/// A region of a segment file to be sent to a consumer. Cheap to clone; the `Arc` keeps the
/// file open even if retention deletes the segment meanwhile.
#[derive(Clone, Debug)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub len: u32,
}

impl FileSlice {
    /// Copies the region into memory (for TLS connections and tests; plaintext uses sendfile).
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_into(&mut buf)?;
        Ok(buf)
    }

    /// Appends the slice's bytes to `out` (one read, no intermediate buffer).
    pub fn read_into(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        out.resize(start + self.len as usize, 0);
        if let Err(e) = self.file.read_exact_at(&mut out[start..], self.position) {
            out.truncate(start);
            return Err(e);
        }
        Ok(())
    }
}

/// Result of a read: whole batches, in offset order, possibly spanning segments.
#[derive(Clone, Debug)]
pub struct ReadInfo {
    pub slices: Vec<LogSlice>,
    pub total_bytes: u64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// The offset after the last batch read (its last offset + 1); `None` when nothing was
    /// read. A reader resumes there.
    pub next_offset: Option<i64>,
}

impl ReadInfo {
    /// Concatenates the slices into memory.
    pub fn read_to_vec(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.total_bytes as usize);
        for slice in &self.slices {
            slice.read_into(&mut out)?;
        }
        Ok(out)
    }
}
