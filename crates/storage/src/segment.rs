//! One segment of a partition log: a `.log` file of batches plus its two sparse indexes.
//!
//! Thread safety: `Segment` is `Send + Sync` and has no interior locking; appends, seals,
//! truncations and flushes take `&mut self`, so the owner's lock (the partition's `Mutex<Log>`
//! in the broker) serialises them with reads. The `.log` file is shared as an `Arc<File>` with
//! readers ([`crate::FileSlice`]) and cleaning passes, which use positioned reads only and never
//! see bytes past the size they were given.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::StorageError;
use crate::batch::{self, BATCH_HEADER_SIZE, BatchHeader, LOG_OVERHEAD, MAGIC_V2};
use crate::direct::{self, DirectTail};
use crate::index::{IndexFile, OffsetEntry, TimeEntry};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

/// Read-ahead when scanning batch headers to serve a fetch.
pub(crate) const READ_CHUNK: usize = 16 * 1024;
/// Read-ahead when scanning whole batches (recovery).
const SCAN_CHUNK: usize = 256 * 1024;

/// Most buffers one `pwritev` takes (IOV_MAX on Linux).
const IOV_MAX: usize = 1024;

/// Writes all of `parts`, concatenated, at `pos`; returns the bytes written.
fn write_all_vectored_at(file: &File, parts: &[&[u8]], pos: u64) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut offset = pos;
    let mut idx = 0usize;
    // Bytes of parts[idx] already written.
    let mut done_in_part = 0usize;
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(parts.len().min(IOV_MAX));
    while idx < parts.len() {
        iov.clear();
        for (k, part) in parts[idx..].iter().take(IOV_MAX).enumerate() {
            let part = if k == 0 { &part[done_in_part..] } else { part };
            iov.push(libc::iovec {
                iov_base: part.as_ptr() as *mut libc::c_void,
                iov_len: part.len(),
            });
        }
        // SAFETY: every iovec points into a live slice of `parts` for the duration of the call.
        let n = unsafe {
            libc::pwritev(
                fd,
                iov.as_ptr(),
                iov.len() as libc::c_int,
                offset as libc::off_t,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut n = n as usize;
        if n == 0 && iov.iter().any(|v| v.iov_len > 0) {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "pwritev wrote nothing",
            ));
        }
        offset += n as u64;
        while idx < parts.len() {
            let left = parts[idx].len() - done_in_part;
            if n >= left {
                n -= left;
                idx += 1;
                done_in_part = 0;
            } else {
                done_in_part += n;
                break;
            }
        }
    }
    Ok(offset - pos)
}

pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the `.log`, `.index` and `.timeindex` files of the segment at `base_offset`.
pub(crate) fn remove_segment_files(dir: &Path, base_offset: i64) -> io::Result<()> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        remove_if_exists(&segment_path(dir, base_offset, suffix))?;
    }
    Ok(())
}

/// Base offset from a segment file name (`<20 digits>.<suffix>`).
pub(crate) fn parse_base_offset(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// `<dir>/<base offset, 20 digits>.<suffix>`.
pub(crate) fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// Buffered positional reads over a segment file, up to `end`.
pub(crate) struct ChunkReader<'a> {
    file: &'a File,
    end: u64,
    /// Bytes from this position on come from `tail` instead of the file (the last partial
    /// block of a segment written with direct I/O, see `direct`).
    tail_start: u64,
    tail: &'a [u8],
    chunk: usize,
    buf: Vec<u8>,
    buf_pos: u64,
    /// Position of the last header read by [`Self::header_at`].
    last_header: Option<u64>,
}

impl<'a> ChunkReader<'a> {
    pub fn new(file: &'a File, end: u64, chunk: usize) -> Self {
        ChunkReader {
            file,
            end,
            tail_start: u64::MAX,
            tail: &[],
            chunk,
            buf: Vec::new(),
            buf_pos: 0,
            last_header: None,
        }
    }

    /// Takes the bytes from `start` on from `tail` rather than from the file.
    pub fn with_tail(mut self, start: u64, tail: &'a [u8]) -> Self {
        self.tail_start = start;
        self.tail = tail;
        self
    }

