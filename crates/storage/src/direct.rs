//! Appends to the active segment that bypass the page cache (`O_DIRECT`).
//!
//! A buffered append copies every byte into the page cache, and the kernel allocates, charges
//! and later writes back a page for every 4 KiB: on the development machine that is most of
//! the broker's CPU time per produced GiB (docs/performance.md). A direct append instead copies
//! the batches into one reused, aligned buffer and hands it to the device.
//!
//! Direct writes must cover whole blocks at block-aligned positions. The data's last partial
//! block stays in memory ([`DirectTail::tail`]) and is written again, completed, by the next
//! append; until the segment is sealed the file's length is rounded up to a whole block with
//! zeros, which recovery recognises as padding.
//!
//! Readers must never read that last partial block through the page cache: a page the kernel
//! cannot drop when the next direct write rewrites the block (one an in-flight `sendfile` still
//! holds, say) would keep serving the old bytes. So the segment's readers take the file only
//! below [`DirectTail::start`] and the bytes from there on from memory; blocks below it are
//! never written again (until a truncation, which drops the page cache past its point).
//!
//! Thread safety: `DirectTail` is owned by one segment and changed through `&mut` (the
//! partition lock). Two pieces of state are shared: the staging buffer is thread-local (each
//! appending thread has its own, so no lock), and the count of kept-open direct descriptors is a
//! global atomic, a soft budget for which relaxed ordering is enough.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Alignment of direct writes: positions, lengths and the buffer's address. A multiple of
/// every logical block size in common use (512 and 4096 bytes).
pub(crate) const BLOCK: usize = 4096;

/// A thread's staging buffer starts at this size and grows to the largest append it made.
const STAGING_CAPACITY: usize = 256 * 1024;
/// A staging buffer larger than this is freed after its append.
const STAGING_KEEP_MAX: usize = 4 * 1024 * 1024;

/// Most direct-I/O descriptors kept open at once, over all segments. Each active segment
/// already holds its log file open for reads; a second descriptor for every one of ten
/// thousand partitions would double the broker's descriptors. Segments beyond this many open
/// theirs for each append.
const KEPT_OPEN_MAX: usize = 1024;

/// Direct-I/O descriptors kept open now.
static KEPT_OPEN: AtomicUsize = AtomicUsize::new(0);

fn open_direct(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

thread_local! {
    /// Where appends are assembled for the device: one per thread, not per partition, so that
    /// ten thousand partitions hold one block each rather than one append each.
    static STAGING: std::cell::RefCell<Option<AlignedBuf>> = const { std::cell::RefCell::new(None) };
}

/// A heap buffer aligned to [`BLOCK`].
struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
}

// SAFETY: the buffer is owned memory with no shared state; access goes through `&`/`&mut`.
unsafe impl Send for AlignedBuf {}
// SAFETY: as above; `&AlignedBuf` only allows reads.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    fn layout(cap: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(cap, BLOCK).expect("aligned buffer layout")
    }

    fn new(cap: usize) -> AlignedBuf {
        let layout = Self::layout(cap);
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, cap }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `cap` initialised (zeroed at allocation) bytes we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.cap) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) };
    }
}

impl Drop for DirectTail {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            KEPT_OPEN.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The direct-write state of an active segment.
pub(crate) struct DirectTail {
    path: PathBuf,
    /// The open descriptor, when this segment holds one of the [`KEPT_OPEN_MAX`].
    file: Option<File>,
    /// The data's last partial block (less than a block; sized to the data, so that ten
    /// thousand barely written partitions hold little).
    tail: Vec<u8>,
    /// File position of `tail[0]`: the start of the block holding the end of the data.
    start: u64,
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
    )
}

