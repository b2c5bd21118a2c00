//! The records inside a RecordBatch v2: parsing them (after decompression) and rebuilding a
//! batch from a subset of its records, as the log cleaner does.
//!
//! Record layout: length varint, attributes i8, timestampDelta varlong, offsetDelta varint,
//! keyLength varint + key, valueLength varint + value, headers. A null key or value has
//! length -1.
//!
//! Thread safety: functions over byte slices; nothing shared.

use std::borrow::Cow;

use crate::StorageError;
use strom_codec::batch::write_batch_crc;

use crate::batch::{
    BATCH_HEADER_SIZE, BATCH_LENGTH_OFFSET, BatchHeader, LOG_OVERHEAD, MAX_TIMESTAMP_OFFSET,
    RECORDS_COUNT_OFFSET, read_varlong,
};
use crate::codec;

/// One record of a batch, borrowed from the (decompressed) records bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record<'a> {
    /// The whole record as stored, length prefix included.
    pub raw: &'a [u8],
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
}

/// The records bytes of a whole batch, decompressed when the batch is compressed.
pub(crate) fn records_body<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
) -> Result<Cow<'a, [u8]>, StorageError> {
    let end = header.total_size().min(batch.len());
    let body = batch.get(BATCH_HEADER_SIZE..end).unwrap_or_default();
    if header.compression() == codec::NONE {
        Ok(Cow::Borrowed(body))
    } else {
        Ok(Cow::Owned(codec::decompress(
            header.compression(),
            body,
            codec::MAX_DECOMPRESSED,
        )?))
    }
}

fn malformed(what: &str, base_offset: i64) -> StorageError {
    StorageError::CorruptRecord(format!(
        "malformed record ({what}) in batch at base offset {base_offset}"
    ))
}

/// Parses the `header.records_count` records of `body` (see [`records_body`]).
pub(crate) fn parse_records<'a>(
    body: &'a [u8],
    header: &BatchHeader,
) -> Result<Vec<Record<'a>>, StorageError> {
    let base = header.base_offset;
    let count = header.records_count.max(0) as usize;
    let mut out = Vec::with_capacity(count.min(body.len()));
    let mut pos = 0usize;
    for _ in 0..count {
        let start = pos;
        let len = read_varlong(body, &mut pos).ok_or_else(|| malformed("length", base))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|&e| e <= body.len())
            .ok_or_else(|| malformed("length", base))?;
        let rec = &body[..end];
        pos += 1; // attributes
        let timestamp_delta =
            read_varlong(rec, &mut pos).ok_or_else(|| malformed("timestamp", base))?;
        let offset_delta = read_varlong(rec, &mut pos).ok_or_else(|| malformed("offset", base))?;
        let key_len = read_varlong(rec, &mut pos).ok_or_else(|| malformed("key", base))?;
        let key = if key_len < 0 {
            None
        } else {
            let key_end = pos
                .checked_add(key_len as usize)
                .filter(|&e| e <= end)
                .ok_or_else(|| malformed("key", base))?;
            let key = &rec[pos..key_end];
            pos = key_end;
            Some(key)
        };
        let value_len = read_varlong(rec, &mut pos).ok_or_else(|| malformed("value", base))?;
        let value = if value_len < 0 {
            None
        } else {
            let value_end = pos
                .checked_add(value_len as usize)
                .filter(|&e| e <= end)
                .ok_or_else(|| malformed("value", base))?;
            Some(&rec[pos..value_end])
        };
        out.push(Record {
            raw: &body[start..end],
            timestamp_delta,
            offset_delta,
            key,
            value,
        });
        pos = end;
    }
    Ok(out)
}

/// Refuses a batch holding a record without a key (appends to compacted logs). Control
/// batches are exempt.
pub(crate) fn check_keys(batch: &[u8], header: &BatchHeader) -> Result<(), StorageError> {
    if header.is_control() {
        return Ok(());
    }
    let body = records_body(batch, header)?;
    for record in parse_records(&body, header)? {
        if record.key.is_none() {
            return Err(StorageError::InvalidRecord(
                "compacted topic cannot accept a record without a key".into(),
            ));
        }
    }
    Ok(())
}

/// Rebuilds `batch` keeping only `retained` (records parsed from it, in order). Everything in
/// the header is kept (base offset, last offset delta, leader epoch, attributes and so the
/// codec, base timestamp, producer id and epoch, base sequence) except the length, record
/// count, CRC and, for CreateTime, the max timestamp, which is recomputed from the retained
/// records. Records are copied verbatim: their offset and timestamp deltas stay relative to the
/// unchanged base offset and base timestamp.
pub(crate) fn rebuild_batch(
    batch: &[u8],
    header: &BatchHeader,
    retained: &[Record<'_>],
) -> Result<Vec<u8>, StorageError> {
    let plain: Vec<u8> = retained
        .iter()
        .flat_map(|r| r.raw.iter().copied())
        .collect();
    let body = codec::compress(header.compression(), &plain)?;
    let mut out = Vec::with_capacity(BATCH_HEADER_SIZE + body.len());
    out.extend_from_slice(&batch[..BATCH_HEADER_SIZE]);
    out.extend_from_slice(&body);
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[BATCH_LENGTH_OFFSET..BATCH_LENGTH_OFFSET + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[RECORDS_COUNT_OFFSET..RECORDS_COUNT_OFFSET + 4]
        .copy_from_slice(&(retained.len() as i32).to_be_bytes());
    if !header.is_log_append_time()
        && let Some(max) = retained
            .iter()
            .map(|r| header.base_timestamp.wrapping_add(r.timestamp_delta))
            .max()
    {
        out[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&max.to_be_bytes());
    }
    write_batch_crc(&mut out);
    Ok(out)
}