    /// Fills `buf` with the bytes from `pos`: from the file below `tail_start`, from the tail
    /// above.
    fn fill(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let from_file = self.tail_start.saturating_sub(pos).min(buf.len() as u64) as usize;
        let (file_part, tail_part) = buf.split_at_mut(from_file);
        if !file_part.is_empty() {
            self.file.read_exact_at(file_part, pos)?;
        }
        if !tail_part.is_empty() {
            let at = (pos + from_file as u64 - self.tail_start) as usize;
            let src = self.tail.get(at..at + tail_part.len()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "read past the segment's data")
            })?;
            tail_part.copy_from_slice(src);
        }
        Ok(())
    }

    /// The bytes `[pos, pos + len)`, or `None` if they extend past `end`.
    pub fn get(&mut self, pos: u64, len: usize) -> io::Result<Option<&[u8]>> {
        self.read(pos, len, true)
    }

    /// [`Self::get`]; without `read_ahead` a read that misses the buffer reads only `len`.
    fn read(&mut self, pos: u64, len: usize, read_ahead: bool) -> io::Result<Option<&[u8]>> {
        if pos.saturating_add(len as u64) > self.end {
            return Ok(None);
        }
        let buffered_end = self.buf_pos + self.buf.len() as u64;
        if pos < self.buf_pos || pos + len as u64 > buffered_end {
            let chunk = if read_ahead { self.chunk } else { len };
            let want = (len.max(chunk) as u64).min(self.end - pos) as usize;
            let mut buf = std::mem::take(&mut self.buf);
            buf.resize(want, 0);
            let filled = self.fill(&mut buf, pos);
            self.buf = buf;
            if let Err(e) = filled {
                self.buf.clear();
                return Err(e);
            }
            self.buf_pos = pos;
        }
        let start = (pos - self.buf_pos) as usize;
        Ok(Some(&self.buf[start..start + len]))
    }

    /// Reads and sanity-checks the header of the batch at `pos` (magic, length, fits before
    /// `end`). Does not check the CRC.
    pub fn header_at(&mut self, pos: u64) -> Result<BatchHeader, StorageError> {
        // Batches at least a read-ahead apart: reading a whole chunk at each header would copy
        // mostly record bytes, so read just the header.
        let read_ahead = self
            .last_header
            .is_none_or(|prev| pos.abs_diff(prev) < self.chunk as u64);
        self.last_header = Some(pos);
        let bytes = self
            .read(pos, BATCH_HEADER_SIZE, read_ahead)?
            .ok_or_else(|| {
                StorageError::CorruptRecord(format!("short batch header at position {pos}"))
            })?;
        let header = BatchHeader::parse(bytes)?;
        if header.magic != MAGIC_V2 {
            return Err(StorageError::CorruptRecord(format!(
                "magic {} at position {pos}",
                header.magic
            )));
        }
        if (header.batch_length as i64) < (BATCH_HEADER_SIZE - LOG_OVERHEAD) as i64
            || header.last_offset_delta < 0
        {
            return Err(StorageError::CorruptRecord(format!(
                "bad batch length {} or offset delta {} at position {pos}",
                header.batch_length, header.last_offset_delta
            )));
        }
        if pos + header.total_size() as u64 > self.end {
            return Err(StorageError::CorruptRecord(format!(
                "batch of {} bytes at position {pos} runs past the end {}",
                header.total_size(),
                self.end
            )));
        }
        Ok(header)
    }
}

/// Index bookkeeping for one batch appended at `pos`, shared by append and recovery so both
/// produce identical indexes: an offset index entry once more than `interval` bytes were
/// written since the last one, and a time index entry with it when the max timestamp grew.
#[allow(clippy::too_many_arguments)]
fn index_batch(
    bytes_since_last_index: &mut u64,
    max_timestamp: &mut Option<(i64, i64)>,
    last_time_entry: Option<i64>,
    interval: u32,
    base_offset: i64,
    header: &BatchHeader,
    pos: u64,
) -> (Option<OffsetEntry>, Option<TimeEntry>) {
    if max_timestamp.is_none_or(|(ts, _)| header.max_timestamp > ts) {
        *max_timestamp = Some((header.max_timestamp, header.last_offset()));
    }
    let mut entries = (None, None);
    if *bytes_since_last_index > u64::from(interval) {
        entries.0 = Some(OffsetEntry {
            rel_offset: (header.base_offset - base_offset) as u32,
            position: pos as u32,
        });
        if let Some((ts, offset)) = *max_timestamp
            && last_time_entry.is_none_or(|last| ts > last)
        {
            entries.1 = Some(TimeEntry {
                timestamp: ts,
                rel_offset: (offset - base_offset) as u32,
            });
        }
        *bytes_since_last_index = 0;
    }
    *bytes_since_last_index += header.total_size() as u64;
    entries
}

