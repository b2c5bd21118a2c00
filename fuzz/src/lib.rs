//! Helpers shared by strom's fuzz targets.
//!
//! Record batches and metadata log frames carry CRC-32C checksums that random mutations almost
//! never satisfy, so most inputs would stop at the checksum. Targets whose input holds checksums
//! therefore take a leading mode byte: with its low bit clear the checksums in the rest of the
//! input are recomputed before the decoder sees it (exploring everything behind the check), with
//! it set the bytes go in untouched (exploring the check itself and torn data).

use strom_codec::batch::{ATTRIBUTES_OFFSET, BATCH_HEADER_SIZE, CRC_OFFSET, LOG_OVERHEAD, crc32c};

/// Splits off the mode byte: returns (fix checksums?, rest). `None` for an empty input.
pub fn split_mode(data: &[u8]) -> Option<(bool, &[u8])> {
    let (&mode, rest) = data.split_first()?;
    Some((mode & 1 == 0, rest))
}

/// Rewrites the CRC of every complete batch at the front of `buf` (walking batches by their
/// length field, as the decoders do) so that it matches the batch's bytes. Stops at the first
/// length that is too small or runs past the end.
pub fn fix_batch_crcs(buf: &mut [u8]) {
    let mut pos = 0usize;
    while buf.len() - pos >= BATCH_HEADER_SIZE {
        let len = i32::from_be_bytes(buf[pos + 8..pos + 12].try_into().unwrap());
        if len < (BATCH_HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return;
        }
        let end = pos + LOG_OVERHEAD + len as usize;
        if end > buf.len() {
            return;
        }
        let crc = crc32c(&buf[pos + ATTRIBUTES_OFFSET..end]);
        buf[pos + CRC_OFFSET..pos + CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}

/// Rewrites the CRC of every complete frame of a metadata log (length u32 | CRC-32C u32 of the
/// payload | payload).
pub fn fix_metadata_crcs(buf: &mut [u8]) {
    let mut pos = 0usize;
    while buf.len() - pos >= 8 {
        let len = u32::from_be_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        if len > buf.len() - pos - 8 {
            return;
        }
        let crc = crc32c(&buf[pos + 8..pos + 8 + len]);
        buf[pos + 4..pos + 8].copy_from_slice(&crc.to_be_bytes());
        pos += 8 + len;
    }
}

/// A fresh temporary directory, in memory when the machine has /dev/shm.
pub fn temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("strom-fuzz")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::Builder::new()
        .prefix("strom-fuzz")
        .tempdir()
        .expect("create a temp dir")
}

/// Reads `n` bytes off the front of `data` as a big-endian unsigned number (missing bytes are
/// zero) and advances past them.
pub fn take_be(data: &mut &[u8], n: usize) -> u64 {
    let mut v = 0u64;
    for _ in 0..n {
        let b = match data.split_first() {
            Some((&b, rest)) => {
                *data = rest;
                b
            }
            None => 0,
        };
        v = (v << 8) | u64::from(b);
    }
    v
}

/// Takes up to `n` bytes off the front of `data`.
pub fn take_bytes<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, rest) = data.split_at(n);
    *data = rest;
    head
}