impl DirectTail {
    /// Opens `path`, which holds `size` bytes of data, for direct appends. `None` when the
    /// file system does not do direct I/O (tmpfs on older kernels, some network file systems).
    pub fn open(path: &Path, size: u64) -> io::Result<Option<DirectTail>> {
        let file = match open_direct(path) {
            Ok(f) => f,
            Err(e) if is_unsupported(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let start = size - size % BLOCK as u64;
        let len = (size - start) as usize;
        let mut tail = Vec::new();
        if len > 0 {
            let mut buf = AlignedBuf::new(BLOCK);
            // A direct read: the block must not enter the page cache (see the module notes).
            let got = loop {
                // SAFETY: reads at most one block into the buffer, which holds more.
                let n = unsafe {
                    libc::pread(
                        file.as_raw_fd(),
                        buf.as_mut_slice().as_mut_ptr().cast(),
                        BLOCK,
                        start as libc::off_t,
                    )
                };
                if n >= 0 {
                    break n as usize;
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    _ if is_unsupported(&e) => return Ok(None),
                    _ => return Err(e),
                }
            };
            if got < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "segment file ends before its data ({got} of {len} bytes of the last block)"
                    ),
                ));
            }
            tail.extend_from_slice(&buf.as_slice()[..len]);
        }
        let keep = KEPT_OPEN
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < KEPT_OPEN_MAX).then_some(n + 1)
            })
            .is_ok();
        Ok(Some(DirectTail {
            path: path.to_path_buf(),
            file: keep.then_some(file),
            tail,
            start,
        }))
    }

    /// Where the data in memory starts: readers take the file below this position only.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The data from [`Self::start`] to the end (less than a block).
    pub fn tail(&self) -> &[u8] {
        &self.tail
    }

    /// The file's length while the segment is active: the data rounded up to a whole block.
    pub fn padded_end(&self) -> u64 {
        self.start + (self.tail.len().div_ceil(BLOCK) * BLOCK) as u64
    }

    /// Appends the concatenation of `parts` after the data; returns the bytes appended. An
    /// error leaves the state as before the call (the caller cuts the file back). Errors with
    /// [`Self::is_unsupported`] mean the file system refused direct I/O.
    pub fn append(&mut self, parts: &[&[u8]]) -> io::Result<u64> {
        STAGING.with(|staging| {
            let mut staging = staging.borrow_mut();
            let result = self.append_via(parts, &mut staging);
            // An unusually large append does not keep its buffer.
            if staging.as_ref().is_some_and(|b| b.cap > STAGING_KEEP_MAX) {
                *staging = None;
            }
            result
        })
    }

    fn append_via(&mut self, parts: &[&[u8]], staging: &mut Option<AlignedBuf>) -> io::Result<u64> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let len = self.tail.len();
        let end = len + total;
        let write_len = end.div_ceil(BLOCK) * BLOCK;
        if staging.as_ref().is_none_or(|b| b.cap < write_len) {
            *staging = Some(AlignedBuf::new(
                write_len.next_power_of_two().max(STAGING_CAPACITY),
            ));
        }
        let buf = staging.as_mut().expect("staging buffer").as_mut_slice();
        buf[..len].copy_from_slice(&self.tail);
        let mut at = len;
        for part in parts {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        buf[end..write_len].fill(0);
        let opened;
        let file = match &self.file {
            Some(f) => f,
            None => {
                opened = open_direct(&self.path)?;
                &opened
            }
        };
        let mut done = 0usize;
        while done < write_len {
            // SAFETY: writes from the buffer, which holds `write_len` bytes.
            let n = unsafe {
                libc::pwrite(
                    file.as_raw_fd(),
                    buf[done..].as_ptr().cast(),
                    write_len - done,
                    (self.start + done as u64) as libc::off_t,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 || !(n as usize).is_multiple_of(BLOCK) {
                // A short direct write (no space left for the rest): the caller cuts back.
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "direct write stopped short (disk full?)",
                ));
            }
            done += n as usize;
        }
        // Keep the new last partial block.
        let full = end - end % BLOCK;
        self.tail.clear();
        self.tail.extend_from_slice(&buf[full..end]);
        self.start += full as u64;
        Ok(total as u64)
    }

    /// Whether this tail holds its descriptor open (tests).
    #[cfg(test)]
    fn keeps_file_open(&self) -> bool {
        self.file.is_some()
    }

    /// Whether `e`, from [`Self::append`], means direct I/O is not possible on this file.
    pub fn is_unsupported(e: &io::Error) -> bool {
        is_unsupported(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn appends_land_in_the_file_and_keep_the_partial_block_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.log");
        std::fs::write(&path, b"").unwrap();
        let Some(mut tail) = DirectTail::open(&path, 0).unwrap() else {
            eprintln!("no direct I/O on this file system; nothing to check");
            return;
        };
        let mut expected = Vec::new();
        for (i, len) in [10usize, 4086, 1, 9000, 4096, 70_000, 3]
            .into_iter()
            .enumerate()
        {
            if i == 4 {
                // From here on as a segment beyond the descriptors kept open: one per append.
                assert!(tail.keeps_file_open());
                drop(tail.file.take());
                KEPT_OPEN.fetch_sub(1, Ordering::AcqRel);
            }
            let part: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            let (a, b) = part.split_at(len / 2);
            assert_eq!(tail.append(&[a, b]).unwrap(), len as u64);
            expected.extend_from_slice(&part);
            let size = expected.len() as u64;
            assert_eq!(tail.start() + tail.tail().len() as u64, size);
            assert_eq!(tail.start() % BLOCK as u64, 0);
            assert_eq!(tail.tail(), &expected[tail.start() as usize..]);
            let file_len = std::fs::metadata(&path).unwrap().len();
            assert_eq!(file_len, tail.padded_end());
            let mut on_disk = vec![0u8; file_len as usize];
            File::open(&path)
                .unwrap()
                .read_exact_at(&mut on_disk, 0)
                .unwrap();
            assert_eq!(&on_disk[..expected.len()], &expected[..]);
            assert!(on_disk[expected.len()..].iter().all(|&b| b == 0));
        }
        // Reopening picks up the partial block from the file.
        let size = expected.len() as u64;
        drop(tail);
        let again = DirectTail::open(&path, size).unwrap().unwrap();
        assert_eq!(again.tail(), &expected[again.start() as usize..]);
    }
}