/// Result of scanning batches of a segment file.
pub(crate) struct Scan {
    /// Bytes up to the end of the last valid batch.
    pub valid_size: u64,
    pub next_offset: i64,
    pub index: Vec<OffsetEntry>,
    pub time_index: Vec<TimeEntry>,
    pub max_timestamp: Option<(i64, i64)>,
    pub bytes_since_last_index: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub corruption: Option<String>,
    /// The scan stopped at zeros running to the end of the file, within its last block: the
    /// padding direct writes leave in an active segment that was not sealed. Only an active
    /// segment may end so; anywhere else the caller treats it as corruption.
    pub padding: bool,
}

/// Scans whole batches from `start_pos` (expected to hold `start_offset`) to `file_len`,
/// validating each (header, CRC, increasing offsets: compaction leaves gaps). With
/// `build_index`, produces the index entries the batches would have got when appended.
pub(crate) fn scan(
    file: &File,
    file_len: u64,
    base_offset: i64,
    start_pos: u64,
    start_offset: i64,
    interval: u32,
    build_index: bool,
) -> io::Result<Scan> {
    let mut out = Scan {
        valid_size: start_pos,
        next_offset: start_offset,
        index: Vec::new(),
        time_index: Vec::new(),
        max_timestamp: None,
        bytes_since_last_index: 0,
        corruption: None,
        padding: false,
    };
    let mut reader = ChunkReader::new(file, file_len, SCAN_CHUNK);
    let mut pos = start_pos;
    while pos < file_len {
        let header = match reader.header_at(pos) {
            Ok(h) => h,
            Err(StorageError::Io(e)) => return Err(e),
            Err(e) => {
                // Zeros to the end of the last block: the padding of direct writes.
                let rest = file_len - pos;
                let padding = rest < direct::BLOCK as u64
                    && reader
                        .get(pos, rest as usize)?
                        .is_some_and(|b| b.iter().all(|&x| x == 0));
                if padding {
                    out.padding = true;
                } else {
                    out.corruption = Some(e.to_string());
                }
                break;
            }
        };
        let total = header.total_size();
        let Some(bytes) = reader.get(pos, total)? else {
            out.corruption = Some(format!("short batch at position {pos}"));
            break;
        };
        if let Err(e) = batch::check_batch_frame(bytes) {
            out.corruption = Some(format!("at position {pos}: {e}"));
            break;
        }
        if header.base_offset < out.next_offset {
            out.corruption = Some(format!(
                "batch at position {pos} has base offset {}, expected at least {}",
                header.base_offset, out.next_offset
            ));
            break;
        }
        if header.last_offset() - base_offset > i64::from(u32::MAX) {
            out.corruption = Some(format!(
                "offset {} too far from segment base",
                header.last_offset()
            ));
            break;
        }
        let last_time = out.time_index.last().map(|e| e.timestamp);
        let (entry, time_entry) = index_batch(
            &mut out.bytes_since_last_index,
            &mut out.max_timestamp,
            last_time,
            interval,
            base_offset,
            &header,
            pos,
        );
        if build_index {
            out.index.extend(entry);
            out.time_index.extend(time_entry);
        }
        pos += total as u64;
        out.valid_size = pos;
        out.next_offset = header.last_offset() + 1;
    }
    Ok(out)
}

fn larger_timestamp(a: Option<(i64, i64)>, b: Option<(i64, i64)>) -> Option<(i64, i64)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 > x.0 { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// What recovery learned about a segment that it had to truncate.
pub(crate) struct Truncated {
    pub reason: String,
    pub bytes_dropped: u64,
}

pub(crate) struct Segment {
    pub base_offset: i64,
    pub log: Arc<File>,
    log_path: PathBuf,
    /// Bytes of valid batches in the file.
    pub size: u64,
    /// Offset after the last batch (= base offset when empty).
    pub next_offset: i64,
    pub index: IndexFile<OffsetEntry>,
    pub time_index: IndexFile<TimeEntry>,
    /// (largest batch max timestamp, last offset of that batch).
    pub max_timestamp: Option<(i64, i64)>,
    bytes_since_last_index: u64,
    /// Wall-clock time of the first append (or of opening), for segment.ms.
    pub created_ms: i64,
    /// Bytes of the file allocated ahead of the writes (`fallocate` keeping the file size);
    /// `u64::MAX` once the file system refused.
    allocated: u64,
    /// Direct-write state while appends bypass the page cache (see `direct`).
    direct: Option<DirectTail>,
    /// The file system refused direct I/O for this file: appends are buffered.
    direct_refused: bool,
}

impl Drop for Segment {
    /// A log closed in an orderly way leaves no padding after its data.
    fn drop(&mut self) {
        if let Err(err) = self.end_direct() {
            tracing::warn!(path = %self.log_path.display(), %err, "cutting the padding of direct writes failed");
        }
    }
}

/// The active segment's blocks are allocated ahead of the writes, so that the file system does
/// not reserve and map them page by page as they are written: as far ahead as the segment is
/// long, between these bounds (a partition that holds little reserves little). Trimmed when
/// the segment is flushed or sealed.
const PREALLOCATE_MIN: u64 = 64 * 1024;
const PREALLOCATE_MAX: u64 = 16 * 1024 * 1024;

impl Segment {
    /// Allocates blocks for `len` more bytes if the preallocated part does not hold them.
    fn preallocate(&mut self, len: u64) {
        use std::os::fd::AsRawFd;
        let end = self.size + len;
        if end <= self.allocated {
            return;
        }
        let start = self.allocated.max(self.size);
        let ahead = self.size.clamp(PREALLOCATE_MIN, PREALLOCATE_MAX);
        let target = (end + ahead).div_ceil(PREALLOCATE_MIN) * PREALLOCATE_MIN;
        // SAFETY: plain syscall on an open descriptor.
        let r = unsafe {
            libc::fallocate(
                self.log.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                start as libc::off_t,
                (target - start) as libc::off_t,
            )
        };
        // Not supported (or no space, which the write itself will report): write without.
        self.allocated = if r == 0 { target } else { u64::MAX };
    }

    /// Gives back the blocks preallocated past the end of the data (past its padded end while
    /// appends are direct: cutting inside the last block would bring it into the page cache).
    fn trim_preallocation(&mut self) -> io::Result<()> {
        let end = self
            .direct
            .as_ref()
            .map_or(self.size, DirectTail::padded_end);
        if self.allocated != u64::MAX && self.allocated > end {
            self.log.set_len(end)?;
        }
        self.allocated = end;
        Ok(())
    }

    /// Stops appending with direct writes: the file is cut to the data (no padding).
    fn end_direct(&mut self) -> io::Result<()> {
        if let Some(tail) = self.direct.take()
            && tail.padded_end() > self.size
        {
            self.log.set_len(self.size)?;
            self.allocated = self.size;
        }
        Ok(())
    }

    /// A reader of the segment's data, `chunk` bytes of read-ahead.
    pub fn reader(&self, chunk: usize) -> ChunkReader<'_> {
        let reader = ChunkReader::new(&self.log, self.size, chunk);
        match &self.direct {
            Some(tail) => reader.with_tail(tail.start(), tail.tail()),
            None => reader,
        }
    }

    /// Where the data that may be read from the file ends; the rest, up to `size`, is in
    /// [`Self::tail_bytes`].
    pub fn file_end(&self) -> u64 {
        self.direct.as_ref().map_or(self.size, DirectTail::start)
    }

    /// A copy of the data in `[from, to)`, which must lie at or after [`Self::file_end`].
    pub fn tail_bytes(&self, from: u64, to: u64) -> bytes::Bytes {
        match &self.direct {
            Some(tail) => {
                let start = tail.start();
                bytes::Bytes::copy_from_slice(
                    &tail.tail()[(from - start) as usize..(to - start) as usize],
                )
            }
            None => bytes::Bytes::new(),
        }
    }

    /// Creates a new empty segment, replacing any files of the same name.
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Segment, StorageError> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)?;
        let index = IndexFile::open_with(
            &segment_path(dir, base_offset, INDEX_SUFFIX),
            Vec::new(),
            None,
        )?;
        let time_index = IndexFile::open_with(
            &segment_path(dir, base_offset, TIME_INDEX_SUFFIX),
            Vec::new(),
            None,
        )?;
        Ok(Segment {
            base_offset,
            log: Arc::new(file),
            log_path,
            size: 0,
            next_offset: base_offset,
            index,
            time_index,
            max_timestamp: None,
            bytes_since_last_index: 0,
            created_ms: now_ms,
            allocated: 0,
            direct: None,
            direct_refused: false,
        })
    }

    /// Opens an existing segment. The active segment (`active`) is always scanned in full; an
    /// older one is trusted when its indexes are present and consistent (only the tail after the
    /// last index entry is scanned), and scanned in full otherwise. A torn or corrupt tail is
    /// truncated; indexes are rebuilt when they disagree with the log.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        active: bool,
        interval: u32,
        now_ms: i64,
    ) -> Result<(Segment, Option<Truncated>), StorageError> {
        let log_path = segment_path(dir, base_offset, LOG_SUFFIX);
        let index_path = segment_path(dir, base_offset, INDEX_SUFFIX);
        let time_path = segment_path(dir, base_offset, TIME_INDEX_SUFFIX);
        let file = OpenOptions::new().read(true).write(true).open(&log_path)?;
        let file_len = file.metadata()?.len();
        let index_on_disk = IndexFile::<OffsetEntry>::read_entries(&index_path)?;
        let time_on_disk = IndexFile::<TimeEntry>::read_entries(&time_path)?;

        let trusted = if active {
            None
        } else {
            Self::load_trusted(
                &file,
                file_len,
                base_offset,
                index_on_disk.as_deref(),
                time_on_disk.as_deref(),
                interval,
            )?
        };
        let (loaded, truncated) = match trusted {
            Some(loaded) => (loaded, None),
            None => {
                let mut full = scan(&file, file_len, base_offset, 0, base_offset, interval, true)?;
                if full.padding && !active {
                    // Rolling seals (and cuts) a segment before the next one is created.
                    full.corruption = Some(format!(
                        "zeros after the last batch at position {} of a sealed segment",
                        full.valid_size
                    ));
                }
                let truncated = match &full.corruption {
                    Some(reason) => {
                        file.set_len(full.valid_size)?;
                        file.sync_all()?;
                        Some(Truncated {
                            reason: reason.clone(),
                            bytes_dropped: file_len - full.valid_size,
                        })
                    }
                    None => None,
                };
                (full, truncated)
            }
        };
        if truncated.is_none() && loaded.valid_size < file_len {
            // Zeros after the data: the padding of direct writes to a segment that was not
            // sealed before the broker stopped.
            file.set_len(loaded.valid_size)?;
        }
        let Scan {
            valid_size,
            next_offset,
            index,
            mut time_index,
            max_timestamp,
            bytes_since_last_index,
            ..
        } = loaded;
        if !active {
            // An inactive segment ends with a time index entry for its max timestamp (see roll).
            push_final_time_entry(&mut time_index, max_timestamp, base_offset);
        }
        let index = IndexFile::open_with(&index_path, index, index_on_disk.as_deref())?;
        let time_index = IndexFile::open_with(&time_path, time_index, time_on_disk.as_deref())?;
        Ok((
            Segment {
                base_offset,
                log: Arc::new(file),
                log_path,
                size: valid_size,
                next_offset,
                index,
                time_index,
                max_timestamp,
                bytes_since_last_index,
                created_ms: now_ms,
                allocated: valid_size,
                direct: None,
                direct_refused: false,
            },
            truncated,
        ))
    }

    /// Loads an inactive segment from its indexes, scanning only the batches from the last offset
    /// index entry on. `None` when the indexes are missing or inconsistent with the log.
    fn load_trusted(
        file: &File,
        file_len: u64,
        base_offset: i64,
        index: Option<&[OffsetEntry]>,
        time_index: Option<&[TimeEntry]>,
        interval: u32,
    ) -> io::Result<Option<Scan>> {
        let (Some(index), Some(time_index)) = (index, time_index) else {
            return Ok(None);
        };
        let increasing = index
            .windows(2)
            .all(|w| w[0].rel_offset < w[1].rel_offset && w[0].position < w[1].position);
        if !increasing
            || index
                .last()
                .is_some_and(|e| u64::from(e.position) >= file_len)
        {
            return Ok(None);
        }
        let (start_pos, start_offset) = index.last().map_or((0, base_offset), |e| {
            (u64::from(e.position), base_offset + i64::from(e.rel_offset))
        });
        let mut tail = scan(
            file,
            file_len,
            base_offset,
            start_pos,
            start_offset,
            interval,
            false,
        )?;
        if tail.corruption.is_some() || tail.padding {
            return Ok(None);
        }
        let time_ok = time_index
            .windows(2)
            .all(|w| w[0].timestamp < w[1].timestamp && w[0].rel_offset <= w[1].rel_offset)
            && time_index
                .last()
                .is_none_or(|e| base_offset + i64::from(e.rel_offset) < tail.next_offset);
        if !time_ok {
            return Ok(None);
        }
        tail.index = index.to_vec();
        tail.time_index = time_index.to_vec();
        tail.max_timestamp = larger_timestamp(
            time_index
                .last()
                .map(|e| (e.timestamp, base_offset + i64::from(e.rel_offset))),
            tail.max_timestamp,
        );
        tail.bytes_since_last_index = tail.valid_size - start_pos;
        Ok(Some(tail))
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The max timestamp of the first batch, `None` if the segment is empty or unreadable.
    pub fn first_batch_max_timestamp(&self) -> Option<i64> {
        let mut reader = self.reader(BATCH_HEADER_SIZE);
        reader.header_at(0).ok().map(|h| h.max_timestamp)
    }

    /// Appends `bytes` (whole, already validated and patched batches) at the end of the file,
    /// bypassing the page cache if `direct`. Returns the position they were written at. On
    /// failure the file is cut back.
    #[cfg(test)]
    pub fn write(&mut self, bytes: &[u8], direct: bool) -> Result<u64, StorageError> {
        self.write_parts(&[bytes], direct)
    }

    /// Appends the concatenation of `parts` (whole, already validated and patched batches, the
    /// headers of which may be separate copies) at the end of the file: with direct writes
    /// (see `direct`) if `direct` and the file system allows, else with positioned vectored
    /// writes. Returns the position they were written at. On failure the file is cut back.
    pub fn write_parts(&mut self, parts: &[&[u8]], direct: bool) -> Result<u64, StorageError> {
        self.preallocate(parts.iter().map(|p| p.len() as u64).sum());
        let pos = self.size;
        if !direct {
            self.end_direct()?;
        } else if self.direct.is_none() && !self.direct_refused {
            self.direct = DirectTail::open(&self.log_path, pos)?;
            if self.direct.is_none() {
                self.refuse_direct();
            }
        }
        let mut result = match self.direct.as_mut() {
            Some(tail) => tail.append(parts),
            None => write_all_vectored_at(&self.log, parts, pos),
        };
        if let Err(e) = &result
            && self.direct.is_some()
            && DirectTail::is_unsupported(e)
        {
            self.direct = None;
            self.refuse_direct();
            result = write_all_vectored_at(&self.log, parts, pos);
        }
        match result {
            Ok(written) => {
                self.size += written;
                Ok(pos)
            }
            Err(e) => {
                // The next append starts over from the file (and its length cut back here).
                self.direct = None;
                let _ = self.log.set_len(pos);
                Err(e.into())
            }
        }
    }

    fn refuse_direct(&mut self) {
        self.direct_refused = true;
        tracing::debug!(
            path = %self.log_path.display(),
            "the file system refuses direct I/O: appends go through the page cache"
        );
    }

    /// Records a batch written at `pos` by [`Self::write`]: indexes and next offset.
    pub fn on_appended(&mut self, header: &BatchHeader, pos: u64, interval: u32) {
        let (entry, time_entry) = index_batch(
            &mut self.bytes_since_last_index,
            &mut self.max_timestamp,
            self.time_index.last().map(|e| e.timestamp),
            interval,
            self.base_offset,
            header,
            pos,
        );
        self.next_offset = header.last_offset() + 1;
        // The log is the source of truth: a failed index write only makes lookups scan more,
        // and recovery rebuilds indexes that disagree with the log.
        if let Some(e) = entry
            && let Err(err) = self.index.append(e)
        {
            tracing::warn!(path = %self.index.path().display(), %err, "offset index append failed");
        }
        if let Some(e) = time_entry
            && let Err(err) = self.time_index.append(e)
        {
            tracing::warn!(path = %self.time_index.path().display(), %err, "time index append failed");
        }
    }

    /// File position from which to scan for `offset`: the largest index entry at or below it.
    pub fn lookup_position(&self, offset: i64) -> u64 {
        let rel = offset - self.base_offset;
        if rel <= 0 {
            return 0;
        }
        let entries = self.index.entries();
        let i = entries.partition_point(|e| i64::from(e.rel_offset) <= rel);
        if i == 0 {
            0
        } else {
            u64::from(entries[i - 1].position)
        }
    }

    /// The first batch whose last offset is >= `offset`, with its position.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, StorageError> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let mut reader = self.reader(READ_CHUNK);
        let mut pos = self.lookup_position(offset);
        while pos < self.size {
            let header = reader.header_at(pos)?;
            if header.last_offset() >= offset {
                return Ok(Some((pos, header)));
            }
            pos += header.total_size() as u64;
        }
        Ok(None)
    }

    /// The first record at or after `min_offset` with a timestamp >= `target`:
    /// (offset, timestamp). Exact for uncompressed CreateTime batches, batch granularity
    /// otherwise (base offset, clamped to `min_offset`, and the batch max timestamp).
    pub fn find_by_timestamp(
        &self,
        target: i64,
        min_offset: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        if self.max_timestamp.is_none_or(|(ts, _)| ts < target) {
            return Ok(None);
        }
        let entries = self.time_index.entries();
        let i = entries.partition_point(|e| e.timestamp < target);
        let mut start_offset = min_offset;
        if i > 0 {
            start_offset =
                start_offset.max(self.base_offset + i64::from(entries[i - 1].rel_offset));
        }
        let mut pos = self.lookup_position(start_offset);
        let mut reader = self.reader(READ_CHUNK);
        while pos < self.size {
            let header = reader.header_at(pos)?;
            let total = header.total_size();
            if header.last_offset() >= min_offset && header.max_timestamp >= target {
                if header.compression() == 0
                    && !header.is_log_append_time()
                    && let Some(bytes) = reader.get(pos, total)?
                    && let Some(found) = batch::record_timestamps(bytes, &header)
                        .into_iter()
                        .find(|&(o, ts)| o >= min_offset && ts >= target)
                {
                    return Ok(Some(found));
                }
                return Ok(Some((
                    header.base_offset.max(min_offset),
                    header.max_timestamp,
                )));
            }
            pos += total as u64;
        }
        Ok(None)
    }

    /// Drops every batch whose last offset is >= `offset` (whole batches).
    pub fn truncate_to(&mut self, offset: i64, interval: u32) -> Result<(), StorageError> {
        let Some((pos, header)) = self.find_batch(offset)? else {
            return Ok(());
        };
        self.direct = None;
        self.log.set_len(pos)?;
        self.allocated = pos;
        self.size = pos;
        self.next_offset = header.base_offset;
        let keep = self
            .index
            .entries()
            .partition_point(|e| u64::from(e.position) < pos);
        self.index.truncate(keep)?;
        let next_rel = self.next_offset - self.base_offset;
        let keep = self
            .time_index
            .entries()
            .partition_point(|e| i64::from(e.rel_offset) < next_rel);
        self.time_index.truncate(keep)?;
        // Recompute the max timestamp and index spacing from the remaining tail.
        let (start_pos, start_offset) = self.index.last().map_or((0, self.base_offset), |e| {
            (
                u64::from(e.position),
                self.base_offset + i64::from(e.rel_offset),
            )
        });
        let tail = scan(
            &self.log,
            self.size,
            self.base_offset,
            start_pos,
            start_offset,
            interval,
            false,
        )?;
        if let Some(reason) = tail.corruption {
            return Err(StorageError::CorruptRecord(reason));
        }
        self.max_timestamp = larger_timestamp(
            self.time_index
                .last()
                .map(|e| (e.timestamp, self.base_offset + i64::from(e.rel_offset))),
            tail.max_timestamp,
        );
        self.bytes_since_last_index = self.size - start_pos;
        Ok(())
    }

    /// Called when the segment stops being the active one: records its max timestamp in the
    /// time index and makes everything durable.
    pub fn seal(&mut self) -> Result<(), StorageError> {
        let mut entries = self.time_index.entries().to_vec();
        let before = entries.len();
        push_final_time_entry(&mut entries, self.max_timestamp, self.base_offset);
        if let Some(&e) = entries.get(before) {
            self.time_index.append(e)?;
        }
        self.end_direct()?;
        self.flush()
    }

    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.trim_preallocation()?;
        self.log.sync_data()?;
        self.index.sync()?;
        self.time_index.sync()?;
        Ok(())
    }

    /// Removes the segment's files. Open `FileSlice`s keep the log file readable.
    pub fn delete_files(self) -> Result<(), StorageError> {
        for path in [
            self.log_path.as_path(),
            self.index.path(),
            self.time_index.path(),
        ] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

pub(crate) fn push_final_time_entry(
    entries: &mut Vec<TimeEntry>,
    max_timestamp: Option<(i64, i64)>,
    base_offset: i64,
) {
    if let Some((ts, offset)) = max_timestamp
        && entries.last().is_none_or(|e| ts > e.timestamp)
    {
        entries.push(TimeEntry {
            timestamp: ts,
            rel_offset: (offset - base_offset) as u32,
        });
    }
}

// Compile-time check of the thread-safety claim in the module documentation.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Segment>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn allocated_bytes(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn preallocation_is_ahead_of_the_writes_and_trimmed_on_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0, 0).unwrap();
        let path = segment_path(dir.path(), 0, LOG_SUFFIX);
        seg.write(&[7u8; 1000], false).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            1000,
            "size is kept"
        );
        if seg.allocated != u64::MAX {
            assert!(allocated_bytes(&path) >= PREALLOCATE_MIN);
        }
        seg.flush().unwrap();
        assert!(allocated_bytes(&path) < PREALLOCATE_MIN, "trimmed on flush");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1000);
        let mut back = vec![0u8; 1000];
        seg.log.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, vec![7u8; 1000]);
    }

    /// Batches of `n` records (`len` bytes of value each) from offset `base`.
    fn batch(base: i64, n: usize, len: usize) -> Vec<u8> {
        let mut b = crate::testutil::make_batch(n, len, base);
        batch::patch_base_offset(&mut b, base);
        b
    }

    #[test]
    fn direct_appends_read_back_and_recover_from_their_padding() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0, 0).unwrap();
        let path = segment_path(dir.path(), 0, LOG_SUFFIX);
        let mut expected = Vec::new();
        let mut next = 0i64;
        for (n, len) in [(1, 10), (3, 2000), (1, 1), (20, 900), (2, 5000)] {
            let b = batch(next, n, len);
            let pos = seg.write(&b, true).unwrap();
            assert_eq!(pos, expected.len() as u64);
            seg.on_appended(&BatchHeader::parse(&b).unwrap(), pos, 4096);
            expected.extend_from_slice(&b);
            next += n as i64;
            // Whatever the reads take from the file or from memory, they see the data.
            let mut reader = seg.reader(READ_CHUNK);
            assert_eq!(
                reader.get(0, expected.len()).unwrap().unwrap(),
                &expected[..]
            );
            assert!(seg.file_end() <= seg.size);
            if seg.direct.is_some() {
                assert_eq!(seg.file_end() % direct::BLOCK as u64, 0);
                let tail = seg.tail_bytes(seg.file_end(), seg.size);
                assert_eq!(&tail[..], &expected[seg.file_end() as usize..]);
            }
        }
        assert_eq!(
            seg.find_batch(next - 1).unwrap().unwrap().1.last_offset(),
            next - 1
        );
        // A crash before the segment is sealed leaves zeros up to the end of the block:
        // recovery takes them for padding, not for a torn batch.
        seg.flush().unwrap();
        drop(seg);
        let (seg, truncated) = Segment::open(dir.path(), 0, true, 4096, 0).unwrap();
        assert!(truncated.is_none(), "padding is not corruption");
        assert_eq!(seg.size, expected.len() as u64);
        assert_eq!(seg.next_offset, next);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), seg.size);
        // Sealing cuts the padding.
        let mut seg = seg;
        seg.write(&batch(next, 1, 100), true).unwrap();
        seg.seal().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), seg.size);
    }
    #[test]
    fn zeros_at_the_end_of_a_sealed_segment_are_corruption_not_padding() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0, 0).unwrap();
        let first = batch(0, 2, 50);
        let second = batch(2, 3, 50);
        for b in [&first, &second] {
            let pos = seg.write(b, false).unwrap();
            seg.on_appended(&BatchHeader::parse(b).unwrap(), pos, 1);
        }
        seg.seal().unwrap();
        drop(seg);
        // The second batch turns to zeros; the offset index still points at it, so a scan of
        // the tail from the last index entry sees only zeros to the end of the file.
        let path = segment_path(dir.path(), 0, LOG_SUFFIX);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[first.len()..].fill(0);
        std::fs::write(&path, &bytes).unwrap();

        let (seg, truncated) = Segment::open(dir.path(), 0, false, 1, 0).unwrap();
        let truncated = truncated.expect("a sealed segment has no padding");
        assert_eq!(truncated.bytes_dropped, second.len() as u64);
        assert_eq!((seg.size, seg.next_offset), (first.len() as u64, 2));
        assert!(
            seg.index
                .entries()
                .iter()
                .all(|e| u64::from(e.position) < seg.size)
        );
        drop(seg);
        let (seg, truncated) = Segment::open(dir.path(), 0, false, 1, 0).unwrap();
        assert!(truncated.is_none());
        assert_eq!((seg.size, seg.next_offset), (first.len() as u64, 2));
    }
}
